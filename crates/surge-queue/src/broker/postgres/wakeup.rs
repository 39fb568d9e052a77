//! Wake-up hints: one LISTEN connection per broker fans NOTIFYs out to
//! every `wait_for_work` of this process.
//!
//! A notification is only a hint that a queue may have a ready task: a
//! missed one (a lost connection) costs at most the caller's `max_wait`
//! poll, never a task.
//!
//! A worker loop claims, finds nothing, then waits. A task submitted
//! between the two would notify nobody yet waiting, so each notification
//! gets a number, a claim remembers the last number it started after (per
//! tokio task: the loop that claims is the one that waits), and a wait
//! returns at once when its queues were notified since.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

/// Numbered notifications, as far as waiters need them.
#[derive(Default)]
struct Notified {
    /// Number of the last notification.
    last: u64,
    /// Per queue, the number of its last notification.
    queue: HashMap<Arc<str>, u64>,
    /// Number of the last wake-all.
    all: u64,
}

impl Notified {
    fn record(&mut self, wake: &Wake) {
        self.last += 1;
        match wake {
            Wake::Queue(q) => {
                self.queue.insert(q.clone(), self.last);
            }
            Wake::All => self.all = self.last,
        }
    }

    fn any_since(&self, since: u64, queues: &[String]) -> bool {
        self.all > since
            || queues
                .iter()
                .any(|q| self.queue.get(q.as_str()).is_some_and(|&n| n > since))
    }
}

/// Tokio tasks whose last claim has not been followed by a wait yet; past
/// this many (claims from tasks that never wait) the record starts over.
const MAX_CLAIMERS: usize = 4_096;

/// The broker's wake-ups: its listener (started by the first claim or
/// wait) and what it has heard.
pub(super) struct Wakeups {
    hub: Arc<Hub>,
    /// A pool of one connection, of its own so that LISTEN does not take a
    /// connection from the broker's pool.
    listen_pool: PgPool,
    started: AtomicBool,
    /// The listener task ends when this is dropped (with the broker).
    stop: Mutex<Option<oneshot::Receiver<()>>>,
    _stop_tx: oneshot::Sender<()>,
}

/// What the listener task shares with the waiters.
struct Hub {
    channel: String,
    tx: broadcast::Sender<Wake>,
    notified: Mutex<Notified>,
    /// The notification number current when each tokio task's last claim
    /// began.
    claims: Mutex<HashMap<tokio::task::Id, u64>>,
}

impl Hub {
    /// Records `wake`, then tells the waiters (in that order, so that a
    /// waiter that subscribes and then checks the record misses nothing).
    fn publish(&self, wake: Wake) {
        if let Ok(mut n) = self.notified.lock() {
            n.record(&wake);
        }
        let _ = self.tx.send(wake);
    }
}

impl Wakeups {
    pub(super) fn new(channel: String, listen_pool: PgPool) -> Wakeups {
        let (tx, _) = broadcast::channel(1024);
        let (stop_tx, stop_rx) = oneshot::channel();
        Wakeups {
            hub: Arc::new(Hub {
                channel,
                tx,
                notified: Mutex::new(Notified::default()),
                claims: Mutex::new(HashMap::new()),
            }),
            listen_pool,
            started: AtomicBool::new(false),
            stop: Mutex::new(Some(stop_rx)),
            _stop_tx: stop_tx,
        }
    }

    /// The NOTIFY channel of this broker's schema.
    pub(super) fn channel(&self) -> &str {
        &self.hub.channel
    }

    /// Starts the listener task if it is not running yet.
    fn start(&self) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let stop = self.stop.lock().ok().and_then(|mut s| s.take());
        if let Some(stop) = stop {
            tokio::spawn(listen(self.listen_pool.clone(), self.hub.clone(), stop));
        }
    }

    /// Called as a claim begins: remembers, for the calling tokio task, what
    /// had been notified so far.
    pub(super) fn claim_started(&self) {
        self.start();
        let Some(task) = tokio::task::try_id() else {
            return;
        };
        let last = self.hub.notified.lock().map(|n| n.last).unwrap_or(0);
        if let Ok(mut claims) = self.hub.claims.lock() {
            if claims.len() >= MAX_CLAIMERS {
                claims.clear();
            }
            claims.insert(task, last);
        }
    }

    /// Returns when a task may be ready on one of `queues` (including one
    /// notified since this tokio task's last claim began), or after
    /// `max_wait`.
    pub(super) async fn wait(&self, queues: &[String], max_wait: Duration) {
        self.start();
        let mut rx = self.hub.tx.subscribe();
        let since =
            tokio::task::try_id().and_then(|task| self.hub.claims.lock().ok()?.remove(&task));
        if let Some(since) = since {
            let missed = self
                .hub
                .notified
                .lock()
                .is_ok_and(|n| n.any_since(since, queues));
            if missed {
                return;
            }
        }
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

/// Listens on the hub's channel until `stop` fires, publishing every
/// notification; reconnects (with backoff) whenever the connection fails.
async fn listen(pool: PgPool, hub: Arc<Hub>, mut stop: oneshot::Receiver<()>) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(50);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut listening = false;
        tokio::select! {
            _ = &mut stop => return,
            e = session(&pool, &hub, &mut listening) => {
                tracing::warn!(error = %e, channel = hub.channel, "queue wake-up listener failed; reconnecting");
            }
        }
        // Notifications may have been missed: let every waiter poll once.
        hub.publish(Wake::All);
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
async fn session(pool: &PgPool, hub: &Hub, listening: &mut bool) -> sqlx::Error {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(listener) => listener,
        Err(e) => return e,
    };
    listener.ignore_pool_close_event(true);
    if let Err(e) = listener.listen(&hub.channel).await {
        return e;
    }
    *listening = true;
    // Whatever was notified before LISTEN took effect is missed: let every
    // waiter poll once.
    hub.publish(Wake::All);
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => hub.publish(Wake::Queue(Arc::from(n.payload()))),
            // Lost and reconnected (PgListener LISTENs again by itself);
            // what was notified meanwhile is lost.
            Ok(None) => hub.publish(Wake::All),
            Err(e) => return e,
        }
    }
}
