//! The one conformance suite every [`crate::Broker`] backend passes.
//!
//! Each case is a `pub async fn case(broker: &B)` taking a fresh, empty
//! broker (its own SQLite file / PostgreSQL schema / Redis key prefix).
//! `conformance_tests!(fresh)` expands, in a backend's test file
//! (`tests/conformance_<backend>.rs`), to one `#[tokio::test]` per case,
//! where `fresh` is an `async fn() -> Option<B>` that returns `None` (after
//! printing `SKIP <backend>: <reason>` to stderr) when the backend's URL is
//! not set.
//!
//! The cases assert exact facts only. Where time matters they use leases
//! and ETAs of 300 ms to 2 s and wait for an expected change with a generous
//! bound ([`WAIT`]); nothing passes or fails on how fast a backend is.
//! Timestamps handed to the broker are whole milliseconds, the precision
//! every backend keeps.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;
use surge_core::ErrorCategory;

use crate::Broker;
use crate::model::{
    CancelOutcome, Completion, NewTask, Outcome, Progress, Rescued, RetryOutcome, Schedule,
    TaskError, TaskFilter, TaskId, TaskOptions, TaskRecord, TaskState, WorkerId, WorkerInfo,
};

/// How long a case waits for something that must happen (a due task
/// becoming claimable, a waiter waking) before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A lease that outlives any case.
pub const LONG_LEASE: Duration = Duration::from_secs(120);

/// A lease short enough to let expire within a case.
pub const SHORT_LEASE: Duration = Duration::from_millis(300);

/// `t` truncated to whole milliseconds.
pub fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// Now plus `offset_ms` (negative: in the past), in whole milliseconds.
pub fn in_ms(offset_ms: i64) -> DateTime<Utc> {
    ms(Utc::now()) + chrono::Duration::milliseconds(offset_ms)
}

/// A no-op task on `queue`, due now.
pub fn task(queue: &str) -> NewTask {
    let mut t = NewTask::new("conformance.noop", json!({})).with_queue(queue);
    t.run_at = ms(t.run_at);
    t
}

/// `n` no-op tasks on `queue`, due now.
pub fn tasks(queue: &str, n: usize) -> Vec<NewTask> {
    (0..n).map(|_| task(queue)).collect()
}

/// A worker of this process claiming from `queues`.
pub fn worker_info(queues: &[&str]) -> WorkerInfo {
    let now = ms(Utc::now());
    WorkerInfo {
        id: uuid::Uuid::now_v7(),
        hostname: "conformance".to_owned(),
        pid: std::process::id(),
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        concurrency: 4,
        started_at: now,
        last_heartbeat: now,
        lease_expires_at: now,
    }
}

/// Registers a new worker with `ttl` and returns it.
pub async fn register<B: Broker>(b: &B, ttl: Duration) -> WorkerInfo {
    let w = worker_info(&["default"]);
    b.register_worker(&w, ttl).await.expect("register_worker");
    w
}

/// Renews `w` with [`SHORT_LEASE`], then sleeps well past it (no
/// heartbeat), so that its lease has expired when this returns.
pub async fn expire_lease<B: Broker>(b: &B, w: &WorkerInfo) {
    b.register_worker(w, SHORT_LEASE)
        .await
        .expect("register_worker");
    tokio::time::sleep(SHORT_LEASE * 3).await;
}

/// Enqueues `tasks` and asserts each was created.
pub async fn submit<B: Broker>(b: &B, tasks: &[NewTask]) {
    for chunk in tasks.chunks(250) {
        let done = b.enqueue(chunk).await.expect("enqueue");
        assert_eq!(done.len(), chunk.len(), "one Enqueued per task");
        for (t, e) in chunk.iter().zip(&done) {
            assert_eq!((e.id, e.created), (t.id, true), "created");
        }
    }
}

/// Claims from `queue` for `worker`, up to `limit`.
pub async fn claim<B: Broker>(
    b: &B,
    worker: WorkerId,
    queue: &str,
    limit: usize,
) -> Vec<TaskRecord> {
    b.claim(worker, &[queue.to_owned()], limit)
        .await
        .expect("claim")
}

/// Claims exactly one task from `queue` and returns it.
pub async fn claim_one<B: Broker>(b: &B, worker: WorkerId, queue: &str) -> TaskRecord {
    let mut got = claim(b, worker, queue, 1).await;
    assert_eq!(got.len(), 1, "one task claimed from {queue}");
    got.remove(0)
}

/// The stored task `id`, which must exist.
pub async fn get<B: Broker>(b: &B, id: TaskId) -> TaskRecord {
    b.get(id).await.expect("get").expect("task exists")
}

/// The answer to claimed task `rec` with `outcome`.
pub fn ack(rec: &TaskRecord, outcome: Outcome) -> Completion {
    Completion {
        id: rec.id,
        epoch: rec.epoch,
        worker_id: rec.worker_id.expect("a claimed task names its worker"),
        outcome,
        follow_ups: Vec::new(),
    }
}

/// A success with a result kept for an hour.
pub fn success() -> Outcome {
    Outcome::Succeeded {
        result: json!({"ok": true}),
        expires_at: in_ms(3_600_000),
    }
}

/// Completes one answer and returns whether it applied.
pub async fn complete_one<B: Broker>(b: &B, c: Completion) -> bool {
    let applied = b.complete(&[c]).await.expect("complete");
    assert_eq!(applied.len(), 1, "one answer per completion");
    applied[0]
}

/// Polls `f` every 20 ms until it gives `Some`, for at most [`WAIT`].
pub async fn within<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Non-zero task counts keyed by (queue, state).
pub async fn counts<B: Broker>(b: &B) -> BTreeMap<(String, &'static str), u64> {
    b.counts()
        .await
        .expect("counts")
        .into_iter()
        .filter(|c| c.count > 0)
        .map(|c| ((c.queue, c.state.as_str()), c.count))
        .collect()
}

fn error(category: ErrorCategory, message: &str) -> TaskError {
    TaskError::new(category, message)
}

fn sorted(mut ids: Vec<TaskId>) -> Vec<TaskId> {
    ids.sort();
    ids
}

/// 1. Every submitted field comes back from `get`, with the broker's own
///    fields at their initial values.
pub async fn round_trip<B: Broker>(b: &B) {
    assert_eq!(b.get(uuid::Uuid::now_v7()).await.expect("get"), None);
    let follow = NewTask::new("conformance.next", json!({"n": 2})).with_priority(-3);
    let mut t = NewTask::new(
        "conformance.full",
        json!({"url": "https://x.test", "n": [1, 2]}),
    )
    .with_queue("rt")
    .with_priority(7)
    .with_eta(in_ms(-1_500))
    .with_max_retries(9)
    .with_unique_key("rt-key")
    .with_options(TaskOptions {
        soft_time_limit_ms: Some(1_000),
        hard_time_limit_ms: Some(2_000),
        result_ttl_secs: Some(60),
        parent: Some(json!({"from": "above"})),
        on_success: vec![follow],
        on_failure: vec![NewTask::new("conformance.alert", json!(null))],
        group_index: Some(4),
        ..TaskOptions::default()
    });
    t.group_id = Some(uuid::Uuid::now_v7());
    let before = Utc::now();
    let done = b.enqueue(std::slice::from_ref(&t)).await.expect("enqueue");
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].id, done[0].created), (t.id, true));
    let got = get(b, t.id).await;
    assert!(
        (got.created_at - before).num_seconds().abs() < 60,
        "created_at is set to about now: {} vs {before}",
        got.created_at
    );
    let expected = TaskRecord {
        id: t.id,
        kind: t.kind.clone(),
        args: t.args.clone(),
        queue: t.queue.clone(),
        priority: 7,
        state: TaskState::Pending,
        attempts: 0,
        max_retries: 9,
        run_at: t.run_at,
        unique_key: t.unique_key.clone(),
        group_id: t.group_id,
        options: t.options.clone(),
        worker_id: None,
        epoch: 0,
        cancel_requested: false,
        progress: None,
        result: None,
        error: None,
        created_at: got.created_at,
        started_at: None,
        finished_at: None,
        expires_at: None,
    };
    assert_eq!(got, expected);
}

/// 2. A future ETA is `scheduled` and not claimed before it, then claimed;
///    a past ETA is `pending` and claimed at once.
pub async fn eta<B: Broker>(b: &B) {
    let w = register(b, LONG_LEASE).await;
    let later = task("eta").with_eta(in_ms(2_000));
    let past = task("eta").with_eta(in_ms(-60_000));
    submit(b, &[later.clone(), past.clone()]).await;
    assert_eq!(get(b, later.id).await.state, TaskState::Scheduled);
    assert_eq!(get(b, past.id).await.state, TaskState::Pending);
    let now = claim(b, w.id, "eta", 10).await;
    assert_eq!(now.iter().map(|r| r.id).collect::<Vec<_>>(), vec![past.id]);
    let (b2, id) = (b, w.id);
    let rec = within(
        "a scheduled task is claimed after its ETA",
        move || async move { claim(b2, id, "eta", 10).await.pop() },
    )
    .await;
    assert!(Utc::now() >= later.run_at, "not claimed before its ETA");
    assert_eq!(rec.id, later.id);
    assert_eq!(rec.state, TaskState::Running);
}

/// 3. Claim order is priority (high first), then `run_at`, then id; `limit`
///    is honoured and only the named queues are claimed.
pub async fn claim_order<B: Broker>(b: &B) {
    let w = register(b, LONG_LEASE).await;
    let base = in_ms(-10_000);
    let at = |s: i64| base + chrono::Duration::seconds(s);
    let t1 = task("co-a").with_eta(at(1));
    let t2 = task("co-a").with_priority(5).with_eta(at(3));
    let t3 = task("co-a").with_priority(5).with_eta(at(2));
    let t4 = task("co-a").with_eta(at(1));
    let other = task("co-b").with_priority(100);
    assert!(t1.id < t4.id, "ids increase");
    submit(
        b,
        &[
            t4.clone(),
            t1.clone(),
            other.clone(),
            t2.clone(),
            t3.clone(),
        ],
    )
    .await;
    let ids = |v: Vec<TaskRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(claim(b, w.id, "co-a", 2).await), vec![t3.id, t2.id]);
    assert_eq!(ids(claim(b, w.id, "co-a", 10).await), vec![t1.id, t4.id]);
    assert_eq!(ids(claim(b, w.id, "co-a", 10).await), Vec::<TaskId>::new());
    assert_eq!(get(b, other.id).await.state, TaskState::Pending);

    // Several queues at once: one order across them.
    let c1 = task("co-c").with_priority(1).with_eta(at(1));
    let d1 = task("co-d").with_priority(2).with_eta(at(2));
    let c2 = task("co-c").with_priority(2).with_eta(at(1));
    let e1 = task("co-e").with_priority(9);
    submit(b, &[c1.clone(), d1.clone(), c2.clone(), e1.clone()]).await;
    let queues = ["co-c".to_owned(), "co-d".to_owned(), "co-b".to_owned()];
    let got = ids(b.claim(w.id, &queues, 10).await.expect("claim"));
    assert_eq!(got, vec![other.id, c2.id, d1.id, c1.id]);
    assert_eq!(get(b, e1.id).await.state, TaskState::Pending);
}

/// 4. Eight concurrent claimers never get the same task twice and together
///    get every task.
pub async fn claim_exclusive<B: Broker>(b: &B) {
    let all = tasks("ex", 1_000);
    submit(b, &all).await;
    let seen = burn_down(b, "ex", 8, 16, false).await;
    assert_eq!(seen, all.iter().map(|t| t.id).collect::<HashSet<_>>());
}

/// Runs `loops` concurrent worker loops on `queue`, each with its own
/// worker, claiming up to `batch` until a claim comes back empty and, with
/// `succeed`, completing each batch as succeeded in one call. Returns every
/// claimed id, asserting that none was claimed twice.
pub async fn burn_down<B: Broker>(
    b: &B,
    queue: &'static str,
    loops: usize,
    batch: usize,
    succeed: bool,
) -> HashSet<TaskId> {
    let mut handles = Vec::new();
    for _ in 0..loops {
        let b = b.clone();
        handles.push(tokio::spawn(async move {
            let w = register(&b, LONG_LEASE).await;
            let mut mine = Vec::new();
            loop {
                let got = claim(&b, w.id, queue, batch).await;
                if got.is_empty() {
                    return mine;
                }
                assert!(got.len() <= batch, "limit honoured");
                assert!(got.iter().all(|r| r.worker_id == Some(w.id)));
                if succeed {
                    let acks: Vec<_> = got.iter().map(|r| ack(r, success())).collect();
                    let applied = b.complete(&acks).await.expect("complete");
                    assert!(applied.iter().all(|a| *a), "{applied:?}");
                }
                mine.extend(got.into_iter().map(|r| r.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    for h in handles {
        for id in h.await.expect("worker loop") {
            assert!(seen.insert(id), "task {id} claimed twice");
        }
    }
    seen
}

/// 5. A claim sets running, the worker, `started_at`, bumps attempts and
///    epoch and clears progress; unknown or expired workers claim nothing.
pub async fn claim_fields<B: Broker>(b: &B) {
    let t = task("cf");
    submit(b, std::slice::from_ref(&t)).await;
    let stranger = uuid::Uuid::now_v7();
    assert!(
        claim(b, stranger, "cf", 10).await.is_empty(),
        "unregistered worker"
    );
    let expired = register(b, LONG_LEASE).await;
    expire_lease(b, &expired).await;
    assert!(
        claim(b, expired.id, "cf", 10).await.is_empty(),
        "expired lease"
    );
    assert_eq!(get(b, t.id).await.state, TaskState::Pending);

    let w = register(b, LONG_LEASE).await;
    let first = claim_one(b, w.id, "cf").await;
    assert_eq!(first.state, TaskState::Running);
    assert_eq!(first.worker_id, Some(w.id));
    assert!(first.started_at.is_some());
    assert_eq!((first.attempts, first.epoch), (1, 1));
    assert_eq!(get(b, t.id).await, first, "claim returns the stored record");
    let p = Progress {
        fraction: 0.5,
        message: Some("half".to_owned()),
    };
    assert!(b.progress(t.id, 1, &p).await.expect("progress"));
    let back = Outcome::Requeue {
        run_at: in_ms(-1_000),
    };
    assert!(complete_one(b, ack(&first, back)).await);
    let second = claim_one(b, w.id, "cf").await;
    assert_eq!((second.attempts, second.epoch), (1, 2));
    assert_eq!(second.progress, None, "progress cleared");
}

/// 6. A success stores state, result and timestamps; the same answer again
///    does not apply.
pub async fn complete_succeeded<B: Broker>(b: &B) {
    let w = register(b, LONG_LEASE).await;
    submit(b, &[task("cs")]).await;
    let rec = claim_one(b, w.id, "cs").await;
    let expires_at = in_ms(3_600_000);
    let outcome = Outcome::Succeeded {
        result: json!({"answer": 42}),
        expires_at,
    };
    assert!(complete_one(b, ack(&rec, outcome.clone())).await);
    let done = get(b, rec.id).await;
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(done.result, Some(json!({"answer": 42})));
    assert!(done.finished_at.is_some());
    assert_eq!(done.expires_at, Some(expires_at));
    assert!(
        !complete_one(b, ack(&rec, outcome)).await,
        "already terminal"
    );
    assert_eq!(get(b, rec.id).await, done);
}

/// 7. Fencing: a wrong epoch, another worker, or an expired lease changes
///    nothing.
pub async fn fencing<B: Broker>(b: &B) {
    let w = register(b, LONG_LEASE).await;
    let other = register(b, LONG_LEASE).await;
    submit(b, &[task("fe"), task("fe")]).await;
    let rec = claim_one(b, w.id, "fe").await;
    let before = get(b, rec.id).await;
    let mut wrong_epoch = ack(&rec, success());
    wrong_epoch.epoch += 1;
    assert!(!complete_one(b, wrong_epoch).await, "wrong epoch");
    let mut wrong_worker = ack(&rec, success());
    wrong_worker.worker_id = other.id;
    assert!(!complete_one(b, wrong_worker).await, "other worker");
    assert_eq!(get(b, rec.id).await, before, "unchanged");

    let lost = claim_one(b, w.id, "fe").await;
    expire_lease(b, &w).await;
    let before = get(b, lost.id).await;
    assert!(
        !complete_one(b, ack(&lost, success())).await,
        "expired lease"
    );
    assert_eq!(get(b, lost.id).await, before, "unchanged");
}

/// 8. A retry outcome waits as `retrying` until its `run_at`, then is
///    claimed with attempts 2 and epoch 2.
pub async fn retry_outcome<B: Broker>(b: &B) {
    let w = register(b, LONG_LEASE).await;
    submit(b, &[task("ro")]).await;
    let rec = claim_one(b, w.id, "ro").await;
    let err = error(ErrorCategory::Network, "connection reset");
    let run_at = in_ms(2_000);
    let outcome = Outcome::Retry {
        error: err.clone(),
        run_at,
    };
    assert!(complete_one(b, ack(&rec, outcome)).await);
    let waiting = get(b, rec.id).await;
    assert_eq!(waiting.state, TaskState::Retrying);
    assert_eq!(waiting.error, Some(err));
    assert_eq!(waiting.run_at, run_at);
    assert!(
        claim(b, w.id, "ro", 10).await.is_empty(),
        "not before run_at"
    );
    let (b2, id) = (b, w.id);
    let again = within(
        "a retrying task is claimed after run_at",
        move || async move { claim(b2, id, "ro", 10).await.pop() },
    )
    .await;
    assert_eq!(again.id, rec.id);
    assert_eq!((again.attempts, again.epoch), (2, 2));
}

/// 9. Failed, dead and cancelled outcomes end the task; a requeue hands it
///    back without counting the attempt.
pub async fn other_outcomes<B: Broker>(b: &B) {
    let w = register(b, LONG_LEASE).await;
    submit(b, &tasks("oo", 5)).await;
    let expires_at = in_ms(3_600_000);
    let bad = error(ErrorCategory::Validation, "bad input");
    let cases = [
        (
            Outcome::Failed {
                error: bad.clone(),
                expires_at,
            },
            TaskState::Failed,
            Some(bad.clone()),
        ),
        (
            Outcome::Dead {
                error: bad.clone(),
                expires_at,
            },
            TaskState::Dead,
            Some(bad.clone()),
        ),
        (
            Outcome::Cancelled { expires_at },
            TaskState::Cancelled,
            None,
        ),
    ];
    for (outcome, state, err) in cases {
        let rec = claim_one(b, w.id, "oo").await;
        assert!(complete_one(b, ack(&rec, outcome)).await);
        let done = get(b, rec.id).await;
        assert_eq!(done.state, state);
        assert_eq!(done.error, err);
        assert!(done.finished_at.is_some(), "{state}: finished_at");
        assert_eq!(done.expires_at, Some(expires_at), "{state}: expires_at");
    }

    let due = claim_one(b, w.id, "oo").await;
    let future = claim_one(b, w.id, "oo").await;
    let due_at = in_ms(-1_000);
    let future_at = in_ms(3_600_000);
    let requeue = |rec: &TaskRecord, run_at| ack(rec, Outcome::Requeue { run_at });
    let applied = b
        .complete(&[requeue(&due, due_at), requeue(&future, future_at)])
        .await
        .expect("complete");
    assert_eq!(applied, vec![true, true]);
    let d = get(b, due.id).await;
    assert_eq!(
        (d.state, d.attempts, d.run_at),
        (TaskState::Pending, 0, due_at)
    );
    let f = get(b, future.id).await;
    assert_eq!(
        (f.state, f.attempts, f.run_at),
        (TaskState::Scheduled, 0, future_at)
    );
    let again = claim_one(b, w.id, "oo").await;
    assert_eq!((again.id, again.attempts, again.epoch), (due.id, 1, 2));
}

/// 10. Follow-ups are enqueued exactly when their completion applies.
pub async fn follow_ups<B: Broker>(b: &B) {
    let w = register(b, LONG_LEASE).await;
    submit(b, &[task("fu")]).await;
    let rec = claim_one(b, w.id, "fu").await;
    let skipped = task("fu-next");
    let mut fenced = ack(&rec, success());
    fenced.epoch += 1;
    fenced.follow_ups = vec![skipped.clone()];
    assert!(!complete_one(b, fenced).await);
    assert_eq!(b.get(skipped.id).await.expect("get"), None, "fenced: none");

    let next = [task("fu-next"), task("fu-next").with_eta(in_ms(3_600_000))];
    let mut good = ack(&rec, success());
    good.follow_ups = next.to_vec();
    assert!(complete_one(b, good).await);
    assert_eq!(get(b, next[0].id).await.state, TaskState::Pending);
    assert_eq!(get(b, next[1].id).await.state, TaskState::Scheduled);
    assert_eq!(b.get(skipped.id).await.expect("get"), None);
}

/// 11. Unique keys and ids: a live holder wins (also under concurrency);
///     a terminal task frees its key.
pub async fn unique_keys<B: Broker>(b: &B) {
    let w = register(b, LONG_LEASE).await;
    let first = task("uk").with_unique_key("k1");
    submit(b, std::slice::from_ref(&first)).await;
    let dup = task("uk").with_unique_key("k1");
    let got = b
        .enqueue(std::slice::from_ref(&dup))
        .await
        .expect("enqueue");
    assert_eq!((got[0].id, got[0].created), (first.id, false));
    assert_eq!(
        b.get(dup.id).await.expect("get"),
        None,
        "duplicate not stored"
    );

    // Same id twice.
    let again = b
        .enqueue(std::slice::from_ref(&first))
        .await
        .expect("enqueue");
    assert_eq!((again[0].id, again[0].created), (first.id, false));
    let plain = task("uk-plain");
    submit(b, std::slice::from_ref(&plain)).await;
    let again = b
        .enqueue(std::slice::from_ref(&plain))
        .await
        .expect("enqueue");
    assert_eq!((again[0].id, again[0].created), (plain.id, false));

    // Running still holds the key; success frees it.
    let rec = claim_one(b, w.id, "uk").await;
    assert_eq!(rec.id, first.id);
    let got = b
        .enqueue(&[task("uk").with_unique_key("k1")])
        .await
        .expect("enqueue");
    assert_eq!(
        (got[0].id, got[0].created),
        (first.id, false),
        "running holds"
    );
    assert!(complete_one(b, ack(&rec, success())).await);
    let fresh = task("uk").with_unique_key("k1");
    submit(b, std::slice::from_ref(&fresh)).await;

    // Cancelling frees it too.
    let held = task("uk2").with_unique_key("k2");
    submit(b, std::slice::from_ref(&held)).await;
    let cancelled = b.cancel(held.id, in_ms(3_600_000)).await.expect("cancel");
    assert_eq!(cancelled, Some(CancelOutcome::Cancelled));
    submit(b, &[task("uk2").with_unique_key("k2")]).await;

    // Duplicates inside one batch.
    let (x, y) = (
        task("uk3").with_unique_key("k3"),
        task("uk3").with_unique_key("k3"),
    );
    let got = b.enqueue(&[x.clone(), y.clone()]).await.expect("enqueue");
    assert_eq!((got[0].id, got[0].created), (x.id, true));
    assert_eq!((got[1].id, got[1].created), (x.id, false));
    assert_eq!(b.get(y.id).await.expect("get"), None);

    // Twenty concurrent submissions of one key: one task.
    let mut handles = Vec::new();
    for _ in 0..20 {
        let b = b.clone();
        handles.push(tokio::spawn(async move {
            let t = task("uk4").with_unique_key("k4");
            b.enqueue(&[t]).await.expect("enqueue")[0]
        }));
    }
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.expect("submitter"));
    }
    assert_eq!(
        results.iter().filter(|e| e.created).count(),
        1,
        "{results:?}"
    );
    let winner = results[0].id;
    assert!(results.iter().all(|e| e.id == winner), "{results:?}");
    let filter = TaskFilter {
        queue: Some("uk4".to_owned()),
        limit: 100,
        ..TaskFilter::default()
    };
    let stored = b.list(&filter).await.expect("list");
    assert_eq!(
        stored.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![winner]
    );
}

/// 12. Progress is stored while running and fenced by epoch.
pub async fn progress<B: Broker>(b: &B) {
    let w = register(b, LONG_LEASE).await;
    submit(b, &[task("pr")]).await;
    let rec = claim_one(b, w.id, "pr").await;
    let p = Progress {
        fraction: 0.25,
        message: Some("a quarter".to_owned()),
    };
    assert!(b.progress(rec.id, rec.epoch, &p).await.expect("progress"));
    let seen = get(b, rec.id).await;
    assert_eq!(
        (seen.state, seen.progress.clone()),
        (TaskState::Running, Some(p))
    );
    let stale = Progress {
        fraction: 0.75,
        message: None,
    };
    assert!(
        !b.progress(rec.id, rec.epoch + 1, &stale)
            .await
            .expect("progress")
    );
    assert_eq!(get(b, rec.id).await, seen, "unchanged");
    assert!(complete_one(b, ack(&rec, success())).await);
    assert!(
        !b.progress(rec.id, rec.epoch, &stale)
            .await
            .expect("progress")
    );
    let unknown = b.progress(uuid::Uuid::now_v7(), 1, &stale).await;
    assert!(!unknown.expect("progress"));
}

/// 13. Heartbeats renew the lease, report expiry and list the running tasks
///     whose cancellation was asked.
pub async fn heartbeat<B: Broker>(b: &B) {
    // Heartbeats every 100 ms keep a 1 s lease alive for 2.5 s.
    let ttl = Duration::from_secs(1);
    let w = register(b, ttl).await;
    submit(b, &[task("hb")]).await;
    let rec = claim_one(b, w.id, "hb").await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2_500) {
        let hb = b.heartbeat(w.id, ttl).await.expect("heartbeat");
        assert!(hb.lease_valid);
        assert!(hb.cancel.is_empty());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(complete_one(b, ack(&rec, success())).await, "lease renewed");

    let expired = register(b, LONG_LEASE).await;
    expire_lease(b, &expired).await;
    let hb = b.heartbeat(expired.id, ttl).await.expect("heartbeat");
    assert!(!hb.lease_valid, "expired lease");
    let hb = b
        .heartbeat(uuid::Uuid::now_v7(), ttl)
        .await
        .expect("heartbeat");
    assert!(!hb.lease_valid, "unknown worker");

    let w1 = register(b, LONG_LEASE).await;
    let w2 = register(b, LONG_LEASE).await;
    submit(b, &tasks("hc", 4)).await;
    let mine = claim(b, w1.id, "hc", 3).await;
    let theirs = claim_one(b, w2.id, "hc").await;
    for id in [mine[0].id, mine[2].id, theirs.id] {
        let c = b.cancel(id, in_ms(3_600_000)).await.expect("cancel");
        assert_eq!(c, Some(CancelOutcome::Requested));
    }
    let hb = b.heartbeat(w1.id, LONG_LEASE).await.expect("heartbeat");
    assert!(hb.lease_valid);
    assert_eq!(sorted(hb.cancel), sorted(vec![mine[0].id, mine[2].id]));
}

/// 14. Rescue puts the tasks of expired leases back (or dead when out of
///     attempts), leaves live workers alone, forgets long-gone workers, and
///     a deregistered worker's tasks are rescuable at once.
pub async fn rescue<B: Broker>(b: &B) {
    let lost = register(b, LONG_LEASE).await;
    let live = register(b, LONG_LEASE).await;
    let retried = task("ra").with_max_retries(3);
    let spent = task("ra").with_max_retries(0);
    submit(b, &[retried.clone(), spent.clone(), task("rb")]).await;
    assert_eq!(claim(b, lost.id, "ra", 10).await.len(), 2);
    let kept = claim_one(b, live.id, "rb").await;
    let ids: HashSet<_> = b
        .workers()
        .await
        .expect("workers")
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert!(
        ids.contains(&lost.id) && ids.contains(&live.id),
        "both listed"
    );

    expire_lease(b, &lost).await;
    let hour = Duration::from_secs(3_600);
    let done = b.rescue_expired(hour).await.expect("rescue");
    assert_eq!(
        done,
        Rescued {
            requeued: 1,
            dead: 1,
            dead_ids: vec![spent.id],
        }
    );
    let r = get(b, retried.id).await;
    assert_eq!((r.state, r.attempts), (TaskState::Retrying, 1));
    assert!(r.run_at <= Utc::now(), "due now");
    let err = r.error.expect("rescue error");
    assert_eq!(err.category, ErrorCategory::System);
    assert!(err.message.contains("lease"), "{}", err.message);
    assert_eq!(get(b, spent.id).await.state, TaskState::Dead);
    assert_eq!(get(b, kept.id).await, kept, "live worker's task untouched");
    assert_eq!(
        b.rescue_expired(hour).await.expect("rescue"),
        Rescued::default()
    );
    let again = claim_one(b, live.id, "ra").await;
    assert_eq!((again.id, again.attempts, again.epoch), (retried.id, 2, 2));

    // Long-expired workers are forgotten; live ones stay.
    let listed = |ws: Vec<WorkerInfo>| ws.into_iter().map(|w| w.id).collect::<HashSet<_>>();
    assert!(listed(b.workers().await.expect("workers")).contains(&lost.id));
    let forget = b
        .rescue_expired(Duration::from_millis(100))
        .await
        .expect("rescue");
    assert_eq!(forget, Rescued::default());
    let ids = listed(b.workers().await.expect("workers"));
    assert!(!ids.contains(&lost.id) && ids.contains(&live.id), "{ids:?}");

    // Deregistered: its tasks are rescued at once.
    let leaving = register(b, LONG_LEASE).await;
    submit(b, &[task("rc")]).await;
    let left = claim_one(b, leaving.id, "rc").await;
    b.deregister_worker(leaving.id).await.expect("deregister");
    assert!(!listed(b.workers().await.expect("workers")).contains(&leaving.id));
    let done = b.rescue_expired(hour).await.expect("rescue");
    assert_eq!(
        done,
        Rescued {
            requeued: 1,
            dead: 0,
            dead_ids: Vec::new(),
        }
    );
    assert_eq!(get(b, left.id).await.state, TaskState::Retrying);
    assert_eq!(get(b, kept.id).await, kept, "live worker's task untouched");
}

/// 15. Cancel: waiting → cancelled, running → requested, terminal → already
///     finished, unknown → none.
pub async fn cancel<B: Broker>(b: &B) {
    let w = register(b, LONG_LEASE).await;
    let expires_at = in_ms(3_600_000);
    let waiting = task("ca").with_unique_key("ca-key");
    let scheduled = task("ca-later").with_eta(in_ms(3_600_000));
    submit(b, &[waiting.clone(), scheduled.clone()]).await;
    for t in [&waiting, &scheduled] {
        let got = b.cancel(t.id, expires_at).await.expect("cancel");
        assert_eq!(got, Some(CancelOutcome::Cancelled));
        let rec = get(b, t.id).await;
        assert_eq!(rec.state, TaskState::Cancelled);
        assert_eq!(rec.expires_at, Some(expires_at));
    }
    submit(b, &[task("ca").with_unique_key("ca-key")]).await;

    let running = claim_one(b, w.id, "ca").await;
    let got = b.cancel(running.id, expires_at).await.expect("cancel");
    assert_eq!(got, Some(CancelOutcome::Requested));
    let rec = get(b, running.id).await;
    assert_eq!(
        (rec.state, rec.cancel_requested),
        (TaskState::Running, true)
    );
    let hb = b.heartbeat(w.id, LONG_LEASE).await.expect("heartbeat");
    assert_eq!(hb.cancel, vec![running.id]);
    let stop = Outcome::Cancelled { expires_at };
    assert!(complete_one(b, ack(&running, stop)).await);

    for (id, state) in [
        (waiting.id, TaskState::Cancelled),
        (running.id, TaskState::Cancelled),
    ] {
        let got = b.cancel(id, expires_at).await.expect("cancel");
        assert_eq!(got, Some(CancelOutcome::AlreadyFinished(state)));
    }
    submit(b, &[task("ca-ok")]).await;
    let ok = claim_one(b, w.id, "ca-ok").await;
    assert!(complete_one(b, ack(&ok, success())).await);
    let got = b.cancel(ok.id, expires_at).await.expect("cancel");
    assert_eq!(
        got,
        Some(CancelOutcome::AlreadyFinished(TaskState::Succeeded))
    );
    let got = b.cancel(uuid::Uuid::now_v7(), expires_at).await;
    assert_eq!(got.expect("cancel"), None);
}

/// 16. A manual retry puts dead, failed and cancelled tasks back to
///     `pending`; other states are not retryable.
pub async fn manual_retry<B: Broker>(b: &B) {
    let w = register(b, LONG_LEASE).await;
    let expires_at = in_ms(3_600_000);
    let bad = error(ErrorCategory::Business, "refused");
    submit(b, &tasks("mr", 3)).await;
    let d = claim_one(b, w.id, "mr").await;
    let f = claim_one(b, w.id, "mr").await;
    let s = claim_one(b, w.id, "mr").await;
    let dead = Outcome::Dead {
        error: bad.clone(),
        expires_at,
    };
    let failed = Outcome::Failed {
        error: bad,
        expires_at,
    };
    let applied = b
        .complete(&[ack(&d, dead), ack(&f, failed), ack(&s, success())])
        .await
        .expect("complete");
    assert_eq!(applied, vec![true, true, true]);
    let c = task("mr");
    submit(b, std::slice::from_ref(&c)).await;
    assert_eq!(
        b.cancel(c.id, expires_at).await.expect("cancel"),
        Some(CancelOutcome::Cancelled)
    );

    for id in [d.id, f.id, c.id] {
        let got = b.retry(id).await.expect("retry");
        assert_eq!(got, Some(RetryOutcome::Requeued));
        let rec = get(b, id).await;
        assert_eq!(rec.state, TaskState::Pending);
        assert_eq!(rec.attempts, 0);
        assert_eq!((rec.error, rec.result, rec.expires_at), (None, None, None));
        assert!(rec.run_at <= Utc::now(), "due now");
    }
    let again = claim(b, w.id, "mr", 10).await;
    let ids = sorted(again.iter().map(|r| r.id).collect());
    assert_eq!(ids, sorted(vec![d.id, f.id, c.id]));
    assert!(again.iter().all(|r| r.attempts == 1));

    let pending = task("mr-p");
    submit(b, std::slice::from_ref(&pending)).await;
    for (id, state) in [
        (again[0].id, TaskState::Running),
        (pending.id, TaskState::Pending),
        (s.id, TaskState::Succeeded),
    ] {
        let got = b.retry(id).await.expect("retry");
        assert_eq!(got, Some(RetryOutcome::NotRetryable(state)));
    }
    assert_eq!(b.retry(uuid::Uuid::now_v7()).await.expect("retry"), None);
}

/// 17. `list` filters, orders newest first and pages by id.
pub async fn list<B: Broker>(b: &B) {
    struct Row {
        id: TaskId,
        kind: &'static str,
        queue: &'static str,
        group: Option<TaskId>,
        state: TaskState,
    }
    let w = register(b, LONG_LEASE).await;
    let group = uuid::Uuid::now_v7();
    let mut rows = Vec::new();
    let mut new = Vec::new();
    for i in 0..9 {
        let kind = if i % 2 == 0 { "list.a" } else { "list.b" };
        let queue = if i < 5 { "l1" } else { "l2" };
        let mut t = NewTask::new(kind, json!({"i": i})).with_queue(queue);
        t.run_at = ms(t.run_at);
        t.group_id = (i % 3 == 0).then_some(group);
        rows.push(Row {
            id: t.id,
            kind,
            queue,
            group: t.group_id,
            state: TaskState::Pending,
        });
        new.push(t);
    }
    submit(b, &new).await;
    let claimed = claim(b, w.id, "l1", 2).await;
    assert!(complete_one(b, ack(&claimed[0], success())).await);
    for r in &mut rows {
        if r.id == claimed[0].id {
            r.state = TaskState::Succeeded;
        } else if r.id == claimed[1].id {
            r.state = TaskState::Running;
        }
    }
    let expect = |keep: &dyn Fn(&Row) -> bool| {
        let mut ids: Vec<_> = rows.iter().filter(|r| keep(r)).map(|r| r.id).collect();
        ids.sort_by(|a, b| b.cmp(a));
        ids
    };
    let listed = |f: TaskFilter| async move {
        let got = b.list(&f).await.expect("list");
        got.into_iter().map(|r| r.id).collect::<Vec<_>>()
    };
    let all = TaskFilter {
        limit: 100,
        ..TaskFilter::default()
    };
    assert_eq!(listed(all.clone()).await, expect(&|_| true));
    for state in [TaskState::Pending, TaskState::Running, TaskState::Succeeded] {
        let f = TaskFilter {
            state: Some(state),
            ..all.clone()
        };
        assert_eq!(listed(f).await, expect(&|r| r.state == state), "{state}");
    }
    let f = TaskFilter {
        kind: Some("list.a".to_owned()),
        ..all.clone()
    };
    assert_eq!(listed(f).await, expect(&|r| r.kind == "list.a"));
    let f = TaskFilter {
        queue: Some("l2".to_owned()),
        ..all.clone()
    };
    assert_eq!(listed(f).await, expect(&|r| r.queue == "l2"));
    let f = TaskFilter {
        group_id: Some(group),
        ..all.clone()
    };
    assert_eq!(listed(f).await, expect(&|r| r.group == Some(group)));
    let f = TaskFilter {
        state: Some(TaskState::Pending),
        kind: Some("list.b".to_owned()),
        queue: Some("l1".to_owned()),
        ..all.clone()
    };
    let want = expect(&|r| r.state == TaskState::Pending && r.kind == "list.b" && r.queue == "l1");
    assert_eq!(listed(f).await, want);
    let f = TaskFilter {
        group_id: Some(group),
        queue: Some("l2".to_owned()),
        ..all.clone()
    };
    assert_eq!(
        listed(f).await,
        expect(&|r| r.group == Some(group) && r.queue == "l2")
    );

    let f = TaskFilter {
        limit: 2,
        ..all.clone()
    };
    assert_eq!(listed(f).await, expect(&|_| true)[..2].to_vec());

    // Keyset pagination visits every task once, in order.
    for queue in [None, Some("l1".to_owned())] {
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let f = TaskFilter {
                queue: queue.clone(),
                before,
                limit: 2,
                ..TaskFilter::default()
            };
            let page = listed(f).await;
            assert!(page.len() <= 2);
            let Some(last) = page.last() else { break };
            before = Some(*last);
            seen.extend(page);
        }
        let want = expect(&|r| queue.as_deref().is_none_or(|q| r.queue == q));
        assert_eq!(seen, want, "pages of {queue:?}");
    }
}

/// 18. Counts per (queue, state) are exact.
pub async fn queue_counts<B: Broker>(b: &B) {
    let w = register(b, LONG_LEASE).await;
    let mut q1 = tasks("cq1", 3);
    q1.push(task("cq1").with_eta(in_ms(3_600_000)));
    let q2 = tasks("cq2", 2);
    submit(b, &q1).await;
    submit(b, &q2).await;
    let got = claim(b, w.id, "cq1", 2).await;
    let later = Outcome::Retry {
        error: error(ErrorCategory::Timeout, "slow"),
        run_at: in_ms(3_600_000),
    };
    let applied = b
        .complete(&[ack(&got[0], success()), ack(&got[1], later)])
        .await
        .expect("complete");
    assert_eq!(applied, vec![true, true]);
    let c = b.cancel(q2[0].id, in_ms(3_600_000)).await.expect("cancel");
    assert_eq!(c, Some(CancelOutcome::Cancelled));
    claim_one(b, w.id, "cq1").await;
    let want: BTreeMap<(String, &'static str), u64> = [
        (("cq1", "scheduled"), 1),
        (("cq1", "running"), 1),
        (("cq1", "retrying"), 1),
        (("cq1", "succeeded"), 1),
        (("cq2", "pending"), 1),
        (("cq2", "cancelled"), 1),
    ]
    .into_iter()
    .map(|((q, s), n)| ((q.to_owned(), s), n))
    .collect();
    assert_eq!(counts(b).await, want);
}

/// 19. Prune deletes only expired terminal tasks, at most `limit`.
pub async fn prune<B: Broker>(b: &B) {
    let w = register(b, LONG_LEASE).await;
    submit(b, &tasks("pn", 5)).await;
    let got = claim(b, w.id, "pn", 5).await;
    let gone = Outcome::Succeeded {
        result: json!(1),
        expires_at: in_ms(-1_000),
    };
    let applied = b
        .complete(&[
            ack(&got[0], gone.clone()),
            ack(&got[1], gone.clone()),
            ack(&got[2], gone),
            ack(&got[3], success()),
        ])
        .await
        .expect("complete");
    assert_eq!(applied, vec![true; 4]);
    let waiting = task("pn-w");
    let cancelled = task("pn-c");
    submit(b, &[waiting.clone(), cancelled.clone()]).await;
    let c = b.cancel(cancelled.id, in_ms(-1_000)).await.expect("cancel");
    assert_eq!(c, Some(CancelOutcome::Cancelled));

    assert_eq!(b.prune(3).await.expect("prune"), 3);
    assert_eq!(b.prune(100).await.expect("prune"), 1);
    assert_eq!(b.prune(100).await.expect("prune"), 0);
    for id in [got[0].id, got[1].id, got[2].id, cancelled.id] {
        assert_eq!(b.get(id).await.expect("get"), None, "pruned");
    }
    assert_eq!(get(b, got[3].id).await.state, TaskState::Succeeded);
    assert_eq!(get(b, got[4].id).await.state, TaskState::Running);
    assert_eq!(get(b, waiting.id).await.state, TaskState::Pending);
}

/// 20. Schedules: put, list, replace, delete, and a compare-and-set fire
///     that exactly one of many concurrent schedulers wins.
pub async fn schedules<B: Broker>(b: &B) {
    let schedule = |name: &str, cron: &str, next: DateTime<Utc>| Schedule {
        name: name.to_owned(),
        cron: cron.to_owned(),
        timezone: "Europe/Paris".to_owned(),
        task: task("sc"),
        next_fire_at: next,
        last_fired_at: None,
        created_at: in_ms(0),
    };
    let key = |s: &Schedule| {
        (
            s.name.clone(),
            s.cron.clone(),
            s.timezone.clone(),
            s.task.clone(),
            s.next_fire_at,
            s.last_fired_at,
        )
    };
    let listed = || async {
        let got = b.schedules().await.expect("schedules");
        got.iter().map(key).collect::<Vec<_>>()
    };
    let tick = in_ms(60_000);
    let beta = schedule("beta", "0 0 * * * *", in_ms(3_600_000));
    let alpha = schedule("alpha", "0 * * * * *", tick);
    b.put_schedule(&beta).await.expect("put");
    b.put_schedule(&alpha).await.expect("put");
    assert_eq!(listed().await, vec![key(&alpha), key(&beta)], "by name");
    let beta = schedule("beta", "30 0 * * * *", in_ms(7_200_000));
    b.put_schedule(&beta).await.expect("put");
    assert_eq!(listed().await, vec![key(&alpha), key(&beta)], "replaced");
    assert!(b.delete_schedule("beta").await.expect("delete"));
    assert!(!b.delete_schedule("beta").await.expect("delete"));
    assert_eq!(listed().await, vec![key(&alpha)]);

    let next = tick + chrono::Duration::minutes(1);
    let fired = task("sc");
    assert!(
        b.fire_schedule("alpha", tick, next, &fired)
            .await
            .expect("fire")
    );
    assert_eq!(get(b, fired.id).await.kind, fired.kind);
    let now = b.schedules().await.expect("schedules");
    assert_eq!(
        (now[0].next_fire_at, now[0].last_fired_at),
        (next, Some(tick))
    );
    let stale = task("sc");
    assert!(
        !b.fire_schedule("alpha", tick, next, &stale)
            .await
            .expect("fire")
    );
    assert_eq!(b.get(stale.id).await.expect("get"), None);

    let after = next + chrono::Duration::minutes(1);
    let mut handles = Vec::new();
    for _ in 0..8 {
        let b = b.clone();
        handles.push(tokio::spawn(async move {
            let t = task("sc");
            let won = b
                .fire_schedule("alpha", next, after, &t)
                .await
                .expect("fire");
            (won, t.id)
        }));
    }
    let mut winners = 0;
    let mut stored = 0;
    for h in handles {
        let (won, id) = h.await.expect("scheduler");
        winners += usize::from(won);
        stored += usize::from(b.get(id).await.expect("get").is_some());
    }
    assert_eq!((winners, stored), (1, 1));

    let orphan = task("sc");
    assert!(
        !b.fire_schedule("beta", after, after, &orphan)
            .await
            .expect("fire")
    );
    assert_eq!(
        b.get(orphan.id).await.expect("get"),
        None,
        "deleted schedule"
    );
}

/// Creates a chord of three members on `queue` whose callback is of kind
/// `callback_kind`, enqueues the members and returns the callback.
async fn three_member_chord<B: Broker>(b: &B, queue: &str, callback_kind: &str) -> NewTask {
    let group = uuid::Uuid::now_v7();
    let callback = NewTask::new(callback_kind, json!({"group": group})).with_queue("ch-cb");
    b.create_chord(group, 3, &callback).await.expect("chord");
    let members: Vec<NewTask> = (0..3)
        .map(|_| {
            let mut t = task(queue);
            t.group_id = Some(group);
            t
        })
        .collect();
    submit(b, &members).await;
    callback
}

/// The tasks of kind `kind`.
async fn of_kind<B: Broker>(b: &B, kind: &str) -> Vec<TaskRecord> {
    let f = TaskFilter {
        kind: Some(kind.to_owned()),
        limit: 100,
        ..TaskFilter::default()
    };
    b.list(&f).await.expect("list")
}

/// 21. A chord's callback is enqueued once when every member succeeded, and
///     never when a member ends dead.
pub async fn chords<B: Broker>(b: &B) {
    let callback = three_member_chord(b, "ch", "chord.callback").await;
    let mut claimed = Vec::new();
    for _ in 0..3 {
        let w = register(b, LONG_LEASE).await;
        claimed.push(claim_one(b, w.id, "ch").await);
    }
    assert!(complete_one(b, ack(&claimed[0], success())).await);
    assert_eq!(b.get(callback.id).await.expect("get"), None, "1 of 3");
    let mut handles = Vec::new();
    for rec in claimed.drain(1..) {
        let b = b.clone();
        handles.push(tokio::spawn(async move {
            complete_one(&b, ack(&rec, success())).await
        }));
    }
    for h in handles {
        assert!(h.await.expect("completer"));
    }
    let cb = get(b, callback.id).await;
    assert_eq!(
        (cb.kind.as_str(), cb.state),
        ("chord.callback", TaskState::Pending)
    );
    assert_eq!(of_kind(b, "chord.callback").await.len(), 1, "enqueued once");

    // A dead member fails the chord.
    let never = three_member_chord(b, "ch2", "chord.never").await;
    let w = register(b, LONG_LEASE).await;
    let got = claim(b, w.id, "ch2", 3).await;
    let dead = Outcome::Dead {
        error: error(ErrorCategory::Network, "gone"),
        expires_at: in_ms(3_600_000),
    };
    assert!(complete_one(b, ack(&got[0], dead)).await);
    let applied = b
        .complete(&[ack(&got[1], success()), ack(&got[2], success())])
        .await
        .expect("complete");
    assert_eq!(applied, vec![true, true]);
    assert_eq!(b.get(never.id).await.expect("get"), None);
    assert!(of_kind(b, "chord.never").await.is_empty());
}

/// 22. Rate buckets: a burst, then a wait of at most one refill, then a
///     token again; keys are independent.
pub async fn rate_tokens<B: Broker>(b: &B) {
    let (per_second, burst) = (1.0, 3);
    for i in 0..burst {
        let got = b.take_rate_token("rt-a", per_second, burst).await;
        assert_eq!(got.expect("take"), None, "token {i} of the burst");
    }
    let wait = b
        .take_rate_token("rt-a", per_second, burst)
        .await
        .expect("take")
        .expect("bucket empty after the burst");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(1_050),
        "{wait:?}"
    );
    assert_eq!(
        b.take_rate_token("rt-b", per_second, burst)
            .await
            .expect("take"),
        None
    );
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    assert_eq!(
        b.take_rate_token("rt-a", per_second, burst)
            .await
            .expect("take"),
        None
    );
}

/// 23. `wait_for_work` wakes on an enqueue of a ready task and otherwise
///     returns after `max_wait`.
pub async fn wait_for_work<B: Broker>(b: &B) {
    let idle = tokio::time::timeout(
        WAIT,
        b.wait_for_work(&["ww-none".to_owned()], Duration::from_millis(200)),
    )
    .await;
    assert!(idle.is_ok(), "returns after max_wait");

    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            b.wait_for_work(&["ww".to_owned()], Duration::from_secs(30))
                .await;
            start.elapsed()
        })
    };
    // Keep submitting (the waiter may not be waiting yet when the first one
    // lands) until it wakes.
    let start = Instant::now();
    while !waiter.is_finished() && start.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(200)).await;
        submit(b, &[task("ww")]).await;
    }
    assert!(waiter.is_finished(), "woken by an enqueue within {WAIT:?}");
    let waited = waiter.await.expect("waiter");
    assert!(waited < WAIT, "{waited:?}");
}

/// 24. Four worker loops burn down 2,000 tasks: each succeeds exactly once.
pub async fn no_loss<B: Broker>(b: &B) {
    let all = tasks("nl", 2_000);
    submit(b, &all).await;
    let seen = burn_down(b, "nl", 4, 32, true).await;
    assert_eq!(seen, all.iter().map(|t| t.id).collect::<HashSet<_>>());
    let want: BTreeMap<_, _> = [(("nl".to_owned(), "succeeded"), 2_000)].into();
    assert_eq!(counts(b).await, want);
}

/// Expands to one `#[tokio::test]` per conformance case, each on a broker
/// from `$fresh` (an `async fn() -> Option<B>`; `None` skips).
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path) => {
        $crate::conformance_tests!(@cases $fresh;
            round_trip, eta, claim_order, claim_exclusive, claim_fields,
            complete_succeeded, fencing, retry_outcome, other_outcomes, follow_ups,
            unique_keys, progress, heartbeat, rescue, cancel, manual_retry, list,
            queue_counts, prune, schedules, chords, rate_tokens, wait_for_work, no_loss,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(broker) = $fresh().await else { return };
                $crate::conformance::$case(&broker).await;
            }
        )*
    };
}
