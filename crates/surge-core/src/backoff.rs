//! When to try again: exponential backoff with full jitter, the
//! `Retry-After` header, and a retry budget that keeps retries from
//! multiplying load.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use surge_core::backoff::{Backoff, RetryBudget, parse_retry_after};
//!
//! let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
//! let budget = RetryBudget::default();
//! budget.deposit(); // one request sent
//!
//! // The server said 503 with `Retry-After: 2`; we wait at most 30 s.
//! let retry_after = parse_retry_after("2", SystemTime::now());
//! let attempt = 1;
//! if budget.try_withdraw() {
//!     let wait = match retry_after {
//!         Some(asked) => asked.min(Duration::from_secs(30)),
//!         None => backoff.delay(attempt),
//!     };
//!     assert_eq!(wait, Duration::from_secs(2));
//! }
//! ```

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use serde::Serialize;

/// Exponential backoff with full jitter (the AWS architecture blog's
/// "full jitter"): after failed attempt `n` (1-based), wait a uniformly
/// random time in `[0, min(cap, base × 2^(n-1))]`. Spreading retries over
/// the whole range keeps clients that failed together from retrying together.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use surge_core::backoff::Backoff;
///
/// let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// assert_eq!(b.ceiling(1), Duration::from_millis(100));
/// assert_eq!(b.ceiling(3), Duration::from_millis(400));
/// assert_eq!(b.ceiling(10), Duration::from_secs(1));
/// assert!(b.delay(3) <= Duration::from_millis(400));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Backoff {
    /// The first retry's upper bound.
    pub base: Duration,
    /// No wait is longer than this.
    pub cap: Duration,
}

impl Backoff {
    /// Backoff from `base`, never above `cap`.
    pub const fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff { base, cap }
    }

    /// The longest wait after failed attempt `attempt` (1-based; 0 counts as
    /// 1): `min(cap, base × 2^(attempt-1))`, without overflow.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(100);
        // In u128 nanoseconds, base × 2^100 saturates instead of wrapping.
        let nanos = self
            .base
            .as_nanos()
            .saturating_mul(1u128 << doublings)
            .min(self.cap.as_nanos());
        // At most `cap`, so it fits a Duration.
        Duration::new(
            (nanos / 1_000_000_000) as u64,
            (nanos % 1_000_000_000) as u32,
        )
    }

    /// A random wait in `[0, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_nanos()).unwrap_or(u64::MAX);
        if ceiling == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rand::rng().random_range(0..=ceiling))
    }
}

/// The wait a `Retry-After` header asks for, from `now`.
///
/// Accepts delta-seconds (`"120"`) and an HTTP-date (IMF-fixdate
/// `"Wed, 21 Oct 2015 07:28:00 GMT"`, and the obsolete RFC 850 and asctime
/// forms). A date in the past is a wait of zero. A delta too large for a
/// `u64` saturates. Returns `None` for anything else (negative or fractional
/// seconds, garbage): the caller then falls back to its own backoff.
///
/// The server's wish is not capped here: apply your own maximum
/// (`wait.min(max)`), or give up when it is too long.
///
/// # Example
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use surge_core::backoff::parse_retry_after;
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21 07:28:00 UTC
/// assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
/// assert_eq!(
///     parse_retry_after("Wed, 21 Oct 2015 07:29:30 GMT", now),
///     Some(Duration::from_secs(90))
/// );
/// assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
/// assert_eq!(parse_retry_after("-5", now), None);
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Settings of a [`RetryBudget`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RetryBudgetConfig {
    /// Retries allowed per request deposited (0.2: one retry per five
    /// requests).
    pub ratio: f64,
    /// Retries allowed per second whatever the traffic, so a quiet client
    /// can still retry.
    pub min_per_second: u32,
    /// How far back requests and retries count.
    pub window: Duration,
}

impl Default for RetryBudgetConfig {
    /// Finagle's defaults: 20 % of requests, 10 retries a second, over 10 s.
    fn default() -> Self {
        RetryBudgetConfig {
            ratio: 0.2,
            min_per_second: 10,
            window: Duration::from_secs(10),
        }
    }
}

/// A retry budget's state (serialisable for `/stats`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryBudgetSnapshot {
    /// Requests deposited within the window.
    pub deposits: u64,
    /// Retries allowed within the window.
    pub withdrawals: u64,
    /// Retries refused, ever.
    pub refused: u64,
    /// Retries the budget would allow now.
    pub balance: u64,
}

const BUCKETS: usize = 10;

#[derive(Clone, Copy, Default)]
struct Bucket {
    deposits: u64,
    withdrawals: u64,
}

struct Ledger {
    buckets: [Bucket; BUCKETS],
    /// Index (since `start`) of the bucket `buckets[current % BUCKETS]`.
    current: u64,
    refused: u64,
}

/// Retries as a share of recent traffic, as Finagle's and Envoy's retry
/// budgets: within any `window`, retries may not exceed
/// `ratio × requests + min_per_second × window`. A client whose requests all
/// fail then adds at most `ratio` load, instead of multiplying it by the
/// retry count.
///
/// Call [`deposit`](RetryBudget::deposit) once per original request (not per
/// retry) and [`try_withdraw`](RetryBudget::try_withdraw) before each retry;
/// retry only when it returns `true`. The window slides in tenths.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use surge_core::backoff::{RetryBudget, RetryBudgetConfig};
///
/// let budget = RetryBudget::new(RetryBudgetConfig {
///     ratio: 0.1,
///     min_per_second: 0,
///     window: Duration::from_secs(10),
/// });
/// for _ in 0..100 {
///     budget.deposit();
/// }
/// let retries = (0..100).filter(|_| budget.try_withdraw()).count();
/// assert_eq!(retries, 10);
/// assert_eq!(budget.snapshot().refused, 90);
/// ```
pub struct RetryBudget {
    config: RetryBudgetConfig,
    start: Instant,
    ledger: Mutex<Ledger>,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget::new(RetryBudgetConfig::default())
    }
}

impl RetryBudget {
    /// A budget with these settings (a negative or NaN ratio allows only the
    /// per-second floor; a zero window is one millisecond).
    pub fn new(config: RetryBudgetConfig) -> RetryBudget {
        let config = RetryBudgetConfig {
            ratio: if config.ratio > 0.0 {
                config.ratio
            } else {
                0.0
            },
            window: config.window.max(Duration::from_millis(1)),
            ..config
        };
        RetryBudget {
            config,
            start: Instant::now(),
            ledger: Mutex::new(Ledger {
                buckets: [Bucket::default(); BUCKETS],
                current: 0,
                refused: 0,
            }),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> RetryBudgetConfig {
        self.config
    }

    /// Counts one request (call it once per original request).
    pub fn deposit(&self) {
        self.deposit_at(Instant::now());
    }

    /// Takes one retry from the budget: `false` means do not retry.
    pub fn try_withdraw(&self) -> bool {
        self.try_withdraw_at(Instant::now())
    }

    /// What the budget holds now.
    pub fn snapshot(&self) -> RetryBudgetSnapshot {
        self.snapshot_at(Instant::now())
    }

    fn lock_at(&self, now: Instant) -> std::sync::MutexGuard<'_, Ledger> {
        // Each update is one counter: a poisoned ledger is still consistent.
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        let bucket_len = self.config.window.as_nanos() / BUCKETS as u128;
        let index =
            (now.saturating_duration_since(self.start).as_nanos() / bucket_len.max(1)) as u64;
        if index > ledger.current {
            // Clear the buckets that slid out of the window.
            let stale = (index - ledger.current).min(BUCKETS as u64);
            let current = ledger.current;
            for step in 1..=stale {
                ledger.buckets[((current + step) % BUCKETS as u64) as usize] = Bucket::default();
            }
            ledger.current = index;
        }
        ledger
    }

    fn balance(&self, ledger: &Ledger) -> (u64, u64, u64) {
        let deposits: u64 = ledger.buckets.iter().map(|b| b.deposits).sum();
        let withdrawals: u64 = ledger.buckets.iter().map(|b| b.withdrawals).sum();
        let floor = f64::from(self.config.min_per_second) * self.config.window.as_secs_f64();
        let allowed = (floor + self.config.ratio * deposits as f64).floor() as u64;
        (deposits, withdrawals, allowed.saturating_sub(withdrawals))
    }

    fn deposit_at(&self, now: Instant) {
        let mut ledger = self.lock_at(now);
        let slot = (ledger.current % BUCKETS as u64) as usize;
        ledger.buckets[slot].deposits += 1;
    }

    fn try_withdraw_at(&self, now: Instant) -> bool {
        let mut ledger = self.lock_at(now);
        let (_, _, balance) = self.balance(&ledger);
        if balance == 0 {
            ledger.refused += 1;
            return false;
        }
        let slot = (ledger.current % BUCKETS as u64) as usize;
        ledger.buckets[slot].withdrawals += 1;
        true
    }

    fn snapshot_at(&self, now: Instant) -> RetryBudgetSnapshot {
        let ledger = self.lock_at(now);
        let (deposits, withdrawals, balance) = self.balance(&ledger);
        RetryBudgetSnapshot {
            deposits,
            withdrawals,
            refused: ledger.refused,
            balance,
        }
    }
}

impl std::fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryBudget")
            .field("config", &self.config)
            .field("now", &self.snapshot())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap_without_overflow() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let ceilings: Vec<_> = (0..=8).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(5));
        let huge = Backoff::new(Duration::from_secs(u64::MAX / 2), Duration::MAX);
        assert_eq!(huge.ceiling(40), Duration::MAX);
        let zero = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(zero.delay(7), Duration::ZERO);
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for attempt in 1..=6 {
            let ceiling = b.ceiling(attempt);
            let draws: Vec<Duration> = (0..4_000).map(|_| b.delay(attempt)).collect();
            assert!(
                draws.iter().all(|d| *d <= ceiling),
                "attempt {attempt}: above {ceiling:?}"
            );
            // Uniform over [0, ceiling]: each quarter gets about 1000 draws;
            // 700 is over 10 standard deviations below that.
            for quarter in 0..4u32 {
                let (low, high) = (ceiling * quarter / 4, ceiling * (quarter + 1) / 4);
                let n = draws.iter().filter(|d| **d >= low && **d < high).count();
                assert!(
                    n > 700,
                    "attempt {attempt}: quarter {quarter} got {n} of 4000"
                );
            }
            let mean = draws.iter().sum::<Duration>() / 4_000;
            let half = ceiling / 2;
            assert!(
                mean > half * 9 / 10 && mean < half * 11 / 10,
                "mean {mean:?}"
            );
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        let in_a_minute = Some(Duration::from_secs(60));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            in_a_minute
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:50:37 GMT", now),
            in_a_minute
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:50:37 1994", now),
            in_a_minute
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in [
            "",
            "1.5",
            "+3",
            "-1",
            "tomorrow",
            "Sun, 06 Nov 1994 25:00:00 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn retries_cannot_exceed_the_ratio() {
        let budget = RetryBudget::new(RetryBudgetConfig {
            ratio: 0.2,
            min_per_second: 10,
            window: Duration::from_secs(10),
        });
        let t0 = budget.start;
        // 100 requests a second for 60 s, every one failing and asking for a
        // retry (and every retry failing and asking again, three times).
        let (mut requests, mut retries) = (0u64, 0u64);
        for ms in (0..60_000u64).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            budget.deposit_at(now);
            requests += 1;
            for _ in 0..3 {
                if budget.try_withdraw_at(now) {
                    retries += 1;
                }
            }
            // Within the trailing window the bound holds at every instant.
            let s = budget.snapshot_at(now);
            assert!(
                s.withdrawals as f64 <= 0.2 * s.deposits as f64 + 100.0,
                "at {ms} ms: {s:?}"
            );
        }
        // Over the whole run: ratio × requests plus the floor of each window.
        let bound = 0.2 * requests as f64 + 10.0 * 60.0 + 100.0;
        assert!(
            retries as f64 <= bound,
            "{retries} retries for {requests} requests"
        );
        assert!(
            retries as f64 >= 0.2 * requests as f64,
            "the budget refused allowed retries"
        );
        let s = budget.snapshot_at(t0 + Duration::from_secs(60));
        assert!(s.refused > 0);
    }

    #[test]
    fn the_window_slides() {
        let budget = RetryBudget::new(RetryBudgetConfig {
            ratio: 0.5,
            min_per_second: 0,
            window: Duration::from_secs(10),
        });
        let t0 = budget.start;
        for _ in 0..10 {
            budget.deposit_at(t0);
        }
        assert_eq!(budget.snapshot_at(t0).balance, 5);
        assert!(budget.try_withdraw_at(t0 + Duration::from_secs(5)));
        assert_eq!(budget.snapshot_at(t0 + Duration::from_secs(9)).balance, 4);
        // Ten seconds on, those requests no longer count.
        let later = budget.snapshot_at(t0 + Duration::from_secs(11));
        assert_eq!(
            (later.deposits, later.withdrawals, later.balance),
            (0, 1, 0)
        );
        assert!(!budget.try_withdraw_at(t0 + Duration::from_secs(11)));
        let much_later = budget.snapshot_at(t0 + Duration::from_secs(1_000));
        assert_eq!((much_later.withdrawals, much_later.refused), (0, 1));
    }
}
