//! Batches completions into [`Broker::complete`] calls: one call carries
//! every completion queued while the previous one was in flight.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Shared;
use crate::broker::Broker;
use crate::model::Completion;

/// Most completions in one broker call.
const MAX_BATCH: usize = 512;

/// A message to the acker.
pub(crate) enum Ack {
    /// Apply this completion (of a task of `kind`).
    Done {
        completion: Completion,
        kind: String,
    },
    /// Flush and stop (sent last, at shutdown).
    Close,
}

/// Asks the acker to flush what it holds and stop.
pub(crate) fn close<B: Broker>(shared: &Shared<B>) {
    let _ = shared.acks.send(Ack::Close);
}

pub(crate) async fn run<B: Broker>(shared: Arc<Shared<B>>, mut rx: mpsc::UnboundedReceiver<Ack>) {
    let mut completions = Vec::with_capacity(MAX_BATCH);
    let mut kinds = Vec::with_capacity(MAX_BATCH);
    loop {
        let mut closing = false;
        match rx.recv().await {
            None | Some(Ack::Close) => closing = true,
            Some(Ack::Done { completion, kind }) => {
                completions.push(completion);
                kinds.push(kind);
            }
        }
        while !closing && completions.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Ack::Done { completion, kind }) => {
                    completions.push(completion);
                    kinds.push(kind);
                }
                Ok(Ack::Close) => closing = true,
                Err(_) => break,
            }
        }
        if !completions.is_empty() {
            flush(&shared, &completions, &kinds).await;
            completions.clear();
            kinds.clear();
        }
        if closing {
            return;
        }
    }
}

/// Applies one batch, retrying while the broker is unavailable. A batch
/// that cannot be applied within three lease lifetimes is given up: its
/// tasks' leases expire and they are rescued (run again), never lost.
async fn flush<B: Broker>(shared: &Shared<B>, completions: &[Completion], kinds: &[String]) {
    let give_up = tokio::time::Instant::now() + shared.config.lease_ttl * 3;
    let mut wait = Duration::from_millis(50);
    loop {
        match shared.broker.complete(completions).await {
            Ok(applied) => {
                for ((c, kind), ok) in completions.iter().zip(kinds).zip(applied) {
                    if !ok {
                        shared.observer.fenced(kind);
                        tracing::warn!(
                            task = %c.id,
                            kind = %kind,
                            "completion refused: this worker's lease on the task was lost \
                             (it was or will be run again elsewhere); the outcome is discarded"
                        );
                    }
                }
                return;
            }
            Err(e) if e.is_transient() && tokio::time::Instant::now() < give_up => {
                tracing::warn!(error = %e, batch = completions.len(), retry_in = ?wait, "acknowledgement failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    batch = completions.len(),
                    "acknowledgements could not be stored; these tasks will be rescued after their lease expires and run again"
                );
                return;
            }
        }
    }
}
