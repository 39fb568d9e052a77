//! The engine: [`Fetcher`].
//!
//! One fetch is: parse the URL → for each attempt (at most 1 +
//! `max_retries`, retrying only errors a retry may fix) → for each redirect
//! hop (at most `max_redirects`): check the target against the address
//! policy, wait for the host's turn (its `Retry-After` and rate), take one
//! of the host's slots, then a global slot, send, read the body into its
//! sink. Slots are held for the hop's whole exchange, body included, so
//! the limits count real load on the peer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_timeout::TimeoutConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Serialize;
use surge_core::backoff::{Backoff, RetryBudget, parse_retry_after};
use surge_core::cache::{Cache, CacheSnapshot};
use surge_core::limit::{AdaptiveLimiter, Limiter, LimiterSnapshot, Outcome, StaticLimiter};
use surge_core::observe::Observatory;
use tokio::time::Instant;
use tower::ServiceExt;
use tower_http::decompression::Decompression;
use url::{Host, Url};

use crate::body::{self, BodyOutput, BodySink};
use crate::config::{ConfigError, FetchConfig};
use crate::dns::{DnsCache, DnsStats};
use crate::error::{FetchError, FetchErrorKind, classify};
use crate::hosts::{HostStats, HostTable};
use crate::request::{FetchRequest, Fetched};
use crate::ssrf::non_public_reason;

type HttpClient = Client<TimeoutConnector<HttpsConnector<HttpConnector<DnsCache>>>, Full<Bytes>>;

/// Redirect bodies up to this size are read (so the connection is reused);
/// larger ones are dropped with their connection.
const REDIRECT_BODY_MAX: u64 = 64 * 1024;

/// The outbound HTTP engine. Cheap to clone (one pool, one set of limits
/// shared by the clones).
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

struct Inner {
    config: FetchConfig,
    default_headers: HeaderMap,
    client: Decompression<HttpClient>,
    dns: DnsCache,
    hosts: Arc<HostTable>,
    global: Arc<dyn Limiter>,
    backoff: Backoff,
    budget: RetryBudget,
    responses: Option<Cache<String, Arc<Fetched>>>,
    registered: std::sync::Mutex<Vec<Box<dyn std::any::Any + Send + Sync>>>,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    fetches: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
    budget_refused: AtomicU64,
    redirects: AtomicU64,
    in_flight: AtomicUsize,
}

/// What a [`Fetcher`] has done so far.
#[derive(Debug, Clone, Serialize)]
pub struct EngineStats {
    /// Fetches started.
    pub fetches: u64,
    /// HTTP requests sent (attempts and redirect hops).
    pub requests: u64,
    /// Retries made.
    pub retries: u64,
    /// Retries the retry budget refused.
    pub budget_refused: u64,
    /// Redirects followed.
    pub redirects: u64,
    /// Requests in flight now.
    pub in_flight: usize,
    /// The DNS cache.
    pub dns: DnsStats,
    /// The per-host state.
    pub hosts: HostStats,
    /// The global limiter.
    pub limiter: LimiterSnapshot,
    /// The response cache, if on.
    pub responses: Option<CacheSnapshot>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Fetcher {
    /// A fetcher with `config`.
    ///
    /// # Errors
    /// [`ConfigError`] naming a setting that cannot work.
    pub fn new(config: FetchConfig) -> Result<Fetcher, ConfigError> {
        config.validate()?;
        let dns = DnsCache::new(config.dns_ttl, 100_000, config.address_policy.clone());
        let mut http = HttpConnector::new_with_resolver(dns.clone());
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError {
            field: "tls",
            message: e.to_string(),
        })?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        // The idle-read timeout lives on the connection: it covers the wait
        // for the answer's head and every read of its body, and a write (a
        // new request on a pooled connection) restarts it. The connect
        // timeout here covers TCP and TLS together.
        let mut https = TimeoutConnector::new(https);
        https.set_connect_timeout(Some(config.connect_timeout));
        https.set_read_timeout(Some(config.read_timeout));
        https.set_reset_reader_on_write(true);
        let client: HttpClient = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(config.per_host)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(config.http2_prior_knowledge)
            .build(https);
        let mut client = Decompression::new(client);
        if !config.decompress {
            client = client.no_gzip().no_br().no_deflate();
        }
        let mut default_headers = config.default_headers.clone();
        if !default_headers.contains_key(header::USER_AGENT) {
            let ua = HeaderValue::from_str(&config.user_agent).map_err(|_| ConfigError {
                field: "user_agent",
                message: "must be a valid header value".into(),
            })?;
            default_headers.insert(header::USER_AGENT, ua);
        }
        let global: Arc<dyn Limiter> = match &config.adaptive {
            None => Arc::new(StaticLimiter::new(config.concurrency)),
            Some(a) => {
                let mut a = a.clone();
                a.max = config.concurrency;
                a.initial = a.initial.clamp(a.min.max(1), config.concurrency);
                Arc::new(AdaptiveLimiter::try_new(a).map_err(|e| ConfigError {
                    field: "adaptive",
                    message: e.to_string(),
                })?)
            }
        };
        let responses = config.response_cache.map(|rc| {
            Cache::builder("fetch.responses")
                .max_weight(rc.max_bytes, |url: &String, f: &Arc<Fetched>| {
                    let body = match &f.body {
                        BodyOutput::Bytes(b) => b.len(),
                        _ => 0,
                    };
                    let headers: usize = f
                        .headers
                        .iter()
                        .map(|(k, v)| k.as_str().len() + v.len())
                        .sum();
                    u32::try_from(url.len() + body + headers + 256).unwrap_or(u32::MAX)
                })
                .ttl(rc.ttl)
                .build()
        });
        Ok(Fetcher {
            inner: Arc::new(Inner {
                hosts: Arc::new(HostTable::new(config.per_host, config.per_host_rate)),
                global,
                backoff: Backoff::new(config.backoff_base, config.backoff_cap),
                budget: RetryBudget::new(config.retry_budget),
                responses,
                registered: std::sync::Mutex::new(Vec::new()),
                default_headers,
                client,
                dns,
                config,
                counters: Counters::default(),
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &FetchConfig {
        &self.inner.config
    }

    /// What it has done so far.
    pub fn stats(&self) -> EngineStats {
        let c = &self.inner.counters;
        EngineStats {
            fetches: c.fetches.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            budget_refused: c.budget_refused.load(Ordering::Relaxed),
            redirects: c.redirects.load(Ordering::Relaxed),
            in_flight: c.in_flight.load(Ordering::Relaxed),
            dns: self.inner.dns.stats(),
            hosts: self.inner.hosts.stats(),
            limiter: self.inner.global.snapshot(),
            responses: self.inner.responses.as_ref().map(Cache::snapshot),
        }
    }

    /// The global limiter (static, or adaptive with its current limit and
    /// latency estimates in its snapshot).
    pub fn limiter(&self) -> &Arc<dyn Limiter> {
        &self.inner.global
    }

    /// Lists this fetcher's global limiter, DNS cache and response cache in
    /// `observatory` as `{name}.limit`, `{name}.dns`, `{name}.responses`,
    /// for as long as the fetcher lives.
    pub fn register(&self, observatory: &Observatory, name: &str) {
        observatory.register_limiter(format!("{name}.limit"), &self.inner.global);
        let dns = Arc::new(self.inner.dns.cache().clone());
        observatory.register_cache(format!("{name}.dns"), &dns);
        // The observatory holds weak references: keep the handles alive
        // with the fetcher.
        let mut keep = self.inner.registered.lock().expect("registered poisoned");
        keep.push(Box::new(dns));
        if let Some(r) = &self.inner.responses {
            let r = Arc::new(r.clone());
            observatory.register_cache(format!("{name}.responses"), &r);
            keep.push(Box::new(r));
        }
    }

    /// The per-host state (for inspection; entries of idle hosts are
    /// removed as they go idle).
    pub fn hosts(&self) -> &HostTable {
        &self.inner.hosts
    }

    /// Fetches `request`, retrying what a retry may fix. Never panics on
    /// bad input: an invalid URL is a [`FetchErrorKind::InvalidUrl`] error
    /// in the result.
    pub async fn fetch(&self, request: FetchRequest) -> Fetched {
        let cacheable = request.method == Method::GET
            && request.body.is_empty()
            && !matches!(request.sink, BodySink::File(_));
        let Some(cache) = self.inner.responses.as_ref().filter(|_| cacheable) else {
            return self.fetch_uncached(request).await;
        };
        let start = Instant::now();
        let key = request.url.clone();
        // Single flight: concurrent fetches of one URL make one request;
        // only successes are kept.
        let shared = cache
            .get_or_compute(key, async {
                let f = self.fetch_uncached(request.clone()).await;
                if f.is_ok() { Ok(Arc::new(f)) } else { Err(f) }
            })
            .await;
        let mut fetched = match shared {
            Ok(f) => (*f).clone(),
            Err(f) => (*f).clone(),
        };
        fetched.elapsed = start.elapsed();
        fetched
    }

    async fn fetch_uncached(&self, request: FetchRequest) -> Fetched {
        let inner = &self.inner;
        let config = &inner.config;
        inner.counters.fetches.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let mut out = Fetched {
            url: request.url.clone(),
            ..Fetched::default()
        };
        let url = match self.parse_url(&request.url) {
            Ok(url) => url,
            Err(e) => {
                out.error = Some(e);
                out.elapsed = start.elapsed();
                return out;
            }
        };
        inner.budget.deposit();
        loop {
            out.attempts += 1;
            let (result, retry_after) = self.attempt(&request, url.clone(), &mut out).await;
            let error = match result {
                Ok(()) => {
                    out.error = None;
                    break;
                }
                Err(e) => e,
            };
            if !error.retryable() || out.attempts > config.max_retries {
                out.error = Some(error);
                break;
            }
            let mut wait = inner.backoff.delay(out.attempts);
            if let Some(ra) = retry_after {
                if ra > config.max_retry_after {
                    let message = format!(
                        "{} (Retry-After {} s is beyond the {} s this fetcher waits)",
                        error.message(),
                        ra.as_secs(),
                        config.max_retry_after.as_secs()
                    );
                    out.error = Some(FetchError::new(error.kind(), message).with_retryable(true));
                    break;
                }
                wait = wait.max(ra);
            }
            if !inner.budget.try_withdraw() {
                inner
                    .counters
                    .budget_refused
                    .fetch_add(1, Ordering::Relaxed);
                let message = format!(
                    "{} (not retried: the retry budget is spent)",
                    error.message()
                );
                out.error = Some(FetchError::new(error.kind(), message).with_retryable(true));
                break;
            }
            inner.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
        out.elapsed = start.elapsed();
        out
    }

    fn parse_url(&self, text: &str) -> Result<Url, FetchError> {
        let parsed = match &self.inner.config.base_url {
            Some(base) => base.join(text),
            None => Url::parse(text),
        };
        let url = parsed.map_err(|e| {
            FetchError::new(
                FetchErrorKind::InvalidUrl,
                format!("invalid URL {text:?}: {e}"),
            )
        })?;
        check_scheme_and_host(&url).map_err(|m| FetchError::new(FetchErrorKind::InvalidUrl, m))?;
        Ok(url)
    }

    /// Refuses an IP-literal host the policy forbids (names are checked by
    /// the resolver, after resolution).
    fn check_literal(&self, url: &Url) -> Result<(), FetchError> {
        let ip = match url.host() {
            Some(Host::Ipv4(ip)) => std::net::IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => std::net::IpAddr::V6(ip),
            _ => return Ok(()),
        };
        if self.inner.config.address_policy.refuses(ip) {
            return Err(FetchError::new(
                FetchErrorKind::AddressRefused,
                format!(
                    "{ip} is a {} address, which this fetcher may not reach",
                    non_public_reason(ip).unwrap_or("refused")
                ),
            ));
        }
        Ok(())
    }

    /// One attempt, redirects included: fills `out` with the last answer's
    /// facts; the error and the `Retry-After` the peer asked for.
    async fn attempt(
        &self,
        request: &FetchRequest,
        mut url: Url,
        out: &mut Fetched,
    ) -> (Result<(), FetchError>, Option<Duration>) {
        let inner = &self.inner;
        let config = &inner.config;
        let mut method = request.method.clone();
        let mut body = request.body.clone();
        let mut headers = inner.default_headers.clone();
        for (name, value) in &request.headers {
            headers.insert(name, value.clone());
        }
        out.redirects = 0;
        out.status = None;
        out.bytes = 0;
        out.content_type = None;
        out.headers = HeaderMap::new();
        out.body = BodyOutput::None;
        loop {
            out.final_url = Some(url.to_string());
            if let Err(e) = self.check_literal(&url) {
                return (Err(e), None);
            }
            let host = inner.hosts.enter(&host_key(&url));
            host.wait_turn().await;
            let _host_slot = host.slot().await;
            let global_token = inner.global.acquire().await;
            let hop = 'hop: {
                let _in_flight = InFlight::enter(&inner.counters.in_flight);
                inner.counters.requests.fetch_add(1, Ordering::Relaxed);

                let deadline = Instant::now() + config.request_timeout;
                let http_request = match build_request(&method, &url, &headers, &body) {
                    Ok(r) => r,
                    Err(e) => break 'hop Hop::Done(Err(e), None),
                };
                let sent = inner.client.clone().oneshot(http_request);
                let response = match tokio::time::timeout_at(deadline, sent).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => break 'hop Hop::Done(Err(classify(&e)), None),
                    Err(_) => {
                        break 'hop Hop::Done(Err(timeout_error(config.request_timeout)), None);
                    }
                };
                let status = response.status();
                let (parts, response_body) = response.into_parts();
                out.status = Some(status.as_u16());
                out.content_type = parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);

                if status.is_redirection() && parts.headers.contains_key(header::LOCATION) {
                    let next = match redirect_target(&url, &parts.headers) {
                        Ok(next) => next,
                        Err(e) => break 'hop Hop::Done(Err(e), None),
                    };
                    // Drain a small body so the connection goes back to the pool.
                    let drained = tokio::time::timeout_at(
                        deadline,
                        body::read(
                            response_body,
                            &BodySink::Discard,
                            REDIRECT_BODY_MAX,
                            config.read_timeout,
                        ),
                    )
                    .await;
                    drop(drained);
                    out.headers = parts.headers;
                    if out.redirects >= config.max_redirects {
                        break 'hop Hop::Done(
                            Err(FetchError::new(
                                FetchErrorKind::TooManyRedirects,
                                format!(
                                    "more than {} redirects (last: {next})",
                                    config.max_redirects
                                ),
                            )),
                            None,
                        );
                    }
                    out.redirects += 1;
                    inner.counters.redirects.fetch_add(1, Ordering::Relaxed);
                    if status == StatusCode::SEE_OTHER && method != Method::HEAD
                        || matches!(status.as_u16(), 301 | 302) && method == Method::POST
                    {
                        method = Method::GET;
                        body = Bytes::new();
                        headers.remove(header::CONTENT_TYPE);
                        headers.remove(header::CONTENT_LENGTH);
                    }
                    if next.origin() != url.origin() {
                        // Credentials are for the origin they were given to.
                        headers.remove(header::AUTHORIZATION);
                        headers.remove(header::COOKIE);
                        headers.remove(header::PROXY_AUTHORIZATION);
                    }
                    url = next;
                    break 'hop Hop::Redirect;
                }

                let retry_after = if matches!(status.as_u16(), 429 | 503) {
                    let ra = parts
                        .headers
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    if let Some(d) = ra {
                        host.defer(d.min(config.max_retry_after));
                    }
                    ra
                } else {
                    None
                };
                out.headers = parts.headers;
                let failed = status.is_client_error() || status.is_server_error();
                // An error answer's body is counted, not kept.
                let sink = if failed {
                    &BodySink::Discard
                } else {
                    &request.sink
                };
                let read = tokio::time::timeout_at(
                    deadline,
                    body::read(
                        response_body,
                        sink,
                        request.max_body_bytes.unwrap_or(config.max_body_bytes),
                        config.read_timeout,
                    ),
                )
                .await;
                match read {
                    Err(_) => {
                        break 'hop Hop::Done(
                            Err(timeout_error(config.request_timeout)),
                            retry_after,
                        );
                    }
                    Ok(Err(e)) => break 'hop Hop::Done(Err(e), retry_after),
                    Ok(Ok((len, output))) => {
                        out.bytes = len;
                        out.body = output;
                    }
                }
                if failed {
                    break 'hop Hop::Done(Err(FetchError::status(status.as_u16())), retry_after);
                }
                break 'hop Hop::Done(Ok(()), None);
            };
            global_token.record(outcome(&hop, out.status));
            match hop {
                Hop::Done(result, retry_after) => return (result, retry_after),
                Hop::Redirect => continue,
            }
        }
    }
}

/// How one hop ended.
enum Hop {
    /// The attempt is over: its result and the `Retry-After` asked for.
    Done(Result<(), FetchError>, Option<Duration>),
    /// Follow `url` (already updated).
    Redirect,
}

/// What the limiter learns from a hop: an answer is a latency sample, 429,
/// 503 and timeouts say "too much", the rest (refused connections, our own
/// refusals, bad bodies) says nothing about the peer's load.
fn outcome(hop: &Hop, status: Option<u16>) -> Outcome {
    match hop {
        Hop::Redirect | Hop::Done(Ok(()), _) => Outcome::Success,
        Hop::Done(Err(e), _) => match e.kind() {
            FetchErrorKind::Status if matches!(status, Some(429 | 503)) => Outcome::Overload,
            FetchErrorKind::Status => Outcome::Success,
            FetchErrorKind::Timeout
            | FetchErrorKind::ReadTimeout
            | FetchErrorKind::ConnectTimeout => Outcome::Overload,
            _ => Outcome::Ignore,
        },
    }
}

/// Counts a request in flight while alive.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize) -> InFlight<'a> {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn timeout_error(limit: Duration) -> FetchError {
    FetchError::new(
        FetchErrorKind::Timeout,
        format!("the request took longer than {} ms", limit.as_millis()),
    )
}

fn check_scheme_and_host(url: &Url) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "unsupported scheme {:?} in {url} (http or https only)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("no host in {url}"));
    }
    Ok(())
}

/// The per-host key: `host:port`.
fn host_key(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    let port = url.port_or_known_default().unwrap_or(0);
    format!("{host}:{port}")
}

fn redirect_target(from: &Url, headers: &HeaderMap) -> Result<Url, FetchError> {
    let bad = |m: String| FetchError::new(FetchErrorKind::BadRedirect, m);
    let location = headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| bad("redirect with a Location that is not text".into()))?;
    let next = from
        .join(location)
        .map_err(|e| bad(format!("redirect to an invalid URL {location:?}: {e}")))?;
    check_scheme_and_host(&next).map_err(|m| bad(format!("redirect refused: {m}")))?;
    Ok(next)
}

fn build_request(
    method: &Method,
    url: &Url,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Request<Full<Bytes>>, FetchError> {
    let uri: http::Uri = url.as_str().parse().map_err(|e| {
        FetchError::new(
            FetchErrorKind::InvalidUrl,
            format!("invalid URL {url}: {e}"),
        )
    })?;
    let mut request = Request::builder()
        .method(method.clone())
        .uri(uri)
        .body(Full::new(body.clone()))
        .map_err(|e| FetchError::new(FetchErrorKind::InvalidRequest, e.to_string()))?;
    *request.headers_mut() = headers.clone();
    Ok(request)
}
