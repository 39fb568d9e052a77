//! What the site serves at each path, generated from its [`SiteConfig`].
//!
//! Content is a pure function of the config and the base URL: the server
//! renders it, and the ground truth ([`super::expect`]) walks the same
//! structures, so the two cannot disagree about a link.

use std::fmt::Write as _;

use super::{RobotsGroup, SiteConfig};

/// Words of the ~4 KB text, as in `gen_site.py`.
const WORDS: [&str; 15] = [
    "async", "await", "tokio", "rust", "future", "task", "queue", "crawler", "worker", "pool",
    "cache", "metric", "retry", "backoff", "limit",
];

/// A 1×1 PNG (valid signature, IHDR, IDAT, IEND).
pub(crate) const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// A minimal PDF.
pub(crate) const PDF: &[u8] = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";

/// `text/html; charset=utf-8`, the type of every generated UTF-8 page.
pub(crate) const HTML_UTF8: &str = "text/html; charset=utf-8";

/// SplitMix64: tiny, seedable, and stable forever (no dependency whose
/// stream could change under a version bump and reshuffle the graph).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// `k` distinct values of `0..n`, in random order.
    pub(crate) fn sample(&mut self, n: usize, k: usize) -> Vec<usize> {
        let k = k.min(n);
        if n <= 2 * k {
            let mut all: Vec<usize> = (0..n).collect();
            for i in 0..k {
                let j = i + self.below(n - i);
                all.swap(i, j);
            }
            all.truncate(k);
            return all;
        }
        let mut out = Vec::with_capacity(k);
        while out.len() < k {
            let v = self.below(n);
            if !out.contains(&v) {
                out.push(v);
            }
        }
        out
    }
}

/// Where a link points, as the site means it (independent of its spelling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A path on the site itself; `query` as written (before stripping).
    Site { path: String, query: Option<String> },
    /// A URL on another host (canonical form), with its lower-case host.
    Other { url: String, host: String },
}

/// One `<a href>` of a page.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    /// The attribute value as written in the HTML (before entity decoding).
    pub(crate) href: String,
    /// `None` for non-http(s) links (mailto:, javascript:, data:, tel:, ftp:).
    pub(crate) target: Option<Target>,
}

impl Link {
    fn site(href: impl Into<String>, path: impl Into<String>) -> Link {
        Link {
            href: href.into(),
            target: Some(Target::Site {
                path: path.into(),
                query: None,
            }),
        }
    }
    fn site_query(href: impl Into<String>, path: &str, query: &str) -> Link {
        Link {
            href: href.into(),
            target: Some(Target::Site {
                path: path.to_owned(),
                query: Some(query.to_owned()),
            }),
        }
    }
    fn other(href: impl Into<String>, url: &str, host: &str) -> Link {
        Link {
            href: href.into(),
            target: Some(Target::Other {
                url: url.to_owned(),
                host: host.to_owned(),
            }),
        }
    }
    fn none(href: impl Into<String>) -> Link {
        Link {
            href: href.into(),
            target: None,
        }
    }
}

/// An HTML (or other 200) document with what a correct extractor finds in it.
#[derive(Debug, Clone)]
pub(crate) struct Doc {
    pub(crate) content_type: String,
    pub(crate) body: Vec<u8>,
    pub(crate) title: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) links: Vec<Link>,
    pub(crate) images: u32,
}

/// What the server answers for one path.
#[derive(Debug, Clone)]
pub(crate) enum Resource {
    Doc(Doc),
    /// A redirect to `target` (a site path), written as `location`.
    Redirect {
        status: u16,
        location: String,
        target: String,
    },
    /// An error status with a short `text/plain` body and no links.
    Error {
        status: u16,
    },
    /// `status` (with `Retry-After: retry_after` when set) for the first
    /// `times` requests of the path, then `then`.
    FailFirst {
        status: u16,
        retry_after: Option<u64>,
        times: u64,
        then: Box<Resource>,
    },
    /// `bytes` of HTML, streamed in chunks without a Content-Length.
    Huge {
        bytes: u64,
    },
    /// HTML that never ends.
    Endless,
}

/// The site: config plus the generated link graph of the plain pages.
#[derive(Debug, Clone)]
pub(crate) struct Model {
    pub(crate) cfg: SiteConfig,
    /// `http://host:port`, no trailing slash.
    pub(crate) base: String,
    /// The host links are written with (lower case).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Plain page `i` links to `graph[i]`.
    pub(crate) graph: Vec<Vec<usize>>,
}

impl Model {
    pub(crate) fn new(cfg: SiteConfig, port: u16) -> Model {
        let host = cfg.host_name.clone().to_ascii_lowercase();
        let base = format!("http://{host}:{port}");
        let graph = match &cfg.graph {
            Some(g) => g.clone(),
            None => {
                let mut rng = Rng::new(cfg.seed);
                (0..cfg.pages)
                    .map(|_| rng.sample(cfg.pages, cfg.links_per_page))
                    .collect()
            }
        };
        Model {
            cfg,
            base,
            host,
            port,
            graph,
        }
    }

    pub(crate) fn pages(&self) -> usize {
        self.graph.len()
    }

    /// The subdomain-ish host: `sub.<host>` for a named host; for an IP
    /// literal (which has no subdomains) `sub.localhost`.
    pub(crate) fn sub_host(&self) -> String {
        if self.host.parse::<std::net::IpAddr>().is_ok() {
            "sub.localhost".to_owned()
        } else {
            format!("sub.{}", self.host)
        }
    }

    /// A plain page index that exists (pages are never empty when linked).
    fn page(&self, i: usize) -> usize {
        i % self.pages().max(1)
    }

    /// What `path` (no query) serves; `None` = 404.
    pub(crate) fn resource(&self, path: &str) -> Option<Resource> {
        let t = &self.cfg.traps;
        if path == "/" {
            return Some(Resource::Doc(self.index()));
        }
        if path == "/robots.txt" {
            return t
                .robots
                .then(|| Resource::Doc(text("text/plain; charset=utf-8", self.robots_txt())));
        }
        if let Some(rest) = path.strip_prefix("/p/") {
            let i = rest.strip_suffix(".html")?;
            if i.is_empty()
                || !i.bytes().all(|b| b.is_ascii_digit())
                || i.starts_with('0') && i != "0"
            {
                return None;
            }
            let i: usize = i.parse().ok()?;
            return (i < self.pages()).then(|| Resource::Doc(self.plain(i)));
        }
        if let Some(k) = path.strip_prefix("/img/") {
            let k = k.strip_suffix(".png")?;
            return matches!(k, "0" | "1" | "2" | "3" | "4")
                .then(|| Resource::Doc(binary("image/png", PNG)));
        }
        if t.binaries && path == "/files/doc.pdf" {
            return Some(Resource::Doc(binary("application/pdf", PDF)));
        }
        if t.calendar
            && let Some(rest) = path.strip_prefix("/cal/")
        {
            return self.calendar(rest).map(Resource::Doc);
        }
        if t.redirect_loop {
            match path {
                "/loop/a" => return Some(redirect(302, "/loop/b", "/loop/b")),
                "/loop/b" => return Some(redirect(302, "/loop/a", "/loop/a")),
                _ => {}
            }
        }
        if t.redirect_chain {
            match path {
                "/chain/1" => return Some(redirect(301, "/chain/2", "/chain/2")),
                "/chain/2" => {
                    let abs = format!("{}/chain/3", self.base);
                    return Some(redirect(302, &abs, "/chain/3"));
                }
                "/chain/3" => return Some(redirect(307, "end.html", "/chain/end.html")),
                "/chain/end.html" => {
                    return Some(Resource::Doc(html_doc(
                        "Chain end",
                        Some("Reached after three redirects"),
                        vec![Link::site("/p/0.html", format!("/p/{}.html", self.page(0)))],
                        0,
                    )));
                }
                _ => {}
            }
        }
        if t.huge && path == "/huge.html" {
            return Some(Resource::Huge {
                bytes: self.cfg.huge_bytes,
            });
        }
        if t.endless && path == "/endless.html" {
            return Some(Resource::Endless);
        }
        if t.malformed && path == "/odd/malformed.html" {
            return Some(Resource::Doc(self.malformed()));
        }
        if t.latin1 && path == "/odd/latin1.html" {
            return Some(Resource::Doc(self.latin1()));
        }
        if t.shift_jis && path == "/odd/sjis.html" {
            return Some(Resource::Doc(self.shift_jis()));
        }
        if t.spellings && path == "/odd/spellings.html" {
            return Some(Resource::Doc(self.spellings()));
        }
        if t.robots {
            if path.starts_with("/private/") {
                let title = if path == "/private/public.html" {
                    "Public part of private"
                } else {
                    "Private"
                };
                return Some(Resource::Doc(html_doc(title, None, Vec::new(), 0)));
            }
            if path == "/run.cgi" {
                return Some(Resource::Doc(html_doc("Script", None, Vec::new(), 0)));
            }
            if path == "/special/only.html" {
                return Some(Resource::Doc(html_doc("Special", None, Vec::new(), 0)));
            }
        }
        if t.errors && path == "/error500.html" {
            return Some(Resource::Error { status: 500 });
        }
        if t.rate_limited && path == "/rate/limited.html" {
            return Some(Resource::FailFirst {
                status: 429,
                retry_after: Some(self.cfg.retry_after_secs),
                times: self.cfg.fail_times,
                then: Box::new(Resource::Doc(html_doc(
                    "Rate limited",
                    Some("Served after a 429"),
                    Vec::new(),
                    0,
                ))),
            });
        }
        if t.flaky && path == "/flaky.html" {
            return Some(Resource::FailFirst {
                status: 503,
                retry_after: None,
                times: self.cfg.fail_times,
                then: Box::new(Resource::Doc(html_doc(
                    "Flaky",
                    Some("Served after a 503"),
                    Vec::new(),
                    0,
                ))),
            });
        }
        if t.sitemap {
            if path == "/sitemap.xml" {
                return Some(Resource::Doc(text("application/xml", self.sitemap_xml())));
            }
            if path == "/sitemap-only.html" {
                return Some(Resource::Doc(html_doc(
                    "Only in the sitemap",
                    Some("Linked from nowhere"),
                    Vec::new(),
                    0,
                )));
            }
        }
        None
    }

    fn index(&self) -> Doc {
        let t = &self.cfg.traps;
        let mut links = Vec::new();
        if self.pages() > 0 {
            links.push(Link::site("/p/0.html", "/p/0.html"));
        }
        let add = |links: &mut Vec<Link>, on: bool, paths: &[&str]| {
            if on {
                links.extend(paths.iter().map(|p| Link::site(*p, *p)));
            }
        };
        add(&mut links, t.calendar, &["/cal/2024/01"]);
        add(&mut links, t.redirect_loop, &["/loop/a"]);
        add(&mut links, t.redirect_chain, &["/chain/1"]);
        add(&mut links, t.huge, &["/huge.html"]);
        add(&mut links, t.endless, &["/endless.html"]);
        add(&mut links, t.malformed, &["/odd/malformed.html"]);
        add(&mut links, t.latin1, &["/odd/latin1.html"]);
        add(&mut links, t.shift_jis, &["/odd/sjis.html"]);
        add(&mut links, t.spellings, &["/odd/spellings.html"]);
        add(
            &mut links,
            t.robots,
            &[
                "/private/index.html",
                "/private/public.html",
                "/run.cgi",
                "/special/only.html",
            ],
        );
        if t.robots {
            links.push(Link::site_query("/run.cgi?x=1", "/run.cgi", "x=1"));
        }
        add(&mut links, t.errors, &["/missing.html", "/error500.html"]);
        add(&mut links, t.rate_limited, &["/rate/limited.html"]);
        add(&mut links, t.flaky, &["/flaky.html"]);
        add(&mut links, t.binaries, &["/files/doc.pdf", "/img/0.png"]);
        html_doc("Home", Some("Test site home"), links, 0)
    }

    /// Plain page `i`: the layout of `gen_site.py`.
    fn plain(&self, i: usize) -> Doc {
        let n = self.pages();
        let mut rng = Rng::new(self.cfg.seed ^ (i as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
        let mut text = String::with_capacity(self.cfg.words * 8);
        for w in 0..self.cfg.words {
            if w > 0 {
                text.push(' ');
            }
            text.push_str(WORDS[rng.below(WORDS.len())]);
        }
        let mut links: Vec<Link> = self.graph[i]
            .iter()
            .map(|j| {
                let p = format!("/p/{j}.html");
                Link::site(p.clone(), p)
            })
            .collect();
        links.push(Link::other(
            "http://offsite.invalid/x",
            "http://offsite.invalid/x",
            "offsite.invalid",
        ));
        links.push(Link::none("mailto:a@b.c"));
        if self.cfg.traps.robots && i % 10 == 3 {
            let p = format!("/private/{i}.html");
            links.push(Link::site(p.clone(), p));
        }
        let images = (i % 5) as u32;
        let mut html = format!(
            "<!doctype html><html><head><title>Page {i}</title>\n\
             <meta name=\"description\" content=\"Synthetic page {i} of {n}\">\n\
             </head><body>\n<h1>Page {i}</h1><p>{text}</p><ul>\n"
        );
        render_links(&mut html, &links, images, "li");
        html.push_str("</ul></body></html>");
        Doc {
            content_type: HTML_UTF8.to_owned(),
            body: html.into_bytes(),
            title: Some(format!("Page {i}")),
            description: Some(format!("Synthetic page {i} of {n}")),
            links,
            images,
        }
    }

    /// `/cal/YYYY/MM`: links to the next month, forever (and home).
    fn calendar(&self, rest: &str) -> Option<Doc> {
        let (y, m) = rest.split_once('/')?;
        if y.len() != 4 || m.len() != 2 {
            return None;
        }
        let (y, m): (u32, u32) = (y.parse().ok()?, m.parse().ok()?);
        if !(1..=12).contains(&m) {
            return None;
        }
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        let next = format!("/cal/{ny:04}/{nm:02}");
        Some(html_doc(
            &format!("Calendar {y:04}-{m:02}"),
            Some("Month view"),
            vec![Link::site(next.clone(), next), Link::site("/", "/")],
            0,
        ))
    }

    fn malformed(&self) -> Doc {
        let (a, b, c) = (self.page(3), self.page(4), self.page(5));
        let mut body = format!(
            "<html><head><title>Malformed page</title>\
             <meta name=\"description\" content=\"Broken but readable\">\
             <body><div><p>unclosed paragraph <b>bold <i>italic\n\
             <a href=\"/p/{a}.html\">unclosed anchor\n\
             <a href=/p/{b}.html>unquoted attribute</a>\n\
             <div class=\"x\"id=\"y\"><a   HREF = '/p/{c}.html' >upper-case name, spaces</a>\n\
             </span></div></div></table> stray end tags &amp no semicolon &bogus; \
             <img src=\"/img/1.png\"alt=\"glued attributes\">\n<p>garbage bytes: "
        )
        .into_bytes();
        body.extend_from_slice(&[0xff, 0xfe, 0x00, 0xc3, 0x28, 0x80, 0x9f]);
        body.extend_from_slice(b" &lt;&gt; <<<>>> </p>");
        Doc {
            content_type: "text/html".to_owned(),
            body,
            title: Some("Malformed page".to_owned()),
            description: Some("Broken but readable".to_owned()),
            links: vec![
                Link::site(format!("/p/{a}.html"), format!("/p/{a}.html")),
                Link::site(format!("/p/{b}.html"), format!("/p/{b}.html")),
                Link::site(format!("/p/{c}.html"), format!("/p/{c}.html")),
            ],
            images: 1,
        }
    }

    /// Latin-1, declared only by the Content-Type header.
    fn latin1(&self) -> Doc {
        let title = "Café Zürich";
        let description = "Crème brûlée à la carte";
        let html = format!(
            "<html><head><title>{title}</title><meta name=\"description\" content=\"{description}\">\
             </head><body><p>Ça coûte 5 €? Non: £5, ¥, ©.</p><a href=\"/p/{}.html\">zurück</a></body></html>",
            self.page(0)
        )
        .replace('€', "EUR");
        let body: Vec<u8> = html.chars().map(|c| c as u32 as u8).collect();
        Doc {
            content_type: "text/html; charset=ISO-8859-1".to_owned(),
            body,
            title: Some(title.to_owned()),
            description: Some(description.to_owned()),
            links: vec![Link::site(
                format!("/p/{}.html", self.page(0)),
                format!("/p/{}.html", self.page(0)),
            )],
            images: 0,
        }
    }

    /// Shift_JIS, declared only by `<meta charset>` (Content-Type has none).
    fn shift_jis(&self) -> Doc {
        // "日本語のページ" and "文字コードのテスト" in Shift_JIS.
        const TITLE: &[u8] = b"\x93\xfa\x96{\x8c\xea\x82\xcc\x83y\x81[\x83W";
        const DESC: &[u8] = b"\x95\xb6\x8e\x9a\x83R\x81[\x83h\x82\xcc\x83e\x83X\x83g";
        let p = format!("/p/{}.html", self.page(1));
        let mut body = b"<html><head><meta charset=\"Shift_JIS\"><title>".to_vec();
        body.extend_from_slice(TITLE);
        body.extend_from_slice(b"</title><meta name=\"description\" content=\"");
        body.extend_from_slice(DESC);
        body.extend_from_slice(format!("\"></head><body><a href=\"{p}\">").as_bytes());
        body.extend_from_slice(TITLE);
        body.extend_from_slice(b"</a></body></html>");
        Doc {
            content_type: "text/html".to_owned(),
            body,
            title: Some("日本語のページ".to_owned()),
            description: Some("文字コードのテスト".to_owned()),
            links: vec![Link::site(p.clone(), p)],
            images: 0,
        }
    }

    /// One page, many spellings of it, and links that are not pages.
    fn spellings(&self) -> Doc {
        let i = self.page(1);
        let p = format!("/p/{i}.html");
        let (host, port, base) = (&self.host, self.port, &self.base);
        let digits = i.to_string();
        let first = digits.as_bytes()[0];
        let pct_digit = format!("/p/%{first:02X}{}.html", &digits[1..]);
        let upper_host = if host.parse::<std::net::IpAddr>().is_ok() {
            // An IP literal has no case: upper-case the scheme instead.
            format!("HTTP://{host}:{port}{p}")
        } else {
            format!("http://{}:{port}{p}", host.to_ascii_uppercase())
        };
        let sub = self.sub_host();
        let mut links = vec![
            Link::site(format!("{p}#top"), p.clone()),
            Link::site(format!("../p/{i}.html"), p.clone()),
            Link::site(format!("./../p/./{i}.html"), p.clone()),
            Link::site(format!("/p/../p/{i}.html"), p.clone()),
            Link::site(format!("/%70/{i}.html"), p.clone()),
            Link::site(pct_digit, p.clone()),
            Link::site(upper_host, p.clone()),
            Link::site(format!("{base}{p}"), p.clone()),
            Link::site(format!("//{host}:{port}{p}"), p.clone()),
            Link::site(format!("  {p}\n"), p.clone()),
            Link::site_query(
                format!("{p}?utm_source=news&utm_medium=email"),
                &p,
                "utm_source=news&utm_medium=email",
            ),
            Link::site_query(format!("{p}?utm_campaign=x#frag"), &p, "utm_campaign=x"),
            // Path case is significant: this one is a 404.
            Link::site(format!("/P/{i}.html"), format!("/P/{i}.html")),
            Link::other(
                "http://offsite.invalid/x",
                "http://offsite.invalid/x",
                "offsite.invalid",
            ),
            Link::other(
                "http://OFFSITE.invalid:80/x#y",
                "http://offsite.invalid/x",
                "offsite.invalid",
            ),
            Link::other(
                "https://other.invalid:443/page",
                "https://other.invalid/page",
                "other.invalid",
            ),
            Link::other(
                format!("http://{sub}:{port}{p}"),
                &format!("http://{sub}:{port}{p}"),
                &sub,
            ),
            Link::none("javascript:void(0)"),
            Link::none("JavaScript:alert(1)"),
            Link::none("mailto:someone@example.invalid"),
            Link::none("data:text/html,<a href=/p/0.html>x</a>"),
            Link::none("tel:+15550100"),
            Link::none(format!("ftp://{host}/file")),
        ];
        if self.pages() > 2 {
            // A second page, behind a fragment.
            let q = format!("/p/{}.html", self.page(2));
            links.push(Link::site(format!("{q}#a"), q));
        }
        html_doc(
            "Spellings",
            Some("The same page written many ways"),
            links,
            0,
        )
    }

    pub(crate) fn robots_groups(&self) -> Vec<RobotsGroup> {
        self.cfg.robots_groups.clone().unwrap_or_else(|| {
            vec![
                RobotsGroup {
                    agents: vec!["*".to_owned()],
                    allow: vec!["/private/public.html".to_owned()],
                    disallow: vec!["/private/".to_owned(), "/*.cgi$".to_owned()],
                    crawl_delay: self.cfg.crawl_delay,
                },
                RobotsGroup {
                    agents: vec!["special-bot".to_owned()],
                    allow: Vec::new(),
                    disallow: vec!["/special/".to_owned(), "/private/".to_owned()],
                    crawl_delay: self.cfg.crawl_delay,
                },
            ]
        })
    }

    pub(crate) fn robots_txt(&self) -> String {
        let mut s = String::from("# surge test site\n");
        for g in self.robots_groups() {
            for a in &g.agents {
                let _ = writeln!(s, "User-agent: {a}");
            }
            for a in &g.allow {
                let _ = writeln!(s, "Allow: {a}");
            }
            for d in &g.disallow {
                let _ = writeln!(s, "Disallow: {d}");
            }
            if let Some(d) = g.crawl_delay {
                let _ = writeln!(s, "Crawl-delay: {d}");
            }
            s.push('\n');
        }
        if self.cfg.traps.sitemap {
            let _ = writeln!(s, "Sitemap: {}/sitemap.xml", self.base);
        }
        s
    }

    /// Paths listed in `/sitemap.xml`.
    pub(crate) fn sitemap_paths(&self) -> Vec<String> {
        let mut v = vec!["/".to_owned()];
        v.extend((0..self.pages().min(3)).map(|i| format!("/p/{i}.html")));
        v.push("/sitemap-only.html".to_owned());
        v
    }

    fn sitemap_xml(&self) -> String {
        let mut s = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
        );
        for p in self.sitemap_paths() {
            let _ = writeln!(s, "  <url><loc>{}{p}</loc></url>", self.base);
        }
        s.push_str("</urlset>\n");
        s
    }
}

fn redirect(status: u16, location: &str, target: &str) -> Resource {
    Resource::Redirect {
        status,
        location: location.to_owned(),
        target: target.to_owned(),
    }
}

fn text(content_type: &str, body: String) -> Doc {
    Doc {
        content_type: content_type.to_owned(),
        body: body.into_bytes(),
        title: None,
        description: None,
        links: Vec::new(),
        images: 0,
    }
}

fn binary(content_type: &str, body: &[u8]) -> Doc {
    Doc {
        content_type: content_type.to_owned(),
        body: body.to_vec(),
        title: None,
        description: None,
        links: Vec::new(),
        images: 0,
    }
}

/// A small UTF-8 HTML page with these links and `images` images.
fn html_doc(title: &str, description: Option<&str>, links: Vec<Link>, images: u32) -> Doc {
    let mut html = format!(
        "<!doctype html><html><head><title>{}</title>\n",
        escape(title)
    );
    if let Some(d) = description {
        let _ = writeln!(
            html,
            "<meta name=\"description\" content=\"{}\">",
            escape(d)
        );
    }
    html.push_str("</head><body>\n");
    render_links(&mut html, &links, images, "");
    html.push_str("</body></html>\n");
    Doc {
        content_type: HTML_UTF8.to_owned(),
        body: html.into_bytes(),
        title: Some(title.to_owned()),
        description: description.map(str::to_owned),
        links,
        images,
    }
}

/// Appends the anchors (each in a `<wrap>` element when `wrap` is set)
/// and `images` images.
fn render_links(html: &mut String, links: &[Link], images: u32, wrap: &str) {
    for l in links {
        let href = escape(&l.href);
        if wrap.is_empty() {
            let _ = writeln!(html, "<a href=\"{href}\">link</a>");
        } else {
            let _ = writeln!(html, "<{wrap}><a href=\"{href}\">link</a></{wrap}>");
        }
    }
    for k in 0..images {
        let _ = writeln!(html, "<img src=\"/img/{k}.png\" alt=\"\">");
    }
}

/// HTML-escapes an attribute value or text (`&`, `<`, `>`, `"`).
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The first chunk of `/huge.html`: its head, with a title.
pub(crate) const HUGE_HEAD: &str =
    "<!doctype html><html><head><title>Huge page</title></head><body><p>";
/// The last chunk of `/huge.html`.
pub(crate) const HUGE_TAIL: &str = "</p></body></html>\n";
