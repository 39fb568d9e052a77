//! The test site serves what it claims, logs what it is asked, and its
//! ground truth is right on graphs small enough to check by hand.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use surge_testkit::site::{CrawlRules, Outcome, RobotsGroup, SiteConfig, TestSite, Traps};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("site-test/1.0")
        .build()
        .unwrap()
}

async fn get(site: &TestSite, path: &str) -> reqwest::Response {
    client().get(site.url(path)).send().await.unwrap()
}

fn ctype(r: &reqwest::Response) -> String {
    r.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned()
}

fn set(items: &[&str], base: &str) -> BTreeSet<String> {
    items.iter().map(|p| format!("{base}{p}")).collect()
}

#[tokio::test]
async fn plain_pages_follow_the_gen_site_layout() {
    let site = TestSite::start(SiteConfig::plain(30)).await;
    assert_eq!(site.pages(), 30);
    let home = get(&site, "/").await;
    assert_eq!(home.status(), 200);
    assert!(home.text().await.unwrap().contains("href=\"/p/0.html\""));
    for i in [0usize, 7, 29] {
        let r = get(&site, &format!("/p/{i}.html")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(ctype(&r), "text/html; charset=utf-8");
        let body = r.text().await.unwrap();
        assert!(body.contains(&format!("<title>Page {i}</title>")));
        assert!(body.contains(&format!("content=\"Synthetic page {i} of 30\"")));
        assert!(body.len() > 4000, "~4 KB of text, got {}", body.len());
        assert_eq!(body.matches("<img ").count(), i % 5);
        let graph = &site.graph()[i];
        assert_eq!(graph.len(), 20);
        assert_eq!(graph.iter().collect::<BTreeSet<_>>().len(), 20, "distinct");
        for j in graph {
            assert!(body.contains(&format!("href=\"/p/{j}.html\"")));
        }
        assert_eq!(body.matches("<a ").count(), 22, "20 + off-site + mailto");
        assert!(body.contains("href=\"http://offsite.invalid/x\""));
        assert!(body.contains("href=\"mailto:a@b.c\""));
    }
    assert_eq!(get(&site, "/p/30.html").await.status(), 404);
    assert_eq!(get(&site, "/p/07.html").await.status(), 404);
    assert_eq!(
        get(&site, "/robots.txt").await.status(),
        404,
        "no robots trap"
    );
    assert_eq!(get(&site, "/img/3.png").await.status(), 200);

    // The graph is a function of the seed.
    let again = TestSite::start(SiteConfig::plain(30)).await;
    assert_eq!(again.graph(), site.graph());
    let other = TestSite::start(SiteConfig::plain(30).seed(8)).await;
    assert_ne!(other.graph(), site.graph());
}

#[tokio::test]
async fn traps_serve_what_they_claim() {
    let site = TestSite::start(SiteConfig::new(10).huge_bytes(300_000).crawl_delay(0.5)).await;

    let robots = get(&site, "/robots.txt").await.text().await.unwrap();
    assert_eq!(robots, site.robots_txt());
    for line in [
        "User-agent: *",
        "Allow: /private/public.html",
        "Disallow: /private/",
        "Disallow: /*.cgi$",
        "User-agent: special-bot",
        "Disallow: /special/",
        "Crawl-delay: 0.5",
    ] {
        assert!(robots.lines().any(|l| l == line), "{line} in {robots}");
    }
    let sitemap_line = format!("Sitemap: {}/sitemap.xml", site.base_url());
    assert!(robots.lines().any(|l| l == sitemap_line));
    let sitemap = get(&site, "/sitemap.xml").await.text().await.unwrap();
    assert!(sitemap.contains(&format!("<loc>{}/sitemap-only.html</loc>", site.base_url())));

    let cal = get(&site, "/cal/2024/12").await.text().await.unwrap();
    assert!(cal.contains("<title>Calendar 2024-12</title>"));
    assert!(cal.contains("href=\"/cal/2025/01\""));
    assert_eq!(get(&site, "/cal/2024/13").await.status(), 404);

    for (path, status, location) in [
        ("/loop/a", 302, "/loop/b".to_owned()),
        ("/loop/b", 302, "/loop/a".to_owned()),
        ("/chain/1", 301, "/chain/2".to_owned()),
        ("/chain/2", 302, site.url("/chain/3")),
        ("/chain/3", 307, "end.html".to_owned()),
    ] {
        let r = get(&site, path).await;
        assert_eq!(r.status().as_u16(), status, "{path}");
        assert_eq!(r.headers()[reqwest::header::LOCATION], location.as_str());
    }
    let end = get(&site, "/chain/end.html").await.text().await.unwrap();
    assert!(end.contains("<title>Chain end</title>"));

    // Huge: exactly huge_bytes, chunked (no Content-Length).
    let mut huge = get(&site, "/huge.html").await;
    assert!(
        huge.headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .is_none()
    );
    let mut total = 0usize;
    while let Some(chunk) = huge.chunk().await.unwrap() {
        total += chunk.len();
    }
    assert_eq!(total, 300_000);

    // Endless: still going after 4 MB.
    let mut endless = get(&site, "/endless.html").await;
    let mut read = 0usize;
    while read < 4 << 20 {
        read += endless.chunk().await.unwrap().expect("never ends").len();
    }
    drop(endless);

    let malformed = get(&site, "/odd/malformed.html").await;
    assert_eq!(ctype(&malformed), "text/html");
    let bytes = malformed.bytes().await.unwrap();
    assert!(std::str::from_utf8(&bytes).is_err(), "garbage bytes");
    assert!(bytes.windows(5).any(|w| w == b"<a hr"));

    let latin1 = get(&site, "/odd/latin1.html").await;
    assert_eq!(ctype(&latin1), "text/html; charset=ISO-8859-1");
    let bytes = latin1.bytes().await.unwrap();
    let decoded: String = bytes.iter().map(|b| char::from(*b)).collect();
    assert!(decoded.contains("<title>Café Zürich</title>"));
    assert!(std::str::from_utf8(&bytes).is_err(), "not UTF-8");

    let sjis = get(&site, "/odd/sjis.html").await;
    assert_eq!(ctype(&sjis), "text/html", "charset only in <meta>");
    let bytes = sjis.bytes().await.unwrap();
    assert!(bytes.starts_with(b"<html><head><meta charset=\"Shift_JIS\">"));
    assert!(std::str::from_utf8(&bytes).is_err(), "not UTF-8");

    let spell = get(&site, "/odd/spellings.html")
        .await
        .text()
        .await
        .unwrap();
    for href in [
        "href=\"/p/1.html#top\"",
        "href=\"../p/1.html\"",
        "href=\"/%70/1.html\"",
        "href=\"/p/%31.html\"",
        "href=\"/p/1.html?utm_source=news&amp;utm_medium=email\"",
        "href=\"javascript:void(0)\"",
        "href=\"http://OFFSITE.invalid:80/x#y\"",
    ] {
        assert!(spell.contains(href), "{href}");
    }
    assert!(spell.contains(&format!(
        "href=\"HTTP://127.0.0.1:{}/p/1.html\"",
        site.addr().port()
    )));

    for (path, status) in [
        ("/missing.html", 404),
        ("/error500.html", 500),
        ("/private/public.html", 200),
        ("/run.cgi?x=1", 200),
    ] {
        assert_eq!(get(&site, path).await.status().as_u16(), status, "{path}");
    }

    let limited = get(&site, "/rate/limited.html").await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()[reqwest::header::RETRY_AFTER], "1");
    assert_eq!(get(&site, "/rate/limited.html").await.status(), 200);
    assert_eq!(get(&site, "/flaky.html").await.status(), 503);
    assert_eq!(get(&site, "/flaky.html").await.status(), 200);
    assert_eq!(get(&site, "/flaky.html").await.status(), 200);

    let pdf = get(&site, "/files/doc.pdf").await;
    assert_eq!(ctype(&pdf), "application/pdf");
    assert!(pdf.bytes().await.unwrap().starts_with(b"%PDF-"));
    let png = get(&site, "/img/0.png").await;
    assert_eq!(ctype(&png), "image/png");
    assert!(png.bytes().await.unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));
}

#[tokio::test]
async fn every_request_is_logged_with_host_and_user_agent() {
    let site = TestSite::start(SiteConfig::new(5)).await;
    get(&site, "/p/1.html?utm_source=x").await;
    get(&site, "/p/1.html").await;
    client()
        .head(site.url("/missing.html"))
        .header(reqwest::header::HOST, "Sub.Example:1")
        .send()
        .await
        .unwrap();
    let log = site.requests();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].path_query, "/p/1.html?utm_source=x");
    assert_eq!(log[0].path(), "/p/1.html");
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[0].user_agent.as_deref(), Some("site-test/1.0"));
    assert_eq!(
        log[0].host.as_deref(),
        Some(format!("127.0.0.1:{}", site.addr().port()).as_str())
    );
    assert_eq!(log[2].method, "HEAD");
    assert_eq!(log[2].host.as_deref(), Some("Sub.Example:1"));
    assert!(log[0].at <= log[1].at && log[1].at <= log[2].at);
    assert_eq!(site.count("/p/1.html"), 2);
    assert_eq!(site.count("/missing.html"), 1);
    assert_eq!(site.count("/p/2.html"), 0);
    assert_eq!(site.path_counts().values().sum::<u64>(), 3);
    site.clear_log();
    assert!(site.requests().is_empty());
    assert_eq!(site.count("/p/1.html"), 0);
}

#[tokio::test]
async fn delay_slows_every_response() {
    let site = TestSite::start(SiteConfig::plain(2).delay(Duration::from_millis(150))).await;
    let t = Instant::now();
    assert_eq!(get(&site, "/p/0.html").await.status(), 200);
    // A sleep never ends early, so this lower bound cannot flake.
    assert!(t.elapsed() >= Duration::from_millis(150));
}

/// Page i links to `graph[i]`; `/` links to page 0. By hand:
/// `/` (0) → p0 (1) → p1, p2 (2) → p3 (3, from p1) → p0 (seen).
#[tokio::test]
async fn expected_set_of_a_tiny_graph_by_hand() {
    let site =
        TestSite::start(SiteConfig::plain(0).graph(vec![vec![1, 2], vec![3], vec![], vec![0]]))
            .await;
    let b = site.base_url();
    let at = |d: Option<u32>| {
        site.expected(&CrawlRules {
            max_depth: d,
            ..CrawlRules::default()
        })
    };

    let e = at(Some(2));
    assert_eq!(
        e.urls(),
        set(&["/", "/p/0.html", "/p/1.html", "/p/2.html"], &b)
    );
    let depths: Vec<u32> = e.pages.values().map(|p| p.depth).collect();
    // BTreeMap order: "/", "/p/0", "/p/1", "/p/2".
    assert_eq!(depths, [0, 1, 2, 2]);
    let p1 = &e.pages[&format!("{b}/p/1.html")];
    assert_eq!(p1.outcome, Outcome::Page);
    assert_eq!(p1.status, Some(200));
    assert_eq!(p1.title.as_deref(), Some("Page 1"));
    assert_eq!(p1.description.as_deref(), Some("Synthetic page 1 of 4"));
    assert_eq!(p1.links, 3, "p3, off-site, mailto");
    assert_eq!(p1.images, 1);
    assert_eq!(
        p1.outlinks,
        [
            format!("{b}/p/3.html"),
            "http://offsite.invalid/x".to_owned()
        ]
    );
    assert_eq!(p1.requests, ["/p/1.html"]);
    assert_eq!(p1.final_url, p1.url);
    assert_eq!(e.out_of_scope, set(&["http://offsite.invalid/x"], ""));
    assert!(e.robots_blocked.is_empty());
    assert_eq!(
        e.allowed_requests,
        set(
            &["/", "/p/0.html", "/p/1.html", "/p/2.html", "/robots.txt"],
            ""
        )
    );

    assert_eq!(at(Some(0)).urls(), set(&["/"], &b));
    assert_eq!(at(Some(1)).urls(), set(&["/", "/p/0.html"], &b));
    let all = at(None);
    assert_eq!(
        all.urls(),
        set(
            &["/", "/p/0.html", "/p/1.html", "/p/2.html", "/p/3.html"],
            &b
        )
    );
    assert_eq!(all.pages[&format!("{b}/p/3.html")].depth, 3);
    assert_eq!(at(Some(9)), all);

    // Scope regexes; start elsewhere.
    let e = site.expected(&CrawlRules {
        start: vec!["/p/1.html".to_owned()],
        deny: vec![r"/p/0\.html$".to_owned()],
        ..CrawlRules::default()
    });
    assert_eq!(e.urls(), set(&["/p/1.html", "/p/3.html"], &b));
    assert!(e.out_of_scope.contains(&format!("{b}/p/0.html")));
    assert_eq!(e.pages[&format!("{b}/p/3.html")].depth, 1);
}

/// Depth 1 from `/` with every trap, as a `*` agent and as `special-bot`.
#[tokio::test]
async fn expected_set_with_traps_by_hand() {
    let site = TestSite::start(SiteConfig::new(3)).await;
    let b = site.base_url();
    let depth1 = |ua: &str| {
        site.expected(&CrawlRules {
            max_depth: Some(1),
            user_agent: format!("{ua}/2.0 (+https://example.invalid)"),
            ..CrawlRules::default()
        })
    };
    let common = [
        "/",
        "/p/0.html",
        "/cal/2024/01",
        "/loop/a",
        "/chain/1",
        "/huge.html",
        "/endless.html",
        "/odd/malformed.html",
        "/odd/latin1.html",
        "/odd/sjis.html",
        "/odd/spellings.html",
        "/run.cgi?x=1",
        "/missing.html",
        "/error500.html",
        "/rate/limited.html",
        "/flaky.html",
        "/files/doc.pdf",
        "/img/0.png",
    ];
    let star = depth1("surge-crawler");
    let mut want = set(&common, &b);
    want.extend(set(&["/private/public.html", "/special/only.html"], &b));
    assert_eq!(star.urls(), want);
    assert_eq!(
        star.robots_blocked,
        set(&["/private/index.html", "/run.cgi"], &b)
    );

    let special = depth1("Special-Bot");
    let mut want = set(&common, &b);
    want.insert(format!("{b}/run.cgi"));
    assert_eq!(special.urls(), want);
    assert_eq!(
        special.robots_blocked,
        set(
            &[
                "/private/index.html",
                "/private/public.html",
                "/special/only.html"
            ],
            &b
        )
    );

    let page = |e: &surge_testkit::site::Expected, p: &str| e.pages[&format!("{b}{p}")].clone();
    let chain = page(&star, "/chain/1");
    assert_eq!(chain.outcome, Outcome::Page);
    assert_eq!(chain.final_url, format!("{b}/chain/end.html"));
    assert_eq!(
        chain.requests,
        ["/chain/1", "/chain/2", "/chain/3", "/chain/end.html"]
    );
    assert_eq!(chain.title.as_deref(), Some("Chain end"));
    let lp = page(&star, "/loop/a");
    assert_eq!(lp.outcome, Outcome::TooManyRedirects);
    assert_eq!(lp.requests, ["/loop/a", "/loop/b"]);
    assert_eq!(page(&star, "/huge.html").outcome, Outcome::TooLarge);
    assert_eq!(page(&star, "/endless.html").outcome, Outcome::TooLarge);
    let missing = page(&star, "/missing.html");
    assert_eq!(
        (missing.outcome, missing.status),
        (Outcome::HttpError, Some(404))
    );
    assert_eq!(page(&star, "/error500.html").status, Some(500));
    assert_eq!(page(&star, "/rate/limited.html").status, Some(200));
    assert_eq!(page(&star, "/flaky.html").title.as_deref(), Some("Flaky"));
    let pdf = page(&star, "/files/doc.pdf");
    assert_eq!(pdf.content_type.as_deref(), Some("application/pdf"));
    assert_eq!((pdf.title, pdf.links), (None, 0));
    let latin1 = page(&star, "/odd/latin1.html");
    assert_eq!(latin1.title.as_deref(), Some("Café Zürich"));
    assert_eq!(
        latin1.description.as_deref(),
        Some("Crème brûlée à la carte")
    );
    assert_eq!(
        page(&star, "/odd/sjis.html").title.as_deref(),
        Some("日本語のページ")
    );
    let malformed = page(&star, "/odd/malformed.html");
    assert_eq!((malformed.links, malformed.images), (3, 1));
    // Pages 3, 4, 5 of a 3-page site wrap to 0, 1, 2.
    assert_eq!(
        malformed.outlinks,
        [
            format!("{b}/p/0.html"),
            format!("{b}/p/1.html"),
            format!("{b}/p/2.html")
        ]
    );
    assert!(star.allowed_requests.contains("/chain/3"));
    assert!(!star.allowed_requests.contains("/private/index.html"));

    // Fewer redirects allowed than the chain has.
    let short = site.expected(&CrawlRules {
        max_depth: Some(1),
        max_redirects: 2,
        ..CrawlRules::default()
    });
    assert_eq!(page(&short, "/chain/1").outcome, Outcome::TooManyRedirects);
    // A bigger cap lets the huge page through.
    let big = site.expected(&CrawlRules {
        max_depth: Some(1),
        max_body_bytes: 12 << 20,
        ..CrawlRules::default()
    });
    assert_eq!(page(&big, "/huge.html").title.as_deref(), Some("Huge page"));
    // Robots off: the disallowed pages are fetched.
    let rude = site.expected(&CrawlRules {
        max_depth: Some(1),
        respect_robots: false,
        ..CrawlRules::default()
    });
    assert!(rude.robots_blocked.is_empty());
    assert!(rude.urls().contains(&format!("{b}/private/index.html")));
    assert!(!rude.allowed_requests.contains("/robots.txt"));
}

#[tokio::test]
async fn spellings_collapse_to_one_page() {
    let site = TestSite::start(SiteConfig::new(3)).await;
    let b = site.base_url();
    let from_spellings = |strip: &[&str]| {
        site.expected(&CrawlRules {
            start: vec!["/odd/spellings.html".to_owned()],
            max_depth: Some(1),
            strip_query: strip.iter().map(|s| (*s).to_owned()).collect(),
            ..CrawlRules::default()
        })
    };
    let stripped = from_spellings(&["utm_*"]);
    assert_eq!(
        stripped.urls(),
        set(
            &["/odd/spellings.html", "/p/1.html", "/P/1.html", "/p/2.html"],
            &b
        )
    );
    assert_eq!(stripped.pages[&format!("{b}/P/1.html")].status, Some(404));
    let spellings = &stripped.pages[&format!("{b}/odd/spellings.html")];
    assert_eq!(spellings.links, 24);
    let p1 = format!("{b}/p/1.html");
    assert_eq!(spellings.outlinks.iter().filter(|u| **u == p1).count(), 12);
    let port = site.addr().port();
    assert_eq!(
        stripped.out_of_scope,
        [
            "http://offsite.invalid/x".to_owned(),
            "https://other.invalid/page".to_owned(),
            format!("http://sub.localhost:{port}/p/1.html"),
        ]
        .into_iter()
        .collect()
    );

    let kept = from_spellings(&[]);
    let mut want = stripped.urls();
    want.insert(format!("{b}/p/1.html?utm_source=news&utm_medium=email"));
    want.insert(format!("{b}/p/1.html?utm_campaign=x"));
    assert_eq!(kept.urls(), want);
    let only_source = from_spellings(&["utm_source"]);
    assert!(
        only_source
            .urls()
            .contains(&format!("{b}/p/1.html?utm_medium=email"))
    );
}

#[tokio::test]
async fn calendar_sitemap_and_named_host() {
    let site = TestSite::start(SiteConfig::new(3)).await;
    let b = site.base_url();
    let cal = site.expected(&CrawlRules {
        start: vec!["/cal/2024/11".to_owned()],
        max_depth: Some(3),
        allow: vec!["/cal/".to_owned()],
        ..CrawlRules::default()
    });
    assert_eq!(
        cal.urls(),
        set(
            &[
                "/cal/2024/11",
                "/cal/2024/12",
                "/cal/2025/01",
                "/cal/2025/02"
            ],
            &b
        )
    );
    assert_eq!(cal.out_of_scope, set(&["/"], &b));

    let sm = site.expected(&CrawlRules {
        max_depth: Some(0),
        sitemaps: true,
        ..CrawlRules::default()
    });
    assert_eq!(
        sm.urls(),
        set(
            &[
                "/",
                "/p/0.html",
                "/p/1.html",
                "/p/2.html",
                "/sitemap-only.html"
            ],
            &b
        )
    );
    assert!(sm.allowed_requests.contains("/sitemap.xml"));

    // Custom robots: everything but the home page disallowed for `*`.
    let strict = TestSite::start(SiteConfig::new(3).robots(vec![RobotsGroup {
        agents: vec!["*".to_owned()],
        allow: vec!["/$".to_owned()],
        disallow: vec!["/".to_owned()],
        crawl_delay: None,
    }]))
    .await;
    let e = strict.expected(&CrawlRules::default());
    assert_eq!(e.urls(), set(&["/"], &strict.base_url()));

    // A named host: upper-case host spelling, and sub.localhost is a subdomain.
    let named = TestSite::start(SiteConfig::new(3).host_name("localhost")).await;
    let nb = named.base_url();
    assert_eq!(nb, format!("http://localhost:{}", named.addr().port()));
    let body = get(&named, "/odd/spellings.html")
        .await
        .text()
        .await
        .unwrap();
    assert!(body.contains(&format!(
        "href=\"http://LOCALHOST:{}/p/1.html\"",
        named.addr().port()
    )));
    let sub = format!("http://sub.localhost:{}/p/1.html", named.addr().port());
    let rules = |subdomains| CrawlRules {
        start: vec!["/odd/spellings.html".to_owned()],
        max_depth: Some(1),
        subdomains,
        ..CrawlRules::default()
    };
    assert!(named.expected(&rules(false)).out_of_scope.contains(&sub));
    let with_sub = named.expected(&rules(true));
    assert_eq!(with_sub.pages[&sub].outcome, Outcome::Unresolved);
}

/// The ground truth and the server agree: every expected page, fetched by
/// a real client following redirects, has the expected status, type,
/// title and link/image counts.
#[tokio::test]
async fn server_matches_its_ground_truth() {
    let site = TestSite::start(
        SiteConfig::new(25)
            .traps(Traps {
                endless: false,
                ..Traps::all()
            })
            .huge_bytes(100_000),
    )
    .await;
    let e = site.expected(&CrawlRules {
        max_depth: Some(3),
        strip_query: vec!["utm_*".to_owned()],
        ..CrawlRules::default()
    });
    assert!(e.pages.len() > 30, "{}", e.pages.len());
    let follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .unwrap();
    for page in e.pages.values() {
        let mut r = follow.get(&page.url).send().await;
        // The 429/503 pages fail once first.
        if let Ok(resp) = &r
            && matches!(resp.status().as_u16(), 429 | 503)
        {
            r = follow.get(&page.url).send().await;
        }
        match page.outcome {
            Outcome::TooManyRedirects => {
                assert!(r.is_err(), "{}", page.url);
                continue;
            }
            Outcome::Unresolved | Outcome::TooLarge => continue,
            Outcome::Page | Outcome::HttpError => {}
        }
        let r = r.unwrap();
        assert_eq!(Some(r.status().as_u16()), page.status, "{}", page.url);
        assert_eq!(r.url().as_str(), page.final_url, "{}", page.url);
        assert_eq!(Some(ctype(&r)), page.content_type, "{}", page.url);
        let body = r.bytes().await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert_eq!(
            text.matches("<a ").count() as u32,
            page.links,
            "{}",
            page.url
        );
        assert_eq!(
            text.matches("<img ").count() as u32,
            page.images,
            "{}",
            page.url
        );
        if let Some(title) = &page.title
            && page.content_type.as_deref() == Some("text/html; charset=utf-8")
        {
            assert!(
                text.contains(&format!("<title>{title}</title>")),
                "{}",
                page.url
            );
        }
    }
}
