//! The engine's one error type: a kind, in one taxonomy category, saying
//! whether another attempt may succeed.

use std::error::Error as StdError;

use surge_core::ErrorCategory;

/// What went wrong with one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FetchErrorKind {
    /// The URL does not parse, has no host or is not `http`/`https`.
    InvalidUrl,
    /// The request itself is wrong (method, header, body).
    InvalidRequest,
    /// The address the name resolved to (or the IP literal) is refused by
    /// the [`AddressPolicy`](crate::AddressPolicy): private, loopback,
    /// link-local, CGNAT, cloud metadata, …
    AddressRefused,
    /// The name did not resolve.
    Dns,
    /// No connection could be made (refused, unreachable, TLS handshake).
    Connect,
    /// The connection could not be made within the connect timeout.
    ConnectTimeout,
    /// The connection was cut before the answer was complete (reset,
    /// closed, dropped).
    Connection,
    /// The peer sent something that is not HTTP (malformed status line or
    /// headers).
    Protocol,
    /// The request took longer than the whole-request timeout.
    Timeout,
    /// Nothing arrived for longer than the idle-read timeout.
    ReadTimeout,
    /// The peer answered with an error status (4xx / 5xx).
    Status,
    /// The body was larger than the maximum size (counted after
    /// decompression).
    BodyTooLarge,
    /// The body could not be decoded (bad gzip, brotli, deflate).
    Decode,
    /// More redirects than allowed (a loop, or a chain too long).
    TooManyRedirects,
    /// A redirect without a usable `Location` (missing, bad, other scheme).
    BadRedirect,
    /// Our own side failed: a file could not be written, no file
    /// descriptors left, …
    System,
}

impl FetchErrorKind {
    /// The taxonomy category.
    pub const fn category(self) -> ErrorCategory {
        use FetchErrorKind::*;
        match self {
            InvalidUrl | InvalidRequest | AddressRefused | BodyTooLarge => {
                ErrorCategory::Validation
            }
            Dns | Connect | Connection | Protocol | Decode => ErrorCategory::Network,
            ConnectTimeout | Timeout | ReadTimeout => ErrorCategory::Timeout,
            Status | TooManyRedirects | BadRedirect => ErrorCategory::HttpStatus,
            System => ErrorCategory::System,
        }
    }

    /// The stable snake_case name (JSONL `error_kind`).
    pub const fn as_str(self) -> &'static str {
        use FetchErrorKind::*;
        match self {
            InvalidUrl => "invalid_url",
            InvalidRequest => "invalid_request",
            AddressRefused => "address_refused",
            Dns => "dns",
            Connect => "connect",
            ConnectTimeout => "connect_timeout",
            Connection => "connection",
            Protocol => "protocol",
            Timeout => "timeout",
            ReadTimeout => "read_timeout",
            Status => "status",
            BodyTooLarge => "body_too_large",
            Decode => "decode",
            TooManyRedirects => "too_many_redirects",
            BadRedirect => "bad_redirect",
            System => "system",
        }
    }
}

/// One fetch's failure.
///
/// # Example
/// ```
/// use surge_fetch::{FetchError, FetchErrorKind};
/// use surge_core::ErrorCategory;
/// let e = FetchError::status(503);
/// assert_eq!(e.category(), ErrorCategory::HttpStatus);
/// assert!(e.retryable());
/// assert!(!FetchError::status(501).retryable());
/// assert!(!FetchError::status(404).retryable());
/// assert!(!FetchError::new(FetchErrorKind::InvalidUrl, "no host").retryable());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    kind: FetchErrorKind,
    message: String,
    retryable: bool,
}

impl FetchError {
    /// An error of `kind`; whether a retry may help follows from the kind.
    pub fn new(kind: FetchErrorKind, message: impl Into<String>) -> FetchError {
        use FetchErrorKind::*;
        let retryable = matches!(
            kind,
            Connect | ConnectTimeout | Connection | Timeout | ReadTimeout | System
        );
        FetchError {
            kind,
            message: message.into(),
            retryable,
        }
    }

    /// An error status: a retry may help for 408, 429 and 5xx except 501.
    pub fn status(status: u16) -> FetchError {
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        FetchError {
            kind: FetchErrorKind::Status,
            message: format!("HTTP {status} {reason}").trim_end().to_owned(),
            retryable: status_retry_may_help(status),
        }
    }

    /// Overrides whether a retry may help.
    #[must_use]
    pub fn with_retryable(mut self, retryable: bool) -> FetchError {
        self.retryable = retryable;
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> FetchErrorKind {
        self.kind
    }

    /// The taxonomy category.
    pub fn category(&self) -> ErrorCategory {
        self.kind.category()
    }

    /// Whether another attempt may succeed.
    pub fn retryable(&self) -> bool {
        self.retryable
    }

    /// The message, for people.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Whether a retry may help after `status`: 408 (request timeout), 429
/// (too many requests) and every 5xx except 501 (not implemented).
pub const fn status_retry_may_help(status: u16) -> bool {
    matches!(status, 408 | 429) || (status >= 500 && status <= 599 && status != 501)
}

/// The first error of type `T` in `e`'s source chain (itself included).
pub(crate) fn find_source<'a, T: StdError + 'static>(
    e: &'a (dyn StdError + 'static),
) -> Option<&'a T> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        next = err.source();
    }
    None
}

/// `e` and its sources, joined with ": " (hyper's own messages are terse).
pub(crate) fn chain_message(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(err) = next {
        let s = err.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = err.source();
    }
    out
}

/// Classifies an error of the client, of the connector or of a body read.
pub(crate) fn classify(e: &(dyn StdError + 'static)) -> FetchError {
    let message = chain_message(e);
    if let Some(dns) = find_source::<crate::dns::DnsError>(e) {
        return dns.to_fetch_error();
    }
    if let Some(own) = find_source::<FetchError>(e) {
        return own.clone();
    }
    let connect =
        find_source::<hyper_util::client::legacy::Error>(e).is_some_and(|c| c.is_connect());
    if let Some(io) = find_source::<std::io::Error>(e) {
        use std::io::ErrorKind as K;
        // EMFILE / ENFILE: our side ran out of descriptors.
        if matches!(io.raw_os_error(), Some(23 | 24)) {
            return FetchError::new(FetchErrorKind::System, message);
        }
        match io.kind() {
            K::TimedOut if connect => {
                return FetchError::new(FetchErrorKind::ConnectTimeout, message);
            }
            K::TimedOut => return FetchError::new(FetchErrorKind::ReadTimeout, message),
            K::InvalidData if !connect => {
                return FetchError::new(FetchErrorKind::Decode, message);
            }
            _ => {}
        }
    }
    if connect {
        return FetchError::new(FetchErrorKind::Connect, message);
    }
    if let Some(h) = find_source::<hyper::Error>(e) {
        if h.is_parse() || h.is_parse_status() {
            return FetchError::new(FetchErrorKind::Protocol, message);
        }
        return FetchError::new(FetchErrorKind::Connection, message);
    }
    FetchError::new(FetchErrorKind::Connection, message)
}
