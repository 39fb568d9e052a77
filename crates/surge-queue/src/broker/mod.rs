//! The one seam between the task engine and where tasks live.
//!
//! A backend is one module implementing [`Broker`]; every backend passes the
//! same conformance suite (`crate::conformance`). The engine (worker runtime,
//! scheduler, client) only ever talks to a broker through this trait, so the
//! contract below is the whole of what a backend must get right.
//!
//! # Contract
//! - Time: a backend uses one clock for every decision (its server's where
//!   it has one: PostgreSQL `now()`, Redis `TIME`; the local clock for
//!   SQLite). Timestamps passed in (`run_at`, `expires_at`, schedule ticks)
//!   are absolute UTC.
//! - Ready tasks are the waiting ones (`pending`, `scheduled`, `retrying`)
//!   whose `run_at` is due. [`Broker::claim`] hands out the ready tasks of the
//!   named queues, highest `priority` first, then oldest `run_at`, then
//!   oldest id, at most `limit`, in one atomic step, and never the same task
//!   to two claims.
//! - Claiming sets `running`, `worker_id`, `started_at`, increments
//!   `attempts` and `epoch`, clears `progress`. A worker whose lease is
//!   expired or unknown claims nothing.
//! - A completion applies only if the task is `running` with the same
//!   `epoch` and `worker_id` and that worker's lease is still valid (the
//!   fencing rule); otherwise it changes nothing and reports `false`. Its
//!   `follow_ups` are enqueued in the same atomic step, only if it applies.
//! - A terminal task's unique key is released (a later submission with the
//!   key creates a new task).
//! - A succeeded task whose `group_id` has a chord decrements the chord's
//!   counter in the same atomic step; the one completion that takes it to
//!   zero enqueues the chord's callback (so it is enqueued exactly once). A
//!   chord member that ends `failed`, `dead` or `cancelled` marks the chord
//!   failed: its callback is never enqueued.
//! - Rescue: every `running` task whose worker's lease has expired (or whose
//!   worker is unknown) goes back to `retrying`, due now, with error
//!   `system: lease expired …`; if its attempts are used up
//!   (`attempts > max_retries`) it goes `dead` instead, kept at least a
//!   week, its id reported in [`Rescued::dead_ids`](crate::model::Rescued).
//!   The rescue counts as the attempt (the attempt counter was incremented
//!   at claim).
//! - Errors: a backend maps "cannot reach / busy / overloaded" to
//!   [`BrokerError::Unavailable`] so that callers retry.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::BrokerError;
use crate::model::{
    CancelOutcome, Completion, Enqueued, Heartbeat, NewTask, Progress, QueueCount, Rescued,
    RetryOutcome, Schedule, TaskFilter, TaskId, TaskRecord, WorkerId, WorkerInfo,
};

pub mod any;
pub mod postgres;
pub mod redis;
pub mod sqlite;

pub use any::AnyBroker;

/// Refuses a schedule with no name, or whose cron expression or time zone
/// cannot be read: what every backend's [`Broker::put_schedule`] checks
/// before storing.
pub(crate) fn check_schedule(schedule: &Schedule) -> Result<(), BrokerError> {
    if schedule.name.trim().is_empty() {
        return Err(BrokerError::Invalid("a schedule needs a name".to_owned()));
    }
    crate::schedule::CronSchedule::parse(&schedule.cron, &schedule.timezone)
        .map(drop)
        .map_err(|e| BrokerError::Invalid(format!("schedule {}: {e}", schedule.name)))
}

/// Refuses a rate bucket that could never hand out a token: what every
/// backend's [`Broker::take_rate_token`] checks first.
pub(crate) fn check_rate(key: &str, per_second: f64, burst: u32) -> Result<(), BrokerError> {
    if per_second.is_finite() && per_second > 0.0 && burst > 0 {
        Ok(())
    } else {
        Err(BrokerError::Invalid(format!(
            "rate bucket {key}: needs a positive rate and a burst of at least 1 \
             (got {per_second}/s, burst {burst})"
        )))
    }
}

/// How a backend connects. Every backend has
/// `async fn connect(url: &str, config: &BrokerConfig) -> Result<Self, BrokerError>`.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Most connections open at once (SQL pools; Redis uses multiplexed
    /// connections and ignores it).
    pub max_connections: u32,
    /// How long a call waits for a connection (and SQLite for a lock) before
    /// [`BrokerError::Unavailable`].
    pub acquire_timeout: Duration,
    /// Redis: every key starts with `{namespace}:` (tests give each run its
    /// own). SQL backends ignore it (tests use their own file or schema).
    pub namespace: String,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            namespace: "surge".to_owned(),
        }
    }
}

/// Where tasks, leases, schedules, chords and rate buckets live.
///
/// Implementations are cheap to clone (a shared pool or connection) and
/// safe to use from many tasks at once.
pub trait Broker: Clone + Send + Sync + 'static {
    /// `"sqlite"`, `"postgres"` or `"redis"`.
    fn backend(&self) -> &'static str;

    /// Round trip to the backend (for `/health`).
    fn ping(&self) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Stores `tasks` atomically (all or none), in order. A task whose
    /// `unique_key` is held by a live task, or whose id already exists, is
    /// not created: its [`Enqueued`] names the existing task with
    /// `created: false`. A task whose `run_at` is in the future is
    /// `scheduled`, otherwise `pending`. Wakes waiting claimers
    /// ([`Broker::wait_for_work`]) when a task is ready now.
    fn enqueue(
        &self,
        tasks: &[NewTask],
    ) -> impl Future<Output = Result<Vec<Enqueued>, BrokerError>> + Send;

    /// Creates the chord of `group_id`: when its `members` members have all
    /// succeeded, `callback` is enqueued (once). Called before the members
    /// are enqueued.
    fn create_chord(
        &self,
        group_id: TaskId,
        members: u32,
        callback: &NewTask,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Claims up to `limit` ready tasks of `queues` for `worker` (see the
    /// module contract). Returns them in claim order.
    fn claim(
        &self,
        worker: WorkerId,
        queues: &[String],
        limit: usize,
    ) -> impl Future<Output = Result<Vec<TaskRecord>, BrokerError>> + Send;

    /// Waits until a task may be ready on one of `queues` (a hint: a
    /// submission in this process, a NOTIFY, a Redis signal) or `max_wait`
    /// has passed. Callers poll [`Broker::claim`] after it returns either
    /// way, so a backend with no hint simply sleeps.
    fn wait_for_work(
        &self,
        queues: &[String],
        max_wait: Duration,
    ) -> impl Future<Output = ()> + Send;

    /// Applies `completions` (acknowledgements) in one batch. Returns, per
    /// completion and in order, whether it applied (the fencing rule).
    fn complete(
        &self,
        completions: &[Completion],
    ) -> impl Future<Output = Result<Vec<bool>, BrokerError>> + Send;

    /// Records progress of a running task's attempt `epoch`. `false` when
    /// fenced out (not running, other epoch).
    fn progress(
        &self,
        id: TaskId,
        epoch: i64,
        progress: &Progress,
    ) -> impl Future<Output = Result<bool, BrokerError>> + Send;

    /// Registers `worker` (or renews it) with a lease of `lease_ttl` from now.
    fn register_worker(
        &self,
        worker: &WorkerInfo,
        lease_ttl: Duration,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Renews `worker`'s lease to `lease_ttl` from now if it has not expired
    /// yet, and reports which of its running tasks must be cancelled.
    fn heartbeat(
        &self,
        worker: WorkerId,
        lease_ttl: Duration,
    ) -> impl Future<Output = Result<Heartbeat, BrokerError>> + Send;

    /// Removes `worker` (after a graceful shutdown that handed back its
    /// tasks). Its remaining running tasks, if any, become rescuable at once.
    fn deregister_worker(
        &self,
        worker: WorkerId,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// The registered workers, including ones whose lease has expired but
    /// that have not been removed yet.
    fn workers(&self) -> impl Future<Output = Result<Vec<WorkerInfo>, BrokerError>> + Send;

    /// Rescues the running tasks of expired leases (see the module
    /// contract) and removes workers whose lease expired more than
    /// `forget_after` ago.
    fn rescue_expired(
        &self,
        forget_after: Duration,
    ) -> impl Future<Output = Result<Rescued, BrokerError>> + Send;

    /// The task `id`.
    fn get(
        &self,
        id: TaskId,
    ) -> impl Future<Output = Result<Option<TaskRecord>, BrokerError>> + Send;

    /// Tasks matching `filter`, newest first.
    fn list(
        &self,
        filter: &TaskFilter,
    ) -> impl Future<Output = Result<Vec<TaskRecord>, BrokerError>> + Send;

    /// Cancels `id`: a waiting task becomes `cancelled` (its unique key
    /// released, `expires_at` set to `expires_at`); a running one gets
    /// `cancel_requested` (its worker learns it at the next heartbeat).
    /// `None` when there is no such task.
    fn cancel(
        &self,
        id: TaskId,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<CancelOutcome>, BrokerError>> + Send;

    /// Puts a `dead`, `failed` or `cancelled` task back to `pending`, due
    /// now, with `attempts` 0 and no error, result or expiry. `None` when
    /// there is no such task. (A unique key is not restored.)
    fn retry(
        &self,
        id: TaskId,
    ) -> impl Future<Output = Result<Option<RetryOutcome>, BrokerError>> + Send;

    /// Task counts per queue and state (zero counts may be omitted).
    fn counts(&self) -> impl Future<Output = Result<Vec<QueueCount>, BrokerError>> + Send;

    /// Deletes terminal tasks whose `expires_at` has passed, at most `limit`
    /// of them; returns how many.
    fn prune(&self, limit: u32) -> impl Future<Output = Result<u64, BrokerError>> + Send;

    /// Creates or replaces the schedule named `schedule.name`.
    fn put_schedule(
        &self,
        schedule: &Schedule,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Every schedule, by name.
    fn schedules(&self) -> impl Future<Output = Result<Vec<Schedule>, BrokerError>> + Send;

    /// Deletes the schedule `name`; `false` if there was none.
    fn delete_schedule(&self, name: &str)
    -> impl Future<Output = Result<bool, BrokerError>> + Send;

    /// Fires one tick of schedule `name`, atomically: if its
    /// `next_fire_at` still equals `tick`, sets it to `next`,
    /// `last_fired_at` to `tick`, enqueues `task` and returns `true`;
    /// otherwise (another scheduler fired it, or it was changed or deleted)
    /// changes nothing and returns `false`.
    fn fire_schedule(
        &self,
        name: &str,
        tick: DateTime<Utc>,
        next: DateTime<Utc>,
        task: &NewTask,
    ) -> impl Future<Output = Result<bool, BrokerError>> + Send;

    /// Takes one token from the rate bucket of `key` (shared by every
    /// process on this broker): the bucket holds at most `burst` tokens and
    /// refills at `per_second`. `None` when a token was taken; otherwise how
    /// long until one will be there.
    fn take_rate_token(
        &self,
        key: &str,
        per_second: f64,
        burst: u32,
    ) -> impl Future<Output = Result<Option<Duration>, BrokerError>> + Send;

    /// The broker's connection pool right now (for `/stats`), or `None`
    /// for a backend without one (Redis: one multiplexed connection).
    fn pool(&self) -> Option<BrokerPool> {
        None
    }
}

/// A broker's connection pool at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerPool {
    /// Connections open (idle + in use).
    pub size: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// The most it opens.
    pub max: u32,
}

impl BrokerPool {
    pub(crate) fn of<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> BrokerPool {
        BrokerPool {
            size: pool.size(),
            idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            max: pool.options().get_max_connections(),
        }
    }
}
