//! The ground truth: what a correct crawler of the site fetches and records,
//! computed by a breadth-first walk over the site's own link graph (no
//! HTML is parsed here: every link carries the target the site means).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use regex::Regex;
use url::Url;

use super::model::{Doc, HTML_UTF8, HUGE_HEAD, Model, Resource, Target};

/// The crawl settings the expected set is computed for (the subset of a
/// crawl config that decides which pages are fetched).
#[derive(Debug, Clone)]
pub struct CrawlRules {
    /// Start URLs: absolute, or paths on the site (`"/"`).
    pub start: Vec<String>,
    /// Start pages are depth 0; pages deeper than this are not fetched.
    pub max_depth: Option<u32>,
    /// Only the start URLs' host (host name compared, port ignored).
    pub same_host: bool,
    /// With `same_host`, hosts ending in `.<host>` are in scope too.
    pub subdomains: bool,
    /// Regexes over the whole normalised URL; when non-empty one must match.
    pub allow: Vec<String>,
    /// Regexes over the whole normalised URL; none may match.
    pub deny: Vec<String>,
    /// Obey the site's robots.txt for [`CrawlRules::user_agent`].
    pub respect_robots: bool,
    /// The user agent; its product token (before `/`) picks the robots group.
    pub user_agent: String,
    /// Query parameter names removed before dedup (`*` globs, `"utm_*"`).
    pub strip_query: Vec<String>,
    /// Seed the crawl with the URLs of `/sitemap.xml` as well.
    pub sitemaps: bool,
    /// The depth sitemap URLs enter at.
    pub sitemap_depth: u32,
    /// Bodies larger than this are [`Outcome::TooLarge`].
    pub max_body_bytes: u64,
    /// Redirects followed per fetch; more is [`Outcome::TooManyRedirects`].
    pub max_redirects: u32,
}

impl Default for CrawlRules {
    fn default() -> CrawlRules {
        CrawlRules {
            start: vec!["/".to_owned()],
            max_depth: None,
            same_host: true,
            subdomains: false,
            allow: Vec::new(),
            deny: Vec::new(),
            respect_robots: true,
            user_agent: "surge-crawler".to_owned(),
            strip_query: Vec::new(),
            sitemaps: false,
            sitemap_depth: 0,
            max_body_bytes: 10 * 1024 * 1024,
            max_redirects: 10,
        }
    }
}

/// How fetching a URL ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// A 2xx answer (after redirects and retries); fields are those of the
    /// full document (`title` etc. are `None` for non-HTML).
    Page,
    /// A 4xx/5xx answer that retries do not fix (404, 500); `status` set.
    HttpError,
    /// A redirect loop, or a chain longer than `max_redirects`.
    TooManyRedirects,
    /// The body is larger than `max_body_bytes` (or endless).
    TooLarge,
    /// A host that resolves on some machines and not others
    /// (`sub.localhost`): its outcome is not part of the ground truth.
    Unresolved,
}

/// One URL a correct crawler records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedPage {
    /// The normalised URL (the frontier's key).
    pub url: String,
    /// Where the redirects ended (`url` when there were none).
    pub final_url: String,
    /// Breadth-first depth (start pages are 0).
    pub depth: u32,
    /// The final HTTP status; `None` for [`Outcome::TooManyRedirects`] and
    /// [`Outcome::Unresolved`].
    pub status: Option<u16>,
    pub outcome: Outcome,
    /// The final answer's `Content-Type` as sent.
    pub content_type: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    /// `<a href>` elements in the document (any scheme), like Scrapy's
    /// `len(response.css("a::attr(href)"))`.
    pub links: u32,
    /// `<img>` elements in the document.
    pub images: u32,
    /// The document's http(s) links, resolved, normalised and
    /// query-stripped, in document order, duplicates kept (off-site ones too).
    pub outlinks: Vec<String>,
    /// The paths (with query) fetched for it: the URL, then each redirect hop.
    pub requests: Vec<String>,
}

/// The exact outcome of a correct crawl of the site under [`CrawlRules`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// Every URL fetched and recorded, by normalised URL.
    pub pages: BTreeMap<String, ExpectedPage>,
    /// URLs found in fetched pages (within the depth limit) that are in
    /// scope but disallowed by robots.txt: never to be requested.
    pub robots_blocked: BTreeSet<String>,
    /// http(s) URLs found in fetched pages that are out of scope.
    pub out_of_scope: BTreeSet<String>,
    /// Every path (with query) the crawler may request on the site:
    /// the pages' [`ExpectedPage::requests`], `/robots.txt` when robots are
    /// obeyed, `/sitemap.xml` when sitemaps are on.
    pub allowed_requests: BTreeSet<String>,
}

impl Expected {
    /// The normalised URLs of every recorded page.
    pub fn urls(&self) -> BTreeSet<String> {
        self.pages.keys().cloned().collect()
    }

    /// The URLs whose outcome is `outcome`.
    pub fn with_outcome(&self, outcome: Outcome) -> BTreeSet<String> {
        self.pages
            .values()
            .filter(|p| p.outcome == outcome)
            .map(|p| p.url.clone())
            .collect()
    }
}

/// Where a URL is, for the walk.
enum Loc {
    /// On the site: path and path-with-query.
    Site { path: String, path_query: String },
    /// On the subdomain-ish host (in scope only with `subdomains`).
    Sub,
    /// Another host.
    Other,
}

pub(crate) fn compute(model: &Model, rules: &CrawlRules) -> Expected {
    let allow = compile(&rules.allow);
    let deny = compile(&rules.deny);
    let robots = (rules.respect_robots && model.cfg.traps.robots)
        .then(|| RobotsRules::for_agent(model, &rules.user_agent));
    let mut out = Expected::default();
    if rules.respect_robots {
        out.allowed_requests.insert("/robots.txt".to_owned());
    }

    // Levels keyed by depth, so seeds at different depths still give each
    // URL its smallest depth.
    let mut levels: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut best: HashMap<String, u32> = HashMap::new();
    let push = |levels: &mut BTreeMap<u32, Vec<String>>,
                best: &mut HashMap<String, u32>,
                url: String,
                depth: u32| {
        if best.get(&url).is_none_or(|d| *d > depth) {
            best.insert(url.clone(), depth);
            levels.entry(depth).or_default().push(url);
        }
    };
    let mut seeds: Vec<(String, u32)> = rules
        .start
        .iter()
        .map(|s| (absolute(model, s), 0))
        .collect();
    if rules.sitemaps && model.cfg.traps.sitemap {
        out.allowed_requests.insert("/sitemap.xml".to_owned());
        seeds.extend(
            model
                .sitemap_paths()
                .into_iter()
                .map(|p| (format!("{}{p}", model.base), rules.sitemap_depth)),
        );
    }
    for (url, depth) in seeds {
        let url = strip(&url, &rules.strip_query);
        if robots
            .as_ref()
            .is_some_and(|r| is_site(model, &url) && !r.allows(&path_query(&url)))
        {
            out.robots_blocked.insert(url);
            continue;
        }
        push(&mut levels, &mut best, url, depth);
    }

    while let Some((depth, urls)) = levels.pop_first() {
        for url in urls {
            if best.get(&url) != Some(&depth) || out.pages.contains_key(&url) {
                continue;
            }
            let page = fetch(model, rules, &url, depth);
            out.allowed_requests.extend(page.requests.iter().cloned());
            let follow = page.outcome == Outcome::Page && rules.max_depth.is_none_or(|m| depth < m);
            if follow {
                for link in &page.outlinks {
                    if !in_scope(model, rules, &allow, &deny, link) {
                        out.out_of_scope.insert(link.clone());
                        continue;
                    }
                    if robots
                        .as_ref()
                        .is_some_and(|r| is_site(model, link) && !r.allows(&path_query(link)))
                    {
                        out.robots_blocked.insert(link.clone());
                        continue;
                    }
                    push(&mut levels, &mut best, link.clone(), depth + 1);
                }
            }
            out.pages.insert(url, page);
        }
    }
    out
}

fn compile(patterns: &[String]) -> Vec<Regex> {
    patterns
        .iter()
        .map(|p| Regex::new(p).unwrap_or_else(|e| panic!("bad regex {p:?}: {e}")))
        .collect()
}

/// A start URL as an absolute URL string (paths are on the site).
fn absolute(model: &Model, s: &str) -> String {
    if s.starts_with('/') {
        format!("{}{s}", model.base)
    } else {
        Url::parse(s)
            .unwrap_or_else(|e| panic!("bad start URL {s:?}: {e}"))
            .to_string()
    }
}

fn host_of(url: &str) -> String {
    Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default()
}

fn is_site(model: &Model, url: &str) -> bool {
    host_of(url) == model.host
}

fn path_query(url: &str) -> String {
    let u = Url::parse(url).expect("normalised URLs parse");
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    }
}

fn locate(model: &Model, url: &str) -> Loc {
    let u = Url::parse(url).expect("normalised URLs parse");
    let host = u.host_str().unwrap_or_default().to_ascii_lowercase();
    if host == model.host && u.port_or_known_default() == Some(model.port) {
        Loc::Site {
            path: u.path().to_owned(),
            path_query: path_query(url),
        }
    } else if host == model.sub_host() {
        Loc::Sub
    } else {
        Loc::Other
    }
}

fn in_scope(model: &Model, rules: &CrawlRules, allow: &[Regex], deny: &[Regex], url: &str) -> bool {
    if rules.same_host {
        let host = host_of(url);
        let ok =
            host == model.host || rules.subdomains && host.ends_with(&format!(".{}", model.host));
        if !ok {
            return false;
        }
    }
    (allow.is_empty() || allow.iter().any(|r| r.is_match(url)))
        && !deny.iter().any(|r| r.is_match(url))
}

/// The canonical URL of a link target, query-stripped.
fn canonical(model: &Model, target: &Target, strip_query: &[String]) -> String {
    match target {
        Target::Site { path, query } => {
            let url = match query {
                Some(q) => format!("{}{path}?{q}", model.base),
                None => format!("{}{path}", model.base),
            };
            strip(&url, strip_query)
        }
        Target::Other { url, .. } => strip(url, strip_query),
    }
}

/// `url` without the query parameters whose names match `globs`
/// (no `?` left when none remain).
fn strip(url: &str, globs: &[String]) -> String {
    if globs.is_empty() {
        return url.to_owned();
    }
    let Some((head, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| {
            let name = kv.split('=').next().unwrap_or_default();
            !globs.iter().any(|g| glob(g, name))
        })
        .collect();
    if kept.is_empty() {
        head.to_owned()
    } else {
        format!("{head}?{}", kept.join("&"))
    }
}

/// `*`-glob match of the whole `text`.
fn glob(pattern: &str, text: &str) -> bool {
    wildcard(pattern.as_bytes(), text.as_bytes(), true)
}

/// Does `pattern` (`*` = any run) match `text`? With `whole` the match must
/// reach the end of `text`; without, a prefix match is enough.
fn wildcard(pattern: &[u8], text: &[u8], whole: bool) -> bool {
    match pattern.split_first() {
        None => !whole || text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| wildcard(rest, &text[i..], whole)),
        Some((c, rest)) => text.first() == Some(c) && wildcard(rest, &text[1..], whole),
    }
}

fn fetch(model: &Model, rules: &CrawlRules, url: &str, depth: u32) -> ExpectedPage {
    let mut page = ExpectedPage {
        url: url.to_owned(),
        final_url: url.to_owned(),
        depth,
        status: None,
        outcome: Outcome::Unresolved,
        content_type: None,
        title: None,
        description: None,
        links: 0,
        images: 0,
        outlinks: Vec::new(),
        requests: Vec::new(),
    };
    let Loc::Site {
        mut path,
        path_query,
    } = locate(model, url)
    else {
        return page;
    };
    page.requests.push(path_query);
    let mut resource = model.resource(&path);
    let mut redirects = 0;
    while let Some(Resource::Redirect { target, .. }) = &resource {
        redirects += 1;
        if redirects > rules.max_redirects || page.requests.contains(target) {
            page.outcome = Outcome::TooManyRedirects;
            return page;
        }
        path.clone_from(target);
        page.requests.push(target.clone());
        page.final_url = format!("{}{target}", model.base);
        resource = model.resource(&path);
    }
    if let Some(Resource::FailFirst { then, .. }) = resource {
        resource = Some(*then);
    }
    match resource {
        None => {
            page.outcome = Outcome::HttpError;
            page.status = Some(404);
            page.content_type = Some("text/plain; charset=utf-8".to_owned());
        }
        Some(Resource::Error { status }) => {
            page.outcome = Outcome::HttpError;
            page.status = Some(status);
            page.content_type = Some("text/plain; charset=utf-8".to_owned());
        }
        Some(Resource::Huge { bytes }) => {
            page.status = Some(200);
            page.content_type = Some(HTML_UTF8.to_owned());
            if bytes > rules.max_body_bytes {
                page.outcome = Outcome::TooLarge;
            } else {
                page.outcome = Outcome::Page;
                page.title = Some(
                    HUGE_HEAD
                        .split_once("<title>")
                        .and_then(|(_, t)| t.split_once("</title>"))
                        .map(|(t, _)| t.to_owned())
                        .unwrap_or_default(),
                );
            }
        }
        Some(Resource::Endless) => {
            page.status = Some(200);
            page.content_type = Some(HTML_UTF8.to_owned());
            page.outcome = Outcome::TooLarge;
        }
        Some(Resource::Doc(doc)) => {
            page.status = Some(200);
            if doc.body.len() as u64 > rules.max_body_bytes {
                page.outcome = Outcome::TooLarge;
                page.content_type = Some(doc.content_type);
            } else {
                fill(model, rules, &mut page, doc);
            }
        }
        Some(Resource::Redirect { .. } | Resource::FailFirst { .. }) => {
            unreachable!("redirects are followed and FailFirst unwrapped above")
        }
    }
    page
}

fn fill(model: &Model, rules: &CrawlRules, page: &mut ExpectedPage, doc: Doc) {
    page.outcome = Outcome::Page;
    page.content_type = Some(doc.content_type);
    page.title = doc.title;
    page.description = doc.description;
    page.links = doc.links.len() as u32;
    page.images = doc.images;
    page.outlinks = doc
        .links
        .iter()
        .filter_map(|l| l.target.as_ref())
        .map(|t| canonical(model, t, &rules.strip_query))
        .collect();
}

/// The robots.txt rules that apply to one user agent.
pub(crate) struct RobotsRules {
    /// (pattern, allow)
    rules: Vec<(String, bool)>,
}

impl RobotsRules {
    /// The groups naming the agent's product token (case-insensitive,
    /// equal), merged; else the `*` groups, merged.
    pub(crate) fn for_agent(model: &Model, user_agent: &str) -> RobotsRules {
        let token = user_agent
            .split(['/', ' '])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let groups = model.robots_groups();
        let pick = |want: &str| -> Vec<(String, bool)> {
            groups
                .iter()
                .filter(|g| g.agents.iter().any(|a| a.to_ascii_lowercase() == want))
                .flat_map(|g| {
                    g.allow
                        .iter()
                        .map(|a| (a.clone(), true))
                        .chain(g.disallow.iter().map(|d| (d.clone(), false)))
                })
                .collect()
        };
        let named = groups
            .iter()
            .any(|g| g.agents.iter().any(|a| a.to_ascii_lowercase() == token));
        let rules = if named { pick(&token) } else { pick("*") };
        RobotsRules { rules }
    }

    /// Longest matching pattern wins; on a tie Allow wins; no match allows.
    pub(crate) fn allows(&self, path_query: &str) -> bool {
        if path_query == "/robots.txt" {
            return true;
        }
        let mut best: Option<(usize, bool)> = None;
        for (pattern, allow) in &self.rules {
            if pattern.is_empty() {
                continue;
            }
            let (pat, anchored) = match pattern.strip_suffix('$') {
                Some(p) => (p, true),
                None => (pattern.as_str(), false),
            };
            if wildcard(pat.as_bytes(), path_query.as_bytes(), anchored) {
                let len = pattern.len();
                if best.is_none_or(|(l, a)| len > l || len == l && *allow && !a) {
                    best = Some((len, *allow));
                }
            }
        }
        best.is_none_or(|(_, allow)| allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_and_glob() {
        assert!(glob("utm_*", "utm_source"));
        assert!(!glob("utm_*", "xutm_source"));
        assert!(glob("ref", "ref"));
        assert!(!glob("ref", "refs"));
        assert!(wildcard(b"/*.cgi", b"/run.cgi?x=1", false));
        assert!(!wildcard(b"/*.cgi", b"/run.cgi?x=1", true));
        assert!(wildcard(b"/*.cgi", b"/a/run.cgi", true));
    }

    #[test]
    fn strip_keeps_other_params_in_order() {
        let g = vec!["utm_*".to_owned()];
        assert_eq!(
            strip("http://h/p?utm_a=1&b=2&utm_c=3&d", &g),
            "http://h/p?b=2&d"
        );
        assert_eq!(strip("http://h/p?utm_a=1", &g), "http://h/p");
        assert_eq!(strip("http://h/p", &g), "http://h/p");
    }
}
