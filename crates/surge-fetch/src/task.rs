//! The `http.fetch` task kind: one fetch through the engine, as a task of
//! the durable queue (feature `task`).
//!
//! Args (`{"url": …}` at least; unknown fields and bad values are refused
//! at submission):
//!
//! | field | default | what |
//! |---|---|---|
//! | `url` | — | absolute `http://` or `https://` URL |
//! | `method` | `GET` | any HTTP method |
//! | `headers` | `{}` | header name → value |
//! | `json` | none | a JSON body (sets `Content-Type: application/json`) |
//! | `body` | none | a text body (not with `json`) |
//! | `keep_body` | `false` | return the body as text (else its SHA-256) |
//! | `max_body_bytes` | the engine's | smaller cap for this fetch |
//! | `fail_on_status` | `true` | an error status fails the task; `false`: it succeeds with `error` in the result |
//!
//! The result: `url`, `final_url`, `status`, `headers` (those of interest:
//! content type, length, encoding, caching, location, retry-after, server,
//! date), `bytes`, `content_type`, `elapsed_ms`, `attempts`, `redirects`,
//! `sha256` or `body`, and `error` (`{category, kind, message, retryable}`
//! or null). A failed fetch fails the task with a
//! [`TaskError`] of the same category and retryability.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use surge_queue::{KindSettings, Task, TaskContext, TaskError};
use url::Url;

use crate::body::{BodyOutput, BodySink};
use crate::engine::Fetcher;
use crate::error::FetchError;
use crate::request::{FetchRequest, Fetched};

/// Headers a result keeps.
const HEADERS_OF_INTEREST: [&str; 10] = [
    "content-type",
    "content-length",
    "content-encoding",
    "etag",
    "last-modified",
    "cache-control",
    "location",
    "retry-after",
    "server",
    "date",
];

/// Args of `http.fetch`, as submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFetchArgs {
    /// The URL.
    pub url: String,
    /// The method (default GET).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A JSON body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    /// A text body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Return the body as text.
    #[serde(default)]
    pub keep_body: bool,
    /// Largest body for this fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Whether an error status fails the task.
    #[serde(default = "yes")]
    pub fail_on_status: bool,
}

fn yes() -> bool {
    true
}

/// Args of `http.fetch`, checked: a submission whose args do not pass
/// [`TryFrom<RawFetchArgs>`] is refused before it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawFetchArgs", into = "RawFetchArgs")]
pub struct FetchArgs(RawFetchArgs);

/// Largest `max_body_bytes` a task may ask for (results are stored).
const TASK_BODY_MAX: u64 = 16 * 1024 * 1024;

impl TryFrom<RawFetchArgs> for FetchArgs {
    type Error = String;

    fn try_from(raw: RawFetchArgs) -> Result<FetchArgs, String> {
        let url = Url::parse(&raw.url).map_err(|e| format!("url: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(format!(
                "url: {:?} is not an http:// or https:// URL with a host",
                raw.url
            ));
        }
        if let Some(m) = &raw.method {
            Method::from_bytes(m.as_bytes())
                .map_err(|_| format!("method: {m:?} is not an HTTP method"))?;
        }
        for (name, value) in &raw.headers {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers: {name:?} is not a header name"))?;
            HeaderValue::from_str(value)
                .map_err(|_| format!("headers: the value of {name:?} is not a header value"))?;
        }
        if raw.json.is_some() && raw.body.is_some() {
            return Err("json and body: give one or the other".into());
        }
        if let Some(max) = raw.max_body_bytes
            && !(1..=TASK_BODY_MAX).contains(&max)
        {
            return Err(format!("max_body_bytes: must be 1 to {TASK_BODY_MAX}"));
        }
        Ok(FetchArgs(raw))
    }
}

impl From<FetchArgs> for RawFetchArgs {
    fn from(a: FetchArgs) -> RawFetchArgs {
        a.0
    }
}

/// An error in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchErrorInfo {
    /// The taxonomy category.
    pub category: String,
    /// The engine's kind (`status`, `timeout`, `address_refused`, …).
    pub kind: String,
    /// What went wrong.
    pub message: String,
    /// Whether a retry may help.
    pub retryable: bool,
}

impl From<&FetchError> for FetchErrorInfo {
    fn from(e: &FetchError) -> Self {
        FetchErrorInfo {
            category: e.category().as_str().to_owned(),
            kind: e.kind().as_str().to_owned(),
            message: e.message().to_owned(),
            retryable: e.retryable(),
        }
    }
}

/// The result of `http.fetch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchOutput {
    /// The URL as given.
    pub url: String,
    /// After redirects.
    pub final_url: Option<String>,
    /// The last status.
    pub status: Option<u16>,
    /// Headers of interest, lowercase names.
    pub headers: BTreeMap<String, String>,
    /// Body bytes (decoded).
    pub bytes: u64,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// Milliseconds from the first attempt's start to the end.
    pub elapsed_ms: f64,
    /// Attempts made by the engine in this task attempt.
    pub attempts: u32,
    /// Redirects followed.
    pub redirects: u32,
    /// The body's SHA-256 (unless `keep_body`).
    pub sha256: Option<String>,
    /// The body as text (with `keep_body`; lossy UTF-8).
    pub body: Option<String>,
    /// Why it failed (only with `fail_on_status: false`).
    pub error: Option<FetchErrorInfo>,
}

impl FetchOutput {
    fn from_fetched(f: Fetched) -> FetchOutput {
        let headers = HEADERS_OF_INTEREST
            .iter()
            .filter_map(|name| {
                let v = f.headers.get(*name)?.to_str().ok()?;
                Some(((*name).to_owned(), v.to_owned()))
            })
            .collect();
        let (sha256, body) = match f.body {
            BodyOutput::Sha256(h) => (Some(h), None),
            BodyOutput::Bytes(b) => (None, Some(String::from_utf8_lossy(&b).into_owned())),
            _ => (None, None),
        };
        FetchOutput {
            url: f.url,
            final_url: f.final_url,
            status: f.status,
            headers,
            bytes: f.bytes,
            content_type: f.content_type,
            elapsed_ms: f.elapsed.as_secs_f64() * 1000.0,
            attempts: f.attempts,
            redirects: f.redirects,
            sha256,
            body,
            error: f.error.as_ref().map(FetchErrorInfo::from),
        }
    }
}

/// The `http.fetch` kind, on one shared [`Fetcher`] (build it with
/// [`AddressPolicy::public_only`](crate::AddressPolicy::public_only) for work that
/// arrives over the API).
#[derive(Debug, Clone)]
pub struct HttpFetch {
    fetcher: Fetcher,
}

impl HttpFetch {
    /// The kind on `fetcher`.
    pub fn new(fetcher: Fetcher) -> HttpFetch {
        HttpFetch { fetcher }
    }
}

impl Task for HttpFetch {
    const KIND: &'static str = "http.fetch";
    type Args = FetchArgs;
    type Output = FetchOutput;

    async fn run(&self, _ctx: TaskContext, args: FetchArgs) -> Result<FetchOutput, TaskError> {
        let raw = args.0;
        let mut request = FetchRequest::get(raw.url);
        if let Some(m) = raw.method {
            request.method = Method::from_bytes(m.as_bytes()).unwrap_or(Method::GET);
        }
        for (name, value) in &raw.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                request.headers.insert(n, v);
            }
        }
        if let Some(json) = &raw.json {
            request.body = Bytes::from(json.to_string());
            request
                .headers
                .entry(http::header::CONTENT_TYPE)
                .or_insert(HeaderValue::from_static("application/json"));
        } else if let Some(body) = raw.body {
            request.body = Bytes::from(body);
        }
        request.sink = if raw.keep_body {
            BodySink::Buffer
        } else {
            BodySink::Sha256
        };
        let max = raw
            .max_body_bytes
            .unwrap_or(TASK_BODY_MAX)
            .min(self.fetcher.config().max_body_bytes);
        request.max_body_bytes = Some(max);
        let fetched = self.fetcher.fetch(request).await;
        match &fetched.error {
            Some(e) if raw.fail_on_status || e.kind() != crate::FetchErrorKind::Status => {
                let message = match fetched.status {
                    Some(s) if e.kind() != crate::FetchErrorKind::Status => {
                        format!(
                            "{} (last status {s}, {} attempts)",
                            e.message(),
                            fetched.attempts
                        )
                    }
                    _ => format!("{} ({} attempts)", e.message(), fetched.attempts),
                };
                Err(TaskError::new(e.category(), message).retryable(e.retryable()))
            }
            _ => Ok(FetchOutput::from_fetched(fetched)),
        }
    }

    fn settings(&self) -> KindSettings {
        // The engine already retried within the attempt (backoff,
        // Retry-After); the queue retries what is left, later, once more.
        KindSettings {
            max_retries: 1,
            ..KindSettings::default()
        }
    }
}
