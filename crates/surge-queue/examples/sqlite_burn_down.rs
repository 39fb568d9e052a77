//! Burn-down and submit-to-start latency of the SQLite broker.
//!
//! `cargo run --release -p surge-queue --example sqlite_burn_down -- [TASKS] [LOOPS] [BATCH]`
//!
//! 1. Burn-down: pre-inserts TASKS (default 20,000) no-op tasks, then LOOPS
//!    (default 4) concurrent worker loops claim up to BATCH (default 64) and
//!    complete each batch as succeeded in one call, until none is left.
//!    Prints tasks/s over the claim+complete phase only.
//! 2. Latency: 4 idle workers wait in `wait_for_work`; 500 tasks are
//!    submitted one at a time, 2 ms apart; prints p50/p99 of submit →
//!    claimed.

use std::time::{Duration, Instant};

use serde_json::json;
use surge_queue::Broker;
use surge_queue::broker::BrokerConfig;
use surge_queue::broker::sqlite::SqliteBroker;
use surge_queue::model::{Completion, NewTask, Outcome, WorkerInfo};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let tasks = args.next().transpose()?.unwrap_or(20_000);
    let loops = args.next().transpose()?.unwrap_or(4);
    let batch = args.next().transpose()?.unwrap_or(64);

    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let broker = SqliteBroker::connect(&url, &BrokerConfig::default()).await?;

    let start = Instant::now();
    let all: Vec<NewTask> = (0..tasks)
        .map(|i| NewTask::new("noop", json!({ "i": i })).with_queue("bench"))
        .collect();
    for chunk in all.chunks(1_000) {
        broker.enqueue(chunk).await?;
    }
    println!(
        "inserted {tasks} tasks in {:.2?} ({:.0} tasks/s)",
        start.elapsed(),
        rate(tasks, start.elapsed())
    );

    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..loops {
        let b = broker.clone();
        handles.push(tokio::spawn(async move {
            let w = worker(&b).await?;
            let mut done = 0usize;
            loop {
                let got = b.claim(w, &["bench".to_owned()], batch).await?;
                if got.is_empty() {
                    return Ok::<_, surge_queue::BrokerError>(done);
                }
                let acks: Vec<Completion> = got.iter().map(|t| succeed(t.id, t.epoch, w)).collect();
                let applied = b.complete(&acks).await?;
                done += applied.iter().filter(|a| **a).count();
            }
        }));
    }
    let mut done = 0;
    for h in handles {
        done += h.await??;
    }
    let took = start.elapsed();
    println!(
        "burn-down: {done} tasks, {loops} loops, batch {batch}: {took:.2?}, {:.0} tasks/s",
        rate(done, took)
    );

    latency(&broker).await?;
    Ok(())
}

fn rate(n: usize, took: Duration) -> f64 {
    // Counts far below 2^52: exact.
    #[allow(clippy::cast_precision_loss)]
    let n = n as f64;
    n / took.as_secs_f64()
}

async fn worker(b: &SqliteBroker) -> Result<uuid::Uuid, surge_queue::BrokerError> {
    let now = chrono::Utc::now();
    let w = WorkerInfo {
        id: uuid::Uuid::now_v7(),
        hostname: "bench".to_owned(),
        pid: std::process::id(),
        queues: vec!["bench".to_owned(), "latency".to_owned()],
        concurrency: 64,
        started_at: now,
        last_heartbeat: now,
        lease_expires_at: now,
    };
    b.register_worker(&w, Duration::from_secs(600)).await?;
    Ok(w.id)
}

fn succeed(id: uuid::Uuid, epoch: i64, worker: uuid::Uuid) -> Completion {
    Completion {
        id,
        epoch,
        worker_id: worker,
        outcome: Outcome::Succeeded {
            result: json!(null),
            expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
        },
        follow_ups: Vec::new(),
    }
}

async fn latency(broker: &SqliteBroker) -> Result<(), Box<dyn std::error::Error>> {
    const N: usize = 500;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut idle = Vec::new();
    for _ in 0..4 {
        let b = broker.clone();
        let tx = tx.clone();
        idle.push(tokio::spawn(async move {
            let w = worker(&b).await?;
            let queues = ["latency".to_owned()];
            loop {
                let got = b.claim(w, &queues, 1).await?;
                if got.is_empty() {
                    b.wait_for_work(&queues, Duration::from_secs(1)).await;
                    continue;
                }
                let now = chrono::Utc::now();
                for t in &got {
                    let sent = t.args["sent_us"].as_i64().unwrap_or(0);
                    let _ = tx.send(now.timestamp_micros() - sent);
                }
                let acks: Vec<Completion> = got.iter().map(|t| succeed(t.id, t.epoch, w)).collect();
                b.complete(&acks).await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), surge_queue::BrokerError>(())
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..N {
        let sent = chrono::Utc::now().timestamp_micros();
        let t = NewTask::new("noop", json!({ "sent_us": sent })).with_queue("latency");
        broker.enqueue(&[t]).await?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut lat = Vec::with_capacity(N);
    while lat.len() < N {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(us)) => lat.push(us),
            _ => break,
        }
    }
    for h in idle {
        h.abort();
    }
    lat.sort_unstable();
    let pct = |p: usize| lat.get(lat.len() * p / 100).copied().unwrap_or(0);
    println!(
        "submit→claimed, {} tasks 2 ms apart, 4 idle workers: p50 {:.2} ms, p99 {:.2} ms",
        lat.len(),
        pct(50) as f64 / 1e3,
        pct(99) as f64 / 1e3
    );
    Ok(())
}
