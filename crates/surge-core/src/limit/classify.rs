//! Turning a service's result into an [`Outcome`] for the limiter.

use std::any::Any;
use std::error::Error;

use http::StatusCode;

use super::Outcome;

/// Decides what a service's result teaches the limiter.
///
/// Implemented by [`HttpClassify`] (the default of
/// [`LimitLayer`](super::LimitLayer)) and by any
/// `Fn(Result<&Res, &Err>) -> Outcome`.
///
/// # Example
///
/// ```
/// use surge_core::limit::{Classify, Outcome};
///
/// // A service whose response is a status code, and whose errors are strings.
/// let classify = |result: Result<&u16, &String>| match result {
///     Ok(503) => Outcome::Overload,
///     Ok(_) => Outcome::Success,
///     Err(_) => Outcome::Ignore,
/// };
/// assert_eq!(classify.classify(Ok(&503)), Outcome::Overload);
/// ```
pub trait Classify<Res, Err> {
    /// The outcome of one call.
    fn classify(&self, result: Result<&Res, &Err>) -> Outcome;
}

impl<F, Res, Err> Classify<Res, Err> for F
where
    F: Fn(Result<&Res, &Err>) -> Outcome,
{
    fn classify(&self, result: Result<&Res, &Err>) -> Outcome {
        self(result)
    }
}

/// The default classifier for HTTP clients: 429 and 503 are
/// [`Outcome::Overload`], every other response is [`Outcome::Success`]; a
/// timeout error is an overload and any other error is
/// [`Outcome::Ignore`] (see [`error_chain_outcome`]).
///
/// Errors are recognised when the service's error type is
/// `tower::BoxError`, `std::io::Error`, `tower::timeout::error::Elapsed` or
/// `tokio::time::error::Elapsed`; for other error types (a client's own error
/// enum) write a closure that calls [`status_outcome`] and
/// [`error_chain_outcome`].
///
/// # Example
///
/// ```
/// use surge_core::limit::{Classify, HttpClassify, Outcome};
///
/// let busy = http::Response::builder().status(429).body(()).unwrap();
/// let fine = http::Response::builder().status(404).body(()).unwrap();
/// type R = Result<http::Response<()>, tower::BoxError>;
/// assert_eq!(HttpClassify.classify(R::Ok(busy).as_ref()), Outcome::Overload);
/// assert_eq!(HttpClassify.classify(R::Ok(fine).as_ref()), Outcome::Success);
/// let timeout: tower::BoxError = Box::new(tower::timeout::error::Elapsed::new());
/// assert_eq!(HttpClassify.classify(R::Err(timeout).as_ref()), Outcome::Overload);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpClassify;

impl<B, E: 'static> Classify<http::Response<B>, E> for HttpClassify {
    fn classify(&self, result: Result<&http::Response<B>, &E>) -> Outcome {
        match result {
            Ok(response) => status_outcome(response.status()),
            Err(error) => known_error_outcome(error),
        }
    }
}

/// 429 Too Many Requests and 503 Service Unavailable are overload; every
/// other status is a latency sample.
pub fn status_outcome(status: StatusCode) -> Outcome {
    match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => Outcome::Overload,
        _ => Outcome::Success,
    }
}

/// [`Outcome::Overload`] if `error` or any of its sources is a timeout
/// (tower's or tokio's `Elapsed`, an `io::Error` of kind `TimedOut`);
/// otherwise [`Outcome::Ignore`] (a refused connection or a bad URL says
/// nothing about the downstream's load).
pub fn error_chain_outcome(error: &(dyn Error + 'static)) -> Outcome {
    let mut next = Some(error);
    while let Some(e) = next {
        if is_timeout(e) {
            return Outcome::Overload;
        }
        next = e.source();
    }
    Outcome::Ignore
}

fn is_timeout(e: &(dyn Error + 'static)) -> bool {
    e.is::<tower::timeout::error::Elapsed>()
        || e.is::<tokio::time::error::Elapsed>()
        || e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
}

/// The error types `HttpClassify` can see inside, found by type (a generic
/// `E: Error` bound would exclude `BoxError`, which is not an `Error`).
fn known_error_outcome<E: 'static>(error: &E) -> Outcome {
    let any: &dyn Any = error;
    if let Some(boxed) = any.downcast_ref::<tower::BoxError>() {
        return error_chain_outcome(boxed.as_ref());
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error + Send>>() {
        return error_chain_outcome(boxed.as_ref());
    }
    if let Some(io) = any.downcast_ref::<std::io::Error>() {
        return error_chain_outcome(io);
    }
    if any.is::<tower::timeout::error::Elapsed>() || any.is::<tokio::time::error::Elapsed>() {
        return Outcome::Overload;
    }
    Outcome::Ignore
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("request failed")]
    struct Wrapper(#[source] std::io::Error);

    #[test]
    fn timeouts_anywhere_in_the_chain_are_overload() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        assert_eq!(error_chain_outcome(&Wrapper(io)), Outcome::Overload);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(error_chain_outcome(&Wrapper(refused)), Outcome::Ignore);
        let boxed: tower::BoxError =
            Box::new(Wrapper(std::io::Error::from(std::io::ErrorKind::TimedOut)));
        assert_eq!(known_error_outcome(&boxed), Outcome::Overload);
        assert_eq!(known_error_outcome(&"a string error"), Outcome::Ignore);
    }

    #[test]
    fn statuses() {
        assert_eq!(
            status_outcome(StatusCode::SERVICE_UNAVAILABLE),
            Outcome::Overload
        );
        assert_eq!(
            status_outcome(StatusCode::TOO_MANY_REQUESTS),
            Outcome::Overload
        );
        assert_eq!(
            status_outcome(StatusCode::INTERNAL_SERVER_ERROR),
            Outcome::Success
        );
        assert_eq!(status_outcome(StatusCode::OK), Outcome::Success);
    }
}
