//! Distributed crawls with real processes: two `surge worker` processes
//! on one broker (PostgreSQL, Redis) crawl the test site together, as a
//! `crawl` task plus a `crawl.join` task. The records are exactly the
//! site's page set, one per URL, and the site's own request log shows
//! every page fetched once; with one worker killed (SIGKILL) mid-crawl the
//! crawl still ends with exactly that page set, once each.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use surge_crawl::crawls::{CrawlState, Crawls};
use surge_crawl::task::{CrawlKinds, CrawlOutput};
use surge_crawl::{CrawlConfig, PageRecord};
use surge_queue::broker::AnyBroker;
use surge_queue::model::TaskFilter;
use surge_queue::{Broker, BrokerConfig, Client, Registry, TaskId, TaskState};
use surge_testkit::Processes;
use surge_testkit::site::{CrawlRules, Expected, SiteConfig, TestSite};

const DEADLINE: Duration = Duration::from_secs(240);

/// A broker for one test: URL and Redis namespace.
struct Target {
    url: String,
    namespace: String,
}

async fn target(backend: &str) -> Option<Target> {
    let namespace = format!(
        "surge-test-crawlw-{}-{}",
        chrono::Utc::now().timestamp(),
        surge_testkit::suffix()
    );
    let url = match backend {
        "postgres" => {
            let base = surge_testkit::postgres_url()?;
            surge_testkit::new_schema(&base, "crawlw_").await.1
        }
        "redis" => surge_testkit::redis_url()?,
        other => panic!("unknown backend {other}"),
    };
    Some(Target { url, namespace })
}

impl Target {
    fn config(&self) -> BrokerConfig {
        BrokerConfig {
            namespace: self.namespace.clone(),
            ..BrokerConfig::default()
        }
    }

    async fn broker(&self) -> AnyBroker {
        AnyBroker::connect(&self.url, &self.config())
            .await
            .expect("broker")
    }

    async fn crawls(&self) -> Crawls {
        Crawls::connect(&self.url, &self.namespace)
            .await
            .expect("crawls")
    }

    fn worker(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_surge"))
            .args([
                "worker",
                "--broker",
                &self.url,
                // One task at a time: the crawl task and its join task land
                // on different processes.
                "--concurrency",
                "1",
                "--lease-ttl",
                "1",
                "--shutdown-grace",
                "2",
                "--fetch-allow-private",
                "--no-scheduler",
            ])
            .env("SURGE_BROKER_NAMESPACE", &self.namespace)
            .env(
                "SURGE_LOG_LEVEL",
                std::env::var("CRAWLQ_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn surge worker")
    }
}

async fn until<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(t) = probe().await {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The test site (`pages` plain pages, answering after 15 ms) and two
/// registered `surge worker` processes on `t`.
async fn site_and_two_workers(t: &Target, pages: usize) -> (TestSite, AnyBroker, Processes) {
    let site = TestSite::start(SiteConfig::plain(pages).delay(Duration::from_millis(15))).await;
    let broker = t.broker().await;
    let workers = Processes(vec![t.worker(), t.worker()]);
    until("both workers to register", async || {
        (broker.workers().await.ok()?.len() == 2).then_some(())
    })
    .await;
    (site, broker, workers)
}

/// A slow enough crawl that both crawlers take part: 4 fetches at a time
/// per crawler against a site that answers after 15 ms.
fn crawl_config(site: &TestSite) -> CrawlConfig {
    CrawlConfig {
        start_urls: vec![site.start_url()],
        concurrency: 4,
        per_host: 4,
        allow_private: true,
        ..CrawlConfig::default()
    }
}

fn expected(site: &TestSite, config: &CrawlConfig) -> Expected {
    site.expected(&CrawlRules {
        start: config.start_urls.clone(),
        respect_robots: config.respect_robots,
        user_agent: config.user_agent.clone(),
        ..CrawlRules::default()
    })
}

/// Every stored record of the crawl, in storage order.
async fn records(crawls: &Crawls, id: uuid::Uuid) -> Vec<PageRecord> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let chunk = crawls.pages(id, after, 200).await.expect("pages");
        let Some((last, _)) = chunk.last() else {
            return out;
        };
        after = *last;
        for (_, text) in chunk {
            out.push(serde_json::from_str(&text).expect("a record"));
        }
    }
}

/// The records are exactly the expected page set, one per URL.
fn assert_exact_page_set(records: &[PageRecord], expected: &Expected) {
    let urls: Vec<&str> = records.iter().map(|r| r.url.as_str()).collect();
    let set: BTreeSet<String> = urls.iter().map(|u| (*u).to_owned()).collect();
    assert_eq!(set.len(), urls.len(), "a URL recorded twice");
    assert_eq!(set, expected.urls(), "the page set differs from the site's");
    for r in records {
        let want = &expected.pages[&r.url];
        assert_eq!(r.status, want.status, "{}", r.url);
        // Depth is the depth of the first discovery: with fetches in
        // parallel a deeper path may win, so it is bounded, not exact.
        assert!(r.depth >= want.depth, "{}", r.url);
        assert_eq!(r.title, want.title, "{}", r.url);
    }
}

/// Submits a `crawl` task (two crawlers) and returns its id (the crawl's).
async fn submit(t: &Target, broker: &AnyBroker, config: &CrawlConfig) -> TaskId {
    let mut registry = Registry::new();
    CrawlKinds::new(&t.url, t.config(), true).register(&mut registry);
    let client = Client::new(broker.clone(), Arc::new(registry));
    let task = client
        .task("crawl", json!({ "config": config, "workers": 2 }))
        .expect("crawl task");
    client.submit(task).await.expect("submit").id
}

/// The crawl's tasks (the `crawl` task and its join) once both ended.
async fn finished_tasks(broker: &AnyBroker) -> Vec<surge_queue::TaskRecord> {
    until("the crawl tasks to end", async || {
        let tasks = broker.list(&all_tasks()).await.ok()?;
        if std::env::var("CRAWLQ_DEBUG").is_ok() {
            for t in &tasks {
                eprintln!(
                    "{} {} {:?} {:?} {:?}",
                    t.kind, t.state, t.error, t.result, t.progress
                );
            }
        }
        (tasks.len() == 2 && tasks.iter().all(|t| t.state.is_terminal())).then_some(tasks)
    })
    .await
}

async fn two_workers_crawl_each_page_once(backend: &str) {
    let Some(t) = target(backend).await else {
        return;
    };
    let (site, broker, _workers) = site_and_two_workers(&t, 240).await;
    let config = crawl_config(&site);
    let id = submit(&t, &broker, &config).await;

    let tasks = finished_tasks(&broker).await;
    let mut shares = Vec::new();
    for task in &tasks {
        assert_eq!(task.state, TaskState::Succeeded, "{task:?}");
        let out: CrawlOutput =
            serde_json::from_value(task.result.clone().expect("result")).expect("output");
        assert_eq!(out.crawl, id);
        assert_eq!(out.state, CrawlState::Finished);
        shares.push(out.pages);
    }
    let workers: BTreeSet<_> = tasks.iter().map(|t| t.worker_id).collect();
    assert_eq!(workers.len(), 2, "the two tasks ran on two workers");

    let crawls = t.crawls().await;
    let info = crawls.get(id).await.expect("get").expect("stored");
    assert_eq!(info.state, CrawlState::Finished);
    let records = records(&crawls, id).await;
    let expected = expected(&site, &config);
    assert_exact_page_set(&records, &expected);
    assert_eq!(
        shares.iter().sum::<u64>(),
        records.len() as u64,
        "the crawlers' shares add up to the records"
    );
    assert!(
        shares.iter().all(|s| *s > 0),
        "both crawlers stored pages: {shares:?}"
    );

    // The site's log: each page requested once, nothing else requested.
    assert!(
        site.unexpected_requests(&expected).is_empty(),
        "{:?}",
        site.unexpected_requests(&expected)
    );
    let counts = site.path_counts();
    let twice: BTreeMap<&String, &u64> = counts
        .iter()
        .filter(|(path, n)| **n > 1 && path.as_str() != "/robots.txt")
        .collect();
    assert!(twice.is_empty(), "fetched more than once: {twice:?}");
    for page in expected.pages.values() {
        for path in &page.requests {
            assert_eq!(counts.get(path), Some(&1), "{path}");
        }
    }
}

async fn a_killed_worker_loses_nothing(backend: &str) {
    let Some(t) = target(backend).await else {
        return;
    };
    let (site, broker, mut workers) = site_and_two_workers(&t, 300).await;
    let config = crawl_config(&site);
    let id = submit(&t, &broker, &config).await;
    let crawls = t.crawls().await;
    // Both tasks running and some pages stored: kill one process.
    until("both crawlers to be under way", async || {
        let tasks = broker.list(&all_tasks()).await.ok()?;
        let running = tasks
            .iter()
            .filter(|t| t.state == TaskState::Running)
            .count();
        let done = crawls.stats(id).await.ok()?.done;
        (running == 2 && done >= 20).then_some(())
    })
    .await;
    let before = crawls.stats(id).await.expect("stats");
    assert!(
        before.done < expected(&site, &config).pages.len() as u64,
        "the kill came too late to prove anything"
    );
    let mut victim = workers.0.remove(1);
    victim.kill().expect("kill");
    victim.wait().expect("reap");

    let info = until("the crawl to finish", async || {
        crawls
            .get(id)
            .await
            .ok()?
            .filter(|i| i.state != CrawlState::Running)
    })
    .await;
    assert_eq!(info.state, CrawlState::Finished);
    let records = records(&crawls, id).await;
    let expected = expected(&site, &config);
    assert_exact_page_set(&records, &expected);
    let stats = crawls.stats(id).await.expect("stats");
    assert_eq!((stats.queued, stats.leased), (0, 0));
    assert_eq!(stats.done, expected.pages.len() as u64);
    // Every page was fetched; pages the killed worker had in flight may
    // have been fetched again (a retry), nothing else twice.
    let counts = site.path_counts();
    for page in expected.pages.values() {
        for path in &page.requests {
            assert!(
                counts.get(path).is_some_and(|n| *n >= 1),
                "{path} never fetched"
            );
        }
    }
    let refetched = counts
        .iter()
        .filter(|(p, n)| **n > 1 && p.as_str() != "/robots.txt")
        .count();
    eprintln!("{backend}: {refetched} pages fetched again after the kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_workers_crawl_each_page_once() {
    two_workers_crawl_each_page_once("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_two_workers_crawl_each_page_once() {
    two_workers_crawl_each_page_once("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_killed_worker_loses_nothing() {
    a_killed_worker_loses_nothing("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_a_killed_worker_loses_nothing() {
    a_killed_worker_loses_nothing("redis").await;
}

fn all_tasks() -> TaskFilter {
    TaskFilter {
        limit: 100,
        ..TaskFilter::default()
    }
}

/// `surge crawl --broker URL --workers 2` with two `surge worker`
/// processes: three crawlers; the CLI's output is the whole crawl, each
/// page once, and the site saw each page requested once.
async fn cli_and_two_workers(backend: &str) {
    let Some(t) = target(backend).await else {
        return;
    };
    let (site, broker, _workers) = site_and_two_workers(&t, 240).await;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let out = dir.path().join("pages.jsonl");
    let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_surge"))
        .args(["crawl", "--broker", &t.url, "--workers", "2"])
        .args([
            "--concurrency",
            "4",
            "--per-host",
            "4",
            "--progress",
            "never",
        ])
        .arg("--output")
        .arg(&out)
        .arg(site.start_url())
        .env("SURGE_BROKER_NAMESPACE", &t.namespace)
        .stdin(Stdio::null())
        .output();
    let cli = tokio::time::timeout(DEADLINE, cli)
        .await
        .expect("surge crawl timed out")
        .expect("run surge crawl");
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(cli.status.success(), "{stderr}");
    let text = std::fs::read_to_string(&out).expect("output");
    let records: Vec<PageRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a record"))
        .collect();
    let config = CrawlConfig {
        start_urls: vec![site.start_url()],
        ..CrawlConfig::default()
    };
    let expected = expected(&site, &config);
    assert_exact_page_set(&records, &expected);
    let counts = site.path_counts();
    for page in expected.pages.values() {
        for path in &page.requests {
            assert_eq!(counts.get(path), Some(&1), "{path}");
        }
    }
    // The join tasks ran on the workers (each found the crawl; either
    // crawled some of it or found it finished).
    let tasks = finished_tasks(&broker).await;
    assert!(
        tasks
            .iter()
            .all(|t| t.kind == "crawl.join" && t.state == TaskState::Succeeded),
        "{tasks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_cli_and_two_workers() {
    cli_and_two_workers("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cli_and_two_workers() {
    cli_and_two_workers("redis").await;
}
