//! The engine's settings, validated once by [`FetchConfig::validate`].

use std::time::Duration;

use http::HeaderMap;
use url::Url;

use surge_core::backoff::RetryBudgetConfig;
use surge_core::limit::AdaptiveConfig;

use crate::ssrf::AddressPolicy;

/// Everything a [`Fetcher`](crate::Fetcher) is built from.
///
/// The limits, in numbers: at most `concurrency` requests are in flight in
/// all, at most `per_host` of them to one host (`host:port`), and a host
/// sees at most `per_host_rate` request starts per second. A request waits
/// for its host's turn first and for a global slot second, so a busy host
/// never holds global slots while it waits.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Requests in flight at once, in all (with `adaptive`: the most the
    /// adaptive limit may reach).
    pub concurrency: usize,
    /// Make the global limit adaptive (gradient or Vegas on latency, cut on
    /// 429, 503 and timeouts), between `min` and `concurrency`. `None`: a
    /// static limit of `concurrency`.
    pub adaptive: Option<AdaptiveConfig>,
    /// Requests in flight at once to one host.
    pub per_host: usize,
    /// Make each host's limit adaptive (as `adaptive`, per host), never
    /// above `per_host`: a host that slows down or answers 429 / 503 gets
    /// fewer requests at once, and more again when it recovers. Learnt
    /// afresh for a host that comes back after being idle. `None`: a static
    /// limit of `per_host`.
    pub per_host_adaptive: Option<AdaptiveConfig>,
    /// Request starts per second per host (`None`: no rate).
    pub per_host_rate: Option<f64>,
    /// Time to establish a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time one attempt may take, from its send to its body's last byte
    /// (per redirect hop; waiting for a slot is not counted).
    pub request_timeout: Duration,
    /// Longest silence while waiting for the answer or reading the body.
    pub read_timeout: Duration,
    /// Retries after the first attempt, for errors a retry may fix.
    pub max_retries: u32,
    /// First backoff (full jitter: a retry waits rand(0, min(cap, base·2ⁿ⁻¹))).
    pub backoff_base: Duration,
    /// Largest backoff.
    pub backoff_cap: Duration,
    /// A `Retry-After` longer than this is not waited for: the error is
    /// returned instead.
    pub max_retry_after: Duration,
    /// Retries allowed as a share of recent requests (plus a floor per
    /// second), so retries cannot multiply the load on a failing peer.
    pub retry_budget: RetryBudgetConfig,
    /// Keep successful GET answers for reuse (`None`: no response cache).
    pub response_cache: Option<ResponseCacheConfig>,
    /// Redirects followed at most.
    pub max_redirects: u32,
    /// Largest body, after decompression.
    pub max_body_bytes: u64,
    /// Which addresses may be reached.
    pub address_policy: AddressPolicy,
    /// How long a resolved name is kept.
    pub dns_ttl: Duration,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// Headers sent on every request (a request's own win).
    pub default_headers: HeaderMap,
    /// Relative URLs are joined to this.
    pub base_url: Option<Url>,
    /// Speak HTTP/2 to `http://` URLs without negotiation (h2c). Over TLS,
    /// HTTP/2 is negotiated by ALPN whatever this says.
    pub http2_prior_knowledge: bool,
    /// Ask for and decode gzip, brotli and deflate bodies.
    pub decompress: bool,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            concurrency: 100,
            adaptive: None,
            retry_budget: RetryBudgetConfig::default(),
            response_cache: None,
            per_host: 100,
            per_host_adaptive: None,
            per_host_rate: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(30),
            max_retries: 2,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            max_redirects: 10,
            max_body_bytes: 16 * 1024 * 1024,
            address_policy: AddressPolicy::allow_all(),
            dns_ttl: Duration::from_secs(60),
            user_agent: concat!("surge/", env!("CARGO_PKG_VERSION")).to_owned(),
            default_headers: HeaderMap::new(),
            base_url: None,
            http2_prior_knowledge: false,
            decompress: true,
        }
    }
}

/// The optional response cache: successful GET answers by URL, kept for
/// `ttl`, at most `max_bytes` of bodies and headers in all. Concurrent
/// fetches of one URL make one request (single flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseCacheConfig {
    /// How long an answer is reused.
    pub ttl: Duration,
    /// Size bound (bodies kept in memory count in full).
    pub max_bytes: u64,
}

/// A setting that cannot work, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// The setting.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl FetchConfig {
    /// Checks every setting.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, message: &str| {
            Err(ConfigError {
                field,
                message: message.to_owned(),
            })
        };
        if self.concurrency == 0 {
            return bad("concurrency", "must be at least 1");
        }
        if self.per_host == 0 {
            return bad("per_host", "must be at least 1");
        }
        if let Some(r) = self.per_host_rate
            && !(r.is_finite() && r > 0.0)
        {
            return bad(
                "per_host_rate",
                "must be a positive number of requests per second",
            );
        }
        for (field, d) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("read_timeout", self.read_timeout),
        ] {
            if d.is_zero() {
                return bad(field, "must be longer than zero");
            }
        }
        if self.backoff_cap < self.backoff_base {
            return bad("backoff_cap", "must not be shorter than backoff_base");
        }
        if let Some(a) = &self.adaptive {
            let mut a = a.clone();
            a.max = self.concurrency;
            a.initial = a.initial.clamp(a.min.max(1), self.concurrency);
            if let Err(e) = a.validate() {
                return Err(ConfigError {
                    field: "adaptive",
                    message: e.to_string(),
                });
            }
        }
        if let Some(a) = &self.per_host_adaptive
            && let Err(e) = crate::hosts::per_host_adaptive(a.clone(), self.per_host).validate()
        {
            return Err(ConfigError {
                field: "per_host_adaptive",
                message: e.to_string(),
            });
        }
        if self.max_retries > 100 {
            return bad("max_retries", "must be at most 100");
        }
        if http::HeaderValue::from_str(&self.user_agent).is_err() {
            return bad("user_agent", "must be a valid header value");
        }
        if let Some(base) = &self.base_url
            && !matches!(base.scheme(), "http" | "https")
        {
            return bad("base_url", "must be an http:// or https:// URL");
        }
        Ok(())
    }
}
