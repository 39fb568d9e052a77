//! The load generator against real local servers with known behaviour
//! (`servers/`): latencies bracket a known delay, the closed loop runs at
//! connections ÷ delay, the open loop shows a server stall that the closed
//! loop hides, counts and warm-up are exact, errors land in their category.
//!
//! No pass/fail bound here is a fixed timing: bounds come from the server's
//! known behaviour (its delay, its stall) and from the run's own figures.

mod servers;

use std::time::Duration;

use surge_bench::{Abort, BenchError, Level, LoadModel, Plan, Point, Stop, Target, run_level};
use surge_core::ErrorCategory;

fn plan(load: LoadModel, stop: Stop, warmup: Duration) -> Plan {
    Plan::new(load, stop, warmup, Duration::from_secs(10), 2).expect("a valid plan")
}

fn closed(c: u32, stop: Stop, warmup: Duration) -> Plan {
    plan(LoadModel::closed(vec![c]).unwrap(), stop, warmup)
}

fn run(url: &str, level: Level, plan: &Plan) -> Point {
    let target = Target::new("t", url).unwrap();
    let addr = target.check_reachable(Duration::from_secs(5)).unwrap();
    run_level(&target, addr, level, plan, &Abort::new(), &mut |_| {}).unwrap()
}

/// One open-loop level of `rate` requests/s over `connections`.
fn run_open(url: &str, rate: f64, connections: u32, stop: Stop, warmup: Duration) -> Point {
    let open = plan(
        LoadModel::open(vec![rate], connections).unwrap(),
        stop,
        warmup,
    );
    run(url, Level::Open { rate, connections }, &open)
}

fn secs(s: f64) -> Stop {
    Stop::Duration(Duration::from_secs_f64(s))
}

#[test]
fn latencies_bracket_the_server_delay() {
    let server = servers::plain();
    let d_ms = 20.0;
    // The same level against the route with no delay: what the machine and
    // the generator add on top of the delay, right now.
    let plan = closed(4, secs(1.0), Duration::from_millis(200));
    let base = run(&server.url("/fast"), Level::Closed(4), &plan);
    let base = base.latency.expect("baseline latency");
    let p = run(&server.url("/delay/20"), Level::Closed(4), &plan);
    let l = p.latency.expect("latency");
    assert_eq!(p.error_total(), 0, "{:?}", p.first_error);
    // Never faster than the server's sleep (HDR keeps 3 significant
    // digits: 20 ms is exact in its buckets).
    assert!(l.min_ms >= d_ms, "min {} < {d_ms}", l.min_ms);
    // At most the longest the server's handler took (its sleep, timer
    // lateness included) plus what the same level took without the delay.
    let slowest = server.slowest_delay().as_secs_f64() * 1e3;
    let upper = slowest + base.p99_ms;
    assert!(
        l.p50_ms <= upper,
        "p50 {} > {upper} (server's slowest {slowest}, baseline p99 {})",
        l.p50_ms,
        base.p99_ms
    );
    assert!(l.min_ms <= l.p50_ms && l.p50_ms <= l.p90_ms && l.p90_ms <= l.p99_ms);
    assert!(l.p99_ms <= l.p999_ms.unwrap() && l.p999_ms.unwrap() <= l.max_ms);
    assert!(l.min_ms <= l.mean_ms && l.mean_ms <= l.max_ms);
    assert_eq!(l.samples, p.requests);
    assert_eq!(p.bytes, 2 * p.requests, "every body is `ok`");
    assert_eq!(p.statuses.get("200"), Some(&p.requests));
}

#[test]
fn closed_loop_rate_is_connections_over_the_delay() {
    let server = servers::plain();
    let (c, d) = (10u32, 0.020);
    let plan = closed(c, secs(1.5), Duration::from_millis(200));
    let p = run(&server.url("/delay/20"), Level::Closed(c), &plan);
    let l = p.latency.expect("latency");
    let ideal = f64::from(c) / d;
    // Tolerance from this run: each connection may lose one request at each
    // end of the measured span, and every request took mean ≥ D, not D.
    let per_connection = p.requests as f64 / f64::from(c);
    let mean = l.mean_ms / 1e3;
    let tolerance = 2.0 / per_connection + (mean - d) / mean;
    let off = (p.throughput - ideal).abs() / ideal;
    assert!(
        off <= tolerance,
        "rate {:.1}/s vs ideal {ideal}/s: {:.1}% off, tolerance {:.1}% (mean {:.2} ms, {} requests)",
        p.throughput,
        off * 100.0,
        tolerance * 100.0,
        l.mean_ms,
        p.requests
    );
    // Never above the server's limit (beyond the end effects).
    assert!(p.throughput <= ideal * (1.0 + 2.0 / per_connection));
    let share = p.in_flight_share.expect("closed loop share");
    assert!(
        share > 1.0 - 2.0 / per_connection && share <= 1.0 + 1e-9,
        "{share}"
    );
}

#[test]
fn the_open_loop_shows_a_stall_the_closed_loop_hides() {
    let stall = Duration::from_secs(1);
    let stall_ms = stall.as_secs_f64() * 1e3;
    // Closed loop, 2 connections: during a stall both wait, so a stall is
    // 2 samples among the 500 of its cycle (0.4%): the p99 is of the fast
    // requests, though the server was stalled most of the time.
    let server = servers::start(500, stall);
    let p = run(
        &server.url("/stall"),
        Level::Closed(2),
        &closed(2, secs(2.5), Duration::ZERO),
    );
    let l = p.latency.unwrap();
    let stalls = server.stall_requests() / 500;
    assert!(stalls >= 1, "the server stalled {stalls} times");
    assert!(
        l.max_ms >= stall_ms,
        "the stall itself was recorded: max {}",
        l.max_ms
    );
    assert!(
        l.p99_ms < stall_ms / 10.0,
        "closed loop p99 {} ms: should hide the stall",
        l.p99_ms
    );

    // Open loop at 500 requests/s: the 500 requests due during each stall
    // wait for it, and their latency runs from when they were due.
    let server = servers::start(500, stall);
    let rate = 500.0;
    let p = run_open(&server.url("/stall"), rate, 50, secs(2.5), Duration::ZERO);
    let l = p.latency.unwrap();
    assert!(server.stall_requests() >= 500, "the server stalled");
    assert!(
        l.p90_ms >= stall_ms / 4.0 && l.p99_ms >= stall_ms / 2.0,
        "open loop p90 {} p99 {}: the stall must show",
        l.p90_ms,
        l.p99_ms
    );
    let sent = p.uncorrected_latency.unwrap();
    assert!(sent.p90_ms < l.p90_ms, "from-send latency hides part of it");
    // Every scheduled request was sent and counted.
    assert_eq!(p.requests + p.error_total(), (2.5 * rate) as u64);
}

#[test]
fn request_counts_are_exact_and_the_warmup_is_not_counted() {
    let server = servers::plain();
    let p = run(
        &server.url("/fast"),
        Level::Closed(8),
        &closed(8, Stop::Requests(300), Duration::from_millis(300)),
    );
    assert_eq!(p.requests, 300);
    let served = server.served();
    assert!(
        served > 300,
        "the warm-up sent requests too ({served} served)"
    );

    let server = servers::plain();
    let rate = 400.0;
    let p = run_open(
        &server.url("/fast"),
        rate,
        4,
        Stop::Requests(200),
        Duration::from_millis(250),
    );
    assert_eq!(p.requests, 200);
    // 250 ms at 400/s = 100 warm-up requests, then the 200 counted.
    assert_eq!(server.served(), 300);
    // The open loop paces: 200 counted requests at 400/s take about 0.5 s,
    // and can never take less than the schedule (199 intervals).
    assert!(p.seconds >= 199.0 / rate, "{} s", p.seconds);
}

#[test]
fn errors_are_counted_by_category() {
    let server = servers::plain();
    let plan = closed(2, Stop::Requests(50), Duration::ZERO);
    let p = run(&server.url("/status/503"), Level::Closed(2), &plan);
    assert_eq!(p.errors.get(ErrorCategory::HttpStatus), 50);
    assert_eq!(p.statuses.get("503"), Some(&50));
    assert!(p.first_error.as_deref().unwrap().contains("503"));

    // A server that closes every connection: reconnecting is not an error.
    let p = run(&server.url("/close"), Level::Closed(2), &plan);
    assert_eq!(
        (p.requests, p.error_total()),
        (50, 0),
        "{:?}",
        p.first_error
    );

    // A response slower than the timeout.
    let short = Plan::new(
        LoadModel::closed(vec![2]).unwrap(),
        Stop::Requests(4),
        Duration::ZERO,
        Duration::from_millis(100),
        1,
    )
    .unwrap();
    let p = run(&server.url("/delay/2000"), Level::Closed(2), &short);
    assert_eq!(p.errors.get(ErrorCategory::Timeout), 4);
    assert_eq!(p.requests, 0);
    assert!(p.latency.is_none());
}

#[test]
fn an_unreachable_target_is_refused_before_any_load() {
    // A port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = Target::parse(&format!("gone=http://127.0.0.1:{port}/")).unwrap();
    let plan = closed(1, secs(1.0), Duration::ZERO);
    let err = surge_bench::sweep(&[target], &plan, &Abort::new(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, BenchError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("gone"), "{err}");
}

#[test]
fn a_sweep_runs_every_level_of_every_target_in_turn() {
    let a = servers::plain();
    let b = servers::plain();
    let targets = vec![
        Target::new("a", &a.url("/fast")).unwrap(),
        Target::new("b", &b.url("/delay/1")).unwrap(),
    ];
    let plan = plan(
        LoadModel::closed(vec![1, 3]).unwrap(),
        Stop::Requests(40),
        Duration::ZERO,
    );
    let mut order = Vec::new();
    let results = surge_bench::sweep(&targets, &plan, &Abort::new(), &mut |e| {
        if let surge_bench::Event::LevelDone { label, point } = e {
            order.push((label.to_owned(), point.load));
        }
    })
    .unwrap();
    assert_eq!(
        order,
        [("a", 1.0), ("b", 1.0), ("a", 3.0), ("b", 3.0)].map(|(l, n)| (l.to_owned(), n))
    );
    let suite = &results.suites[0];
    assert_eq!(suite.series.len(), 2);
    for s in &suite.series {
        assert_eq!(
            s.points.iter().map(|p| p.requests).collect::<Vec<_>>(),
            [40, 40]
        );
    }
    assert_eq!(a.served() + b.served(), 160);
}
