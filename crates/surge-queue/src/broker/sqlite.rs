//! The SQLite broker (being written; see the module docs of `crate::broker`).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::BrokerError;
use crate::broker::{Broker, BrokerConfig};
use crate::model::{
    CancelOutcome, Completion, Enqueued, Heartbeat, NewTask, Progress, QueueCount, Rescued,
    RetryOutcome, Schedule, TaskFilter, TaskId, TaskRecord, WorkerId, WorkerInfo,
};

/// The embedded broker on a SQLite file (not written yet: every call fails).
#[derive(Debug, Clone)]
pub struct SqliteBroker {
    _private: (),
}

fn todo_err() -> BrokerError {
    BrokerError::Backend("the SQLite broker is not written yet".to_owned())
}

impl SqliteBroker {
    /// Opens the broker at `url` (not written yet).
    pub async fn connect(_url: &str, _config: &BrokerConfig) -> Result<Self, BrokerError> {
        Err(todo_err())
    }
}

impl Broker for SqliteBroker {
    fn backend(&self) -> &'static str {
        "sqlite"
    }
    async fn ping(&self) -> Result<(), BrokerError> {
        Err(todo_err())
    }
    async fn enqueue(&self, _tasks: &[NewTask]) -> Result<Vec<Enqueued>, BrokerError> {
        Err(todo_err())
    }
    async fn create_chord(&self, _g: TaskId, _m: u32, _c: &NewTask) -> Result<(), BrokerError> {
        Err(todo_err())
    }
    async fn claim(
        &self,
        _w: WorkerId,
        _q: &[String],
        _l: usize,
    ) -> Result<Vec<TaskRecord>, BrokerError> {
        Err(todo_err())
    }
    async fn wait_for_work(&self, _q: &[String], max_wait: Duration) {
        tokio::time::sleep(max_wait).await;
    }
    async fn complete(&self, _c: &[Completion]) -> Result<Vec<bool>, BrokerError> {
        Err(todo_err())
    }
    async fn progress(&self, _i: TaskId, _e: i64, _p: &Progress) -> Result<bool, BrokerError> {
        Err(todo_err())
    }
    async fn register_worker(&self, _w: &WorkerInfo, _t: Duration) -> Result<(), BrokerError> {
        Err(todo_err())
    }
    async fn heartbeat(&self, _w: WorkerId, _t: Duration) -> Result<Heartbeat, BrokerError> {
        Err(todo_err())
    }
    async fn deregister_worker(&self, _w: WorkerId) -> Result<(), BrokerError> {
        Err(todo_err())
    }
    async fn workers(&self) -> Result<Vec<WorkerInfo>, BrokerError> {
        Err(todo_err())
    }
    async fn rescue_expired(&self, _f: Duration) -> Result<Rescued, BrokerError> {
        Err(todo_err())
    }
    async fn get(&self, _i: TaskId) -> Result<Option<TaskRecord>, BrokerError> {
        Err(todo_err())
    }
    async fn list(&self, _f: &TaskFilter) -> Result<Vec<TaskRecord>, BrokerError> {
        Err(todo_err())
    }
    async fn cancel(
        &self,
        _i: TaskId,
        _e: DateTime<Utc>,
    ) -> Result<Option<CancelOutcome>, BrokerError> {
        Err(todo_err())
    }
    async fn retry(&self, _i: TaskId) -> Result<Option<RetryOutcome>, BrokerError> {
        Err(todo_err())
    }
    async fn counts(&self) -> Result<Vec<QueueCount>, BrokerError> {
        Err(todo_err())
    }
    async fn prune(&self, _l: u32) -> Result<u64, BrokerError> {
        Err(todo_err())
    }
    async fn put_schedule(&self, _s: &Schedule) -> Result<(), BrokerError> {
        Err(todo_err())
    }
    async fn schedules(&self) -> Result<Vec<Schedule>, BrokerError> {
        Err(todo_err())
    }
    async fn delete_schedule(&self, _n: &str) -> Result<bool, BrokerError> {
        Err(todo_err())
    }
    async fn fire_schedule(
        &self,
        _n: &str,
        _t: DateTime<Utc>,
        _x: DateTime<Utc>,
        _k: &NewTask,
    ) -> Result<bool, BrokerError> {
        Err(todo_err())
    }
    async fn take_rate_token(
        &self,
        _k: &str,
        _p: f64,
        _b: u32,
    ) -> Result<Option<Duration>, BrokerError> {
        Err(todo_err())
    }
}
