//! The global and per-host limits are never exceeded (counted by the
//! servers), per-host state goes away when hosts go idle, and concurrent
//! lookups of one name are merged into one.

mod support;

use std::sync::Arc;

use futures_util::future::join_all;
use support::{Server, Stats};
use surge_fetch::{FetchConfig, FetchRequest, Fetcher};

fn fetcher(concurrency: usize, per_host: usize) -> Fetcher {
    Fetcher::new(FetchConfig {
        concurrency,
        per_host,
        ..FetchConfig::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_per_host_limit_is_never_exceeded() {
    let server = Server::start().await;
    let f = fetcher(64, 4);
    let all = join_all((0..120).map(|_| f.fetch(FetchRequest::get(server.url("/slow/20"))))).await;
    assert!(
        all.iter().all(|r| r.is_ok()),
        "{:?}",
        all.iter().find(|r| !r.is_ok())
    );
    assert_eq!(server.stats.requests(), 120);
    // 120 requests queued on 4 slots of a 20 ms answer: the slots are kept
    // full, and never one more.
    assert_eq!(server.stats.max_in_flight(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_global_limit_holds_across_hosts() {
    // Three hosts (127.0.0.1, .2, .3) counted together, 6 global slots,
    // 5 per host: each host alone could take 5, all together only 6.
    let shared = Arc::new(Stats::default());
    let servers = [
        Server::start_on("127.0.0.1", Arc::clone(&shared)).await,
        Server::start_on("127.0.0.2", Arc::clone(&shared)).await,
        Server::start_on("127.0.0.3", Arc::clone(&shared)).await,
    ];
    let per_host: Vec<Arc<Stats>> = Vec::new();
    drop(per_host);
    let f = fetcher(6, 5);
    let urls: Vec<String> = (0..150).map(|i| servers[i % 3].url("/slow/20")).collect();
    let all = join_all(urls.into_iter().map(|u| f.fetch(FetchRequest::get(u)))).await;
    assert!(all.iter().all(|r| r.is_ok()));
    assert_eq!(shared.requests(), 150);
    assert_eq!(shared.max_in_flight(), 6);
    let stats = f.stats();
    assert_eq!(stats.requests, 150);
    assert_eq!(stats.in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_host_state_is_released_when_hosts_go_idle() {
    // 40 distinct hosts (127.0.0.1 .. 127.0.0.40); afterwards no state is left.
    let mut servers = Vec::new();
    for i in 1..=40 {
        servers.push(Server::start_on(&format!("127.0.0.{i}"), Arc::new(Stats::default())).await);
    }
    let f = fetcher(16, 2);
    let all = join_all(
        servers
            .iter()
            .flat_map(|s| [s.url("/ok"), s.url("/slow/5")])
            .map(|u| f.fetch(FetchRequest::get(u))),
    )
    .await;
    assert!(all.iter().all(|r| r.is_ok()));
    assert_eq!(f.stats().hosts.tracked, 0, "{:?}", f.stats().hosts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_lookups_of_one_name_are_merged() {
    let server = Server::start().await;
    let f = fetcher(100, 100);
    let url = format!("http://localhost:{}/slow/10", server.addr.port());
    let all = join_all((0..100).map(|_| f.fetch(FetchRequest::get(url.clone())))).await;
    assert!(all.iter().all(|r| r.is_ok()), "{:?}", all[0].error);
    let dns = f.stats().dns;
    assert_eq!(dns.requests, f.stats().requests.min(dns.requests));
    assert_eq!(dns.lookups, 1, "{dns:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_per_host_rate_spaces_the_starts() {
    let server = Server::start().await;
    let f = Fetcher::new(FetchConfig {
        per_host_rate: Some(20.0),
        ..FetchConfig::default()
    })
    .unwrap();
    let before = std::time::Instant::now();
    let all =
        join_all((0..6).map(|_| f.fetch(FetchRequest::get(server.url("/count/rate/200"))))).await;
    assert!(all.iter().all(|r| r.is_ok()));
    let times = server.stats.arrivals("rate");
    assert_eq!(times.len(), 6);
    // 20 per second: the k-th start is 50 ms × k after the first, and a
    // request arrives no sooner than it starts, so the k-th arrival comes
    // 50 ms × k after `before` or later, however slow the machine (delays
    // only make arrivals later). Without the rate all six would arrive at
    // once.
    for (k, t) in times.iter().enumerate() {
        let at_least = std::time::Duration::from_millis(50) * k as u32;
        assert!(
            *t - before >= at_least,
            "arrival {k} after {:?}",
            *t - before
        );
    }
}
