//! Submitting tasks, workflows and schedules, and awaiting results.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use serde::de::DeserializeOwned;
use serde_json::Value;
use surge_core::ErrorCategory;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::broker::Broker;
use crate::model::{Enqueued, NewTask, Schedule, TaskError, TaskId, TaskRecord, TaskState};
use crate::registry::{KindError, Registry};
use crate::schedule::{CronSchedule, ScheduleError, validate_name};
use crate::task::Task;
use crate::{BrokerError, TaskOptions};

/// Why a submission failed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Unknown kind or bad args (nothing stored).
    #[error(transparent)]
    Kind(#[from] KindError),
    /// Bad cron expression, time zone or name (nothing stored).
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// Some other field is wrong (nothing stored).
    #[error("{0}")]
    Invalid(String),
    /// The broker refused or stayed unavailable through every publish retry.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// Why waiting for a task failed.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// No such task (or it was pruned).
    #[error("task {0} not found")]
    NotFound(TaskId),
    /// It did not finish in time; the last record seen.
    #[error("task {} still {} after the wait", .0.id, .0.state)]
    Timeout(Box<TaskRecord>),
    /// It ended without a result (failed, dead, cancelled).
    #[error("task {} ended {}: {}", .0.id, .0.state, .0.error.as_ref().map_or_else(String::new, ToString::to_string))]
    Failed(Box<TaskRecord>),
    /// Its result does not deserialize into the expected type.
    #[error("task result does not fit the expected type: {0}")]
    BadResult(String),
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// How submissions retry a broker that is briefly unavailable (Celery's
/// publish retry).
#[derive(Debug, Clone, Copy)]
pub struct PublishRetry {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// First wait.
    pub first: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for PublishRetry {
    fn default() -> Self {
        PublishRetry {
            attempts: 6,
            first: Duration::from_millis(50),
            max: Duration::from_secs(2),
        }
    }
}

/// Longest queue name.
pub(crate) const MAX_NAME_LEN: usize = 200;

/// A group (or chord) as submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupHandle {
    /// The group id (filter `GET /tasks?group_id=`).
    pub group_id: TaskId,
    /// Member ids, in order.
    pub members: Vec<TaskId>,
    /// The chord callback's id, for a chord.
    pub callback: Option<TaskId>,
}

/// A submitted task whose result has type `T`.
#[derive(Debug)]
pub struct TaskHandle<T> {
    /// The task's id.
    pub id: TaskId,
    /// Whether this submission created it (false: unique key hit).
    pub created: bool,
    _result: PhantomData<fn() -> T>,
}

/// Most submissions of concurrent [`Client::submit`] calls stored in one
/// broker call.
const MAX_COALESCED: usize = 256;

/// A [`Client::submit`] waiting for its task to be stored.
struct Waiting {
    task: NewTask,
    answer: oneshot::Sender<Result<Enqueued, SubmitError>>,
}

/// Group commit of concurrent [`Client::submit`] calls: the calls queue
/// their task; whichever takes the turn stores everything queued (up to
/// [`MAX_COALESCED`]) in one [`Broker::enqueue`] and answers each call. A
/// lone call is stored at once, alone; calls arriving while a store is in
/// flight share the next one (one transaction, one wake-up, one round trip
/// instead of one each).
#[derive(Default)]
struct Coalescer {
    waiting: Mutex<VecDeque<Waiting>>,
    turn: tokio::sync::Mutex<()>,
}

/// Submits tasks to a broker, validating them against a registry.
/// Clones share one broker handle and one submission queue.
#[derive(Clone)]
pub struct Client<B: Broker> {
    broker: B,
    registry: Arc<Registry>,
    publish_retry: PublishRetry,
    coalescer: Arc<Coalescer>,
}

impl<B: Broker> std::fmt::Debug for Client<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("backend", &self.broker.backend())
            .field("kinds", &self.registry)
            .finish()
    }
}

impl<B: Broker> Client<B> {
    /// A client of `broker` that accepts the kinds of `registry`.
    pub fn new(broker: B, registry: Arc<Registry>) -> Client<B> {
        Client {
            broker,
            registry,
            publish_retry: PublishRetry::default(),
            coalescer: Arc::default(),
        }
    }

    /// With another publish retry policy.
    #[must_use]
    pub fn with_publish_retry(mut self, retry: PublishRetry) -> Self {
        self.publish_retry = retry;
        self
    }

    /// The broker.
    pub fn broker(&self) -> &B {
        &self.broker
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A task of `kind` with `args` and the kind's defaults (retries,
    /// backoff, time limits, result TTL), due now on the default queue.
    ///
    /// # Errors
    /// [`SubmitError::Kind`] for an unknown kind or args that do not fit.
    pub fn task(&self, kind: &str, args: Value) -> Result<NewTask, SubmitError> {
        let settings = self.registry.validate(kind, &args)?;
        let options = TaskOptions {
            backoff: settings.backoff,
            soft_time_limit_ms: settings.soft_time_limit.map(duration_ms),
            hard_time_limit_ms: settings.hard_time_limit.map(duration_ms),
            result_ttl_secs: Some(settings.result_ttl.as_secs()),
            ..TaskOptions::default()
        };
        Ok(NewTask::new(kind, args)
            .with_max_retries(settings.max_retries)
            .with_options(options))
    }

    /// Submits `task` (see [`Client::submit_many`]). Concurrent calls (of
    /// this client and its clones) are stored together, in one broker call
    /// per batch, each task with its own outcome; a call whose future is
    /// dropped may still have its task stored.
    ///
    /// # Errors
    /// As [`Client::submit_many`].
    pub async fn submit(&self, task: NewTask) -> Result<Enqueued, SubmitError> {
        self.validate(&task)?;
        let id = task.id;
        let (answer, mut result) = oneshot::channel();
        self.waiting().push_back(Waiting { task, answer });
        loop {
            let turn = self.coalescer.turn.lock().await;
            match result.try_recv() {
                Ok(r) => return r,
                Err(oneshot::error::TryRecvError::Closed) => return Err(abandoned()),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<Waiting> = {
                let mut waiting = self.waiting();
                let n = waiting.len().min(MAX_COALESCED);
                waiting.drain(..n).collect()
            };
            if batch.is_empty() {
                // Taken by a store whose caller went away: it still answers.
                drop(turn);
                return result.await.unwrap_or_else(|_| Err(abandoned()));
            }
            if let [only] = batch.as_slice()
                && only.task.id == id
            {
                // Only this call's own task: nobody else to answer if it is
                // dropped, so no task of its own (which costs a few µs).
                self.store(batch).await;
            } else {
                // On a task of its own, so that the store and the answers
                // survive this call being dropped.
                let client = self.clone();
                let _ = tokio::spawn(async move { client.store(batch).await }).await;
            }
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting>> {
        self.coalescer
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores one batch of [`Client::submit`] calls and answers them.
    async fn store(&self, batch: Vec<Waiting>) {
        let (tasks, answers): (Vec<NewTask>, Vec<_>) =
            batch.into_iter().map(|w| (w.task, w.answer)).unzip();
        match self.enqueue_retrying(&tasks).await {
            Ok(out) if out.len() == tasks.len() => {
                for (answer, e) in answers.into_iter().zip(out) {
                    let _ = answer.send(Ok(e));
                }
            }
            Ok(out) => {
                for answer in answers {
                    let _ = answer.send(Err(SubmitError::Broker(BrokerError::Data(format!(
                        "enqueue of {} tasks returned {} outcomes",
                        tasks.len(),
                        out.len()
                    )))));
                }
            }
            Err(e) if e.is_transient() || tasks.len() == 1 => {
                let message = e.to_string();
                let mut e = Some(e);
                for answer in answers {
                    let error = e
                        .take()
                        .unwrap_or_else(|| BrokerError::unavailable(&message));
                    let _ = answer.send(Err(SubmitError::Broker(error)));
                }
            }
            Err(_) => {
                // Refused, not unavailable: store each alone, so that each
                // call gets its own outcome and one bad task fails no other.
                for (task, answer) in tasks.iter().zip(answers) {
                    let one = match self.enqueue_retrying(std::slice::from_ref(task)).await {
                        Ok(mut out) => out.pop().ok_or_else(|| {
                            SubmitError::Broker(BrokerError::Data(
                                "enqueue returned nothing".into(),
                            ))
                        }),
                        Err(e) => Err(e.into()),
                    };
                    let _ = answer.send(one);
                }
            }
        }
    }

    /// Validates `tasks` (kinds, args, names — follow-ups too) and stores
    /// them atomically, retrying while the broker is unavailable.
    ///
    /// # Errors
    /// [`SubmitError::Kind`] / [`SubmitError::Invalid`] before anything is
    /// stored; [`SubmitError::Broker`] when the broker refused or stayed
    /// unavailable.
    pub async fn submit_many(&self, tasks: &[NewTask]) -> Result<Vec<Enqueued>, SubmitError> {
        for task in tasks {
            self.validate(task)?;
        }
        Ok(self.enqueue_retrying(tasks).await?)
    }

    /// [`Broker::enqueue`], retried while the broker is unavailable.
    async fn enqueue_retrying(&self, tasks: &[NewTask]) -> Result<Vec<Enqueued>, BrokerError> {
        let mut wait = self.publish_retry.first;
        let mut attempt = 1;
        loop {
            match self.broker.enqueue(tasks).await {
                Ok(out) => return Ok(out),
                Err(e) if e.is_transient() && attempt < self.publish_retry.attempts => {
                    tracing::warn!(error = %e, attempt, "broker unavailable; retrying the submission");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(self.publish_retry.max);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Checks one task and its follow-ups.
    ///
    /// # Errors
    /// [`SubmitError::Kind`] or [`SubmitError::Invalid`].
    pub fn validate(&self, task: &NewTask) -> Result<(), SubmitError> {
        self.registry.validate(&task.kind, &task.args)?;
        check_name("queue", &task.queue)?;
        if let Some(key) = &task.unique_key
            && (key.is_empty() || key.len() > 512)
        {
            return Err(SubmitError::Invalid(
                "unique_key must be 1 to 512 characters".into(),
            ));
        }
        let o = &task.options;
        if o.backoff.base_ms > o.backoff.cap_ms {
            return Err(SubmitError::Invalid(format!(
                "backoff base ({} ms) is larger than its cap ({} ms)",
                o.backoff.base_ms, o.backoff.cap_ms
            )));
        }
        if let (Some(soft), Some(hard)) = (o.soft_time_limit_ms, o.hard_time_limit_ms)
            && soft > hard
        {
            return Err(SubmitError::Invalid(format!(
                "soft time limit ({soft} ms) is longer than the hard one ({hard} ms)"
            )));
        }
        if o.soft_time_limit_ms == Some(0) || o.hard_time_limit_ms == Some(0) {
            return Err(SubmitError::Invalid("time limits must be positive".into()));
        }
        for next in o.on_success.iter().chain(&o.on_failure) {
            self.validate(next)?;
        }
        Ok(())
    }

    /// Submits a typed task with `args` and the kind's defaults.
    ///
    /// # Errors
    /// As [`Client::submit_many`].
    pub async fn enqueue<T: Task>(
        &self,
        args: T::Args,
    ) -> Result<TaskHandle<T::Output>, SubmitError> {
        let args = serde_json::to_value(args)
            .map_err(|e| SubmitError::Invalid(format!("args are not JSON: {e}")))?;
        let task = self.task(T::KIND, args)?;
        let e = self.submit(task).await?;
        Ok(TaskHandle {
            id: e.id,
            created: e.created,
            _result: PhantomData,
        })
    }

    /// Waits for a typed task's result.
    ///
    /// # Errors
    /// As [`Client::wait`], plus [`WaitError::BadResult`].
    pub async fn result<T: DeserializeOwned>(
        &self,
        handle: &TaskHandle<T>,
        timeout: Duration,
    ) -> Result<T, WaitError> {
        let record = self.wait(handle.id, timeout).await?;
        if record.state != TaskState::Succeeded {
            return Err(WaitError::Failed(Box::new(record)));
        }
        serde_json::from_value(record.result.unwrap_or(Value::Null))
            .map_err(|e| WaitError::BadResult(e.to_string()))
    }

    /// Waits until task `id` is terminal (or `timeout`), and returns it.
    ///
    /// # Errors
    /// [`WaitError::NotFound`], [`WaitError::Timeout`], [`WaitError::Broker`].
    pub async fn wait(&self, id: TaskId, timeout: Duration) -> Result<TaskRecord, WaitError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            let record = self.broker.get(id).await?.ok_or(WaitError::NotFound(id))?;
            if record.state.is_terminal() {
                return Ok(record);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(WaitError::Timeout(Box::new(record)));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// A chain: `tasks[0]` runs first; each next task is submitted when the
    /// previous one succeeds, with its result as `parent`. Returns every id,
    /// in order (all but the first exist only once their turn comes).
    ///
    /// # Errors
    /// As [`Client::submit_many`]; an empty chain is invalid.
    pub async fn chain(&self, tasks: Vec<NewTask>) -> Result<Vec<TaskId>, SubmitError> {
        let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
        let mut rest = tasks.into_iter().rev();
        let mut head = rest
            .next()
            .ok_or_else(|| SubmitError::Invalid("a chain needs at least one task".into()))?;
        for mut previous in rest {
            previous.options.on_success.push(head);
            head = previous;
        }
        self.submit(head).await?;
        Ok(ids)
    }

    /// A group: every task submitted at once under one group id.
    ///
    /// # Errors
    /// As [`Client::submit_many`]; an empty group is invalid.
    pub async fn group(&self, tasks: Vec<NewTask>) -> Result<GroupHandle, SubmitError> {
        let (group_id, tasks) = into_group(tasks)?;
        let members = tasks.iter().map(|t| t.id).collect();
        self.submit_many(&tasks).await?;
        Ok(GroupHandle {
            group_id,
            members,
            callback: None,
        })
    }

    /// A chord: a group whose `callback` is submitted once every member has
    /// succeeded, with the members' results (an array, in order) as its
    /// `parent`. A member that ends failed, dead or cancelled fails the
    /// chord: the callback never runs.
    ///
    /// # Errors
    /// As [`Client::submit_many`]; an empty group is invalid.
    pub async fn chord(
        &self,
        tasks: Vec<NewTask>,
        mut callback: NewTask,
    ) -> Result<GroupHandle, SubmitError> {
        let (group_id, tasks) = into_group(tasks)?;
        self.validate(&callback)?;
        callback.options.chord_of = Some(group_id);
        let members: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
        let count = u32::try_from(members.len())
            .map_err(|_| SubmitError::Invalid("too many chord members".into()))?;
        self.retrying(|| self.broker.create_chord(group_id, count, &callback))
            .await?;
        self.submit_many(&tasks).await?;
        Ok(GroupHandle {
            group_id,
            members,
            callback: Some(callback.id),
        })
    }

    /// Creates or replaces a cron schedule submitting `task` at every tick.
    ///
    /// # Errors
    /// [`SubmitError::Schedule`] for a bad name, expression or time zone;
    /// [`SubmitError::Kind`] for a bad task.
    pub async fn schedule(
        &self,
        name: &str,
        cron: &str,
        timezone: &str,
        task: NewTask,
    ) -> Result<Schedule, SubmitError> {
        validate_name(name)?;
        let parsed = CronSchedule::parse(cron, timezone)?;
        self.validate(&task)?;
        let now = Utc::now();
        let next_fire_at = parsed
            .next_after(now)
            .ok_or_else(|| ScheduleError::NoFutureTick(cron.to_owned()))?;
        let schedule = Schedule {
            name: name.to_owned(),
            cron: crate::schedule::normalize(cron),
            timezone: timezone.trim().to_owned(),
            task,
            next_fire_at,
            last_fired_at: None,
            created_at: now,
        };
        self.retrying(|| self.broker.put_schedule(&schedule))
            .await?;
        Ok(schedule)
    }

    async fn retrying<T, F, Fut>(&self, mut op: F) -> Result<T, BrokerError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BrokerError>>,
    {
        let mut wait = self.publish_retry.first;
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if e.is_transient() && attempt < self.publish_retry.attempts => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(self.publish_retry.max);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// The answer of a submission whose store was lost (its task panicked).
fn abandoned() -> SubmitError {
    SubmitError::Broker(BrokerError::unavailable(
        "the submission's store was abandoned; it may or may not have been stored",
    ))
}

fn into_group(mut tasks: Vec<NewTask>) -> Result<(TaskId, Vec<NewTask>), SubmitError> {
    if tasks.is_empty() {
        return Err(SubmitError::Invalid(
            "a group needs at least one task".into(),
        ));
    }
    let group_id = Uuid::now_v7();
    for (i, task) in tasks.iter_mut().enumerate() {
        task.group_id = Some(group_id);
        task.options.group_index = Some(u32::try_from(i).unwrap_or(u32::MAX));
    }
    Ok((group_id, tasks))
}

fn check_name(what: &str, name: &str) -> Result<(), SubmitError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    if ok {
        Ok(())
    } else {
        Err(SubmitError::Invalid(format!(
            "{what} {name:?} must be 1 to {MAX_NAME_LEN} characters of letters, digits, '.', '_', '-', ':'"
        )))
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The error stored for a task whose kind no worker here can run.
pub(crate) fn unknown_kind_error(kind: &str) -> TaskError {
    TaskError::new(
        ErrorCategory::Validation,
        format!("no handler for task kind {kind:?} is registered in this worker"),
    )
}
