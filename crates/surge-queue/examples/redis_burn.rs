//! Burn-down and wake-up latency of the Redis broker.
//!
//! ```text
//! cargo run --release -p surge-queue --example redis_burn -- [redis://127.0.0.1:6379] [tasks]
//! ```
//!
//! 1. Burn-down: pre-inserts `tasks` (default 20,000) no-op tasks, then 4
//!    concurrent loops each claim 64 and complete the batch at once, until
//!    the queue is empty; prints tasks per second.
//! 2. Submit-to-start: 4 loops wait idle in `wait_for_work`; 500 tasks are
//!    submitted one at a time, 2 ms apart; prints the p50 / p99 of claim
//!    time minus submit time.
//!
//! Runs in its own namespace and deletes its keys at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use surge_queue::Broker;
use surge_queue::broker::BrokerConfig;
use surge_queue::broker::redis::RedisBroker;
use surge_queue::model::{Completion, NewTask, Outcome, TaskRecord, WorkerInfo};

const LOOPS: usize = 4;
const BATCH: usize = 64;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    let total: usize = args.next().map_or(Ok(20_000), |n| n.parse())?;
    let namespace = format!("surge-bench-{}", uuid::Uuid::new_v4().simple());
    let config = BrokerConfig {
        namespace: namespace.clone(),
        ..BrokerConfig::default()
    };
    let broker = RedisBroker::connect(&url, &config).await?;
    let result = run(&broker, total).await;
    cleanup(&url, &namespace).await?;
    result
}

async fn run(broker: &RedisBroker, total: usize) -> Result<(), Box<dyn std::error::Error>> {
    let tasks: Vec<NewTask> = (0..total)
        .map(|_| NewTask::new("noop", json!({})).with_queue("burn"))
        .collect();
    let start = Instant::now();
    for chunk in tasks.chunks(1_000) {
        broker.enqueue(chunk).await?;
    }
    let took = start.elapsed();
    println!(
        "enqueue: {total} tasks in {took:.2?} ({:.0}/s, batches of 1000)",
        total as f64 / took.as_secs_f64()
    );

    let start = Instant::now();
    let mut loops = Vec::new();
    for _ in 0..LOOPS {
        let broker = broker.clone();
        loops.push(tokio::spawn(async move { burn(&broker).await }));
    }
    let mut done = 0;
    for l in loops {
        done += l.await??;
    }
    let took = start.elapsed();
    println!(
        "burn-down: {done} tasks in {took:.2?} = {:.0} tasks/s ({LOOPS} loops, claim {BATCH}, one complete per batch)",
        done as f64 / took.as_secs_f64()
    );
    let counts = broker.counts().await?;
    println!("counts after: {counts:?}");

    latency(broker).await
}

fn worker() -> WorkerInfo {
    let now = Utc::now();
    WorkerInfo {
        id: uuid::Uuid::now_v7(),
        hostname: "bench".to_owned(),
        pid: std::process::id(),
        queues: vec!["burn".to_owned()],
        concurrency: BATCH as u32,
        started_at: now,
        last_heartbeat: now,
        lease_expires_at: now,
    }
}

fn success(r: &TaskRecord, worker: uuid::Uuid) -> Completion {
    Completion {
        id: r.id,
        epoch: r.epoch,
        worker_id: worker,
        outcome: Outcome::Succeeded {
            result: json!(null),
            expires_at: Utc::now() + chrono::Duration::hours(1),
        },
        follow_ups: Vec::new(),
    }
}

/// Claims and completes batches until the queue is empty.
async fn burn(broker: &RedisBroker) -> Result<usize, surge_queue::BrokerError> {
    let w = worker();
    broker.register_worker(&w, Duration::from_secs(120)).await?;
    let queues = ["burn".to_owned()];
    let mut done = 0;
    loop {
        let got = broker.claim(w.id, &queues, BATCH).await?;
        if got.is_empty() {
            return Ok(done);
        }
        let acks: Vec<_> = got.iter().map(|r| success(r, w.id)).collect();
        let applied = broker.complete(&acks).await?;
        done += applied.iter().filter(|a| **a).count();
    }
}

/// Submit-to-start latency with idle waiters.
async fn latency(broker: &RedisBroker) -> Result<(), Box<dyn std::error::Error>> {
    const N: usize = 500;
    let stop = Arc::new(AtomicBool::new(false));
    let queues = vec!["lat".to_owned()];
    let mut loops = Vec::new();
    for _ in 0..LOOPS {
        let (broker, stop, queues) = (broker.clone(), Arc::clone(&stop), queues.clone());
        loops.push(tokio::spawn(async move {
            let w = worker();
            broker.register_worker(&w, Duration::from_secs(120)).await?;
            let mut started = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let got = broker.claim(w.id, &queues, 8).await?;
                if got.is_empty() {
                    broker
                        .wait_for_work(&queues, Duration::from_millis(500))
                        .await;
                    continue;
                }
                let now = Utc::now();
                let acks: Vec<_> = got.iter().map(|r| success(r, w.id)).collect();
                broker.complete(&acks).await?;
                started.extend(got.into_iter().map(|r| (r.id, now)));
            }
            Ok::<_, surge_queue::BrokerError>(started)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut submitted = std::collections::HashMap::new();
    for _ in 0..N {
        let t = NewTask::new("noop", json!({})).with_queue("lat");
        submitted.insert(t.id, Utc::now());
        broker.enqueue(&[t]).await?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for l in loops {
        for (id, at) in l.await?? {
            if let Some(sent) = submitted.get(&id) {
                lat.push((at - *sent).num_microseconds().unwrap_or(0));
            }
        }
    }
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)));
    println!(
        "submit-to-start: {} of {N} started; p50 {:?} us, p99 {:?} us (idle waiters, one submit every 2 ms)",
        lat.len(),
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}

/// Deletes every key of `namespace`.
async fn cleanup(url: &str, namespace: &str) -> Result<(), Box<dyn std::error::Error>> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{namespace}:*"))
            .arg("COUNT")
            .arg(1_000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
