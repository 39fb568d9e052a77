//! Route handlers, one module per area.

pub(crate) mod demo;
pub(crate) mod health;
pub(crate) mod openapi;
pub(crate) mod users;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::AppState;

/// `GET /metrics`: Prometheus / OpenMetrics text.
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let body = state.metrics.render(Some(state.db.pool_stats()));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
