//! Lock-free histograms for the hot path, and their summaries.
//!
//! A [`LiveHistogram`] counts since start: recording is one relaxed atomic
//! add into a log-linear bucket (the `histogram` crate's
//! `AtomicHistogram`), no lock and no allocation. Rolling windows are the
//! difference of two cumulative [`Histogram`] snapshots (see
//! [`super::history`]), so nothing on the hot path knows about time.

use std::time::Duration;

use histogram::{AtomicHistogram, Histogram};
use serde::Serialize;
use utoipa::ToSchema;

/// Buckets are 1/16 of a power of two wide: a reported value is at most
/// 6.25 % above the true one.
const GROUPING_POWER: u8 = 4;
/// Values are microseconds up to 2^36 µs (19 hours); longer ones count as
/// that.
const MAX_VALUE_POWER: u8 = 36;
const MAX_MICROS: u64 = (1 << MAX_VALUE_POWER) - 1;

/// A histogram of durations in microseconds, recorded without locks.
pub(crate) struct LiveHistogram(AtomicHistogram);

impl std::fmt::Debug for LiveHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveHistogram")
    }
}

impl Default for LiveHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveHistogram {
    pub(crate) fn new() -> Self {
        // The parameters are constants inside the crate's valid range.
        LiveHistogram(
            AtomicHistogram::new(GROUPING_POWER, MAX_VALUE_POWER)
                .expect("valid histogram parameters"),
        )
    }

    /// Counts one duration.
    #[inline]
    pub(crate) fn record(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        // In range by the clamp: cannot fail.
        let _ = self.0.increment(micros.min(MAX_MICROS));
    }

    /// Everything counted so far.
    pub(crate) fn load(&self) -> Histogram {
        self.0.load()
    }
}

/// An empty histogram of the live histograms' shape (the base of a window
/// that starts at process start).
pub(crate) fn empty() -> Histogram {
    Histogram::new(GROUPING_POWER, MAX_VALUE_POWER).expect("valid histogram parameters")
}

/// `now - base`: what was recorded between the two snapshots. A base of
/// another shape (never, in practice) gives `now` whole.
pub(crate) fn since(now: &Histogram, base: &Histogram) -> Histogram {
    now.wrapping_sub(base).unwrap_or_else(|_| now.clone())
}

/// Percentiles of durations over a window, in milliseconds. Each value is
/// the upper bound of its histogram bucket (at most 6.25 % above the true
/// value).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub(crate) struct Percentiles {
    /// Observations in the window.
    pub(crate) count: u64,
    /// Median.
    pub(crate) p50_ms: f64,
    /// 90th percentile.
    pub(crate) p90_ms: f64,
    /// 99th percentile.
    pub(crate) p99_ms: f64,
    /// 99.9th percentile.
    pub(crate) p999_ms: f64,
    /// Largest observation.
    pub(crate) max_ms: f64,
}

/// The percentiles of `h`, or `None` when it is empty.
pub(crate) fn percentiles(h: &Histogram) -> Option<Percentiles> {
    let count: u64 = h.as_slice().iter().sum();
    if count == 0 {
        return None;
    }
    let mut out: [Option<histogram::Bucket>; 5] = Default::default();
    h.quantile_buckets_into(&[0.5, 0.9, 0.99, 0.999, 1.0], &mut out)
        .ok()?;
    let ms = |b: &Option<histogram::Bucket>| b.as_ref().map_or(0.0, |b| b.end() as f64 / 1000.0);
    Some(Percentiles {
        count,
        p50_ms: ms(&out[0]),
        p90_ms: ms(&out[1]),
        p99_ms: ms(&out[2]),
        p999_ms: ms(&out[3]),
        max_ms: ms(&out[4]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_a_bucket_of_the_truth() {
        let h = LiveHistogram::new();
        assert_eq!(percentiles(&h.load()), None);
        // 1..=1000 ms, one each.
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let p = percentiles(&h.load()).expect("not empty");
        assert_eq!(p.count, 1000);
        for (got, want) in [
            (p.p50_ms, 500.0),
            (p.p90_ms, 900.0),
            (p.p99_ms, 990.0),
            (p.p999_ms, 999.0),
            (p.max_ms, 1000.0),
        ] {
            assert!(
                got >= want && got <= want * 1.0625,
                "{got} not in [{want}, {want} × 1.0625]"
            );
        }
    }

    #[test]
    fn a_window_is_the_difference_of_two_snapshots() {
        let h = LiveHistogram::new();
        h.record(Duration::from_secs(5));
        let base = h.load();
        for _ in 0..10 {
            h.record(Duration::from_micros(100));
        }
        let p = percentiles(&since(&h.load(), &base)).expect("not empty");
        assert_eq!(p.count, 10);
        assert!(
            p.max_ms < 0.2,
            "the 5 s before the base is not in it: {p:?}"
        );
        // Values past the top count as the top, not lost.
        h.record(Duration::from_secs(10 * 86_400));
        assert_eq!(percentiles(&h.load()).expect("not empty").count, 12);
    }
}
