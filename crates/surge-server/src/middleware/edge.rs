//! The per-request edge: request id, JSON errors and metrics in one
//! middleware — one boxed future per request instead of one per concern.

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use surge_core::ErrorCategory;

use super::REQUEST_ID;
use super::json_errors::ensure_json;
use crate::AppState;

/// Longest client-supplied request id kept; a longer one is replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// 1. Reuses the client's `x-request-id` (if short and printable) or makes
///    a UUID, puts it on the request (for handlers and logs) and echoes it on
///    the response.
/// 2. Makes any non-JSON error response JSON ([`ensure_json`]).
/// 3. Records the request in [`crate::metrics::Metrics`] under its route
///    template (`/users/{id}`, never the raw path, so label sets stay
///    bounded).
/// 4. Logs every 5xx at WARN with its request id, method and route (the
///    per-request span is DEBUG, so this is what ties an error to a request
///    at the default level).
pub(crate) async fn edge(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let id = match req.headers().get(&REQUEST_ID) {
        Some(v) if v.len() <= MAX_REQUEST_ID_LEN && v.to_str().is_ok() => v.clone(),
        _ => {
            let fresh = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
            req.headers_mut().insert(REQUEST_ID, fresh.clone());
            fresh
        }
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let guard = state.metrics.start(req.method().as_str(), route);
    let method = req.method().clone();
    let matched = req.extensions().get::<MatchedPath>().cloned();

    let mut resp = ensure_json(next.run(req).await);

    resp.headers_mut().insert(REQUEST_ID, id.clone());
    let status = resp.status();
    let category = resp
        .extensions()
        .get::<ErrorCategory>()
        .copied()
        .or_else(|| {
            if status.is_server_error() {
                Some(ErrorCategory::System)
            } else if status.is_client_error() {
                Some(ErrorCategory::Validation)
            } else {
                None
            }
        });
    guard.finish(status.as_u16(), category);
    if status.is_server_error() {
        tracing::warn!(
            request_id = id.to_str().unwrap_or_default(),
            %method,
            route = matched.as_ref().map_or("unmatched", MatchedPath::as_str),
            status = status.as_u16(),
            "request failed"
        );
    }
    resp
}
