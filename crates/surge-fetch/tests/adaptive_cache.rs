//! The adaptive global limit comes down under overload and goes back up
//! when the server recovers; the response cache fetches a URL once for
//! many concurrent callers; the retry budget caps retries.

mod support;

use std::time::Duration;

use futures_util::future::join_all;
use support::Server;
use surge_core::backoff::RetryBudgetConfig;
use surge_core::limit::AdaptiveConfig;
use surge_fetch::{FetchConfig, FetchRequest, Fetcher, ResponseCacheConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_adaptive_limit_comes_down_under_overload_and_recovers() {
    let server = Server::start().await;
    let f = Fetcher::new(FetchConfig {
        concurrency: 64,
        per_host: 64,
        adaptive: Some(AdaptiveConfig {
            initial: 40,
            ..AdaptiveConfig::default()
        }),
        max_retries: 0,
        ..FetchConfig::default()
    })
    .unwrap();
    let start = f.stats().limiter.limit;
    assert_eq!(start, 40);
    // Overload: the server takes 4 at once and answers 503 beyond that.
    let overload =
        join_all((0..600).map(|_| f.fetch(FetchRequest::get(server.url("/capacity/4/5"))))).await;
    assert!(overload.iter().any(|r| r.status == Some(503)));
    let low = f.stats().limiter;
    assert!(low.limit < start, "the limit came down: {low:?}");
    assert!(low.overloads > 0);
    // Recovery: the same server, no capacity limit, latency flat.
    // Rounds of 400 until it has grown (at most 20).
    for _ in 0..20 {
        join_all((0..400).map(|_| f.fetch(FetchRequest::get(server.url("/slow/5"))))).await;
        if f.stats().limiter.limit > low.limit {
            break;
        }
    }
    let high = f.stats().limiter;
    assert!(
        high.limit > low.limit,
        "the limit went back up: {low:?} -> {high:?}"
    );
    assert!(high.limit <= 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_per_host_adaptive_limit_comes_down_under_overload_recovers_and_is_freed() {
    let server = Server::start().await;
    let per_host = 32;
    let f = Fetcher::new(FetchConfig {
        concurrency: 64,
        per_host,
        per_host_adaptive: Some(AdaptiveConfig {
            initial: 24,
            min: 2,
            ..AdaptiveConfig::default()
        }),
        max_retries: 0,
        ..FetchConfig::default()
    })
    .unwrap();
    let key = format!("127.0.0.1:{}", server.addr.port());
    // The global limit stays static; only the host's limit adapts.
    assert_eq!(f.stats().limiter.algorithm, "static");
    // One request that never gets an answer keeps the host's entry (and
    // its limiter) alive through the phases.
    let hold = tokio::spawn({
        let (f, url) = (f.clone(), server.url("/hang"));
        async move { f.fetch(FetchRequest::get(url)).await }
    });
    let mut waited = 0;
    while f.hosts().limiter(&key).is_none_or(|s| s.in_flight == 0) {
        waited += 1;
        assert!(waited < 10_000, "the held request never started");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start = f.hosts().limiter(&key).unwrap();
    assert_eq!((start.algorithm, start.limit), ("gradient", 24));

    // Overload: the server takes 5 at once (the held request is one of
    // them) and answers 503 beyond that.
    let overload =
        join_all((0..600).map(|_| f.fetch(FetchRequest::get(server.url("/capacity/5/5"))))).await;
    assert!(overload.iter().any(|r| r.status == Some(503)));
    let low = f.hosts().limiter(&key).expect("held");
    assert!(
        low.limit < start.limit,
        "the host's limit came down: {low:?}"
    );
    assert!(low.overloads > 0);
    assert_eq!(f.stats().limiter.limit, 64, "the global limit did not move");

    // Recovery: no capacity limit, latency flat. Rounds of 400 until the
    // host's limit has grown (at most 20).
    for _ in 0..20 {
        join_all((0..400).map(|_| f.fetch(FetchRequest::get(server.url("/slow/5"))))).await;
        if f.hosts().limiter(&key).expect("held").limit > low.limit {
            break;
        }
    }
    let high = f.hosts().limiter(&key).expect("held");
    assert!(
        high.limit > low.limit,
        "the host's limit went back up: {low:?} -> {high:?}"
    );
    // Capped by the static per-host limit, as the server counted it.
    assert!(high.limit <= per_host);
    assert!(server.stats.max_in_flight() <= per_host);

    // Idle: the entry and its learnt limit are freed.
    hold.abort();
    assert!(hold.await.is_err());
    assert!(f.hosts().limiter(&key).is_none());
    assert_eq!(f.stats().hosts.tracked, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_response_cache_fetches_a_url_once_for_concurrent_callers() {
    let server = Server::start().await;
    let f = Fetcher::new(FetchConfig {
        response_cache: Some(ResponseCacheConfig {
            ttl: Duration::from_secs(60),
            max_bytes: 1 << 20,
        }),
        ..FetchConfig::default()
    })
    .unwrap();
    let all =
        join_all((0..50).map(|_| f.fetch(FetchRequest::get(server.url("/count/cached/200")))))
            .await;
    assert!(all.iter().all(|r| r.is_ok() && r.status == Some(200)));
    assert_eq!(server.stats.arrivals("cached").len(), 1);
    let later = f
        .fetch(FetchRequest::get(server.url("/count/cached/200")))
        .await;
    assert!(later.is_ok());
    assert_eq!(server.stats.arrivals("cached").len(), 1);
    let snap = f.stats().responses.unwrap();
    assert_eq!(snap.computes, 1);
    assert!(snap.hits >= 1);
    // Failures are not kept: each fetch of a failing URL asks again.
    for _ in 0..2 {
        let r = f
            .fetch(FetchRequest::get(server.url("/count/missing/404")))
            .await;
        assert_eq!(r.status, Some(404));
    }
    assert_eq!(server.stats.arrivals("missing").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_retry_budget_caps_retries_across_requests() {
    let server = Server::start().await;
    let f = Fetcher::new(FetchConfig {
        max_retries: 5,
        backoff_base: Duration::from_millis(1),
        backoff_cap: Duration::from_millis(2),
        retry_budget: RetryBudgetConfig {
            ratio: 0.1,
            min_per_second: 0,
            window: Duration::from_secs(60),
        },
        ..FetchConfig::default()
    })
    .unwrap();
    let all = join_all(
        (0..100).map(|i| f.fetch(FetchRequest::get(server.url(&format!("/500/k{i}/100"))))),
    )
    .await;
    assert!(all.iter().all(|r| r.error.is_some()));
    let stats = f.stats();
    // 100 requests at a 10 % budget: at most 10 retries, not 500.
    assert!(stats.retries <= 10, "{} retries", stats.retries);
    assert!(stats.budget_refused >= 90);
    assert_eq!(server.stats.requests() as u64, 100 + stats.retries);
}
