//! What `GET /stats` and the dashboard show, and how it is collected.
//!
//! - [`window`]: lock-free histograms the hot path records into.
//! - [`history`]: the sampler's snapshots — the rolling one-minute window
//!   and the five-minute time series.
//! - [`lag`]: the runtime-lag probe.
//! - [`queue`]: the broker read, shared by all callers and rate-limited.
//!
//! The route itself is `routes::stats`.

pub(crate) mod history;
pub(crate) mod lag;
pub(crate) mod queue;
pub(crate) mod window;

use std::sync::{Arc, Weak};
use std::time::Instant;

use tokio::time::MissedTickBehavior;

use crate::metrics::Metrics;
use history::{History, SAMPLE_INTERVAL, Snapshot};

/// The state `/stats` keeps besides the metrics.
#[derive(Debug)]
pub(crate) struct Stats {
    pub(crate) history: History,
    pub(crate) queue: queue::QueueCache,
}

impl Stats {
    pub(crate) fn new(started: Instant) -> Stats {
        Stats {
            history: History::new(started),
            queue: queue::QueueCache::default(),
        }
    }
}

/// Samples every [`SAMPLE_INTERVAL`] and probes the runtime lag, until
/// `metrics` or `stats` is dropped.
pub(crate) async fn sample(metrics: Weak<Metrics>, stats: Weak<Stats>) {
    let probe = lag::run(metrics.clone());
    let sampler = async move {
        let mut every = tokio::time::interval(SAMPLE_INTERVAL);
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let (Some(metrics), Some(stats)) = (metrics.upgrade(), stats.upgrade()) else {
                return;
            };
            record(&metrics, &stats);
        }
    };
    tokio::join!(probe, sampler);
}

fn record(metrics: &Metrics, stats: &Arc<Stats>) {
    let snapshot = Snapshot::take(metrics);
    // Queue depth only when a caller read the broker lately:
    // the sampler itself never asks the broker.
    let waiting = stats.queue.peek().and_then(|r| {
        let (at, data) = r.data?;
        (at.elapsed() < 2 * SAMPLE_INTERVAL).then(|| data.waiting())
    });
    stats.history.record(snapshot, metrics.in_flight(), waiting);
}
