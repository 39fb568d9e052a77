//! Keeps the worker's lease alive, hands cancellations to running tasks and
//! reacts to a lost lease.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use super::{Shared, register_with_retry};
use crate::BrokerError;
use crate::broker::Broker;

/// Makes a broker connection on the heartbeat's own thread (see
/// [`Worker::with_heartbeat_thread`](super::Worker::with_heartbeat_thread)).
/// The future runs on that thread's single-threaded runtime, so it need not
/// be `Send`.
pub type BrokerFactory<B> = Box<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<B, BrokerError>>>>
        + Send
        + Sync,
>;

/// The running heartbeat, on its own thread or as a task.
pub(crate) enum Handle {
    Thread(std::thread::JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}

impl Handle {
    /// Waits for the heartbeat to stop (the stop signal was sent before).
    pub(crate) async fn stop(self) {
        match self {
            Handle::Thread(t) => {
                let _ = tokio::task::spawn_blocking(move || t.join()).await;
            }
            Handle::Task(t) => {
                let _ = t.await;
            }
        }
    }
}

pub(crate) fn spawn<B: Broker>(
    shared: Arc<Shared<B>>,
    factory: Option<BrokerFactory<B>>,
    stop: watch::Receiver<bool>,
) -> Handle {
    let Some(factory) = factory else {
        let broker = shared.broker.clone();
        return Handle::Task(tokio::spawn(beat(shared, broker, stop)));
    };
    let thread = std::thread::Builder::new()
        .name("surge-heartbeat".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the heartbeat runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let mut stop_wait = stop.clone();
                let broker = loop {
                    match factory().await {
                        Ok(b) => break b,
                        Err(e) => {
                            tracing::warn!(error = %e, "heartbeat connection failed; retrying");
                            tokio::select! {
                                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                                _ = stop_wait.wait_for(|s| *s) => return,
                            }
                        }
                    }
                };
                beat(shared, broker, stop).await;
            });
        });
    match thread {
        Ok(t) => Handle::Thread(t),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the heartbeat thread; beating on the main runtime");
            Handle::Task(tokio::spawn(async {}))
        }
    }
}

async fn beat<B: Broker>(shared: Arc<Shared<B>>, broker: B, mut stop: watch::Receiver<bool>) {
    let ttl = shared.config.lease_ttl;
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(shared.config.heartbeat_interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let id = shared.worker_id();
        match broker.heartbeat(id, ttl).await {
            Ok(hb) if hb.lease_valid => {
                last_ok = tokio::time::Instant::now();
                if !hb.cancel.is_empty() {
                    let running = shared.running.lock().unwrap_or_else(|p| p.into_inner());
                    for task in hb.cancel {
                        if let Some(r) = running.get(&task) {
                            r.cancel.notify_one();
                        }
                    }
                }
            }
            Ok(_) => {
                lease_lost(&shared, &broker, "the broker says the lease expired").await;
                last_ok = tokio::time::Instant::now();
            }
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed");
                if last_ok.elapsed() >= ttl {
                    lease_lost(
                        &shared,
                        &broker,
                        "no heartbeat got through for a whole lease",
                    )
                    .await;
                    last_ok = tokio::time::Instant::now();
                }
            }
        }
    }
}

/// Stops every running attempt (their tasks are rescued elsewhere; their
/// acknowledgements would be refused anyway) and registers a new lease.
async fn lease_lost<B: Broker>(shared: &Shared<B>, broker: &B, why: &str) {
    let old = shared.worker_id();
    let new = Uuid::now_v7();
    tracing::error!(
        worker = %old,
        new_worker = %new,
        reason = why,
        "lease lost: stopping running tasks without acknowledging them, then registering again"
    );
    *shared.worker_id.lock().unwrap_or_else(|p| p.into_inner()) = new;
    shared.lease_generation.send_modify(|g| *g += 1);
    if let Err(e) = register_with_retry(shared, broker, new, false).await {
        tracing::error!(error = %e, "could not register a new lease");
    }
}
