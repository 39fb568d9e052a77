//! The per-request edge: request id, JSON errors, metrics and the 5xx log
//! line, in one hand-written layer. No boxed future and no cloned service per
//! request: this runs on every request, so it costs what a `from_fn`
//! middleware would only where it must.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::BoxError;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method};
use axum::response::Response;
use surge_core::ErrorCategory;
use tower::{Layer, Service};

use super::REQUEST_ID;
use super::json_errors::ensure_json;
use crate::metrics::{InFlight, Metrics};

/// Longest client-supplied request id kept; a longer one is replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Wraps a route in [`Edge`].
#[derive(Clone)]
pub(crate) struct EdgeLayer {
    metrics: Arc<Metrics>,
}

impl EdgeLayer {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        EdgeLayer { metrics }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// For every request:
/// 1. reuses the client's `x-request-id` (if short and printable) or makes a
///    UUID, puts it on the request (for handlers and logs) and echoes it on
///    the response;
/// 2. makes any non-JSON error response JSON ([`ensure_json`]);
/// 3. records the request in [`Metrics`] under its route template
///    (`/users/{id}`, never the raw path, so label sets stay bounded);
/// 4. logs every 5xx at WARN with its request id, method and route (the
///    per-request span is DEBUG, so this is what ties an error to a request
///    at the default level).
#[derive(Clone)]
pub(crate) struct Edge<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<Request> for Edge<S>
where
    S: Service<Request, Response = axum::http::Response<B>, Error = Infallible>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let id = match req.headers().get(&REQUEST_ID) {
            Some(v) if v.len() <= MAX_REQUEST_ID_LEN && v.to_str().is_ok() => v.clone(),
            _ => {
                let fresh = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                    .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
                req.headers_mut().insert(REQUEST_ID, fresh.clone());
                fresh
            }
        };
        let matched = req.extensions().get::<MatchedPath>().cloned();
        let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
        let in_flight = self.metrics.start(req.method().as_str(), route);
        let method = req.method().clone();
        EdgeFuture {
            inner: self.inner.call(req),
            done: Some(Finish {
                id,
                method,
                matched,
                in_flight,
            }),
        }
    }
}

/// What the edge needs once the response is known.
struct Finish {
    id: HeaderValue,
    method: Method,
    matched: Option<MatchedPath>,
    in_flight: InFlight,
}

pin_project_lite::pin_project! {
    /// The future of [`Edge`]. Dropped before completion (the client went
    /// away), its `InFlight` records the request as cancelled.
    pub(crate) struct EdgeFuture<F> {
        #[pin]
        inner: F,
        done: Option<Finish>,
    }
}

impl<F, B> Future for EdgeFuture<F>
where
    F: Future<Output = Result<axum::http::Response<B>, Infallible>>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(resp) = ready!(this.inner.poll(cx));
        let Finish {
            id,
            method,
            matched,
            in_flight,
        } = this
            .done
            .take()
            .expect("EdgeFuture polled after completion");
        let mut resp = ensure_json(resp.map(Body::new));
        let status = resp.status();
        let category = resp.extensions().get::<ErrorCategory>().copied().or({
            if status.is_server_error() {
                Some(ErrorCategory::System)
            } else if status.is_client_error() {
                Some(ErrorCategory::Validation)
            } else {
                None
            }
        });
        in_flight.finish(status.as_u16(), category);
        if status.is_server_error() {
            tracing::warn!(
                request_id = id.to_str().unwrap_or_default(),
                %method,
                route = matched.as_ref().map_or("unmatched", MatchedPath::as_str),
                status = status.as_u16(),
                "request failed"
            );
        }
        resp.headers_mut().insert(REQUEST_ID, id);
        Poll::Ready(Ok(resp))
    }
}
