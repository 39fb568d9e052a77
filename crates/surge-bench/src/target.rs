//! What is loaded: a labelled HTTP request.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, HeaderName, HeaderValue, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Uri};
use serde::{Deserialize, Serialize};

use crate::BenchError;

/// One target: a label and the request sent to it, again and again.
///
/// # Example
/// ```
/// let t = surge_bench::Target::parse("surge=http://127.0.0.1:8000/health").unwrap();
/// assert_eq!(t.label(), "surge");
/// assert_eq!(t.url(), "http://127.0.0.1:8000/health");
/// assert!(surge_bench::Target::parse("nolabel").is_err());
/// assert!(surge_bench::Target::parse("x=https://example.com/").is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Target {
    label: String,
    url: String,
    authority: String,
    path: Uri,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
}

/// How a target is described in results (the body itself is not kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetInfo {
    /// HTTP method.
    pub method: String,
    /// The URL.
    pub url: String,
    /// Header names and values sent (besides `host`).
    pub headers: Vec<String>,
    /// Request body size in bytes.
    pub body_bytes: u64,
}

impl Target {
    /// Parses `LABEL=URL` (a `GET` with no body; see [`Target::with_method`]
    /// and friends).
    ///
    /// # Errors
    /// [`BenchError::Invalid`] when the label is missing or not printable,
    /// or the URL is not `http://HOST[:PORT]/…` (https is not supported).
    pub fn parse(spec: &str) -> Result<Target, BenchError> {
        let Some((label, url)) = spec.split_once('=') else {
            return Err(BenchError::invalid(format!(
                "--target {spec:?}: expected LABEL=URL, e.g. surge=http://127.0.0.1:8000/health"
            )));
        };
        Target::new(label, url)
    }

    /// A `GET` of `url` labelled `label`.
    ///
    /// # Errors
    /// As [`Target::parse`].
    pub fn new(label: &str, url: &str) -> Result<Target, BenchError> {
        let label = label.trim();
        if label.is_empty() || label.len() > 64 || label.chars().any(char::is_control) {
            return Err(BenchError::invalid(format!(
                "--target label {label:?}: give 1 to 64 printable characters before '='"
            )));
        }
        let bad = |why: &str| {
            BenchError::invalid(format!(
                "--target {label}={url}: {why}; expected http://HOST[:PORT]/PATH"
            ))
        };
        let uri: Uri = url.parse().map_err(|e| bad(&format!("not a URL ({e})")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(bad("https is not supported (plain HTTP/1.1 only)")),
            Some(other) => return Err(bad(&format!("scheme {other:?} is not supported"))),
            None => return Err(bad("the scheme is missing")),
        }
        let authority = uri
            .authority()
            .filter(|a| !a.host().is_empty())
            .ok_or_else(|| bad("the host is missing"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user info in the URL is not supported (send a header)"));
        }
        let authority = match authority.port_u16() {
            Some(_) => authority.as_str().to_owned(),
            None => format!("{}:80", authority.host()),
        };
        let path: Uri = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e| bad(&format!("bad path ({e})")))?;
        let mut headers = HeaderMap::new();
        let host = uri.authority().map_or("", |a| a.as_str());
        headers.insert(
            HOST,
            HeaderValue::from_str(host).map_err(|_| bad("bad host"))?,
        );
        Ok(Target {
            label: label.to_owned(),
            url: url.to_owned(),
            authority,
            path,
            method: Method::GET,
            headers,
            body: Bytes::new(),
        })
    }

    /// Sends `method` instead of `GET`.
    ///
    /// # Errors
    /// [`BenchError::Invalid`] for a method that is not a token.
    pub fn with_method(mut self, method: &str) -> Result<Target, BenchError> {
        self.method =
            Method::from_bytes(method.trim().to_ascii_uppercase().as_bytes()).map_err(|_| {
                BenchError::invalid(format!("method {method:?} for {}: not a token", self.label))
            })?;
        Ok(self)
    }

    /// Adds a `Name: value` header (a later one of the same name replaces it).
    ///
    /// # Errors
    /// [`BenchError::Invalid`] when it is not `Name: value`.
    pub fn with_header(mut self, header: &str) -> Result<Target, BenchError> {
        let bad = || {
            BenchError::invalid(format!(
                "header {header:?} for {}: expected 'Name: value'",
                self.label
            ))
        };
        let (name, value) = header.split_once(':').ok_or_else(bad)?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
        self.headers.insert(name, value);
        Ok(self)
    }

    /// Sends `body` with every request (and its `content-length`).
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Target {
        self.body = body.into();
        self
    }

    /// The label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The description kept in results.
    pub fn info(&self) -> TargetInfo {
        TargetInfo {
            method: self.method.to_string(),
            url: self.url.clone(),
            headers: self
                .headers
                .iter()
                .filter(|(k, _)| *k != HOST)
                .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("<binary>")))
                .collect(),
            body_bytes: self.body.len() as u64,
        }
    }

    /// One request for hyper's client (origin-form URI, `host` set).
    pub(crate) fn request(&self) -> http::Request<http_body_util::Full<Bytes>> {
        let mut req = http::Request::new(http_body_util::Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.path.clone();
        // hyper keeps the request's header map and parses the response's
        // headers into it: room for a typical response's saves a regrowth
        // per request (a clone has only room for what it holds).
        let headers = req.headers_mut();
        headers.reserve(self.headers.len() + 12);
        for (name, value) in &self.headers {
            headers.append(name, value.clone());
        }
        req
    }

    /// The method.
    pub(crate) fn method(&self) -> &Method {
        &self.method
    }

    /// The request as HTTP/1.1 bytes, for the lean client: request line,
    /// `host` first, the headers, a `content-length` when there is a body
    /// (or the method expects one) and none was given, then the body.
    pub(crate) fn encode(&self) -> Bytes {
        let path = self.path.path_and_query().map_or("/", |p| p.as_str());
        let mut wire = Vec::with_capacity(64 + path.len() + self.body.len());
        for part in [self.method.as_str(), " ", path, " HTTP/1.1\r\n"] {
            wire.extend_from_slice(part.as_bytes());
        }
        for (name, value) in &self.headers {
            wire.extend_from_slice(name.as_str().as_bytes());
            wire.extend_from_slice(b": ");
            wire.extend_from_slice(value.as_bytes());
            wire.extend_from_slice(b"\r\n");
        }
        let framed = self.headers.contains_key(CONTENT_LENGTH)
            || self.headers.contains_key(TRANSFER_ENCODING);
        let expects_body = matches!(self.method, Method::POST | Method::PUT | Method::PATCH);
        if !framed && (!self.body.is_empty() || expects_body) {
            wire.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        }
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(&self.body);
        wire.into()
    }

    /// Resolves the host and opens (and closes) one TCP connection, so that
    /// an unreachable target is reported before any load starts.
    ///
    /// # Errors
    /// [`BenchError::Unreachable`] with the resolver's or the socket's
    /// reason.
    pub fn check_reachable(&self, timeout: Duration) -> Result<SocketAddr, BenchError> {
        let unreachable = |reason: String| BenchError::Unreachable {
            label: self.label.clone(),
            url: self.url.clone(),
            reason,
        };
        let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&self.authority)
            .map_err(|e| unreachable(format!("cannot resolve {}: {e}", self.authority)))?
            .collect();
        let mut last = format!("{} resolves to no address", self.authority);
        for addr in addrs {
            match std::net::TcpStream::connect_timeout(&addr, timeout) {
                Ok(_) => return Ok(addr),
                Err(e) => last = format!("cannot connect to {addr}: {e}"),
            }
        }
        Err(unreachable(last))
    }
}
