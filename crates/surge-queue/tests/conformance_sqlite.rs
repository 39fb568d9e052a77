//! The broker conformance suite on SQLite (always runs: one database file
//! per test, kept under cargo's per-target temp dir and removed by `cargo
//! clean`), plus what only SQLite has: several processes on one file.

use std::collections::HashSet;
use std::time::Duration;

use surge_queue::broker::BrokerConfig;
use surge_queue::broker::sqlite::SqliteBroker;
use surge_queue::conformance::{self, LONG_LEASE};
use surge_queue::{Broker, BrokerError};

fn new_url() -> String {
    let dir = tempfile::Builder::new()
        .prefix("queue-conformance-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
        .keep();
    format!("sqlite://{}", dir.join("queue.db").display())
}

async fn fresh() -> Option<SqliteBroker> {
    let broker = SqliteBroker::connect(&new_url(), &BrokerConfig::default())
        .await
        .expect("connect");
    Some(broker)
}

surge_queue::conformance_tests!(fresh);

/// Two brokers on one file stand for two processes (each has its own
/// writer connection): their writes wait for each other's lock instead of
/// failing, and no task is lost or run twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_file_share_the_work() {
    let url = new_url();
    let config = BrokerConfig::default();
    let a = SqliteBroker::connect(&url, &config).await.expect("connect");
    let b = SqliteBroker::connect(&url, &config).await.expect("connect");
    let all = conformance::tasks("shared", 1_000);
    let mut submitters = Vec::new();
    for (i, chunk) in all.chunks(10).enumerate() {
        let broker = if i % 2 == 0 { a.clone() } else { b.clone() };
        let chunk = chunk.to_vec();
        submitters.push(tokio::spawn(async move {
            for t in chunk {
                broker.enqueue(&[t]).await.expect("enqueue");
            }
        }));
    }
    for s in submitters {
        s.await.expect("submitter");
    }
    let (on_a, on_b) = tokio::join!(
        conformance::burn_down(&a, "shared", 2, 16, true),
        conformance::burn_down(&b, "shared", 2, 16, true),
    );
    assert!(on_a.is_disjoint(&on_b), "a task ran in both processes");
    let ran: HashSet<_> = on_a.union(&on_b).copied().collect();
    assert_eq!(ran, all.iter().map(|t| t.id).collect::<HashSet<_>>());
}

/// A lock held by another process past the busy timeout is `Unavailable`
/// (callers retry), and nothing is half-stored.
#[tokio::test]
async fn a_lock_held_elsewhere_is_unavailable() {
    use sqlx::{ConnectOptions, Connection};
    let url = new_url();
    let config = BrokerConfig {
        acquire_timeout: Duration::from_millis(200),
        ..BrokerConfig::default()
    };
    let broker = SqliteBroker::connect(&url, &config).await.expect("connect");
    let options: sqlx::sqlite::SqliteConnectOptions = url.parse().expect("url");
    let mut other = options.connect().await.expect("connect");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("lock");
    let t = conformance::task("locked");
    let err = broker.enqueue(std::slice::from_ref(&t)).await.unwrap_err();
    assert!(matches!(err, BrokerError::Unavailable { .. }), "{err:?}");
    assert!(err.is_transient());
    sqlx::query("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("unlock");
    other.close().await.expect("close");
    assert_eq!(broker.get(t.id).await.expect("get"), None);
    conformance::submit(&broker, &[t]).await;
}

#[tokio::test]
async fn urls_other_than_a_sqlite_file_are_refused() {
    for url in [
        "sqlite::memory:",
        "sqlite://x.db?mode=memory",
        "postgres://h/db",
    ] {
        let err = SqliteBroker::connect(url, &BrokerConfig::default())
            .await
            .unwrap_err();
        assert!(matches!(err, BrokerError::InvalidUrl(_)), "{url}: {err:?}");
    }
}

/// Beyond 16 queues a claim sorts instead of merging per-queue reads: same
/// order.
#[tokio::test]
async fn a_claim_of_many_queues_keeps_the_claim_order() {
    let broker = fresh().await.expect("broker");
    let queues: Vec<String> = (0..40).map(|i| format!("q{i}")).collect();
    let tasks: Vec<_> = queues
        .iter()
        .enumerate()
        .map(|(i, q)| conformance::task(q).with_priority(i32::try_from(i % 7).unwrap_or(0)))
        .collect();
    conformance::submit(&broker, &tasks).await;
    let w = conformance::register(&broker, LONG_LEASE).await;
    let got = broker.claim(w.id, &queues, 100).await.expect("claim");
    let mut want = tasks.clone();
    want.sort_by(|a, b| (b.priority, a.run_at, a.id).cmp(&(a.priority, b.run_at, b.id)));
    let got: Vec<_> = got.iter().map(|r| r.id).collect();
    assert_eq!(got, want.iter().map(|t| t.id).collect::<Vec<_>>());
}
