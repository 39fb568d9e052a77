//! [`CrawlConfig`]: everything a crawl is built from, validated once.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::CrawlError;

/// Which URLs belong to the crawl.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ScopeConfig {
    /// Only the hosts of the start URLs.
    pub same_host: bool,
    /// With `same_host`: subdomains of the start hosts too.
    pub subdomains: bool,
    /// Regexes: when any is given, a URL must match one.
    pub allow: Vec<String>,
    /// Regexes: a URL matching one is out.
    pub deny: Vec<String>,
}

impl Default for ScopeConfig {
    fn default() -> Self {
        ScopeConfig {
            same_host: true,
            subdomains: false,
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }
}

/// A crawl's settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CrawlConfig {
    /// Where the crawl starts (depth 0).
    pub start_urls: Vec<String>,
    /// Which URLs belong to the crawl.
    pub scope: ScopeConfig,
    /// Deepest depth crawled (start pages are depth 0).
    pub max_depth: Option<u32>,
    /// Page budget: records written, across all workers.
    pub max_pages: Option<u64>,
    /// Time budget.
    #[serde(with = "opt_secs")]
    pub max_duration: Option<Duration>,
    /// This process's fetches in flight.
    pub concurrency: usize,
    /// Fetches in flight to one host.
    pub per_host: usize,
    /// Least time between two request starts to one host.
    #[serde(with = "secs")]
    pub min_delay: Duration,
    /// The `User-Agent` sent and matched against robots.txt groups.
    pub user_agent: String,
    /// Obey robots.txt.
    pub respect_robots: bool,
    /// Discover URLs from sitemaps.
    pub sitemaps: bool,
    /// Include each page's outlinks in its record.
    pub outlinks: bool,
    /// Query parameters removed before dedup (`utm_*` globs allowed).
    pub strip_query: Vec<String>,
    /// Largest body read; larger pages get a record with a validation error.
    pub max_body_bytes: u64,
    /// Time one request may take.
    #[serde(with = "secs")]
    pub timeout: Duration,
    /// Retries of a failed fetch (where a retry may help).
    pub max_retries: u32,
    /// Private, loopback and link-local addresses may be crawled.
    pub allow_private: bool,
}

impl Default for CrawlConfig {
    fn default() -> Self {
        CrawlConfig {
            start_urls: Vec::new(),
            scope: ScopeConfig::default(),
            max_depth: None,
            max_pages: None,
            max_duration: None,
            concurrency: 64,
            per_host: 8,
            min_delay: Duration::ZERO,
            user_agent: default_user_agent(),
            respect_robots: true,
            sitemaps: false,
            outlinks: false,
            strip_query: Vec::new(),
            max_body_bytes: 10 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            max_retries: 2,
            allow_private: false,
        }
    }
}

/// `surge-crawler/<version>`.
pub fn default_user_agent() -> String {
    concat!("surge-crawler/", env!("CARGO_PKG_VERSION")).to_owned()
}

impl CrawlConfig {
    /// Checks every setting.
    ///
    /// # Errors
    /// [`CrawlError::Config`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), CrawlError> {
        let bad = |m: String| Err(CrawlError::Config(m));
        if self.start_urls.is_empty() {
            return bad("start_urls: at least one start URL is needed".into());
        }
        if self.concurrency == 0 {
            return bad("concurrency: must be at least 1".into());
        }
        if self.per_host == 0 {
            return bad("per_host: must be at least 1".into());
        }
        if self.user_agent.trim().is_empty() {
            return bad("user_agent: must not be empty".into());
        }
        if self.max_body_bytes == 0 {
            return bad("max_body_bytes: must be at least 1".into());
        }
        if self.timeout.is_zero() {
            return bad("timeout: must be more than 0".into());
        }
        for (field, list) in [
            ("scope.allow", &self.scope.allow),
            ("scope.deny", &self.scope.deny),
        ] {
            for re in list {
                if let Err(e) = regex::Regex::new(re) {
                    return bad(format!("{field}: {re:?} is not a valid regex: {e}"));
                }
            }
        }
        Ok(())
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|v| Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_round_trip_with_seconds() {
        let c = CrawlConfig {
            start_urls: vec!["http://a.test/".into()],
            max_duration: Some(Duration::from_millis(1500)),
            min_delay: Duration::from_millis(250),
            ..CrawlConfig::default()
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["max_duration"], 1.5);
        assert_eq!(v["min_delay"], 0.25);
        let back: CrawlConfig = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn validate_names_the_bad_setting() {
        let c = CrawlConfig::default();
        assert!(c.validate().unwrap_err().to_string().contains("start_urls"));
        let c = CrawlConfig {
            start_urls: vec!["http://a.test/".into()],
            scope: ScopeConfig {
                deny: vec!["(".into()],
                ..ScopeConfig::default()
            },
            ..CrawlConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("scope.deny"));
    }
}
