//! The embedded broker: tasks in a SQLite file, by default the same file as
//! the web service's tables.
//!
//! - Writes: one writer task per process owns one connection and commits
//!   every queued write in one `BEGIN IMMEDIATE` transaction (group commit;
//!   see the `writer` module). Callers in this process never see "database is
//!   locked"; a `surge worker` in another process on the same file competes
//!   through `busy_timeout` (the config's `acquire_timeout`), after which a
//!   call fails with [`BrokerError::Unavailable`].
//! - Reads (`get`, `list`, `counts`, `schedules`, `workers`) use a separate
//!   pool: WAL readers never wait for the writer.
//! - Claims: one `UPDATE … WHERE id IN (SELECT … ORDER BY priority DESC,
//!   run_at, id LIMIT n) RETURNING …` walking the partial index of waiting
//!   tasks, so its cost does not grow with finished tasks.
//! - Time: the local clock, in microseconds.
//! - Wake-ups: [`Broker::wait_for_work`] is woken by commits of this process
//!   that make a task of its queues ready (a submission, a retry or requeue
//!   due now, a rescue). Tasks submitted by another process are only found
//!   by claiming again when `max_wait` runs out; scheduled tasks likewise
//!   when their ETA passes.

mod ops;
mod rows;
mod signals;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, QueryBuilder, Sqlite};

use self::rows::{NewTasks, SCHEDULE_COLUMNS, TASK_COLUMNS, WORKER_COLUMNS, micros};
use self::signals::Signals;
use self::writer::Writer;
use crate::BrokerError;
use crate::broker::{Broker, BrokerConfig};
use crate::model::{
    CancelOutcome, Completion, Enqueued, Heartbeat, NewTask, Progress, QueueCount, Rescued,
    RetryOutcome, Schedule, TaskFilter, TaskId, TaskRecord, WorkerId, WorkerInfo,
};

/// The SQLite broker. Cheap to clone: clones share the writer, the read
/// pool and the wake-ups.
#[derive(Clone)]
pub struct SqliteBroker {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Writer,
    reads: SqlitePool,
    signals: Arc<Signals>,
}

impl std::fmt::Debug for SqliteBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBroker")
            .field("read_connections", &self.inner.reads.size())
            .finish_non_exhaustive()
    }
}

impl SqliteBroker {
    /// Opens (creating if missing) the SQLite file named by `url` and
    /// migrates the queue's tables.
    ///
    /// Accepted: `sqlite://PATH` (relative), `sqlite:///ABS/PATH`,
    /// `sqlite:PATH`. The file is put in WAL mode with `synchronous=NORMAL`
    /// (a power loss may lose the last commits, never corrupts).
    ///
    /// # Errors
    /// [`BrokerError::InvalidUrl`] for another scheme or an in-memory
    /// database (each connection would see its own); [`BrokerError::Unavailable`]
    /// when the file cannot be opened or is locked;
    /// [`BrokerError::Migration`] when the schema cannot be migrated.
    pub async fn connect(url: &str, config: &BrokerConfig) -> Result<Self, BrokerError> {
        if !url.starts_with("sqlite:") {
            return Err(BrokerError::InvalidUrl(format!(
                "{url}: not a SQLite URL; use sqlite://PATH"
            )));
        }
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(BrokerError::InvalidUrl(format!(
                "{url}: in-memory SQLite is not supported (each connection would see its own \
                 empty database); give a file, e.g. sqlite://surge.db"
            )));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| BrokerError::InvalidUrl(format!("{url}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(config.acquire_timeout)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-16000");
        let mut conn = options.connect().await?;
        let mut migrator = sqlx::migrate!("migrations/sqlite");
        // The web service's tables (surge-store, versions below 1000) share
        // the file; each migrator ignores the other's versions.
        migrator.set_ignore_missing(true);
        migrator.run(&mut conn).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => match BrokerError::from(e) {
                busy @ BrokerError::Unavailable { .. } => busy,
                other => BrokerError::Migration(other.to_string()),
            },
            other => BrokerError::Migration(other.to_string()),
        })?;
        let reads = SqlitePoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(config.acquire_timeout)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        let signals = Arc::new(Signals::default());
        Ok(SqliteBroker {
            inner: Arc::new(Inner {
                writer: Writer::spawn(conn, Arc::clone(&signals)),
                reads,
                signals,
            }),
        })
    }

    fn writer(&self) -> &Writer {
        &self.inner.writer
    }

    fn reads(&self) -> &SqlitePool {
        &self.inner.reads
    }

    /// Every row of `sql` (no parameters), decoded.
    async fn read_all<T>(
        &self,
        sql: &str,
        decode: fn(&SqliteRow) -> Result<T, BrokerError>,
    ) -> Result<Vec<T>, BrokerError> {
        let rows = sqlx::query(sql).fetch_all(self.reads()).await?;
        rows.iter().map(decode).collect()
    }
}

/// `queues` without repeats, in their given order.
fn distinct(queues: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(queues.len());
    for q in queues {
        if !out.contains(q) {
            out.push(q.clone());
        }
    }
    out
}

impl Broker for SqliteBroker {
    /// The read pool (writes go through one dedicated connection).
    fn pool(&self) -> Option<crate::broker::BrokerPool> {
        Some(crate::broker::BrokerPool::of(&self.inner.reads))
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        sqlx::query("SELECT 1").execute(self.reads()).await?;
        Ok(())
    }

    async fn enqueue(&self, tasks: &[NewTask]) -> Result<Vec<Enqueued>, BrokerError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let new = NewTasks::encode(tasks)?;
        self.writer().write(move |tx| ops::enqueue(tx, new)).await
    }

    async fn create_chord(
        &self,
        group_id: TaskId,
        members: u32,
        callback: &NewTask,
    ) -> Result<(), BrokerError> {
        let callback = callback.clone();
        self.writer()
            .write(move |tx| ops::create_chord(tx, group_id, members, callback))
            .await
    }

    async fn claim(
        &self,
        worker: WorkerId,
        queues: &[String],
        limit: usize,
    ) -> Result<Vec<TaskRecord>, BrokerError> {
        let queues = distinct(queues);
        if queues.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let generation = self.inner.signals.generation(&queues);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let for_writer = queues.clone();
        let claimed = self
            .writer()
            .write(move |tx| ops::claim(tx, worker, for_writer, limit))
            .await?;
        if claimed.idle {
            self.inner.signals.idle(&queues, generation);
        }
        let mut tasks = claimed
            .rows
            .iter()
            .map(rows::task)
            .collect::<Result<Vec<_>, _>>()?;
        // RETURNING gives no order: restore the claim order.
        tasks.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a.id.cmp(&b.id))
        });
        Ok(tasks)
    }

    async fn wait_for_work(&self, queues: &[String], max_wait: Duration) {
        self.inner.signals.wait(&distinct(queues), max_wait).await;
    }

    async fn complete(&self, completions: &[Completion]) -> Result<Vec<bool>, BrokerError> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let acks = ops::Acks::encode(completions)?;
        self.writer().write(move |tx| ops::complete(tx, acks)).await
    }

    async fn progress(
        &self,
        id: TaskId,
        epoch: i64,
        progress: &Progress,
    ) -> Result<bool, BrokerError> {
        let progress = serde_json::to_string(progress)?;
        self.writer()
            .write(move |tx| ops::progress(tx, id, epoch, progress))
            .await
    }

    async fn register_worker(
        &self,
        worker: &WorkerInfo,
        lease_ttl: Duration,
    ) -> Result<(), BrokerError> {
        let w = ops::NewWorker {
            id: worker.id.to_string(),
            hostname: worker.hostname.clone(),
            pid: worker.pid,
            queues: serde_json::to_string(&worker.queues)?,
            concurrency: worker.concurrency,
            started_at: micros(worker.started_at),
        };
        let ttl = rows::duration_micros(lease_ttl);
        self.writer()
            .write(move |tx| ops::register_worker(tx, w, ttl))
            .await
    }

    async fn heartbeat(
        &self,
        worker: WorkerId,
        lease_ttl: Duration,
    ) -> Result<Heartbeat, BrokerError> {
        let ttl = rows::duration_micros(lease_ttl);
        self.writer()
            .write(move |tx| ops::heartbeat(tx, worker, ttl))
            .await
    }

    async fn deregister_worker(&self, worker: WorkerId) -> Result<(), BrokerError> {
        self.writer()
            .write(move |tx| ops::deregister_worker(tx, worker))
            .await
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>, BrokerError> {
        let sql = format!("SELECT {WORKER_COLUMNS} FROM workers ORDER BY started_at, id");
        self.read_all(&sql, rows::worker).await
    }

    async fn rescue_expired(&self, forget_after: Duration) -> Result<Rescued, BrokerError> {
        let forget_after = rows::duration_micros(forget_after);
        self.writer()
            .write(move |tx| ops::rescue_expired(tx, forget_after))
            .await
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, BrokerError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(self.reads())
            .await?;
        row.as_ref().map(rows::task).transpose()
    }

    async fn list(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, BrokerError> {
        let mut q =
            QueryBuilder::<Sqlite>::new(format!("SELECT {TASK_COLUMNS} FROM tasks WHERE 1"));
        if let Some(state) = filter.state {
            q.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(kind) = &filter.kind {
            q.push(" AND kind = ").push_bind(kind.clone());
        }
        if let Some(queue) = &filter.queue {
            q.push(" AND queue = ").push_bind(queue.clone());
        }
        if let Some(group) = filter.group_id {
            q.push(" AND group_id = ").push_bind(group.to_string());
        }
        if let Some(before) = filter.before {
            q.push(" AND id < ").push_bind(before.to_string());
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(filter.limit));
        let rows = q.build().fetch_all(self.reads()).await?;
        rows.iter().map(rows::task).collect()
    }

    async fn cancel(
        &self,
        id: TaskId,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<CancelOutcome>, BrokerError> {
        let expires_at = micros(expires_at);
        self.writer()
            .write(move |tx| ops::cancel(tx, id, expires_at))
            .await
    }

    async fn retry(&self, id: TaskId) -> Result<Option<RetryOutcome>, BrokerError> {
        self.writer().write(move |tx| ops::retry(tx, id)).await
    }

    async fn counts(&self) -> Result<Vec<QueueCount>, BrokerError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT queue, state, count(*) FROM tasks GROUP BY queue, state ORDER BY queue, state",
        )
        .fetch_all(self.reads())
        .await?;
        rows.into_iter()
            .map(|(queue, state, count)| {
                Ok(QueueCount {
                    queue,
                    state: rows::state(&state)?,
                    count: u64::try_from(count).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn prune(&self, limit: u32) -> Result<u64, BrokerError> {
        self.writer().write(move |tx| ops::prune(tx, limit)).await
    }

    async fn put_schedule(&self, schedule: &Schedule) -> Result<(), BrokerError> {
        super::check_schedule(schedule)?;
        let s = ops::NewSchedule {
            name: schedule.name.clone(),
            cron: schedule.cron.clone(),
            timezone: schedule.timezone.clone(),
            task: serde_json::to_string(&schedule.task)?,
            next_fire_at: micros(schedule.next_fire_at),
            last_fired_at: schedule.last_fired_at.map(micros),
            created_at: micros(schedule.created_at),
        };
        self.writer()
            .write(move |tx| ops::put_schedule(tx, s))
            .await
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, BrokerError> {
        let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name");
        self.read_all(&sql, rows::schedule).await
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, BrokerError> {
        let name = name.to_owned();
        self.writer()
            .write(move |tx| ops::delete_schedule(tx, name))
            .await
    }

    async fn fire_schedule(
        &self,
        name: &str,
        tick: DateTime<Utc>,
        next: DateTime<Utc>,
        task: &NewTask,
    ) -> Result<bool, BrokerError> {
        let name = name.to_owned();
        let task = NewTasks::encode(std::slice::from_ref(task))?;
        let (tick, next) = (micros(tick), micros(next));
        self.writer()
            .write(move |tx| ops::fire_schedule(tx, name, tick, next, task))
            .await
    }

    async fn take_rate_token(
        &self,
        key: &str,
        per_second: f64,
        burst: u32,
    ) -> Result<Option<Duration>, BrokerError> {
        super::check_rate(key, per_second, burst)?;
        let key = key.to_owned();
        self.writer()
            .write(move |tx| ops::take_rate_token(tx, key, per_second, burst))
            .await
    }
}
