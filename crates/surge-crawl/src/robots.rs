//! robots.txt ([RFC 9309](https://www.rfc-editor.org/rfc/rfc9309)):
//! parsing, matching, and a per-host cache that fetches each file once.
//!
//! - Groups: consecutive `user-agent` lines start a group; the group used is
//!   the one (all of them, merged) whose user-agent equals the crawler's
//!   product token (`surge-crawler` for `surge-crawler/0.1`),
//!   case-insensitively; failing that the `*` groups (merged); failing that
//!   everything is allowed.
//! - Rules: the longest matching `allow` / `disallow` pattern wins (length in
//!   bytes of the pattern); on a tie `allow` wins; an empty `disallow`
//!   allows everything. `*` matches any run of characters, a final `$`
//!   anchors the end. Patterns and paths are compared percent-encoding
//!   normalised. `/robots.txt` itself is always allowed.
//! - `crawl-delay` of the chosen group (seconds, fractional allowed, capped
//!   at [`MAX_CRAWL_DELAY`]); `sitemap` lines wherever they are.
//! - Only the first [`MAX_ROBOTS_BYTES`] are parsed.
//! - Fetch outcomes ([`RobotsCache`]): 2xx parsed; 4xx except 429: no
//!   robots.txt, everything allowed; 429, 5xx, network failures: everything
//!   disallowed, and the fetch is tried again after [`UNAVAILABLE_RETRY`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use surge_core::cache::Cache;
use surge_fetch::{BodyOutput, BodySink, FetchErrorKind, FetchRequest, Fetcher};
use url::Url;

use crate::url_norm::{fix_escapes, needs_escape_fix};

/// Bytes of a robots.txt that are parsed (Google's limit is 500 KiB).
pub const MAX_ROBOTS_BYTES: usize = 512 * 1024;
/// Largest `crawl-delay` honoured.
pub const MAX_CRAWL_DELAY: Duration = Duration::from_secs(60);
/// How long an unavailable robots.txt (5xx, 429, network) disallows a host
/// before it is fetched again.
pub const UNAVAILABLE_RETRY: Duration = Duration::from_secs(60);
/// How long a fetched robots.txt is kept.
pub const ROBOTS_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    allow: bool,
    /// Percent-normalised pattern.
    pattern: String,
}

#[derive(Debug, Clone, Default)]
struct Group {
    agents: Vec<String>,
    rules: Vec<Rule>,
    crawl_delay: Option<Duration>,
}

/// One host's parsed robots.txt, reduced to the group that applies to one
/// user agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Robots {
    rules: Vec<Rule>,
    disallow_all: bool,
    /// The chosen group's `crawl-delay`.
    pub crawl_delay: Option<Duration>,
    /// Every `sitemap` URL listed.
    pub sitemaps: Vec<String>,
}

/// The product token of a `User-Agent`: what comes before the first `/`
/// or space, lowercased (`Surge-Crawler/0.1 (+url)` → `surge-crawler`).
pub fn product_token(user_agent: &str) -> String {
    user_agent
        .split(|c: char| c == '/' || c.is_whitespace())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

impl Robots {
    /// Everything allowed (no robots.txt).
    pub fn allow_all() -> Robots {
        Robots::default()
    }

    /// Everything disallowed (robots.txt unavailable).
    pub fn disallow_all() -> Robots {
        Robots {
            disallow_all: true,
            ..Robots::default()
        }
    }

    /// Parses `body` for the crawler whose `User-Agent` is `user_agent`.
    pub fn parse(body: &[u8], user_agent: &str) -> Robots {
        let body = &body[..body.len().min(MAX_ROBOTS_BYTES)];
        let text = String::from_utf8_lossy(body);
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let token = product_token(user_agent);
        let mut groups: Vec<Group> = Vec::new();
        let mut sitemaps = Vec::new();
        // Whether the current group is still collecting user-agent lines.
        let mut in_agents = false;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            let value = value.trim();
            match key.as_str() {
                "user-agent" | "useragent" | "user agent" => {
                    if !in_agents {
                        groups.push(Group::default());
                        in_agents = true;
                    }
                    // The token is the leading run of [a-zA-Z_-] (or `*`).
                    let agent: String = if value.starts_with('*') {
                        "*".into()
                    } else {
                        value
                            .chars()
                            .take_while(|c| c.is_ascii_alphabetic() || *c == '_' || *c == '-')
                            .collect::<String>()
                            .to_ascii_lowercase()
                    };
                    if let Some(g) = groups.last_mut() {
                        g.agents.push(agent);
                    }
                }
                "allow" | "disallow" | "dissallow" | "disalow" | "disallaw" => {
                    in_agents = false;
                    let Some(g) = groups.last_mut() else {
                        continue; // rules before any user-agent line
                    };
                    if value.is_empty() {
                        continue; // `disallow:` (empty) allows everything
                    }
                    g.rules.push(Rule {
                        allow: key == "allow",
                        pattern: normalise_pattern(value),
                    });
                }
                "crawl-delay" => {
                    in_agents = false;
                    if let Some(g) = groups.last_mut()
                        && let Ok(secs) = value.parse::<f64>()
                        && secs.is_finite()
                        && secs >= 0.0
                    {
                        g.crawl_delay = Some(Duration::from_secs_f64(secs).min(MAX_CRAWL_DELAY));
                    }
                }
                "sitemap" | "site-map" => {
                    // Not part of any group.
                    if !value.is_empty() {
                        sitemaps.push(value.to_owned());
                    }
                }
                _ => {
                    // Other records (host, clean-param, …) end the agent list.
                    in_agents = false;
                }
            }
        }
        let pick = |want: &str| -> Option<Robots> {
            let mut found = false;
            let mut robots = Robots::default();
            for g in groups.iter().filter(|g| g.agents.iter().any(|a| a == want)) {
                found = true;
                robots.rules.extend(g.rules.iter().cloned());
                if robots.crawl_delay.is_none() {
                    robots.crawl_delay = g.crawl_delay;
                }
            }
            found.then_some(robots)
        };
        let mut robots = (!token.is_empty())
            .then(|| pick(&token))
            .flatten()
            .or_else(|| pick("*"))
            .unwrap_or_default();
        robots.sitemaps = sitemaps;
        robots
    }

    /// Whether `url` may be fetched.
    pub fn allowed(&self, url: &Url) -> bool {
        let path = url.path();
        if path == "/robots.txt" {
            return true;
        }
        if self.disallow_all {
            return false;
        }
        let mut target = String::with_capacity(path.len() + url.query().map_or(0, |q| q.len() + 1));
        target.push_str(path);
        if let Some(q) = url.query() {
            target.push('?');
            target.push_str(q);
        }
        self.allowed_path(&target)
    }

    /// Whether the path-and-query `target` (percent-normalised) may be
    /// fetched.
    pub fn allowed_path(&self, target: &str) -> bool {
        if self.disallow_all {
            return false;
        }
        let mut best: Option<(usize, bool)> = None;
        for r in &self.rules {
            if pattern_matches(r.pattern.as_bytes(), target.as_bytes()) {
                let len = r.pattern.len();
                best = match best {
                    Some((l, a)) if l > len || (l == len && a) => Some((l, a)),
                    _ => Some((len, r.allow)),
                };
            }
        }
        best.is_none_or(|(_, allow)| allow)
    }

    /// Whether everything is disallowed because the file was unavailable.
    pub fn is_unavailable(&self) -> bool {
        self.disallow_all
    }
}

/// Percent-encodes what a URL path would encode and normalises escapes, so
/// a pattern compares byte for byte with a normalised URL.
fn normalise_pattern(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for c in p.chars() {
        if c.is_ascii() && !c.is_ascii_control() && c != ' ' {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    if needs_escape_fix(&out) {
        fix_escapes(&out)
    } else {
        out
    }
}

/// `*` any run, a final `$` the end; otherwise a prefix match.
fn pattern_matches(p: &[u8], s: &[u8]) -> bool {
    let (p, anchored) = match p.last() {
        Some(b'$') => (&p[..p.len() - 1], true),
        _ => (p, false),
    };
    // Greedy wildcard match with backtracking to the last `*`.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi == p.len() {
            if !anchored || si == s.len() {
                return true;
            }
        } else if p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
            continue;
        } else if si < s.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
            continue;
        }
        match star {
            Some((sp, ss)) if ss < s.len() => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            _ => return false,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    robots: Arc<Robots>,
    expires: Instant,
}

/// robots.txt per origin, fetched once through the crawl's [`Fetcher`]
/// (concurrent lookups of one origin share one fetch) and kept on a
/// [`surge_core::cache::Cache`].
#[derive(Debug, Clone)]
pub struct RobotsCache {
    cache: Cache<String, Entry>,
    fetcher: Fetcher,
    user_agent: String,
}

impl RobotsCache {
    /// A cache of up to `max_hosts` origins.
    pub fn new(fetcher: Fetcher, user_agent: &str, max_hosts: u64) -> RobotsCache {
        RobotsCache {
            cache: Cache::builder("crawl.robots")
                .max_entries(max_hosts)
                .ttl(ROBOTS_TTL)
                .build(),
            fetcher,
            user_agent: user_agent.to_owned(),
        }
    }

    /// The cache's statistics.
    pub fn snapshot(&self) -> surge_core::cache::CacheSnapshot {
        self.cache.snapshot()
    }

    /// The rules for `url`'s origin, fetching them on first use.
    pub async fn get(&self, url: &Url) -> Arc<Robots> {
        let origin = url.origin().ascii_serialization();
        for _ in 0..2 {
            let fetch = self.fetch(origin.clone());
            let entry = match self.cache.get_or_compute(origin.clone(), fetch).await {
                Ok(e) => e,
                Err(never) => match *never {},
            };
            if entry.expires > Instant::now() {
                return entry.robots;
            }
            self.cache.invalidate(&origin).await;
        }
        Arc::new(Robots::disallow_all())
    }

    /// Whether `url` may be fetched, and the origin's crawl delay.
    pub async fn check(&self, url: &Url) -> (bool, Arc<Robots>) {
        let robots = self.get(url).await;
        (robots.allowed(url), robots)
    }

    async fn fetch(&self, origin: String) -> Result<Entry, std::convert::Infallible> {
        let mut req = FetchRequest::get(format!("{origin}/robots.txt")).with_sink(BodySink::Buffer);
        req.max_body_bytes = Some(4 * MAX_ROBOTS_BYTES as u64);
        let fetched = self.fetcher.fetch(req).await;
        let now = Instant::now();
        let unavailable = Entry {
            robots: Arc::new(Robots::disallow_all()),
            expires: now + UNAVAILABLE_RETRY,
        };
        let allow = Entry {
            robots: Arc::new(Robots::allow_all()),
            expires: now + ROBOTS_TTL,
        };
        let entry = match (&fetched.error, fetched.status) {
            (None, Some(s)) if (200..300).contains(&s) => {
                let body = match &fetched.body {
                    BodyOutput::Bytes(b) => b.clone(),
                    _ => Default::default(),
                };
                Entry {
                    robots: Arc::new(Robots::parse(&body, &self.user_agent)),
                    expires: now + ROBOTS_TTL,
                }
            }
            (_, Some(429)) => unavailable,
            (_, Some(s)) if (400..500).contains(&s) => allow,
            // Too large: the rules cannot be read whole. Address refused
            // (SSRF policy): the page fetch says so itself.
            (Some(e), _)
                if matches!(
                    e.kind(),
                    FetchErrorKind::BodyTooLarge | FetchErrorKind::AddressRefused
                ) =>
            {
                allow
            }
            _ => unavailable,
        };
        tracing::debug!(origin, status = ?fetched.status, unavailable = entry.robots.is_unavailable(), "robots.txt");
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(robots: &str, ua: &str, path: &str) -> bool {
        Robots::parse(robots.as_bytes(), ua)
            .allowed(&Url::parse(&format!("http://h.test{path}")).unwrap())
    }

    #[test]
    fn rfc9309_longest_match_and_ties() {
        // RFC 9309 section 2.2.2 and 5.2 examples.
        let r = "User-Agent: *\nDisallow: *.gif$\nDisallow: /example/\nAllow: /publications/\n\nUser-Agent: foobot\nDisallow:/\nAllow:/example/page.html\nAllow:/example/allowed.gif\n\nUser-Agent: barbot\nUser-Agent: bazbot\nDisallow: /example/page.html\n\nUser-Agent: quxbot\n";
        assert!(!allowed(r, "foobot", "/"));
        assert!(allowed(r, "foobot/1.0", "/example/page.html"));
        assert!(allowed(r, "FooBot", "/example/allowed.gif"));
        assert!(!allowed(r, "foobot", "/example/other.gif"));
        assert!(!allowed(r, "barbot", "/example/page.html"));
        assert!(allowed(r, "bazbot", "/example/other.html"));
        // quxbot has an empty group: everything allowed, no fallback to `*`.
        assert!(allowed(r, "quxbot", "/example/x.gif"));
        // Others use `*`.
        assert!(!allowed(r, "otherbot", "/a/b.gif"));
        assert!(allowed(r, "otherbot", "/a/b.gif?x"));
        assert!(!allowed(r, "otherbot", "/example/x"));
        assert!(allowed(r, "otherbot", "/publications/x"));
        // Allow wins a tie.
        assert!(allowed(
            "user-agent: *\nallow: /page\ndisallow: /page\n",
            "x",
            "/page"
        ));
        // Longer wins whatever the order.
        assert!(!allowed(
            "user-agent: *\ndisallow: /folder/page\nallow: /folder/\n",
            "x",
            "/folder/page"
        ));
        assert!(allowed(
            "user-agent: *\ndisallow: /folder/\nallow: /folder/page\n",
            "x",
            "/folder/page"
        ));
    }

    #[test]
    fn google_spec_wildcards() {
        let r = |rule: &str, path: &str| {
            allowed(&format!("user-agent: *\ndisallow: {rule}\n"), "x", path)
        };
        // `/fish`: matches /fish, /fish.html, /fish/salmon.html, /fishheads, /fish.php?id=anything
        for p in [
            "/fish",
            "/fish.html",
            "/fish/salmon.html",
            "/fishheads",
            "/fish.php?id=anything",
        ] {
            assert!(!r("/fish", p), "{p}");
        }
        for p in ["/Fish.asp", "/catfish", "/?id=fish", "/desert/fish"] {
            assert!(r("/fish", p), "{p}");
        }
        // `/fish*` same as `/fish`.
        assert!(!r("/fish*", "/fishheads/yummy.html"));
        // `/fish/`
        assert!(!r("/fish/", "/fish/?id=anything"));
        assert!(r("/fish/", "/fish"));
        assert!(r("/fish/", "/fish.html"));
        // `/*.php`
        assert!(!r("/*.php", "/index.php"));
        assert!(!r("/*.php", "/folder/filename.php?parameters"));
        assert!(!r("/*.php", "/filename.php/"));
        assert!(r("/*.php", "/"));
        assert!(r("/*.php", "/windows.PHP"));
        // `/*.php$`
        assert!(!r("/*.php$", "/folder/filename.php"));
        assert!(r("/*.php$", "/filename.php?parameters"));
        assert!(r("/*.php$", "/filename.php/"));
        assert!(r("/*.php$", "/filename.php5"));
        // `/fish*.php`
        assert!(!r("/fish*.php", "/fishheads/catfish.php?parameters"));
        assert!(r("/fish*.php", "/Fish.PHP"));
        // `$` alone on `/`.
        assert!(!r("/$", "/"));
        assert!(r("/$", "/page"));
    }

    #[test]
    fn group_selection_and_merging() {
        let r = "user-agent: googlebot-news\ndisallow: /news\n\nuser-agent: *\ndisallow: /star\n\nuser-agent: googlebot\ndisallow: /g1\n\nuser-agent: GoogleBot\ndisallow: /g2\ncrawl-delay: 2.5\n";
        assert!(!allowed(r, "googlebot-news", "/news"));
        assert!(allowed(r, "googlebot-news", "/g1"));
        assert!(!allowed(
            r,
            "Googlebot/2.1 (+http://www.google.com/bot.html)",
            "/g1"
        ));
        assert!(!allowed(r, "googlebot", "/g2"));
        assert!(allowed(r, "googlebot", "/star"));
        assert!(!allowed(r, "surge-crawler/0.1", "/star"));
        assert_eq!(
            Robots::parse(r.as_bytes(), "googlebot").crawl_delay,
            Some(Duration::from_millis(2500))
        );
        assert_eq!(Robots::parse(r.as_bytes(), "other").crawl_delay, None);
        // No matching group and no `*`: everything allowed.
        assert!(allowed("user-agent: a\ndisallow: /\n", "b", "/x"));
        // Rules before any user-agent line are ignored; comments and case.
        assert!(allowed(
            "disallow: /\nUSER-AGENT: * # all\nDISALLOW: /p # c\n",
            "b",
            "/x"
        ));
        assert!(!allowed(
            "disallow: /\nUSER-AGENT: * # all\nDISALLOW: /p # c\n",
            "b",
            "/p"
        ));
        // Empty disallow allows all; robots.txt always allowed.
        assert!(allowed("user-agent: *\ndisallow:\n", "b", "/x"));
        assert!(allowed("user-agent: *\ndisallow: /\n", "b", "/robots.txt"));
        assert!(Robots::disallow_all().allowed(&Url::parse("http://h.test/robots.txt").unwrap()));
        assert!(!Robots::disallow_all().allowed(&Url::parse("http://h.test/").unwrap()));
    }

    #[test]
    fn percent_encoding_is_compared_normalised() {
        // RFC 9309 2.2.2: /foo/bar?baz=quz matches /foo/bar?baz=quz; UTF-8 and escapes are one.
        let r = "user-agent: *\ndisallow: /foo/jäger\ndisallow: /%7Eu\ndisallow: /a%3cd\n";
        let robots = Robots::parse(r.as_bytes(), "x");
        let url = |s: &str| {
            crate::url_norm::normalise_str(&format!("http://h.test{s}"), &Default::default())
                .unwrap()
        };
        assert!(!robots.allowed(&url("/foo/j%C3%A4ger")));
        assert!(!robots.allowed(&url("/foo/jäger/x")));
        assert!(!robots.allowed(&url("/~u")));
        assert!(!robots.allowed(&url("/a%3Cd")));
        assert!(robots.allowed(&url("/foo/jager")));
    }

    #[test]
    fn sitemaps_and_bom_and_size_cap() {
        let r = "\u{feff}Sitemap: http://h.test/s1.xml\nuser-agent: *\ndisallow: /x\nsitemap: http://h.test/s2.xml\n";
        let robots = Robots::parse(r.as_bytes(), "x");
        assert_eq!(
            robots.sitemaps,
            vec!["http://h.test/s1.xml", "http://h.test/s2.xml"]
        );
        assert!(!robots.allowed_path("/x"));
        let mut big = "user-agent: *\n".to_string();
        big.push_str(&"# padding\n".repeat(MAX_ROBOTS_BYTES / 10 + 1));
        big.push_str("disallow: /late\n");
        assert!(Robots::parse(big.as_bytes(), "x").allowed_path("/late"));
    }
}
