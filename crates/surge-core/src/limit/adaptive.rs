//! The adaptive limiter: finds the downstream's concurrency from latency and
//! overload signals.
//!
//! Samples (one per [`Token`] reported `Success`) are gathered into windows of
//! at least [`AdaptiveConfig::window`], [`AdaptiveConfig::window_min_samples`]
//! samples and one recent round trip. At the end of each window the algorithm
//! compares the window's mean latency (the short window) with the latency
//! floor (the long window: the lowest window mean seen, the no-load latency)
//! and moves the limit:
//!
//! - [`Algorithm::Gradient`] (Netflix Gradient2's update, Envoy's baseline):
//!   `gradient = clamp(tolerance × floor / recent, 0.5, 1)`,
//!   `new = limit × gradient + √limit` (the queue allowance), smoothed:
//!   `limit += smoothing × (new − limit)`. Against a server of capacity `C`
//!   that queues the rest, it settles where `limit ≈ tolerance × C + √limit`.
//! - [`Algorithm::Vegas`] (TCP Vegas, as in Netflix's VegasLimit): the
//!   requests queued downstream are estimated as
//!   `limit × (1 − floor / recent)`; below `3·log10(limit)` the limit grows by
//!   `log10(limit)`, above `6·log10(limit)` it shrinks by as much. It settles
//!   `3..6 × log10(limit)` above `C`.
//!
//! Both cut the limit by [`AdaptiveConfig::backoff_ratio`] on
//! [`Outcome::Overload`] (AIMD). One cut per round trip: an overload from a
//! request that was handed out before the last cut was sent under the old
//! limit and says nothing new, so a burst of 503s costs one cut, not one per
//! error.
//!
//! The limit never grows in a window where demand stayed below it (no token
//! was handed out with in-flight at the limit): the caller, not the
//! downstream, was the bottleneck, and latency measured then says nothing
//! about more concurrency (TCP's congestion-window validation).
//!
//! Why the long window is a floor and not Gradient2's moving average: under
//! sustained load a moving average converges to the loaded latency, the
//! gradient returns to 1 and the limit keeps growing by its queue allowance
//! (Gradient2's known drift). A floor does not drift. It must still follow a
//! downstream whose no-load latency really rose: when latency pins the limit
//! at `min` for [`AdaptiveConfig::floor_refresh_windows`] windows (it cannot
//! queue less than that), the floor is re-learnt from the recent latency.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::gate::{Control, Gate, Sample};
use super::{AcquireFuture, Limiter, LimiterSnapshot, Outcome, Token};

/// Which latency algorithm an [`AdaptiveLimiter`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Gradient of floor to recent latency, plus a queue allowance.
    Gradient,
    /// TCP Vegas: keep a small, bounded queue downstream.
    Vegas,
}

impl Algorithm {
    /// `"gradient"` or `"vegas"`, as in [`LimiterSnapshot::algorithm`].
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::Gradient => "gradient",
            Algorithm::Vegas => "vegas",
        }
    }
}

/// Settings of an [`AdaptiveLimiter`]; start from `Default` and override.
///
/// # Example
///
/// ```
/// use surge_core::limit::{AdaptiveConfig, AdaptiveLimiter, Algorithm, Limiter};
///
/// let limiter = AdaptiveLimiter::new(AdaptiveConfig {
///     algorithm: Algorithm::Vegas,
///     initial: 8,
///     min: 2,
///     max: 256,
///     ..AdaptiveConfig::default()
/// });
/// assert_eq!(limiter.snapshot().limit, 8);
/// assert_eq!(limiter.snapshot().algorithm, "vegas");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveConfig {
    /// Latency algorithm. Default: [`Algorithm::Gradient`].
    pub algorithm: Algorithm,
    /// The limit to start from. Default 10.
    pub initial: usize,
    /// The limit never goes below this (at least 1). Default 1.
    pub min: usize,
    /// The limit never goes above this. Default 1000.
    pub max: usize,
    /// On [`Outcome::Overload`] the limit is multiplied by this (0..1).
    /// Default 0.8.
    pub backoff_ratio: f64,
    /// Gradient: recent latency may reach `tolerance × floor` before the limit
    /// shrinks (≥ 1). Default 1.25.
    pub tolerance: f64,
    /// Gradient: the share of each step taken (0..=1]. Default 0.2.
    pub smoothing: f64,
    /// A window lasts at least this long (and at least one recent round
    /// trip). Default 50 ms.
    pub window: Duration,
    /// A window holds at least this many successful samples. Default 8.
    pub window_min_samples: u32,
    /// Windows pinned at `min` by latency before the floor is re-learnt.
    /// Default 10.
    pub floor_refresh_windows: u32,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            algorithm: Algorithm::Gradient,
            initial: 10,
            min: 1,
            max: 1000,
            backoff_ratio: 0.8,
            tolerance: 1.25,
            smoothing: 0.2,
            window: Duration::from_millis(50),
            window_min_samples: 8,
            floor_refresh_windows: 10,
        }
    }
}

/// An [`AdaptiveConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The bounds are out of order: `1 <= min <= initial <= max <= 2^31` is
    /// needed.
    #[error(
        "limits must satisfy 1 <= min <= initial <= max <= 2^31 (got min {min}, initial {initial}, max {max})"
    )]
    Bounds {
        /// The configured minimum.
        min: usize,
        /// The configured initial limit.
        initial: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A tuning value is outside the range it must be in.
    #[error("{field} must be in {range} (got {value})")]
    OutOfRange {
        /// The field of [`AdaptiveConfig`].
        field: &'static str,
        /// The configured value.
        value: f64,
        /// The allowed range.
        range: &'static str,
    },
}

const MAX_LIMIT: usize = 1 << 31;

impl AdaptiveConfig {
    /// Checks that the settings can work.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Bounds`] when `min`, `initial` and `max` are out of
    /// order or 0; [`ConfigError::OutOfRange`] for a ratio outside its range or
    /// a zero `window_min_samples`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1 <= self.min && self.min <= self.initial && self.initial <= self.max)
            || self.max > MAX_LIMIT
        {
            return Err(ConfigError::Bounds {
                min: self.min,
                initial: self.initial,
                max: self.max,
            });
        }
        let checks = [
            (
                "backoff_ratio",
                self.backoff_ratio,
                self.backoff_ratio > 0.0 && self.backoff_ratio < 1.0,
                "(0, 1)",
            ),
            (
                "tolerance",
                self.tolerance,
                self.tolerance >= 1.0 && self.tolerance.is_finite(),
                "[1, inf)",
            ),
            (
                "smoothing",
                self.smoothing,
                self.smoothing > 0.0 && self.smoothing <= 1.0,
                "(0, 1]",
            ),
            (
                "window_min_samples",
                f64::from(self.window_min_samples),
                self.window_min_samples >= 1,
                "[1, 2^32)",
            ),
        ];
        for (field, value, ok, range) in checks {
            if !ok {
                return Err(ConfigError::OutOfRange {
                    field,
                    value,
                    range,
                });
            }
        }
        Ok(())
    }
}

/// A concurrency limit that adapts to the downstream (see the module docs of
/// [`limit`](super) and the algorithm notes on [`Algorithm`]).
///
/// # Example
///
/// ```
/// use surge_core::limit::{AdaptiveConfig, AdaptiveLimiter, Limiter};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let limiter = AdaptiveLimiter::new(AdaptiveConfig { initial: 4, ..Default::default() });
/// let tokens: Vec<_> = futures_util::future::join_all((0..4).map(|_| limiter.acquire())).await;
/// for token in tokens {
///     token.overload(); // four 503s from requests sent together...
/// }
/// assert_eq!(limiter.snapshot().limit, 3); // ...are one cut: 4 × 0.8
/// # }
/// ```
pub struct AdaptiveLimiter {
    gate: Arc<Gate>,
    algorithm: Algorithm,
}

impl AdaptiveLimiter {
    /// A limiter with these settings.
    ///
    /// # Panics
    ///
    /// If `config` is invalid (see [`AdaptiveConfig::validate`]); use
    /// [`AdaptiveLimiter::try_new`] for settings a user typed.
    pub fn new(config: AdaptiveConfig) -> AdaptiveLimiter {
        match AdaptiveLimiter::try_new(config) {
            Ok(limiter) => limiter,
            Err(e) => panic!("invalid AdaptiveConfig: {e}"),
        }
    }

    /// A limiter with these settings, or why they cannot work.
    ///
    /// # Errors
    ///
    /// See [`AdaptiveConfig::validate`].
    pub fn try_new(config: AdaptiveConfig) -> Result<AdaptiveLimiter, ConfigError> {
        config.validate()?;
        let algorithm = config.algorithm;
        let initial = config.initial as u32;
        Ok(AdaptiveLimiter {
            gate: Gate::new(initial, Control::Adaptive(Controller::new(config))),
            algorithm,
        })
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.gate.limit() as usize
    }
}

impl Limiter for AdaptiveLimiter {
    fn acquire(&self) -> AcquireFuture {
        self.gate.acquire()
    }

    fn try_acquire(&self) -> Option<Token> {
        self.gate.try_acquire()
    }

    fn snapshot(&self) -> LimiterSnapshot {
        self.gate.snapshot(self.algorithm.as_str())
    }
}

impl std::fmt::Debug for AdaptiveLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdaptiveLimiter")
            .field("algorithm", &self.algorithm)
            .field("limit", &self.gate.limit())
            .finish()
    }
}

/// The algorithm's state, behind one short lock taken per sample (never
/// across an `.await`).
pub(crate) struct Controller {
    config: AdaptiveConfig,
    state: Mutex<State>,
}

struct Window {
    started: Instant,
    samples: u32,
    latency_sum: f64,
    /// Some token in this window was handed out with in-flight at the limit.
    limited: bool,
    overloaded: bool,
}

impl Window {
    fn new(started: Instant) -> Window {
        Window {
            started,
            samples: 0,
            latency_sum: 0.0,
            limited: false,
            overloaded: false,
        }
    }
}

struct State {
    /// The estimate; the limit in force is its integer part, within bounds.
    limit: f64,
    /// Seconds: the lowest window mean (the no-load latency).
    floor: Option<f64>,
    /// Seconds: the last window's mean.
    recent: Option<f64>,
    window: Window,
    last_cut: Option<Instant>,
    /// Consecutive windows where latency pushed the limit below `min`.
    pinned: u32,
}

impl Controller {
    fn new(config: AdaptiveConfig) -> Controller {
        let state = State {
            limit: config.initial as f64,
            floor: None,
            recent: None,
            window: Window::new(Instant::now()),
            last_cut: None,
            pinned: 0,
        };
        Controller {
            config,
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the state consistent, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn latencies_ms(&self) -> (Option<f64>, Option<f64>) {
        let state = self.lock();
        (state.floor.map(|s| s * 1e3), state.recent.map(|s| s * 1e3))
    }

    /// Feed one sample; moves `gate`'s limit (under this lock, so concurrent
    /// samples cannot apply their results out of order).
    pub(crate) fn on_sample(&self, sample: Sample, gate: &Gate) {
        let mut state = self.lock();
        let before = state.effective(&self.config);
        state.apply(&self.config, sample);
        let after = state.effective(&self.config);
        if after != before {
            gate.set_limit(after);
        }
    }
}

impl State {
    fn effective(&self, config: &AdaptiveConfig) -> u32 {
        (self.limit.floor() as usize).clamp(config.min, config.max) as u32
    }

    fn apply(&mut self, config: &AdaptiveConfig, sample: Sample) {
        match sample.outcome {
            Outcome::Ignore => {}
            Outcome::Overload => {
                self.window.overloaded = true;
                // Only a request sent under the current limit, a round trip
                // after the last cut, can ask for another: one cut per
                // latency window, however many errors a burst brings.
                let round_trip = Duration::from_secs_f64(self.recent.unwrap_or(0.0));
                if self.last_cut.is_none_or(|cut| {
                    sample.acquired >= cut
                        && sample.finished.saturating_duration_since(cut) >= round_trip
                }) {
                    self.limit = (self.limit * config.backoff_ratio).max(config.min as f64);
                    self.last_cut = Some(sample.finished);
                }
            }
            Outcome::Success => {
                let latency = sample
                    .finished
                    .saturating_duration_since(sample.acquired)
                    .as_secs_f64();
                let window = &mut self.window;
                window.samples += 1;
                window.latency_sum += latency;
                window.limited |= sample.in_flight >= sample.limit;
                let min_length = config
                    .window
                    .max(Duration::from_secs_f64(self.recent.unwrap_or(0.0)));
                if window.samples >= config.window_min_samples
                    && sample.finished.saturating_duration_since(window.started) >= min_length
                {
                    self.close_window(config, sample.finished);
                }
            }
        }
    }

    fn close_window(&mut self, config: &AdaptiveConfig, now: Instant) {
        let window = std::mem::replace(&mut self.window, Window::new(now));
        let recent = window.latency_sum / f64::from(window.samples);
        let floor = self.floor.map_or(recent, |f| f.min(recent));
        self.floor = Some(floor);
        self.recent = Some(recent);
        let limit = self.limit;
        let mut proposed = match config.algorithm {
            Algorithm::Gradient => {
                let gradient = (config.tolerance * floor / recent).clamp(0.5, 1.0);
                // Far past the tolerance (the gradient clamped), no queue
                // allowance: the limit halves towards `min` rather than
                // resting where `limit / 2 + sqrt(limit) = limit` (4).
                let allowance = if gradient > 0.5 { limit.sqrt() } else { 0.0 };
                let target = limit * gradient + allowance;
                limit + config.smoothing * (target - limit)
            }
            Algorithm::Vegas => {
                let log = limit.log10().max(1.0);
                let queued = limit * (1.0 - floor / recent);
                if queued <= 3.0 * log {
                    limit + log
                } else if queued >= 6.0 * log {
                    limit - log
                } else {
                    limit
                }
            }
        };
        // No growth when the caller was the bottleneck, nor in a window that
        // already saw an overload (its cut is in force).
        if !window.limited || window.overloaded {
            proposed = proposed.min(limit);
        }
        let min = config.min as f64;
        if proposed < min && limit <= min + 1.0 && !window.overloaded {
            self.pinned += 1;
            if self.pinned >= config.floor_refresh_windows {
                // We cannot queue less than `min`: the floor is stale.
                self.floor = Some(recent);
                self.pinned = 0;
            }
        } else {
            self.pinned = 0;
        }
        self.limit = proposed.clamp(min, config.max as f64);
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    use super::*;

    fn gradient() -> AdaptiveConfig {
        AdaptiveConfig {
            initial: 4,
            ..AdaptiveConfig::default()
        }
    }

    fn vegas() -> AdaptiveConfig {
        AdaptiveConfig {
            algorithm: Algorithm::Vegas,
            ..gradient()
        }
    }

    /// A deterministic closed loop: unbounded demand through the controller
    /// against a server with `capacity` workers of `service` each, FIFO queue.
    /// Returns the limit after each completion.
    struct Sim {
        state: State,
        config: AdaptiveConfig,
        now: Instant,
        /// (finish time, acquired, in_flight, limit) of requests in flight.
        in_flight: BinaryHeap<Reverse<(Instant, Instant, u32, u32)>>,
        /// When each server worker is next free.
        workers: BinaryHeap<Reverse<Instant>>,
        service: Duration,
        demand: usize,
        overload: bool,
    }

    impl Sim {
        fn new(config: AdaptiveConfig, capacity: usize, service: Duration) -> Sim {
            let now = Instant::now();
            Sim {
                state: Controller::new(config.clone()).state.into_inner().unwrap(),
                config,
                now,
                in_flight: BinaryHeap::new(),
                workers: (0..capacity).map(|_| Reverse(now)).collect(),
                service,
                demand: usize::MAX,
                overload: false,
            }
        }

        fn set_capacity(&mut self, capacity: usize) {
            let mut workers = std::mem::take(&mut self.workers).into_sorted_vec();
            // Sorted descending by Reverse: the soonest free are last.
            workers.reverse();
            workers.resize(capacity, Reverse(self.now));
            self.workers = workers.into_iter().collect();
        }

        fn limit(&self) -> u32 {
            self.state.effective(&self.config)
        }

        /// Run `completions` requests; returns the limit seen after each.
        fn run(&mut self, completions: usize) -> Vec<u32> {
            let mut limits = Vec::with_capacity(completions);
            for _ in 0..completions {
                while self.in_flight.len() < (self.limit() as usize).min(self.demand) {
                    let in_flight = self.in_flight.len() as u32 + 1;
                    let finish = if self.overload {
                        self.now + Duration::from_millis(1)
                    } else {
                        let Reverse(free) = self.workers.pop().unwrap();
                        let done = free.max(self.now) + self.service;
                        self.workers.push(Reverse(done));
                        done
                    };
                    let limit = self.limit();
                    self.in_flight
                        .push(Reverse((finish, self.now, in_flight, limit)));
                }
                let Reverse((finished, acquired, in_flight, limit)) = self.in_flight.pop().unwrap();
                self.now = finished;
                let outcome = if self.overload {
                    Outcome::Overload
                } else {
                    Outcome::Success
                };
                self.state.apply(
                    &self.config,
                    Sample {
                        acquired,
                        finished,
                        in_flight,
                        limit,
                        outcome,
                    },
                );
                limits.push(self.limit());
            }
            limits
        }
    }

    fn settled(limits: &[u32]) -> (u32, u32) {
        let tail = &limits[limits.len() * 3 / 4..];
        (*tail.iter().min().unwrap(), *tail.iter().max().unwrap())
    }

    #[test]
    fn gradient_settles_just_above_capacity() {
        for capacity in [4usize, 16, 64, 256] {
            let mut sim = Sim::new(gradient(), capacity, Duration::from_millis(20));
            let limits = sim.run(capacity * 400);
            let (low, high) = settled(&limits);
            let c = capacity as f64;
            // Equilibrium: limit = tolerance × C + sqrt(limit).
            let bound = 1.25 * c + (1.25 * c).sqrt() * 1.5 + 2.0;
            assert!(
                low as f64 >= c && (high as f64) <= bound,
                "C={capacity}: settled in {low}..={high}, want {capacity}..={bound:.0}"
            );
        }
    }

    #[test]
    fn vegas_settles_a_few_above_capacity() {
        for capacity in [4usize, 16, 64, 256] {
            let mut sim = Sim::new(vegas(), capacity, Duration::from_millis(20));
            let limits = sim.run(capacity * 400);
            let (low, high) = settled(&limits);
            let c = capacity as f64;
            let log = (c * 2.0).log10().max(1.0);
            let bound = c + 6.0 * log + 2.0;
            assert!(
                low as f64 >= c && (high as f64) <= bound,
                "C={capacity}: settled in {low}..={high}, want {capacity}..={bound:.0}"
            );
        }
    }

    #[test]
    fn follows_capacity_down_and_up() {
        for config in [gradient(), vegas()] {
            let mut sim = Sim::new(config.clone(), 32, Duration::from_millis(20));
            sim.run(32 * 300);
            sim.set_capacity(8);
            let (_, high) = settled(&sim.run(8 * 600));
            assert!(
                high <= 20,
                "{:?}: after 32 -> 8 settled at {high}",
                config.algorithm
            );
            sim.set_capacity(32);
            let (low, _) = settled(&sim.run(32 * 600));
            assert!(
                low >= 32,
                "{:?}: after 8 -> 32 settled at {low}",
                config.algorithm
            );
        }
    }

    #[test]
    fn overload_cuts_once_per_round_trip_then_recovers() {
        for config in [gradient(), vegas()] {
            let mut sim = Sim::new(config.clone(), 16, Duration::from_millis(20));
            sim.run(16 * 300);
            let before = sim.limit();
            sim.overload = true;
            let started = sim.now;
            let during = sim.run(before as usize * 4);
            let cuts = during.windows(2).filter(|w| w[1] < w[0]).count() + 1;
            let round_trip = sim.state.recent.unwrap();
            let round_trips = (sim.now - started).as_secs_f64() / round_trip;
            assert!(
                cuts as f64 <= round_trips.floor() + 1.0,
                "{:?}: {cuts} cuts in {round_trips:.1} round trips",
                config.algorithm
            );
            // 30 round trips of 503s: 0.8^30 takes any limit here to min.
            while sim.now - started < Duration::from_secs_f64(round_trip * 30.0) {
                sim.run(100);
            }
            assert_eq!(sim.limit(), 1, "{:?}: comes down to min", config.algorithm);
            sim.overload = false;
            let (low, _) = settled(&sim.run(16 * 400));
            assert!(low >= 16, "{:?}: recovered only to {low}", config.algorithm);
        }
    }

    #[test]
    fn caller_bound_demand_never_raises_the_limit() {
        for config in [gradient(), vegas()] {
            let config = AdaptiveConfig {
                initial: 20,
                ..config
            };
            let mut sim = Sim::new(config.clone(), 64, Duration::from_millis(20));
            sim.demand = 12;
            let limits = sim.run(5_000);
            assert_eq!(
                limits.iter().max(),
                Some(&20),
                "{:?}: grew while demand stayed at 12",
                config.algorithm
            );
        }
    }

    #[test]
    fn a_stale_floor_is_relearnt_at_min() {
        let mut sim = Sim::new(gradient(), 8, Duration::from_millis(20));
        sim.run(8 * 200);
        // The server's own latency triples: the old floor says "queueing".
        sim.service = Duration::from_millis(60);
        let (low, _) = settled(&sim.run(8 * 1500));
        assert!(low >= 8, "stuck at {low} on a stale floor");
        assert!(sim.state.floor.unwrap() >= 0.055);
    }

    #[test]
    fn bad_configs_are_refused() {
        let bad = AdaptiveConfig {
            min: 5,
            initial: 4,
            ..Default::default()
        };
        assert!(matches!(
            AdaptiveLimiter::try_new(bad),
            Err(ConfigError::Bounds { .. })
        ));
        let bad = AdaptiveConfig {
            backoff_ratio: 1.0,
            ..Default::default()
        };
        let err = AdaptiveLimiter::try_new(bad).unwrap_err();
        assert_eq!(err.to_string(), "backoff_ratio must be in (0, 1) (got 1)");
    }
}
