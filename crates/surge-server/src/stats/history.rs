//! The rolling window and the time series behind `/stats`.
//!
//! The hot path only adds to cumulative counters and histograms. Every
//! [`SAMPLE_INTERVAL`] the sampler takes a [`Snapshot`] of them all: the
//! difference with the previous one is one point of the time series, and
//! one snapshot every [`WINDOW_STEP`] is kept for [`WINDOW`], so that "the
//! last minute" is `now - the oldest kept snapshot`. Memory is bounded: at
//! most `WINDOW / WINDOW_STEP + 2` snapshots and [`SERIES_POINTS`] points.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use histogram::Histogram;
use serde::Serialize;
use surge_core::ErrorCategory;
use utoipa::ToSchema;

use super::window::{percentiles, since};
use crate::metrics::{Metrics, ServiceSnapshot};
use crate::task_metrics::{KindSnapshot, OUTCOMES, TaskSnapshot};

/// How often the sampler reads the counters (one series point each).
pub(crate) const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);
/// Points kept: five minutes.
pub(crate) const SERIES_POINTS: usize = 150;
/// What rates and percentiles of `/stats` cover.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Spacing of the snapshots kept for the window (its start is this exact).
const WINDOW_STEP: Duration = Duration::from_secs(10);

/// Every counter and histogram `/stats` reads, at one instant.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) at: Instant,
    pub(crate) service: ServiceSnapshot,
    pub(crate) tasks: TaskSnapshot,
}

impl Snapshot {
    /// Reads `metrics` now.
    pub(crate) fn take(metrics: &Metrics) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            service: metrics.service_snapshot(),
            tasks: metrics.tasks().snapshot(),
        }
    }

    /// Nothing counted yet, at `at` (process start).
    fn zero(at: Instant) -> Snapshot {
        Snapshot {
            at,
            service: ServiceSnapshot::zero(),
            tasks: TaskSnapshot::default(),
        }
    }
}

/// What happened between two snapshots.
#[derive(Debug)]
pub(crate) struct Delta {
    pub(crate) seconds: f64,
    pub(crate) served: u64,
    pub(crate) shed: u64,
    pub(crate) errors: [u64; ErrorCategory::ALL.len()],
    pub(crate) latency: Histogram,
    pub(crate) lag: Histogram,
    pub(crate) kinds: BTreeMap<String, KindSnapshot>,
}

impl Delta {
    /// `count` per second over the delta (0 for an empty one).
    pub(crate) fn rate(&self, count: u64) -> f64 {
        if self.seconds > 0.0 {
            count as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Attempts finished, all kinds and outcomes.
    pub(crate) fn tasks_finished(&self) -> u64 {
        self.kinds.values().flat_map(|k| k.finished).sum()
    }
}

/// `now - base`.
pub(crate) fn delta(now: &Snapshot, base: &Snapshot) -> Delta {
    let (n, b) = (&now.service, &base.service);
    let zero = KindSnapshot::zero();
    let kinds = now
        .tasks
        .kinds
        .iter()
        .map(|(kind, k)| {
            let old = base.tasks.kinds.get(kind).unwrap_or(&zero);
            let finished: [u64; OUTCOMES.len()] =
                std::array::from_fn(|i| k.finished[i].saturating_sub(old.finished[i]));
            let d = KindSnapshot {
                finished,
                run: since(&k.run, &old.run),
                wait: since(&k.wait, &old.wait),
            };
            (kind.clone(), d)
        })
        .collect();
    Delta {
        seconds: now.at.saturating_duration_since(base.at).as_secs_f64(),
        served: n.served.saturating_sub(b.served),
        shed: n.shed.saturating_sub(b.shed),
        errors: std::array::from_fn(|i| n.errors[i].saturating_sub(b.errors[i])),
        latency: since(&n.latency, &b.latency),
        lag: since(&n.lag, &b.lag),
        kinds,
    }
}

/// One point of the time series: one [`SAMPLE_INTERVAL`].
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct StatsPoint {
    /// End of the interval, Unix time in milliseconds.
    t: i64,
    /// Requests completed per second.
    requests_per_second: f64,
    /// Error responses per second.
    errors_per_second: f64,
    /// Requests shed (503 `overloaded`) per second.
    shed_per_second: f64,
    /// Median request latency in the interval (none without requests).
    latency_p50_ms: Option<f64>,
    /// 99th-percentile request latency in the interval.
    latency_p99_ms: Option<f64>,
    /// Requests in flight at the end of the interval.
    in_flight: i64,
    /// 99th percentile of the runtime-lag probe in the interval.
    lag_p99_ms: Option<f64>,
    /// Largest runtime lag in the interval.
    lag_max_ms: Option<f64>,
    /// Task attempts finished per second by this process's workers.
    tasks_per_second: f64,
    /// Tasks waiting (pending, scheduled, retrying) at the last broker read,
    /// if one was made in the interval.
    queue_waiting: Option<u64>,
}

/// The kept snapshots and series points.
#[derive(Debug)]
pub(crate) struct History {
    started: Instant,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// One snapshot per [`WINDOW_STEP`], oldest first, none older than
    /// [`WINDOW`].
    ring: VecDeque<Snapshot>,
    /// The previous sample.
    last: Option<Snapshot>,
    points: VecDeque<StatsPoint>,
}

impl History {
    /// An empty history of a process started at `started`.
    pub(crate) fn new(started: Instant) -> History {
        History {
            started,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a sample: a series point for the interval since the previous
    /// one, and a window snapshot when one is due.
    pub(crate) fn record(&self, now: Snapshot, in_flight: i64, queue_waiting: Option<u64>) {
        let mut inner = self.lock();
        if let Some(prev) = &inner.last {
            let d = delta(&now, prev);
            let latency = percentiles(&d.latency);
            let lag = percentiles(&d.lag);
            let point = StatsPoint {
                t: chrono::Utc::now().timestamp_millis(),
                requests_per_second: d.rate(d.served),
                errors_per_second: d.rate(d.errors.iter().sum()),
                shed_per_second: d.rate(d.shed),
                latency_p50_ms: latency.map(|p| p.p50_ms),
                latency_p99_ms: latency.map(|p| p.p99_ms),
                in_flight,
                lag_p99_ms: lag.map(|p| p.p99_ms),
                lag_max_ms: lag.map(|p| p.max_ms),
                tasks_per_second: d.rate(d.tasks_finished()),
                queue_waiting,
            };
            if inner.points.len() == SERIES_POINTS {
                inner.points.pop_front();
            }
            inner.points.push_back(point);
        }
        // A little slack: ticks are not exactly WINDOW_STEP apart.
        let due = inner.ring.back().is_none_or(|last| {
            now.at.saturating_duration_since(last.at) + SAMPLE_INTERVAL / 2 >= WINDOW_STEP
        });
        if due {
            inner.ring.push_back(now.clone());
        }
        while inner
            .ring
            .front()
            .is_some_and(|first| now.at.saturating_duration_since(first.at) > WINDOW)
        {
            inner.ring.pop_front();
        }
        inner.last = Some(now);
    }

    /// What happened in the last [`WINDOW`] (since start when younger).
    pub(crate) fn window(&self, now: &Snapshot) -> Delta {
        let inner = self.lock();
        match inner.ring.front() {
            Some(base) => delta(now, base),
            None => delta(now, &Snapshot::zero(self.started)),
        }
    }

    /// The series, oldest first.
    pub(crate) fn points(&self) -> Vec<StatsPoint> {
        self.lock().points.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn at(metrics: &Metrics, base: Instant, secs: u64) -> Snapshot {
        Snapshot {
            at: base + Duration::from_secs(secs),
            ..Snapshot::take(metrics)
        }
    }

    #[test]
    fn the_window_covers_the_last_minute_and_the_series_each_interval() {
        let metrics = Arc::new(Metrics::new());
        let t0 = Instant::now();
        let history = History::new(t0);
        // Before any sample the window runs from start.
        drop(metrics.start("GET", "/a"));
        assert_eq!(history.window(&at(&metrics, t0, 1)).served, 1);

        // One request per 2-second tick for three minutes.
        for tick in 0..90u64 {
            drop(metrics.start("GET", "/a"));
            history.record(at(&metrics, t0, 2 * tick), 0, Some(tick));
        }
        let now = at(&metrics, t0, 180);
        let w = history.window(&now);
        assert!(
            (50.0..=60.0).contains(&w.seconds),
            "window of {} s",
            w.seconds
        );
        // The requests counted after the window's base: one per tick (the
        // last tick was 2 s before `now`).
        let per_tick = w.seconds / 2.0;
        assert!(
            (per_tick - 1.0..=per_tick).contains(&(w.served as f64)),
            "{} requests in {} s",
            w.served,
            w.seconds
        );
        assert_eq!(percentiles(&w.latency).expect("requests").count, w.served);

        let points = history.points();
        assert_eq!(points.len(), 89, "one per interval after the first sample");
        assert!(
            points
                .iter()
                .all(|p| (p.requests_per_second - 0.5).abs() < 1e-9)
        );
        assert_eq!(points.last().and_then(|p| p.queue_waiting), Some(89));

        for tick in 90..400u64 {
            history.record(at(&metrics, t0, 2 * tick), 0, None);
        }
        let inner = history.lock();
        assert_eq!(inner.points.len(), SERIES_POINTS, "bounded");
        assert!(
            inner.ring.len() <= 7,
            "{} window snapshots",
            inner.ring.len()
        );
    }
}
