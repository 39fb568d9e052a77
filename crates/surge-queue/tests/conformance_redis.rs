//! The broker conformance suite on Redis.
//!
//! Runs when `SURGE_TEST_REDIS_URL` is set (e.g. `redis://127.0.0.1:6379`),
//! each case under its own namespace `surge-test-{unix secs}-{random}`;
//! otherwise every case prints why it skipped, unless
//! `SURGE_REQUIRE_BACKENDS` names `redis`, in which case a skip is a
//! failure. The suite has no teardown hook, so the first case of a run
//! deletes the namespaces that runs more than ten minutes old left behind.

use std::sync::atomic::{AtomicBool, Ordering};

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use serde_json::json;
use surge_queue::broker::BrokerConfig;
use surge_queue::broker::redis::RedisBroker;
use surge_queue::conformance::{
    LONG_LEASE, WAIT, ack, claim, claim_one, get, in_ms, register, submit, success, task, tasks,
    within,
};
use surge_queue::model::{
    Completion, NewTask, Outcome, Rescued, RetryOutcome, Schedule, TaskFilter, TaskState,
};
use surge_queue::{Broker, BrokerError, TaskError};
use surge_testkit::redis_url;

const PREFIX: &str = "surge-test-";

async fn fresh() -> Option<RedisBroker> {
    Some(fresh_in_namespace().await?.0)
}

/// A broker in a new namespace, a plain connection to the same Redis (to
/// look at the layout) and the namespace.
async fn fresh_in_namespace() -> Option<(RedisBroker, MultiplexedConnection, String)> {
    let url = redis_url()?;
    static SWEPT: AtomicBool = AtomicBool::new(false);
    if !SWEPT.swap(true, Ordering::SeqCst) {
        sweep_old_namespaces(&url).await;
    }
    let secs = chrono::Utc::now().timestamp();
    let namespace = format!("{PREFIX}{secs}-{}", uuid::Uuid::new_v4().simple());
    let config = BrokerConfig {
        namespace: namespace.clone(),
        ..BrokerConfig::default()
    };
    let broker = RedisBroker::connect(&url, &config).await.expect("connect");
    assert_eq!(broker.backend(), "redis");
    let conn = redis::Client::open(url.as_str())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    Some((broker, conn, namespace))
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

// Redis-specific cases: limits of Lua, layout facts, every wake-up path.

#[tokio::test]
async fn unreachable_redis_is_unavailable_and_bad_urls_are_invalid() {
    let config = BrokerConfig {
        acquire_timeout: Duration::from_millis(500),
        ..BrokerConfig::default()
    };
    // Nothing listens on port 1: the connection is refused.
    let err = RedisBroker::connect("redis://127.0.0.1:1", &config)
        .await
        .expect_err("refused");
    assert!(err.is_transient(), "{err:?}");
    let err = RedisBroker::connect("http://127.0.0.1:6379", &config)
        .await
        .expect_err("not redis");
    assert!(matches!(err, BrokerError::InvalidUrl(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timestamps_keep_microseconds() {
    let Some(b) = fresh().await else { return };
    let mut t = task("us").with_eta(in_ms(-5_000) + chrono::Duration::microseconds(123));
    t.priority = i32::MIN;
    submit(&b, std::slice::from_ref(&t)).await;
    let got = get(&b, t.id).await;
    assert_eq!((got.run_at, got.priority), (t.run_at, i32::MIN));
}

/// A claim moves at most 256 due tasks from the delayed set: thousands due
/// at once drain over several claims, never in one script.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_due_backlog_is_promoted_in_bounded_batches() {
    let Some((b, mut conn, ns)) = fresh_in_namespace().await else {
        return;
    };
    let due_at = in_ms(1_000);
    let backlog: Vec<NewTask> = (0..3_000).map(|_| task("bk").with_eta(due_at)).collect();
    submit(&b, &backlog).await;
    let w = register(&b, LONG_LEASE).await;
    let first = within("the backlog is due", || async {
        let got = claim(&b, w.id, "bk", 10).await;
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(first.len(), 10);
    let delayed: u64 = redis::cmd("ZCARD")
        .arg(format!("{ns}:delayed:bk"))
        .query_async(&mut conn)
        .await
        .expect("zcard");
    assert_eq!(delayed, 3_000 - 256, "one claim promotes 256");
    let mut total = first.len();
    while total < 3_000 {
        let got = claim(&b, w.id, "bk", 5_000).await;
        assert!(!got.is_empty(), "drained at {total}");
        total += got.len();
    }
    assert!(claim(&b, w.id, "bk", 10).await.is_empty());
}

/// Batches far past Lua's unpack limit (8000) and the per-call batches of
/// claim, rescue, prune and list.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_batches() {
    let Some(b) = fresh().await else { return };
    let all = tasks("lb", 2_500);
    submit(&b, &all).await;
    let oldest = NewTask::new("lb.oldest", json!({})).with_queue("lb-other");
    let mut newer = tasks("lb-other", 1_300);
    newer.insert(0, oldest.clone());
    submit(&b, &newer).await;

    // list: a filter matching only the oldest of 3,801 tasks reads pages
    // until it finds it; a large unfiltered page spans several calls.
    let f = TaskFilter {
        kind: Some("lb.oldest".to_owned()),
        limit: 10,
        ..TaskFilter::default()
    };
    let found = b.list(&f).await.expect("list");
    assert_eq!(
        found.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![oldest.id]
    );
    let f = TaskFilter {
        limit: 1_500,
        ..TaskFilter::default()
    };
    let page = b.list(&f).await.expect("list");
    assert_eq!(page.len(), 1_500);
    assert!(page.windows(2).all(|p| p[0].id > p[1].id), "newest first");

    // One worker claims everything, then its lease is lost: one rescue call
    // hands back all 2,500 (over several scripts).
    let lost = register(&b, LONG_LEASE).await;
    let mut claimed = Vec::new();
    while claimed.len() < 2_500 {
        let got = claim(&b, lost.id, "lb", 100_000).await;
        assert!(!got.is_empty());
        claimed.extend(got);
    }
    surge_queue::conformance::expire_lease(&b, &lost).await;
    let rescued = b.rescue_expired(LONG_LEASE).await.expect("rescue");
    assert_eq!(
        rescued,
        Rescued {
            requeued: 2_500,
            dead: 0,
            dead_ids: Vec::new(),
        }
    );

    // One complete of 2,500, then one prune of them all.
    let w = register(&b, LONG_LEASE).await;
    let mut again = Vec::new();
    while again.len() < 2_500 {
        again.extend(claim(&b, w.id, "lb", 100_000).await);
    }
    let gone = Outcome::Succeeded {
        result: json!(1),
        expires_at: in_ms(-1_000),
    };
    let acks: Vec<Completion> = again.iter().map(|r| ack(r, gone.clone())).collect();
    let applied = b.complete(&acks).await.expect("complete");
    assert!(applied.iter().all(|a| *a) && applied.len() == 2_500);
    assert_eq!(b.prune(100_000).await.expect("prune"), 2_500);
}

/// Runs `action` while a waiter waits on `queue` (nothing due) with a long
/// `max_wait`, and asserts the waiter wakes within [`WAIT`]. A waiter woken
/// before the action (a late wake-up of an earlier submission: wake-ups are
/// hints, a spurious one is allowed) is replaced by a new one.
async fn wakes<F: Future<Output = ()>>(b: &RedisBroker, queue: &str, action: F) {
    let mut tries = 0;
    let waiter = loop {
        let waiter = {
            let (b, queue) = (b.clone(), queue.to_owned());
            tokio::spawn(async move {
                b.wait_for_work(&[queue], Duration::from_secs(60)).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        if !waiter.is_finished() {
            break waiter;
        }
        tries += 1;
        assert!(tries < 5, "{queue}: a waiter does not stay asleep");
    };
    action.await;
    let woke = tokio::time::timeout(WAIT, waiter).await;
    assert!(woke.is_ok(), "{queue}: not woken within {WAIT:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_way_to_become_due_now_wakes_waiters() {
    let Some(b) = fresh().await else { return };
    let w = register(&b, LONG_LEASE).await;

    // A retry outcome whose run_at has passed.
    submit(&b, &[task("wk-retry")]).await;
    let rec = claim_one(&b, w.id, "wk-retry").await;
    let err = TaskError::new(surge_core::ErrorCategory::Network, "reset");
    let outcome = Outcome::Retry {
        error: err.clone(),
        run_at: in_ms(-1),
    };
    wakes(&b, "wk-retry", async {
        b.complete(&[ack(&rec, outcome)]).await.expect("complete");
    })
    .await;

    // A requeue, due now.
    let rec = claim_one(&b, w.id, "wk-retry").await;
    let back = Outcome::Requeue { run_at: in_ms(-1) };
    wakes(&b, "wk-retry", async {
        b.complete(&[ack(&rec, back)]).await.expect("complete");
    })
    .await;

    // A manual retry of a dead task.
    let rec = claim_one(&b, w.id, "wk-retry").await;
    let dead = Outcome::Dead {
        error: err,
        expires_at: in_ms(60_000),
    };
    b.complete(&[ack(&rec, dead)]).await.expect("complete");
    wakes(&b, "wk-retry", async {
        let got = b.retry(rec.id).await.expect("retry");
        assert_eq!(got, Some(RetryOutcome::Requeued));
    })
    .await;

    // A rescue of an expired lease.
    let lost = register(&b, LONG_LEASE).await;
    claim_one(&b, lost.id, "wk-retry").await;
    surge_queue::conformance::expire_lease(&b, &lost).await;
    wakes(&b, "wk-retry", async {
        let got = b.rescue_expired(LONG_LEASE).await.expect("rescue");
        assert_eq!(got.requeued, 1);
    })
    .await;

    // A follow-up and a chord callback of a success.
    let group = uuid::Uuid::now_v7();
    let callback = task("wk-chord");
    b.create_chord(group, 1, &callback).await.expect("chord");
    let mut member = task("wk-member");
    member.group_id = Some(group);
    submit(&b, &[member]).await;
    let rec = claim_one(&b, w.id, "wk-member").await;
    let mut done = ack(&rec, success());
    done.follow_ups = vec![task("wk-follow")];
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            b.wait_for_work(&["wk-follow".to_owned()], Duration::from_secs(60))
                .await;
        })
    };
    wakes(&b, "wk-chord", async {
        b.complete(&[done]).await.expect("complete");
    })
    .await;
    assert!(
        tokio::time::timeout(WAIT, waiter).await.is_ok(),
        "follow-up"
    );

    // A schedule tick.
    let tick = in_ms(0);
    let schedule = Schedule {
        name: "wk".to_owned(),
        cron: "* * * * * *".to_owned(),
        timezone: "UTC".to_owned(),
        task: task("wk-sched"),
        next_fire_at: tick,
        last_fired_at: None,
        created_at: tick,
    };
    b.put_schedule(&schedule).await.expect("put");
    wakes(&b, "wk-sched", async {
        let fired = b
            .fire_schedule("wk", tick, in_ms(1_000), &task("wk-sched"))
            .await
            .expect("fire");
        assert!(fired);
    })
    .await;
}

/// With nothing ready, a waiter sleeps until the earliest ETA of its
/// queues (not its whole `max_wait`), and a submission with an earlier ETA
/// wakes it to look again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiter_wakes_for_the_next_eta() {
    let Some(b) = fresh().await else { return };
    let later = task("eta-wait").with_eta(in_ms(2_000));
    submit(&b, std::slice::from_ref(&later)).await;
    // Let the submission's own wake-up (an earlier ETA) pass first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    let woke = tokio::time::timeout(
        WAIT,
        b.wait_for_work(&["eta-wait".to_owned()], Duration::from_secs(60)),
    )
    .await;
    assert!(woke.is_ok(), "woken for the ETA within {WAIT:?}");
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "not long before it"
    );
    let w = register(&b, LONG_LEASE).await;
    let rec = within("claimable after its ETA", || async {
        claim(&b, w.id, "eta-wait", 1).await.pop()
    })
    .await;
    assert_eq!((rec.id, rec.state), (later.id, TaskState::Running));

    let far = task("eta-wait").with_eta(in_ms(3_600_000));
    submit(&b, std::slice::from_ref(&far)).await;
    wakes(&b, "eta-wait", async {
        submit(&b, &[task("eta-wait").with_eta(in_ms(1_000))]).await;
    })
    .await;
}
