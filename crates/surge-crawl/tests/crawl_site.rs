//! The engine against the shared test site (real HTTP on 127.0.0.1):
//! the exact page set and fields of the site's own ground truth, nothing
//! requested that robots.txt or the scope forbid (server-side log), traps
//! that terminate, the page budget, and a crawl stopped part-way and
//! resumed on its directory.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use surge_core::ErrorCategory;
use surge_crawl::frontier::LocalFrontier;
use surge_crawl::{CrawlConfig, Crawler, Frontier, PageRecord, ScopeConfig};
use surge_testkit::site::{CrawlRules, Expected, Outcome, SiteConfig, TestSite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const MAX_BODY: u64 = 1024 * 1024;

fn config(site: &TestSite, depth: Option<u32>) -> CrawlConfig {
    CrawlConfig {
        start_urls: vec![site.start_url()],
        max_depth: depth,
        concurrency: 16,
        per_host: 8,
        max_body_bytes: MAX_BODY,
        timeout: Duration::from_secs(20),
        allow_private: true,
        outlinks: true,
        ..CrawlConfig::default()
    }
}

fn rules(depth: Option<u32>) -> CrawlRules {
    CrawlRules {
        max_depth: depth,
        max_body_bytes: MAX_BODY,
        ..CrawlRules::default()
    }
}

/// Crawls into `dir`; the records the run stored, in order.
async fn crawl(config: CrawlConfig, dir: &std::path::Path) -> Vec<PageRecord> {
    let frontier = LocalFrontier::open(dir, config.max_pages).expect("open");
    let crawler = Crawler::new(config).expect("crawler");
    let (tx, mut rx) = mpsc::channel(64);
    let collect = tokio::spawn(async move {
        let mut v = Vec::new();
        while let Some(r) = rx.recv().await {
            v.push(r);
        }
        v
    });
    let summary = crawler
        .run(&frontier, Some(tx), CancellationToken::new())
        .await
        .expect("run");
    let records = collect.await.expect("collect");
    assert_eq!(summary.pages, records.len() as u64);
    assert!(frontier.is_finished().await.expect("finished"));
    records
}

fn pages_file(dir: &std::path::Path) -> Vec<PageRecord> {
    std::fs::read_to_string(dir.join("pages.jsonl"))
        .expect("pages.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("record"))
        .collect()
}

fn by_url(records: &[PageRecord]) -> BTreeMap<String, PageRecord> {
    let mut m = BTreeMap::new();
    for r in records {
        assert!(
            m.insert(r.url.clone(), r.clone()).is_none(),
            "duplicate record for {}",
            r.url
        );
    }
    m
}

fn check_against(records: &[PageRecord], expected: &Expected) {
    let got = by_url(records);
    let want = expected.urls();
    let have: BTreeSet<String> = got.keys().cloned().collect();
    assert_eq!(
        have,
        want,
        "missing {:?}, extra {:?}",
        want.difference(&have).collect::<Vec<_>>(),
        have.difference(&want).collect::<Vec<_>>()
    );
    for (url, e) in &expected.pages {
        let r = &got[url];
        assert_eq!(r.depth, e.depth, "{url} depth");
        match e.outcome {
            Outcome::Page => {
                assert_eq!(r.error, None, "{url}");
                assert_eq!(r.status, e.status, "{url} status");
                assert_eq!(r.final_url, e.final_url, "{url} final_url");
                assert_eq!(r.content_type, e.content_type, "{url} content type");
                assert_eq!(r.title, e.title, "{url} title");
                assert_eq!(r.description, e.description, "{url} description");
                assert_eq!(r.links, e.links, "{url} links");
                assert_eq!(r.images, e.images, "{url} images");
                let want: BTreeSet<&String> = e.outlinks.iter().collect();
                let have: BTreeSet<&String> =
                    r.outlinks.as_ref().expect("outlinks").iter().collect();
                assert_eq!(have, want, "{url} outlinks");
            }
            Outcome::HttpError => {
                assert_eq!(r.status, e.status, "{url} status");
                assert_eq!(
                    r.error.as_ref().map(|e| e.kind),
                    Some(ErrorCategory::HttpStatus),
                    "{url}"
                );
            }
            Outcome::TooManyRedirects => {
                assert_eq!(
                    r.error.as_ref().map(|e| e.kind),
                    Some(ErrorCategory::HttpStatus),
                    "{url}"
                );
                assert!(
                    r.error.as_ref().unwrap().message.contains("redirect"),
                    "{url}: {:?}",
                    r.error
                );
            }
            Outcome::TooLarge => {
                let err = r.error.as_ref().expect("error");
                assert_eq!(err.kind, ErrorCategory::Validation, "{url}");
                assert!(err.message.contains("too large"), "{url}: {}", err.message);
            }
            Outcome::Unresolved => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_matches_the_ground_truth_and_requests_nothing_else() {
    let site = TestSite::start(SiteConfig::new(60)).await;
    let dir = tempfile::tempdir().unwrap();
    let records = crawl(config(&site, Some(4)), dir.path()).await;
    let expected = site.expected(&rules(Some(4)));
    assert!(expected.pages.len() > 60, "the traps are part of the walk");
    check_against(&records, &expected);
    // The crawl directory holds the same records, once each.
    let roundtrip: Vec<PageRecord> = records
        .iter()
        .map(|r| serde_json::from_str(&serde_json::to_string(r).unwrap()).unwrap())
        .collect();
    assert_eq!(by_url(&pages_file(dir.path())), by_url(&roundtrip));
    // Nothing requested that robots.txt, the scope or the depth forbid.
    let unexpected = site.unexpected_requests(&expected);
    assert!(unexpected.is_empty(), "{unexpected:?}");
    assert!(!expected.robots_blocked.is_empty());
    let requested: BTreeSet<String> = site
        .requests()
        .iter()
        .map(|r| r.path_query.clone())
        .collect();
    for blocked in &expected.robots_blocked {
        let u = url::Url::parse(blocked).unwrap();
        let pq = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        };
        assert!(!requested.contains(&pq), "{blocked} was requested");
    }
    // robots.txt fetched once; no page fetched twice (retries aside).
    assert_eq!(site.count("/robots.txt"), 1);
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for r in site.requests() {
        *counts.entry(r.path_query.clone()).or_default() += 1;
    }
    for (path, n) in counts {
        // 5xx, 429 and timeouts are retried by the fetcher (max_retries 2).
        let retried = path.starts_with("/rate/")
            || path.starts_with("/flaky")
            || path.starts_with("/loop/")
            || path == "/error500.html";
        assert!(n == 1 || retried, "{path} requested {n} times");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_terminate_with_a_depth_limit_and_the_calendar_stops_at_it() {
    let site = TestSite::start(SiteConfig::new(10)).await;
    let dir = tempfile::tempdir().unwrap();
    let records = crawl(config(&site, Some(7)), dir.path()).await;
    let expected = site.expected(&rules(Some(7)));
    check_against(&records, &expected);
    let calendar = records.iter().filter(|r| r.url.contains("/cal/")).count();
    assert_eq!(
        calendar,
        expected
            .pages
            .keys()
            .filter(|u| u.contains("/cal/"))
            .count()
    );
    assert!(calendar >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_allow_deny_and_no_robots() {
    let site = TestSite::start(SiteConfig::new(40)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&site, Some(3));
    cfg.scope = ScopeConfig {
        deny: vec![r"/p/1\d\.html$".into(), "/cal/".into()],
        ..ScopeConfig::default()
    };
    cfg.respect_robots = false;
    let records = crawl(cfg, dir.path()).await;
    let r = CrawlRules {
        deny: vec![r"/p/1\d\.html$".into(), "/cal/".into()],
        respect_robots: false,
        ..rules(Some(3))
    };
    let expected = site.expected(&r);
    check_against(&records, &expected);
    assert!(site.unexpected_requests(&expected).is_empty());
    assert_eq!(
        site.count("/robots.txt"),
        0,
        "--no-robots fetches no robots.txt"
    );
    for i in 10..20 {
        assert_eq!(
            site.count(&format!("/p/{i}.html")),
            0,
            "denied /p/{i}.html requested"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sitemaps_and_query_stripping() {
    let site = TestSite::start(SiteConfig::new(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&site, Some(2));
    cfg.sitemaps = true;
    cfg.strip_query = vec!["utm_*".into()];
    let records = crawl(cfg, dir.path()).await;
    let expected = site.expected(&CrawlRules {
        sitemaps: true,
        strip_query: vec!["utm_*".into()],
        ..rules(Some(2))
    });
    check_against(&records, &expected);
    assert!(
        records
            .iter()
            .any(|r| r.url.ends_with("/sitemap-only.html"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_budget_is_exact() {
    let site = TestSite::start(SiteConfig::plain(50)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&site, None);
    cfg.max_pages = Some(17);
    let records = crawl(cfg, dir.path()).await;
    assert_eq!(records.len(), 17);
    assert_eq!(by_url(&pages_file(dir.path())).len(), 17);
    let pages: u64 = site
        .path_counts()
        .iter()
        .filter(|(p, _)| p.ends_with(".html") || p == &"/")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(pages, 17, "no page fetched beyond the budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_and_resumed_crawl_finishes_with_the_exact_set_once() {
    let site = TestSite::start(SiteConfig::plain(80)).await;
    let dir = tempfile::tempdir().unwrap();
    let expected = site.expected(&rules(None));
    let mut rounds: u64 = 0;
    loop {
        rounds += 1;
        assert!(rounds < 50, "never finished");
        let frontier = LocalFrontier::open(dir.path(), None).expect("open");
        let crawler = Crawler::new(config(&site, None)).expect("crawler");
        let (tx, mut rx) = mpsc::channel(64);
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        // Stop after a few records each round.
        let watch = tokio::spawn(async move {
            let mut n = 0;
            while rx.recv().await.is_some() {
                n += 1;
                if n == 7 {
                    stopper.cancel();
                }
            }
            n
        });
        crawler.run(&frontier, Some(tx), stop).await.expect("run");
        watch.await.unwrap();
        let finished = frontier.is_finished().await.unwrap();
        drop(frontier);
        if finished {
            break;
        }
    }
    assert!(rounds > 3, "the crawl was stopped several times ({rounds})");
    check_against(&pages_file(dir.path()), &expected);
    // Only fetches in flight at a stop (at most `concurrency` per round)
    // are made again; a recorded page never is.
    let requests: u64 = site
        .path_counts()
        .iter()
        .filter(|(p, _)| *p != "/robots.txt")
        .map(|(_, n)| n)
        .sum();
    let bound = expected.pages.len() as u64 + rounds * 16;
    assert!(requests <= bound, "{requests} requests > {bound}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_unless_allowed() {
    let site = TestSite::start(SiteConfig::plain(5)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&site, None);
    cfg.allow_private = false;
    let records = crawl(cfg, dir.path()).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let err = records[0].error.as_ref().expect("refused");
    assert_eq!(err.kind, ErrorCategory::Validation, "{err:?}");
    assert!(site.requests().is_empty(), "{:?}", site.requests());
}
