//! [`AnyBroker`]: the backend chosen by URL at run time.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::postgres::PgBroker;
use super::redis::RedisBroker;
use super::sqlite::SqliteBroker;
use super::{Broker, BrokerConfig};
use crate::BrokerError;
use crate::model::{
    CancelOutcome, Completion, Enqueued, Heartbeat, NewTask, Progress, QueueCount, Rescued,
    RetryOutcome, Schedule, TaskFilter, TaskId, TaskRecord, WorkerId, WorkerInfo,
};

/// One of the three backends, picked by the URL's scheme.
#[derive(Clone)]
pub enum AnyBroker {
    /// `sqlite://PATH`.
    Sqlite(SqliteBroker),
    /// `postgres://…` / `postgresql://…`.
    Postgres(PgBroker),
    /// `redis://…` / `rediss://…`.
    Redis(RedisBroker),
}

impl std::fmt::Debug for AnyBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AnyBroker").field(&self.backend()).finish()
    }
}

impl AnyBroker {
    /// Connects to the broker named by `url`.
    ///
    /// # Errors
    /// [`BrokerError::InvalidUrl`] for an unknown scheme; the backend's
    /// connection errors.
    pub async fn connect(url: &str, config: &BrokerConfig) -> Result<AnyBroker, BrokerError> {
        if url.starts_with("sqlite:") {
            Ok(AnyBroker::Sqlite(SqliteBroker::connect(url, config).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(AnyBroker::Postgres(PgBroker::connect(url, config).await?))
        } else if url.starts_with("redis://") || url.starts_with("rediss://") {
            Ok(AnyBroker::Redis(RedisBroker::connect(url, config).await?))
        } else {
            Err(BrokerError::InvalidUrl(format!(
                "{}: unsupported scheme; use sqlite://PATH, postgres://USER@HOST/DB or redis://HOST:PORT",
                redact(url)
            )))
        }
    }
}

/// `url` with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

macro_rules! each {
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            AnyBroker::Sqlite($b) => $e,
            AnyBroker::Postgres($b) => $e,
            AnyBroker::Redis($b) => $e,
        }
    };
}

impl Broker for AnyBroker {
    fn pool(&self) -> Option<super::BrokerPool> {
        each!(self, b => b.pool())
    }

    fn backend(&self) -> &'static str {
        each!(self, b => b.backend())
    }
    async fn ping(&self) -> Result<(), BrokerError> {
        each!(self, b => b.ping().await)
    }
    async fn enqueue(&self, tasks: &[NewTask]) -> Result<Vec<Enqueued>, BrokerError> {
        each!(self, b => b.enqueue(tasks).await)
    }
    async fn create_chord(
        &self,
        group_id: TaskId,
        members: u32,
        callback: &NewTask,
    ) -> Result<(), BrokerError> {
        each!(self, b => b.create_chord(group_id, members, callback).await)
    }
    async fn claim(
        &self,
        worker: WorkerId,
        queues: &[String],
        limit: usize,
    ) -> Result<Vec<TaskRecord>, BrokerError> {
        each!(self, b => b.claim(worker, queues, limit).await)
    }
    async fn wait_for_work(&self, queues: &[String], max_wait: Duration) {
        each!(self, b => b.wait_for_work(queues, max_wait).await)
    }
    async fn complete(&self, completions: &[Completion]) -> Result<Vec<bool>, BrokerError> {
        each!(self, b => b.complete(completions).await)
    }
    async fn progress(
        &self,
        id: TaskId,
        epoch: i64,
        progress: &Progress,
    ) -> Result<bool, BrokerError> {
        each!(self, b => b.progress(id, epoch, progress).await)
    }
    async fn register_worker(
        &self,
        worker: &WorkerInfo,
        lease_ttl: Duration,
    ) -> Result<(), BrokerError> {
        each!(self, b => b.register_worker(worker, lease_ttl).await)
    }
    async fn heartbeat(
        &self,
        worker: WorkerId,
        lease_ttl: Duration,
    ) -> Result<Heartbeat, BrokerError> {
        each!(self, b => b.heartbeat(worker, lease_ttl).await)
    }
    async fn deregister_worker(&self, worker: WorkerId) -> Result<(), BrokerError> {
        each!(self, b => b.deregister_worker(worker).await)
    }
    async fn workers(&self) -> Result<Vec<WorkerInfo>, BrokerError> {
        each!(self, b => b.workers().await)
    }
    async fn rescue_expired(&self, forget_after: Duration) -> Result<Rescued, BrokerError> {
        each!(self, b => b.rescue_expired(forget_after).await)
    }
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, BrokerError> {
        each!(self, b => b.get(id).await)
    }
    async fn list(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, BrokerError> {
        each!(self, b => b.list(filter).await)
    }
    async fn cancel(
        &self,
        id: TaskId,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<CancelOutcome>, BrokerError> {
        each!(self, b => b.cancel(id, expires_at).await)
    }
    async fn retry(&self, id: TaskId) -> Result<Option<RetryOutcome>, BrokerError> {
        each!(self, b => b.retry(id).await)
    }
    async fn counts(&self) -> Result<Vec<QueueCount>, BrokerError> {
        each!(self, b => b.counts().await)
    }
    async fn prune(&self, limit: u32) -> Result<u64, BrokerError> {
        each!(self, b => b.prune(limit).await)
    }
    async fn put_schedule(&self, schedule: &Schedule) -> Result<(), BrokerError> {
        each!(self, b => b.put_schedule(schedule).await)
    }
    async fn schedules(&self) -> Result<Vec<Schedule>, BrokerError> {
        each!(self, b => b.schedules().await)
    }
    async fn delete_schedule(&self, name: &str) -> Result<bool, BrokerError> {
        each!(self, b => b.delete_schedule(name).await)
    }
    async fn fire_schedule(
        &self,
        name: &str,
        tick: DateTime<Utc>,
        next: DateTime<Utc>,
        task: &NewTask,
    ) -> Result<bool, BrokerError> {
        each!(self, b => b.fire_schedule(name, tick, next, task).await)
    }
    async fn take_rate_token(
        &self,
        key: &str,
        per_second: f64,
        burst: u32,
    ) -> Result<Option<Duration>, BrokerError> {
        each!(self, b => b.take_rate_token(key, per_second, burst).await)
    }
}
