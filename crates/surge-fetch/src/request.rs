//! One fetch: what to ask ([`FetchRequest`]) and what came of it
//! ([`Fetched`]).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, header};

use crate::body::{BodyOutput, BodySink};
use crate::error::FetchError;

/// A request to fetch.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// Absolute, or relative to the fetcher's base URL.
    pub url: String,
    /// The method.
    pub method: Method,
    /// Headers (over the fetcher's defaults).
    pub headers: HeaderMap,
    /// The body (empty: none).
    pub body: Bytes,
    /// Where the response body goes.
    pub sink: BodySink,
    /// Largest body for this request (`None`: the fetcher's maximum).
    pub max_body_bytes: Option<u64>,
}

impl FetchRequest {
    /// A GET of `url`.
    pub fn get(url: impl Into<String>) -> FetchRequest {
        FetchRequest {
            url: url.into(),
            method: Method::GET,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            sink: BodySink::Discard,
            max_body_bytes: None,
        }
    }

    /// A POST of `json` to `url` (`Content-Type: application/json`).
    pub fn post_json(url: impl Into<String>, json: &serde_json::Value) -> FetchRequest {
        let mut r = FetchRequest::get(url);
        r.method = Method::POST;
        r.body = Bytes::from(json.to_string());
        r.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }

    /// The same request with the body going to `sink`.
    #[must_use]
    pub fn with_sink(mut self, sink: BodySink) -> FetchRequest {
        self.sink = sink;
        self
    }
}

/// What came of a fetch: the final answer's facts, and the error if it
/// failed. An error status is an error too, with its status, headers and
/// size filled in.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// The URL as given.
    pub url: String,
    /// The URL of the last answer (after redirects).
    pub final_url: Option<String>,
    /// The last answer's status.
    pub status: Option<u16>,
    /// The last answer's headers.
    pub headers: HeaderMap,
    /// Body bytes received (decoded) in the last answer.
    pub bytes: u64,
    /// The last answer's `Content-Type`.
    pub content_type: Option<String>,
    /// From the start of the first attempt to the end of the last one
    /// (backoff included; waiting for a slot included).
    pub elapsed: Duration,
    /// Attempts made (1 + retries).
    pub attempts: u32,
    /// Redirects followed in the last attempt.
    pub redirects: u32,
    /// What the body sink produced.
    pub body: BodyOutput,
    /// Why it failed, if it did.
    pub error: Option<FetchError>,
}

impl Fetched {
    /// Whether it succeeded.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}
