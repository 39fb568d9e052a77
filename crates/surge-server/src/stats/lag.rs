//! Runtime lag: how late a short timer fires.
//!
//! The async runtime's equivalent of asyncio's slow-callback warning. A task
//! sleeps [`PROBE_INTERVAL`] again and again and records how much later than
//! asked it woke up. When every runtime thread is busy or blocked (a handler
//! that does CPU work or blocking I/O on the executor), the timer cannot be
//! served and the lag grows; on an idle runtime it is the timer's own
//! resolution, about a millisecond. Twenty wake-ups a second cost nothing
//! measurable.

use std::sync::Weak;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// How long each probe sleeps. A stall shorter than this is caught when it
/// covers a probe's deadline; a longer one always.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// Probes until `metrics` is dropped.
pub(crate) async fn run(metrics: Weak<Metrics>) {
    loop {
        let asked = Instant::now();
        tokio::time::sleep(PROBE_INTERVAL).await;
        let late = asked.elapsed().saturating_sub(PROBE_INTERVAL);
        match metrics.upgrade() {
            Some(m) => m.record_lag(late),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::stats::window::percentiles;

    #[tokio::test(flavor = "current_thread")]
    async fn a_blocked_runtime_shows_as_lag() {
        let metrics = Arc::new(Metrics::new());
        let probe = tokio::spawn(run(Arc::downgrade(&metrics)));
        // Let a few probes run, then block the only runtime thread for
        // three probe intervals.
        tokio::time::sleep(PROBE_INTERVAL * 3).await;
        std::thread::sleep(PROBE_INTERVAL * 3);
        tokio::time::sleep(PROBE_INTERVAL * 2).await;
        let lag = percentiles(&metrics.service_snapshot().lag).expect("probes recorded");
        assert!(lag.count >= 2, "{lag:?}");
        // The probe asleep when the thread blocked woke at least two
        // intervals late (bound derived from the block, not a timing budget).
        let blocked_ms = (PROBE_INTERVAL * 2).as_secs_f64() * 1000.0;
        assert!(lag.max_ms >= blocked_ms, "{lag:?}");
        drop(metrics);
        tokio::time::sleep(PROBE_INTERVAL * 2).await;
        assert!(probe.is_finished(), "the probe ends with its metrics");
    }
}
