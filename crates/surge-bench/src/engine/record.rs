//! What one generator thread records: HDR histograms and counters, merged
//! into a [`Point`] when the level ends. Nothing here grows with the number
//! of requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use surge_core::ErrorCategory;

use crate::results::{ErrorCounts, Latency, Point};

/// Status codes are three digits: counted in an array indexed by the code.
const STATUSES: usize = 1000;

/// Highest latency recorded, µs (an hour); longer ones are clamped to it.
const MAX_MICROS: u64 = 3_600_000_000;

/// A histogram of microseconds, 1 µs to an hour, 3 significant digits
/// (about 190 KiB, whatever the number of samples).
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_MICROS)
}

/// Counters the progress line reads while the level runs (one per thread,
/// on its own cache line).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Live {
    pub(crate) responses: AtomicU64,
    pub(crate) errors: AtomicU64,
}

/// One thread's recording of one level.
pub(crate) struct Recorder {
    latency: Histogram<u64>,
    uncorrected: Option<Histogram<u64>>,
    busy_micros: u64,
    errors: [u64; ErrorCategory::ALL.len()],
    /// Responses by status code (index = code).
    statuses: Box<[u64; STATUSES]>,
    bytes: u64,
    responses: u64,
    last_completion: Option<Instant>,
    first_error: Option<String>,
}

fn category_index(c: ErrorCategory) -> usize {
    ErrorCategory::ALL
        .iter()
        .position(|&x| x == c)
        .expect("every category is in ALL")
}

impl Recorder {
    pub(crate) fn new(open_loop: bool) -> Recorder {
        Recorder {
            latency: histogram(),
            uncorrected: open_loop.then(histogram),
            busy_micros: 0,
            errors: [0; ErrorCategory::ALL.len()],
            statuses: Box::new([0; STATUSES]),
            bytes: 0,
            responses: 0,
            last_completion: None,
            first_error: None,
        }
    }

    /// A response: `latency` from the intended send (open loop) or the
    /// send (closed), `service` from the actual send.
    pub(crate) fn response(
        &mut self,
        live: &Live,
        latency: Duration,
        service: Duration,
        status: u16,
        bytes: u64,
        done: Instant,
    ) {
        let us = micros(latency);
        self.latency.saturating_record(us);
        if let Some(h) = &mut self.uncorrected {
            h.saturating_record(micros(service));
        }
        self.busy_micros += micros(service);
        if let Some(n) = self.statuses.get_mut(usize::from(status)) {
            *n += 1;
        }
        self.bytes += bytes;
        self.responses += 1;
        self.last_completion = Some(done);
        live.responses.fetch_add(1, Ordering::Relaxed);
        if status >= 400 {
            self.error(live, ErrorCategory::HttpStatus, || {
                format!("HTTP status {status}")
            });
        }
    }

    /// A failed request (no response, or an error status via `response`).
    pub(crate) fn error(
        &mut self,
        live: &Live,
        category: ErrorCategory,
        describe: impl FnOnce() -> String,
    ) {
        self.errors[category_index(category)] += 1;
        live.errors.fetch_add(1, Ordering::Relaxed);
        if self.first_error.is_none() {
            self.first_error = Some(format!("{category}: {}", describe()));
        }
    }

    /// When a failure ends the measured span (no response to count).
    pub(crate) fn failed_at(&mut self, at: Instant) {
        if self.last_completion.is_none_or(|t| t < at) {
            self.last_completion = Some(at);
        }
    }

    fn merge(&mut self, other: Recorder) {
        self.latency.add(&other.latency).expect("same bounds");
        if let (Some(a), Some(b)) = (&mut self.uncorrected, &other.uncorrected) {
            a.add(b).expect("same bounds");
        }
        self.busy_micros += other.busy_micros;
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        for (a, b) in self.statuses.iter_mut().zip(other.statuses.iter()) {
            *a += b;
        }
        self.bytes += other.bytes;
        self.responses += other.responses;
        self.last_completion = self.last_completion.max(other.last_completion);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Merges the threads' recordings into one point. `measure_start` is
    /// when counting began; `fallback_end` ends the span when nothing
    /// completed.
    pub(crate) fn into_point(
        recorders: Vec<Recorder>,
        load: f64,
        connections: u32,
        closed_loop: bool,
        measure_start: Instant,
        fallback_end: Instant,
    ) -> Point {
        let mut all = Recorder::new(!closed_loop);
        for r in recorders {
            all.merge(r);
        }
        let end = all
            .last_completion
            .unwrap_or(fallback_end)
            .max(measure_start);
        let seconds = (end - measure_start).as_secs_f64();
        let throughput = if seconds > 0.0 {
            all.responses as f64 / seconds
        } else {
            0.0
        };
        let mut errors = ErrorCounts::default();
        for (c, n) in ErrorCategory::ALL.iter().zip(all.errors) {
            errors.add(*c, n);
        }
        let in_flight_share = (closed_loop && seconds > 0.0)
            .then(|| all.busy_micros as f64 / 1e6 / (f64::from(connections) * seconds));
        Point {
            load,
            connections: Some(connections),
            seconds,
            requests: all.responses,
            throughput,
            latency: Latency::of_micros(&all.latency),
            uncorrected_latency: all.uncorrected.as_ref().and_then(Latency::of_micros),
            in_flight_share,
            errors,
            statuses: all
                .statuses
                .iter()
                .enumerate()
                .filter(|&(_, &n)| n > 0)
                .map(|(code, &n)| (code.to_string(), n))
                .collect(),
            bytes: all.bytes,
            first_error: all.first_error,
        }
    }
}
