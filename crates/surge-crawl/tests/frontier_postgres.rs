//! The frontier conformance suite on PostgreSQL: every frontier is a new
//! crawl in a new schema.
//!
//! Runs when `SURGE_TEST_POSTGRES_URL` is set; otherwise each check prints
//! `SKIP postgres: …` (a failure when `SURGE_REQUIRE_BACKENDS` names
//! postgres).

use surge_crawl::CrawlConfig;
use surge_crawl::frontier::postgres::{PgCrawls, PgFrontier};

async fn fresh(max_pages: Option<u64>) -> Option<PgFrontier> {
    let base = surge_testkit::postgres_url()?;
    let (_, url) = surge_testkit::new_schema(&base, "crawlf_").await;
    let crawls = PgCrawls::connect(&url, 8).await.expect("connect");
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
