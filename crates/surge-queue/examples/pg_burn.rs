//! PostgreSQL broker figures, in a schema of its own (dropped at the end):
//!
//! 1. burn-down: 20,000 pre-inserted no-op tasks, 4 concurrent loops each
//!    claiming 64 and completing the whole batch in one call → tasks/s;
//!    twice, the second time beside the 20,000 finished tasks of the first;
//! 2. submit-to-start: one idle worker in `wait_for_work`, one task
//!    submitted at a time → p50 / p99 from `enqueue` called to `claim`
//!    returned;
//! 3. the cost of an empty claim beside 100,000 tasks scheduled an hour
//!    ahead.
//!
//! ```text
//! SURGE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run --release -p surge-queue --example pg_burn [TASKS] [LOOPS] [BATCH]
//! ```

use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::Connection;
use surge_queue::broker::BrokerConfig;
use surge_queue::broker::postgres::PgBroker;
use surge_queue::model::{Completion, Outcome, WorkerInfo};
use surge_queue::{Broker, BrokerError, NewTask};

const LEASE: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::var("SURGE_TEST_POSTGRES_URL")
        .map_err(|_| "set SURGE_TEST_POSTGRES_URL (postgres://USER@HOST/DB)")?;
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let total = args.next().transpose()?.unwrap_or(20_000);
    let loops = args.next().transpose()?.unwrap_or(4);
    let batch = args.next().transpose()?.unwrap_or(64);

    let schema = format!("q_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&base).await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await?;
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let result = run(&url, total, loops, batch).await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut admin)
        .await?;
    result
}

async fn run(
    url: &str,
    total: usize,
    loops: usize,
    batch: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let broker = PgBroker::connect(url, &BrokerConfig::default()).await?;

    // The second round runs beside the first one's finished tasks: claim
    // and acknowledgement cost must not grow with them.
    for round in 1..=2 {
        println!(
            "round {round} ({} finished tasks in the table):",
            (round - 1) * total
        );
        burn_down(&broker, total, loops, batch).await?;
    }
    latency(&broker, 200).await?;
    idle_claims(&broker, 100_000, 200).await?;
    Ok(())
}

/// Empty claims beside `scheduled` tasks waiting for an ETA an hour away.
async fn idle_claims(
    broker: &PgBroker,
    scheduled: usize,
    claims: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    let later = Utc::now() + chrono::Duration::hours(1);
    let tasks: Vec<NewTask> = (0..scheduled)
        .map(|_| NewTask::new("noop", serde_json::json!({})).with_eta(later))
        .collect();
    for chunk in tasks.chunks(1_000) {
        broker.enqueue(chunk).await?;
    }
    let w = worker();
    broker.register_worker(&w, LEASE).await?;
    let queues = ["default".to_owned()];
    let start = Instant::now();
    for _ in 0..claims {
        let got = broker.claim(w.id, &queues, 64).await?;
        assert!(got.is_empty(), "nothing is due");
    }
    println!(
        "empty claim beside {scheduled} scheduled tasks: {:.3} ms each ({claims} claims)",
        start.elapsed().as_secs_f64() * 1e3 / f64::from(claims)
    );
    Ok(())
}

/// Enqueues `total` tasks, then burns them down with `loops` loops.
async fn burn_down(
    broker: &PgBroker,
    total: usize,
    loops: usize,
    batch: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let tasks: Vec<NewTask> = (0..total)
        .map(|_| NewTask::new("noop", serde_json::json!({})))
        .collect();
    for chunk in tasks.chunks(1_000) {
        broker.enqueue(chunk).await?;
    }
    let took = start.elapsed();
    println!(
        "  enqueue: {total} tasks in {:.2} s = {:.0} tasks/s (batches of 1,000)",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    );

    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..loops {
        let broker = broker.clone();
        handles.push(tokio::spawn(async move { burn(&broker, batch).await }));
    }
    let (mut done, mut in_claim, mut in_complete) = (0, Duration::ZERO, Duration::ZERO);
    for h in handles {
        let burned = h.await??;
        done += burned.done;
        in_claim += burned.in_claim;
        in_complete += burned.in_complete;
    }
    let took = start.elapsed();
    println!(
        "  burn-down: {done} tasks, {loops} loops, claim {batch} + complete batch: {:.2} s = {:.0} \
         tasks/s ({:.0} % of the loops' time in claim, {:.0} % in complete)",
        took.as_secs_f64(),
        done as f64 / took.as_secs_f64(),
        100.0 * in_claim.as_secs_f64() / (in_claim + in_complete).as_secs_f64(),
        100.0 * in_complete.as_secs_f64() / (in_claim + in_complete).as_secs_f64(),
    );

    Ok(())
}

fn worker() -> WorkerInfo {
    let now = Utc::now();
    WorkerInfo {
        id: uuid::Uuid::now_v7(),
        hostname: "bench".to_owned(),
        pid: std::process::id(),
        queues: vec!["default".to_owned()],
        concurrency: 64,
        started_at: now,
        last_heartbeat: now,
        lease_expires_at: now,
    }
}

/// What one worker loop did.
struct Burned {
    /// Tasks completed.
    done: usize,
    /// Time spent in `claim`.
    in_claim: Duration,
    /// Time spent in `complete`.
    in_complete: Duration,
}

/// One worker loop: claims until the queue is empty.
async fn burn(broker: &PgBroker, batch: usize) -> Result<Burned, BrokerError> {
    let w = worker();
    broker.register_worker(&w, LEASE).await?;
    let queues = ["default".to_owned()];
    let mut done = 0;
    let (mut in_claim, mut in_complete) = (Duration::ZERO, Duration::ZERO);
    loop {
        let t0 = Instant::now();
        let got = broker.claim(w.id, &queues, batch).await?;
        in_claim += t0.elapsed();
        if got.is_empty() {
            return Ok(Burned {
                done,
                in_claim,
                in_complete,
            });
        }
        let acks: Vec<Completion> = got
            .iter()
            .map(|t| Completion {
                id: t.id,
                epoch: t.epoch,
                worker_id: w.id,
                outcome: Outcome::Succeeded {
                    result: serde_json::Value::Null,
                    expires_at: Utc::now() + chrono::Duration::hours(1),
                },
                follow_ups: Vec::new(),
            })
            .collect();
        let t0 = Instant::now();
        let applied = broker.complete(&acks).await?;
        in_complete += t0.elapsed();
        done += applied.iter().filter(|a| **a).count();
    }
}

/// Submit-to-start with one idle worker waiting.
async fn latency(broker: &PgBroker, samples: usize) -> Result<(), Box<dyn std::error::Error>> {
    let w = worker();
    broker.register_worker(&w, LEASE).await?;
    let queues = vec!["latency".to_owned()];
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let consumer = {
        let broker = broker.clone();
        let queues = queues.clone();
        tokio::spawn(async move {
            let mut seen = 0;
            while seen < samples {
                let got = broker.claim(w.id, &queues, 16).await?;
                if got.is_empty() {
                    broker
                        .wait_for_work(&queues, Duration::from_millis(500))
                        .await;
                    continue;
                }
                let now = Instant::now();
                for _ in &got {
                    tx.send(now).ok();
                }
                seen += got.len();
            }
            Ok::<_, BrokerError>(())
        })
    };
    let mut waits = Vec::with_capacity(samples);
    for _ in 0..samples {
        // Let the worker go idle again.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let t = NewTask::new("noop", serde_json::json!({})).with_queue("latency");
        let sent = Instant::now();
        broker.enqueue(&[t]).await?;
        let started = rx.recv().await.ok_or("consumer stopped")?;
        waits.push(started.duration_since(sent));
    }
    consumer.await??;
    waits.sort();
    let at = |q: f64| waits[((waits.len() as f64 * q) as usize).min(waits.len() - 1)];
    println!(
        "submit-to-start ({samples} tasks, one idle worker): p50 {:.2} ms, p99 {:.2} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3
    );
    Ok(())
}
