//! The broker's side of `/stats`, read at most once per interval.
//!
//! Counting tasks per state reads the whole task table on the SQL backends,
//! so however many dashboards poll, the broker is asked at most once per
//! [`MIN_INTERVAL`], and less often when asking is slow: never more than a
//! tenth of the time goes to it ([`COST_FACTOR`]). Concurrent callers share
//! one read (single flight). Nobody polling means no broker load at all.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use surge_queue::broker::AnyBroker;
use surge_queue::model::{QueueCount, Schedule, TaskFilter, WorkerInfo};
use surge_queue::{Broker, BrokerError, TaskRecord, TaskState};

/// Shortest time between two broker reads.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// A read that took `t` is reused for `COST_FACTOR × t` (when that is
/// longer than [`MIN_INTERVAL`]).
const COST_FACTOR: u32 = 10;
/// How long a read may take before it counts as failed.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Tasks listed per state in the failures and active lists.
pub(crate) const LISTED_PER_STATE: u32 = 10;

/// The states whose tasks are listed as failures (with their error).
pub(crate) const FAILURE_STATES: [TaskState; 3] =
    [TaskState::Dead, TaskState::Failed, TaskState::Retrying];
/// The states whose tasks are listed as active (cancellable).
pub(crate) const ACTIVE_STATES: [TaskState; 3] =
    [TaskState::Running, TaskState::Pending, TaskState::Scheduled];

/// What one broker read found.
#[derive(Debug, Default)]
pub(crate) struct QueueData {
    pub(crate) counts: Vec<QueueCount>,
    pub(crate) workers: Vec<WorkerInfo>,
    pub(crate) schedules: Vec<Schedule>,
    /// Newest first, at most [`LISTED_PER_STATE`] per failure state.
    pub(crate) failures: Vec<TaskRecord>,
    /// Newest first, at most [`LISTED_PER_STATE`] per active state.
    pub(crate) active: Vec<TaskRecord>,
}

impl QueueData {
    /// Tasks in `state`, every queue.
    pub(crate) fn total(&self, state: TaskState) -> u64 {
        self.counts
            .iter()
            .filter(|c| c.state == state)
            .map(|c| c.count)
            .sum()
    }

    /// Tasks waiting to run (pending, scheduled, retrying), every queue.
    pub(crate) fn waiting(&self) -> u64 {
        [
            TaskState::Pending,
            TaskState::Scheduled,
            TaskState::Retrying,
        ]
        .map(|s| self.total(s))
        .iter()
        .sum()
    }
}

/// The outcome of the last read.
#[derive(Debug, Clone)]
pub(crate) struct QueueRead {
    /// When the last read ended, and how long it took.
    pub(crate) at: Instant,
    pub(crate) took: Duration,
    /// The last successful read's data and when it was made (older than
    /// `at` when the last read failed).
    pub(crate) data: Option<(Instant, Arc<QueueData>)>,
    /// Why the last read failed.
    pub(crate) error: Option<String>,
}

/// The last read, shared by every `/stats` caller.
#[derive(Debug, Default)]
pub(crate) struct QueueCache {
    last: Mutex<Option<QueueRead>>,
    /// Held by the one caller reading the broker.
    reading: tokio::sync::Mutex<()>,
}

impl QueueCache {
    fn fresh(&self) -> Option<QueueRead> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.clone()
            .filter(|r| r.at.elapsed() < MIN_INTERVAL.max(r.took * COST_FACTOR))
    }

    /// The last read, without reading (for the sampler).
    pub(crate) fn peek(&self) -> Option<QueueRead> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A read at most one interval old.
    pub(crate) async fn read(&self, broker: &AnyBroker) -> QueueRead {
        if let Some(hit) = self.fresh() {
            return hit;
        }
        let _reading = self.reading.lock().await;
        if let Some(hit) = self.fresh() {
            return hit; // another caller read while we waited
        }
        let started = Instant::now();
        let result = match tokio::time::timeout(READ_TIMEOUT, read(broker)).await {
            Ok(Ok(data)) => Ok(data),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "the broker did not answer within {}s",
                READ_TIMEOUT.as_secs()
            )),
        };
        let at = Instant::now();
        let previous = self.peek().and_then(|r| r.data);
        let read = match result {
            Ok(data) => QueueRead {
                at,
                took: at - started,
                data: Some((at, Arc::new(data))),
                error: None,
            },
            Err(error) => QueueRead {
                at,
                took: at - started,
                data: previous,
                error: Some(error),
            },
        };
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(read.clone());
        read
    }
}

/// Reads counts, workers, schedules and the listed tasks. A state with no
/// task is not listed (the counts say so), which keeps an idle queue at
/// three queries.
async fn read(broker: &AnyBroker) -> Result<QueueData, BrokerError> {
    let counts = broker.counts().await?;
    let total = |state: TaskState| {
        counts
            .iter()
            .filter(|c| c.state == state)
            .map(|c| c.count)
            .sum::<u64>()
    };
    let list = |state: TaskState| {
        let wanted = total(state) > 0;
        async move {
            if !wanted {
                return Ok(Vec::new());
            }
            let filter = TaskFilter {
                state: Some(state),
                limit: LISTED_PER_STATE,
                ..TaskFilter::default()
            };
            broker.list(&filter).await
        }
    };
    let [dead, failed, retrying] = FAILURE_STATES.map(list);
    let [running, pending, scheduled] = ACTIVE_STATES.map(list);
    let (workers, schedules, dead, failed, retrying, running, pending, scheduled) = tokio::try_join!(
        broker.workers(),
        broker.schedules(),
        dead,
        failed,
        retrying,
        running,
        pending,
        scheduled
    )?;
    let mut failures = [dead, failed, retrying].concat();
    // Latest failure first: a retrying task has not finished, its last
    // attempt started then.
    failures
        .sort_by_key(|t| std::cmp::Reverse(t.finished_at.or(t.started_at).unwrap_or(t.created_at)));
    let mut active = [running, pending, scheduled].concat();
    // UUIDv7 ids sort by creation time: newest first.
    active.sort_by_key(|t| std::cmp::Reverse(t.id));
    Ok(QueueData {
        counts,
        workers,
        schedules,
        failures,
        active,
    })
}
