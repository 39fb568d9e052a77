//! `GET /health`: liveness plus one check per component.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use surge_queue::Broker;

use crate::AppState;
use crate::error::ErrorObject;

/// How long a component may take to answer its check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a check result is reused. Probes and load balancers may call
/// `/health` thousands of times a second; the database is asked at most
/// once per interval, so an outage shows within this time.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// The last component checks, shared by concurrent `/health` calls.
#[derive(Debug, Default)]
pub(crate) struct HealthCache {
    last: Mutex<Option<(Instant, Probes)>>,
    /// Held by the one caller refreshing the checks (single flight).
    refresh: tokio::sync::Mutex<()>,
}

type Probe = Result<Duration, String>;

/// One probe per component.
#[derive(Debug, Clone)]
struct Probes {
    database: Probe,
    broker: Probe,
}

async fn probe<E: std::fmt::Display>(check: impl Future<Output = Result<(), E>>) -> Probe {
    let started = Instant::now();
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
    }
}

impl HealthCache {
    fn fresh(&self) -> Option<(Instant, Probes)> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.clone().filter(|(at, _)| at.elapsed() < CHECK_INTERVAL)
    }

    /// The checks, at most `CHECK_INTERVAL` old, and when they ran.
    async fn probes(&self, state: &AppState) -> (Instant, Probes) {
        if let Some(hit) = self.fresh() {
            return hit;
        }
        // Boxed: the refresh (pool acquire, query, timer) is a large future,
        // and inline it would be copied through every middleware layer on
        // every request, although it runs at most twice a second.
        Box::pin(self.refresh(state)).await
    }

    async fn refresh(&self, state: &AppState) -> (Instant, Probes) {
        let _refreshing = self.refresh.lock().await;
        if let Some(hit) = self.fresh() {
            return hit; // another caller refreshed while we waited
        }
        let (database, broker) = tokio::join!(
            probe(state.db.ping()),
            probe(state.queue.client().broker().ping())
        );
        let entry = (Instant::now(), Probes { database, broker });
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
    /// The task queue's broker.
    broker: Check,
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
    let (checked_at, probes) = state.health.probes(&state).await;
    let checked_ms_ago = checked_at.elapsed().as_secs_f64() * 1000.0;
    let mut down = Vec::new();
    let mut check = |component: &'static str, backend: &'static str, probe: Probe| match probe {
        Ok(latency) => Check {
            status: "up",
            backend,
            latency_ms: Some(latency.as_secs_f64() * 1000.0),
            checked_ms_ago,
            error: None,
        },
        Err(e) => {
            down.push(format!("{component} ({e})"));
            Check {
                status: "down",
                backend,
                latency_ms: None,
                checked_ms_ago,
                error: Some(e),
            }
        }
    };
    let checks = Checks {
        database: check("database", state.db.backend().as_str(), probes.database),
        broker: check(
            "broker",
            state.queue.client().broker().backend(),
            probes.broker,
        ),
    };
    let error = (!down.is_empty()).then(|| ErrorObject {
        code: "unavailable",
        message: format!("component down: {}", down.join(", ")),
        details: Vec::new(),
    });
    let status = if error.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = Health {
        status: if error.is_some() { "unavailable" } else { "ok" },
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        requests_total: state.metrics.requests_served(),
        checks,
        error,
    };
    (status, Json(body)).into_response()
}
