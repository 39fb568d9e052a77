//! Benchmarks of surge-core's limiters (run by `bench/limits.sh`).
//!
//! ```text
//! cargo run --release -p surge-core --example limits -- micro [ITERATIONS]
//! cargo run --release -p surge-core --example limits -- instr CASE ITERATIONS
//! cargo run --release -p surge-core --example limits -- server [SECONDS]
//! ```
//!
//! - `micro`: acquire + release cost in ns per operation, uncontended (one
//!   task) and contended (64 tasks on 2 threads), beside tokio's semaphore.
//! - `instr`: one case only, for callgrind (the script runs it at two
//!   iteration counts and divides the difference).
//! - `server`: adaptive against static limits, through `LimitLayer` and
//!   hyper, against a local server of capacity C (20 ms per request, the
//!   rest queued) driven by 512 closed-loop callers whose requests time out
//!   after 250 ms: goodput, latency, timeouts, where the limit settled.

#[path = "../tests/support/overload_server.rs"]
mod overload_server;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use overload_server::{Completion, OverloadServer, drive, http_client, percentiles};
use surge_core::limit::{
    AdaptiveConfig, AdaptiveLimiter, Algorithm, LimitLayer, Limiter, StaticLimiter,
};
use tower::ServiceBuilder;

const CASES: [&str; 8] = [
    "static-try",
    "static-acquire",
    "adaptive-success",
    "tokio-try",
    "tokio-acquire",
    "static-contended-4",
    "adaptive-contended-4",
    "tokio-contended-4",
];

fn adaptive(initial: usize) -> Arc<dyn Limiter> {
    Arc::new(AdaptiveLimiter::new(AdaptiveConfig {
        initial,
        max: initial.max(1000),
        ..AdaptiveConfig::default()
    }))
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn two_threads() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `tasks` tasks share `iterations` acquire/yield/release rounds; returns
/// the wall time.
fn contended(limiter: Arc<dyn Limiter>, iterations: u64, tasks: u64, success: bool) -> Duration {
    two_threads().block_on(async move {
        let started = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    for _ in 0..iterations / tasks {
                        let token = limiter.acquire().await;
                        // Hold the slot across a yield, as real work does.
                        tokio::task::yield_now().await;
                        if success {
                            token.success();
                        } else {
                            drop(token);
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("task");
        }
        started.elapsed()
    })
}

fn contended_tokio(permits: usize, iterations: u64, tasks: u64) -> Duration {
    two_threads().block_on(async move {
        let semaphore = Arc::new(tokio::sync::Semaphore::new(permits));
        let started = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let semaphore = semaphore.clone();
                tokio::spawn(async move {
                    for _ in 0..iterations / tasks {
                        let permit = semaphore.acquire().await.expect("open");
                        tokio::task::yield_now().await;
                        drop(permit);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("task");
        }
        started.elapsed()
    })
}

/// Runs `case` for `iterations`; returns the wall time.
fn run_case(case: &str, iterations: u64) -> Duration {
    match case {
        "static-try" => {
            let limiter = StaticLimiter::new(1);
            let started = Instant::now();
            for _ in 0..iterations {
                drop(black_box(limiter.try_acquire()));
            }
            started.elapsed()
        }
        "static-acquire" => current_thread().block_on(async {
            let limiter = StaticLimiter::new(1);
            let started = Instant::now();
            for _ in 0..iterations {
                drop(black_box(limiter.acquire().await));
            }
            started.elapsed()
        }),
        "adaptive-success" => current_thread().block_on(async {
            let limiter = adaptive(1);
            let started = Instant::now();
            for _ in 0..iterations {
                limiter.acquire().await.success();
            }
            started.elapsed()
        }),
        "tokio-try" => {
            let semaphore = tokio::sync::Semaphore::new(1);
            let started = Instant::now();
            for _ in 0..iterations {
                drop(black_box(semaphore.try_acquire()));
            }
            started.elapsed()
        }
        "tokio-acquire" => current_thread().block_on(async {
            let semaphore = tokio::sync::Semaphore::new(1);
            let started = Instant::now();
            for _ in 0..iterations {
                drop(black_box(semaphore.acquire().await));
            }
            started.elapsed()
        }),
        "static-contended-4" => contended(Arc::new(StaticLimiter::new(4)), iterations, 64, false),
        "static-contended-free" => {
            contended(Arc::new(StaticLimiter::new(1 << 20)), iterations, 64, false)
        }
        "adaptive-contended-4" => contended(adaptive(4), iterations, 64, true),
        "tokio-contended-4" => contended_tokio(4, iterations, 64),
        "tokio-contended-free" => contended_tokio(1 << 20, iterations, 64),
        other => panic!("unknown case {other}; one of {CASES:?}"),
    }
}

fn micro(iterations: u64) {
    println!("| case | what | ns per operation |");
    println!("|---|---|---:|");
    let what = |case: &str| match case {
        "static-try" => "StaticLimiter try_acquire + drop, one thread",
        "static-acquire" => "StaticLimiter acquire().await + drop, one task",
        "adaptive-success" => {
            "AdaptiveLimiter acquire().await + success() (a latency sample), one task"
        }
        "tokio-try" => "tokio Semaphore try_acquire + drop (reference)",
        "tokio-acquire" => "tokio Semaphore acquire().await + drop (reference)",
        "static-contended-4" => {
            "StaticLimiter, limit 4, 64 tasks on 2 threads, slot held across a yield (waiters queue)"
        }
        "static-contended-free" => {
            "StaticLimiter, limit 2^20 (never waits): 64 tasks on 2 threads, same loop"
        }
        "adaptive-contended-4" => {
            "AdaptiveLimiter + success(), limit 4: 64 tasks on 2 threads, same loop"
        }
        "tokio-contended-4" => {
            "tokio Semaphore, 4 permits: 64 tasks on 2 threads, same loop (reference)"
        }
        "tokio-contended-free" => {
            "tokio Semaphore, 2^20 permits: 64 tasks on 2 threads, same loop (reference)"
        }
        _ => "",
    };
    let cases = CASES
        .iter()
        .copied()
        .chain(["static-contended-free", "tokio-contended-free"]);
    for case in cases {
        run_case(case, iterations / 10); // warm-up
        // Best of three: the least disturbed by the rest of the machine.
        let best = (0..3)
            .map(|_| run_case(case, iterations))
            .min()
            .expect("three runs");
        let ns = best.as_nanos() as f64 / iterations as f64;
        println!("| `{case}` | {} | {ns:.1} |", what(case));
    }
}

struct Row {
    limiter: String,
    goodput: f64,
    timeouts: usize,
    p50: Duration,
    p99: Duration,
    e2e_p50: Duration,
    e2e_p99: Duration,
    settled: usize,
    wasted: usize,
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e3)
}

async fn one_run(capacity: usize, name: &str, limiter: Arc<dyn Limiter>, seconds: f64) -> Row {
    const WORKERS: usize = 512;
    let server = OverloadServer::start(capacity, Duration::from_millis(20));
    let svc = ServiceBuilder::new()
        .layer(LimitLayer::new(limiter.clone()))
        .timeout(Duration::from_millis(250))
        .service(http_client());
    let total = Duration::from_secs_f64(seconds);
    let log = drive(
        svc,
        limiter,
        &server.uri(),
        WORKERS,
        usize::MAX,
        move |log| log.last().is_some_and(|c| c.at >= total),
    )
    .await;
    // The first third is warm-up (the adaptive limit finding its level).
    let measured_from = total / 3;
    // Callers already waiting when the run ends still finish: not counted.
    let measured: Vec<Completion> = log
        .iter()
        .filter(|c| c.at >= measured_from && c.at <= total)
        .copied()
        .collect();
    let span = (total - measured_from).as_secs_f64();
    let ok = measured.iter().filter(|c| c.status == 200).count();
    let (p50, p99) = percentiles(&measured, 200, |c| c.latency).unwrap_or_default();
    let (e2e_p50, e2e_p99) = percentiles(&measured, 200, |c| c.end_to_end).unwrap_or_default();
    let mut limits: Vec<usize> = measured.iter().map(|c| c.limit).collect();
    limits.sort_unstable();
    let served_by_server = server.served();
    let ok_total = log.iter().filter(|c| c.status == 200).count();
    Row {
        limiter: name.to_string(),
        goodput: ok as f64 / span,
        timeouts: measured.iter().filter(|c| c.status == 0).count(),
        p50,
        p99,
        e2e_p50,
        e2e_p99,
        settled: limits.get(limits.len() / 2).copied().unwrap_or(0),
        wasted: served_by_server.saturating_sub(ok_total),
    }
}

fn server(seconds: f64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "| capacity C | limiter | goodput (req/s) | ideal C/20ms | timeouts | p50 / p99 request (ms) | p50 / p99 incl. wait for a slot (ms) | limit (median) | served after the client gave up |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for capacity in [8usize, 32, 128] {
        let limiters: Vec<(String, Arc<dyn Limiter>)> = vec![
            (
                "static 256 (a guess)".to_string(),
                Arc::new(StaticLimiter::new(256)),
            ),
            (
                format!("static {capacity} (knows C)"),
                Arc::new(StaticLimiter::new(capacity)),
            ),
            (
                "adaptive gradient".to_string(),
                adaptive_for(Algorithm::Gradient),
            ),
            ("adaptive vegas".to_string(), adaptive_for(Algorithm::Vegas)),
        ];
        for (name, limiter) in limiters {
            let row = runtime.block_on(one_run(capacity, &name, limiter, seconds));
            println!(
                "| {capacity} | {} | {:.0} | {} | {} | {} / {} | {} / {} | {} | {} |",
                row.limiter,
                row.goodput,
                capacity * 50,
                row.timeouts,
                ms(row.p50),
                ms(row.p99),
                ms(row.e2e_p50),
                ms(row.e2e_p99),
                row.settled,
                row.wasted,
            );
        }
    }
}

fn adaptive_for(algorithm: Algorithm) -> Arc<dyn Limiter> {
    Arc::new(AdaptiveLimiter::new(AdaptiveConfig {
        algorithm,
        initial: 10,
        max: 1000,
        ..AdaptiveConfig::default()
    }))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: u64| {
        args.get(i)
            .map(|s| s.parse::<u64>().expect("a number"))
            .unwrap_or(default)
    };
    match args.first().map(String::as_str) {
        Some("micro") | None => micro(number(1, 2_000_000)),
        Some("instr") => {
            let case = args.get(1).expect("instr CASE ITERATIONS");
            run_case(case, number(2, 100_000));
        }
        Some("server") => server(number(1, 6) as f64),
        Some(other) => {
            eprintln!("unknown mode {other}: micro [N] | instr CASE N | server [SECONDS]");
            std::process::exit(2);
        }
    }
}
