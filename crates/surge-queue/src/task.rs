//! The library API for task kinds: implement [`Task`] for a handler with a
//! typed (serde) payload and register it by name in a
//! [`Registry`](crate::Registry).
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use surge_queue::{Task, TaskContext, TaskError};
//!
//! struct Resize;
//!
//! #[derive(Serialize, Deserialize)]
//! struct ResizeArgs { width: u32 }
//!
//! impl Task for Resize {
//!     const KIND: &'static str = "image.resize";
//!     type Args = ResizeArgs;
//!     type Output = u32;
//!     async fn run(&self, ctx: TaskContext, args: ResizeArgs) -> Result<u32, TaskError> {
//!         ctx.progress(0.5, "resizing");
//!         Ok(args.width / 2)
//!     }
//! }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Notify, mpsc};

use crate::model::{Backoff, Progress, TaskError, TaskId};

/// Per-kind defaults; a submission may override retries, backoff and time
/// limits.
#[derive(Debug, Clone, PartialEq)]
pub struct KindSettings {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Backoff between attempts.
    pub backoff: Backoff,
    /// The handler is told to stop after this long.
    pub soft_time_limit: Option<Duration>,
    /// The handler is dropped after this long.
    pub hard_time_limit: Option<Duration>,
    /// At most this many starts per second of this kind across every worker
    /// on the broker (a token bucket of `rate_burst` tokens).
    pub rate_limit: Option<f64>,
    /// Bucket size of the rate limit.
    pub rate_burst: u32,
    /// How long results are kept.
    pub result_ttl: Duration,
}

impl Default for KindSettings {
    fn default() -> Self {
        KindSettings {
            max_retries: 3,
            backoff: Backoff::default(),
            soft_time_limit: None,
            hard_time_limit: None,
            rate_limit: None,
            rate_burst: 1,
            result_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// A task kind with a typed payload.
pub trait Task: Send + Sync + 'static {
    /// The name it is registered and submitted under (`"http.fetch"`).
    const KIND: &'static str;
    /// Its arguments; a submission whose args do not deserialize is refused.
    type Args: DeserializeOwned + Serialize + Send + 'static;
    /// Its result, stored as JSON.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// Runs one attempt. An `Err` whose `retryable` is true is retried with
    /// backoff while attempts remain.
    fn run(
        &self,
        ctx: TaskContext,
        args: Self::Args,
    ) -> impl Future<Output = Result<Self::Output, TaskError>> + Send;

    /// This kind's defaults.
    fn settings(&self) -> KindSettings {
        KindSettings::default()
    }
}

/// What a handler knows about the attempt it runs, and how it talks back.
#[derive(Clone)]
pub struct TaskContext {
    pub(crate) id: TaskId,
    pub(crate) attempt: u32,
    pub(crate) parent: Option<Value>,
    pub(crate) progress: mpsc::UnboundedSender<Progress>,
    pub(crate) soft_limit: Arc<SoftLimit>,
}

/// The soft time limit's flag, set once by the worker.
#[derive(Default)]
pub(crate) struct SoftLimit {
    reached: AtomicBool,
    notify: Notify,
}

impl SoftLimit {
    pub(crate) fn trip(&self) {
        self.reached.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

impl TaskContext {
    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// This attempt's number (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The upstream result: the previous task's result in a chain, the
    /// members' results (an array, in group order) for a chord callback,
    /// `{"task": id, "error": …}` for a failure callback.
    pub fn parent(&self) -> Option<&Value> {
        self.parent.as_ref()
    }

    /// Reports progress (`fraction` clamped to 0..=1); visible in the task's
    /// record while it runs. Cheap: reports are coalesced before they reach
    /// the broker.
    pub fn progress(&self, fraction: f64, message: impl Into<String>) {
        let fraction = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // The receiver is gone only once the attempt is over.
        let _ = self.progress.send(Progress {
            fraction,
            message: Some(message.into()),
        });
    }

    /// Whether the soft time limit has passed: the handler should wrap up
    /// and return (an error or a partial result).
    pub fn soft_limit_reached(&self) -> bool {
        self.soft_limit.reached.load(Ordering::Acquire)
    }

    /// Completes when the soft time limit passes (never, without one).
    pub async fn soft_limit(&self) {
        loop {
            let notified = self.soft_limit.notify.notified();
            if self.soft_limit_reached() {
                return;
            }
            notified.await;
        }
    }
}
