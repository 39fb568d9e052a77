//! The broker conformance suite on PostgreSQL, one schema per test.
//!
//! Runs when `SURGE_TEST_POSTGRES_URL` is set; otherwise each test prints
//! why it skipped, unless `SURGE_REQUIRE_BACKENDS` names `postgres`, in
//! which case a skip is a failure.

use std::io::Write;
use std::time::Duration;

use sqlx::Connection;
use surge_queue::broker::BrokerConfig;
use surge_queue::broker::postgres::PgBroker;
use surge_queue::{Broker, BrokerError};

/// Schemas of runs older than this are dropped by the next run.
const STALE_AFTER: Duration = Duration::from_secs(3_600);

fn postgres_url() -> Option<String> {
    match std::env::var("SURGE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let required = std::env::var("SURGE_REQUIRE_BACKENDS").unwrap_or_default();
            assert!(
                !required.split(',').any(|b| b.trim() == "postgres"),
                "SURGE_REQUIRE_BACKENDS names postgres but SURGE_TEST_POSTGRES_URL is not set"
            );
            // Straight to the stderr handle: libtest captures `eprintln!`.
            let _ = writeln!(
                std::io::stderr(),
                "SKIP postgres: SURGE_TEST_POSTGRES_URL not set"
            );
            None
        }
    }
}

fn with_search_path(base: &str, schema: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// A broker on a new schema `q_<uuid v7 hex>`; schemas of this suite older
/// than [`STALE_AFTER`] (the uuid tells when they were made) are dropped.
async fn fresh() -> Option<PgBroker> {
    let base = postgres_url()?;
    let id = uuid::Uuid::now_v7();
    let schema = format!("q_{}", id.simple());
    let mut admin = sqlx::PgConnection::connect(&base).await.expect("connect");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .expect("create schema");
    drop_stale_schemas(&mut admin).await;
    admin.close().await.ok();
    let url = with_search_path(&base, &schema);
    let broker = PgBroker::connect(&url, &BrokerConfig::default())
        .await
        .expect("connect");
    Some(broker)
}

async fn drop_stale_schemas(admin: &mut sqlx::PgConnection) {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname ~ '^q_[0-9a-f]{32}$'",
    )
    .fetch_all(&mut *admin)
    .await
    .expect("list schemas");
    let cutoff = std::time::SystemTime::now() - STALE_AFTER;
    for name in names {
        let Ok(id) = uuid::Uuid::parse_str(&name[2..]) else {
            continue;
        };
        let Some((secs, nanos)) = id.get_timestamp().map(|t| t.to_unix()) else {
            continue;
        };
        let made = std::time::UNIX_EPOCH + Duration::new(secs, nanos);
        if made < cutoff {
            // Another run may be dropping it too: ignore failures.
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .execute(&mut *admin)
                .await;
        }
    }
}

surge_queue::conformance_tests!(fresh);

#[tokio::test]
async fn postgres_outage_is_unavailable() {
    let Some(_) = postgres_url() else { return };
    // Nothing listens on port 1: the connection is refused.
    let config = BrokerConfig {
        max_connections: 1,
        acquire_timeout: Duration::from_millis(500),
        ..BrokerConfig::default()
    };
    let err = PgBroker::connect("postgres://postgres@127.0.0.1:1/test", &config)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn a_url_that_is_not_postgres_is_invalid() {
    let err = PgBroker::connect("mysql://x@127.0.0.1/test", &BrokerConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::InvalidUrl(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_schemas_do_not_wake_each_other() {
    let (Some(a), Some(b)) = (fresh().await, fresh().await) else {
        return;
    };
    let queue = vec!["shared-name".to_owned()];
    let noop =
        || surge_queue::NewTask::new("noop", serde_json::json!({})).with_queue("shared-name");
    let waiter = |broker: &PgBroker| {
        let (broker, queue) = (broker.clone(), queue.clone());
        tokio::spawn(async move { broker.wait_for_work(&queue, Duration::from_secs(30)).await })
    };
    // First an enqueue on a's own schema wakes it: its listener is up.
    let woken = waiter(&a);
    for _ in 0..50 {
        if woken.is_finished() {
            break;
        }
        a.enqueue(&[noop()]).await.expect("enqueue");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(woken.is_finished(), "an enqueue on its own schema wakes it");

    let asleep = waiter(&a);
    for _ in 0..5 {
        b.enqueue(&[noop()]).await.expect("enqueue");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !asleep.is_finished(),
        "a task on another schema woke this broker's waiter"
    );
    asleep.abort();
}
