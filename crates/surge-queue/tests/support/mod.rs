//! Fresh brokers for tests: one SQLite file, PostgreSQL schema or Redis
//! namespace per test. PostgreSQL and Redis need their URL
//! (`SURGE_TEST_POSTGRES_URL`, `SURGE_TEST_REDIS_URL`); without it the test
//! prints `SKIP <backend>: …` and passes, unless `SURGE_REQUIRE_BACKENDS`
//! names the backend.

#![allow(dead_code, unreachable_pub)]

use std::io::Write;

use surge_queue::BrokerConfig;
use surge_queue::broker::AnyBroker;

fn url(backend: &str, var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            let required = std::env::var("SURGE_REQUIRE_BACKENDS").unwrap_or_default();
            assert!(
                !required.split(',').any(|b| b.trim() == backend),
                "{var} is not set but SURGE_REQUIRE_BACKENDS requires {backend}"
            );
            let _ = writeln!(std::io::stderr(), "SKIP {backend}: {var} not set");
            None
        }
    }
}

fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

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
    let base = url("postgres", "SURGE_TEST_POSTGRES_URL")?;
    let schema = format!("qe_{}", suffix());
    let admin = sqlx::PgPool::connect(&base).await.expect("postgres");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .expect("create schema");
    admin.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
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
    let url = url("redis", "SURGE_TEST_REDIS_URL")?;
    let config = BrokerConfig {
        namespace: format!("qe-{}", suffix()),
        ..BrokerConfig::default()
    };
    Some(
        AnyBroker::connect(&url, &config)
            .await
            .expect("redis broker"),
    )
}
