//! The task engine end to end (client → broker → worker → result) on every
//! backend: retries and dead-lettering, time limits, cancellation, progress,
//! workflows, cron ticks fired once by two schedulers, unique keys, rate
//! limits, graceful hand-back.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use surge_core::ErrorCategory;
use surge_queue::broker::AnyBroker;
use surge_queue::model::{Backoff, TaskFilter};
use surge_queue::{
    Broker, Client, KindSettings, NewTask, Registry, Task, TaskContext, TaskError, TaskState,
    Worker, WorkerConfig,
};
use tokio::sync::watch;

/// Adds `n` to the upstream result (0 without one): for chains.
struct Add;

#[derive(Serialize, Deserialize)]
struct AddArgs {
    n: i64,
}

impl Task for Add {
    const KIND: &'static str = "test.add";
    type Args = AddArgs;
    type Output = i64;
    async fn run(&self, ctx: TaskContext, args: AddArgs) -> Result<i64, TaskError> {
        let upstream = ctx.parent().and_then(Value::as_i64).unwrap_or(0);
        Ok(upstream + args.n)
    }
}

/// Sums the upstream array (a chord's results).
struct Sum;

impl Task for Sum {
    const KIND: &'static str = "test.sum";
    type Args = Value;
    type Output = i64;
    async fn run(&self, ctx: TaskContext, _args: Value) -> Result<i64, TaskError> {
        let items = ctx
            .parent()
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(items.iter().filter_map(Value::as_i64).sum())
    }
}

/// Echoes what it was handed as parent (for cron ticks and failure
/// callbacks).
struct Echo;

impl Task for Echo {
    const KIND: &'static str = "test.echo";
    type Args = Value;
    type Output = Value;
    async fn run(&self, ctx: TaskContext, _args: Value) -> Result<Value, TaskError> {
        Ok(ctx.parent().cloned().unwrap_or(Value::Null))
    }
}

/// A `noop` limited to 5 starts a second across all workers.
struct Limited;

impl Task for Limited {
    const KIND: &'static str = "test.limited";
    type Args = Value;
    type Output = Value;
    async fn run(&self, _ctx: TaskContext, args: Value) -> Result<Value, TaskError> {
        Ok(args)
    }
    fn settings(&self) -> KindSettings {
        KindSettings {
            rate_limit: Some(5.0),
            rate_burst: 1,
            ..KindSettings::default()
        }
    }
}

fn registry() -> Arc<Registry> {
    let mut r = Registry::with_builtins();
    r.register(Add)
        .register(Sum)
        .register(Echo)
        .register(Limited);
    Arc::new(r)
}

fn fast_config() -> WorkerConfig {
    WorkerConfig {
        concurrency: 16,
        lease_ttl: Duration::from_secs(2),
        heartbeat_interval: Duration::from_millis(200),
        poll_interval: Duration::from_millis(50),
        maintenance_interval: Duration::from_millis(200),
        grace_period: Duration::from_secs(5),
        ..WorkerConfig::default()
    }
}

/// A running worker and the switch that stops it.
struct Running {
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<surge_queue::WorkerReport>,
}

fn start(broker: &AnyBroker, config: WorkerConfig) -> Running {
    let (stop, rx) = watch::channel(false);
    let worker = Worker::new(broker.clone(), registry(), config);
    let handle = tokio::spawn(async move {
        let mut rx = rx;
        worker
            .run(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
            .expect("worker run")
    });
    Running { stop, handle }
}

impl Running {
    async fn stop(self) -> surge_queue::WorkerReport {
        self.stop.send_replace(true);
        self.handle.await.expect("worker task")
    }
}

fn client(broker: &AnyBroker) -> Client<AnyBroker> {
    Client::new(broker.clone(), registry())
}

const WAIT: Duration = Duration::from_secs(30);

/// Polls `get` until `done` holds (or panics after 30 s).
async fn until(
    broker: &AnyBroker,
    id: surge_queue::TaskId,
    done: impl Fn(&surge_queue::TaskRecord) -> bool,
) -> surge_queue::TaskRecord {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let t = broker.get(id).await.expect("get").expect("task exists");
        if done(&t) {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task never reached the expected state: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn runs_tasks_and_stores_results(b: AnyBroker) {
    let w = start(&b, fast_config());
    let c = client(&b);
    let tasks: Vec<NewTask> = (0..200)
        .map(|i| c.task("noop", json!({ "i": i })).unwrap())
        .collect();
    c.submit_many(&tasks).await.unwrap();
    for t in &tasks {
        let r = c.wait(t.id, WAIT).await.unwrap();
        assert_eq!(r.state, TaskState::Succeeded);
        assert_eq!(r.result, Some(t.args.clone()));
        assert_eq!(r.attempts, 1);
        assert!(r.started_at.unwrap() >= r.run_at);
        assert!(r.expires_at.unwrap() > r.finished_at.unwrap());
    }
    let report = w.stop().await;
    assert_eq!(report.started, 200);
    assert_eq!(report.handed_back, 0);
}

async fn retries_with_bounded_backoff_then_succeeds(b: AnyBroker) {
    let w = start(&b, fast_config());
    let c = client(&b);
    let mut task = c
        .task(
            "fail",
            json!({ "category": "network", "succeed_on_attempt": 3 }),
        )
        .unwrap()
        .with_max_retries(5);
    task.options.backoff = Backoff {
        base_ms: 100,
        cap_ms: 300,
    };
    c.submit(task.clone()).await.unwrap();
    // While it waits between attempts, its next run is within the cap.
    let retrying = until(&b, task.id, |t| t.state == TaskState::Retrying).await;
    let err = retrying.error.clone().expect("error stored while retrying");
    assert_eq!(err.category, ErrorCategory::Network);
    let started = retrying.started_at.unwrap();
    assert!(
        retrying.run_at >= started,
        "next attempt before the failed one started"
    );
    assert!(
        retrying.run_at <= chrono::Utc::now() + chrono::Duration::milliseconds(300),
        "backoff above its cap: run_at {}",
        retrying.run_at
    );
    let done = c.wait(task.id, WAIT).await.unwrap();
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(done.attempts, 3);
    assert_eq!(done.result, Some(json!({ "attempt": 3 })));
    w.stop().await;
}

async fn dead_after_retries_with_failure_callback(b: AnyBroker) {
    let w = start(&b, fast_config());
    let c = client(&b);
    let mut task = c
        .task("fail", json!({ "message": "boom" }))
        .unwrap()
        .with_max_retries(2);
    task.options.backoff = Backoff {
        base_ms: 10,
        cap_ms: 20,
    };
    let alert = c.task("test.echo", Value::Null).unwrap();
    task.options.on_failure = vec![alert.clone()];
    c.submit(task.clone()).await.unwrap();
    let dead = c.wait(task.id, WAIT).await.unwrap();
    assert_eq!(dead.state, TaskState::Dead);
    assert_eq!(dead.attempts, 3);
    assert_eq!(dead.error.as_ref().unwrap().message, "boom");
    let alerted = c.wait(alert.id, WAIT).await.unwrap();
    assert_eq!(alerted.state, TaskState::Succeeded);
    let parent = alerted.result.unwrap();
    assert_eq!(parent["task"], json!(task.id));
    assert_eq!(parent["error"]["message"], json!("boom"));
    // Dead tasks are kept and can be retried by hand.
    assert_eq!(
        b.retry(task.id).await.unwrap(),
        Some(surge_queue::model::RetryOutcome::Requeued)
    );
    let again = c.wait(task.id, WAIT).await.unwrap();
    assert_eq!(again.state, TaskState::Dead);
    assert_eq!(
        again.attempts, 3,
        "attempts restart from zero after a manual retry"
    );
    w.stop().await;
}

async fn non_retryable_errors_fail_at_once(b: AnyBroker) {
    let w = start(&b, fast_config());
    let c = client(&b);
    let task = c
        .task("fail", json!({ "category": "validation" }))
        .unwrap()
        .with_max_retries(5);
    c.submit(task.clone()).await.unwrap();
    let r = c.wait(task.id, WAIT).await.unwrap();
    assert_eq!(r.state, TaskState::Failed);
    assert_eq!(r.attempts, 1);
    w.stop().await;
}

async fn hard_time_limit_drops_the_handler(b: AnyBroker) {
    let w = start(&b, fast_config());
    let c = client(&b);
    let mut task = c
        .task("sleep", json!({ "ms": 60_000 }))
        .unwrap()
        .with_max_retries(1);
    task.options.hard_time_limit_ms = Some(300);
    task.options.backoff = Backoff {
        base_ms: 10,
        cap_ms: 20,
    };
    c.submit(task.clone()).await.unwrap();
    let r = c.wait(task.id, WAIT).await.unwrap();
    assert_eq!(
        r.state,
        TaskState::Dead,
        "a timeout is retried, then dead: {r:?}"
    );
    assert_eq!(r.attempts, 2);
    let e = r.error.unwrap();
    assert_eq!(e.category, ErrorCategory::Timeout);
    assert!(e.message.contains("hard time limit"), "{}", e.message);
    w.stop().await;
}

async fn soft_time_limit_tells_the_handler(b: AnyBroker) {
    let w = start(&b, fast_config());
    let c = client(&b);
    let mut task = c
        .task("sleep", json!({ "ms": 60_000 }))
        .unwrap()
        .with_max_retries(0);
    task.options.soft_time_limit_ms = Some(200);
    task.options.hard_time_limit_ms = Some(20_000);
    c.submit(task.clone()).await.unwrap();
    let r = c.wait(task.id, WAIT).await.unwrap();
    let e = r.error.unwrap();
    assert!(e.message.contains("soft time limit"), "{}", e.message);
    w.stop().await;
}

async fn cancel_running_and_waiting(b: AnyBroker) {
    let w = start(&b, fast_config());
    let c = client(&b);
    let running = c.task("sleep", json!({ "ms": 60_000 })).unwrap();
    let later = c
        .task("noop", Value::Null)
        .unwrap()
        .with_countdown(Duration::from_secs(3600));
    c.submit_many(&[running.clone(), later.clone()])
        .await
        .unwrap();
    until(&b, running.id, |t| t.state == TaskState::Running).await;
    let far = chrono::Utc::now() + chrono::Duration::days(1);
    assert_eq!(
        b.cancel(running.id, far).await.unwrap(),
        Some(surge_queue::model::CancelOutcome::Requested)
    );
    assert_eq!(
        b.cancel(later.id, far).await.unwrap(),
        Some(surge_queue::model::CancelOutcome::Cancelled)
    );
    let r = c.wait(running.id, WAIT).await.unwrap();
    assert_eq!(r.state, TaskState::Cancelled);
    assert_eq!(
        b.get(later.id).await.unwrap().unwrap().state,
        TaskState::Cancelled
    );
    w.stop().await;
}

async fn progress_is_visible_while_running(b: AnyBroker) {
    let w = start(&b, fast_config());
    let c = client(&b);
    let items: Vec<Value> = (0..30).map(|i| json!(format!("item {i}"))).collect();
    let task = c
        .task("process", json!({ "items": items, "item_ms": 100 }))
        .unwrap();
    c.submit(task.clone()).await.unwrap();
    let seen = until(&b, task.id, |t| {
        t.state == TaskState::Running && t.progress.is_some()
    })
    .await;
    let p = seen.progress.unwrap();
    assert!(p.fraction > 0.0 && p.fraction < 1.0, "{p:?}");
    assert!(p.message.unwrap().contains("of 30"));
    let done = c.wait(task.id, WAIT).await.unwrap();
    assert_eq!(done.result.unwrap()["total_processed"], json!(30));
    w.stop().await;
}

async fn chain_group_and_chord(b: AnyBroker) {
    let w = start(&b, fast_config());
    let c = client(&b);
    // chain: 1 → +2 → +3
    let chain: Vec<NewTask> = [1, 2, 3]
        .iter()
        .map(|n| c.task("test.add", json!({ "n": n })).unwrap())
        .collect();
    let ids = c.chain(chain).await.unwrap();
    let last = c.wait(ids[2], WAIT).await;
    let last = match last {
        Ok(r) => r,
        Err(surge_queue::WaitError::NotFound(_)) => {
            // The last link exists once its turn comes.
            c.wait(ids[0], WAIT).await.unwrap();
            c.wait(ids[1], WAIT).await.ok();
            until_exists(&b, ids[2]).await;
            c.wait(ids[2], WAIT).await.unwrap()
        }
        Err(e) => panic!("{e}"),
    };
    assert_eq!(last.result, Some(json!(6)));

    // group
    let g = c
        .group(
            (0..5)
                .map(|n| c.task("test.add", json!({ "n": n })).unwrap())
                .collect(),
        )
        .await
        .unwrap();
    for id in &g.members {
        assert_eq!(c.wait(*id, WAIT).await.unwrap().state, TaskState::Succeeded);
    }
    let members = b
        .list(&TaskFilter {
            group_id: Some(g.group_id),
            limit: 100,
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(members.len(), 5);

    // chord: sum of 0..10 = 45, callback runs once.
    let chord = c
        .chord(
            (0..10)
                .map(|n| c.task("test.add", json!({ "n": n })).unwrap())
                .collect(),
            c.task("test.sum", Value::Null).unwrap(),
        )
        .await
        .unwrap();
    let cb = chord.callback.unwrap();
    until_exists(&b, cb).await;
    let r = c.wait(cb, WAIT).await.unwrap();
    assert_eq!(r.result, Some(json!(45)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sums = b
        .list(&TaskFilter {
            kind: Some("test.sum".into()),
            limit: 100,
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(sums.len(), 1, "chord callback ran once");
    w.stop().await;
}

async fn until_exists(b: &AnyBroker, id: surge_queue::TaskId) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while b.get(id).await.unwrap().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {id} never created"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn cron_ticks_fire_once_with_two_schedulers(b: AnyBroker) {
    let c = client(&b);
    let template = c.task("test.echo", Value::Null).unwrap();
    c.schedule("every-second", "* * * * * *", "UTC", template)
        .await
        .unwrap();
    let one = start(&b, fast_config());
    let two = start(&b, fast_config());
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    one.stop().await;
    two.stop().await;
    let fired = b
        .list(&TaskFilter {
            kind: Some("test.echo".into()),
            limit: 1000,
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert!(fired.len() >= 2, "ticks fired: {}", fired.len());
    let mut ticks: Vec<String> = fired
        .iter()
        .map(|t| {
            t.options.parent.as_ref().unwrap()["tick"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ticks.sort();
    let n = ticks.len();
    ticks.dedup();
    assert_eq!(ticks.len(), n, "a tick fired twice: {ticks:?}");
    // Consecutive seconds: no tick skipped between the first and the last.
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap();
    let span = (parse(&ticks[n - 1]) - parse(&ticks[0])).num_seconds();
    assert_eq!(span as usize, n - 1, "ticks skipped: {ticks:?}");
}

async fn unique_keys_under_concurrent_submission(b: AnyBroker) {
    let c = client(&b);
    let mut joins = Vec::new();
    for _ in 0..20 {
        let c = c.clone();
        joins.push(tokio::spawn(async move {
            let t = c
                .task("noop", Value::Null)
                .unwrap()
                .with_unique_key("report:2026-11-23");
            c.submit(t).await.unwrap()
        }));
    }
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for j in joins {
        let e = j.await.unwrap();
        created += usize::from(e.created);
        ids.insert(e.id);
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
}

/// Concurrent `submit` calls are stored together (group commit), yet each
/// gets its own outcome: a resubmitted id is reported not created, a bad
/// kind fails alone, and every task is stored once.
async fn concurrent_submissions_each_get_their_own_outcome(b: AnyBroker) {
    let c = client(&b);
    let tasks: Vec<NewTask> = (0..300)
        .map(|i| c.task("noop", json!(i)).unwrap().with_queue("coalesced"))
        .collect();
    let mut joins = Vec::new();
    // Every task twice (the second a resubmission of the same id), plus
    // calls that must fail on their own.
    for (i, t) in tasks.iter().chain(&tasks).enumerate() {
        let (one, t) = (c.clone(), t.clone());
        joins.push(tokio::spawn(async move { (t.id, one.submit(t).await) }));
        if i % 50 == 0 {
            let c = c.clone();
            joins.push(tokio::spawn(async move {
                let bad = NewTask::new("no.such.kind", Value::Null);
                (bad.id, c.submit(bad).await)
            }));
        }
    }
    let mut created = std::collections::HashMap::new();
    let mut refused = 0;
    for j in joins {
        match j.await.unwrap() {
            (id, Ok(e)) => {
                assert_eq!(e.id, id, "each call is answered with its own task");
                *created.entry(id).or_insert(0) += usize::from(e.created);
            }
            (_, Err(surge_queue::SubmitError::Kind(_))) => refused += 1,
            (id, Err(e)) => panic!("submission of {id} failed: {e}"),
        }
    }
    assert_eq!(refused, 12);
    assert_eq!(created.len(), 300);
    assert!(
        created.values().all(|&n| n == 1),
        "each id created exactly once"
    );
    for t in &tasks {
        let stored = b.get(t.id).await.unwrap().expect("stored");
        assert_eq!(stored.args, t.args);
    }
}

async fn rate_limit_spaces_starts(b: AnyBroker) {
    let one = start(&b, fast_config());
    let two = start(&b, fast_config());
    let c = client(&b);
    let tasks: Vec<NewTask> = (0..8)
        .map(|i| c.task("test.limited", json!(i)).unwrap())
        .collect();
    c.submit_many(&tasks).await.unwrap();
    let mut starts = Vec::new();
    for t in &tasks {
        let r = c.wait(t.id, WAIT).await.unwrap();
        assert_eq!(r.state, TaskState::Succeeded);
        starts.push(r.started_at.unwrap());
    }
    starts.sort();
    // 8 starts at 5/s with a bucket of 1 need at least 7/5 s between the
    // first and the last, whatever the machine's speed.
    let span = (starts[7] - starts[0]).num_milliseconds();
    assert!(
        span >= 1_300,
        "8 starts within {span} ms despite a 5/s limit"
    );
    one.stop().await;
    two.stop().await;
}

async fn eta_in_past_and_future(b: AnyBroker) {
    let w = start(&b, fast_config());
    let c = client(&b);
    let past = c
        .task("noop", Value::Null)
        .unwrap()
        .with_eta(chrono::Utc::now() - chrono::Duration::hours(1));
    let future = c
        .task("noop", Value::Null)
        .unwrap()
        .with_countdown(Duration::from_millis(1500));
    c.submit_many(&[past.clone(), future.clone()])
        .await
        .unwrap();
    let p = c.wait(past.id, WAIT).await.unwrap();
    assert_eq!(p.state, TaskState::Succeeded);
    let f = c.wait(future.id, WAIT).await.unwrap();
    assert!(
        f.started_at.unwrap() >= future.run_at,
        "started before its ETA"
    );
    w.stop().await;
}

async fn shutdown_hands_back_running_tasks(b: AnyBroker) {
    let w = start(
        &b,
        WorkerConfig {
            grace_period: Duration::from_millis(300),
            ..fast_config()
        },
    );
    let c = client(&b);
    let task = c.task("sleep", json!({ "ms": 60_000 })).unwrap();
    c.submit(task.clone()).await.unwrap();
    until(&b, task.id, |t| t.state == TaskState::Running).await;
    let report = w.stop().await;
    assert_eq!(report.handed_back, 1);
    let r = b.get(task.id).await.unwrap().unwrap();
    assert!(
        r.state == TaskState::Pending || r.state == TaskState::Scheduled,
        "{r:?}"
    );
    assert_eq!(r.attempts, 0, "a handed-back attempt does not count");
    assert!(b.workers().await.unwrap().is_empty(), "worker deregistered");
    // Another worker takes it up.
    let w2 = start(&b, fast_config());
    let again = until(&b, task.id, |t| t.state == TaskState::Running).await;
    assert_eq!(again.attempts, 1);
    b.cancel(task.id, chrono::Utc::now()).await.unwrap();
    c.wait(task.id, WAIT).await.unwrap();
    w2.stop().await;
}

async fn worker_death_on_last_attempt_still_sends_failure_callbacks(b: AnyBroker) {
    let c = client(&b);
    let alert = c.task("test.echo", Value::Null).unwrap();
    let mut task = c
        .task("sleep", json!({ "ms": 60_000 }))
        .unwrap()
        .with_max_retries(0);
    task.options.on_failure = vec![alert.clone()];
    c.submit(task.clone()).await.unwrap();
    // A worker that claims it and dies (never heartbeats, never completes).
    let ghost = surge_queue::conformance::register(&b, Duration::from_millis(300)).await;
    let claimed = b.claim(ghost.id, &["default".to_owned()], 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let w = start(&b, fast_config());
    let dead = c.wait(task.id, WAIT).await.unwrap();
    assert_eq!(dead.state, TaskState::Dead);
    assert!(dead.error.as_ref().unwrap().message.contains("lease"));
    until_exists(&b, alert.id).await;
    let alerted = c.wait(alert.id, WAIT).await.unwrap();
    assert_eq!(alerted.state, TaskState::Succeeded);
    assert_eq!(alerted.result.unwrap()["task"], json!(task.id));
    w.stop().await;
}

macro_rules! cases {
    ($backend:ident; $($name:ident),*) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(b) = support::$backend().await else { return };
                    super::$name(b).await;
                }
            )*
        }
    };
}

macro_rules! engine_tests {
    ($($backend:ident),*) => {
        $(
            cases!($backend;
                runs_tasks_and_stores_results,
                retries_with_bounded_backoff_then_succeeds,
                dead_after_retries_with_failure_callback,
                non_retryable_errors_fail_at_once,
                hard_time_limit_drops_the_handler,
                soft_time_limit_tells_the_handler,
                cancel_running_and_waiting,
                progress_is_visible_while_running,
                chain_group_and_chord,
                cron_ticks_fire_once_with_two_schedulers,
                unique_keys_under_concurrent_submission,
                concurrent_submissions_each_get_their_own_outcome,
                rate_limit_spaces_starts,
                eta_in_past_and_future,
                shutdown_hands_back_running_tasks,
                worker_death_on_last_attempt_still_sends_failure_callbacks
            );
        )*
    };
}

engine_tests!(sqlite, postgres, redis);
