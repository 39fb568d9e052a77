//! The adaptive limiter against a real HTTP server on 127.0.0.1, through
//! `LimitLayer` and hyper's client. The server has a capacity of `C`
//! concurrent requests and queues the rest, so latency grows past `C`; it
//! counts concurrency itself. Bounds come from `C` and the algorithm's
//! equilibrium, never from wall-clock time.

#[path = "support/overload_server.rs"]
mod overload_server;

use std::sync::Arc;
use std::time::Duration;

use overload_server::{Mode, OverloadServer, drive, http_client, run_out, settled_limit};
use surge_core::limit::{AdaptiveConfig, AdaptiveLimiter, Algorithm, LimitLayer, Limiter};
use tower::ServiceBuilder;

const SERVICE: Duration = Duration::from_millis(20);

fn limiter(algorithm: Algorithm, initial: usize) -> Arc<AdaptiveLimiter> {
    Arc::new(AdaptiveLimiter::new(AdaptiveConfig {
        algorithm,
        initial,
        min: 1,
        max: 512,
        ..AdaptiveConfig::default()
    }))
}

/// The highest limit each algorithm may settle at against capacity `c`
/// (its equilibrium plus the noise of one step): Gradient rests where
/// `limit = tolerance × C + sqrt(limit)`, Vegas `3..6 × log10(limit)` above `C`.
fn upper_bound(algorithm: Algorithm, c: usize) -> usize {
    let c = c as f64;
    let bound = match algorithm {
        Algorithm::Gradient => 1.25 * c + 1.5 * (1.25 * c).sqrt() + 2.0,
        Algorithm::Vegas => c + 6.0 * (2.0 * c).log10() + 2.0,
    };
    bound as usize
}

/// The limit must reach most of the capacity: below it the server idles.
fn lower_bound(c: usize) -> usize {
    c * 3 / 4
}

async fn overload_and_recovery(algorithm: Algorithm) {
    const C: usize = 16;
    let server = OverloadServer::start(C, SERVICE);
    let adaptive = limiter(algorithm, 4);
    let limiter: Arc<dyn Limiter> = adaptive.clone();
    let svc = ServiceBuilder::new()
        .layer(LimitLayer::new(limiter.clone()))
        .service(http_client());
    let uri = server.uri();

    // 1. Far more callers than capacity: the limit settles near C.
    let settle = drive(svc.clone(), limiter.clone(), &uri, 128, 1_600, run_out).await;
    let settled = settled_limit(&settle);
    eprintln!(
        "{algorithm:?} settle: {} requests in {:?}, settled {settled}",
        settle.len(),
        settle.last().unwrap().at
    );
    let peak_limit = settle.iter().map(|c| c.limit).max().unwrap();
    let open_peak = server.take_open_peak();
    assert!(
        (lower_bound(C)..=upper_bound(algorithm, C)).contains(&settled),
        "{algorithm:?}: settled at {settled}, capacity {C}"
    );
    assert!(
        open_peak <= peak_limit,
        "{algorithm:?}: the server saw {open_peak} requests at once, the limit never exceeded {peak_limit}"
    );
    assert!(server.busy_peak() <= C);

    // 2. The server answers 503: the limit comes down, one cut per latency
    //    window (a burst of 503s is one signal).
    server.set_mode(Mode::Unavailable);
    let floor = Duration::from_secs_f64(limiter.snapshot().latency_floor_ms.unwrap() / 1e3);
    let overload = drive(svc.clone(), limiter.clone(), &uri, 128, 200_000, |log| {
        log.last().is_some_and(|c| c.limit <= 1)
    })
    .await;
    let last = overload.last().unwrap();
    eprintln!(
        "{algorithm:?} 503: {} requests in {:?}",
        overload.len(),
        last.at
    );
    assert_eq!(
        last.limit, 1,
        "{algorithm:?}: 503s did not bring the limit down"
    );
    let cuts = overload
        .windows(2)
        .filter(|w| w[1].limit < w[0].limit)
        .count()
        + 1;
    let windows = last.at.as_secs_f64() / floor.as_secs_f64();
    assert!(
        (cuts as f64) <= windows + 1.0,
        "{algorithm:?}: {cuts} cuts in {windows:.1} latency windows"
    );
    assert!(overload.iter().any(|c| c.status == 503));

    // 3. The server recovers: the limit climbs back near C.
    server.set_mode(Mode::Serve);
    server.take_open_peak();
    let recovered = drive(svc.clone(), limiter.clone(), &uri, 128, 8_000, |log| {
        log.len() > 400
            && log[log.len() - 200..]
                .iter()
                .all(|c| c.limit >= lower_bound(C))
    })
    .await;
    let last = recovered.last().unwrap().limit;
    eprintln!(
        "{algorithm:?} recover: {} requests in {:?} to {last}",
        recovered.len(),
        recovered.last().unwrap().at
    );
    assert!(
        last >= lower_bound(C),
        "{algorithm:?}: recovered only to {last} after {} requests",
        recovered.len()
    );
    let peak_limit = recovered.iter().map(|c| c.limit).max().unwrap();
    assert!(server.take_open_peak() <= peak_limit);
    assert_eq!(adaptive.snapshot().in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gradient_settles_near_capacity_backs_off_on_503_and_recovers() {
    overload_and_recovery(Algorithm::Gradient).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vegas_settles_near_capacity_backs_off_on_503_and_recovers() {
    overload_and_recovery(Algorithm::Vegas).await;
}

async fn capacity_drop(algorithm: Algorithm) {
    let server = OverloadServer::start(32, SERVICE);
    let limiter: Arc<dyn Limiter> = limiter(algorithm, 8);
    let svc = ServiceBuilder::new()
        .layer(LimitLayer::new(limiter.clone()))
        .service(http_client());
    let uri = server.uri();
    let before = drive(svc.clone(), limiter.clone(), &uri, 128, 3_000, run_out).await;
    let settled = settled_limit(&before);
    eprintln!(
        "{algorithm:?} 32: {} requests in {:?}, settled {settled}",
        before.len(),
        before.last().unwrap().at
    );
    assert!(
        settled >= lower_bound(32),
        "{algorithm:?}: settled at {settled} for 32"
    );

    // A quarter of the capacity: latency quadruples at the old limit.
    server.set_capacity(8);
    let after = drive(svc.clone(), limiter.clone(), &uri, 128, 8_000, move |log| {
        log.len() > 600
            && log[log.len() - 300..]
                .iter()
                .all(|c| c.limit <= upper_bound(algorithm, 8))
    })
    .await;
    let last = after.last().unwrap().limit;
    eprintln!(
        "{algorithm:?} 8: {} requests in {:?} to {last}",
        after.len(),
        after.last().unwrap().at
    );
    assert!(
        last <= upper_bound(algorithm, 8),
        "{algorithm:?}: still at {last} after the capacity fell from 32 to 8"
    );
    assert!(last >= 2, "{algorithm:?}: fell to {last}, capacity 8");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gradient_follows_a_capacity_drop() {
    capacity_drop(Algorithm::Gradient).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vegas_follows_a_capacity_drop() {
    capacity_drop(Algorithm::Vegas).await;
}

/// 4 callers against a limit of 16 on a server that could take 64: the
/// caller is the bottleneck, and the limit must not grow however good the
/// latency is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_bound_load_does_not_raise_the_limit() {
    async fn caller_bound(algorithm: Algorithm) {
        let server = OverloadServer::start(64, SERVICE);
        let limiter: Arc<dyn Limiter> = limiter(algorithm, 16);
        let svc = ServiceBuilder::new()
            .layer(LimitLayer::new(limiter.clone()))
            .service(http_client());
        let log = drive(svc, limiter.clone(), &server.uri(), 4, 600, run_out).await;
        let peak = log.iter().map(|c| c.limit).max().unwrap();
        assert_eq!(
            peak, 16,
            "{algorithm:?}: the limit moved to {peak} with 4 callers"
        );
        assert!(server.take_open_peak() <= 4);
        let snap = limiter.snapshot();
        assert_eq!(snap.successes, 600, "{snap:?}");
        assert!(
            snap.latency_floor_ms.is_some(),
            "{algorithm:?}: no latency measured"
        );
    }
    tokio::join!(
        caller_bound(Algorithm::Gradient),
        caller_bound(Algorithm::Vegas)
    );
}

/// A timeout inside the limit is overload: the requests that ran out of
/// time cut the limit (once: they were all sent together).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_inside_the_layer_are_overload() {
    let server = OverloadServer::start(1, Duration::from_millis(400));
    let adaptive = limiter(Algorithm::Gradient, 10);
    let limiter: Arc<dyn Limiter> = adaptive.clone();
    let svc = ServiceBuilder::new()
        .layer(LimitLayer::new(limiter.clone()))
        .timeout(Duration::from_millis(100))
        .service(http_client());
    let log = drive(svc, limiter.clone(), &server.uri(), 10, 10, run_out).await;
    // The first request is served (400 ms) after the timeout; all ten time out.
    assert_eq!(log.iter().filter(|c| c.status == 0).count(), 10);
    let snap = adaptive.snapshot();
    assert_eq!(snap.overloads, 10, "{snap:?}");
    assert_eq!(
        snap.limit, 8,
        "ten timeouts sent together are one cut: {snap:?}"
    );
}
