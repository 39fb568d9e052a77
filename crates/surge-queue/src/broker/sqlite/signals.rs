//! In-process wake-ups for [`crate::Broker::wait_for_work`].
//!
//! Each queue has a counter bumped after every commit that made one of its
//! tasks ready. A claim that came back empty (for a worker whose lease is
//! valid) records the sum of its queues' counters as it read them before
//! claiming; a waiter on the same queues returns as soon as that sum moves,
//! so an enqueue landing between the empty claim and the wait is not missed.
//! Writes by other processes on the same file are not seen here: waiters
//! find them when `max_wait` runs out and they claim again.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Per-queue ready counters and the waiters on them.
#[derive(Default)]
pub(super) struct Signals {
    notify: Notify,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Bumped per commit that made a task of the queue ready.
    ready: HashMap<String, u64>,
    /// Per sorted queue set: the generation its last empty claim saw.
    idle: HashMap<Vec<String>, u64>,
}

impl State {
    fn generation(&self, queues: &[String]) -> u64 {
        queues
            .iter()
            .map(|q| self.ready.get(q).copied().unwrap_or(0))
            .fold(0, u64::wrapping_add)
    }
}

fn key(queues: &[String]) -> Vec<String> {
    let mut key = queues.to_vec();
    key.sort();
    key.dedup();
    key
}

impl Signals {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a set of counters: a panic elsewhere cannot leave it
        // inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// After a commit that made tasks of `queues` ready: wakes the waiters.
    pub(super) fn ready(&self, queues: &[String]) {
        {
            let mut state = self.state();
            for q in queues {
                let n = state.ready.entry(q.clone()).or_default();
                *n = n.wrapping_add(1);
            }
        }
        self.notify.notify_waiters();
    }

    /// The generation of `queues`, read before a claim.
    pub(super) fn generation(&self, queues: &[String]) -> u64 {
        self.state().generation(queues)
    }

    /// A claim of `queues` that read `generation` found nothing.
    pub(super) fn idle(&self, queues: &[String], generation: u64) {
        self.state().idle.insert(key(queues), generation);
    }

    /// Waits until a task of `queues` may have become ready since their last
    /// empty claim (or since now, if none), or `max_wait` has passed.
    pub(super) async fn wait(&self, queues: &[String], max_wait: Duration) {
        let deadline = Instant::now() + max_wait;
        let base = {
            let state = self.state();
            let now = state.generation(queues);
            state.idle.get(&key(queues)).copied().unwrap_or(now)
        };
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a wake-up between the check
            // and the wait is kept.
            notified.as_mut().enable();
            if self.generation(queues) != base {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}
