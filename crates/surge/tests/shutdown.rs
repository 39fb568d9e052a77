//! Graceful shutdown on SIGTERM / SIGINT, on both backends (closing the
//! database pool is part of shutting down).

mod common;

use std::time::Duration;

use common::{Backend, Resp, Server, backend_tests, in_flight_gauge, wait_for_in_flight};
use nix::sys::signal::Signal;

backend_tests! {
    sigterm_lets_in_flight_request_finish_and_exits_zero => sigterm_lets_in_flight_request_finish_and_exits_zero_sqlite, sigterm_lets_in_flight_request_finish_and_exits_zero_postgres;
    sigint_on_idle_server_exits_zero => sigint_on_idle_server_exits_zero_sqlite, sigint_on_idle_server_exits_zero_postgres;
}

/// Generous bound for "the process exits": the 30 s default grace plus
/// slack for a loaded machine. Only bounds a hang.
const EXIT_DEADLINE: Duration = Duration::from_secs(60);

async fn sigterm_lets_in_flight_request_finish_and_exits_zero(b: Backend) {
    let mut server = Server::start(b, &[]).await;
    let baseline = in_flight_gauge(&server).await;
    server.get("/health").await.expect_status(200);

    let in_flight = spawn_request(&server, "/api/data?delay_ms=2000");
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_for_in_flight(&server, baseline + 1.0).await;
    assert!(
        !in_flight.is_finished(),
        "the 2 s request finished before SIGTERM was even sent"
    );
    server.signal(Signal::SIGTERM);

    let resp = in_flight.await.expect("request task").unwrap_or_else(|e| {
        panic!(
            "in-flight request was cut by SIGTERM: {e}\nstderr:\n{}",
            server.stderr()
        )
    });
    resp.expect_status(200);
    assert_eq!(resp.json()["delay_ms"], 2000);

    let status = server.wait_exit(EXIT_DEADLINE).await.unwrap_or_else(|| {
        panic!(
            "server still running {EXIT_DEADLINE:?} after SIGTERM\nstderr:\n{}",
            server.stderr()
        )
    });
    assert!(
        status.success(),
        "exit status after SIGTERM should be 0, got {status:?}\nstderr:\n{}",
        server.stderr()
    );
}

async fn sigint_on_idle_server_exits_zero(b: Backend) {
    let mut server = Server::start(b, &[]).await;
    server.get("/health").await.expect_status(200);
    server.signal(Signal::SIGINT);
    let status = server.wait_exit(EXIT_DEADLINE).await.unwrap_or_else(|| {
        panic!(
            "idle server still running {EXIT_DEADLINE:?} after SIGINT\nstderr:\n{}",
            server.stderr()
        )
    });
    assert!(
        status.success(),
        "exit status after SIGINT should be 0, got {status:?}\nstderr:\n{}",
        server.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_stops_accepting_new_connections_while_draining() {
    let mut server = Server::start(Backend::Sqlite, &[]).await;
    let baseline = in_flight_gauge(&server).await;
    let in_flight = spawn_request(&server, "/api/data?delay_ms=8000");
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_for_in_flight(&server, baseline + 1.0).await;
    server.signal(Signal::SIGTERM);

    // New connections (fresh client, no pooled connection) are refused
    // while the slow request is still being served.
    let refused_while_draining = loop {
        let fresh = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        match fresh.get(server.url("/health")).send().await {
            Err(_) => break !in_flight.is_finished(),
            Ok(_) if in_flight.is_finished() => break false,
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert!(
        refused_while_draining,
        "after SIGTERM the listener should close while the in-flight request drains"
    );
    let resp = in_flight.await.expect("task").expect("in-flight request");
    resp.expect_status(200);
    let status = server.wait_exit(EXIT_DEADLINE).await.expect("exit");
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_grace_expiry_abandons_slower_requests() {
    // Grace 1 s, request 10 s: the process must not wait for the request.
    let mut server = Server::start(Backend::Sqlite, &["--shutdown-grace", "1"]).await;
    let baseline = in_flight_gauge(&server).await;
    let in_flight = server
        .client
        .get(server.url("/api/data?delay_ms=10000"))
        .send();
    let in_flight = tokio::spawn(async move {
        match in_flight.await {
            Ok(r) => Ok(Resp::read(r).await.status.as_u16()),
            Err(e) => Err(e.to_string()),
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_for_in_flight(&server, baseline + 1.0).await;
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(EXIT_DEADLINE).await;
    assert!(
        status.is_some(),
        "server did not exit after the grace period"
    );
    let outcome = in_flight.await.expect("task");
    assert!(
        outcome != Ok(200),
        "the 10 s request completed although the grace period was 1 s"
    );
}

/// Sends `GET path` in a task of its own; the task ends with the response or
/// the client's error.
fn spawn_request(server: &Server, path: &str) -> tokio::task::JoinHandle<Result<Resp, String>> {
    let request = server.client.get(server.url(path)).send();
    tokio::spawn(async move {
        match request.await {
            Ok(r) => Ok(Resp::read(r).await),
            Err(e) => Err(e.to_string()),
        }
    })
}
