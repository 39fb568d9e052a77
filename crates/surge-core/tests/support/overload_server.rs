//! A real HTTP server on 127.0.0.1 with a fixed capacity, and a closed-loop
//! client that drives it through `LimitLayer` and hyper's client.
//!
//! The server serves `capacity` requests at once, each taking `service`;
//! the rest wait in its FIFO queue, so latency grows with concurrency past
//! the capacity. At run time it can answer 503 or 429 at once instead, or
//! change its capacity. It counts concurrency itself: requests arrived and
//! not yet answered, and requests in service.
//!
//! Shared by the behaviour tests (`tests/limit_http.rs`) and the benchmark
//! (`examples/limits.rs`).

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use surge_core::limit::Limiter;
use tokio::sync::Semaphore;
use tower::{Service, ServiceExt};

/// What the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Serve within capacity, queue the rest.
    Serve = 0,
    /// 503 at once.
    Unavailable = 1,
    /// 429 at once.
    TooMany = 2,
}

pub struct ServerState {
    service: Duration,
    capacity: Semaphore,
    capacity_now: AtomicUsize,
    mode: AtomicU8,
    /// Arrived and not yet answered.
    open: AtomicUsize,
    open_peak: AtomicUsize,
    /// Holding a capacity slot.
    busy: AtomicUsize,
    busy_peak: AtomicUsize,
    served: AtomicUsize,
}

/// A running server; it stops when this is dropped.
pub struct OverloadServer {
    pub addr: SocketAddr,
    pub state: Arc<ServerState>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    _thread: std::thread::JoinHandle<()>,
}

struct Arrival<'a>(&'a ServerState);

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(State(state): State<Arc<ServerState>>) -> StatusCode {
    let now = state.open.fetch_add(1, Ordering::SeqCst) + 1;
    state.open_peak.fetch_max(now, Ordering::SeqCst);
    let _arrival = Arrival(&state);
    match state.mode.load(Ordering::SeqCst) {
        1 => return StatusCode::SERVICE_UNAVAILABLE,
        2 => return StatusCode::TOO_MANY_REQUESTS,
        _ => {}
    }
    let _slot = state.capacity.acquire().await.expect("never closed");
    let busy = state.busy.fetch_add(1, Ordering::SeqCst) + 1;
    state.busy_peak.fetch_max(busy, Ordering::SeqCst);
    tokio::time::sleep(state.service).await;
    state.busy.fetch_sub(1, Ordering::SeqCst);
    state.served.fetch_add(1, Ordering::SeqCst);
    StatusCode::OK
}

impl OverloadServer {
    /// Starts a server on 127.0.0.1 (any free port) on a runtime of its own,
    /// so the client under test cannot starve it.
    pub fn start(capacity: usize, service: Duration) -> OverloadServer {
        let state = Arc::new(ServerState {
            service,
            capacity: Semaphore::new(capacity),
            capacity_now: AtomicUsize::new(capacity),
            mode: AtomicU8::new(Mode::Serve as u8),
            open: AtomicUsize::new(0),
            open_peak: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            busy_peak: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .route("/", axum::routing::get(handle))
            .with_state(state.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("server runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        OverloadServer {
            addr,
            state,
            _shutdown: shutdown,
            _thread: thread,
        }
    }

    pub fn uri(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Changes the number of requests served at once (shrinking waits for
    /// requests in service to finish, in the background).
    pub fn set_capacity(&self, capacity: usize) {
        let old = self.state.capacity_now.swap(capacity, Ordering::SeqCst);
        if capacity > old {
            self.state.capacity.add_permits(capacity - old);
        } else if capacity < old {
            let state = self.state.clone();
            let take = (old - capacity) as u32;
            tokio::spawn(async move {
                state
                    .capacity
                    .acquire_many(take)
                    .await
                    .expect("never closed")
                    .forget();
            });
        }
    }

    /// Peak of requests open at once (arrived, not yet answered) since the
    /// last call, and resets it to the current count.
    pub fn take_open_peak(&self) -> usize {
        let now = self.state.open.load(Ordering::SeqCst);
        self.state.open_peak.swap(now, Ordering::SeqCst)
    }

    pub fn busy_peak(&self) -> usize {
        self.state.busy_peak.load(Ordering::SeqCst)
    }

    pub fn served(&self) -> usize {
        self.state.served.load(Ordering::SeqCst)
    }
}

/// One completed request, as the client saw it.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    /// Since the phase started.
    pub at: Duration,
    /// 200, 429, 503; 0 for a client error (a timeout).
    pub status: u16,
    /// From the start of the call (after the limiter let it through) to the
    /// response head.
    pub latency: Duration,
    /// From the worker starting to wait for the limiter to the response.
    pub end_to_end: Duration,
    /// The limiter's limit right after.
    pub limit: usize,
}

/// A plain HTTP/1.1 client with a connection pool.
pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Drives `svc` with `workers` closed-loop callers until `budget` requests
/// have been issued or `done` says so (checked after every completion).
pub async fn drive<S, E>(
    svc: S,
    limiter: Arc<dyn Limiter>,
    uri: &str,
    workers: usize,
    budget: usize,
    done: impl Fn(&[Completion]) -> bool + Send + Sync + 'static,
) -> Vec<Completion>
where
    S: Service<
            http::Request<Empty<Bytes>>,
            Response = http::Response<hyper::body::Incoming>,
            Error = E,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
    E: std::fmt::Debug + Send + 'static,
{
    let started = Instant::now();
    let issued = Arc::new(AtomicUsize::new(0));
    let log: Arc<Mutex<Vec<Completion>>> = Arc::new(Mutex::new(Vec::with_capacity(budget)));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = Arc::new(done);
    let uri: http::Uri = uri.parse().expect("uri");
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (mut svc, limiter, issued, log, stop, done, uri) = (
                svc.clone(),
                limiter.clone(),
                issued.clone(),
                log.clone(),
                stop.clone(),
                done.clone(),
                uri.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) && issued.fetch_add(1, Ordering::SeqCst) < budget
                {
                    let waited = Instant::now();
                    let ready = match svc.ready().await {
                        Ok(ready) => ready,
                        Err(e) => panic!("service failed: {e:?}"),
                    };
                    let request = http::Request::get(uri.clone())
                        .body(Empty::<Bytes>::new())
                        .expect("request");
                    let sent = Instant::now();
                    let status = match ready.call(request).await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let _ = response.into_body().collect().await;
                            status
                        }
                        Err(_) => 0,
                    };
                    let finished = Instant::now();
                    let completion = Completion {
                        at: finished - started,
                        status,
                        latency: finished - sent,
                        end_to_end: finished - waited,
                        limit: limiter.snapshot().limit,
                    };
                    let mut log = log.lock().unwrap();
                    log.push(completion);
                    if done(&log) {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("worker panicked");
    }
    let log = log.lock().unwrap();
    log.clone()
}

/// Never stop early.
pub fn run_out(_: &[Completion]) -> bool {
    false
}

/// The median limit over the second half of a run.
pub fn settled_limit(log: &[Completion]) -> usize {
    let mut tail: Vec<usize> = log[log.len() / 2..].iter().map(|c| c.limit).collect();
    tail.sort_unstable();
    tail[tail.len() / 2]
}

/// `(p50, p99)` of `pick` over the completions with `status`.
pub fn percentiles(
    log: &[Completion],
    status: u16,
    pick: impl Fn(&Completion) -> Duration,
) -> Option<(Duration, Duration)> {
    let mut values: Vec<Duration> = log
        .iter()
        .filter(|c| c.status == status)
        .map(pick)
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Some((at(0.50), at(0.99)))
}
