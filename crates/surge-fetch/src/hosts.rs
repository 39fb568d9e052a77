//! Per-host state: the host's concurrency slots, its rate, and the next
//! time it may be asked again after it answered `Retry-After`.
//!
//! The slots are a static limit of `per_host`, or, when asked, an adaptive
//! limit (the core crate's [`AdaptiveLimiter`]: it backs off on latency
//! growth, 429, 503 and timeouts) that never goes above `per_host`. An
//! adaptive host's limit is learnt afresh when the host comes back after
//! being idle.
//!
//! An entry lives while a request for the host runs or waits, and for as
//! long as the host's `Retry-After` or rate window is still ahead; then it
//! is removed, so memory follows the hosts in use, not every host ever
//! fetched (a crawl touches millions).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use surge_core::limit::{
    AdaptiveConfig, AdaptiveLimiter, Limiter, LimiterSnapshot, StaticLimiter, Token,
};
use tokio::time::Instant;

/// One host's state.
#[derive(Debug)]
pub(crate) struct Host {
    key: Arc<str>,
    slots: Slots,
    timing: Mutex<Timing>,
    /// Requests holding or waiting for this entry; changed under the
    /// table's lock.
    users: std::sync::atomic::AtomicUsize,
}

/// A host's concurrency limit.
#[derive(Debug)]
enum Slots {
    Static(StaticLimiter),
    Adaptive(AdaptiveLimiter),
}

impl Slots {
    fn limiter(&self) -> &dyn Limiter {
        match self {
            Slots::Static(l) => l,
            Slots::Adaptive(l) => l,
        }
    }
}

#[derive(Debug, Default)]
struct Timing {
    /// Not before this (the host said `Retry-After`).
    deferred_until: Option<Instant>,
    /// The rate's next free start (GCRA's theoretical arrival time).
    next_start: Option<Instant>,
}

impl Timing {
    fn linger_until(&self) -> Option<Instant> {
        self.deferred_until.max(self.next_start)
    }
}

/// The per-host state of a fetcher.
#[derive(Debug)]
pub struct HostTable {
    map: Mutex<HashMap<Arc<str>, Arc<Host>>>,
    per_host: usize,
    adaptive: Option<AdaptiveConfig>,
    rate_interval: Option<Duration>,
    enters: AtomicU64,
}

/// Counters of a [`HostTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct HostStats {
    /// Hosts with state held now (in use, or inside a `Retry-After` or rate
    /// window).
    pub tracked: usize,
    /// Of those, hosts with a request running or waiting.
    pub active: usize,
}

impl HostTable {
    /// At most `per_host` requests at once per host, and at most `rate`
    /// starts per second per host when given.
    pub fn new(per_host: usize, rate: Option<f64>) -> HostTable {
        HostTable {
            map: Mutex::new(HashMap::new()),
            per_host,
            adaptive: None,
            rate_interval: rate.map(|r| Duration::from_secs_f64(1.0 / r)),
            enters: AtomicU64::new(0),
        }
    }

    /// The same, each host's limit adaptive between `adaptive.min` and
    /// `per_host` (starting at `adaptive.initial`, clamped to that range).
    ///
    /// # Errors
    /// The adaptive settings cannot work.
    pub fn adaptive(
        per_host: usize,
        rate: Option<f64>,
        adaptive: AdaptiveConfig,
    ) -> Result<HostTable, surge_core::limit::ConfigError> {
        let adaptive = per_host_adaptive(adaptive, per_host);
        adaptive.validate()?;
        Ok(HostTable {
            adaptive: Some(adaptive),
            ..HostTable::new(per_host, rate)
        })
    }

    /// The limiter state of `key` (`host:port`), while the host has an
    /// entry.
    pub fn limiter(&self, key: &str) -> Option<LimiterSnapshot> {
        let map = self.map.lock().expect("host table poisoned");
        map.get(key).map(|h| h.slots.limiter().snapshot())
    }

    /// The host's entry, held until the guard drops.
    pub(crate) fn enter(self: &Arc<Self>, key: &str) -> HostGuard {
        let mut map = self.map.lock().expect("host table poisoned");
        // Now and then drop idle entries whose windows have passed (those
        // that went idle while a window was still ahead).
        if self.enters.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            let now = Instant::now();
            map.retain(|_, h| !h.idle_and_expired(now));
        }
        let host = match map.get(key) {
            Some(h) => Arc::clone(h),
            None => {
                let key: Arc<str> = Arc::from(key);
                let h = Arc::new(Host {
                    key: Arc::clone(&key),
                    slots: match &self.adaptive {
                        None => Slots::Static(StaticLimiter::new(self.per_host)),
                        Some(a) => Slots::Adaptive(AdaptiveLimiter::new(a.clone())),
                    },
                    timing: Mutex::new(Timing::default()),
                    users: Default::default(),
                });
                map.insert(key, Arc::clone(&h));
                h
            }
        };
        host.users.fetch_add(1, Ordering::AcqRel);
        drop(map);
        HostGuard {
            table: Arc::clone(self),
            host,
        }
    }

    /// How many hosts have state now.
    pub fn stats(&self) -> HostStats {
        let map = self.map.lock().expect("host table poisoned");
        HostStats {
            tracked: map.len(),
            active: map
                .values()
                .filter(|h| h.users.load(Ordering::Relaxed) > 0)
                .count(),
        }
    }

    /// Drops every idle entry whose windows have passed.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.map
            .lock()
            .expect("host table poisoned")
            .retain(|_, h| !h.idle_and_expired(now));
    }
}

impl Host {
    fn idle_and_expired(&self, now: Instant) -> bool {
        self.users.load(Ordering::Relaxed) == 0
            && self
                .timing
                .lock()
                .expect("host timing poisoned")
                .linger_until()
                .is_none_or(|t| t <= now)
    }
}

/// A request's hold on its host's entry.
#[derive(Debug)]
pub(crate) struct HostGuard {
    table: Arc<HostTable>,
    host: Arc<Host>,
}

impl HostGuard {
    /// Waits until the host may be asked: past its `Retry-After`, and for
    /// the next start its rate allows (reserved for this request).
    pub(crate) async fn wait_turn(&self) {
        loop {
            let deferred = self
                .host
                .timing
                .lock()
                .expect("host timing poisoned")
                .deferred_until;
            match deferred {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => break,
            }
        }
        if let Some(interval) = self.table.rate_interval {
            let start = {
                let mut t = self.host.timing.lock().expect("host timing poisoned");
                let now = Instant::now();
                let start = t.next_start.map_or(now, |n| n.max(now));
                t.next_start = Some(start + interval);
                start
            };
            tokio::time::sleep_until(start).await;
        }
    }

    /// One of the host's slots (waits, first come first served).
    pub(crate) async fn slot(&self) -> Token {
        self.host.slots.limiter().acquire().await
    }

    /// No new request to this host for `delay` (it said `Retry-After`).
    pub(crate) fn defer(&self, delay: Duration) {
        let until = Instant::now() + delay;
        let mut t = self.host.timing.lock().expect("host timing poisoned");
        t.deferred_until = Some(t.deferred_until.map_or(until, |d| d.max(until)));
    }
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        // Only the last user looks at the table. Users are added under its
        // lock, so one that came in after the count reached zero is seen
        // there, and the entry stays.
        if self.host.users.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let mut map = self.table.map.lock().expect("host table poisoned");
        if self.host.idle_and_expired(Instant::now())
            && map
                .get(&self.host.key)
                .is_some_and(|h| Arc::ptr_eq(h, &self.host))
        {
            map.remove(&self.host.key);
        }
    }
}

/// `adaptive` bounded by the static per-host limit.
pub(crate) fn per_host_adaptive(mut adaptive: AdaptiveConfig, per_host: usize) -> AdaptiveConfig {
    adaptive.max = per_host;
    adaptive.min = adaptive.min.clamp(1, per_host);
    adaptive.initial = adaptive.initial.clamp(adaptive.min, per_host);
    adaptive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_idle_host_is_forgotten() {
        let table = Arc::new(HostTable::new(2, None));
        let a = table.enter("a:80");
        let b = table.enter("a:80");
        let c = table.enter("b:80");
        assert_eq!(table.stats().tracked, 2);
        drop(a);
        assert_eq!(table.stats().tracked, 2);
        drop((b, c));
        assert_eq!(
            table.stats(),
            HostStats {
                tracked: 0,
                active: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_deferred_host_is_kept_until_its_window_passes() {
        let table = Arc::new(HostTable::new(1, None));
        let g = table.enter("a:80");
        g.defer(Duration::from_secs(5));
        drop(g);
        assert_eq!(
            table.stats(),
            HostStats {
                tracked: 1,
                active: 0
            }
        );
        let g = table.enter("a:80");
        let before = Instant::now();
        g.wait_turn().await;
        assert!(Instant::now() - before >= Duration::from_secs(5));
        drop(g);
        assert_eq!(table.stats().tracked, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_spaces_starts() {
        let table = Arc::new(HostTable::new(10, Some(4.0)));
        let g = table.enter("a:80");
        let t0 = Instant::now();
        for _ in 0..5 {
            g.wait_turn().await;
        }
        // Five starts at 4/s: the first now, the fifth a second later.
        assert_eq!(Instant::now() - t0, Duration::from_secs(1));
    }
}
