//! Cron expressions with a time zone: parsing, validation, next tick.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error("bad cron expression {expr:?}: {message}")]
    BadCron {
        /// As given.
        expr: String,
        /// What the parser said.
        message: String,
    },
    /// The time zone is not an IANA name.
    #[error("unknown time zone {0:?} (use an IANA name such as UTC or Europe/Paris)")]
    BadTimezone(String),
    /// The expression never fires again.
    #[error("cron expression {0:?} has no future tick")]
    NoFutureTick(String),
    /// The name is empty or too long.
    #[error("bad schedule name {0:?}: 1 to 200 characters of letters, digits, '.', '_', '-', ':'")]
    BadName(String),
}

/// A parsed cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    schedule: cron::Schedule,
    tz: Tz,
}

impl CronSchedule {
    /// Parses `expr` in `timezone`. Five fields (`min hour dom month dow`)
    /// are read as standard cron (second 0); six or seven fields start with
    /// seconds (and end with an optional year). Names (`MON`, `JAN`) and
    /// `@hourly`-style shortcuts are accepted.
    ///
    /// # Errors
    /// [`ScheduleError::BadCron`], [`ScheduleError::BadTimezone`], or
    /// [`ScheduleError::NoFutureTick`].
    pub fn parse(expr: &str, timezone: &str) -> Result<CronSchedule, ScheduleError> {
        let tz = Tz::from_str(timezone.trim())
            .map_err(|_| ScheduleError::BadTimezone(timezone.to_owned()))?;
        let normalised = normalize(expr);
        let schedule =
            cron::Schedule::from_str(&normalised).map_err(|e| ScheduleError::BadCron {
                expr: expr.to_owned(),
                message: e.to_string(),
            })?;
        let parsed = CronSchedule { schedule, tz };
        if parsed.next_after(Utc::now()).is_none() {
            return Err(ScheduleError::NoFutureTick(expr.to_owned()));
        }
        Ok(parsed)
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule
            .after(&after.with_timezone(&self.tz))
            .next()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// `expr` in the seconds-first form the `cron` crate reads (and brokers
/// store): a five-field standard expression gets second 0 in front; other
/// forms are only trimmed.
pub fn normalize(expr: &str) -> String {
    let trimmed = expr.trim();
    if !trimmed.starts_with('@') && trimmed.split_whitespace().count() == 5 {
        format!("0 {trimmed}")
    } else {
        trimmed.to_owned()
    }
}

/// Checks a schedule name.
///
/// # Errors
/// [`ScheduleError::BadName`].
pub fn validate_name(name: &str) -> Result<(), ScheduleError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    if ok {
        Ok(())
    } else {
        Err(ScheduleError::BadName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn five_fields_are_standard_cron() {
        let s = CronSchedule::parse("*/5 * * * *", "UTC").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 10, 2, 0).unwrap();
        assert_eq!(
            s.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 10, 5, 0).unwrap())
        );
    }

    #[test]
    fn time_zone_is_honoured_across_dst() {
        // 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
        let s = CronSchedule::parse("0 9 * * *", "Europe/Paris").unwrap();
        let winter = Utc.with_ymd_and_hms(2026, 1, 10, 0, 0, 0).unwrap();
        assert_eq!(
            s.next_after(winter),
            Some(Utc.with_ymd_and_hms(2026, 1, 10, 8, 0, 0).unwrap())
        );
        let summer = Utc.with_ymd_and_hms(2026, 7, 10, 0, 0, 0).unwrap();
        assert_eq!(
            s.next_after(summer),
            Some(Utc.with_ymd_and_hms(2026, 7, 10, 7, 0, 0).unwrap())
        );
    }

    #[test]
    fn seconds_field_and_shortcuts() {
        let s = CronSchedule::parse("*/10 * * * * *", "UTC").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 1).unwrap();
        assert_eq!(
            s.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 10).unwrap())
        );
        assert!(CronSchedule::parse("@hourly", "UTC").is_ok());
    }

    #[test]
    fn bad_inputs_are_named() {
        assert!(matches!(
            CronSchedule::parse("61 * * * *", "UTC"),
            Err(ScheduleError::BadCron { .. })
        ));
        assert!(matches!(
            CronSchedule::parse("not cron", "UTC"),
            Err(ScheduleError::BadCron { .. })
        ));
        assert!(matches!(
            CronSchedule::parse("* * * * *", "Mars/Base"),
            Err(ScheduleError::BadTimezone(_))
        ));
        assert!(matches!(
            CronSchedule::parse("0 0 0 1 1 * 2001", "UTC"),
            Err(ScheduleError::NoFutureTick(_))
        ));
        assert!(validate_name("nightly-report").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("has space").is_err());
    }
}
