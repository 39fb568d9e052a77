//! Fresh brokers for tests: one SQLite file, PostgreSQL schema or Redis
//! namespace per test. PostgreSQL and Redis need their URL
//! (`SURGE_TEST_POSTGRES_URL`, `SURGE_TEST_REDIS_URL`); without it the test
//! prints `SKIP <backend>: …` and passes, unless `SURGE_REQUIRE_BACKENDS`
//! names the backend.

#![allow(dead_code, unreachable_pub)]

use surge_queue::BrokerConfig;
use surge_queue::broker::AnyBroker;

/// A broker on a new SQLite file.
pub async fn sqlite() -> Option<AnyBroker> {
    let dir = tempfile::Builder::new()
        .prefix("queue-engine-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
        .keep();
    let url = format!("sqlite://{}", dir.join("queue.db").display());
    Some(
        AnyBroker::connect(&url, &BrokerConfig::default())
            .await
            .expect("sqlite broker"),
    )
}

/// The URL of a new PostgreSQL schema.
pub async fn postgres_url() -> Option<String> {
    let base = surge_testkit::postgres_url()?;
    Some(surge_testkit::new_schema(&base, "qe_").await.1)
}

/// A broker on a new PostgreSQL schema.
pub async fn postgres() -> Option<AnyBroker> {
    let url = postgres_url().await?;
    Some(
        AnyBroker::connect(&url, &BrokerConfig::default())
            .await
            .expect("postgres broker"),
    )
}

/// A broker on a new Redis namespace.
pub async fn redis() -> Option<AnyBroker> {
    let url = surge_testkit::redis_url()?;
    let config = BrokerConfig {
        namespace: format!("qe-{}", surge_testkit::suffix()),
        ..BrokerConfig::default()
    };
    Some(
        AnyBroker::connect(&url, &config)
            .await
            .expect("redis broker"),
    )
}
