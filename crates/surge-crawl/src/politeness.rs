//! Per-host politeness, owned by the engine's scheduler (one task: no
//! locks): at most `per_host` fetches in flight to a host, request starts
//! at least `max(min_delay, crawl-delay)` apart, and an adaptive backoff
//! on 429 / 503 / timeouts (doubling from [`BACKOFF_START`] up to
//! [`BACKOFF_MAX`], `Retry-After` honoured up to [`BACKOFF_MAX`], one
//! fetch at a time while backing off, halved on each success). Until a
//! host's robots.txt is known (its first fetch returns) it gets one fetch at
//! a time, so its `Crawl-delay` applies from the second request on.
//!
//! A host's state is dropped as soon as it is idle (nothing pending,
//! nothing in flight, its next start time passed, no backoff left), so
//! memory follows the hosts in progress, not the hosts ever seen.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The first backoff step.
pub const BACKOFF_START: Duration = Duration::from_millis(250);
/// The largest backoff (and the longest `Retry-After` waited for).
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// How a fetch went, for its host's pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer (any status but 429 / 503).
    Ok,
    /// 429 or 503, with the `Retry-After` asked for.
    Throttled(Option<Duration>),
    /// A timeout.
    Timeout,
    /// Another failure (no pacing change).
    Failed,
}

#[derive(Debug)]
struct Host<T> {
    pending: VecDeque<T>,
    in_flight: usize,
    next_at: Instant,
    delay: Duration,
    backoff: Duration,
    known: bool,
}

/// Items (leases) waiting per host, handed out when their host allows.
#[derive(Debug)]
pub struct Politeness<T> {
    per_host: usize,
    min_delay: Duration,
    probe_first: bool,
    hosts: HashMap<String, Host<T>>,
    /// Hosts with pending items, in round-robin order.
    ring: VecDeque<String>,
    pending: usize,
}

impl<T> Politeness<T> {
    /// `per_host` fetches at once per host, starts `min_delay` apart;
    /// `probe_first`: one fetch until a host's first one returns.
    pub fn new(per_host: usize, min_delay: Duration, probe_first: bool) -> Politeness<T> {
        Politeness {
            per_host: per_host.max(1),
            min_delay,
            probe_first,
            hosts: HashMap::new(),
            ring: VecDeque::new(),
            pending: 0,
        }
    }

    /// Items waiting in all.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Hosts with state (pending, in flight or pacing).
    pub fn hosts(&self) -> usize {
        self.hosts.len()
    }

    /// Queues `item` for `host`.
    pub fn push(&mut self, host: &str, item: T, now: Instant) {
        let h = self.hosts.entry(host.to_owned()).or_insert_with(|| Host {
            pending: VecDeque::new(),
            in_flight: 0,
            next_at: now,
            delay: self.min_delay,
            backoff: Duration::ZERO,
            known: !self.probe_first,
        });
        if h.pending.is_empty() {
            self.ring.push_back(host.to_owned());
        }
        h.pending.push_back(item);
        self.pending += 1;
    }

    fn limit(&self, h: &Host<T>) -> usize {
        if !h.known || !h.backoff.is_zero() {
            1
        } else {
            self.per_host
        }
    }

    /// The next item whose host allows a start now (round robin over hosts).
    pub fn pop_ready(&mut self, now: Instant) -> Option<(String, T)> {
        for _ in 0..self.ring.len() {
            let host = self.ring.pop_front()?;
            let Some(h) = self.hosts.get(&host) else {
                continue;
            };
            let ready = h.in_flight < self.limit(h) && h.next_at <= now;
            let h = self.hosts.get_mut(&host)?;
            if !ready {
                self.ring.push_back(host);
                continue;
            }
            let item = h.pending.pop_front()?;
            self.pending -= 1;
            h.in_flight += 1;
            h.next_at = now + h.delay.max(h.backoff);
            if !h.pending.is_empty() {
                self.ring.push_back(host.clone());
            }
            return Some((host, item));
        }
        None
    }

    /// When a pending item may be ready next (`None`: none can be until a
    /// fetch returns).
    pub fn next_wake(&self) -> Option<Instant> {
        self.ring
            .iter()
            .filter_map(|host| self.hosts.get(host))
            .filter(|h| h.in_flight < self.limit(h))
            .map(|h| h.next_at)
            .min()
    }

    /// Records how a fetch to `host` went; `crawl_delay` from its
    /// robots.txt.
    pub fn finish(
        &mut self,
        host: &str,
        outcome: Outcome,
        crawl_delay: Option<Duration>,
        now: Instant,
    ) {
        let Some(h) = self.hosts.get_mut(host) else {
            return;
        };
        h.in_flight = h.in_flight.saturating_sub(1);
        h.known = true;
        if let Some(d) = crawl_delay {
            h.delay = self.min_delay.max(d);
        }
        match outcome {
            Outcome::Ok => {
                h.backoff /= 2;
                if h.backoff < BACKOFF_START / 4 {
                    h.backoff = Duration::ZERO;
                }
            }
            Outcome::Throttled(retry_after) => {
                h.backoff = (h.backoff * 2).clamp(BACKOFF_START, BACKOFF_MAX);
                let wait = retry_after
                    .unwrap_or(h.backoff)
                    .min(BACKOFF_MAX)
                    .max(h.backoff);
                h.next_at = h.next_at.max(now + wait);
            }
            Outcome::Timeout => {
                h.backoff = (h.backoff * 2).clamp(BACKOFF_START, BACKOFF_MAX);
                h.next_at = h.next_at.max(now + h.backoff);
            }
            Outcome::Failed => {}
        }
        self.sweep_one(host, now);
    }

    /// Drops the state of idle hosts.
    pub fn sweep(&mut self, now: Instant) {
        let idle: Vec<String> = self
            .hosts
            .iter()
            .filter(|(_, h)| Self::idle(h, now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in idle {
            self.hosts.remove(&k);
        }
    }

    fn idle(h: &Host<T>, now: Instant) -> bool {
        h.pending.is_empty() && h.in_flight == 0 && h.backoff.is_zero() && h.next_at <= now
    }

    fn sweep_one(&mut self, host: &str, now: Instant) {
        if self.hosts.get(host).is_some_and(|h| Self::idle(h, now)) {
            self.hosts.remove(host);
        }
    }

    /// Takes every pending item out (shutdown).
    pub fn drain(&mut self) -> Vec<T> {
        self.ring.clear();
        self.pending = 0;
        self.hosts
            .values_mut()
            .flat_map(|h| h.pending.drain(..))
            .collect()
    }

    /// Every pending item (for lease heartbeats).
    pub fn iter_pending(&self) -> impl Iterator<Item = &T> {
        self.hosts.values().flat_map(|h| h.pending.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_host_limit_and_round_robin() {
        let t0 = Instant::now();
        let mut p = Politeness::new(2, Duration::ZERO, false);
        for i in 0..5 {
            p.push("a", i, t0);
        }
        p.push("b", 10, t0);
        let got: Vec<(String, i32)> = std::iter::from_fn(|| p.pop_ready(t0)).collect();
        assert_eq!(
            got,
            vec![("a".into(), 0), ("b".into(), 10), ("a".into(), 1)]
        );
        assert_eq!(p.pending(), 3);
        assert_eq!(p.next_wake(), None, "a is full, b is empty");
        p.finish("a", Outcome::Ok, None, t0);
        assert_eq!(p.pop_ready(t0), Some(("a".into(), 2)));
        p.finish("b", Outcome::Ok, None, t0);
        assert_eq!(p.hosts(), 1, "b idle: dropped");
    }

    #[test]
    fn delays_probe_and_backoff() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Politeness::new(8, ms(100), true);
        for i in 0..4 {
            p.push("h", i, t0);
        }
        assert_eq!(p.pop_ready(t0), Some(("h".into(), 0)));
        assert_eq!(p.pop_ready(t0 + ms(500)), None, "probing: one at a time");
        p.finish("h", Outcome::Ok, Some(Duration::from_secs(1)), t0 + ms(10));
        // The crawl delay applies from the next start on.
        assert_eq!(p.pop_ready(t0 + ms(100)), Some(("h".into(), 1)));
        assert_eq!(p.pop_ready(t0 + ms(900)), None);
        assert_eq!(p.next_wake(), Some(t0 + ms(1100)));
        assert_eq!(p.pop_ready(t0 + ms(1100)), Some(("h".into(), 2)));
        // 429 with Retry-After 5 s: nothing before it, one at a time.
        p.finish(
            "h",
            Outcome::Throttled(Some(Duration::from_secs(5))),
            None,
            t0 + ms(1200),
        );
        p.finish("h", Outcome::Ok, None, t0 + ms(1200));
        assert_eq!(p.pop_ready(t0 + ms(6000)), None);
        assert_eq!(p.pop_ready(t0 + ms(6200)), Some(("h".into(), 3)));
        assert_eq!(p.drain(), Vec::<i32>::new());
    }
}
