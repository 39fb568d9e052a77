//! Batches as column arrays (one `unnest` per batch instead of one statement
//! per task) and rows back into the model.
//!
//! Ids travel as text and JSON as text (cast to `uuid` / `jsonb` in SQL): the
//! workspace builds sqlx without its `uuid` and `json` features, and on the
//! wire `jsonb` is JSON text anyway.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use uuid::Uuid;

use crate::BrokerError;
use crate::model::{
    Completion, NewTask, Outcome, Progress, Schedule, TaskError, TaskOptions, TaskRecord,
    TaskState, WorkerInfo,
};

/// A bound query.
pub(super) type PgQuery<'q> = Query<'q, sqlx::Postgres, PgArguments>;

/// JSON text of `value`.
pub(super) fn json<T: Serialize + ?Sized>(value: &T) -> Result<String, BrokerError> {
    serde_json::to_string(value).map_err(|e| BrokerError::Invalid(format!("not JSON: {e}")))
}

/// Tasks to insert, one array per column, each task tagged with its `owner`
/// (its position in an enqueue batch, or the 1-based position of the
/// completion whose follow-up it is).
#[derive(Default)]
pub(super) struct TaskColumns<'a> {
    owner: Vec<i64>,
    id: Vec<String>,
    kind: Vec<&'a str>,
    args: Vec<String>,
    queue: Vec<&'a str>,
    priority: Vec<i32>,
    run_at: Vec<DateTime<Utc>>,
    max_retries: Vec<i64>,
    unique_key: Vec<Option<&'a str>>,
    group_id: Vec<Option<String>>,
    options: Vec<String>,
}

impl<'a> TaskColumns<'a> {
    /// How many parameters [`TaskColumns::bind`] binds.
    pub(super) const PARAMS: usize = 11;

    /// `tasks`, owned by their positions.
    pub(super) fn of(tasks: &'a [NewTask]) -> Result<Self, BrokerError> {
        let mut columns = TaskColumns::default();
        for (i, task) in tasks.iter().enumerate() {
            columns.push(i as i64, task)?;
        }
        Ok(columns)
    }

    /// Adds `task`, owned by `owner`.
    pub(super) fn push(&mut self, owner: i64, task: &'a NewTask) -> Result<(), BrokerError> {
        self.owner.push(owner);
        self.id.push(task.id.to_string());
        self.kind.push(&task.kind);
        self.args.push(json(&task.args)?);
        self.queue.push(&task.queue);
        self.priority.push(task.priority);
        self.run_at.push(task.run_at);
        self.max_retries.push(i64::from(task.max_retries));
        self.unique_key.push(task.unique_key.as_deref());
        self.group_id.push(task.group_id.map(|g| g.to_string()));
        self.options.push(json(&task.options)?);
        Ok(())
    }

    /// SQL for the rows bound from parameter `$first` on: a table
    /// `n(owner, id, kind, args, queue, priority, run_at, max_retries,
    /// unique_key, group_id, options)`.
    pub(super) fn unnest(first: usize) -> String {
        let types = [
            "int8",
            "uuid",
            "text",
            "jsonb",
            "text",
            "int4",
            "timestamptz",
            "int8",
            "text",
            "uuid",
            "jsonb",
        ];
        let args: Vec<String> = types
            .iter()
            .enumerate()
            .map(|(i, ty)| format!("${}::{ty}[]", first + i))
            .collect();
        format!(
            "unnest({}) AS n(owner, id, kind, args, queue, priority, run_at, max_retries, \
             unique_key, group_id, options)",
            args.join(", ")
        )
    }

    /// Binds the columns in [`TaskColumns::unnest`]'s order.
    pub(super) fn bind<'q>(self, query: PgQuery<'q>) -> PgQuery<'q>
    where
        'a: 'q,
    {
        query
            .bind(self.owner)
            .bind(self.id)
            .bind(self.kind)
            .bind(self.args)
            .bind(self.queue)
            .bind(self.priority)
            .bind(self.run_at)
            .bind(self.max_retries)
            .bind(self.unique_key)
            .bind(self.group_id)
            .bind(self.options)
    }
}

/// Completions, one array per column. `outcome` is the state to set, or
/// `requeue`; `expires_at` is set exactly for terminal outcomes.
#[derive(Default)]
pub(super) struct CompletionColumns {
    id: Vec<String>,
    epoch: Vec<i64>,
    worker_id: Vec<String>,
    outcome: Vec<&'static str>,
    result: Vec<Option<String>>,
    error: Vec<Option<String>>,
    run_at: Vec<Option<DateTime<Utc>>>,
    expires_at: Vec<Option<DateTime<Utc>>>,
}

impl CompletionColumns {
    /// How many parameters [`CompletionColumns::bind`] binds.
    pub(super) const PARAMS: usize = 8;

    /// The columns of `completions`.
    pub(super) fn of(completions: &[Completion]) -> Result<Self, BrokerError> {
        let mut c = CompletionColumns::default();
        for done in completions {
            // The state to set; `requeue` is none: the statement picks
            // pending or scheduled by run_at.
            let (outcome, error, run_at, expires_at) = match &done.outcome {
                Outcome::Succeeded { expires_at, .. } => {
                    ("succeeded", None, None, Some(expires_at))
                }
                Outcome::Retry { error, run_at } => ("retrying", Some(error), Some(run_at), None),
                Outcome::Failed { error, expires_at } => {
                    ("failed", Some(error), None, Some(expires_at))
                }
                Outcome::Dead { error, expires_at } => {
                    ("dead", Some(error), None, Some(expires_at))
                }
                Outcome::Cancelled { expires_at } => ("cancelled", None, None, Some(expires_at)),
                Outcome::Requeue { run_at } => ("requeue", None, Some(run_at), None),
            };
            let result = match &done.outcome {
                Outcome::Succeeded { result, .. } => Some(json(result)?),
                _ => None,
            };
            c.id.push(done.id.to_string());
            c.epoch.push(done.epoch);
            c.worker_id.push(done.worker_id.to_string());
            c.outcome.push(outcome);
            c.result.push(result);
            c.error.push(error.map(json).transpose()?);
            c.run_at.push(run_at.copied());
            c.expires_at.push(expires_at.copied());
        }
        Ok(c)
    }

    /// Binds the columns in the order of `unnest($1::uuid[], $2::int8[],
    /// $3::uuid[], $4::text[], $5::jsonb[], $6::jsonb[], $7::timestamptz[],
    /// $8::timestamptz[])`.
    pub(super) fn bind(self, query: PgQuery<'_>) -> PgQuery<'_> {
        query
            .bind(self.id)
            .bind(self.epoch)
            .bind(self.worker_id)
            .bind(self.outcome)
            .bind(self.result)
            .bind(self.error)
            .bind(self.run_at)
            .bind(self.expires_at)
    }
}

/// The task columns as every query selects them, for [`task`]; `t` is the
/// table's alias.
pub(super) const TASK_COLUMNS: &str = "t.id::text, t.kind, t.args::text, t.queue, t.priority, \
     t.state, t.attempts, t.max_retries, t.run_at, t.unique_key, t.group_id::text, \
     t.options::text, t.worker_id::text, t.epoch, t.cancel_requested, t.progress::text, \
     t.result::text, t.error::text, t.created_at, t.started_at, t.finished_at, t.expires_at";

fn data(what: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Data(format!("{what}: {e}"))
}

/// Parses a uuid read as text.
pub(super) fn parse_uuid(s: &str) -> Result<Uuid, BrokerError> {
    Uuid::parse_str(s).map_err(|e| data("uuid", e))
}

fn uuid_at(row: &PgRow, i: usize) -> Result<Uuid, BrokerError> {
    parse_uuid(&row.try_get::<String, _>(i)?)
}

fn opt_uuid_at(row: &PgRow, i: usize) -> Result<Option<Uuid>, BrokerError> {
    row.try_get::<Option<String>, _>(i)?
        .map(|s| parse_uuid(&s))
        .transpose()
}

fn json_at<T: DeserializeOwned>(row: &PgRow, i: usize) -> Result<T, BrokerError> {
    let text: String = row.try_get(i)?;
    serde_json::from_str(&text).map_err(|e| data("JSON column", e))
}

fn opt_json_at<T: DeserializeOwned>(row: &PgRow, i: usize) -> Result<Option<T>, BrokerError> {
    row.try_get::<Option<String>, _>(i)?
        .map(|text| serde_json::from_str(&text).map_err(|e| data("JSON column", e)))
        .transpose()
}

fn u32_at(row: &PgRow, i: usize) -> Result<u32, BrokerError> {
    let n: i64 = row.try_get(i)?;
    u32::try_from(n).map_err(|e| data("counter", e))
}

/// Parses a stored state.
pub(super) fn parse_state(s: &str) -> Result<TaskState, BrokerError> {
    TaskState::parse(s).ok_or_else(|| data("task state", s))
}

/// A row selected with [`TASK_COLUMNS`].
pub(super) fn task(row: &PgRow) -> Result<TaskRecord, BrokerError> {
    let options: TaskOptions = json_at(row, 11)?;
    Ok(TaskRecord {
        id: uuid_at(row, 0)?,
        kind: row.try_get(1)?,
        args: json_at(row, 2)?,
        queue: row.try_get(3)?,
        priority: row.try_get(4)?,
        state: parse_state(row.try_get(5)?)?,
        attempts: u32_at(row, 6)?,
        max_retries: u32_at(row, 7)?,
        run_at: row.try_get(8)?,
        unique_key: row.try_get(9)?,
        group_id: opt_uuid_at(row, 10)?,
        options,
        worker_id: opt_uuid_at(row, 12)?,
        epoch: row.try_get(13)?,
        cancel_requested: row.try_get(14)?,
        progress: opt_json_at::<Progress>(row, 15)?,
        result: opt_json_at(row, 16)?,
        error: opt_json_at::<TaskError>(row, 17)?,
        created_at: row.try_get(18)?,
        started_at: row.try_get(19)?,
        finished_at: row.try_get(20)?,
        expires_at: row.try_get(21)?,
    })
}

/// The worker columns as [`worker`] reads them.
pub(super) const WORKER_COLUMNS: &str = "id::text, hostname, pid, queues, concurrency, \
     started_at, last_heartbeat, lease_expires_at";

/// A row selected with [`WORKER_COLUMNS`].
pub(super) fn worker(row: &PgRow) -> Result<WorkerInfo, BrokerError> {
    Ok(WorkerInfo {
        id: uuid_at(row, 0)?,
        hostname: row.try_get(1)?,
        pid: u32_at(row, 2)?,
        queues: row.try_get(3)?,
        concurrency: u32_at(row, 4)?,
        started_at: row.try_get(5)?,
        last_heartbeat: row.try_get(6)?,
        lease_expires_at: row.try_get(7)?,
    })
}

/// The schedule columns as [`schedule`] reads them.
pub(super) const SCHEDULE_COLUMNS: &str =
    "name, cron, timezone, task::text, next_fire_at, last_fired_at, created_at";

/// A row selected with [`SCHEDULE_COLUMNS`].
pub(super) fn schedule(row: &PgRow) -> Result<Schedule, BrokerError> {
    Ok(Schedule {
        name: row.try_get(0)?,
        cron: row.try_get(1)?,
        timezone: row.try_get(2)?,
        task: json_at(row, 3)?,
        next_fire_at: row.try_get(4)?,
        last_fired_at: row.try_get(5)?,
        created_at: row.try_get(6)?,
    })
}
