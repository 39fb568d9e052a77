//! The worker runtime: claims as many tasks as it has free slots, runs them
//! under their time limits, acknowledges in batches, keeps its lease alive
//! on a path task code cannot starve, rescues the tasks of dead workers,
//! fires cron schedules, prunes expired results, and shuts down gracefully.
//!
//! - `executor`: one attempt of one task, from claim to completion.
//! - `acker`: batches completions into [`Broker::complete`] calls.
//! - `heartbeat`: renews the lease; learns cancellations; detects a lost lease.
//! - `maintenance`: rescue, cron scheduler, pruning.

mod acker;
mod executor;
mod heartbeat;
mod maintenance;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use uuid::Uuid;

use crate::broker::Broker;
use crate::model::{Rescued, TaskId, WorkerId, WorkerInfo};
use crate::registry::Registry;
use crate::{BrokerError, DEFAULT_QUEUE};

pub use heartbeat::BrokerFactory;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Queues to claim from.
    pub queues: Vec<String>,
    /// Tasks run at once.
    pub concurrency: usize,
    /// Most tasks claimed in one call (never more than the free slots).
    pub claim_batch: usize,
    /// A lease not renewed for this long expires; its tasks are rescued.
    pub lease_ttl: Duration,
    /// Lease renewal period (also how fast a cancel reaches a running task).
    pub heartbeat_interval: Duration,
    /// Longest sleep between polls when no wake-up hint arrives.
    pub poll_interval: Duration,
    /// How often this worker looks for expired leases and due schedules.
    pub maintenance_interval: Duration,
    /// Whether this worker fires cron schedules (safe with many: each tick
    /// fires once).
    pub run_scheduler: bool,
    /// How long shutdown waits for running tasks before handing them back.
    pub grace_period: Duration,
    /// Workers whose lease expired this long ago are forgotten.
    pub forget_after: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            queues: vec![DEFAULT_QUEUE.to_owned()],
            concurrency: 64,
            claim_batch: 64,
            lease_ttl: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            poll_interval: Duration::from_millis(250),
            maintenance_interval: Duration::from_secs(1),
            run_scheduler: true,
            grace_period: Duration::from_secs(30),
            forget_after: Duration::from_secs(3600),
        }
    }
}

impl WorkerConfig {
    /// Checks the settings make sense together.
    ///
    /// # Errors
    /// A message naming the problem.
    pub fn validate(&self) -> Result<(), String> {
        if self.queues.is_empty() {
            return Err("at least one queue is needed".into());
        }
        if self.concurrency == 0 || self.claim_batch == 0 {
            return Err("concurrency and claim batch must be at least 1".into());
        }
        if self.heartbeat_interval * 2 > self.lease_ttl {
            return Err(format!(
                "the heartbeat interval ({:?}) must be at most half the lease TTL ({:?})",
                self.heartbeat_interval, self.lease_ttl
            ));
        }
        Ok(())
    }
}

/// What the engine tells whoever keeps metrics. Every method has an empty
/// default.
pub trait Observer: Send + Sync + 'static {
    /// An attempt of `kind` started, `queued` after it became due.
    fn task_started(&self, kind: &str, queued: Duration) {
        let _ = (kind, queued);
    }
    /// An attempt of `kind` ended with `outcome` (`succeeded`, `retry`,
    /// `failed`, `dead`, `cancelled`, `requeued`) after `run_time`.
    fn task_finished(&self, kind: &str, outcome: &'static str, run_time: Duration) {
        let _ = (kind, outcome, run_time);
    }
    /// An attempt of `kind` was dropped by its hard time limit.
    fn time_limit_killed(&self, kind: &str) {
        let _ = kind;
    }
    /// A rescue pass returned tasks of expired leases.
    fn rescued(&self, rescued: Rescued) {
        let _ = rescued;
    }
    /// A completion was refused by the fencing rule (the lease was lost).
    fn fenced(&self, kind: &str) {
        let _ = kind;
    }
    /// A cron schedule fired.
    fn schedule_fired(&self, name: &str) {
        let _ = name;
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// A task this worker is running.
pub(crate) struct Running {
    pub(crate) cancel: Arc<Notify>,
}

/// State shared by the worker's parts.
pub(crate) struct Shared<B: Broker> {
    pub(crate) broker: B,
    pub(crate) registry: Arc<Registry>,
    pub(crate) config: WorkerConfig,
    pub(crate) observer: Arc<dyn Observer>,
    /// The current lease's worker id (replaced after a lost lease).
    pub(crate) worker_id: std::sync::Mutex<WorkerId>,
    pub(crate) running: std::sync::Mutex<HashMap<TaskId, Running>>,
    /// Bumped when the lease is lost: every running attempt stops without
    /// acknowledging (its task is, or will be, rescued elsewhere).
    pub(crate) lease_generation: watch::Sender<u64>,
    /// Set when shutdown's grace period is over: running attempts are
    /// handed back.
    pub(crate) hand_back: watch::Sender<bool>,
    pub(crate) acks: mpsc::UnboundedSender<acker::Ack>,
}

impl<B: Broker> Shared<B> {
    pub(crate) fn worker_id(&self) -> WorkerId {
        *self.worker_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn info(&self, id: WorkerId) -> WorkerInfo {
        let now = Utc::now();
        WorkerInfo {
            id,
            hostname: hostname(),
            pid: std::process::id(),
            queues: self.config.queues.clone(),
            concurrency: u32::try_from(self.config.concurrency).unwrap_or(u32::MAX),
            started_at: now,
            last_heartbeat: now,
            lease_expires_at: now,
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// What a finished worker run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Attempts started.
    pub started: u64,
    /// Running attempts handed back at shutdown.
    pub handed_back: u64,
}

/// A worker: build it, then [`Worker::run`] it until a shutdown signal.
pub struct Worker<B: Broker> {
    broker: B,
    registry: Arc<Registry>,
    config: WorkerConfig,
    observer: Arc<dyn Observer>,
    heartbeat_factory: Option<BrokerFactory<B>>,
    slots: WorkerSlots,
}

/// A live view of a worker's slots (tasks it may run at once), for
/// `/stats`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WorkerSlots {
    semaphore: Arc<Semaphore>,
    size: usize,
    queues: Arc<[String]>,
}

impl WorkerSlots {
    /// Slots in all (`concurrency`).
    pub fn size(&self) -> usize {
        self.size
    }

    /// The queues it claims from.
    pub fn queues(&self) -> &[String] {
        &self.queues
    }

    /// Slots taken now: running tasks, and slots held for a claim in flight
    /// (all of them while the worker drains at shutdown).
    pub fn in_use(&self) -> usize {
        self.size.saturating_sub(self.semaphore.available_permits())
    }
}

impl<B: Broker> std::fmt::Debug for Worker<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("backend", &self.broker.backend())
            .field("config", &self.config)
            .finish()
    }
}

impl<B: Broker> Worker<B> {
    /// A worker on `broker` running the kinds of `registry`.
    pub fn new(broker: B, registry: Arc<Registry>, config: WorkerConfig) -> Worker<B> {
        Worker {
            broker,
            registry,
            observer: Arc::new(NoObserver),
            heartbeat_factory: None,
            slots: WorkerSlots {
                semaphore: Arc::new(Semaphore::new(config.concurrency)),
                size: config.concurrency,
                queues: config.queues.clone().into(),
            },
            config,
        }
    }

    /// A live view of this worker's slots.
    pub fn slots(&self) -> WorkerSlots {
        self.slots.clone()
    }

    /// Reports to `observer`.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Renews the lease from a dedicated OS thread with its own runtime and
    /// its own broker connection (made by `factory` on that thread), so that
    /// task code that blocks this runtime cannot starve the heartbeat.
    /// Without it, the heartbeat is a task on the caller's runtime.
    #[must_use]
    pub fn with_heartbeat_thread(mut self, factory: BrokerFactory<B>) -> Self {
        self.heartbeat_factory = Some(factory);
        self
    }

    /// Runs until `shutdown` completes, then stops claiming, waits up to the
    /// grace period for running tasks, hands back what still runs, flushes
    /// acknowledgements and deregisters.
    ///
    /// # Errors
    /// An invalid config, or a broker that refuses the first registration.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<WorkerReport, BrokerError> {
        self.config.validate().map_err(BrokerError::Invalid)?;
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let first_id = Uuid::now_v7();
        let shared = Arc::new(Shared {
            broker: self.broker.clone(),
            registry: self.registry,
            config: self.config,
            observer: self.observer,
            worker_id: std::sync::Mutex::new(first_id),
            running: std::sync::Mutex::new(HashMap::new()),
            lease_generation: watch::Sender::new(0),
            hand_back: watch::Sender::new(false),
            acks: ack_tx,
        });
        register_with_retry(&shared, &shared.broker, first_id, true).await?;
        tracing::info!(
            worker = %first_id,
            backend = shared.broker.backend(),
            queues = ?shared.config.queues,
            concurrency = shared.config.concurrency,
            "worker started"
        );

        let (stop_tx, stop_rx) = watch::channel(false);
        let acker = tokio::spawn(acker::run(Arc::clone(&shared), ack_rx));
        let heartbeat =
            heartbeat::spawn(Arc::clone(&shared), self.heartbeat_factory, stop_rx.clone());
        let maintenance = tokio::spawn(maintenance::run(Arc::clone(&shared), stop_rx.clone()));

        let slots = Arc::clone(&self.slots.semaphore);
        let mut report = WorkerReport::default();
        // The claim loop stops only between claims (a claim cut off half
        // way could leave tasks running under this lease with nobody to run
        // them until the next rescue).
        let (stopping_tx, stopping) = watch::channel(false);
        let claims = claim_loop(
            Arc::clone(&shared),
            Arc::clone(&slots),
            stopping,
            &mut report,
        );
        let signal = async move {
            shutdown.await;
            stopping_tx.send_replace(true);
            std::future::pending::<()>().await;
        };
        tokio::select! {
            () = claims => {}
            () = signal => {}
        }
        tracing::info!(worker = %shared.worker_id(), "worker stopping: no more claims");

        // Grace period: wait for running attempts to end on their own.
        let deadline = tokio::time::Instant::now() + shared.config.grace_period;
        let all = u32::try_from(shared.config.concurrency).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout_at(deadline, slots.acquire_many(all)).await;
        if drained.is_err() {
            let still = shared
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len();
            tracing::warn!(
                running = still,
                "grace period over: handing back running tasks"
            );
            report.handed_back = still as u64;
            shared.hand_back.send_replace(true);
            // Each attempt sends its Requeue and releases its slot.
            let _ = slots.acquire_many(all).await;
        }
        // Every attempt has queued its acknowledgement; flush them.
        stop_tx.send_replace(true);
        let _ = maintenance.await;
        acker::close(&shared);
        let _ = acker.await;
        heartbeat.stop().await;
        let id = shared.worker_id();
        if let Err(e) = shared.broker.deregister_worker(id).await {
            tracing::warn!(error = %e, "could not deregister the worker; its lease will expire");
        }
        tracing::info!(worker = %id, started = report.started, handed_back = report.handed_back, "worker stopped");
        Ok(report)
    }
}

/// Registers `id`, retrying while the broker is unavailable (forever unless
/// `first`, where a broker that stays down is an error to report).
pub(crate) async fn register_with_retry<B: Broker>(
    shared: &Shared<B>,
    broker: &B,
    id: WorkerId,
    first: bool,
) -> Result<(), BrokerError> {
    let mut wait = Duration::from_millis(100);
    let mut tries = 0;
    loop {
        match broker
            .register_worker(&shared.info(id), shared.config.lease_ttl)
            .await
        {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() && (!first || tries < 50) => {
                tries += 1;
                tracing::warn!(error = %e, "broker unavailable while registering the worker; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Claims as many tasks as there are free slots, forever.
async fn claim_loop<B: Broker>(
    shared: Arc<Shared<B>>,
    slots: Arc<Semaphore>,
    mut stopping: watch::Receiver<bool>,
    report: &mut WorkerReport,
) {
    let mut backoff = Duration::from_millis(50);
    let mut empty_streak = 0u32;
    loop {
        // Wait for one free slot, then take every other free one.
        let first = tokio::select! {
            biased;
            _ = stopping.wait_for(|s| *s) => return,
            permit = Arc::clone(&slots).acquire_owned() => permit,
        };
        let Ok(first) = first else {
            return;
        };
        if *stopping.borrow() {
            return;
        }
        let extra = slots
            .available_permits()
            .min(shared.config.claim_batch.saturating_sub(1));
        let mut permits = vec![first];
        for _ in 0..extra {
            match Arc::clone(&slots).try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let worker = shared.worker_id();
        match shared
            .broker
            .claim(worker, &shared.config.queues, permits.len())
            .await
        {
            Ok(tasks) if tasks.is_empty() => {
                drop(permits);
                backoff = Duration::from_millis(50);
                let waited = tokio::time::Instant::now();
                tokio::select! {
                    biased;
                    _ = stopping.wait_for(|s| *s) => return,
                    () = shared
                        .broker
                        .wait_for_work(&shared.config.queues, shared.config.poll_interval) => {}
                }
                // A hint says work is ready, yet the claim found none (the
                // lease is being renewed after a loss, or another worker
                // was faster): do not spin on it.
                if waited.elapsed() < Duration::from_millis(1) {
                    empty_streak += 1;
                    if empty_streak > 3 {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                } else {
                    empty_streak = 0;
                }
            }
            Ok(tasks) => {
                backoff = Duration::from_millis(50);
                empty_streak = 0;
                for task in tasks {
                    let Some(permit) = permits.pop() else { break };
                    report.started += 1;
                    executor::spawn(Arc::clone(&shared), task, permit);
                }
            }
            Err(e) => {
                drop(permits);
                tracing::warn!(error = %e, retry_in = ?backoff, "claim failed");
                tokio::select! {
                    biased;
                    _ = stopping.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}
