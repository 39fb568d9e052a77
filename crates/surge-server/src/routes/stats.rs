//! `GET /stats`: the whole system in one JSON document (what the dashboard
//! draws).
//!
//! Access: open like `/metrics`, for what `/metrics` already tells
//! (counts, rates, percentiles, pools, caches, limiters). The lists the API
//! guards — workers, schedules, failed and active tasks with their errors —
//! are included only when no token is configured or the request carries it;
//! a wrong token is refused with 401.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::Serialize;
use surge_core::ErrorCategory;
use surge_core::cache::{Bound, CacheSnapshot};
use surge_core::limit::LimiterSnapshot;
use surge_core::observe::Observatory;
use surge_queue::model::WorkerInfo;
use surge_queue::{Broker, TaskError, TaskId, TaskRecord, TaskState};
use utoipa::ToSchema;

use super::schedules::ScheduleView;
use crate::AppState;
use crate::error::ErrorBody;
use crate::middleware::{ApiToken, Presented};
use crate::stats::history::{SAMPLE_INTERVAL, Snapshot, StatsPoint};
use crate::stats::queue::QueueRead;
use crate::stats::window::{Percentiles, percentiles};
use crate::task_metrics::OUTCOMES;

/// What `/stats` needs from the server's configuration.
#[derive(Clone)]
pub(crate) struct StatsConfig {
    pub(crate) token: Option<ApiToken>,
    pub(crate) max_in_flight: usize,
    /// Where the live limiters and caches are listed.
    pub(crate) observatory: &'static Observatory,
}

impl std::fmt::Debug for StatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsConfig")
            .field("token", &self.token)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

/// Everything the dashboard shows.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatsView {
    /// When this document was made.
    generated_at: DateTime<Utc>,
    /// surge's version.
    version: &'static str,
    /// Seconds since the server started.
    uptime_seconds: f64,
    /// Seconds the rates and percentiles cover: the last minute (less just
    /// after start).
    window_seconds: f64,
    access: StatsAccess,
    service: ServiceStats,
    queue: QueueStats,
    /// Connection pools.
    pools: Vec<PoolUsage>,
    /// The caches registered in the process's observatory (fetch, crawl,
    /// library code), in registration order.
    caches: Vec<CacheView>,
    /// The concurrency limiters registered in the process's observatory
    /// (the server's own inbound limit among them), in registration order.
    limiters: Vec<LimiterView>,
    series: StatsSeries,
}

/// What this caller may see.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatsAccess {
    /// An API token is configured: actions (submit, retry, cancel) need it.
    token_required: bool,
    /// The task-level lists (workers, schedules, failures, active tasks)
    /// are included: no token is configured, or this request carried it.
    details: bool,
}

/// The HTTP service.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ServiceStats {
    /// Requests completed since start (every route, `/stats` included).
    requests_total: u64,
    /// Requests completed per second over the window.
    requests_per_second: f64,
    /// Request latency over the window (none without requests).
    latency: Option<Percentiles>,
    /// Responses since start per status class (`1xx` … `5xx`; a client
    /// that went away before the answer counts as 499).
    status_classes: BTreeMap<String, u64>,
    /// Error responses since start per category (every category listed).
    errors: BTreeMap<String, u64>,
    /// Error responses per second over the window.
    errors_per_second: f64,
    /// Requests being served now.
    in_flight: i64,
    /// Requests served at once before more are shed (`--max-in-flight`).
    max_in_flight: usize,
    /// Requests refused with 503 `overloaded` since start.
    shed_total: u64,
    /// Requests shed per second over the window.
    shed_per_second: f64,
    /// How late a 50 ms timer fired over the window: high values mean
    /// something blocks the async runtime (none before the first probe).
    runtime_lag: Option<Percentiles>,
}

/// The task queue: the broker's counts and lists, and what this process's
/// workers ran.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueueStats {
    /// `sqlite`, `postgres` or `redis`.
    backend: &'static str,
    /// How old the broker read is (reads are shared and made at most once
    /// a second; slower reads are reused longer). Absent before the first
    /// successful read.
    read_ms_ago: Option<f64>,
    /// How long the last broker read took.
    read_took_ms: f64,
    /// Why the last broker read failed (the figures are then from the last
    /// successful one).
    error: Option<String>,
    /// Tasks per state, all queues (every state listed).
    states: BTreeMap<String, u64>,
    /// Tasks per queue and state.
    queues: Vec<QueueStateCounts>,
    /// Task kinds this server accepts (for the submit form).
    registered_kinds: Vec<String>,
    /// Per task kind, the attempts this process's embedded workers ran
    /// (`surge worker` processes report to their own `/metrics`).
    kinds: Vec<KindStats>,
    /// Attempts that ended in a retry, since start (this process).
    retries_total: u64,
    /// Tasks of expired leases put back to wait, since start (this
    /// process's rescues).
    rescued_total: u64,
    /// Rescued tasks that had no attempt left and are now dead.
    rescued_dead_total: u64,
    /// Attempts dropped by their hard time limit, since start.
    time_limit_kills_total: u64,
    /// Completions refused because the worker's lease was lost.
    fenced_total: u64,
    /// Cron ticks fired by this process's scheduler.
    schedule_ticks_fired_total: u64,
    /// Workers registered on the broker (every process). Absent without
    /// access to details.
    workers: Option<Vec<WorkerLease>>,
    /// Cron schedules. Absent without access to details.
    schedules: Option<Vec<ScheduleView>>,
    /// The latest failed, dead and retrying tasks (up to 10 per state),
    /// with their error. Absent without access to details.
    failures: Option<Vec<TaskBrief>>,
    /// The newest running, pending and scheduled tasks (up to 10 per
    /// state). Absent without access to details.
    active: Option<Vec<TaskBrief>>,
}

/// One queue's counts.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueueStateCounts {
    name: String,
    /// Tasks per state (every state listed).
    counts: BTreeMap<String, u64>,
}

/// One task kind, as run by this process's workers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KindStats {
    kind: String,
    /// Attempts ended since start, per outcome (`succeeded`, `retry`,
    /// `failed`, `dead`, `cancelled`, `requeued`).
    finished: BTreeMap<String, u64>,
    /// Attempts ended per second over the window.
    finished_per_second: f64,
    /// Run time of the attempts that ended in the window.
    run: Option<Percentiles>,
    /// Time from due to start of the attempts that started in the window.
    wait: Option<Percentiles>,
}

/// A worker with its lease.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WorkerLease {
    #[serde(flatten)]
    info: WorkerInfo,
    /// Seconds since its last heartbeat.
    heartbeat_age_seconds: f64,
    /// Seconds until its lease expires (negative: expired, its tasks are
    /// rescued).
    lease_left_seconds: f64,
}

/// A task in a list.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskBrief {
    #[schema(value_type = String, format = Uuid)]
    id: TaskId,
    kind: String,
    queue: String,
    state: TaskState,
    /// Attempts started.
    attempts: u32,
    max_retries: u32,
    /// The last attempt's error.
    error: Option<TaskError>,
    /// Not run before this time.
    run_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<&TaskRecord> for TaskBrief {
    fn from(t: &TaskRecord) -> Self {
        TaskBrief {
            id: t.id,
            kind: t.kind.clone(),
            queue: t.queue.clone(),
            state: t.state,
            attempts: t.attempts,
            max_retries: t.max_retries,
            error: t.error.clone(),
            run_at: t.run_at,
            created_at: t.created_at,
            finished_at: t.finished_at,
        }
    }
}

/// A connection pool.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PoolUsage {
    /// `database` (the API's database), `broker` (the task broker's
    /// connections) or `worker slots` (tasks this process's embedded
    /// workers run at once).
    name: &'static str,
    /// `sqlite`, `postgres` or `redis`.
    backend: &'static str,
    /// Connections open.
    size: u32,
    /// Open and unused.
    idle: u32,
    /// Open and in use.
    in_use: u32,
    /// Callers waiting for a connection; for worker slots, tasks pending on
    /// the queues they serve. Absent where it is not counted (the broker).
    waiting: Option<u32>,
    /// Most connections it opens.
    max: u32,
}

/// The database pool, the broker's pool (SQLite: its read pool; Redis has
/// none: one multiplexed connection) and the embedded workers' slots.
fn pools(state: &AppState, queue: &QueueStats) -> Vec<PoolUsage> {
    let db = state.db.pool_stats();
    let mut pools = vec![PoolUsage {
        name: "database",
        backend: state.db.backend().as_str(),
        size: db.size,
        idle: db.idle,
        in_use: db.size.saturating_sub(db.idle),
        waiting: Some(db.waiting),
        max: db.max,
    }];
    let broker = state.queue.client().broker();
    if let Some(pool) = broker.pool() {
        pools.push(PoolUsage {
            name: "broker",
            backend: broker.backend(),
            size: pool.size,
            idle: pool.idle,
            in_use: pool.size.saturating_sub(pool.idle),
            waiting: None,
            max: pool.max,
        });
    }
    if let Some(slots) = state.queue.slots.as_ref() {
        let size = u32::try_from(slots.size()).unwrap_or(u32::MAX);
        let in_use = u32::try_from(slots.in_use()).unwrap_or(u32::MAX);
        // Tasks ready now on the queues these slots serve, as of the last
        // broker read.
        let pending: u64 = queue
            .queues
            .iter()
            .filter(|q| slots.queues().contains(&q.name))
            .filter_map(|q| q.counts.get(TaskState::Pending.as_str()))
            .sum();
        pools.push(PoolUsage {
            name: "worker slots",
            backend: broker.backend(),
            size,
            idle: size.saturating_sub(in_use),
            in_use,
            waiting: Some(u32::try_from(pending).unwrap_or(u32::MAX)),
            max: size,
        });
    }
    pools
}

/// A cache.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CacheView {
    /// The name it was registered under.
    name: String,
    /// Lookups that found a value.
    hits: u64,
    /// Lookups that found none.
    misses: u64,
    /// `hits / (hits + misses)`; 0 before the first lookup.
    hit_ratio: f64,
    /// Entries stored.
    entries: u64,
    /// Total weight stored (equals `entries` for an entry-bounded cache).
    weight: u64,
    /// The most entries, or the most weight, it keeps.
    capacity: u64,
    /// What `capacity` counts: `entries` or `weight`.
    bound: &'static str,
    /// Computations run on a miss.
    computes: u64,
    /// Misses that waited for another caller's computation instead of
    /// running their own (single flight).
    coalesced: u64,
}

impl CacheView {
    fn new(name: String, c: CacheSnapshot) -> Self {
        CacheView {
            name,
            hits: c.hits,
            misses: c.misses,
            hit_ratio: c.hit_ratio,
            entries: c.entries,
            weight: c.weight,
            capacity: c.capacity,
            bound: match c.bound {
                Bound::Entries => "entries",
                Bound::Weight => "weight",
            },
            computes: c.computes,
            coalesced: c.coalesced,
        }
    }
}

/// A concurrency limiter.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LimiterView {
    /// The name it was registered under.
    name: String,
    /// `static`, `gradient` or `vegas`.
    algorithm: &'static str,
    /// Work that may run at once now.
    limit: usize,
    /// Work running now.
    in_flight: usize,
    /// Callers waiting for a slot.
    waiting: usize,
    /// The no-load latency estimate (adaptive only).
    latency_floor_ms: Option<f64>,
    /// The median latency of the last window (adaptive only).
    latency_recent_ms: Option<f64>,
    /// Slots released with a success.
    successes: u64,
    /// Slots released with an overload (429, 503, timeout): the adaptive
    /// limit is cut.
    overloads: u64,
    /// Slots released without a sample.
    ignored: u64,
    /// Attempts refused at the limit (shed).
    rejected: u64,
}

impl LimiterView {
    fn new(name: String, l: LimiterSnapshot) -> Self {
        LimiterView {
            name,
            algorithm: l.algorithm,
            limit: l.limit,
            in_flight: l.in_flight,
            waiting: l.waiting,
            latency_floor_ms: l.latency_floor_ms,
            latency_recent_ms: l.latency_recent_ms,
            successes: l.successes,
            overloads: l.overloads,
            ignored: l.ignored,
            rejected: l.rejected,
        }
    }
}

/// The caches and limiters `observatory` lists now.
fn observed(observatory: &Observatory) -> (Vec<CacheView>, Vec<LimiterView>) {
    let caches = observatory.caches().into_iter();
    let limiters = observatory.limiters().into_iter();
    (
        caches.map(|(n, c)| CacheView::new(n, c)).collect(),
        limiters.map(|(n, l)| LimiterView::new(n, l)).collect(),
    )
}

/// The time series: one point per sampling interval, the last five minutes.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatsSeries {
    /// Seconds between points.
    interval_seconds: f64,
    /// Oldest first.
    points: Vec<StatsPoint>,
}

/// Everything the dashboard shows, in one document.
#[utoipa::path(get, path = "/stats", tag = "service",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The stats; the task-level lists only with the token when one is configured", body = StatsView),
        (status = 401, description = "A token was presented and is wrong", body = ErrorBody),
    ))]
pub(crate) async fn stats(
    State(state): State<AppState>,
    Extension(config): Extension<StatsConfig>,
    headers: HeaderMap,
) -> Response {
    let details = match &config.token {
        None => true,
        Some(token) => match token.check(&headers) {
            Presented::Valid => true,
            Presented::Missing => false,
            Presented::Invalid(rejection) => return rejection.into_response(),
        },
    };
    let broker = state.queue.client().broker();
    let read = state.stats.queue.read(broker).await;
    let now = Snapshot::take(&state.metrics);
    let window = state.stats.history.window(&now);
    let service = &now.service;

    let categories = ErrorCategory::ALL.iter().map(|c| c.as_str());
    let service_view = ServiceStats {
        requests_total: service.served,
        requests_per_second: window.rate(window.served),
        latency: percentiles(&window.latency),
        status_classes: ["1xx", "2xx", "3xx", "4xx", "5xx"]
            .into_iter()
            .map(String::from)
            .zip(service.status)
            .collect(),
        errors: categories.map(String::from).zip(service.errors).collect(),
        errors_per_second: window.rate(window.errors.iter().sum()),
        in_flight: state.metrics.in_flight(),
        max_in_flight: config.max_in_flight,
        shed_total: service.shed,
        shed_per_second: window.rate(window.shed),
        runtime_lag: percentiles(&window.lag),
    };

    let tasks = &now.tasks;
    let outcome_total = |outcome: &str| -> u64 {
        let i = OUTCOMES.iter().position(|o| *o == outcome);
        i.map_or(0, |i| tasks.kinds.values().map(|k| k.finished[i]).sum())
    };
    let kinds = tasks
        .kinds
        .iter()
        .map(|(kind, k)| {
            let recent = window.kinds.get(kind);
            KindStats {
                kind: kind.clone(),
                finished: OUTCOMES
                    .iter()
                    .map(|o| (*o).to_owned())
                    .zip(k.finished)
                    .collect(),
                finished_per_second: recent.map_or(0.0, |r| window.rate(r.finished.iter().sum())),
                run: recent.and_then(|r| percentiles(&r.run)),
                wait: recent.and_then(|r| percentiles(&r.wait)),
            }
        })
        .collect();
    let mut queue = QueueStats {
        backend: broker.backend(),
        read_ms_ago: None,
        read_took_ms: read.took.as_secs_f64() * 1000.0,
        error: read.error.clone(),
        states: BTreeMap::new(),
        queues: Vec::new(),
        registered_kinds: state
            .queue
            .client()
            .registry()
            .kinds()
            .map(String::from)
            .collect(),
        kinds,
        retries_total: outcome_total("retry"),
        rescued_total: tasks.rescued,
        rescued_dead_total: tasks.rescued_dead,
        time_limit_kills_total: tasks.time_limit_kills,
        fenced_total: tasks.fenced,
        schedule_ticks_fired_total: tasks.schedule_fired,
        workers: None,
        schedules: None,
        failures: None,
        active: None,
    };
    fill_from_broker(&mut queue, &read, details);

    let pools = pools(&state, &queue);
    let (caches, limiters) = observed(config.observatory);
    Json(StatsView {
        generated_at: Utc::now(),
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        window_seconds: window.seconds,
        access: StatsAccess {
            token_required: config.token.is_some(),
            details,
        },
        service: service_view,
        queue,
        pools,
        caches,
        limiters,
        series: StatsSeries {
            interval_seconds: SAMPLE_INTERVAL.as_secs_f64(),
            points: state.stats.history.points(),
        },
    })
    .into_response()
}

/// Every state of `TaskState::ALL` at 0.
fn all_states() -> BTreeMap<String, u64> {
    TaskState::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .collect()
}

/// The broker's part of the queue view; the lists only with `details`.
fn fill_from_broker(queue: &mut QueueStats, read: &QueueRead, details: bool) {
    queue.states = all_states();
    let Some((at, data)) = &read.data else {
        return;
    };
    queue.read_ms_ago = Some(at.elapsed().as_secs_f64() * 1000.0);
    let mut by_queue: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    for c in &data.counts {
        *queue.states.entry(c.state.as_str().to_owned()).or_default() += c.count;
        *by_queue
            .entry(&c.queue)
            .or_insert_with(all_states)
            .entry(c.state.as_str().to_owned())
            .or_default() += c.count;
    }
    queue.queues = by_queue
        .into_iter()
        .map(|(name, counts)| QueueStateCounts {
            name: name.to_owned(),
            counts,
        })
        .collect();
    if !details {
        return;
    }
    let now = Utc::now();
    let seconds = |d: chrono::TimeDelta| d.num_milliseconds() as f64 / 1000.0;
    queue.workers = Some(
        data.workers
            .iter()
            .map(|w| WorkerLease {
                heartbeat_age_seconds: seconds(now - w.last_heartbeat),
                lease_left_seconds: seconds(w.lease_expires_at - now),
                info: w.clone(),
            })
            .collect(),
    );
    queue.schedules = Some(
        data.schedules
            .iter()
            .cloned()
            .map(ScheduleView::from)
            .collect(),
    );
    queue.failures = Some(data.failures.iter().map(TaskBrief::from).collect());
    queue.active = Some(data.active.iter().map(TaskBrief::from).collect());
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use surge_core::cache::Cache;
    use surge_core::limit::{Limiter, StaticLimiter};

    use super::*;

    #[tokio::test]
    async fn lists_what_the_observatory_holds() {
        let observatory = Observatory::new();
        let limiter: Arc<dyn Limiter> = Arc::new(StaticLimiter::new(3));
        observatory.register_limiter("fetch.global", &limiter);
        let held = limiter.try_acquire().expect("a slot");
        let cache: Cache<String, u32> = Cache::builder("dns").max_entries(10).build();
        cache.register(&observatory);
        cache.insert("a".to_owned(), 1).await;
        assert_eq!(cache.get(&"a".to_owned()).await, Some(1));
        assert_eq!(cache.get(&"b".to_owned()).await, None);

        let (caches, limiters) = observed(&observatory);
        assert_eq!(limiters.len(), 1);
        let l = &limiters[0];
        assert_eq!(
            (l.name.as_str(), l.algorithm, l.limit, l.in_flight),
            ("fetch.global", "static", 3, 1)
        );
        assert_eq!(caches.len(), 1);
        let c = &caches[0];
        assert_eq!(
            (c.name.as_str(), c.hits, c.misses, c.bound),
            ("dns", 1, 1, "entries")
        );
        assert!((c.hit_ratio - 0.5).abs() < 1e-9);
        drop((held, limiter, cache));
        let (caches, limiters) = observed(&observatory);
        assert!(
            caches.is_empty() && limiters.is_empty(),
            "dropped ones leave"
        );
    }
}
