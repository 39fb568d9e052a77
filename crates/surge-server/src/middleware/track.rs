//! The per-request edge: JSON errors and metrics, in one middleware (one
//! boxed future per request instead of two).

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use surge_core::ErrorCategory;

use super::json_errors::ensure_json;
use crate::AppState;

/// Makes any non-JSON error response JSON ([`ensure_json`]), then records
/// the request in [`crate::metrics::Metrics`] under its route template
/// (`/users/{id}`, never the raw path, so label sets stay bounded).
pub(crate) async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let guard = state.metrics.start(req.method().as_str(), route);
    let resp = ensure_json(next.run(req).await);
    let status = resp.status();
    let category = resp
        .extensions()
        .get::<ErrorCategory>()
        .copied()
        .or_else(|| {
            (status.is_client_error() || status.is_server_error()).then_some(
                if status.is_server_error() {
                    ErrorCategory::System
                } else {
                    ErrorCategory::Validation
                },
            )
        });
    guard.finish(status.as_u16(), category);
    resp
}
