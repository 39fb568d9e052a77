//! `GET /health`: liveness plus one check per component.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ErrorObject;

/// How long a component may take to answer its check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a check result is reused. Probes and load balancers may call
/// `/health` thousands of times a second; the database is asked at most
/// once per interval, so an outage shows within this time.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// The last database check, shared by concurrent `/health` calls.
#[derive(Debug, Default)]
pub(crate) struct HealthCache {
    last: Mutex<Option<(Instant, DbCheck)>>,
    /// Held by the one caller refreshing the check (single flight).
    refresh: tokio::sync::Mutex<()>,
}

type DbCheck = Result<Duration, String>;

impl HealthCache {
    fn fresh(&self) -> Option<(Instant, DbCheck)> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.clone().filter(|(at, _)| at.elapsed() < CHECK_INTERVAL)
    }

    /// The database check, at most `CHECK_INTERVAL` old, and when it ran.
    async fn database(&self, state: &AppState) -> (Instant, DbCheck) {
        if let Some(hit) = self.fresh() {
            return hit;
        }
        // Boxed: the refresh (pool acquire, query, timer) is a large future,
        // and inline it would be copied through every middleware layer on
        // every request, although it runs at most twice a second.
        Box::pin(self.refresh(state)).await
    }

    async fn refresh(&self, state: &AppState) -> (Instant, DbCheck) {
        let _refreshing = self.refresh.lock().await;
        if let Some(hit) = self.fresh() {
            return hit; // another caller refreshed while we waited
        }
        let started = Instant::now();
        let result = match tokio::time::timeout(CHECK_TIMEOUT, state.db.ping()).await {
            Ok(Ok(())) => Ok(started.elapsed()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
        };
        let entry = (Instant::now(), result);
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(entry.clone());
        entry
    }
}

/// The health report.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok` when every component is up, else `unavailable`.
    status: &'static str,
    /// surge's version.
    version: &'static str,
    /// Seconds since the server started.
    uptime_seconds: f64,
    /// Requests completed since start.
    requests_total: u64,
    /// One entry per component.
    checks: Checks,
    /// Present when a component is down, naming it.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorObject>,
}

/// The components checked.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Checks {
    /// The database of the API (users).
    database: Check,
}

/// One component's state.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Check {
    /// `up` or `down`.
    status: &'static str,
    /// The backend behind the component (e.g. `sqlite`).
    backend: &'static str,
    /// How long the check took.
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    /// How long ago the check ran (results are reused for up to 0.5 s).
    checked_ms_ago: f64,
    /// Why it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Status of the service and its components.
#[utoipa::path(get, path = "/health", tag = "service",
    responses(
        (status = 200, description = "Every component is up", body = Health),
        (status = 503, description = "A component is down; `error` names it", body = Health),
    ))]
pub(crate) async fn health(State(state): State<AppState>) -> Response {
    let (checked_at, db) = state.health.database(&state).await;
    let checked_ms_ago = checked_at.elapsed().as_secs_f64() * 1000.0;
    let backend = state.db.backend().as_str();
    let (check, down) = match db {
        Ok(latency) => (
            Check {
                status: "up",
                backend,
                latency_ms: Some(latency.as_secs_f64() * 1000.0),
                checked_ms_ago,
                error: None,
            },
            None,
        ),
        Err(e) => (
            Check {
                status: "down",
                backend,
                latency_ms: None,
                checked_ms_ago,
                error: Some(e.clone()),
            },
            Some(ErrorObject {
                code: "unavailable",
                message: format!("component down: database ({e})"),
                details: Vec::new(),
            }),
        ),
    };
    let status = if down.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = Health {
        status: if down.is_some() { "unavailable" } else { "ok" },
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        requests_total: state.metrics.requests_served(),
        checks: Checks { database: check },
        error: down,
    };
    (status, Json(body)).into_response()
}
