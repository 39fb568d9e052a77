//! Real HTTP servers with known behaviour, for the benchmark's tests (also
//! used by `crates/surge/tests/bench_cli.rs`).
//!
//! Each runs on a thread of its own with its own two-thread runtime, on
//! 127.0.0.1 and a free port, until the process ends.
//! - `GET /fast`: answers at once (`ok`).
//! - `GET /delay/{ms}`: answers after exactly `ms` milliseconds.
//! - `GET /stall`: answers at once, except that every `stall_every`-th
//!   request (counted over the whole server) stalls the whole server for
//!   `stall` — every request, in flight or arriving, waits it out (a GC
//!   pause, a lock held too long).
//! - `GET /status/{code}`: answers with that status.
//! - `GET /close`: answers with `connection: close`.
//!
//! [`Server::served`] counts the responses given.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::RwLock;

/// A running test server.
#[derive(Clone)]
pub struct Server {
    pub addr: SocketAddr,
    state: Arc<Shared>,
}

struct Shared {
    served: AtomicU64,
    /// Longest time a `/delay` handler took, µs (its sleep as the server
    /// saw it, timer lateness included).
    slowest_delay_us: AtomicU64,
    stall_counter: AtomicU64,
    stall_every: u64,
    stall: Duration,
    /// Taken shared by every `/stall` request, exclusively by a stalling one.
    gate: RwLock<()>,
}

impl Server {
    /// Base URL, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Responses given so far (every route).
    pub fn served(&self) -> u64 {
        self.state.served.load(Ordering::SeqCst)
    }

    /// The longest a `/delay` handler took so far.
    pub fn slowest_delay(&self) -> Duration {
        Duration::from_micros(self.state.slowest_delay_us.load(Ordering::SeqCst))
    }

    /// Requests counted by `/stall` so far.
    pub fn stall_requests(&self) -> u64 {
        self.state.stall_counter.load(Ordering::SeqCst)
    }
}

async fn fast(State(s): State<Arc<Shared>>) -> &'static str {
    s.served.fetch_add(1, Ordering::SeqCst);
    "ok"
}

async fn delay(State(s): State<Arc<Shared>>, Path(ms): Path<u64>) -> &'static str {
    let start = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(ms)).await;
    let took = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    s.slowest_delay_us.fetch_max(took, Ordering::SeqCst);
    s.served.fetch_add(1, Ordering::SeqCst);
    "ok"
}

async fn stall_route(State(s): State<Arc<Shared>>) -> &'static str {
    let n = s.stall_counter.fetch_add(1, Ordering::SeqCst) + 1;
    if n % s.stall_every == 0 {
        let _all_wait = s.gate.write().await;
        tokio::time::sleep(s.stall).await;
    } else {
        let _pass = s.gate.read().await;
    }
    s.served.fetch_add(1, Ordering::SeqCst);
    "ok"
}

async fn status(State(s): State<Arc<Shared>>, Path(code): Path<u16>) -> impl IntoResponse {
    s.served.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT),
        "status",
    )
}

async fn close(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    s.served.fetch_add(1, Ordering::SeqCst);
    ([(header::CONNECTION, "close")], "bye")
}

/// Starts a server whose `/stall` stalls for `stall` every `stall_every`
/// requests.
pub fn start(stall_every: u64, stall: Duration) -> Server {
    let state = Arc::new(Shared {
        served: AtomicU64::new(0),
        slowest_delay_us: AtomicU64::new(0),
        stall_counter: AtomicU64::new(0),
        stall_every: stall_every.max(1),
        stall,
        gate: RwLock::new(()),
    });
    let app = Router::new()
        .route("/fast", get(fast))
        .route("/delay/{ms}", get(delay))
        .route("/stall", get(stall_route))
        .route("/status/{code}", get(status))
        .route("/close", get(close))
        .with_state(Arc::clone(&state));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    let addr = rx.recv().expect("the server started");
    Server { addr, state }
}

/// A server with no stalls to speak of.
pub fn plain() -> Server {
    start(u64::MAX, Duration::ZERO)
}
