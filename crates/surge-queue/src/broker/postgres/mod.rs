//! The PostgreSQL broker: every operation is one SQL statement (claims with
//! `FOR UPDATE SKIP LOCKED`, a batch of acknowledgements in one `UPDATE …
//! FROM unnest(…)`), every time decision is the server's `now()`, and
//! LISTEN/NOTIFY wakes idle claimers.
//!
//! Wake-ups go to a channel named after the connection's schema
//! (`surge_queue_<schema>`), so brokers on other schemas of the same
//! database never wake each other.
//!
//! Finished tasks stay in `tasks` (so `get`, `list` and `counts` see them)
//! but out of the claim and running indexes, which are partial: claim and
//! acknowledgement cost does not grow with them; `prune` deletes them once
//! expired.

mod columns;
mod sql;
mod wakeup;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};

use self::columns::{CompletionColumns, TASK_COLUMNS, TaskColumns, json, parse_state, parse_uuid};
use self::wakeup::Wakeups;
use super::{Broker, BrokerConfig};
use crate::BrokerError;
use crate::model::{
    CancelOutcome, Completion, Enqueued, Heartbeat, NewTask, Progress, QueueCount, Rescued,
    RetryOutcome, Schedule, TaskFilter, TaskId, TaskRecord, TaskState, WorkerId, WorkerInfo,
};

/// How long a task that a rescue declares dead is kept at least (dead tasks
/// wait for a person; the same as the engine keeps failed and dead tasks).
const DEAD_TASK_TTL_SECS: f64 = 7.0 * 86_400.0;

/// Longest interval sent to the server (longer ones are clamped: a century
/// is "forever" for a lease or a forget-after).
const MAX_INTERVAL: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A [`Broker`] on PostgreSQL (15 or later). Cheap to clone.
#[derive(Clone)]
pub struct PgBroker {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    wakeups: Wakeups,
}

impl std::fmt::Debug for PgBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBroker")
            .field("channel", &self.inner.wakeups.channel())
            .finish_non_exhaustive()
    }
}

impl PgBroker {
    /// Connects to `url` (`postgres://…` or `postgresql://…`) and creates or
    /// migrates the queue tables in the connection's schema (the first of
    /// its `search_path`).
    ///
    /// # Errors
    /// [`BrokerError::InvalidUrl`] for a malformed URL;
    /// [`BrokerError::Unavailable`] when the server cannot be reached;
    /// [`BrokerError::Migration`] when the schema cannot be created.
    pub async fn connect(url: &str, config: &BrokerConfig) -> Result<Self, BrokerError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(BrokerError::InvalidUrl(format!(
                "{}: not a PostgreSQL URL (postgres://USER@HOST/DB)",
                redact(url)
            )));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| BrokerError::InvalidUrl(format!("{}: {e}", redact(url))))?
            // A queue's statements are short: JIT compilation of one would
            // cost more than running it.
            .options([("jit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(config.acquire_timeout)
            // A connection broken by an outage is dropped when released;
            // pinging on every acquire would add a round trip per call.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        let mut migrator = sqlx::migrate!("migrations/postgres");
        // surge-store keeps its own migrations (versions below 1000) in the
        // same database; each migrator ignores the other's.
        migrator.set_ignore_missing(true);
        migrator.run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => match BrokerError::from(e) {
                transient @ BrokerError::Unavailable { .. } => transient,
                other => BrokerError::Migration(other.to_string()),
            },
            other => BrokerError::Migration(other.to_string()),
        })?;
        let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&pool)
            .await?;
        let schema = schema
            .ok_or_else(|| BrokerError::Migration("no schema in the search_path".to_owned()))?;
        let listen_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(config.acquire_timeout)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(options);
        Ok(PgBroker {
            inner: Arc::new(Inner {
                pool,
                wakeups: Wakeups::new(wakeup::channel_for(&schema), listen_pool),
            }),
        })
    }

    fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    fn channel(&self) -> &str {
        self.inner.wakeups.channel()
    }

    /// Inserts `tasks` in one statement; `None` for each task that was not
    /// created (its id exists or its unique key is held).
    async fn insert(&self, tasks: &[NewTask]) -> Result<Vec<Option<Enqueued>>, BrokerError> {
        let rows = TaskColumns::of(tasks)?
            .bind(sqlx::query(&sql::ENQUEUE))
            .bind(self.channel())
            .fetch_all(self.pool())
            .await?;
        let mut created = HashSet::with_capacity(rows.len());
        for row in &rows {
            created.insert(parse_uuid(row.try_get(0)?)?);
        }
        // A repeated id in the batch is created once: its first occurrence.
        Ok(tasks
            .iter()
            .map(|t| {
                created.remove(&t.id).then_some(Enqueued {
                    id: t.id,
                    created: true,
                })
            })
            .collect())
    }

    /// For tasks that were not created: the live task holding each one's id
    /// or unique key; `None` where there is none any more (the holder
    /// finished in between).
    async fn existing(&self, tasks: &[&NewTask]) -> Result<Vec<Option<Enqueued>>, BrokerError> {
        let ids: Vec<String> = tasks.iter().map(|t| t.id.to_string()).collect();
        let keys: Vec<&str> = tasks
            .iter()
            .filter_map(|t| t.unique_key.as_deref())
            .collect();
        let rows = sqlx::query(sql::EXISTING)
            .bind(ids)
            .bind(keys)
            .fetch_all(self.pool())
            .await?;
        let mut by_id = HashSet::new();
        let mut by_key = HashMap::new();
        for row in &rows {
            let id = parse_uuid(row.try_get(0)?)?;
            by_id.insert(id);
            if let Some(key) = row.try_get::<Option<String>, _>(1)? {
                by_key.insert(key, id);
            }
        }
        Ok(tasks
            .iter()
            .map(|t| {
                let holder = if by_id.contains(&t.id) {
                    Some(t.id)
                } else {
                    t.unique_key.as_ref().and_then(|k| by_key.get(k).copied())
                };
                holder.map(|id| Enqueued { id, created: false })
            })
            .collect())
    }
}

/// `url` without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}:***{}", &url[..scheme + 3 + colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// `d`, clamped to what an interval surely holds.
fn interval(d: Duration) -> Duration {
    d.min(MAX_INTERVAL)
}

impl Broker for PgBroker {
    fn pool(&self) -> Option<crate::broker::BrokerPool> {
        Some(crate::broker::BrokerPool::of(self.pool()))
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        sqlx::query("SELECT 1").execute(self.pool()).await?;
        Ok(())
    }

    async fn enqueue(&self, tasks: &[NewTask]) -> Result<Vec<Enqueued>, BrokerError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let mut outcome = self.insert(tasks).await?;
        // Not created: find who holds the id or key. A holder may finish in
        // between and release its key; then the insert is tried again.
        for _ in 0..5 {
            let missing: Vec<usize> = (0..tasks.len()).filter(|&i| outcome[i].is_none()).collect();
            if missing.is_empty() {
                break;
            }
            let pending: Vec<&NewTask> = missing.iter().map(|&i| &tasks[i]).collect();
            let found = self.existing(&pending).await?;
            let mut retry = Vec::new();
            for (&i, found) in missing.iter().zip(found) {
                match found {
                    Some(e) => outcome[i] = Some(e),
                    None => retry.push(i),
                }
            }
            if retry.is_empty() {
                break;
            }
            let again: Vec<NewTask> = retry.iter().map(|&i| tasks[i].clone()).collect();
            for (&i, e) in retry.iter().zip(self.insert(&again).await?) {
                outcome[i] = e;
            }
        }
        outcome
            .into_iter()
            .map(|e| e.ok_or_else(|| BrokerError::unavailable("unique key contention")))
            .collect()
    }

    async fn create_chord(
        &self,
        group_id: TaskId,
        members: u32,
        callback: &NewTask,
    ) -> Result<(), BrokerError> {
        if members == 0 {
            // No member will ever complete: the callback is due now.
            self.enqueue(std::slice::from_ref(callback)).await?;
            return Ok(());
        }
        let mut columns = TaskColumns::default();
        columns.push(0, callback)?;
        columns
            .bind(
                sqlx::query(&sql::CREATE_CHORD)
                    .bind(group_id.to_string())
                    .bind(i64::from(members)),
            )
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn claim(
        &self,
        worker: WorkerId,
        queues: &[String],
        limit: usize,
    ) -> Result<Vec<TaskRecord>, BrokerError> {
        self.inner.wakeups.claim_started();
        if limit == 0 || queues.is_empty() {
            return Ok(Vec::new());
        }
        let mut names: Vec<&str> = queues.iter().map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        let rows = sqlx::query(&sql::CLAIM)
            .bind(worker.to_string())
            .bind(names)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(self.channel())
            .fetch_all(self.pool())
            .await?;
        let mut tasks = rows
            .iter()
            .map(columns::task)
            .collect::<Result<Vec<_>, _>>()?;
        // RETURNING has no order: put them back in claim order.
        tasks.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a.id.cmp(&b.id))
        });
        Ok(tasks)
    }

    async fn wait_for_work(&self, queues: &[String], max_wait: Duration) {
        self.inner.wakeups.wait(queues, max_wait).await;
    }

    async fn complete(&self, completions: &[Completion]) -> Result<Vec<bool>, BrokerError> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let mut follow_ups = TaskColumns::default();
        for (i, done) in completions.iter().enumerate() {
            for task in &done.follow_ups {
                follow_ups.push(i as i64 + 1, task)?;
            }
        }
        let query = CompletionColumns::of(completions)?.bind(sqlx::query(&sql::COMPLETE));
        let rows = follow_ups
            .bind(query)
            .bind(self.channel())
            .fetch_all(self.pool())
            .await?;
        let mut applied = vec![false; completions.len()];
        for row in &rows {
            let ord: i64 = row.try_get(0)?;
            let slot = usize::try_from(ord - 1)
                .ok()
                .and_then(|i| applied.get_mut(i))
                .ok_or_else(|| BrokerError::Data(format!("completion {ord} out of range")))?;
            *slot = true;
        }
        Ok(applied)
    }

    async fn progress(
        &self,
        id: TaskId,
        epoch: i64,
        progress: &Progress,
    ) -> Result<bool, BrokerError> {
        let done = sqlx::query(&sql::PROGRESS)
            .bind(id.to_string())
            .bind(epoch)
            .bind(json(progress)?)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn register_worker(
        &self,
        worker: &WorkerInfo,
        lease_ttl: Duration,
    ) -> Result<(), BrokerError> {
        sqlx::query(sql::REGISTER_WORKER)
            .bind(worker.id.to_string())
            .bind(&worker.hostname)
            .bind(i64::from(worker.pid))
            .bind(&worker.queues)
            .bind(i64::from(worker.concurrency))
            .bind(worker.started_at)
            .bind(interval(lease_ttl))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn heartbeat(
        &self,
        worker: WorkerId,
        lease_ttl: Duration,
    ) -> Result<Heartbeat, BrokerError> {
        let row = sqlx::query(sql::HEARTBEAT)
            .bind(worker.to_string())
            .bind(interval(lease_ttl))
            .fetch_one(self.pool())
            .await?;
        let lease_valid: bool = row.try_get(0)?;
        let cancel = if lease_valid {
            row.try_get::<Vec<String>, _>(1)?
                .iter()
                .map(|s| parse_uuid(s))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        Ok(Heartbeat {
            lease_valid,
            cancel,
        })
    }

    async fn deregister_worker(&self, worker: WorkerId) -> Result<(), BrokerError> {
        sqlx::query(sql::DEREGISTER_WORKER)
            .bind(worker.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>, BrokerError> {
        let rows = sqlx::query(&sql::WORKERS).fetch_all(self.pool()).await?;
        rows.iter().map(columns::worker).collect()
    }

    async fn rescue_expired(&self, forget_after: Duration) -> Result<Rescued, BrokerError> {
        let row = sqlx::query(&sql::RESCUE)
            .bind(interval(forget_after))
            .bind(self.channel())
            .bind(DEAD_TASK_TTL_SECS)
            .fetch_one(self.pool())
            .await?;
        let count = |i: usize| -> Result<u64, BrokerError> {
            let n: i64 = row.try_get(i)?;
            u64::try_from(n).map_err(|e| BrokerError::Data(e.to_string()))
        };
        let dead_ids: Option<Vec<String>> = row.try_get(3)?;
        let dead_ids = dead_ids
            .unwrap_or_default()
            .iter()
            .map(|id| {
                id.parse()
                    .map_err(|e| BrokerError::Data(format!("task id {id:?}: {e}")))
            })
            .collect::<Result<Vec<TaskId>, _>>()?;
        Ok(Rescued {
            requeued: count(0)?,
            dead: count(1)?,
            dead_ids,
        })
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, BrokerError> {
        let row = sqlx::query(&sql::GET)
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(columns::task).transpose()
    }

    async fn list(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, BrokerError> {
        // Only the filters given appear in the SQL, so each combination
        // gets a plan that can use its index.
        let mut conditions = Vec::new();
        let mut n = 0;
        let mut param = |cond: &str| {
            n += 1;
            conditions.push(cond.replace('?', &format!("${n}")));
        };
        if filter.state.is_some() {
            param("t.state = ?");
        }
        if filter.kind.is_some() {
            param("t.kind = ?");
        }
        if filter.queue.is_some() {
            param("t.queue = ?");
        }
        if filter.group_id.is_some() {
            param("t.group_id = ?::uuid");
        }
        if filter.before.is_some() {
            param("t.id < ?::uuid");
        }
        let limit = n + 1;
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks t {} {} ORDER BY t.id DESC LIMIT ${limit}",
            if conditions.is_empty() { "" } else { "WHERE" },
            conditions.join(" AND "),
        );
        let mut query = sqlx::query(&sql);
        if let Some(state) = filter.state {
            query = query.bind(state.as_str());
        }
        if let Some(kind) = &filter.kind {
            query = query.bind(kind);
        }
        if let Some(queue) = &filter.queue {
            query = query.bind(queue);
        }
        if let Some(group) = filter.group_id {
            query = query.bind(group.to_string());
        }
        if let Some(before) = filter.before {
            query = query.bind(before.to_string());
        }
        let rows = query
            .bind(i64::from(filter.limit))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(columns::task).collect()
    }

    async fn cancel(
        &self,
        id: TaskId,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<CancelOutcome>, BrokerError> {
        let row = sqlx::query(sql::CANCEL)
            .bind(id.to_string())
            .bind(expires_at)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(match parse_state(row.try_get(0)?)? {
            TaskState::Running => CancelOutcome::Requested,
            s if s.is_waiting() => CancelOutcome::Cancelled,
            s => CancelOutcome::AlreadyFinished(s),
        }))
    }

    async fn retry(&self, id: TaskId) -> Result<Option<RetryOutcome>, BrokerError> {
        let row = sqlx::query(&sql::RETRY)
            .bind(id.to_string())
            .bind(self.channel())
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(match parse_state(row.try_get(0)?)? {
            TaskState::Dead | TaskState::Failed | TaskState::Cancelled => RetryOutcome::Requeued,
            s => RetryOutcome::NotRetryable(s),
        }))
    }

    async fn counts(&self) -> Result<Vec<QueueCount>, BrokerError> {
        let rows = sqlx::query(sql::COUNTS).fetch_all(self.pool()).await?;
        rows.iter()
            .map(|row| {
                let count: i64 = row.try_get(2)?;
                Ok(QueueCount {
                    queue: row.try_get(0)?,
                    state: parse_state(row.try_get(1)?)?,
                    count: u64::try_from(count).map_err(|e| BrokerError::Data(e.to_string()))?,
                })
            })
            .collect()
    }

    async fn prune(&self, limit: u32) -> Result<u64, BrokerError> {
        let pruned: i64 = sqlx::query_scalar(sql::PRUNE)
            .bind(i64::from(limit))
            .fetch_one(self.pool())
            .await?;
        u64::try_from(pruned).map_err(|e| BrokerError::Data(e.to_string()))
    }

    async fn put_schedule(&self, schedule: &Schedule) -> Result<(), BrokerError> {
        super::check_schedule(schedule)?;
        sqlx::query(sql::PUT_SCHEDULE)
            .bind(&schedule.name)
            .bind(&schedule.cron)
            .bind(&schedule.timezone)
            .bind(json(&schedule.task)?)
            .bind(schedule.next_fire_at)
            .bind(schedule.last_fired_at)
            .bind(schedule.created_at)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, BrokerError> {
        let rows = sqlx::query(&sql::SCHEDULES).fetch_all(self.pool()).await?;
        rows.iter().map(columns::schedule).collect()
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, BrokerError> {
        let done = sqlx::query(sql::DELETE_SCHEDULE)
            .bind(name)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn fire_schedule(
        &self,
        name: &str,
        tick: DateTime<Utc>,
        next: DateTime<Utc>,
        task: &NewTask,
    ) -> Result<bool, BrokerError> {
        let query = sqlx::query(&sql::FIRE_SCHEDULE)
            .bind(name)
            .bind(tick)
            .bind(next);
        let row = TaskColumns::of(std::slice::from_ref(task))?
            .bind(query)
            .bind(self.channel())
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn take_rate_token(
        &self,
        key: &str,
        per_second: f64,
        burst: u32,
    ) -> Result<Option<Duration>, BrokerError> {
        super::check_rate(key, per_second, burst)?;
        let row = sqlx::query(sql::TAKE_RATE_TOKEN)
            .bind(key)
            .bind(per_second)
            .bind(f64::from(burst))
            .fetch_one(self.pool())
            .await?;
        let taken: bool = row.try_get(0)?;
        let tokens: f64 = row.try_get(1)?;
        Ok((!taken).then(|| Duration::from_secs_f64(((1.0 - tokens) / per_second).max(0.0))))
    }
}
