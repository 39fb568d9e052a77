//! The load generator.
//!
//! A level runs on `threads` OS threads, each with its own single-threaded
//! tokio runtime and a share of the connections (as wrk does: no work
//! stealing, no locks on the request path); each records into its own
//! [`record::Recorder`], merged when the level ends.
//!
//! Timeline of a level: every connection is opened first (not timed); then
//! the warm-up runs (its requests are not counted), then the measurement;
//! at its end no new request is sent, and the requests in flight are
//! finished and counted, so a slow last response is not dropped. The span
//! is from the end of the warm-up to the last counted completion.
//!
//! - **Closed loop**: one task per connection sends its next request as
//!   soon as the previous response was read; latency runs from the send.
//! - **Open loop**: a pacer thread releases request `k` at
//!   `start + k / rate` (it sleeps with `std::thread::sleep`, about 0.1 ms
//!   of slack, not tokio's 1 ms timer) to the connections of thread
//!   `k mod threads`; the next idle connection sends it. When every
//!   connection is busy the request waits, and its latency still runs from
//!   its intended time: a stall of the server shows in the latency of every
//!   request that was due during it (coordinated omission corrected, as in
//!   wrk2). The latency from the actual send is kept beside it.

mod conn;
pub(crate) mod record;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::BenchError;
use crate::plan::{Client, Plan, Stop};
use crate::results::Point;
use crate::target::Target;
use conn::{Connection, HyperConn, LeanConn, Outgoing};
use record::{Live, Recorder};

/// Pause after a failed connect before the next attempt (a refused port
/// would otherwise be retried in a hot loop).
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);
/// Shortest sleep of the open-loop pacer: at higher rates it releases the
/// requests due in each such slice together.
const PACER_SLICE: Duration = Duration::from_micros(100);

/// The load of one level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Level {
    /// This many connections, closed loop.
    Closed(u32),
    /// This many requests per second over this many connections.
    Open {
        /// Requests per second.
        rate: f64,
        /// Connections.
        connections: u32,
    },
}

impl Level {
    fn connections(self) -> u32 {
        match self {
            Level::Closed(c) | Level::Open { connections: c, .. } => c,
        }
    }

    fn load(self) -> f64 {
        match self {
            Level::Closed(c) => f64::from(c),
            Level::Open { rate, .. } => rate,
        }
    }
}

/// A snapshot of the level being run, for a progress line.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Since the warm-up began.
    pub elapsed: Duration,
    /// Whether the warm-up is over.
    pub measuring: bool,
    /// Responses counted so far.
    pub responses: u64,
    /// Errors counted so far.
    pub errors: u64,
}

/// Asks a running level to stop early (e.g. on Ctrl-C); clone it freely.
#[derive(Debug, Clone, Default)]
pub struct Abort(Arc<AtomicBool>);

impl Abort {
    /// A handle that has not fired.
    pub fn new() -> Abort {
        Abort::default()
    }

    /// Stops the level in progress as soon as its requests in flight end.
    pub fn fire(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether it has fired.
    pub fn fired(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// When things happen in a level, fixed once every connection is open.
#[derive(Debug, Clone, Copy)]
struct Timeline {
    start: Instant,
    measure: Instant,
    /// End of sending (duration mode).
    deadline: Option<Instant>,
}

/// Shared by every thread of a level.
struct LevelShared {
    /// The request, encoded once.
    request: Outgoing,
    addr: SocketAddr,
    level: Level,
    stop: Stop,
    timeout: Duration,
    threads: usize,
    abort: Abort,
    /// Closed loop, request-count mode: counted requests handed out.
    tickets: AtomicU64,
    /// Open loop: total requests of the level (warm-up included).
    open_total: u64,
    /// Open loop: requests of the warm-up.
    open_warmup: u64,
}

/// One thread's part.
struct ThreadCtx {
    shared: Arc<LevelShared>,
    index: usize,
    timeline: Timeline,
    live: Arc<Live>,
    /// Only this thread's tasks take it, one at a time and never across
    /// an await: the lock is never contended.
    recorder: Mutex<Recorder>,
    /// Open loop: this thread's tickets.
    tickets: Option<Arc<Semaphore>>,
    next_ticket: AtomicU64,
}

impl ThreadCtx {
    fn record(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.recorder.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs one level against `target` (already resolved to `addr`) and
/// returns its point. `progress` is called about four times a second from
/// the calling thread.
///
/// # Errors
/// [`BenchError::Start`] when a thread or runtime cannot be started.
pub fn run_level(
    target: &Target,
    addr: SocketAddr,
    level: Level,
    plan: &Plan,
    abort: &Abort,
    progress: &mut dyn FnMut(Progress),
) -> Result<Point, BenchError> {
    let connections = level.connections();
    let threads = plan.threads.min(connections as usize).max(1);
    let (open_total, open_warmup) = match level {
        Level::Closed(_) => (0, 0),
        Level::Open { rate, .. } => {
            let warmup = (plan.warmup.as_secs_f64() * rate).ceil() as u64;
            let measured = match plan.stop {
                Stop::Duration(d) => (d.as_secs_f64() * rate).ceil() as u64,
                Stop::Requests(n) => n,
            };
            (warmup + measured.max(1), warmup)
        }
    };
    let shared = Arc::new(LevelShared {
        request: Outgoing::new(target),
        addr,
        level,
        stop: plan.stop,
        timeout: plan.timeout,
        threads,
        abort: abort.clone(),
        tickets: AtomicU64::new(0),
        open_total,
        open_warmup,
    });
    let per_thread: Vec<u32> = (0..threads)
        .map(|i| {
            connections / threads as u32 + u32::from((i as u32) < connections % threads as u32)
        })
        .collect();
    let lives: Vec<Arc<Live>> = (0..threads).map(|_| Arc::new(Live::default())).collect();
    let semaphores: Vec<Arc<Semaphore>> =
        (0..threads).map(|_| Arc::new(Semaphore::new(0))).collect();
    let open = matches!(level, Level::Open { .. });
    let client = plan.client.resolved();

    std::thread::scope(|scope| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let mut starts = Vec::new();
        let mut handles = Vec::new();
        for i in 0..threads {
            let (start_tx, start_rx) = tokio::sync::oneshot::channel::<Timeline>();
            starts.push(start_tx);
            let ready_tx = ready_tx.clone();
            let shared = Arc::clone(&shared);
            let live = Arc::clone(&lives[i]);
            let tickets = open.then(|| Arc::clone(&semaphores[i]));
            let conns = per_thread[i];
            let handle = std::thread::Builder::new()
                .name(format!("surge-bench-{i}"))
                .spawn_scoped(scope, move || match client {
                    Client::Hyper => thread_main::<HyperConn>(
                        shared, i, conns, live, tickets, ready_tx, start_rx,
                    ),
                    Client::Auto | Client::Lean => {
                        thread_main::<LeanConn>(shared, i, conns, live, tickets, ready_tx, start_rx)
                    }
                })
                .map_err(|e| BenchError::Start(e.to_string()))?;
            handles.push(handle);
        }
        drop(ready_tx);
        for _ in 0..threads {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(BenchError::Start(e)),
                Err(_) => return Err(BenchError::Start("a generator thread died".into())),
            }
        }
        let start = Instant::now();
        let measure = start + plan.warmup;
        let timeline = Timeline {
            start,
            measure,
            deadline: match plan.stop {
                Stop::Duration(d) => Some(measure + d),
                Stop::Requests(_) => None,
            },
        };
        for tx in starts {
            let _ = tx.send(timeline);
        }
        if let Level::Open { rate, .. } = level {
            let semaphores = &semaphores;
            let per_thread = &per_thread;
            std::thread::Builder::new()
                .name("surge-bench-pacer".into())
                .spawn_scoped(scope, move || {
                    pace(start, rate, open_total, semaphores, per_thread, abort);
                })
                .map_err(|e| BenchError::Start(e.to_string()))?;
        }
        let snapshot = |now: Instant| Progress {
            elapsed: now - start,
            measuring: now >= measure,
            responses: lives
                .iter()
                .map(|l| l.responses.load(Ordering::Relaxed))
                .sum(),
            errors: lives.iter().map(|l| l.errors.load(Ordering::Relaxed)).sum(),
        };
        let mut shown = start;
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
            let now = Instant::now();
            if now - shown >= Duration::from_millis(250) {
                progress(snapshot(now));
                shown = now;
            }
        }
        let mut recorders = Vec::new();
        for h in handles {
            match h.join() {
                Ok(Ok(r)) => recorders.push(r),
                Ok(Err(e)) => return Err(BenchError::Start(e)),
                Err(_) => return Err(BenchError::Start("a generator thread panicked".into())),
            }
        }
        let end = Instant::now();
        progress(snapshot(end));
        Ok(Recorder::into_point(
            recorders,
            level.load(),
            connections,
            !open,
            measure,
            end,
        ))
    })
}

/// Releases open-loop tickets on schedule, then one extra per connection so
/// that every connection task wakes up and sees the level is over.
fn pace(
    start: Instant,
    rate: f64,
    total: u64,
    semaphores: &[Arc<Semaphore>],
    per_thread: &[u32],
    abort: &Abort,
) {
    let threads = semaphores.len() as u64;
    let mut released = 0u64;
    while released < total && !abort.fired() {
        let elapsed = Instant::now()
            .saturating_duration_since(start)
            .as_secs_f64();
        let due = ((elapsed * rate).floor() as u64 + 1).min(total);
        if due > released {
            for (i, sem) in semaphores.iter().enumerate() {
                // Tickets k in released..due with k % threads == i.
                let i = i as u64;
                let count = |n: u64| n.saturating_sub(i).div_ceil(threads);
                let n = count(due) - count(released);
                if n > 0 {
                    sem.add_permits(n as usize);
                }
            }
            released = due;
        }
        if released >= total {
            break;
        }
        let next = start + Duration::from_secs_f64(released as f64 / rate);
        let wait = next.saturating_duration_since(Instant::now());
        std::thread::sleep(wait.max(PACER_SLICE));
    }
    for (sem, &conns) in semaphores.iter().zip(per_thread) {
        sem.add_permits(conns as usize);
    }
}

/// A generator thread: opens its connections, reports ready, waits for the
/// timeline, runs its connection tasks, returns its recording.
fn thread_main<C: Connection>(
    shared: Arc<LevelShared>,
    index: usize,
    conns: u32,
    live: Arc<Live>,
    tickets: Option<Arc<Semaphore>>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
    start: tokio::sync::oneshot::Receiver<Timeline>,
) -> Result<Recorder, String> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let msg = format!("cannot build a runtime: {e}");
            let _ = ready.send(Err(msg.clone()));
            return Err(msg);
        }
    };
    let open = tickets.is_some();
    // Plain tasks on the thread's own runtime (no LocalSet: it would queue
    // every wake-up twice).
    runtime.block_on(async move {
        // Open every connection before the clock starts; one that fails is
        // retried (and counted) by its task.
        let (addr, timeout) = (shared.addr, shared.timeout);
        let opened = futures_join((0..conns).map(|_| C::open(addr, timeout)).collect()).await;
        let _ = ready.send(Ok(()));
        let Ok(timeline) = start.await else {
            return Err("the level was abandoned before it started".to_owned());
        };
        let ctx = Arc::new(ThreadCtx {
            shared,
            index,
            timeline,
            live,
            recorder: Mutex::new(Recorder::new(open)),
            tickets,
            next_ticket: AtomicU64::new(0),
        });
        let mut tasks = Vec::new();
        for conn in opened {
            let ctx = Arc::clone(&ctx);
            let conn = conn.ok();
            tasks.push(tokio::spawn(async move {
                if ctx.tickets.is_some() {
                    open_loop(&ctx, conn).await;
                } else {
                    closed_loop(&ctx, conn).await;
                }
            }));
        }
        for t in tasks {
            t.await
                .map_err(|e| format!("a connection task failed: {e}"))?;
        }
        let ctx = Arc::try_unwrap(ctx).map_err(|_| "connection tasks still hold the context")?;
        Ok(ctx
            .recorder
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner))
    })
}

/// Awaits every future (they run concurrently on this thread).
async fn futures_join<F>(futures: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("connect tasks do not panic"));
    }
    out
}

/// One request on `conn` (opened or replaced as needed), recorded when
/// `counted`. Latency runs from `due` (the intended send, open loop) or
/// else from the send; `now` is the time read just before (the send's,
/// unless a connection must be opened first). Returns the connection if it
/// can be used again.
async fn one_request<C: Connection>(
    ctx: &ThreadCtx,
    conn: Option<C>,
    due: Option<Instant>,
    counted: bool,
    now: Instant,
) -> Option<C> {
    let shared = &*ctx.shared;
    let mut sent = now;
    let mut conn = match conn {
        Some(c) if c.usable() => c,
        _ => match C::open(shared.addr, shared.timeout).await {
            Ok(c) => {
                sent = Instant::now();
                c
            }
            Err(f) => {
                if counted {
                    let mut r = ctx.record();
                    r.error(&ctx.live, f.category, || f.message);
                    r.failed_at(Instant::now());
                }
                tokio::time::sleep(RECONNECT_PAUSE).await;
                return None;
            }
        },
    };
    match conn.exchange(&shared.request, sent, shared.timeout).await {
        Ok(answer) => {
            let done = Instant::now();
            if counted {
                ctx.record().response(
                    &ctx.live,
                    done.saturating_duration_since(due.unwrap_or(sent)),
                    done - sent,
                    answer.status,
                    answer.bytes,
                    done,
                );
            }
            Some(conn)
        }
        Err(f) => {
            if counted {
                let mut r = ctx.record();
                r.error(&ctx.live, f.category, || f.message);
                r.failed_at(Instant::now());
            }
            None
        }
    }
}

async fn closed_loop<C: Connection>(ctx: &ThreadCtx, mut conn: Option<C>) {
    let shared = &*ctx.shared;
    let t = ctx.timeline;
    loop {
        if shared.abort.fired() {
            return;
        }
        let now = Instant::now();
        let counted = now >= t.measure;
        match shared.stop {
            Stop::Duration(_) => {
                if t.deadline.is_some_and(|d| now >= d) {
                    return;
                }
            }
            Stop::Requests(n) => {
                if counted && shared.tickets.fetch_add(1, Ordering::Relaxed) >= n {
                    return;
                }
            }
        }
        conn = one_request(ctx, conn, None, counted, now).await;
    }
}

async fn open_loop<C: Connection>(ctx: &ThreadCtx, mut conn: Option<C>) {
    let shared = &*ctx.shared;
    let Level::Open { rate, .. } = shared.level else {
        return;
    };
    let tickets = ctx.tickets.as_ref().expect("open loop has tickets");
    let threads = shared.threads as u64;
    loop {
        match tickets.acquire().await {
            Ok(p) => p.forget(),
            Err(_) => return,
        }
        if shared.abort.fired() {
            return;
        }
        let j = ctx.next_ticket.fetch_add(1, Ordering::Relaxed);
        let k = j * threads + ctx.index as u64;
        if k >= shared.open_total {
            return;
        }
        let due = ctx.timeline.start + Duration::from_secs_f64(k as f64 / rate);
        let counted = k >= shared.open_warmup;
        conn = one_request(ctx, conn, Some(due), counted, Instant::now()).await;
    }
}
