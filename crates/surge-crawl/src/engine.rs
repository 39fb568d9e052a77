//! The crawl engine: [`Crawler`], the loop over a [`Frontier`].
//!
//! One scheduler loop (the caller's task) leases entries from the frontier
//! in batches, queues them per host in [`Politeness`] and starts fetches
//! when their host allows, up to `concurrency` at once. Each fetch runs in
//! its own task: robots.txt check (cached per origin), the fetch through
//! the [`Fetcher`] into a bounded buffer, extraction, and the outlinks
//! normalised, scoped, depth-limited and robots-filtered. The scheduler then
//! completes the lease on the frontier (stores the record and offers the
//! outlinks in one step) and streams the record out. Live leases are
//! extended every [`LEASE_TTL`]`/3`. On shutdown or at the time budget the
//! fetches in flight are cancelled and every lease is released: nothing is
//! lost.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;
use surge_core::ErrorCategory;
use surge_fetch::{
    AddressPolicy, BodyOutput, BodySink, FetchConfig, FetchErrorKind, FetchRequest, Fetcher,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::config::CrawlConfig;
use crate::error::CrawlError;
use crate::extract::{extract, is_html};
use crate::frontier::{Frontier, FrontierEntry, Lease};
use crate::politeness::{Outcome, Politeness};
use crate::record::{PageError, PageRecord};
use crate::robots::RobotsCache;
use crate::scope::Scope;
use crate::url_norm::{NormaliseOptions, normalise, normalise_str};

/// How long a lease holds without a heartbeat.
pub const LEASE_TTL: Duration = Duration::from_secs(60);
/// Most URLs taken from sitemaps.
pub const MAX_SITEMAP_URLS: usize = 100_000;

/// What a crawl did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CrawlSummary {
    /// Records stored by this run.
    pub pages: u64,
    /// Failed pages per error category.
    pub errors_by_category: BTreeMap<String, u64>,
    /// Body bytes received.
    pub bytes: u64,
    /// Wall time of the run.
    pub duration: Duration,
    /// `pages / duration`.
    pub pages_per_sec: f64,
}

/// The crawler.
#[derive(Debug)]
pub struct Crawler {
    ctx: Arc<Ctx>,
}

#[derive(Debug)]
struct Ctx {
    config: CrawlConfig,
    fetcher: Fetcher,
    robots: RobotsCache,
    scope: Scope,
    norm: NormaliseOptions,
    starts: Vec<Url>,
}

/// What a fetch task hands back.
struct Done {
    lease: Lease,
    host: String,
    outcome: Outcome,
    crawl_delay: Option<Duration>,
    record: PageRecord,
    outlinks: Vec<FrontierEntry>,
}

type Completing<'a> =
    Pin<Box<dyn Future<Output = (Result<bool, crate::FrontierError>, PageRecord)> + Send + 'a>>;

impl Crawler {
    /// A crawler with its own fetcher.
    ///
    /// # Errors
    /// [`CrawlError::Config`] for a bad setting.
    pub fn new(config: CrawlConfig) -> Result<Crawler, CrawlError> {
        config.validate()?;
        let fetcher = Fetcher::new(FetchConfig {
            // Robots and sitemap fetches share the engine with the pages.
            concurrency: config.concurrency + 4,
            per_host: config.per_host + 1,
            request_timeout: config.timeout,
            read_timeout: config.timeout,
            max_retries: config.max_retries,
            max_body_bytes: config.max_body_bytes,
            user_agent: config.user_agent.clone(),
            address_policy: if config.allow_private {
                AddressPolicy::allow_all()
            } else {
                AddressPolicy::public_only()
            },
            ..FetchConfig::default()
        })?;
        Crawler::with_fetcher(config, fetcher)
    }

    /// A crawler on a given fetcher.
    ///
    /// # Errors
    /// [`CrawlError::Config`] for a bad setting or a start URL that is not
    /// an `http(s)` URL.
    pub fn with_fetcher(config: CrawlConfig, fetcher: Fetcher) -> Result<Crawler, CrawlError> {
        config.validate()?;
        let norm = NormaliseOptions::new(&config.strip_query);
        let mut starts = Vec::new();
        for s in &config.start_urls {
            let u = normalise_str(s, &norm).ok_or_else(|| {
                CrawlError::Config(format!("start URL {s:?} is not an http(s) URL"))
            })?;
            starts.push(u);
        }
        let scope = Scope::new(&config.scope, &starts)?;
        let robots = RobotsCache::new(fetcher.clone(), &config.user_agent, 100_000);
        Ok(Crawler {
            ctx: Arc::new(Ctx {
                config,
                fetcher,
                robots,
                scope,
                norm,
                starts,
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &CrawlConfig {
        &self.ctx.config
    }

    /// The fetcher.
    pub fn fetcher(&self) -> &Fetcher {
        &self.ctx.fetcher
    }

    /// The normalised start URLs.
    pub fn start_urls(&self) -> &[Url] {
        &self.ctx.starts
    }

    /// Seeds the frontier with the start URLs (idempotent: offer dedups)
    /// and crawls until the frontier is finished, the time budget ends, or
    /// `shutdown` fires (leases released, nothing lost). Every record this
    /// run stores is also sent to `records`.
    ///
    /// # Errors
    /// [`CrawlError::Frontier`] when the frontier fails.
    pub async fn run<F: Frontier>(
        &self,
        frontier: &F,
        records: Option<mpsc::Sender<PageRecord>>,
        shutdown: CancellationToken,
    ) -> Result<CrawlSummary, CrawlError> {
        let started = Instant::now();
        let ctx = &self.ctx;
        let cfg = &ctx.config;
        let deadline = cfg.max_duration.map(|d| started + d);
        frontier
            .offer(
                ctx.starts
                    .iter()
                    .map(|u| FrontierEntry {
                        url: u.to_string(),
                        depth: 0,
                    })
                    .collect(),
            )
            .await?;
        if cfg.sitemaps {
            Box::pin(self.seed_sitemaps(frontier)).await?;
        }
        let mut summary = CrawlSummary::default();
        let mut polite: Politeness<Lease> =
            Politeness::new(cfg.per_host, cfg.min_delay, cfg.respect_robots);
        let mut fetches: JoinSet<Done> = JoinSet::new();
        let mut in_flight: HashMap<tokio::task::Id, (String, Lease)> = HashMap::new();
        let mut completing: FuturesUnordered<Completing<'_>> = FuturesUnordered::new();
        let batch = cfg.concurrency.max(8);
        let mut idle_poll = Duration::from_millis(5);
        let mut next_beat = Instant::now() + LEASE_TTL / 3;
        let mut next_sweep = Instant::now() + Duration::from_secs(5);
        let mut failure: Option<CrawlError> = None;
        'crawl: loop {
            let now = Instant::now();
            if shutdown.is_cancelled() || deadline.is_some_and(|d| now >= d) {
                break;
            }
            // Fill: keep about two batches leased ahead of the fetches.
            let mut leased_none = false;
            if polite.pending() + fetches.len() < 2 * batch {
                match frontier.lease(batch, LEASE_TTL).await {
                    Ok(leases) => {
                        leased_none = leases.is_empty();
                        if !leased_none {
                            idle_poll = Duration::from_millis(5);
                        }
                        for l in leases {
                            let host = host_key(&l.entry.url);
                            polite.push(&host, l, now);
                        }
                    }
                    Err(e) => {
                        failure = Some(e.into());
                        break;
                    }
                }
            }
            // Dispatch.
            while fetches.len() < cfg.concurrency {
                let Some((host, lease)) = polite.pop_ready(Instant::now()) else {
                    break;
                };
                let ctx = Arc::clone(ctx);
                let l = lease.clone();
                let h = host.clone();
                let handle = fetches.spawn(async move { fetch_page(&ctx, l, h).await });
                in_flight.insert(handle.id(), (host, lease));
            }
            if fetches.is_empty() && completing.is_empty() && polite.pending() == 0 && leased_none {
                match frontier.is_finished().await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => {
                        failure = Some(e.into());
                        break;
                    }
                }
            }
            // Heartbeat and housekeeping.
            let now = Instant::now();
            if now >= next_beat {
                let live: Vec<Lease> = in_flight
                    .values()
                    .map(|(_, l)| l.clone())
                    .chain(polite.iter_pending().cloned())
                    .collect();
                if !live.is_empty()
                    && let Err(e) = frontier.extend(&live, LEASE_TTL).await
                {
                    tracing::warn!(error = %e, "lease heartbeat failed");
                }
                next_beat = now + LEASE_TTL / 3;
            }
            if now >= next_sweep {
                polite.sweep(now);
                next_sweep = now + Duration::from_secs(5);
            }
            // Wait for something to do.
            let mut wake = now + Duration::from_millis(250);
            if let Some(w) = polite.next_wake() {
                wake = wake.min(w);
            }
            if leased_none {
                wake = wake.min(now + idle_poll);
                idle_poll = (idle_poll * 2).min(Duration::from_millis(200));
            } else if polite.pending() + fetches.len() < 2 * batch {
                wake = now;
            }
            if let Some(d) = deadline {
                wake = wake.min(d);
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break 'crawl,
                Some(done) = completing.next(), if !completing.is_empty() => {
                    let (result, record) = done;
                    match result {
                        Ok(true) => {
                            summary.pages += 1;
                            summary.bytes += record.content_length;
                            if let Some(e) = &record.error {
                                *summary.errors_by_category.entry(e.kind.to_string()).or_default() += 1;
                            }
                            if let Some(tx) = &records {
                                let _ = tx.send(record).await;
                            }
                        }
                        Ok(false) => {}
                        Err(e) => {
                            failure = Some(e.into());
                            break 'crawl;
                        }
                    }
                }
                Some(joined) = fetches.join_next_with_id(), if !fetches.is_empty() => {
                    match joined {
                        Ok((id, done)) => {
                            in_flight.remove(&id);
                            polite.finish(&done.host, done.outcome, done.crawl_delay, Instant::now());
                            let Done { lease, mut record, outlinks, .. } = done;
                            completing.push(Box::pin(async move {
                                let r = frontier.complete(&lease, &record, outlinks).await;
                                if !ctx.config.outlinks {
                                    record.outlinks = None;
                                }
                                (r, record)
                            }));
                        }
                        Err(e) => {
                            // A panicking fetch: give its lease back for later.
                            if let Some((host, lease)) = in_flight.remove(&e.id()) {
                                tracing::error!(url = lease.entry.url, error = %e, "fetch task failed");
                                polite.finish(&host, Outcome::Failed, None, Instant::now());
                                let _ = frontier.release(&lease, Duration::from_secs(5)).await;
                            }
                        }
                    }
                }
                () = tokio::time::sleep_until(wake.into()) => {}
            }
        }
        // Wind down: completes in progress finish (they are quick and
        // their records must not be lost), fetches are cancelled, and every
        // other lease goes back.
        fetches.abort_all();
        while let Some((result, record)) = completing.next().await {
            if let Ok(true) = result {
                summary.pages += 1;
                summary.bytes += record.content_length;
                if let Some(e) = &record.error {
                    *summary
                        .errors_by_category
                        .entry(e.kind.to_string())
                        .or_default() += 1;
                }
                if let Some(tx) = &records {
                    let _ = tx.send(record).await;
                }
            }
        }
        while fetches.join_next().await.is_some() {}
        for (_, (_, lease)) in in_flight.drain() {
            let _ = frontier.release(&lease, Duration::ZERO).await;
        }
        for lease in polite.drain() {
            let _ = frontier.release(&lease, Duration::ZERO).await;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        summary.duration = started.elapsed();
        let secs = summary.duration.as_secs_f64();
        summary.pages_per_sec = if secs > 0.0 {
            summary.pages as f64 / secs
        } else {
            0.0
        };
        Ok(summary)
    }

    async fn seed_sitemaps<F: Frontier>(&self, frontier: &F) -> Result<(), CrawlError> {
        let ctx = &self.ctx;
        let mut roots = Vec::new();
        let mut origins = HashSet::new();
        for u in &ctx.starts {
            let origin = u.origin().ascii_serialization();
            if !origins.insert(origin.clone()) {
                continue;
            }
            let robots = ctx.robots.get(u).await;
            roots.extend(robots.sitemaps.iter().cloned());
            roots.push(format!("{origin}/sitemap.xml"));
        }
        let found = crate::sitemap::discover(&ctx.fetcher, roots, MAX_SITEMAP_URLS).await;
        let base = &ctx.starts[0];
        // Sitemap URLs enter at depth 0, like start URLs.
        let mut entries = Vec::new();
        for u in found.iter().filter_map(|s| normalise(base, s, &ctx.norm)) {
            if ctx.scope.allows(&u)
                && (!ctx.config.respect_robots || ctx.robots.get(&u).await.allowed(&u))
            {
                entries.push(FrontierEntry {
                    url: u.into(),
                    depth: 0,
                });
            }
        }
        let n = frontier.offer(entries).await?;
        tracing::info!(sitemap_urls = found.len(), new = n, "sitemaps read");
        Ok(())
    }
}

/// `host:port` of a URL (the politeness key).
fn host_key(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => format!(
            "{}:{}",
            u.host_str().unwrap_or(""),
            u.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => String::new(),
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Whether robots.txt lets the crawl follow `link`; `here` holds the rules
/// of `page`'s origin (no cache lookup for the common same-origin link).
async fn links_robots(
    ctx: &Ctx,
    here: &mut Option<Arc<crate::robots::Robots>>,
    page: &Url,
    link: &Url,
) -> bool {
    if same_origin(page, link) {
        if here.is_none() {
            *here = Some(ctx.robots.get(link).await);
        }
        return here.as_ref().is_some_and(|r| r.allowed(link));
    }
    ctx.robots.get(link).await.allowed(link)
}

fn page_error(kind: ErrorCategory, message: impl Into<String>) -> Option<PageError> {
    Some(PageError {
        kind,
        message: message.into(),
    })
}

async fn fetch_page(ctx: &Ctx, lease: Lease, host: String) -> Done {
    let cfg = &ctx.config;
    let depth = lease.entry.depth;
    let mut record = PageRecord {
        url: lease.entry.url.clone(),
        final_url: lease.entry.url.clone(),
        status: None,
        depth,
        title: None,
        description: None,
        content_type: None,
        content_length: 0,
        links: 0,
        images: 0,
        fetched_at: Utc::now(),
        elapsed_ms: 0.0,
        error: None,
        outlinks: cfg.outlinks.then(Vec::new),
    };
    let done = |record: PageRecord, outcome, crawl_delay, outlinks| Done {
        lease: lease.clone(),
        host: host.clone(),
        outcome,
        crawl_delay,
        record,
        outlinks,
    };
    let Ok(url) = Url::parse(&lease.entry.url) else {
        record.error = page_error(ErrorCategory::Validation, "not a URL");
        return done(record, Outcome::Failed, None, Vec::new());
    };
    let mut crawl_delay = None;
    let mut page_robots = None;
    if cfg.respect_robots {
        let (allowed, robots) = ctx.robots.check(&url).await;
        crawl_delay = robots.crawl_delay;
        page_robots = Some(Arc::clone(&robots));
        if !allowed {
            record.error = if robots.is_unavailable() {
                page_error(
                    ErrorCategory::Network,
                    "robots.txt unavailable (5xx, 429 or unreachable): host disallowed",
                )
            } else {
                page_error(ErrorCategory::Validation, "disallowed by robots.txt")
            };
            return done(record, Outcome::Ok, crawl_delay, Vec::new());
        }
    }
    let mut req = FetchRequest::get(lease.entry.url.clone()).with_sink(BodySink::Buffer);
    req.max_body_bytes = Some(cfg.max_body_bytes);
    let fetched = ctx.fetcher.fetch(req).await;
    record.fetched_at = Utc::now();
    record.elapsed_ms = fetched.elapsed.as_secs_f64() * 1000.0;
    record.status = fetched.status;
    record.content_type = fetched.content_type.clone();
    record.content_length = fetched.bytes;
    if let Some(f) = &fetched.final_url {
        record.final_url.clone_from(f);
    }
    let outcome = match (&fetched.error, fetched.status) {
        (_, Some(429 | 503)) => Outcome::Throttled(
            fetched
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    surge_core::backoff::parse_retry_after(v, std::time::SystemTime::now())
                }),
        ),
        (Some(e), _) if e.category() == ErrorCategory::Timeout => Outcome::Timeout,
        (Some(e), None) if e.kind() != FetchErrorKind::BodyTooLarge => Outcome::Failed,
        _ => Outcome::Ok,
    };
    if let Some(e) = &fetched.error {
        let message = if e.kind() == FetchErrorKind::BodyTooLarge {
            format!("too large: {e}")
        } else {
            e.to_string()
        };
        record.error = page_error(e.category(), message);
        return done(record, outcome, crawl_delay, Vec::new());
    }
    let BodyOutput::Bytes(body) = &fetched.body else {
        return done(record, outcome, crawl_delay, Vec::new());
    };
    if !is_html(fetched.content_type.as_deref(), body) {
        return done(record, outcome, crawl_delay, Vec::new());
    }
    let robots_origin = url.clone();
    let page_url = Url::parse(&record.final_url).unwrap_or(url);
    let x = extract(body, fetched.content_type.as_deref(), &page_url);
    record.title = x.title;
    record.description = x.description;
    record.links = x.links;
    record.images = x.images;
    let base = x.base.unwrap_or(page_url);
    let follow = cfg.max_depth.is_none_or(|m| depth < m);
    let mut robots_here = page_robots;
    let mut seen = HashSet::with_capacity(x.hrefs.len());
    let mut all = Vec::new();
    let mut outlinks = Vec::new();
    for href in &x.hrefs {
        let Some(u) = normalise(&base, href, &ctx.norm) else {
            continue;
        };
        if !seen.insert(u.as_str().to_owned()) {
            continue;
        }
        if follow
            && ctx.scope.allows(&u)
            && (!cfg.respect_robots
                || links_robots(ctx, &mut robots_here, &robots_origin, &u).await)
        {
            outlinks.push(FrontierEntry {
                url: u.as_str().to_owned(),
                depth: depth + 1,
            });
        }
        if cfg.outlinks {
            all.push(String::from(u));
        }
    }
    if cfg.outlinks {
        record.outlinks = Some(all);
    }
    done(record, outcome, crawl_delay, outlinks)
}
