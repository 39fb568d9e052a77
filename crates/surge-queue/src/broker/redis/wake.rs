//! Wake-ups for `wait_for_work`.
//!
//! Scripts that make a task due now (enqueue, retry, rescue, a completion's
//! retry, requeue or follow-ups, a chord callback, a schedule tick), or that
//! give a queue an earlier next ETA (waiters sleep until the earliest ETA
//! they saw), PUBLISH its queue's name on `{namespace}:wake`. Each broker (all its clones) keeps
//! one pub/sub connection, opened at the first wait, and wakes the waiters of
//! that queue. The connection is re-opened when it drops, and every waiter is
//! woken then, since messages may have been lost meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ::redis::Client;
use futures_util::StreamExt;
use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// The wake-up side of one broker.
pub(super) struct Waker {
    client: Client,
    channel: String,
    waiters: Arc<Waiters>,
    listener: OnceLock<AbortHandle>,
}

/// What the listener task shares with the waiters.
struct Waiters {
    /// One `Notify` per queue somebody has waited on.
    queues: Mutex<HashMap<String, Arc<Notify>>>,
    /// Whether the listener is subscribed right now.
    subscribed: watch::Sender<bool>,
}

impl Waiters {
    fn wake(&self, queue: &[u8]) {
        let Ok(queue) = std::str::from_utf8(queue) else {
            return;
        };
        let notify = self.lock().get(queue).cloned();
        if let Some(n) = notify {
            n.notify_waiters();
        }
    }

    fn wake_all(&self) {
        let all: Vec<_> = self.lock().values().cloned().collect();
        for n in all {
            n.notify_waiters();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Waker {
    pub(super) fn new(client: Client, channel: String) -> Waker {
        Waker {
            client,
            channel,
            waiters: Arc::new(Waiters {
                queues: Mutex::new(HashMap::new()),
                subscribed: watch::Sender::new(false),
            }),
            listener: OnceLock::new(),
        }
    }

    /// Starts the listener if needed and waits until it is subscribed (no
    /// later than `deadline`). `false` when it is not: the caller can only
    /// poll.
    pub(super) async fn subscribed(&self, deadline: Instant) -> bool {
        self.listener.get_or_init(|| {
            let listen = listen(
                self.client.clone(),
                self.channel.clone(),
                Arc::clone(&self.waiters),
            );
            tokio::spawn(listen).abort_handle()
        });
        let mut rx = self.waiters.subscribed.subscribe();
        matches!(
            tokio::time::timeout_at(deadline, rx.wait_for(|s| *s)).await,
            Ok(Ok(_))
        )
    }

    /// The notifiers of `queues`, woken by a PUBLISH naming the queue.
    pub(super) fn notifiers(&self, queues: &[String]) -> Vec<Arc<Notify>> {
        let mut map = self.waiters.lock();
        queues
            .iter()
            .map(|q| Arc::clone(map.entry(q.clone()).or_default()))
            .collect()
    }
}

impl Drop for Waker {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.get() {
            listener.abort();
        }
    }
}

/// Subscribes to `channel` and wakes the waiters of each queue named on it,
/// re-subscribing (with a capped backoff) whenever the connection is lost.
async fn listen(client: Client, channel: String, waiters: Arc<Waiters>) {
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    let mut backoff = Duration::from_millis(50);
    loop {
        if let Ok(Ok(mut pubsub)) =
            tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await
            && pubsub.subscribe(&channel).await.is_ok()
        {
            backoff = Duration::from_millis(50);
            // Wake those who waited through the outage first, then let new
            // waiters in (they look at Redis themselves before waiting).
            waiters.wake_all();
            waiters.subscribed.send_replace(true);
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = messages.next().await {
                waiters.wake(msg.get_payload_bytes());
            }
            waiters.subscribed.send_replace(false);
            tracing::debug!(%channel, "redis wake-up subscription lost; re-subscribing");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
