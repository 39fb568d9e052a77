//! The task kinds this binary runs: the built-ins, `http.fetch`, and, on a
//! PostgreSQL or Redis broker, `crawl` and `crawl.join` (the crawl is
//! stored in that broker). `surge serve` and `surge worker` both build
//! their registry here, so submission-time validation and execution agree.

use std::time::Duration;

use surge_crawl::task::CrawlKinds;
use surge_fetch::task::HttpFetch;
use surge_fetch::{AddressPolicy, FetchConfig, Fetcher};
use surge_queue::Registry;

/// How task kinds may reach the network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KindOptions {
    /// Let `http.fetch` reach private, loopback, link-local, CGNAT and
    /// metadata addresses (refused by default: tasks arrive over the API).
    pub(crate) fetch_allow_private: bool,
}

/// The engine `http.fetch` tasks share: at most 256 requests at once in
/// this process, 8 per host, 3 in-process attempts.
pub(crate) fn task_fetcher(options: KindOptions) -> anyhow::Result<Fetcher> {
    let config = FetchConfig {
        concurrency: 256,
        per_host: 8,
        max_retries: 2,
        max_retry_after: Duration::from_secs(30),
        address_policy: if options.fetch_allow_private {
            AddressPolicy::allow_all()
        } else {
            AddressPolicy::public_only()
        },
        ..FetchConfig::default()
    };
    let fetcher = Fetcher::new(config).map_err(|e| anyhow::anyhow!("http.fetch engine: {e}"))?;
    // Its limiter and caches show on /stats and the dashboard.
    fetcher.register(surge_core::observe::Observatory::global(), "http.fetch");
    Ok(fetcher)
}

/// `Registry::with_builtins()` plus `http.fetch`, plus `crawl` and
/// `crawl.join` when `broker_url` is a PostgreSQL or Redis broker (their
/// crawls live there, Redis keys under `SURGE_BROKER_NAMESPACE`; private
/// addresses only with `fetch_allow_private`).
pub(crate) fn registry(options: KindOptions, broker_url: &str) -> anyhow::Result<Registry> {
    let mut registry = Registry::with_builtins();
    registry.register(HttpFetch::new(task_fetcher(options)?));
    if surge_crawl::crawls::is_broker_url(broker_url) {
        CrawlKinds::new(
            broker_url,
            crate::queue::broker_config(4, None),
            options.fetch_allow_private,
        )
        .register(&mut registry);
    }
    Ok(registry)
}
