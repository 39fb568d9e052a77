//! Wake-up hints: one LISTEN connection per broker fans NOTIFYs out to
//! every `wait_for_work` of this process.
//!
//! A notification is only a hint that a queue may have a ready task: a
//! missed one (lost connection, a waiter that subscribed a moment late)
//! costs at most the caller's `max_wait` poll, never a task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, oneshot};

/// What a waiter is told.
#[derive(Debug, Clone)]
enum Wake {
    /// A task may be ready on this queue.
    Queue(Arc<str>),
    /// Anything may be ready (the listener (re)connected and may have
    /// missed notifications).
    All,
}

/// The channel name for the queue tables of `schema`. Schemas get their own
/// channel so that brokers on other schemas of the same database (parallel
/// tests, several deployments) do not wake each other.
pub(super) fn channel_for(schema: &str) -> String {
    let name = format!("surge_queue_{schema}");
    // Channel names are identifiers: at most 63 bytes.
    if name.len() <= 63 {
        return name;
    }
    // FNV-1a: stable across processes (std's hasher is seeded).
    let hash = schema.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("surge_queue_{hash:016x}")
}

/// The broker's listener, started by the first claim or wait.
pub(super) struct Wakeups {
    channel: String,
    /// A pool of one connection, of its own so that LISTEN does not take a
    /// connection from the broker's pool.
    listen_pool: PgPool,
    tx: broadcast::Sender<Wake>,
    started: AtomicBool,
    /// Dropped with the broker: the listener task then ends.
    stop: std::sync::Mutex<Option<oneshot::Receiver<()>>>,
    _stop_tx: oneshot::Sender<()>,
}

impl Wakeups {
    pub(super) fn new(channel: String, listen_pool: PgPool) -> Wakeups {
        let (tx, _) = broadcast::channel(1024);
        let (stop_tx, stop_rx) = oneshot::channel();
        Wakeups {
            channel,
            listen_pool,
            tx,
            started: AtomicBool::new(false),
            stop: std::sync::Mutex::new(Some(stop_rx)),
            _stop_tx: stop_tx,
        }
    }

    /// The NOTIFY channel of this broker's schema.
    pub(super) fn channel(&self) -> &str {
        &self.channel
    }

    /// Starts the listener task if it is not running yet.
    pub(super) fn start(&self) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let stop = self.stop.lock().ok().and_then(|mut s| s.take());
        if let Some(stop) = stop {
            tokio::spawn(listen(
                self.listen_pool.clone(),
                self.channel.clone(),
                self.tx.clone(),
                stop,
            ));
        }
    }

    /// Returns when a task may be ready on one of `queues`, or after
    /// `max_wait`.
    pub(super) async fn wait(&self, queues: &[String], max_wait: Duration) {
        self.start();
        let mut rx = self.tx.subscribe();
        let hint = async {
            loop {
                match rx.recv().await {
                    Ok(Wake::Queue(q)) if !queues.iter().any(|name| **name == *q) => continue,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => return,
                    // The listener is gone: only the timeout is left.
                    Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                }
            }
        };
        let _ = tokio::time::timeout(max_wait, hint).await;
    }
}

/// Listens on `channel` until `stop` fires, forwarding every notification;
/// reconnects (with backoff) whenever the connection fails.
async fn listen(
    pool: PgPool,
    channel: String,
    tx: broadcast::Sender<Wake>,
    mut stop: oneshot::Receiver<()>,
) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(50);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut listening = false;
        tokio::select! {
            _ = &mut stop => return,
            e = session(&pool, &channel, &tx, &mut listening) => {
                tracing::warn!(error = %e, channel, "queue wake-up listener failed; reconnecting");
            }
        }
        // Notifications may have been missed: let every waiter poll once.
        let _ = tx.send(Wake::All);
        if listening {
            backoff = FIRST_BACKOFF;
        }
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One listening connection's life; returns why it ended. Sets `listening`
/// once LISTEN took effect.
async fn session(
    pool: &PgPool,
    channel: &str,
    tx: &broadcast::Sender<Wake>,
    listening: &mut bool,
) -> sqlx::Error {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(listener) => listener,
        Err(e) => return e,
    };
    listener.ignore_pool_close_event(true);
    if let Err(e) = listener.listen(channel).await {
        return e;
    }
    *listening = true;
    // Whatever was notified before LISTEN took effect is missed: let every
    // waiter poll once.
    let _ = tx.send(Wake::All);
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => {
                let _ = tx.send(Wake::Queue(Arc::from(n.payload())));
            }
            // Lost and reconnected (PgListener LISTENs again by itself);
            // what was notified meanwhile is lost.
            Ok(None) => {
                let _ = tx.send(Wake::All);
            }
            Err(e) => return e,
        }
    }
}
