//! The suite every [`Limiter`] passes.
//!
//! Each check takes a factory `make(limit)` that returns a fresh limiter
//! letting `limit` tokens out, and panics with the check's name on a
//! violation. The checks report only [`Outcome::Ignore`](super::Outcome)
//! (they drop their tokens), so an adaptive limiter keeps the limit it was
//! made with. Run them on a multi-threaded tokio runtime so the concurrency
//! is real:
//!
//! ```
//! use std::sync::Arc;
//! use surge_core::limit::{conformance, Limiter, StaticLimiter};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)] async fn main() {
//! conformance::run_all(|limit| Arc::new(StaticLimiter::new(limit)) as Arc<dyn Limiter>).await;
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use super::{Limiter, LimiterSnapshot};

/// Runs every check of the suite, in turn.
pub async fn run_all<F>(make: F)
where
    F: Fn(usize) -> Arc<dyn Limiter>,
{
    limit_holds_under_heavy_concurrency(&make).await;
    waiters_are_served_in_order(&make).await;
    cancelled_waiters_lose_no_slot(&make).await;
    dropping_a_token_releases_its_slot(&make).await;
    snapshots_are_consistent(&make).await;
    try_acquire_respects_the_limit(&make).await;
}

/// Tokens out at once, as counted by their holders.
#[derive(Default)]
pub(crate) struct Occupancy {
    live: AtomicUsize,
    peak: AtomicUsize,
}

impl Occupancy {
    /// Counts `token` as out, lets other tasks run, then releases it.
    pub(crate) async fn hold(&self, token: super::Token) {
        let now = self.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::task::yield_now().await;
        self.live.fetch_sub(1, Ordering::SeqCst);
        drop(token);
    }

    /// The most tokens out at once so far.
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// Polls `fut` once, with the task's real waker.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

/// Waits (yielding, bounded) until the limiter shows `waiting` waiters.
async fn until_waiting(limiter: &dyn Limiter, waiting: usize, check: &str) {
    for _ in 0..100_000 {
        if limiter.snapshot().waiting == waiting {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!(
        "{check}: never saw {waiting} waiters (snapshot {:?})",
        limiter.snapshot()
    );
}

fn assert_idle(snap: &LimiterSnapshot, limit: usize, check: &str) {
    assert_eq!(
        (snap.in_flight, snap.waiting, snap.limit),
        (0, 0, limit),
        "{check}: not idle at the end: {snap:?}"
    );
}

/// 64 tasks × 200 acquisitions (some by `try_acquire`, some abandoned by a
/// timeout mid-wait) through a limit of 8: in-flight, counted by the tasks
/// themselves, never exceeds 8 and does reach it; every slot is free at the
/// end.
pub async fn limit_holds_under_heavy_concurrency<F>(make: &F)
where
    F: Fn(usize) -> Arc<dyn Limiter>,
{
    const CHECK: &str = "limit_holds_under_heavy_concurrency";
    const LIMIT: usize = 8;
    let limiter = make(LIMIT);
    let occupancy = Arc::new(Occupancy::default());
    let tasks: Vec<_> = (0..64)
        .map(|task| {
            let (limiter, occupancy) = (limiter.clone(), occupancy.clone());
            tokio::spawn(async move {
                for round in 0..200usize {
                    let token = match (task + round) % 8 {
                        0 => match limiter.try_acquire() {
                            Some(token) => token,
                            None => continue,
                        },
                        1 => {
                            let wait = Duration::from_micros(20);
                            match tokio::time::timeout(wait, limiter.acquire()).await {
                                Ok(token) => token,
                                Err(_) => continue,
                            }
                        }
                        _ => limiter.acquire().await,
                    };
                    occupancy.hold(token).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a task of the check panicked");
    }
    let peak = occupancy.peak();
    assert!(
        peak <= LIMIT,
        "{CHECK}: {peak} tokens out at once, limit {LIMIT}"
    );
    assert_eq!(peak, LIMIT, "{CHECK}: the run never filled the limit");
    assert_idle(&limiter.snapshot(), LIMIT, CHECK);
    let all: Vec<_> = (0..LIMIT).filter_map(|_| limiter.try_acquire()).collect();
    assert_eq!(all.len(), LIMIT, "{CHECK}: slots lost");
}

/// With the only slot held, 16 waiters queue one after another; each gets
/// the slot in the order it arrived.
pub async fn waiters_are_served_in_order<F>(make: &F)
where
    F: Fn(usize) -> Arc<dyn Limiter>,
{
    const CHECK: &str = "waiters_are_served_in_order";
    let limiter = make(1);
    let held = limiter.acquire().await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (limiter2, order) = (limiter.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let token = limiter2.acquire().await;
            order.lock().unwrap().push(i);
            drop(token);
        }));
        until_waiting(&*limiter, i + 1, CHECK).await;
    }
    drop(held);
    for task in tasks {
        task.await.expect("a waiter panicked");
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(
        order,
        (0..16).collect::<Vec<_>>(),
        "{CHECK}: served out of order"
    );
    assert_idle(&limiter.snapshot(), 1, CHECK);
}

/// Dropping a waiting `acquire` gives up its place; dropping one that was
/// granted a slot but not yet polled passes the slot on; a crowd of waits
/// abandoned by timeouts leaves every slot free.
pub async fn cancelled_waiters_lose_no_slot<F>(make: &F)
where
    F: Fn(usize) -> Arc<dyn Limiter>,
{
    const CHECK: &str = "cancelled_waiters_lose_no_slot";
    let limiter = make(1);

    // Cancelled while waiting.
    let held = limiter.acquire().await;
    let mut a = limiter.acquire();
    let mut b = limiter.acquire();
    assert!(
        poll_once(&mut a).await.is_pending(),
        "{CHECK}: a got a held slot"
    );
    assert!(
        poll_once(&mut b).await.is_pending(),
        "{CHECK}: b got a held slot"
    );
    assert_eq!(limiter.snapshot().waiting, 2, "{CHECK}");
    drop(a);
    assert_eq!(limiter.snapshot().waiting, 1, "{CHECK}: a still counted");
    drop(held);
    let Poll::Ready(token) = poll_once(&mut b).await else {
        panic!("{CHECK}: b not served after a gave up and the slot was freed");
    };
    drop(token);
    drop(b);
    assert_idle(&limiter.snapshot(), 1, CHECK);

    // Granted, then dropped before it was polled again.
    let held = limiter.acquire().await;
    let mut a = limiter.acquire();
    let mut b = limiter.acquire();
    assert!(poll_once(&mut a).await.is_pending(), "{CHECK}");
    assert!(poll_once(&mut b).await.is_pending(), "{CHECK}");
    drop(held); // the slot goes to a, which never looks
    drop(a); // so it must go on to b
    let Poll::Ready(token) = poll_once(&mut b).await else {
        panic!("{CHECK}: the slot granted to a dropped waiter was lost");
    };
    drop(token);
    drop(b);
    assert_idle(&limiter.snapshot(), 1, CHECK);

    // Many waits abandoned at once.
    let limiter = make(2);
    let held: Vec<_> = vec![limiter.acquire().await, limiter.acquire().await];
    let gave_up = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (limiter, gave_up) = (limiter.clone(), gave_up.clone());
            tokio::spawn(async move {
                let wait = tokio::time::timeout(Duration::from_millis(5), limiter.acquire());
                if wait.await.is_err() {
                    gave_up.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a waiter panicked");
    }
    assert_eq!(
        gave_up.load(Ordering::SeqCst),
        100,
        "{CHECK}: a held slot was handed out"
    );
    drop(held);
    assert_idle(&limiter.snapshot(), 2, CHECK);
    let all: Vec<_> = (0..2).filter_map(|_| limiter.try_acquire()).collect();
    assert_eq!(all.len(), 2, "{CHECK}: abandoned waits lost a slot");
}

/// Every way of ending a token (drop, `ignore`, `success`, `overload`,
/// `record`) frees its slot exactly once, and a waiter is woken by it.
pub async fn dropping_a_token_releases_its_slot<F>(make: &F)
where
    F: Fn(usize) -> Arc<dyn Limiter>,
{
    const CHECK: &str = "dropping_a_token_releases_its_slot";
    let limiter = make(4);
    for end in 0..5 {
        let tokens: Vec<_> = (0..4).filter_map(|_| limiter.try_acquire()).collect();
        assert_eq!(
            tokens.len(),
            4,
            "{CHECK}: round {end} could not fill the limit"
        );
        assert!(limiter.try_acquire().is_none(), "{CHECK}: a fifth token");
        for token in tokens {
            match end {
                0 => drop(token),
                1 => token.ignore(),
                2 => token.record(super::Outcome::Ignore),
                // Outcomes that feed an adaptive limiter: any limit change is
                // checked against the snapshot, not assumed.
                3 => token.success(),
                _ => token.overload(),
            }
        }
        let snap = limiter.snapshot();
        assert_eq!(
            snap.in_flight, 0,
            "{CHECK}: round {end} kept slots: {snap:?}"
        );
    }

    // A release wakes a waiter that is parked in another task.
    let limiter = make(1);
    let held = limiter.acquire().await;
    let woke = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (limiter, woke) = (limiter.clone(), woke.clone());
        tokio::spawn(async move {
            let _token = limiter.acquire().await;
            woke.store(true, Ordering::SeqCst);
        })
    };
    until_waiting(&*limiter, 1, CHECK).await;
    drop(held);
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap_or_else(|_| panic!("{CHECK}: the waiter was never woken"))
        .expect("waiter panicked");
    assert!(woke.load(Ordering::SeqCst), "{CHECK}");
    assert_idle(&limiter.snapshot(), 1, CHECK);
}

/// A snapshot says what is true: in-flight and waiting match the tokens out
/// and the callers queued; counters count; under churn, every snapshot has
/// `in_flight <= limit` and counters never go back.
pub async fn snapshots_are_consistent<F>(make: &F)
where
    F: Fn(usize) -> Arc<dyn Limiter>,
{
    const CHECK: &str = "snapshots_are_consistent";
    let limiter = make(3);
    let start = limiter.snapshot();
    assert_idle(&start, 3, CHECK);
    let held: Vec<_> = (0..3).filter_map(|_| limiter.try_acquire()).collect();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move { drop(limiter.acquire().await) })
        })
        .collect();
    until_waiting(&*limiter, 2, CHECK).await;
    assert!(limiter.try_acquire().is_none(), "{CHECK}");
    let snap = limiter.snapshot();
    assert_eq!(
        (snap.limit, snap.in_flight, snap.waiting),
        (3, 3, 2),
        "{CHECK}: {snap:?}"
    );
    assert_eq!(
        snap.rejected,
        start.rejected + 1,
        "{CHECK}: rejected not counted"
    );
    drop(held);
    for waiter in waiters {
        waiter.await.expect("waiter panicked");
    }
    let snap = limiter.snapshot();
    assert_eq!(
        snap.ignored,
        start.ignored + 5,
        "{CHECK}: ignored not counted: {snap:?}"
    );
    assert_idle(&snap, 3, CHECK);

    // Under churn.
    let limiter = make(4);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (limiter, stop) = (limiter.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let token = limiter.acquire().await;
                    tokio::task::yield_now().await;
                    drop(token);
                }
            })
        })
        .collect();
    let mut last = limiter.snapshot();
    for _ in 0..2_000 {
        let snap = limiter.snapshot();
        assert!(snap.in_flight <= snap.limit, "{CHECK}: {snap:?}");
        assert!(snap.waiting <= 16, "{CHECK}: {snap:?}");
        assert!(
            snap.ignored >= last.ignored && snap.rejected >= last.rejected,
            "{CHECK}: counters went back: {last:?} then {snap:?}"
        );
        last = snap;
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker panicked");
    }
    assert_idle(&limiter.snapshot(), 4, CHECK);
}

/// `try_acquire` gives out exactly `limit` tokens, counts each refusal, and
/// does not jump the queue: a slot freed while someone waits goes to the
/// waiter.
pub async fn try_acquire_respects_the_limit<F>(make: &F)
where
    F: Fn(usize) -> Arc<dyn Limiter>,
{
    const CHECK: &str = "try_acquire_respects_the_limit";
    let limiter = make(5);
    let mut tokens: Vec<_> = (0..5).filter_map(|_| limiter.try_acquire()).collect();
    assert_eq!(tokens.len(), 5, "{CHECK}: could not take the limit");
    let before = limiter.snapshot().rejected;
    for _ in 0..3 {
        assert!(
            limiter.try_acquire().is_none(),
            "{CHECK}: a token past the limit"
        );
    }
    assert_eq!(
        limiter.snapshot().rejected,
        before + 3,
        "{CHECK}: refusals not counted"
    );

    let mut waiter = limiter.acquire();
    assert!(poll_once(&mut waiter).await.is_pending(), "{CHECK}");
    drop(tokens.pop());
    assert!(
        limiter.try_acquire().is_none(),
        "{CHECK}: try_acquire took the slot a waiter was queued for"
    );
    let Poll::Ready(token) = poll_once(&mut waiter).await else {
        panic!("{CHECK}: the waiter did not get the freed slot");
    };
    drop((token, tokens));
    assert_idle(&limiter.snapshot(), 5, CHECK);
}
