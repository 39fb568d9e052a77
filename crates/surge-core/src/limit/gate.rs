//! The gate under every limiter: a fair FIFO semaphore whose limit can move.
//!
//! One `AtomicU64` holds the limit (high 32 bits) and the in-flight count (low
//! 32 bits), so "take a slot if in-flight < limit" is one compare-and-swap and
//! a limit change is atomic with every acquisition decision: no acquisition
//! ever takes in-flight above the limit it saw. Waiters queue behind a mutex
//! that is taken only when someone has to wait, or when a release finds
//! waiters; the uncontended acquire/release path is lock-free.
//!
//! Ordering argument (why no wake-up is lost): a waiter registers under the
//! queue lock by incrementing `waiters` and then retrying the CAS; a release
//! decrements in-flight and then reads `waiters`. Both use `SeqCst`, so either
//! the release sees the waiter (and grants it under the lock) or the waiter's
//! retry sees the freed slot.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::task::AtomicWaker;

use super::adaptive::Controller;
use super::{LimiterSnapshot, Outcome};

const IN_FLIGHT_MASK: u64 = u32::MAX as u64;

fn pack(limit: u32, in_flight: u32) -> u64 {
    (u64::from(limit) << 32) | u64::from(in_flight)
}

fn unpack(state: u64) -> (u32, u32) {
    ((state >> 32) as u32, (state & IN_FLIGHT_MASK) as u32)
}

/// What a limiter does with the outcomes its tokens report.
pub(crate) enum Control {
    /// Count them (a static limiter).
    Fixed,
    /// Count them and feed them to a limit algorithm.
    Adaptive(Controller),
}

#[derive(Default)]
struct Counters {
    successes: AtomicU64,
    overloads: AtomicU64,
    ignored: AtomicU64,
    rejected: AtomicU64,
}

/// One queued `acquire`. The queue lock guards `cancelled` and the moment
/// `grant` becomes non-zero; the waiter reads `grant` without it.
struct Waiter {
    /// 0 while waiting; then `pack(limit, in_flight)` as of the grant
    /// (in-flight is at least 1, so a grant is never 0).
    grant: AtomicU64,
    cancelled: AtomicBool,
    waker: AtomicWaker,
}

#[derive(Default)]
struct WaitQueue {
    nodes: VecDeque<Arc<Waiter>>,
    /// Cancelled nodes still in `nodes` (removed lazily, compacted when they
    /// outnumber the live ones).
    cancelled: usize,
}

pub(crate) struct Gate {
    state: AtomicU64,
    /// Live waiters in `queue` (only changed under the queue lock; read
    /// without it by the fast paths).
    waiters: AtomicUsize,
    queue: Mutex<WaitQueue>,
    counters: Counters,
    pub(crate) control: Control,
}

/// A slot taken: what the limiter looked like right after.
#[derive(Clone, Copy)]
pub(crate) struct Taken {
    pub(crate) limit: u32,
    pub(crate) in_flight: u32,
}

/// One finished request, as the algorithm sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    pub(crate) acquired: Instant,
    pub(crate) finished: Instant,
    /// In-flight right after this request took its slot (itself included).
    pub(crate) in_flight: u32,
    /// The limit at that moment.
    pub(crate) limit: u32,
    pub(crate) outcome: Outcome,
}

impl Gate {
    pub(crate) fn new(limit: u32, control: Control) -> Arc<Gate> {
        Arc::new(Gate {
            state: AtomicU64::new(pack(limit, 0)),
            waiters: AtomicUsize::new(0),
            queue: Mutex::new(WaitQueue::default()),
            counters: Counters::default(),
            control,
        })
    }

    fn lock_queue(&self) -> MutexGuard<'_, WaitQueue> {
        // A panic while holding this lock leaves the queue consistent (every
        // mutation is a single push/pop/flag), so a poisoned lock is usable.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take a slot if in-flight is below the limit (ignores the queue).
    fn try_take(&self) -> Option<Taken> {
        let mut state = self.state.load(Ordering::SeqCst);
        loop {
            let (limit, in_flight) = unpack(state);
            if in_flight >= limit {
                return None;
            }
            match self.state.compare_exchange_weak(
                state,
                state + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => {
                    return Some(Taken {
                        limit,
                        in_flight: in_flight + 1,
                    });
                }
                Err(now) => state = now,
            }
        }
    }

    fn token(self: &Arc<Self>, taken: Taken) -> Token {
        let acquired = match self.control {
            Control::Fixed => None,
            Control::Adaptive(_) => Some(Instant::now()),
        };
        Token {
            gate: Arc::clone(self),
            acquired,
            taken,
            outcome: Outcome::Ignore,
        }
    }

    /// A slot now, unless the limit is reached or others are already waiting.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Token> {
        let taken = if self.waiters.load(Ordering::SeqCst) == 0 {
            self.try_take()
        } else {
            None
        };
        match taken {
            Some(taken) => Some(self.token(taken)),
            None => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    pub(crate) fn acquire(self: &Arc<Self>) -> AcquireFuture {
        AcquireFuture {
            gate: Arc::clone(self),
            state: AcquireState::Start,
        }
    }

    pub(crate) fn limit(&self) -> u32 {
        unpack(self.state.load(Ordering::SeqCst)).0
    }

    /// Move the limit. Raising it hands the new slots to waiters, in order;
    /// lowering it lets in-flight drain down to it (nothing is revoked).
    pub(crate) fn set_limit(&self, limit: u32) {
        let limit = limit.max(1);
        let mut state = self.state.load(Ordering::SeqCst);
        let old = loop {
            let (old, in_flight) = unpack(state);
            if old == limit {
                return;
            }
            match self.state.compare_exchange_weak(
                state,
                pack(limit, in_flight),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break old,
                Err(now) => state = now,
            }
        };
        if limit > old && self.waiters.load(Ordering::SeqCst) != 0 {
            self.grant_waiters();
        }
    }

    /// Give free slots to the waiters at the head of the queue.
    fn grant_waiters(&self) {
        let mut queue = self.lock_queue();
        while let Some(front) = queue.nodes.front() {
            if front.cancelled.load(Ordering::Relaxed) {
                queue.nodes.pop_front();
                queue.cancelled -= 1;
                continue;
            }
            let Some(taken) = self.try_take() else { break };
            let node = queue.nodes.pop_front().expect("front exists");
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            node.grant
                .store(pack(taken.limit, taken.in_flight), Ordering::Release);
            node.waker.wake();
        }
    }

    /// Return one slot and hand it on if someone waits.
    fn release_slot(&self) {
        self.state.fetch_sub(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) != 0 {
            self.grant_waiters();
        }
    }

    fn finish(&self, token: &Token) {
        let counter = match token.outcome {
            Outcome::Success => &self.counters.successes,
            Outcome::Overload => &self.counters.overloads,
            Outcome::Ignore => &self.counters.ignored,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        // The sample goes first: if it lowers the limit, the slot freed below
        // is not handed out above the new limit.
        if let (Control::Adaptive(controller), Some(acquired)) = (&self.control, token.acquired)
            && token.outcome != Outcome::Ignore
        {
            let sample = Sample {
                acquired,
                finished: Instant::now(),
                in_flight: token.taken.in_flight,
                limit: token.taken.limit,
                outcome: token.outcome,
            };
            controller.on_sample(sample, self);
        }
        self.release_slot();
    }

    pub(crate) fn snapshot(&self, algorithm: &'static str) -> LimiterSnapshot {
        let (limit, in_flight) = unpack(self.state.load(Ordering::SeqCst));
        let (latency_floor_ms, latency_recent_ms) = match &self.control {
            Control::Fixed => (None, None),
            Control::Adaptive(controller) => controller.latencies_ms(),
        };
        LimiterSnapshot {
            algorithm,
            limit: limit as usize,
            in_flight: in_flight as usize,
            waiting: self.waiters.load(Ordering::SeqCst),
            latency_floor_ms,
            latency_recent_ms,
            successes: self.counters.successes.load(Ordering::Relaxed),
            overloads: self.counters.overloads.load(Ordering::Relaxed),
            ignored: self.counters.ignored.load(Ordering::Relaxed),
            rejected: self.counters.rejected.load(Ordering::Relaxed),
        }
    }
}

/// One in-flight slot of a [`Limiter`](super::Limiter).
///
/// Report how the work went with [`success`](Token::success),
/// [`overload`](Token::overload) or [`ignore`](Token::ignore); dropping the
/// token without a report is [`ignore`](Token::ignore) (a cancelled request
/// teaches the limiter nothing). Either way the slot is released exactly once.
/// An adaptive limiter measures latency from the moment the token was handed
/// out (queueing inside the limiter is not counted) to the report.
#[must_use = "a token holds a slot until it is dropped"]
pub struct Token {
    gate: Arc<Gate>,
    acquired: Option<Instant>,
    taken: Taken,
    outcome: Outcome,
}

impl Token {
    /// The work succeeded: a latency sample.
    pub fn success(self) {
        self.record(Outcome::Success);
    }

    /// The other side said "too much" (429, 503, a timeout): an adaptive
    /// limiter cuts its limit (at most once per round trip).
    pub fn overload(self) {
        self.record(Outcome::Overload);
    }

    /// No sample (a caller-side error, a cancellation): only releases the slot.
    pub fn ignore(self) {
        self.record(Outcome::Ignore);
    }

    /// Report `outcome` and release the slot.
    pub fn record(mut self, outcome: Outcome) {
        self.outcome = outcome;
    }

    /// In-flight right after this token was handed out, itself included.
    pub fn in_flight_at_acquire(&self) -> usize {
        self.taken.in_flight as usize
    }

    /// The limit when this token was handed out.
    pub fn limit_at_acquire(&self) -> usize {
        self.taken.limit as usize
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        self.gate.finish(self);
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("in_flight_at_acquire", &self.taken.in_flight)
            .field("limit_at_acquire", &self.taken.limit)
            .finish_non_exhaustive()
    }
}

enum AcquireState {
    Start,
    Waiting(Arc<Waiter>),
    Done,
}

/// The future of [`Limiter::acquire`](super::Limiter::acquire): resolves to a
/// [`Token`] once a slot is free and every earlier waiter has been served.
///
/// Cancel-safe: dropping it before it resolves gives up its place in the
/// queue, and a slot granted to it in the meantime passes to the next waiter.
/// It owns what it needs (`'static`), so a tower service can keep one between
/// `poll_ready` calls.
#[must_use = "futures do nothing unless polled"]
pub struct AcquireFuture {
    gate: Arc<Gate>,
    state: AcquireState,
}

impl AcquireFuture {
    fn register(&mut self, cx: &mut Context<'_>) -> Poll<Token> {
        let gate = &self.gate;
        let mut queue = gate.lock_queue();
        let ahead = gate.waiters.fetch_add(1, Ordering::SeqCst);
        if ahead == 0
            && let Some(taken) = gate.try_take()
        {
            gate.waiters.fetch_sub(1, Ordering::SeqCst);
            drop(queue);
            self.state = AcquireState::Done;
            return Poll::Ready(gate.token(taken));
        }
        let node = Arc::new(Waiter {
            grant: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        node.waker.register(cx.waker());
        queue.nodes.push_back(Arc::clone(&node));
        drop(queue);
        self.state = AcquireState::Waiting(node);
        Poll::Pending
    }
}

impl Future for AcquireFuture {
    type Output = Token;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Token> {
        let this = &mut *self;
        match &this.state {
            AcquireState::Start => {
                if this.gate.waiters.load(Ordering::SeqCst) == 0
                    && let Some(taken) = this.gate.try_take()
                {
                    this.state = AcquireState::Done;
                    return Poll::Ready(this.gate.token(taken));
                }
                this.register(cx)
            }
            AcquireState::Waiting(node) => {
                let mut grant = node.grant.load(Ordering::Acquire);
                if grant == 0 {
                    node.waker.register(cx.waker());
                    grant = node.grant.load(Ordering::Acquire);
                    if grant == 0 {
                        return Poll::Pending;
                    }
                }
                let (limit, in_flight) = unpack(grant);
                this.state = AcquireState::Done;
                Poll::Ready(this.gate.token(Taken { limit, in_flight }))
            }
            AcquireState::Done => panic!("AcquireFuture polled after it resolved"),
        }
    }
}

impl Drop for AcquireFuture {
    fn drop(&mut self) {
        let AcquireState::Waiting(node) = &self.state else {
            return;
        };
        let gate = &self.gate;
        let mut queue = gate.lock_queue();
        if node.grant.load(Ordering::Acquire) == 0 {
            node.cancelled.store(true, Ordering::Relaxed);
            gate.waiters.fetch_sub(1, Ordering::SeqCst);
            queue.cancelled += 1;
            if queue.cancelled > 16 && queue.cancelled * 2 > queue.nodes.len() {
                queue.nodes.retain(|n| !n.cancelled.load(Ordering::Relaxed));
                queue.cancelled = 0;
            }
            return;
        }
        // Granted after our last poll: the slot is ours, pass it on.
        drop(queue);
        gate.release_slot();
    }
}

impl std::fmt::Debug for AcquireFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            AcquireState::Start => "start",
            AcquireState::Waiting(_) => "waiting",
            AcquireState::Done => "done",
        };
        f.debug_struct("AcquireFuture")
            .field("state", &state)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::conformance::Occupancy;

    #[tokio::test(flavor = "current_thread")]
    async fn raising_the_limit_wakes_waiters_in_order() {
        let gate = Gate::new(1, Control::Fixed);
        let held = gate.acquire().await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (gate2, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let token = gate2.acquire().await;
                order.lock().unwrap().push(i);
                token
            }));
            while gate.waiters.load(Ordering::SeqCst) != i + 1 {
                tokio::task::yield_now().await;
            }
        }
        gate.set_limit(3); // two new slots: the first two waiters
        let first = tasks.remove(0).await.unwrap();
        let second = tasks.remove(0).await.unwrap();
        assert_eq!(*order.lock().unwrap(), [0, 1]);
        assert_eq!(gate.waiters.load(Ordering::SeqCst), 1);
        gate.set_limit(4);
        let third = tasks.remove(0).await.unwrap();
        assert_eq!(*order.lock().unwrap(), [0, 1, 2]);
        assert_eq!(third.in_flight_at_acquire(), 4);
        drop((held, first, second, third));
        assert_eq!(unpack(gate.state.load(Ordering::SeqCst)), (4, 0));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn lowering_the_limit_drains_without_revoking() {
        let gate = Gate::new(4, Control::Fixed);
        let tokens: Vec<_> = (0..4).filter_map(|_| gate.try_acquire()).collect();
        gate.set_limit(2);
        assert!(gate.try_acquire().is_none());
        let mut tokens = tokens.into_iter();
        drop(tokens.next());
        drop(tokens.next());
        assert!(gate.try_acquire().is_none(), "still at the new limit of 2");
        drop(tokens.next());
        let again = gate.try_acquire().expect("below 2 now");
        assert_eq!(
            (again.in_flight_at_acquire(), again.limit_at_acquire()),
            (2, 2)
        );
    }

    /// While the limit moves between 1 and 8, no token is ever handed out
    /// above the limit in force at that moment, and nothing is lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_moving_limit_is_never_exceeded() {
        let gate = Gate::new(4, Control::Fixed);
        let occupancy = Arc::new(Occupancy::default());
        let workers: Vec<_> = (0..32)
            .map(|_| {
                let (gate, occupancy) = (gate.clone(), occupancy.clone());
                tokio::spawn(async move {
                    for _ in 0..300 {
                        let token = gate.acquire().await;
                        assert!(token.taken.in_flight <= token.taken.limit);
                        occupancy.hold(token).await;
                    }
                })
            })
            .collect();
        let mover = {
            let gate = gate.clone();
            tokio::spawn(async move {
                for i in 0..2_000u32 {
                    gate.set_limit(1 + (i * 7) % 8);
                    tokio::task::yield_now().await;
                }
                gate.set_limit(8);
            })
        };
        mover.await.unwrap();
        for worker in workers {
            worker.await.unwrap();
        }
        assert!(occupancy.peak() <= 8);
        assert_eq!(unpack(gate.state.load(Ordering::SeqCst)), (8, 0));
        assert_eq!(gate.waiters.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn cancelled_waiters_are_compacted() {
        let gate = Gate::new(1, Control::Fixed);
        let _held = gate.acquire().await;
        let cx = &mut Context::from_waker(futures_util::task::noop_waker_ref());
        for _ in 0..1_000 {
            let mut waiting = gate.acquire();
            assert!(Pin::new(&mut waiting).poll(cx).is_pending());
        }
        let queued = gate.lock_queue().nodes.len();
        assert!(queued <= 40, "{queued} cancelled waiters kept");
        assert_eq!(gate.waiters.load(Ordering::SeqCst), 0);
    }
}
