//! Route handlers, one module per area.

pub(crate) mod crawls;
pub(crate) mod dashboard;
pub(crate) mod demo;
pub(crate) mod health;
pub(crate) mod openapi;
pub(crate) mod schedules;
pub(crate) mod stats;
pub(crate) mod tasks;
pub(crate) mod users;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use surge_queue::Broker;

use crate::AppState;

/// `GET /metrics`: Prometheus / OpenMetrics text.
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    match state.queue.client().broker().counts().await {
        Ok(counts) => state.metrics.tasks().set_depth(&counts),
        Err(e) => tracing::warn!(error = %e, "queue depth not read for /metrics"),
    }
    let body = state.metrics.render(Some(state.db.pool_stats()));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
