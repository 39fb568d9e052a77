//! When and how long to wait before another attempt.
//!
//! Interim: `surge_core::{Backoff, parse_retry_after, RetryBudget}` replace
//! these once the core primitives land (same behaviour: full jitter with a
//! cap; delta-seconds or HTTP-date).

use std::time::{Duration, SystemTime};

use rand::Rng;

/// Full jitter: rand(0, min(cap, base·2^(attempt-1))).
pub(crate) fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(30));
    let ceiling = exp.min(cap);
    if ceiling.is_zero() {
        return Duration::ZERO;
    }
    let nanos = rand::rng().random_range(0..=ceiling.as_nanos().min(u64::MAX as u128) as u64);
    Duration::from_nanos(nanos)
}

/// A `Retry-After` value: delta-seconds or an HTTP-date.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_ceiling() {
        let (base, cap) = (Duration::from_millis(100), Duration::from_secs(1));
        for attempt in 1..20 {
            let ceiling = (base * 2u32.pow((attempt - 1).min(20))).min(cap);
            for _ in 0..50 {
                assert!(backoff(base, cap, attempt) <= ceiling);
            }
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
