//! The task model every backend stores: what is submitted, what is kept,
//! what a worker reports back. Backends store `args` and `options` as opaque
//! JSON; only the columns they must query on are typed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use surge_core::ErrorCategory;
use uuid::Uuid;

/// A task's id: a UUIDv7, so ids sort by creation time.
pub type TaskId = Uuid;
/// A worker's id (one per `surge worker` / embedded worker pool run).
pub type WorkerId = Uuid;

/// The queue a task goes to when none is named.
pub const DEFAULT_QUEUE: &str = "default";

/// Where a task is in its life.
///
/// `pending → (scheduled) → running → succeeded | failed | retrying |
/// cancelled | dead`; `retrying` goes back to `running` when its backoff is
/// over, `dead` (retries exhausted) and `failed` (an error no retry can fix)
/// are kept until retried by hand or pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Ready to run now.
    Pending,
    /// Waiting for its countdown / ETA.
    Scheduled,
    /// Held by a worker's lease.
    Running,
    /// Failed, waiting for its backoff before the next attempt.
    Retrying,
    /// Done; its result is kept until it expires.
    Succeeded,
    /// Failed with an error that no retry can fix.
    Failed,
    /// Cancelled before or while running.
    Cancelled,
    /// Every attempt failed; kept for inspection and manual retry.
    Dead,
}

impl TaskState {
    /// Every state, in life order.
    pub const ALL: [TaskState; 8] = [
        TaskState::Pending,
        TaskState::Scheduled,
        TaskState::Running,
        TaskState::Retrying,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Cancelled,
        TaskState::Dead,
    ];

    /// The stable snake_case name stored by backends and shown in JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Scheduled => "scheduled",
            TaskState::Running => "running",
            TaskState::Retrying => "retrying",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::Dead => "dead",
        }
    }

    /// Parses [`TaskState::as_str`]'s output.
    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Waiting to be claimed (pending, scheduled or retrying).
    pub const fn is_waiting(self) -> bool {
        matches!(
            self,
            TaskState::Pending | TaskState::Scheduled | TaskState::Retrying
        )
    }

    /// Will not change again unless retried by hand.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled | TaskState::Dead
        )
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Exponential backoff with full jitter: attempt `n` (1-based) waits a
/// uniformly random time in `[0, min(cap, base * 2^(n-1))]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Backoff {
    /// First retry's upper bound, in milliseconds.
    pub base_ms: u64,
    /// No wait is longer than this, in milliseconds.
    pub cap_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_ms: 1_000,
            cap_ms: 300_000,
        }
    }
}

impl Backoff {
    /// The upper bound of the wait after failed attempt `attempt` (1-based).
    pub fn ceiling_ms(&self, attempt: u32) -> u64 {
        let shift = attempt.saturating_sub(1).min(62);
        self.base_ms.saturating_mul(1u64 << shift).min(self.cap_ms)
    }

    /// A full-jitter wait after failed attempt `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> std::time::Duration {
        let ceiling = self.ceiling_ms(attempt);
        let ms = if ceiling == 0 {
            0
        } else {
            rand::random_range(0..=ceiling)
        };
        std::time::Duration::from_millis(ms)
    }
}

/// Per-task settings the broker stores verbatim (as JSON) and the worker
/// acts on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TaskOptions {
    /// Backoff between attempts.
    pub backoff: Backoff,
    /// The handler is told to stop after this long (milliseconds).
    pub soft_time_limit_ms: Option<u64>,
    /// The handler is dropped after this long (milliseconds).
    pub hard_time_limit_ms: Option<u64>,
    /// How long a result (or a cancellation) is kept, in seconds.
    pub result_ttl_secs: Option<u64>,
    /// Upstream result handed to this task: the previous result in a chain,
    /// `{"task": id, "error": …}` for a failure callback,
    /// `{"schedule": name, "tick": time}` for a cron tick (a chord
    /// callback's is filled in when it runs: see `chord_of`).
    pub parent: Option<Value>,
    /// Tasks submitted, with this task's result as their `parent`, when this
    /// task succeeds (Celery's `link`; a chain is a nest of these).
    pub on_success: Vec<NewTask>,
    /// Tasks submitted, with `{"task": id, "error": …}` as their `parent`,
    /// when this task ends failed or dead (Celery's `link_error`).
    pub on_failure: Vec<NewTask>,
    /// Position in its group, for ordering the group's results.
    pub group_index: Option<u32>,
    /// This task is the callback of the chord of that group: when it runs,
    /// its `parent` is the members' results, in group order.
    pub chord_of: Option<TaskId>,
}

/// A task to submit. Build one with [`NewTask::new`] and the `with_*`
/// methods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    /// Chosen by the submitter (UUIDv7), so a retried submission is
    /// idempotent.
    pub id: TaskId,
    /// The registered kind that runs it.
    pub kind: String,
    /// The kind's arguments.
    pub args: Value,
    /// Queue name.
    pub queue: String,
    /// Higher runs first among ready tasks of the claimed queues.
    pub priority: i32,
    /// Not claimed before this time (now for an immediate task).
    pub run_at: DateTime<Utc>,
    /// Attempts allowed = `max_retries + 1`.
    pub max_retries: u32,
    /// A second live task (pending, scheduled, running or retrying) with the
    /// same key is not created: the submission returns the existing one.
    pub unique_key: Option<String>,
    /// The group (or chord) the task belongs to.
    pub group_id: Option<TaskId>,
    /// Everything the broker stores without looking at it.
    pub options: TaskOptions,
}

impl NewTask {
    /// A task of `kind` with `args`, on the default queue, due now, with the
    /// default retry settings (3 retries).
    pub fn new(kind: impl Into<String>, args: Value) -> NewTask {
        NewTask {
            id: Uuid::now_v7(),
            kind: kind.into(),
            args,
            queue: DEFAULT_QUEUE.to_owned(),
            priority: 0,
            run_at: Utc::now(),
            max_retries: 3,
            unique_key: None,
            group_id: None,
            options: TaskOptions::default(),
        }
    }

    /// On queue `queue`.
    #[must_use]
    pub fn with_queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// With priority `priority` (higher first).
    #[must_use]
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Not before `run_at`.
    #[must_use]
    pub fn with_eta(mut self, run_at: DateTime<Utc>) -> Self {
        self.run_at = run_at;
        self
    }

    /// Not before `countdown` from now.
    #[must_use]
    pub fn with_countdown(mut self, countdown: std::time::Duration) -> Self {
        self.run_at =
            Utc::now() + chrono::Duration::from_std(countdown).unwrap_or(chrono::Duration::MAX);
        self
    }

    /// With `max_retries` retries after the first attempt.
    #[must_use]
    pub fn with_max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// With unique key `key`.
    #[must_use]
    pub fn with_unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// With `options`.
    #[must_use]
    pub fn with_options(mut self, options: TaskOptions) -> Self {
        self.options = options;
        self
    }
}

/// Why a task failed, as stored with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskError {
    /// The taxonomy category (`network`, `timeout`, `validation`, …).
    #[schema(value_type = String)]
    pub category: ErrorCategory,
    /// What went wrong, for people.
    pub message: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
}

impl TaskError {
    /// An error of `category` whose retryability is the category's.
    pub fn new(category: ErrorCategory, message: impl Into<String>) -> TaskError {
        TaskError {
            category,
            message: message.into(),
            retryable: category.retry_may_help(),
        }
    }

    /// Overrides whether a retry may help.
    #[must_use]
    pub fn retryable(mut self, retryable: bool) -> TaskError {
        self.retryable = retryable;
        self
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.category, self.message)
    }
}

/// A running task's progress report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    /// 0.0 ..= 1.0.
    pub fraction: f64,
    /// What the handler is doing.
    pub message: Option<String>,
}

/// A stored task, as the broker returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Its id.
    pub id: TaskId,
    /// Its kind.
    pub kind: String,
    /// Its arguments.
    pub args: Value,
    /// Its queue.
    pub queue: String,
    /// Its priority.
    pub priority: i32,
    /// Where it is.
    pub state: TaskState,
    /// Attempts started so far (a rescue after a lost lease counts).
    pub attempts: u32,
    /// Retries allowed after the first attempt.
    pub max_retries: u32,
    /// Not claimed before this time.
    pub run_at: DateTime<Utc>,
    /// Its unique key while it is live.
    pub unique_key: Option<String>,
    /// Its group.
    pub group_id: Option<TaskId>,
    /// The stored options.
    pub options: TaskOptions,
    /// The worker holding it (while running) or that last ran it.
    pub worker_id: Option<WorkerId>,
    /// Fencing token: incremented on every claim; a completion must carry
    /// the epoch of the claim it answers.
    pub epoch: i64,
    /// Cancellation was asked while it was running.
    pub cancel_requested: bool,
    /// Last progress report of the current attempt.
    pub progress: Option<Progress>,
    /// Result of a succeeded task.
    pub result: Option<Value>,
    /// Last error (of a retrying, failed or dead task).
    pub error: Option<TaskError>,
    /// Submitted at.
    pub created_at: DateTime<Utc>,
    /// Current / last attempt started at.
    pub started_at: Option<DateTime<Utc>>,
    /// Reached a terminal state at.
    pub finished_at: Option<DateTime<Utc>>,
    /// The record may be pruned after this time (terminal tasks only).
    pub expires_at: Option<DateTime<Utc>>,
}

/// What a submission did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueued {
    /// The task's id: the new one, or the live task holding the unique key.
    pub id: TaskId,
    /// `false` when the unique key was held by a live task (or the id
    /// already existed: a retried submission).
    pub created: bool,
}

/// How an attempt ended, as a worker reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// The handler returned `result`.
    Succeeded {
        /// The result payload.
        result: Value,
        /// Kept until then.
        expires_at: DateTime<Utc>,
    },
    /// Failed; runs again (state `retrying`) at `run_at`.
    Retry {
        /// The attempt's error.
        error: TaskError,
        /// Next attempt not before.
        run_at: DateTime<Utc>,
    },
    /// Failed with an error no retry can fix.
    Failed {
        /// The error.
        error: TaskError,
        /// Kept until then.
        expires_at: DateTime<Utc>,
    },
    /// Failed and no attempt is left.
    Dead {
        /// The last error.
        error: TaskError,
        /// Kept until then.
        expires_at: DateTime<Utc>,
    },
    /// Stopped because cancellation was asked.
    Cancelled {
        /// Kept until then.
        expires_at: DateTime<Utc>,
    },
    /// Handed back without counting the attempt (graceful shutdown, a rate
    /// limit): waiting again from `run_at` (`pending` if due, else
    /// `scheduled`), `attempts` decremented.
    Requeue {
        /// Not claimed before.
        run_at: DateTime<Utc>,
    },
}

/// A worker's report on one claimed task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The task.
    pub id: TaskId,
    /// The epoch of the claim being answered (fencing token).
    pub epoch: i64,
    /// The worker answering; its lease must still be valid.
    pub worker_id: WorkerId,
    /// How the attempt ended.
    pub outcome: Outcome,
    /// Submitted in the same transaction, only if this completion applies
    /// (callbacks, the next link of a chain).
    pub follow_ups: Vec<NewTask>,
}

/// A worker as registered in the broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerInfo {
    /// Its id.
    #[schema(value_type = String, format = Uuid)]
    pub id: WorkerId,
    /// Host name.
    pub hostname: String,
    /// Process id.
    pub pid: u32,
    /// Queues it claims from.
    pub queues: Vec<String>,
    /// Tasks it runs at once.
    pub concurrency: u32,
    /// Registered at.
    pub started_at: DateTime<Utc>,
    /// Last heartbeat.
    pub last_heartbeat: DateTime<Utc>,
    /// Its lease ends then unless renewed.
    pub lease_expires_at: DateTime<Utc>,
}

/// A heartbeat's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Heartbeat {
    /// `false` when the lease had already expired (or the worker is
    /// unknown): the worker must stop its tasks, which are or will be
    /// rescued, and register again under a new id.
    pub lease_valid: bool,
    /// Running tasks of this worker whose cancellation was asked.
    pub cancel: Vec<TaskId>,
}

/// What a rescue pass did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rescued {
    /// Tasks of expired leases put back to wait (state `retrying`, due now).
    pub requeued: u64,
    /// Tasks of expired leases that had no attempt left (state `dead`).
    pub dead: u64,
    /// The ids of those dead tasks (the engine submits their failure
    /// callbacks).
    pub dead_ids: Vec<TaskId>,
}

/// What a cancel request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was waiting and is now `cancelled`.
    Cancelled,
    /// It is running; its worker has been asked to stop it.
    Requested,
    /// It had already ended in this state; nothing changed.
    AlreadyFinished(TaskState),
}

/// What a manual retry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    /// It was dead, failed or cancelled and is `pending` again with its
    /// attempts reset.
    Requeued,
    /// It is not in a state that can be retried by hand.
    NotRetryable(TaskState),
}

/// Which tasks to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only in this state.
    pub state: Option<TaskState>,
    /// Only of this kind.
    pub kind: Option<String>,
    /// Only on this queue.
    pub queue: Option<String>,
    /// Only of this group.
    pub group_id: Option<TaskId>,
    /// Only ids older (smaller) than this: keyset pagination, newest first.
    pub before: Option<TaskId>,
    /// At most this many.
    pub limit: u32,
}

/// How many tasks a queue holds in one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueCount {
    /// The queue.
    pub queue: String,
    /// The state.
    pub state: TaskState,
    /// Tasks in it.
    pub count: u64,
}

/// A periodic task as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Unique name.
    pub name: String,
    /// Cron expression, stored seconds field first, as the `cron` crate
    /// reads it: `sec min hour day-of-month month day-of-week [year]`
    /// ([`crate::schedule::normalize`] turns a five-field one into it).
    pub cron: String,
    /// IANA time zone the expression is read in (`UTC`, `Europe/Paris`).
    pub timezone: String,
    /// The task submitted at every tick (its id and `run_at` are replaced).
    pub task: NewTask,
    /// The next tick to fire.
    pub next_fire_at: DateTime<Utc>,
    /// The last tick fired.
    pub last_fired_at: Option<DateTime<Utc>>,
    /// Created at.
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_exponential_capped_and_jittered_within_bounds() {
        let b = Backoff {
            base_ms: 100,
            cap_ms: 1_000,
        };
        assert_eq!(b.ceiling_ms(1), 100);
        assert_eq!(b.ceiling_ms(2), 200);
        assert_eq!(b.ceiling_ms(4), 800);
        assert_eq!(b.ceiling_ms(5), 1_000);
        assert_eq!(b.ceiling_ms(200), 1_000);
        let mut low = false;
        let mut high = false;
        for _ in 0..2_000 {
            let d = b.delay(3).as_millis() as u64;
            assert!(d <= 400, "{d} ms above the ceiling");
            low |= d < 100;
            high |= d > 300;
        }
        assert!(low && high, "full jitter spans the whole range");
        let zero = Backoff {
            base_ms: 0,
            cap_ms: 0,
        };
        assert_eq!(zero.delay(3).as_millis(), 0);
    }

    #[test]
    fn states_round_trip_and_classify() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.as_str()), Some(s));
            assert!(!(s.is_waiting() && s.is_terminal()));
        }
        assert_eq!(TaskState::parse("nope"), None);
        assert!(TaskState::Retrying.is_waiting());
        assert!(TaskState::Dead.is_terminal());
    }
}
