//! The frontier conformance suite on Redis: every frontier is a new crawl
//! under a new namespace `surge-test-crawl-{unix secs}-{random}` (the
//! queue's Redis suite sweeps `surge-test-*` namespaces older than ten
//! minutes).
//!
//! Runs when `SURGE_TEST_REDIS_URL` is set; otherwise each check prints
//! `SKIP redis: …` (a failure when `SURGE_REQUIRE_BACKENDS` names redis).

use surge_crawl::CrawlConfig;
use surge_crawl::frontier::redis::{RedisCrawls, RedisFrontier};

async fn fresh(max_pages: Option<u64>) -> Option<RedisFrontier> {
    let url = surge_testkit::redis_url()?;
    let namespace = format!(
        "surge-test-crawl-{}-{}",
        chrono::Utc::now().timestamp(),
        surge_testkit::suffix()
    );
    let crawls = RedisCrawls::connect(&url, &namespace)
        .await
        .expect("connect");
    let id = uuid::Uuid::now_v7();
    let config = CrawlConfig {
        start_urls: vec!["http://conformance.test/".into()],
        max_pages,
        ..CrawlConfig::default()
    };
    assert!(crawls.create(id, &config).await.expect("create"));
    assert!(!crawls.create(id, &config).await.expect("create twice"));
    Some(crawls.open(id).await.expect("open"))
}

surge_crawl::frontier_conformance_tests!(fresh);
