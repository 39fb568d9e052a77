//! The write operations, each run by the writer inside its batch's
//! transaction (see [`super::writer`]). Arguments arrive encoded by the
//! caller, so the writer spends its time in SQLite.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use surge_core::ErrorCategory;
use uuid::Uuid;

use super::rows::{self, NewTasks, TASK_COLUMNS, now_micros};
use super::writer::{Op, Tx};
use crate::BrokerError;
use crate::model::{
    CancelOutcome, Completion, Enqueued, Heartbeat, NewTask, Outcome, Rescued, RetryOutcome,
    TaskState,
};

/// How long a task that a rescue finds out of attempts (`dead`) is kept at
/// least (a longer result TTL wins): dead tasks wait for a person.
const DEAD_TTL_SECS: i64 = 7 * 24 * 3600;

/// Inserts a batch in one statement; tasks held off by an existing id or a
/// live unique key are ignored here and looked up below.
const INSERT: &str = "\
    INSERT OR IGNORE INTO tasks (id, kind, args, queue, priority, state, max_retries, run_at, \
                                 unique_key, group_id, options, created_at) \
    SELECT t.value ->> 'id', t.value ->> 'kind', t.value ->> 'args', t.value ->> 'queue', \
           t.value ->> 'priority', \
           CASE WHEN t.value ->> 'run_at' > ?2 THEN 'scheduled' ELSE 'pending' END, \
           t.value ->> 'max_retries', t.value ->> 'run_at', t.value ->> 'unique_key', \
           t.value ->> 'group_id', t.value ->> 'options', ?2 \
    FROM json_each(?1) AS t ORDER BY t.key \
    RETURNING id";

/// The task a submission that was not stored names: the same id first, else
/// the live holder of its unique key.
const EXISTING: &str = "SELECT coalesce((SELECT id FROM tasks WHERE id = ?1), \
                                        (SELECT id FROM tasks WHERE unique_key = ?2))";

/// Submits `new`.
pub(super) fn enqueue(tx: &mut Tx, new: NewTasks) -> Op<'_, Vec<Enqueued>> {
    Box::pin(async move { insert(tx, &new, now_micros()).await })
}

async fn insert(tx: &mut Tx, new: &NewTasks, now: i64) -> Result<Vec<Enqueued>, BrokerError> {
    if new.tasks.is_empty() {
        return Ok(Vec::new());
    }
    let stored: Vec<String> = sqlx::query_scalar(INSERT)
        .bind(&new.json)
        .bind(now)
        .fetch_all(&mut tx.conn)
        .await?;
    let mut stored = stored
        .iter()
        .map(|id| rows::uuid(id))
        .collect::<Result<HashSet<Uuid>, _>>()?;
    let mut out = Vec::with_capacity(new.tasks.len());
    for t in &new.tasks {
        // `remove`: of one id submitted twice, only the first is created.
        if stored.remove(&t.id) {
            if t.run_at <= now {
                tx.wake(&t.queue);
            }
            out.push(Enqueued {
                id: t.id,
                created: true,
            });
            continue;
        }
        let existing: Option<String> = sqlx::query_scalar(EXISTING)
            .bind(t.id.to_string())
            .bind(&t.unique_key)
            .fetch_one(&mut tx.conn)
            .await?;
        let existing = existing.ok_or_else(|| {
            BrokerError::Backend(format!("task {} was neither stored nor found", t.id))
        })?;
        out.push(Enqueued {
            id: rows::uuid(&existing)?,
            created: false,
        });
    }
    Ok(out)
}

/// Inserts one task (a chord's callback, a schedule's tick).
async fn insert_one(tx: &mut Tx, task: &NewTask, now: i64) -> Result<(), BrokerError> {
    insert(tx, &NewTasks::encode(std::slice::from_ref(task))?, now).await?;
    Ok(())
}

/// Creates the chord of `group`, or enqueues `callback` at once when it has
/// no member.
pub(super) fn create_chord(
    tx: &mut Tx,
    group: Uuid,
    members: u32,
    callback: NewTask,
) -> Op<'_, ()> {
    Box::pin(async move {
        if members == 0 {
            return insert_one(tx, &callback, now_micros()).await;
        }
        sqlx::query(
            "INSERT INTO chords (group_id, remaining, callback) VALUES (?1, ?2, ?3) \
             ON CONFLICT (group_id) DO UPDATE \
             SET remaining = excluded.remaining, callback = excluded.callback",
        )
        .bind(group.to_string())
        .bind(i64::from(members))
        .bind(serde_json::to_string(&callback)?)
        .execute(&mut tx.conn)
        .await?;
        Ok(())
    })
}

/// A member of `group` succeeded: the last one enqueues the callback.
async fn chord_member_succeeded(tx: &mut Tx, group: &str, now: i64) -> Result<(), BrokerError> {
    let left: Option<(i64, String)> = sqlx::query_as(
        "UPDATE chords SET remaining = remaining - 1 WHERE group_id = ?1 \
         RETURNING remaining, callback",
    )
    .bind(group)
    .fetch_optional(&mut tx.conn)
    .await?;
    if let Some((remaining, callback)) = left
        && remaining <= 0
    {
        drop_chord(tx, group).await?;
        let callback: NewTask = serde_json::from_str(&callback)?;
        insert_one(tx, &callback, now).await?;
    }
    Ok(())
}

/// A member of `group` ended other than succeeded: the chord fails, its
/// callback is never enqueued.
async fn drop_chord(tx: &mut Tx, group: &str) -> Result<(), BrokerError> {
    sqlx::query("DELETE FROM chords WHERE group_id = ?1")
        .bind(group)
        .execute(&mut tx.conn)
        .await?;
    Ok(())
}

/// Up to this many queues, a claim reads each queue's ready tasks in claim
/// order from `tasks_ready` (at most `limit` each) and merges them; beyond,
/// it sorts every ready task of its queues (SQLite also caps a compound
/// select at 500 arms).
const MERGED_QUEUES: usize = 16;

/// The claim statement for `queues` queues: `?1` worker, `?2` now, `?3`
/// limit, then the queues: `?4…` one each, or `?4` as a JSON array beyond
/// [`MERGED_QUEUES`].
fn claim_sql(queues: usize) -> String {
    const READY: &str = "state IN ('pending', 'scheduled', 'retrying') AND run_at <= ?2";
    const ORDER: &str = "ORDER BY priority DESC, run_at, id LIMIT ?3";
    let pick = match queues {
        1 => format!("SELECT id FROM tasks WHERE {READY} AND queue = ?4 {ORDER}"),
        2..=MERGED_QUEUES => {
            let arms: Vec<String> = (0..queues)
                .map(|i| {
                    format!(
                        "SELECT * FROM (SELECT id, priority, run_at FROM tasks \
                         WHERE {READY} AND queue = ?{} {ORDER})",
                        i + 4
                    )
                })
                .collect();
            format!("SELECT id FROM ({}) {ORDER}", arms.join(" UNION ALL "))
        }
        _ => format!(
            "SELECT id FROM tasks \
             WHERE {READY} AND queue IN (SELECT value FROM json_each(?4)) {ORDER}"
        ),
    };
    format!(
        "UPDATE tasks SET state = 'running', worker_id = ?1, started_at = ?2, \
                attempts = attempts + 1, epoch = epoch + 1, progress = NULL \
         WHERE id IN ({pick}) \
           AND EXISTS (SELECT 1 FROM workers WHERE id = ?1 AND lease_expires_at > ?2) \
         RETURNING {TASK_COLUMNS}"
    )
}

/// What a claim took.
pub(super) struct Claimed {
    /// The claimed rows, in no particular order (decoded by the caller).
    pub(super) rows: Vec<SqliteRow>,
    /// Nothing was taken although the worker's lease is valid: no task was
    /// ready.
    pub(super) idle: bool,
}

/// Claims up to `limit` ready tasks of `queues` (distinct, non-empty) for
/// `worker`.
pub(super) fn claim(tx: &mut Tx, worker: Uuid, queues: Vec<String>, limit: i64) -> Op<'_, Claimed> {
    Box::pin(async move {
        let now = now_micros();
        let worker = worker.to_string();
        let sql = claim_sql(queues.len());
        let mut q = sqlx::query(&sql).bind(&worker).bind(now).bind(limit);
        if queues.len() > MERGED_QUEUES {
            q = q.bind(serde_json::to_string(&queues)?);
        } else {
            for queue in &queues {
                q = q.bind(queue);
            }
        }
        let rows = q.fetch_all(&mut tx.conn).await?;
        let idle = rows.is_empty() && lease_valid(tx, &worker, now).await?;
        Ok(Claimed { rows, idle })
    })
}

async fn lease_valid(tx: &mut Tx, worker: &str, now: i64) -> Result<bool, BrokerError> {
    let valid: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM workers WHERE id = ?1 AND lease_expires_at > ?2)",
    )
    .bind(worker)
    .bind(now)
    .fetch_one(&mut tx.conn)
    .await?;
    Ok(valid)
}

/// Applies a batch of completions in one statement per run of distinct ids:
/// the fencing rule is in its `WHERE`.
const COMPLETE: &str = "\
    UPDATE tasks SET \
        state = CASE c.state WHEN 'requeue' \
                THEN CASE WHEN c.run_at > ?2 THEN 'scheduled' ELSE 'pending' END \
                ELSE c.state END, \
        result = c.result, \
        error = CASE WHEN c.keep_error THEN tasks.error ELSE c.error END, \
        run_at = coalesce(c.run_at, tasks.run_at), \
        attempts = tasks.attempts - c.requeue, \
        finished_at = CASE WHEN c.terminal THEN ?2 END, \
        expires_at = c.expires_at, \
        unique_key = CASE WHEN c.terminal THEN NULL ELSE tasks.unique_key END \
    FROM (SELECT value ->> 'id' AS id, value ->> 'epoch' AS epoch, value ->> 'worker' AS worker, \
                 value ->> 'state' AS state, value ->> 'result' AS result, \
                 value ->> 'error' AS error, value ->> 'keep_error' AS keep_error, \
                 value ->> 'run_at' AS run_at, value ->> 'expires_at' AS expires_at, \
                 value ->> 'terminal' AS terminal, value ->> 'requeue' AS requeue \
          FROM json_each(?1)) AS c \
    WHERE tasks.id = c.id AND tasks.state = 'running' AND tasks.epoch = c.epoch \
      AND tasks.worker_id = c.worker \
      AND EXISTS (SELECT 1 FROM workers AS w WHERE w.id = c.worker AND w.lease_expires_at > ?2) \
    RETURNING tasks.id, tasks.queue, tasks.group_id";

/// Completions encoded by the caller: runs of distinct ids (a task answered
/// twice in one call is answered in order, the second time fenced out).
pub(super) struct Acks {
    runs: Vec<AckRun>,
}

struct AckRun {
    json: String,
    items: Vec<AckMeta>,
}

/// What happens after the statement for one applied completion.
struct AckMeta {
    id: Uuid,
    end: End,
    follow_ups: Option<NewTasks>,
}

enum End {
    Succeeded,
    /// Failed, dead or cancelled: a chord it belongs to fails.
    Unsuccessful,
    /// Waiting again (retry or requeue) from this time.
    Waiting(i64),
}

#[derive(Serialize)]
struct AckRow {
    id: String,
    epoch: i64,
    worker: String,
    state: &'static str,
    result: Option<String>,
    error: Option<String>,
    keep_error: bool,
    run_at: Option<i64>,
    expires_at: Option<i64>,
    terminal: bool,
    requeue: i64,
}

impl Acks {
    /// Encodes `completions`.
    pub(super) fn encode(completions: &[Completion]) -> Result<Acks, BrokerError> {
        let mut runs: Vec<(Vec<AckRow>, Vec<AckMeta>, HashSet<Uuid>)> = Vec::new();
        for c in completions {
            let row = AckRow::new(c)?;
            let end = match &c.outcome {
                Outcome::Succeeded { .. } => End::Succeeded,
                Outcome::Retry { run_at, .. } | Outcome::Requeue { run_at } => {
                    End::Waiting(rows::micros(*run_at))
                }
                _ => End::Unsuccessful,
            };
            let follow_ups = if c.follow_ups.is_empty() {
                None
            } else {
                Some(NewTasks::encode(&c.follow_ups)?)
            };
            let meta = AckMeta {
                id: c.id,
                end,
                follow_ups,
            };
            match runs.last_mut() {
                Some((rows, metas, ids)) if !ids.contains(&c.id) => {
                    ids.insert(c.id);
                    rows.push(row);
                    metas.push(meta);
                }
                _ => runs.push((vec![row], vec![meta], HashSet::from([c.id]))),
            }
        }
        let runs = runs
            .into_iter()
            .map(|(rows, items, _)| {
                Ok(AckRun {
                    json: serde_json::to_string(&rows)?,
                    items,
                })
            })
            .collect::<Result<_, BrokerError>>()?;
        Ok(Acks { runs })
    }
}

impl AckRow {
    fn new(c: &Completion) -> Result<AckRow, BrokerError> {
        let mut row = AckRow {
            id: c.id.to_string(),
            epoch: c.epoch,
            worker: c.worker_id.to_string(),
            state: "",
            result: None,
            error: None,
            keep_error: false,
            run_at: None,
            expires_at: None,
            terminal: true,
            requeue: 0,
        };
        let end = |row: &mut AckRow, state, expires_at| {
            row.state = state;
            row.expires_at = Some(rows::micros(expires_at));
        };
        match &c.outcome {
            Outcome::Succeeded { result, expires_at } => {
                end(&mut row, "succeeded", *expires_at);
                row.result = Some(serde_json::to_string(result)?);
            }
            Outcome::Failed { error, expires_at } => {
                end(&mut row, "failed", *expires_at);
                row.error = Some(serde_json::to_string(error)?);
            }
            Outcome::Dead { error, expires_at } => {
                end(&mut row, "dead", *expires_at);
                row.error = Some(serde_json::to_string(error)?);
            }
            Outcome::Cancelled { expires_at } => {
                end(&mut row, "cancelled", *expires_at);
                row.keep_error = true;
            }
            Outcome::Retry { error, run_at } => {
                row.state = "retrying";
                row.error = Some(serde_json::to_string(error)?);
                row.run_at = Some(rows::micros(*run_at));
                row.terminal = false;
            }
            Outcome::Requeue { run_at } => {
                row.state = "requeue";
                row.keep_error = true;
                row.run_at = Some(rows::micros(*run_at));
                row.terminal = false;
                row.requeue = 1;
            }
        }
        Ok(row)
    }
}

/// Applies `acks`; per completion, whether it applied.
pub(super) fn complete(tx: &mut Tx, acks: Acks) -> Op<'_, Vec<bool>> {
    Box::pin(async move {
        let now = now_micros();
        let mut out = Vec::new();
        for run in &acks.runs {
            let applied: Vec<(String, String, Option<String>)> = sqlx::query_as(COMPLETE)
                .bind(&run.json)
                .bind(now)
                .fetch_all(&mut tx.conn)
                .await?;
            let mut applied: HashMap<Uuid, (String, Option<String>)> = applied
                .into_iter()
                .map(|(id, queue, group)| Ok((rows::uuid(&id)?, (queue, group))))
                .collect::<Result<_, BrokerError>>()?;
            for item in &run.items {
                let Some((queue, group)) = applied.remove(&item.id) else {
                    out.push(false);
                    continue;
                };
                out.push(true);
                if let Some(follow_ups) = &item.follow_ups {
                    insert(tx, follow_ups, now).await?;
                }
                match (&item.end, group) {
                    (End::Succeeded, Some(group)) => {
                        chord_member_succeeded(tx, &group, now).await?;
                    }
                    (End::Unsuccessful, Some(group)) => drop_chord(tx, &group).await?,
                    (End::Waiting(run_at), _) if *run_at <= now => tx.wake(&queue),
                    _ => {}
                }
            }
        }
        Ok(out)
    })
}

/// Records the progress of attempt `epoch` of running task `id`.
pub(super) fn progress(tx: &mut Tx, id: Uuid, epoch: i64, progress: String) -> Op<'_, bool> {
    Box::pin(async move {
        let done = sqlx::query(
            "UPDATE tasks SET progress = ?3 WHERE id = ?1 AND epoch = ?2 AND state = 'running'",
        )
        .bind(id.to_string())
        .bind(epoch)
        .bind(progress)
        .execute(&mut tx.conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// A worker to register, encoded.
pub(super) struct NewWorker {
    pub(super) id: String,
    pub(super) hostname: String,
    pub(super) pid: u32,
    pub(super) queues: String,
    pub(super) concurrency: u32,
    pub(super) started_at: i64,
}

/// Registers (or renews) a worker with a lease of `ttl` µs from now.
pub(super) fn register_worker(tx: &mut Tx, w: NewWorker, ttl: i64) -> Op<'_, ()> {
    Box::pin(async move {
        let now = now_micros();
        sqlx::query(
            "INSERT INTO workers (id, hostname, pid, queues, concurrency, started_at, \
                                  last_heartbeat, lease_expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, pid = excluded.pid, \
                 queues = excluded.queues, concurrency = excluded.concurrency, \
                 last_heartbeat = excluded.last_heartbeat, \
                 lease_expires_at = excluded.lease_expires_at",
        )
        .bind(w.id)
        .bind(w.hostname)
        .bind(i64::from(w.pid))
        .bind(w.queues)
        .bind(i64::from(w.concurrency))
        .bind(w.started_at)
        .bind(now)
        .bind(now.saturating_add(ttl))
        .execute(&mut tx.conn)
        .await?;
        Ok(())
    })
}

/// Renews `worker`'s lease if still valid and lists its tasks to cancel.
pub(super) fn heartbeat(tx: &mut Tx, worker: Uuid, ttl: i64) -> Op<'_, Heartbeat> {
    Box::pin(async move {
        let now = now_micros();
        let worker = worker.to_string();
        let renewed = sqlx::query(
            "UPDATE workers SET last_heartbeat = ?2, lease_expires_at = ?3 \
             WHERE id = ?1 AND lease_expires_at > ?2",
        )
        .bind(&worker)
        .bind(now)
        .bind(now.saturating_add(ttl))
        .execute(&mut tx.conn)
        .await?;
        if renewed.rows_affected() == 0 {
            return Ok(Heartbeat::default());
        }
        let cancel: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM tasks \
             WHERE state = 'running' AND worker_id = ?1 AND cancel_requested = 1",
        )
        .bind(&worker)
        .fetch_all(&mut tx.conn)
        .await?;
        Ok(Heartbeat {
            lease_valid: true,
            cancel: cancel
                .iter()
                .map(|id| rows::uuid(id))
                .collect::<Result<_, _>>()?,
        })
    })
}

/// Removes `worker`.
pub(super) fn deregister_worker(tx: &mut Tx, worker: Uuid) -> Op<'_, ()> {
    Box::pin(async move {
        sqlx::query("DELETE FROM workers WHERE id = ?1")
            .bind(worker.to_string())
            .execute(&mut tx.conn)
            .await?;
        Ok(())
    })
}

/// Puts back (or kills) the running tasks of expired or unknown workers.
const RESCUE: &str = "\
    UPDATE tasks SET \
        state = CASE WHEN attempts > max_retries THEN 'dead' ELSE 'retrying' END, \
        run_at = CASE WHEN attempts > max_retries THEN run_at ELSE ?1 END, \
        error = json_object('category', ?3, \
            'message', 'lease expired: worker ' || coalesce(worker_id, '(none)') \
                || ' stopped renewing its lease while running this task', \
            'retryable', json(?4)), \
        finished_at = CASE WHEN attempts > max_retries THEN ?1 END, \
        expires_at = CASE WHEN attempts > max_retries \
            THEN ?1 + min(max(coalesce(options ->> 'result_ttl_secs', 0), ?2), 3153600000) * 1000000 END, \
        unique_key = CASE WHEN attempts > max_retries THEN NULL ELSE unique_key END \
    WHERE state = 'running' \
      AND NOT EXISTS (SELECT 1 FROM workers AS w \
                      WHERE w.id = tasks.worker_id AND w.lease_expires_at > ?1) \
    RETURNING id, state, queue, group_id";

/// Rescues the tasks of expired leases and forgets workers whose lease
/// ended more than `forget_after` µs ago.
pub(super) fn rescue_expired(tx: &mut Tx, forget_after: i64) -> Op<'_, Rescued> {
    Box::pin(async move {
        let now = now_micros();
        let system = ErrorCategory::System;
        let rescued: Vec<(String, String, String, Option<String>)> = sqlx::query_as(RESCUE)
            .bind(now)
            .bind(DEAD_TTL_SECS)
            .bind(system.as_str())
            .bind(if system.retry_may_help() {
                "true"
            } else {
                "false"
            })
            .fetch_all(&mut tx.conn)
            .await?;
        let mut out = Rescued::default();
        for (id, state, queue, group) in rescued {
            if state == TaskState::Dead.as_str() {
                out.dead += 1;
                out.dead_ids.push(
                    id.parse()
                        .map_err(|e| BrokerError::Data(format!("task id {id:?}: {e}")))?,
                );
                if let Some(group) = group {
                    drop_chord(tx, &group).await?;
                }
            } else {
                out.requeued += 1;
                tx.wake(&queue);
            }
        }
        sqlx::query("DELETE FROM workers WHERE lease_expires_at < ?1")
            .bind(now.saturating_sub(forget_after))
            .execute(&mut tx.conn)
            .await?;
        Ok(out)
    })
}

async fn state_of(
    tx: &mut Tx,
    id: &str,
) -> Result<Option<(TaskState, String, Option<String>)>, BrokerError> {
    let row: Option<(String, String, Option<String>)> =
        sqlx::query_as("SELECT state, queue, group_id FROM tasks WHERE id = ?1")
            .bind(id)
            .fetch_optional(&mut tx.conn)
            .await?;
    row.map(|(state, queue, group)| Ok((rows::state(&state)?, queue, group)))
        .transpose()
}

/// Cancels task `id` (see [`crate::Broker::cancel`]).
pub(super) fn cancel(tx: &mut Tx, id: Uuid, expires_at: i64) -> Op<'_, Option<CancelOutcome>> {
    Box::pin(async move {
        let id = id.to_string();
        let Some((state, _, group)) = state_of(tx, &id).await? else {
            return Ok(None);
        };
        if state.is_terminal() {
            return Ok(Some(CancelOutcome::AlreadyFinished(state)));
        }
        if state == TaskState::Running {
            sqlx::query("UPDATE tasks SET cancel_requested = 1 WHERE id = ?1")
                .bind(&id)
                .execute(&mut tx.conn)
                .await?;
            return Ok(Some(CancelOutcome::Requested));
        }
        sqlx::query(
            "UPDATE tasks SET state = 'cancelled', finished_at = ?2, expires_at = ?3, \
                              unique_key = NULL \
             WHERE id = ?1",
        )
        .bind(&id)
        .bind(now_micros())
        .bind(expires_at)
        .execute(&mut tx.conn)
        .await?;
        if let Some(group) = group {
            drop_chord(tx, &group).await?;
        }
        Ok(Some(CancelOutcome::Cancelled))
    })
}

/// Puts a dead, failed or cancelled task back to `pending`.
pub(super) fn retry(tx: &mut Tx, id: Uuid) -> Op<'_, Option<RetryOutcome>> {
    Box::pin(async move {
        let id = id.to_string();
        let Some((state, queue, _)) = state_of(tx, &id).await? else {
            return Ok(None);
        };
        if !matches!(
            state,
            TaskState::Dead | TaskState::Failed | TaskState::Cancelled
        ) {
            return Ok(Some(RetryOutcome::NotRetryable(state)));
        }
        sqlx::query(
            "UPDATE tasks SET state = 'pending', run_at = ?2, attempts = 0, error = NULL, \
                              result = NULL, finished_at = NULL, expires_at = NULL, \
                              cancel_requested = 0 \
             WHERE id = ?1",
        )
        .bind(&id)
        .bind(now_micros())
        .execute(&mut tx.conn)
        .await?;
        tx.wake(&queue);
        Ok(Some(RetryOutcome::Requeued))
    })
}

/// Deletes at most `limit` expired terminal tasks.
pub(super) fn prune(tx: &mut Tx, limit: u32) -> Op<'_, u64> {
    Box::pin(async move {
        let done = sqlx::query(
            "DELETE FROM tasks WHERE id IN ( \
                 SELECT id FROM tasks WHERE expires_at IS NOT NULL AND expires_at <= ?1 \
                   AND state IN ('succeeded', 'failed', 'cancelled', 'dead') \
                 LIMIT ?2)",
        )
        .bind(now_micros())
        .bind(i64::from(limit))
        .execute(&mut tx.conn)
        .await?;
        Ok(done.rows_affected())
    })
}

/// A schedule to store, encoded.
pub(super) struct NewSchedule {
    pub(super) name: String,
    pub(super) cron: String,
    pub(super) timezone: String,
    pub(super) task: String,
    pub(super) next_fire_at: i64,
    pub(super) last_fired_at: Option<i64>,
    pub(super) created_at: i64,
}

/// Creates or replaces a schedule (keeping its first `created_at`).
pub(super) fn put_schedule(tx: &mut Tx, s: NewSchedule) -> Op<'_, ()> {
    Box::pin(async move {
        sqlx::query(
            "INSERT INTO schedules (name, cron, timezone, task, next_fire_at, last_fired_at, \
                                    created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (name) DO UPDATE SET cron = excluded.cron, \
                 timezone = excluded.timezone, task = excluded.task, \
                 next_fire_at = excluded.next_fire_at, last_fired_at = excluded.last_fired_at",
        )
        .bind(s.name)
        .bind(s.cron)
        .bind(s.timezone)
        .bind(s.task)
        .bind(s.next_fire_at)
        .bind(s.last_fired_at)
        .bind(s.created_at)
        .execute(&mut tx.conn)
        .await?;
        Ok(())
    })
}

/// Deletes schedule `name`.
pub(super) fn delete_schedule(tx: &mut Tx, name: String) -> Op<'_, bool> {
    Box::pin(async move {
        let done = sqlx::query("DELETE FROM schedules WHERE name = ?1")
            .bind(name)
            .execute(&mut tx.conn)
            .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// Fires tick `tick` of `name` if it is still the next one.
pub(super) fn fire_schedule(
    tx: &mut Tx,
    name: String,
    tick: i64,
    next: i64,
    task: NewTasks,
) -> Op<'_, bool> {
    Box::pin(async move {
        let fired = sqlx::query(
            "UPDATE schedules SET next_fire_at = ?3, last_fired_at = ?2 \
             WHERE name = ?1 AND next_fire_at = ?2",
        )
        .bind(name)
        .bind(tick)
        .bind(next)
        .execute(&mut tx.conn)
        .await?;
        if fired.rows_affected() == 0 {
            return Ok(false);
        }
        insert(tx, &task, now_micros()).await?;
        Ok(true)
    })
}

/// Takes a token from bucket `key` (validated: `per_second > 0`,
/// `burst >= 1`).
pub(super) fn take_rate_token(
    tx: &mut Tx,
    key: String,
    per_second: f64,
    burst: u32,
) -> Op<'_, Option<Duration>> {
    Box::pin(async move {
        let now = now_micros();
        let bucket: Option<(f64, i64)> =
            sqlx::query_as("SELECT tokens, updated_at FROM rate_buckets WHERE key = ?1")
                .bind(&key)
                .fetch_optional(&mut tx.conn)
                .await?;
        let full = f64::from(burst);
        let mut tokens = match bucket {
            None => full,
            Some((tokens, at)) => {
                // Lossy only beyond 2^53 µs (285 years) of idleness.
                #[allow(clippy::cast_precision_loss)]
                let idle = now.saturating_sub(at).max(0) as f64 / 1e6;
                (tokens + idle * per_second).min(full)
            }
        };
        let wait = if tokens >= 1.0 {
            tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - tokens) / per_second))
        };
        sqlx::query(
            "INSERT INTO rate_buckets (key, tokens, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, \
                                             updated_at = excluded.updated_at",
        )
        .bind(&key)
        .bind(tokens)
        .bind(now)
        .execute(&mut tx.conn)
        .await?;
        Ok(wait)
    })
}
