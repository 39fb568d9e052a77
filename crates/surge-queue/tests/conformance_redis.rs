//! The broker conformance suite on Redis.
//!
//! Runs when `SURGE_TEST_REDIS_URL` is set (e.g. `redis://127.0.0.1:6379`),
//! each case under its own namespace `surge-test-{unix secs}-{random}`;
//! otherwise every case prints why it skipped, unless
//! `SURGE_REQUIRE_BACKENDS` names `redis`, in which case a skip is a
//! failure. The suite has no teardown hook, so the first case of a run
//! deletes the namespaces that runs more than ten minutes old left behind.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use surge_queue::Broker;
use surge_queue::broker::BrokerConfig;
use surge_queue::broker::redis::RedisBroker;

const PREFIX: &str = "surge-test-";

async fn fresh() -> Option<RedisBroker> {
    let url = redis_url()?;
    static SWEPT: AtomicBool = AtomicBool::new(false);
    if !SWEPT.swap(true, Ordering::SeqCst) {
        sweep_old_namespaces(&url).await;
    }
    let secs = chrono::Utc::now().timestamp();
    let config = BrokerConfig {
        namespace: format!("{PREFIX}{secs}-{}", uuid::Uuid::new_v4().simple()),
        ..BrokerConfig::default()
    };
    let broker = RedisBroker::connect(&url, &config).await.expect("connect");
    assert_eq!(broker.backend(), "redis");
    Some(broker)
}

fn redis_url() -> Option<String> {
    match std::env::var("SURGE_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let required = std::env::var("SURGE_REQUIRE_BACKENDS").unwrap_or_default();
            assert!(
                !required.split(',').any(|b| b.trim() == "redis"),
                "SURGE_REQUIRE_BACKENDS names redis but SURGE_TEST_REDIS_URL is not set"
            );
            // Straight to the stderr handle: a skip must be visible.
            let _ = writeln!(
                std::io::stderr(),
                "SKIP redis: SURGE_TEST_REDIS_URL not set"
            );
            None
        }
    }
}

/// Deletes the keys of test namespaces created more than ten minutes ago.
async fn sweep_old_namespaces(url: &str) {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let cutoff = chrono::Utc::now().timestamp() - 600;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{PREFIX}*"))
            .arg("COUNT")
            .arg(1_000)
            .query_async(&mut conn)
            .await
            .expect("scan");
        let old: Vec<&String> = keys
            .iter()
            .filter(|k| {
                k[PREFIX.len()..]
                    .split('-')
                    .next()
                    .and_then(|s| s.parse::<i64>().ok())
                    .is_some_and(|secs| secs < cutoff)
            })
            .collect();
        if !old.is_empty() {
            let _: () = redis::cmd("UNLINK")
                .arg(&old)
                .query_async(&mut conn)
                .await
                .expect("unlink");
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

surge_queue::conformance_tests!(fresh);
