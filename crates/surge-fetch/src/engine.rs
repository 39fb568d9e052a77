//! The engine: [`Fetcher`].
//!
//! One fetch is: parse the URL → for each attempt (at most 1 +
//! `max_retries`, retrying only errors a retry may fix) → for each redirect
//! hop (at most `max_redirects`): check the target against the address
//! policy, wait for the host's turn (its `Retry-After` and rate), take one
//! of the host's slots, then a global slot, send, read the body into its
//! sink. Slots are held for the hop's whole exchange, body included, so
//! the limits count real load on the peer.
//!
//! Two transports: plain `http://` goes over HTTP/1.1 on the engine's own
//! pool (`pool.rs`): no task per connection, the request
//! drives its connection, one timer covers the wait for the answer's head
//! (the idle-read timeout or the request's deadline, whichever comes
//! first). HTTPS (HTTP/1.1 or HTTP/2 by ALPN) and h2c by prior knowledge go
//! through hyper-util's pooled client, whose connector resolves through
//! the same DNS cache and address policy. Both decode bodies with the same
//! decompression layer.
//!
//! The per-request path is kept lean for batch speed: the URL is parsed
//! once per fetch (origins cached, `urls.rs`), headers are
//! merged once per fetch, the future of a fetch stays small (rare paths —
//! the response cache, a new connection, a resend, hyper-util's client —
//! are boxed) so that moving it costs little.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
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
use tower_http::decompression::{Decompression, DecompressionBody};
use url::{Host, Position, Url};

use crate::body::{self, BodyOutput, BodySink};
use crate::config::{ConfigError, FetchConfig};
use crate::dns::{DnsCache, DnsStats};
use crate::error::{FetchError, FetchErrorKind, classify};
use crate::hosts::{HostStats, HostTable};
use crate::pool::{Conn, DrivenBody, Pool, PoolConfig, SendError, SendOn};
use crate::request::{FetchRequest, Fetched};
use crate::ssrf::non_public_reason;
use crate::urls::UrlParser;

type HttpClient = Client<TimeoutConnector<HttpsConnector<HttpConnector<DnsCache>>>, Full<Bytes>>;

/// Redirect bodies up to this size are read (so the connection is reused);
/// larger ones are dropped with their connection.
const REDIRECT_BODY_MAX: u64 = 64 * 1024;

/// Idle keep-alive connections are closed after this.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The outbound HTTP engine. Cheap to clone (one pool, one set of limits
/// shared by the clones).
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

struct Inner {
    config: FetchConfig,
    default_headers: HeaderMap,
    /// HTTPS (HTTP/1.1 or HTTP/2 by ALPN) and h2c.
    client: Decompression<HttpClient>,
    /// Plain `http://` over HTTP/1.1.
    pool: Arc<Pool>,
    dns: DnsCache,
    hosts: Arc<HostTable>,
    global: Arc<dyn Limiter>,
    backoff: Backoff,
    budget: RetryBudget,
    responses: Option<Cache<String, Arc<Fetched>>>,
    urls: UrlParser,
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
    /// Idle keep-alive connections of the plain HTTP/1.1 pool now (HTTPS
    /// and h2c connections live in hyper-util's pool, not counted here).
    pub idle_connections: usize,
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
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
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
        if config.decompress && !default_headers.contains_key(header::ACCEPT_ENCODING) {
            // What the decompression layer would add to every request, set
            // once here.
            default_headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("gzip,deflate,br"),
            );
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
        let hosts = match &config.per_host_adaptive {
            None => HostTable::new(config.per_host, config.per_host_rate),
            Some(a) => HostTable::adaptive(config.per_host, config.per_host_rate, a.clone())
                .map_err(|e| ConfigError {
                    field: "per_host_adaptive",
                    message: e.to_string(),
                })?,
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
                hosts: Arc::new(hosts),
                global,
                backoff: Backoff::new(config.backoff_base, config.backoff_cap),
                budget: RetryBudget::new(config.retry_budget),
                responses,
                urls: UrlParser::default(),
                registered: std::sync::Mutex::new(Vec::new()),
                default_headers,
                client,
                pool: Pool::new(
                    PoolConfig {
                        max_idle_per_host: config.per_host,
                        idle_timeout: POOL_IDLE_TIMEOUT,
                        connect_timeout: config.connect_timeout,
                    },
                    dns.clone(),
                ),
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
            idle_connections: self.inner.pool.idle_count(),
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
        match self.inner.responses.as_ref().filter(|_| cacheable) {
            None => self.fetch_uncached(request).await,
            // Boxed: the cache's future is large, and the future of every
            // fetch would be as large.
            Some(cache) => Box::pin(self.fetch_cached(cache, request)).await,
        }
    }

    async fn fetch_cached(
        &self,
        cache: &Cache<String, Arc<Fetched>>,
        request: FetchRequest,
    ) -> Fetched {
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

    async fn fetch_uncached(&self, mut request: FetchRequest) -> Fetched {
        let inner = &self.inner;
        let config = &inner.config;
        inner.counters.fetches.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let parsed = self.parse_url(&request.url);
        let mut out = Fetched {
            url: std::mem::take(&mut request.url),
            ..Fetched::default()
        };
        let url = match parsed {
            Ok(url) => url,
            Err(e) => {
                out.error = Some(e);
                out.elapsed = start.elapsed();
                return out;
            }
        };
        let headers = if request.headers.is_empty() {
            Cow::Borrowed(&inner.default_headers)
        } else {
            let mut headers = inner.default_headers.clone();
            for (name, value) in &request.headers {
                headers.insert(name, value.clone());
            }
            Cow::Owned(headers)
        };
        inner.budget.deposit();
        loop {
            out.attempts += 1;
            let (result, retry_after) = self.attempt(&request, &url, &headers, &mut out).await;
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
        let parsed = self
            .inner
            .urls
            .parse(self.inner.config.base_url.as_ref(), text);
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
        first: &Url,
        base_headers: &HeaderMap,
        out: &mut Fetched,
    ) -> (Result<(), FetchError>, Option<Duration>) {
        let inner = &self.inner;
        let config = &inner.config;
        let mut method = request.method.clone();
        let mut body = request.body.clone();
        // Copied on the first redirect only.
        let mut redirected: Option<(Url, HeaderMap)> = None;
        out.redirects = 0;
        out.status = None;
        out.bytes = 0;
        out.content_type = None;
        out.headers = HeaderMap::new();
        out.body = BodyOutput::None;
        loop {
            let (url, headers) = match &redirected {
                Some((u, h)) => (u, h),
                None => (first, base_headers),
            };
            if let Err(e) = self.check_literal(url) {
                out.final_url = Some(url.to_string());
                return (Err(e), None);
            }
            let key = host_key(url);
            let host = inner.hosts.enter(&key);
            host.wait_turn().await;
            let host_slot = host.slot().await;
            let global_token = inner.global.acquire().await;
            let _in_flight = InFlight::enter(&inner.counters.in_flight);
            inner.counters.requests.fetch_add(1, Ordering::Relaxed);
            let deadline = Instant::now() + config.request_timeout;
            let pooled = url.scheme() == "http" && !config.http2_prior_knowledge;
            let sent = match build_request(&method, url, headers, &body, pooled) {
                Err(e) => Exchanged::Failed(e),
                Ok(http_request) if pooled => {
                    self.exchange_pooled(&key, url, http_request, deadline, request)
                        .await
                }
                Ok(http_request) => self.exchange(None, http_request, deadline, request).await.0,
            };
            let (parts, read) = match sent {
                Exchanged::Failed(e) => {
                    let o = outcome(&Err(e.clone()), None);
                    host_slot.record(o);
                    global_token.record(o);
                    out.final_url = Some(url.to_string());
                    return (Err(e), None);
                }
                Exchanged::NotSent(_) => unreachable!("exchange_pooled sends again"),
                Exchanged::Answered { parts, read } => (parts, read),
            };
            let status = parts.status;
            out.status = Some(status.as_u16());
            out.content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);

            if is_redirect(&parts) {
                let next = match redirect_target(url, &parts.headers) {
                    Ok(next) => next,
                    Err(e) => {
                        let result = Err(e);
                        let o = outcome(&result, out.status);
                        host_slot.record(o);
                        global_token.record(o);
                        out.final_url = Some(url.to_string());
                        return (result, None);
                    }
                };
                // A redirect body was drained (or not) for the
                // connection's sake only.
                drop(read);
                host_slot.record(Outcome::Success);
                global_token.record(Outcome::Success);
                out.headers = parts.headers;
                if out.redirects >= config.max_redirects {
                    out.final_url = Some(url.to_string());
                    return (
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
                let mut headers = headers.clone();
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
                redirected = Some((next, headers));
                continue;
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
            out.final_url = Some(match redirected {
                Some((u, _)) => u.into(),
                None => first.as_str().to_owned(),
            });
            let result = match read {
                Err(e) => Err(e),
                Ok((len, output)) => {
                    out.bytes = len;
                    out.body = output;
                    if status.is_client_error() || status.is_server_error() {
                        Err(FetchError::status(status.as_u16()))
                    } else {
                        Ok(())
                    }
                }
            };
            let o = outcome(&result, out.status);
            host_slot.record(o);
            global_token.record(o);
            return match result {
                Ok(()) => (Ok(()), None),
                Err(e) => (Err(e), retry_after),
            };
        }
    }

    /// One exchange on the plain HTTP/1.1 pool: a pooled connection (or a
    /// new one), sent again on a new connection if a reused one could not
    /// take it; the connection goes back to the pool if its answer was read
    /// to the end.
    async fn exchange_pooled(
        &self,
        key: &str,
        url: &Url,
        http_request: Request<Full<Bytes>>,
        deadline: Instant,
        request: &FetchRequest,
    ) -> Exchanged {
        let pool = &self.inner.pool;
        let (host, port) = host_and_port(url);
        let timeout = self.inner.config.request_timeout;
        let mut conn =
            match tokio::time::timeout_at(deadline, pool.checkout(key, host.clone(), port)).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => return Exchanged::Failed(e),
                Err(_) => return Exchanged::Failed(timeout_error(timeout)),
            };
        let (mut sent, mut reusable) = self
            .exchange(Some(&mut conn), http_request, deadline, request)
            .await;
        if let Exchanged::NotSent(again) = sent {
            if !conn.reused {
                return Exchanged::Failed(FetchError::new(
                    FetchErrorKind::Connection,
                    "the connection closed before the request was sent",
                ));
            }
            conn = match tokio::time::timeout_at(deadline, Box::pin(pool.connect(host, port))).await
            {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => return Exchanged::Failed(e),
                Err(_) => return Exchanged::Failed(timeout_error(timeout)),
            };
            (sent, reusable) =
                Box::pin(self.exchange(Some(&mut conn), *again, deadline, request)).await;
            if let Exchanged::NotSent(_) = sent {
                sent = Exchanged::Failed(FetchError::new(
                    FetchErrorKind::Connection,
                    "the connection closed before the request was sent",
                ));
            }
        }
        if reusable {
            pool.checkin(key, conn);
        }
        sent
    }

    /// Sends one request (on `conn`, or through hyper-util's client when
    /// `None`) and reads its answer's body into its sink: the request's
    /// own, or a discarding one for a redirect or an error status. Whether
    /// the body was read to the end (the connection may be reused).
    async fn exchange(
        &self,
        conn: Option<&mut Conn>,
        http_request: Request<Full<Bytes>>,
        deadline: Instant,
        request: &FetchRequest,
    ) -> (Exchanged, bool) {
        let config = &self.inner.config;
        let response: Response<AnswerBody<'_>> = match conn {
            Some(conn) => {
                // One timer for the answer's head: the idle-read timeout or
                // the whole-request deadline, whichever is first.
                let head_deadline = deadline.min(Instant::now() + config.read_timeout);
                let sent = tower::Service::call(&mut SendOn(Some(conn)), http_request);
                match tokio::time::timeout_at(head_deadline, sent).await {
                    // Only an encoded body goes through the decoder.
                    Ok(Ok(r))
                        if config.decompress
                            && r.headers().contains_key(header::CONTENT_ENCODING) =>
                    {
                        self.decode(r).map(AnswerBody::Decoded)
                    }
                    Ok(Ok(r)) => r.map(AnswerBody::Pooled),
                    Ok(Err(SendError::NotSent(again, _))) => {
                        return (Exchanged::NotSent(again), false);
                    }
                    Ok(Err(e)) => return (Exchanged::Failed(classify(&e)), false),
                    Err(_) if Instant::now() >= deadline => {
                        return (
                            Exchanged::Failed(timeout_error(config.request_timeout)),
                            false,
                        );
                    }
                    Err(_) => {
                        return (
                            Exchanged::Failed(FetchError::new(
                                FetchErrorKind::ReadTimeout,
                                format!("no answer for {} ms", config.read_timeout.as_millis()),
                            )),
                            false,
                        );
                    }
                }
            }
            None => {
                // Boxed: hyper-util's future is large, and this is not the
                // path of plain HTTP/1.1.
                let sent = Box::pin(self.inner.client.clone().oneshot(http_request));
                match tokio::time::timeout_at(deadline, sent).await {
                    Ok(Ok(r)) => r.map(AnswerBody::Client),
                    Ok(Err(e)) => return (Exchanged::Failed(classify(&e)), false),
                    Err(_) => {
                        return (
                            Exchanged::Failed(timeout_error(config.request_timeout)),
                            false,
                        );
                    }
                }
            }
        };
        let (parts, response_body) = response.into_parts();
        let max = request.max_body_bytes.unwrap_or(config.max_body_bytes);
        let (sink, max) = if is_redirect(&parts) {
            // Drained so the connection can be reused; a larger body is
            // dropped with its connection.
            (&BodySink::Discard, REDIRECT_BODY_MAX)
        } else if parts.status.is_client_error() || parts.status.is_server_error() {
            // An error answer's body is counted, not kept.
            (&BodySink::Discard, max)
        } else {
            (&request.sink, max)
        };
        let read = tokio::time::timeout_at(
            deadline,
            body::read(response_body, sink, max, config.read_timeout),
        )
        .await
        .unwrap_or_else(|_| Err(timeout_error(config.request_timeout)));
        let complete = read.is_ok();
        (Exchanged::Answered { parts, read }, complete)
    }

    /// `response` with its body decoded as the decompression layer does
    /// (the layer run on an answer already there).
    fn decode<B>(&self, response: Response<B>) -> Response<DecompressionBody<B>>
    where
        B: http_body::Body + Send,
    {
        let mut response = Some(response);
        let ready = tower::service_fn(move |_: Request<()>| {
            std::future::ready(Ok::<_, std::convert::Infallible>(
                response.take().expect("called once"),
            ))
        });
        match self
            .decompression(ready)
            .oneshot(Request::new(()))
            .now_or_never()
        {
            Some(Ok(decoded)) => decoded,
            Some(Err(never)) => match never {},
            None => unreachable!("the answer is ready"),
        }
    }

    fn decompression<S>(&self, service: S) -> Decompression<S> {
        let d = Decompression::new(service);
        if self.inner.config.decompress {
            d
        } else {
            d.no_gzip().no_br().no_deflate()
        }
    }
}

/// How one exchange went.
enum Exchanged {
    /// A reused connection could not take the request: send it again.
    NotSent(Box<Request<Full<Bytes>>>),
    /// No answer.
    Failed(FetchError),
    /// An answer: its head, and how reading its body went.
    Answered {
        parts: http::response::Parts,
        read: Result<(u64, BodyOutput), FetchError>,
    },
}

/// An answer's body, from either transport.
enum AnswerBody<'a> {
    /// Plain HTTP/1.1, not encoded.
    Pooled(DrivenBody<'a>),
    /// Plain HTTP/1.1, decoded.
    Decoded(DecompressionBody<DrivenBody<'a>>),
    /// hyper-util's client.
    Client(DecompressionBody<hyper::body::Incoming>),
}

impl http_body::Body for AnswerBody<'_> {
    type Data = Bytes;
    type Error = tower_http::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            AnswerBody::Pooled(b) => std::pin::Pin::new(b)
                .poll_frame(cx)
                .map_err(tower_http::BoxError::from),
            AnswerBody::Decoded(b) => std::pin::Pin::new(b).poll_frame(cx),
            AnswerBody::Client(b) => std::pin::Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AnswerBody::Pooled(b) => b.is_end_stream(),
            AnswerBody::Decoded(b) => b.is_end_stream(),
            AnswerBody::Client(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            AnswerBody::Pooled(b) => b.size_hint(),
            AnswerBody::Decoded(b) => b.size_hint(),
            AnswerBody::Client(b) => b.size_hint(),
        }
    }
}

fn is_redirect(parts: &http::response::Parts) -> bool {
    parts.status.is_redirection() && parts.headers.contains_key(header::LOCATION)
}

/// What the limiter learns from a hop: an answer is a latency sample, 429,
/// 503 and timeouts say "too much", the rest (refused connections, our own
/// refusals, bad bodies) says nothing about the peer's load.
fn outcome(result: &Result<(), FetchError>, status: Option<u16>) -> Outcome {
    match result {
        Ok(()) => Outcome::Success,
        Err(e) => match e.kind() {
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
    // Not format!: this runs on every hop.
    let mut key = String::with_capacity(host.len() + 6);
    key.push_str(host);
    key.push(':');
    key.push_str(itoa::Buffer::new().format(port));
    key
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

/// `host` and port of an `http`/`https` URL (checked to have a host).
fn host_and_port(url: &Url) -> (Host<&str>, u16) {
    (
        url.host().unwrap_or(Host::Domain("")),
        url.port_or_known_default().unwrap_or(80),
    )
}

/// The request for one hop: for the HTTP/1.1 pool in origin form with a
/// `Host` header (hyper-util's client does that itself).
fn build_request(
    method: &Method,
    url: &Url,
    headers: &HeaderMap,
    body: &Bytes,
    origin_form: bool,
) -> Result<Request<Full<Bytes>>, FetchError> {
    let invalid = |e: &dyn std::fmt::Display| {
        FetchError::new(
            FetchErrorKind::InvalidUrl,
            format!("invalid URL {url}: {e}"),
        )
    };
    let uri: http::Uri = if origin_form {
        url[Position::BeforePath..Position::AfterQuery]
            .parse()
            .map_err(|e| invalid(&e))?
    } else {
        url.as_str().parse().map_err(|e| invalid(&e))?
    };
    let mut request = Request::new(Full::new(body.clone()));
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri;
    // Sized once (a clone and an insert would grow it).
    let map = request.headers_mut();
    map.reserve(headers.len() + 1);
    if origin_form && !headers.contains_key(header::HOST) {
        let host = HeaderValue::from_str(&url[Position::BeforeHost..Position::AfterPort])
            .map_err(|e| invalid(&e))?;
        map.insert(header::HOST, host);
    }
    for (name, value) in headers {
        map.append(name.clone(), value.clone());
    }
    Ok(request)
}
