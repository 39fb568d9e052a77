//! A real HTTP test site on 127.0.0.1 for crawler tests, with its own
//! ground truth.
//!
//! [`TestSite::start`] serves, on a free port:
//!
//! - **the plain part**, laid out like `../shared/peers/gen_site.py`: `/`
//!   links to `/p/0.html`; pages `/p/0.html` … `/p/{N-1}.html` in a seeded
//!   random link graph (20 same-site links each, an off-site link to
//!   `http://offsite.invalid/x` and a `mailto:` link), each with a title
//!   (`Page i`), a meta description (`Synthetic page i of N`), `i % 5`
//!   images (`/img/k.png`, real PNGs) and ~4 KB of text. The graph is a
//!   pure function of [`SiteConfig::seed`] (SplitMix64, no dependency whose
//!   stream could change), or given by hand with [`SiteConfig::graph`].
//! - **traps and oddities**, each switchable in [`Traps`], each linked from
//!   `/` when on:
//!
//! | path | what it is |
//! |---|---|
//! | `/cal/2024/01` | infinite calendar: every month links to the next, forever |
//! | `/loop/a` | redirect loop `a` → `b` → `a` (302s) |
//! | `/chain/1` | 301 → 302 (absolute Location) → 307 (relative) → `/chain/end.html` |
//! | `/huge.html` | [`SiteConfig::huge_bytes`] of HTML (default 11 MiB), chunked, no Content-Length |
//! | `/endless.html` | an HTML body that never ends |
//! | `/odd/malformed.html` | unclosed tags, unquoted/upper-case/glued attributes, stray end tags, garbage bytes; 3 links, 1 image |
//! | `/odd/latin1.html` | ISO-8859-1 declared only by `Content-Type: …; charset=ISO-8859-1` (title `Café Zürich`) |
//! | `/odd/sjis.html` | Shift_JIS declared only by `<meta charset>` (title `日本語のページ`) |
//! | `/odd/spellings.html` | `/p/1.html` written a dozen ways (fragment, `./` and `../`, `%70`, upper-case scheme or host, absolute, protocol-relative, whitespace, `utm_*` queries), `/P/1.html` (a 404: path case counts), off-site hosts with `:80`/`:443` and upper case, the subdomain-ish host, `javascript:`, `mailto:`, `data:`, `tel:`, `ftp:` |
//! | `/robots.txt` | groups `*` (Allow `/private/public.html`, Disallow `/private/` and `/*.cgi$`) and `special-bot` (Disallow `/special/`, `/private/`), [`SiteConfig::crawl_delay`], a `Sitemap:` line; or your own [`SiteConfig::robots`] |
//! | `/private/…`, `/run.cgi`, `/run.cgi?x=1`, `/special/only.html` | robots-tested pages; every 10th plain page (`i % 10 == 3`) links to `/private/{i}.html` |
//! | `/missing.html`, `/error500.html` | 404 and 500 (`text/plain`, no links) |
//! | `/rate/limited.html` | 429 with `Retry-After` ([`SiteConfig::retry_after_secs`]) for the first [`SiteConfig::fail_times`] requests, then 200 |
//! | `/flaky.html` | 503 for the first [`SiteConfig::fail_times`] requests, then 200 |
//! | `/files/doc.pdf`, `/img/0.png` | `application/pdf` and `image/png` linked with `<a>` |
//! | `/sitemap.xml` | `/`, the first three plain pages and `/sitemap-only.html` (linked from nowhere) |
//!
//! Any other path is a 404. The server ignores the query string and the
//! `Host` header when choosing content. [`SiteConfig::delay`] delays every
//! response (a slow site).
//!
//! **The log**: every request (method, path and query, `Host`, `User-Agent`)
//! is recorded server-side: [`TestSite::requests`], [`TestSite::count`],
//! [`TestSite::path_counts`], [`TestSite::unexpected_requests`] — so a test
//! can prove that a disallowed or out-of-scope page was never requested.
//!
//! **The ground truth**: [`TestSite::expected`] walks the site's own link
//! graph breadth-first under [`CrawlRules`] (depth limit, scope, robots for
//! a user agent, query stripping, sitemaps, body cap) and returns the
//! exact set of URLs a correct crawler records, each with its depth,
//! final URL, status, [`Outcome`], content type, title, description, link
//! and image counts and normalised outlinks. Links carry the target the
//! site means, so the ground truth does not depend on any URL parser.
//!
//! Depth: start pages are 0, a link from depth `d` is `d + 1`, pages deeper
//! than `max_depth` are not fetched. Redirects keep the depth of the URL
//! that redirected; the record is for that URL, with `final_url` set.
//! An infinite calendar needs a `max_depth` (or the walk never ends).
//!
//! The default host is the IP literal `127.0.0.1`, which has no case and
//! no subdomains: spellings then upper-case the scheme, and the
//! subdomain-ish host is `sub.localhost` (off-site). With
//! [`SiteConfig::host_name`]`("localhost")` links are written with that name,
//! spellings upper-case it, and `sub.localhost` is a subdomain; whether it
//! resolves depends on the machine, hence [`Outcome::Unresolved`].
//!
//! ```no_run
//! # async fn t() {
//! use surge_testkit::site::{CrawlRules, SiteConfig, TestSite};
//! let site = TestSite::start(SiteConfig::new(50)).await;
//! // … crawl site.start_url() with max depth 3 …
//! let expected = site.expected(&CrawlRules { max_depth: Some(3), ..CrawlRules::default() });
//! assert!(site.unexpected_requests(&expected).is_empty());
//! # }
//! ```

mod expect;
mod model;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::stream;

pub use expect::{CrawlRules, Expected, ExpectedPage, Outcome};
use model::{HTML_UTF8, HUGE_HEAD, HUGE_TAIL, Model, Resource};

/// Which traps and oddities the site serves (all on by default).
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)]
pub struct Traps {
    pub calendar: bool,
    pub redirect_loop: bool,
    pub redirect_chain: bool,
    pub huge: bool,
    pub endless: bool,
    pub malformed: bool,
    pub latin1: bool,
    pub shift_jis: bool,
    pub spellings: bool,
    /// robots.txt and the pages it is about.
    pub robots: bool,
    /// `/missing.html` (404) and `/error500.html` (500).
    pub errors: bool,
    pub rate_limited: bool,
    pub flaky: bool,
    /// The PDF and PNG linked with `<a>`.
    pub binaries: bool,
    /// `/sitemap.xml`, the `Sitemap:` line, `/sitemap-only.html`.
    pub sitemap: bool,
}

impl Traps {
    /// Every trap.
    pub fn all() -> Traps {
        Traps {
            calendar: true,
            redirect_loop: true,
            redirect_chain: true,
            huge: true,
            endless: true,
            malformed: true,
            latin1: true,
            shift_jis: true,
            spellings: true,
            robots: true,
            errors: true,
            rate_limited: true,
            flaky: true,
            binaries: true,
            sitemap: true,
        }
    }

    /// No trap: the plain part only (robots.txt is then a 404).
    pub fn none() -> Traps {
        Traps {
            calendar: false,
            redirect_loop: false,
            redirect_chain: false,
            huge: false,
            endless: false,
            malformed: false,
            latin1: false,
            shift_jis: false,
            spellings: false,
            robots: false,
            errors: false,
            rate_limited: false,
            flaky: false,
            binaries: false,
            sitemap: false,
        }
    }
}

impl Default for Traps {
    fn default() -> Traps {
        Traps::all()
    }
}

/// One robots.txt group.
#[derive(Debug, Clone, PartialEq)]
pub struct RobotsGroup {
    /// `User-agent:` values (`*` or product tokens).
    pub agents: Vec<String>,
    pub allow: Vec<String>,
    pub disallow: Vec<String>,
    /// `Crawl-delay:` in seconds.
    pub crawl_delay: Option<f64>,
}

/// How the site is built. `SiteConfig::new(n)` then the builder methods.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteConfig {
    pub(crate) pages: usize,
    pub(crate) links_per_page: usize,
    pub(crate) words: usize,
    pub(crate) seed: u64,
    pub(crate) graph: Option<Vec<Vec<usize>>>,
    pub(crate) traps: Traps,
    pub(crate) host_name: String,
    pub(crate) huge_bytes: u64,
    pub(crate) crawl_delay: Option<f64>,
    pub(crate) robots_groups: Option<Vec<RobotsGroup>>,
    pub(crate) retry_after_secs: u64,
    pub(crate) fail_times: u64,
    pub(crate) delay: Duration,
}

impl Default for SiteConfig {
    fn default() -> SiteConfig {
        SiteConfig::new(40)
    }
}

impl SiteConfig {
    /// `pages` plain pages, seed 7, every trap on.
    pub fn new(pages: usize) -> SiteConfig {
        SiteConfig {
            pages,
            links_per_page: 20,
            words: 600,
            seed: 7,
            graph: None,
            traps: Traps::all(),
            host_name: "127.0.0.1".to_owned(),
            huge_bytes: 11 * 1024 * 1024,
            crawl_delay: None,
            robots_groups: None,
            retry_after_secs: 1,
            fail_times: 1,
            delay: Duration::ZERO,
        }
    }

    /// The plain part only (no traps, no robots.txt).
    pub fn plain(pages: usize) -> SiteConfig {
        SiteConfig::new(pages).traps(Traps::none())
    }

    /// The seed of the link graph and the text.
    pub fn seed(mut self, seed: u64) -> SiteConfig {
        self.seed = seed;
        self
    }

    /// Same-site links per plain page (default 20, at most the page count).
    pub fn links_per_page(mut self, n: usize) -> SiteConfig {
        self.links_per_page = n;
        self
    }

    /// Words of text per plain page (default 600, ~4 KB).
    pub fn words(mut self, n: usize) -> SiteConfig {
        self.words = n;
        self
    }

    /// The link graph by hand: page `i` links to `graph[i]` (replaces the
    /// page count and the seeded graph).
    ///
    /// # Panics
    /// When a link names a page that does not exist.
    pub fn graph(mut self, graph: Vec<Vec<usize>>) -> SiteConfig {
        assert!(
            graph.iter().flatten().all(|j| *j < graph.len()),
            "graph links to a page that does not exist"
        );
        self.pages = graph.len();
        self.graph = Some(graph);
        self
    }

    pub fn traps(mut self, traps: Traps) -> SiteConfig {
        self.traps = traps;
        self
    }

    /// The host name links are written with (default `127.0.0.1`; it must
    /// resolve to 127.0.0.1, like `localhost`).
    pub fn host_name(mut self, name: &str) -> SiteConfig {
        name.clone_into(&mut self.host_name);
        self
    }

    /// The size of `/huge.html` (default 11 MiB, above the 10 MiB default cap).
    pub fn huge_bytes(mut self, bytes: u64) -> SiteConfig {
        self.huge_bytes = bytes;
        self
    }

    /// `Crawl-delay:` of the default robots groups.
    pub fn crawl_delay(mut self, seconds: f64) -> SiteConfig {
        self.crawl_delay = Some(seconds);
        self
    }

    /// Replaces the default robots.txt groups.
    pub fn robots(mut self, groups: Vec<RobotsGroup>) -> SiteConfig {
        self.robots_groups = Some(groups);
        self
    }

    /// `Retry-After` of the 429 page, in seconds (default 1).
    pub fn retry_after_secs(mut self, secs: u64) -> SiteConfig {
        self.retry_after_secs = secs;
        self
    }

    /// How many requests the 429 and 503 pages fail before a 200 (default 1).
    pub fn fail_times(mut self, n: u64) -> SiteConfig {
        self.fail_times = n;
        self
    }

    /// Delay before every response (a slow site).
    pub fn delay(mut self, delay: Duration) -> SiteConfig {
        self.delay = delay;
        self
    }
}

/// One request the site received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// Path and query as requested (`/p/1.html?utm_source=x`).
    pub path_query: String,
    /// The `Host` header, if any.
    pub host: Option<String>,
    pub user_agent: Option<String>,
    /// Since the site started.
    pub at: Duration,
}

impl RequestRecord {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.path_query
            .split_once('?')
            .map_or(self.path_query.as_str(), |(p, _)| p)
    }
}

struct Shared {
    model: Model,
    started: Instant,
    log: Mutex<Vec<RequestRecord>>,
    /// Requests per path (no query).
    counts: Mutex<HashMap<String, u64>>,
}

/// The running site; the server stops when this is dropped.
pub struct TestSite {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TestSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestSite")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl TestSite {
    /// Binds 127.0.0.1 on a free port and serves the site on the current
    /// tokio runtime.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start(config: SiteConfig) -> TestSite {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            model: Model::new(config, addr.port()),
            started: Instant::now(),
            log: Mutex::new(Vec::new()),
            counts: Mutex::new(HashMap::new()),
        });
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestSite { shared, addr, task }
    }

    /// `http://127.0.0.1:PORT` (or the configured host name), no trailing slash.
    pub fn base_url(&self) -> String {
        self.shared.model.base.clone()
    }

    /// The start page, `{base}/`.
    pub fn start_url(&self) -> String {
        format!("{}/", self.shared.model.base)
    }

    /// `{base}{path}` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.shared.model.base)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The number of plain pages.
    pub fn pages(&self) -> usize {
        self.shared.model.pages()
    }

    /// Plain page `i` links to these pages.
    pub fn graph(&self) -> &[Vec<usize>] {
        &self.shared.model.graph
    }

    /// The robots.txt the site serves (when the robots trap is on).
    pub fn robots_txt(&self) -> String {
        self.shared.model.robots_txt()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.log.lock().expect("log lock").clone()
    }

    /// Requests for `path` so far (the query is ignored: `/run.cgi` counts
    /// `/run.cgi?x=1` too).
    pub fn count(&self, path: &str) -> u64 {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        self.shared
            .counts
            .lock()
            .expect("counts lock")
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Requests per path (no query) so far.
    pub fn path_counts(&self) -> BTreeMap<String, u64> {
        self.shared
            .counts
            .lock()
            .expect("counts lock")
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Forgets the log and the counts (the 429/503 pages fail again).
    pub fn clear_log(&self) {
        self.shared.log.lock().expect("log lock").clear();
        self.shared.counts.lock().expect("counts lock").clear();
    }

    /// The exact outcome of a correct crawl under `rules` (see the module docs).
    ///
    /// # Panics
    /// On a bad regex or start URL in `rules`.
    pub fn expected(&self, rules: &CrawlRules) -> Expected {
        expect::compute(&self.shared.model, rules)
    }

    /// The requests whose path and query is not in
    /// [`Expected::allowed_requests`]: a correct crawler makes none.
    pub fn unexpected_requests(&self, expected: &Expected) -> Vec<RequestRecord> {
        self.requests()
            .into_iter()
            .filter(|r| !expected.allowed_requests.contains(&r.path_query))
            .collect()
    }
}

impl Drop for TestSite {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let record = log_entry(&req, shared.started);
    shared.log.lock().expect("log lock").push(record);
    let nth = {
        let mut counts = shared.counts.lock().expect("counts lock");
        let c = counts.entry(path.clone()).or_insert(0);
        *c += 1;
        *c
    };
    if !shared.model.cfg.delay.is_zero() {
        tokio::time::sleep(shared.model.cfg.delay).await;
    }
    respond(shared.model.resource(&path), nth)
}

fn log_entry(req: &Request, started: Instant) -> RequestRecord {
    let header_str = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    RequestRecord {
        method: req.method().as_str().to_owned(),
        path_query: req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned()),
        host: header_str(header::HOST),
        user_agent: header_str(header::USER_AGENT),
        at: started.elapsed(),
    }
}

fn respond(resource: Option<Resource>, nth: u64) -> Response {
    let Some(resource) = resource else {
        return plain_status(404);
    };
    match resource {
        Resource::Doc(doc) => with_type(Response::new(Body::from(doc.body)), &doc.content_type),
        Resource::Redirect {
            status, location, ..
        } => {
            let mut r = plain_status(status);
            r.headers_mut().insert(
                header::LOCATION,
                HeaderValue::from_str(&location).expect("ASCII location"),
            );
            r
        }
        Resource::Error { status } => plain_status(status),
        Resource::FailFirst {
            status,
            retry_after,
            times,
            then,
        } => {
            if nth <= times {
                let mut r = plain_status(status);
                if let Some(s) = retry_after {
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(s));
                }
                r
            } else {
                respond(Some(*then), nth)
            }
        }
        Resource::Huge { bytes } => {
            const CHUNK: usize = 64 * 1024;
            let body_len = bytes.saturating_sub((HUGE_HEAD.len() + HUGE_TAIL.len()) as u64);
            let filler = Bytes::from(b"x".repeat(CHUNK));
            let head = stream::iter([Ok::<_, Infallible>(Bytes::from_static(
                HUGE_HEAD.as_bytes(),
            ))]);
            let middle = stream::unfold(body_len, move |left| {
                let filler = filler.clone();
                async move {
                    (left > 0).then(|| {
                        let n = left.min(CHUNK as u64);
                        (Ok(filler.slice(..n as usize)), left - n)
                    })
                }
            });
            let tail = stream::iter([Ok(Bytes::from_static(HUGE_TAIL.as_bytes()))]);
            use futures_util::StreamExt as _;
            let body = Body::from_stream(head.chain(middle).chain(tail));
            with_type(Response::new(body), HTML_UTF8)
        }
        Resource::Endless => {
            let filler = Bytes::from(b"<p>and on</p>\n".repeat(4096));
            let head = Bytes::from_static(
                b"<!doctype html><html><head><title>Endless</title></head><body>",
            );
            let body = stream::unfold(Some(head), move |first| {
                let filler = filler.clone();
                async move { Some((Ok::<_, Infallible>(first.unwrap_or(filler)), None)) }
            });
            with_type(Response::new(Body::from_stream(body)), HTML_UTF8)
        }
    }
}

fn plain_status(status: u16) -> Response {
    let code = StatusCode::from_u16(status).expect("valid status");
    let text = code
        .canonical_reason()
        .unwrap_or("status")
        .to_ascii_lowercase();
    let mut r = with_type(Response::new(Body::from(text)), "text/plain; charset=utf-8");
    *r.status_mut() = code;
    r
}

fn with_type(mut r: Response, content_type: &str) -> Response {
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("ASCII content type"),
    );
    r
}
