//! The broker conformance suite on PostgreSQL, one schema per test.
//!
//! Runs when `SURGE_TEST_POSTGRES_URL` is set; otherwise each test prints
//! why it skipped, unless `SURGE_REQUIRE_BACKENDS` names `postgres`, in
//! which case a skip is a failure.

use std::time::Duration;

use sqlx::Connection;
use surge_queue::broker::BrokerConfig;
use surge_queue::broker::postgres::PgBroker;
use surge_queue::conformance::{LONG_LEASE, WAIT, register};
use surge_queue::{Broker, BrokerError, NewTask};
use surge_testkit::{postgres_url, with_search_path};
use tokio::task::JoinHandle;

/// Schemas of runs older than this are dropped by the next run.
const STALE_AFTER: Duration = Duration::from_secs(3_600);

/// A new schema `q_<uuid v7 hex>` and the URL that uses it; schemas of
/// this suite older than [`STALE_AFTER`] (the uuid tells when they were
/// made) are dropped.
async fn fresh_url() -> Option<String> {
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
    Some(with_search_path(&base, &schema))
}

/// A broker on a new schema.
async fn fresh() -> Option<PgBroker> {
    let url = fresh_url().await?;
    Some(connect(&url).await)
}

async fn connect(url: &str) -> PgBroker {
    PgBroker::connect(url, &BrokerConfig::default())
        .await
        .expect("connect")
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

fn noop(queue: &str) -> NewTask {
    NewTask::new("noop", serde_json::json!({})).with_queue(queue)
}

fn waiter(broker: &PgBroker, queue: &str, max_wait: Duration) -> JoinHandle<()> {
    let (broker, queues) = (broker.clone(), vec![queue.to_owned()]);
    tokio::spawn(async move { broker.wait_for_work(&queues, max_wait).await })
}

/// Whether a waiter on `waiting` wakes while `submitting` enqueues a task
/// on `queue` every 100 ms (for at most [`WAIT`]; five tasks when
/// `expect_wake` is false).
async fn wakes(waiting: &PgBroker, submitting: &PgBroker, queue: &str, expect_wake: bool) -> bool {
    let woken = waiter(waiting, queue, Duration::from_secs(60));
    let rounds = if expect_wake {
        WAIT.as_millis() / 100
    } else {
        5
    };
    for _ in 0..rounds {
        if woken.is_finished() {
            break;
        }
        submitting.enqueue(&[noop(queue)]).await.expect("enqueue");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let finished = woken.is_finished();
    woken.abort();
    finished
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_cross_connections_but_not_schemas() {
    let Some(url) = fresh_url().await else { return };
    let (here, there) = (connect(&url).await, connect(&url).await);
    let Some(elsewhere) = fresh().await else {
        return;
    };
    // An enqueue through another broker (another process, as far as the
    // server knows) on the same schema wakes this one.
    assert!(
        wakes(&here, &there, "shared-name", true).await,
        "woken by another connection's enqueue"
    );
    // Its listener is up now: the same queue name on another schema does
    // not wake it.
    assert!(
        !wakes(&here, &elsewhere, "shared-name", false).await,
        "a task on another schema woke this broker's waiter"
    );
}

/// The listening connection is killed: the broker listens again and
/// enqueues wake its waiters as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_reconnects() {
    let Some(url) = fresh_url().await else { return };
    let broker = connect(&url).await;
    assert!(wakes(&broker, &broker, "rc", true).await, "listening");
    let schema = url
        .rsplit("%3D")
        .next()
        .expect("schema in the URL")
        .to_owned();
    let listeners = || {
        let (url, schema) = (url.clone(), schema.clone());
        async move {
            let mut admin = sqlx::PgConnection::connect(&url).await.expect("connect");
            let pids: Vec<i32> = sqlx::query_scalar(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE '%LISTEN%' || $1 || '%'",
            )
            .bind(&schema)
            .fetch_all(&mut admin)
            .await
            .expect("pg_stat_activity");
            (admin, pids)
        }
    };
    let (mut admin, killed) = listeners().await;
    assert_eq!(killed.len(), 1, "one listening connection: {killed:?}");
    let done: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(killed[0])
        .fetch_one(&mut admin)
        .await
        .expect("terminate");
    assert!(done);
    // Twice: the first wake may be the one every waiter gets when the
    // listener is back; the second is a notification again.
    for round in 0..2 {
        assert!(wakes(&broker, &broker, "rc", true).await, "round {round}");
    }
    let (_, now) = listeners().await;
    assert!(
        now.len() == 1 && now != killed,
        "a new listening connection: {now:?}"
    );
}

/// A task submitted after a claim came back empty but before the claimer
/// started waiting still wakes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_submitted_between_claim_and_wait_is_not_slept_through() {
    let Some(broker) = fresh().await else { return };
    let queues = vec!["gap".to_owned()];
    let worker = register(&broker, LONG_LEASE).await;
    // Let the listener come up (its start wakes everyone once).
    broker
        .wait_for_work(&queues, Duration::from_millis(500))
        .await;
    let claimer = {
        let broker = broker.clone();
        tokio::spawn(async move {
            let got = broker.claim(worker.id, &queues, 10).await.expect("claim");
            assert!(got.is_empty());
            // The submission lands and is notified here, before the wait.
            tokio::time::sleep(Duration::from_millis(500)).await;
            broker.wait_for_work(&queues, Duration::from_secs(60)).await;
            broker.claim(worker.id, &queues, 10).await.expect("claim")
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = noop("gap");
    broker
        .enqueue(std::slice::from_ref(&t))
        .await
        .expect("enqueue");
    let got = tokio::time::timeout(WAIT, claimer)
        .await
        .expect("the wait returned at once")
        .expect("claimer");
    assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), vec![t.id]);
}

/// A task whose ETA comes is marked ready by whichever claim runs next (on
/// any queue), and that wakes the task's own waiters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_task_wakes_its_waiters_through_any_claim() {
    let Some(broker) = fresh().await else { return };
    let worker = register(&broker, LONG_LEASE).await;
    let queue = vec!["later".to_owned()];
    let t = noop("later").with_countdown(Duration::from_millis(800));
    broker
        .enqueue(std::slice::from_ref(&t))
        .await
        .expect("enqueue");
    // Let the listener come up (its start wakes everyone once).
    broker
        .wait_for_work(&queue, Duration::from_millis(500))
        .await;
    let woken = waiter(&broker, "later", Duration::from_secs(60));
    // Meanwhile, a worker of another queue keeps claiming.
    let other = vec!["elsewhere".to_owned()];
    let deadline = std::time::Instant::now() + WAIT;
    while !woken.is_finished() && std::time::Instant::now() < deadline {
        broker.claim(worker.id, &other, 1).await.expect("claim");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(woken.is_finished(), "the due task's waiter woke");
    assert!(chrono::Utc::now() >= t.run_at, "not before its ETA");
    let got = broker.claim(worker.id, &queue, 10).await.expect("claim");
    assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), vec![t.id]);
}
