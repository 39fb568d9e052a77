//! Between Rust values and SQLite rows: timestamps as microseconds, ids as
//! UUID text, JSON as TEXT.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::BrokerError;
use crate::model::{NewTask, Schedule, TaskRecord, TaskState, WorkerInfo};

/// The columns of a task, in the order [`task`] reads them.
pub(super) const TASK_COLUMNS: &str = "id, kind, args, queue, priority, state, attempts, \
     max_retries, run_at, unique_key, group_id, options, worker_id, epoch, cancel_requested, \
     progress, result, error, created_at, started_at, finished_at, expires_at";

/// The columns of a worker, in the order [`worker`] reads them.
pub(super) const WORKER_COLUMNS: &str =
    "id, hostname, pid, queues, concurrency, started_at, last_heartbeat, lease_expires_at";

/// The columns of a schedule, in the order [`schedule`] reads them.
pub(super) const SCHEDULE_COLUMNS: &str =
    "name, cron, timezone, task, next_fire_at, last_fired_at, created_at";

/// `t` as stored: microseconds since the Unix epoch.
pub(super) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The clock every decision of this backend uses, as stored.
pub(super) fn now_micros() -> i64 {
    micros(Utc::now())
}

/// A duration in microseconds, saturating.
pub(super) fn duration_micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn time(us: i64) -> Result<DateTime<Utc>, BrokerError> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| BrokerError::Data(format!("timestamp out of range: {us} µs")))
}

fn opt_time(us: Option<i64>) -> Result<Option<DateTime<Utc>>, BrokerError> {
    us.map(time).transpose()
}

/// Parses a stored id.
pub(super) fn uuid(s: &str) -> Result<Uuid, BrokerError> {
    Uuid::parse_str(s).map_err(|e| BrokerError::Data(format!("bad id {s:?}: {e}")))
}

fn opt_uuid(s: Option<&str>) -> Result<Option<Uuid>, BrokerError> {
    s.map(uuid).transpose()
}

fn json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, BrokerError> {
    Ok(serde_json::from_str(s)?)
}

fn opt_json<T: serde::de::DeserializeOwned>(s: Option<&str>) -> Result<Option<T>, BrokerError> {
    s.map(json).transpose()
}

fn int<T: TryFrom<i64>>(v: i64, what: &str) -> Result<T, BrokerError> {
    T::try_from(v).map_err(|_| BrokerError::Data(format!("{what} out of range: {v}")))
}

/// Parses a stored state.
pub(super) fn state(s: &str) -> Result<TaskState, BrokerError> {
    TaskState::parse(s).ok_or_else(|| BrokerError::Data(format!("unknown task state {s:?}")))
}

/// A task row selected with [`TASK_COLUMNS`].
pub(super) fn task(row: &SqliteRow) -> Result<TaskRecord, BrokerError> {
    Ok(TaskRecord {
        id: uuid(row.try_get(0)?)?,
        kind: row.try_get(1)?,
        args: json(row.try_get(2)?)?,
        queue: row.try_get(3)?,
        priority: row.try_get(4)?,
        state: state(row.try_get(5)?)?,
        attempts: int(row.try_get(6)?, "attempts")?,
        max_retries: int(row.try_get(7)?, "max_retries")?,
        run_at: time(row.try_get(8)?)?,
        unique_key: row.try_get(9)?,
        group_id: opt_uuid(row.try_get(10)?)?,
        options: json(row.try_get(11)?)?,
        worker_id: opt_uuid(row.try_get(12)?)?,
        epoch: row.try_get(13)?,
        cancel_requested: row.try_get(14)?,
        progress: opt_json(row.try_get(15)?)?,
        result: opt_json(row.try_get(16)?)?,
        error: opt_json(row.try_get(17)?)?,
        created_at: time(row.try_get(18)?)?,
        started_at: opt_time(row.try_get(19)?)?,
        finished_at: opt_time(row.try_get(20)?)?,
        expires_at: opt_time(row.try_get(21)?)?,
    })
}

/// A worker row selected with [`WORKER_COLUMNS`].
pub(super) fn worker(row: &SqliteRow) -> Result<WorkerInfo, BrokerError> {
    Ok(WorkerInfo {
        id: uuid(row.try_get(0)?)?,
        hostname: row.try_get(1)?,
        pid: int(row.try_get(2)?, "pid")?,
        queues: json(row.try_get(3)?)?,
        concurrency: int(row.try_get(4)?, "concurrency")?,
        started_at: time(row.try_get(5)?)?,
        last_heartbeat: time(row.try_get(6)?)?,
        lease_expires_at: time(row.try_get(7)?)?,
    })
}

/// A schedule row selected with [`SCHEDULE_COLUMNS`].
pub(super) fn schedule(row: &SqliteRow) -> Result<Schedule, BrokerError> {
    Ok(Schedule {
        name: row.try_get(0)?,
        cron: row.try_get(1)?,
        timezone: row.try_get(2)?,
        task: json(row.try_get(3)?)?,
        next_fire_at: time(row.try_get(4)?)?,
        last_fired_at: opt_time(row.try_get(5)?)?,
        created_at: time(row.try_get(6)?)?,
    })
}

/// Tasks to insert, encoded by the caller (off the writer) as one JSON array
/// that a single `INSERT … SELECT … FROM json_each(?)` reads.
pub(super) struct NewTasks {
    /// `[{id, kind, args, queue, priority, max_retries, run_at, unique_key,
    /// group_id, options}, …]`, `args` and `options` as JSON text.
    pub(super) json: String,
    /// Per task, in order: what the insert needs to answer.
    pub(super) tasks: Vec<NewMeta>,
}

/// What the insert needs to know of one task after the statement.
pub(super) struct NewMeta {
    pub(super) id: Uuid,
    pub(super) unique_key: Option<String>,
    pub(super) queue: String,
    pub(super) run_at: i64,
}

#[derive(Serialize)]
struct NewRow<'a> {
    id: String,
    kind: &'a str,
    args: String,
    queue: &'a str,
    priority: i32,
    max_retries: u32,
    run_at: i64,
    unique_key: Option<&'a str>,
    group_id: Option<String>,
    options: String,
}

impl NewTasks {
    /// Encodes `tasks`.
    pub(super) fn encode(tasks: &[NewTask]) -> Result<NewTasks, BrokerError> {
        let mut rows = Vec::with_capacity(tasks.len());
        let mut meta = Vec::with_capacity(tasks.len());
        for t in tasks {
            let run_at = micros(t.run_at);
            rows.push(NewRow {
                id: t.id.to_string(),
                kind: &t.kind,
                args: serde_json::to_string(&t.args)?,
                queue: &t.queue,
                priority: t.priority,
                max_retries: t.max_retries,
                run_at,
                unique_key: t.unique_key.as_deref(),
                group_id: t.group_id.map(|g| g.to_string()),
                options: serde_json::to_string(&t.options)?,
            });
            meta.push(NewMeta {
                id: t.id,
                unique_key: t.unique_key.clone(),
                queue: t.queue.clone(),
                run_at,
            });
        }
        Ok(NewTasks {
            json: serde_json::to_string(&rows)?,
            tasks: meta,
        })
    }
}
