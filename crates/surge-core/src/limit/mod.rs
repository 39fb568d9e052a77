//! Concurrency limiters: how many requests may be in flight at once.
//!
//! One seam, [`Limiter`], with two implementations:
//!
//! - [`StaticLimiter`]: a fixed limit (a fair FIFO semaphore).
//! - [`AdaptiveLimiter`]: a limit that finds the downstream's capacity by
//!   itself, from latency ([`Algorithm::Gradient`] or [`Algorithm::Vegas`])
//!   and from overload signals (429, 503, timeouts: a multiplicative cut, at
//!   most once per round trip).
//!
//! Both hand out [`Token`]s: a token is one in-flight slot, released when it is
//! dropped, and it carries the outcome of the work back to the limiter.
//! Waiters are served in arrival order; a cancelled wait gives up its place
//! without losing a slot; no lock is held across an `.await`.
//!
//! [`LimitLayer`] puts any limiter in front of a tower service, with
//! backpressure in `poll_ready`. [`conformance`] is the suite every limiter
//! passes.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use surge_core::limit::{Limiter, StaticLimiter};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let limiter: Arc<dyn Limiter> = Arc::new(StaticLimiter::new(2));
//! let a = limiter.acquire().await;
//! let b = limiter.acquire().await;
//! assert!(limiter.try_acquire().is_none(), "both slots are taken");
//! a.success();
//! let c = limiter.try_acquire().expect("a's slot is free again");
//! assert_eq!(limiter.snapshot().in_flight, 2);
//! drop((b, c));
//! assert_eq!(limiter.snapshot().in_flight, 0);
//! # }
//! ```

mod adaptive;
mod classify;
pub mod conformance;
mod gate;
mod layer;

use std::sync::Arc;

use serde::Serialize;

pub use adaptive::{AdaptiveConfig, AdaptiveLimiter, Algorithm, ConfigError};
pub use classify::{Classify, HttpClassify, error_chain_outcome, status_outcome};
pub use gate::{AcquireFuture, Token};
pub use layer::{LimitLayer, LimitService, ResponseFuture};

use gate::{Control, Gate};

/// How a piece of work went, as a limiter needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It completed: its latency is a sample.
    Success,
    /// The downstream said "too much" (429, 503, a timeout).
    Overload,
    /// Nothing to learn (a caller-side error, a cancellation).
    Ignore,
}

/// A concurrency limit: hands out at most `limit` [`Token`]s at once.
///
/// Usable as `Arc<dyn Limiter>`. Implemented by [`StaticLimiter`] and
/// [`AdaptiveLimiter`]; both pass [`conformance::run_all`].
pub trait Limiter: Send + Sync + 'static {
    /// Wait for a slot. Waiters are served first come, first served; the
    /// future is cancel-safe (dropping it loses no slot).
    fn acquire(&self) -> AcquireFuture;

    /// A slot now, or `None` when the limit is reached or others are already
    /// waiting (it never jumps the queue). Each `None` counts as `rejected`.
    fn try_acquire(&self) -> Option<Token>;

    /// The current state, for `/stats` and the dashboard.
    fn snapshot(&self) -> LimiterSnapshot;
}

/// A limiter's state at one moment. `limit` and `in_flight` are read together
/// (one atomic word), so `in_flight <= limit` unless the limit was just
/// lowered below the work already in flight.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimiterSnapshot {
    /// `"static"`, `"gradient"` or `"vegas"`.
    pub algorithm: &'static str,
    /// Tokens that may be out at once.
    pub limit: usize,
    /// Tokens out now.
    pub in_flight: usize,
    /// Callers queued in `acquire`.
    pub waiting: usize,
    /// The no-load latency estimate (adaptive only).
    pub latency_floor_ms: Option<f64>,
    /// The mean latency of the last completed window (adaptive only).
    pub latency_recent_ms: Option<f64>,
    /// Tokens reported [`Outcome::Success`].
    pub successes: u64,
    /// Tokens reported [`Outcome::Overload`].
    pub overloads: u64,
    /// Tokens reported [`Outcome::Ignore`] or dropped without a report.
    pub ignored: u64,
    /// `try_acquire` calls that got `None`.
    pub rejected: u64,
}

/// A fixed limit: a fair FIFO semaphore that counts outcomes.
///
/// # Example
///
/// ```
/// use surge_core::limit::{Limiter, StaticLimiter};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let limiter = StaticLimiter::new(1);
/// let token = limiter.acquire().await;
/// assert!(limiter.try_acquire().is_none());
/// token.overload(); // counted; a static limit does not move
/// let snap = limiter.snapshot();
/// assert_eq!((snap.limit, snap.overloads, snap.rejected), (1, 1, 1));
/// # }
/// ```
pub struct StaticLimiter {
    gate: Arc<Gate>,
}

impl StaticLimiter {
    /// A limiter that lets `limit` tokens out at once.
    ///
    /// # Panics
    ///
    /// If `limit` is 0 (nothing could ever run) or above `u32::MAX`.
    pub fn new(limit: usize) -> StaticLimiter {
        assert!(limit >= 1, "a concurrency limit must be at least 1");
        let limit = u32::try_from(limit).expect("a concurrency limit must fit in u32");
        StaticLimiter {
            gate: Gate::new(limit, Control::Fixed),
        }
    }
}

impl Limiter for StaticLimiter {
    fn acquire(&self) -> AcquireFuture {
        self.gate.acquire()
    }

    fn try_acquire(&self) -> Option<Token> {
        self.gate.try_acquire()
    }

    fn snapshot(&self) -> LimiterSnapshot {
        self.gate.snapshot("static")
    }
}

impl std::fmt::Debug for StaticLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticLimiter")
            .field("limit", &self.gate.limit())
            .finish()
    }
}
