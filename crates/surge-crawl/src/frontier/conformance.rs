//! The one conformance suite for the [`Frontier`] trait.
//!
//! Each check is a `pub async fn check(fresh: &impl Fresh<F>)` that makes
//! the frontiers it needs (empty, each its own crawl / directory / schema
//! / key prefix; with or without a page budget). A backend's test file
//! (`tests/frontier_<backend>.rs`) expands
//! `surge_crawl::frontier_conformance_tests!(fresh)` to one `#[tokio::test]`
//! per check, where `fresh` is an `async fn(Option<u64>) -> Option<F>`
//! (the argument is the page budget, `max_pages`) returning `None` after
//! printing `SKIP <backend>: …` when the backend is not configured.
//!
//! The checks assert exact facts (sets, counts, which call won). Where
//! time matters they use leases and delays of [`HELD`] (long enough to
//! still hold on a loaded machine between two calls) and wait for an
//! expected change with the generous bound [`WAIT`]; nothing depends on
//! how fast a backend is.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::{Frontier, FrontierEntry, Lease};
use crate::record::PageRecord;

/// How long a check waits for something that must happen (an expired
/// lease or a delayed entry becoming leasable) before it fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// A lease (or release delay) that certainly holds across a few calls and
/// still expires within a check.
pub const HELD: Duration = Duration::from_secs(2);

/// A lease that outlives any check.
pub const LONG: Duration = Duration::from_secs(300);

/// Makes an empty frontier with the given page budget (`None` after
/// printing why it skipped).
pub trait Fresh<F: Frontier> {
    /// A new, empty frontier whose crawl has `max_pages` as its budget.
    fn fresh(&self, max_pages: Option<u64>) -> impl Future<Output = Option<F>> + Send;
}

impl<F, Fut, Fun> Fresh<F> for Fun
where
    F: Frontier,
    Fun: Fn(Option<u64>) -> Fut + Sync,
    Fut: Future<Output = Option<F>> + Send,
{
    fn fresh(&self, max_pages: Option<u64>) -> impl Future<Output = Option<F>> + Send {
        self(max_pages)
    }
}

/// `http://conformance.test/{path}` at `depth`.
pub fn entry(path: &str, depth: u32) -> FrontierEntry {
    FrontierEntry {
        url: format!("http://conformance.test/{path}"),
        depth,
    }
}

/// A plausible record of a successful fetch of `lease`'s URL.
pub fn record(lease: &Lease) -> PageRecord {
    PageRecord {
        url: lease.entry.url.clone(),
        final_url: lease.entry.url.clone(),
        status: Some(200),
        depth: lease.entry.depth,
        title: Some(format!("page {}", lease.entry.url)),
        description: None,
        content_type: Some("text/html".into()),
        content_length: 100,
        links: 0,
        images: 0,
        fetched_at: Utc::now(),
        elapsed_ms: 1.0,
        error: None,
        outlinks: None,
    }
}

fn urls(leases: &[Lease]) -> BTreeSet<String> {
    leases.iter().map(|l| l.entry.url.clone()).collect()
}

/// Leases until something comes back (at most [`WAIT`]).
async fn lease_eventually<F: Frontier>(f: &F, n: usize, ttl: Duration) -> Vec<Lease> {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = f.lease(n, ttl).await.expect("lease");
        if !got.is_empty() {
            return got;
        }
        assert!(Instant::now() < deadline, "nothing became leasable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Offer dedups by URL, within a batch and across batches; seen counts
/// distinct URLs; what was offered comes back out once each, with its
/// depth.
pub async fn dedup<F: Frontier>(fresh: &impl Fresh<F>) {
    let Some(f) = fresh.fresh(None).await else {
        return;
    };
    let new = f
        .offer(vec![entry("a", 0), entry("b", 1), entry("a", 2)])
        .await
        .expect("offer");
    assert_eq!(new, 2, "a twice in one batch counts once");
    let new = f
        .offer(vec![entry("a", 0), entry("c", 3)])
        .await
        .expect("offer");
    assert_eq!(new, 1, "a was seen already");
    assert_eq!(f.offer(Vec::new()).await.expect("offer"), 0);
    let s = f.stats().await.expect("stats");
    assert_eq!((s.queued, s.leased, s.done, s.seen), (3, 0, 0, 3));
    let leases = f.lease(10, LONG).await.expect("lease");
    let got: BTreeSet<(String, u32)> = leases
        .iter()
        .map(|l| (l.entry.url.clone(), l.entry.depth))
        .collect();
    let want: BTreeSet<(String, u32)> = [entry("a", 0), entry("b", 1), entry("c", 3)]
        .into_iter()
        .map(|e| (e.url, e.depth))
        .collect();
    assert_eq!(got, want);
    // A URL completed (no longer in the frontier) is still seen.
    let a = leases
        .iter()
        .find(|l| l.entry.url.ends_with("/a"))
        .expect("a");
    assert!(
        f.complete(a, &record(a), Vec::new())
            .await
            .expect("complete")
    );
    assert_eq!(f.offer(vec![entry("a", 0)]).await.expect("offer"), 0);
}

/// Lower depths are leased first (breadth first).
pub async fn breadth_first<F: Frontier>(fresh: &impl Fresh<F>) {
    let Some(f) = fresh.fresh(None).await else {
        return;
    };
    f.offer(vec![entry("deep", 3), entry("mid", 1)])
        .await
        .expect("offer");
    f.offer(vec![entry("top", 0)]).await.expect("offer");
    let mut order = Vec::new();
    for _ in 0..3 {
        let l = f.lease(1, LONG).await.expect("lease");
        assert_eq!(l.len(), 1);
        order.push(l[0].entry.depth);
    }
    assert_eq!(order, [0, 1, 3]);
    assert!(f.lease(1, LONG).await.expect("lease").is_empty());
}

/// Concurrent leasers never get the same entry: together they get every
/// entry exactly once.
pub async fn lease_exclusive<F: Frontier>(fresh: &impl Fresh<F>) {
    let Some(f) = fresh.fresh(None).await else {
        return;
    };
    const N: usize = 300;
    let all: Vec<FrontierEntry> = (0..N).map(|i| entry(&format!("p{i}"), 1)).collect();
    assert_eq!(f.offer(all.clone()).await.expect("offer"), N as u64);
    let taken = Mutex::new(Vec::new());
    let leaser = || async {
        loop {
            let got = f.lease(7, LONG).await.expect("lease");
            if got.is_empty() {
                return;
            }
            taken
                .lock()
                .expect("lock")
                .extend(got.into_iter().map(|l| l.entry.url));
        }
    };
    futures_join((0..8).map(|_| leaser())).await;
    let taken = taken.into_inner().expect("lock");
    let distinct: HashSet<&String> = taken.iter().collect();
    assert_eq!(distinct.len(), taken.len(), "an entry was leased twice");
    assert_eq!(taken.len(), N, "entries lost");
    let s = f.stats().await.expect("stats");
    assert_eq!((s.queued, s.leased), (0, N as u64));
}

/// An expired lease makes the entry leasable again (a killed worker loses
/// nothing); a live one keeps it; an extended one outlives its first ttl.
pub async fn expiry_release<F: Frontier>(fresh: &impl Fresh<F>) {
    let Some(f) = fresh.fresh(None).await else {
        return;
    };
    f.offer(vec![entry("a", 0), entry("b", 0)])
        .await
        .expect("offer");
    let first = f.lease(2, HELD).await.expect("lease");
    assert_eq!(first.len(), 2);
    assert!(f.lease(2, HELD).await.expect("lease").is_empty(), "held");
    let b = first
        .iter()
        .find(|l| l.entry.url.ends_with("/b"))
        .expect("b");
    f.extend(std::slice::from_ref(b), LONG)
        .await
        .expect("extend");
    let again = lease_eventually(&f, 2, LONG).await;
    assert_eq!(
        urls(&again),
        BTreeSet::from([entry("a", 0).url]),
        "a expired, b was extended"
    );
    let a_first = first
        .iter()
        .find(|l| l.entry.url.ends_with("/a"))
        .expect("a");
    assert_ne!(again[0].token, a_first.token, "a new lease, a new token");
    let s = f.stats().await.expect("stats");
    assert_eq!((s.queued, s.leased), (0, 2));
}

/// A URL's record is stored once: the second complete (a stale lease whose
/// entry was leased again and completed, or the same lease twice) stores
/// nothing, offers nothing and returns `false`.
pub async fn complete_at_most_once<F: Frontier>(fresh: &impl Fresh<F>) {
    let Some(f) = fresh.fresh(None).await else {
        return;
    };
    f.offer(vec![entry("a", 0)]).await.expect("offer");
    let stale = f.lease(1, HELD).await.expect("lease");
    assert_eq!(stale.len(), 1);
    let fresh_lease = lease_eventually(&f, 1, LONG).await;
    assert_eq!(fresh_lease[0].entry.url, stale[0].entry.url);
    assert!(
        f.complete(
            &fresh_lease[0],
            &record(&fresh_lease[0]),
            vec![entry("x", 1)]
        )
        .await
        .expect("complete")
    );
    assert!(
        !f.complete(&stale[0], &record(&stale[0]), vec![entry("y", 1)])
            .await
            .expect("stale complete"),
        "the stale lease must not store a second record"
    );
    assert!(
        !f.complete(
            &fresh_lease[0],
            &record(&fresh_lease[0]),
            vec![entry("z", 1)]
        )
        .await
        .expect("repeated complete")
    );
    let s = f.stats().await.expect("stats");
    assert_eq!(s.done, 1);
    assert_eq!(s.seen, 2, "only the winning complete offers outlinks");
    let next = f.lease(10, LONG).await.expect("lease");
    assert_eq!(urls(&next), BTreeSet::from([entry("x", 1).url]));

    // The same URL completed by two racing holders: exactly one wins.
    let g = fresh.fresh(None).await.expect("second frontier");
    g.offer(vec![entry("r", 0)]).await.expect("offer");
    let one = g.lease(1, HELD).await.expect("lease");
    let two = lease_eventually(&g, 1, LONG).await;
    let (rec1, rec2) = (record(&one[0]), record(&two[0]));
    let (r1, r2) = tokio::join!(
        g.complete(&one[0], &rec1, Vec::new()),
        g.complete(&two[0], &rec2, Vec::new()),
    );
    let wins = [r1.expect("complete"), r2.expect("complete")];
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
    assert_eq!(g.stats().await.expect("stats").done, 1);
}

/// Complete offers the outlinks (deduplicated) in the same step that
/// removes the entry.
pub async fn complete_offers_outlinks<F: Frontier>(fresh: &impl Fresh<F>) {
    let Some(f) = fresh.fresh(None).await else {
        return;
    };
    f.offer(vec![entry("a", 0), entry("b", 0)])
        .await
        .expect("offer");
    let l = f.lease(1, LONG).await.expect("lease");
    let outlinks = vec![entry("b", 1), entry("c", 1), entry("d", 1), entry("c", 1)];
    assert!(
        f.complete(&l[0], &record(&l[0]), outlinks)
            .await
            .expect("complete")
    );
    let s = f.stats().await.expect("stats");
    assert_eq!((s.queued, s.leased, s.done, s.seen), (3, 0, 1, 4));
}

/// Release gives a lease back: leasable again after the delay (at once
/// with none); a release with a token that no longer holds the entry
/// changes nothing.
pub async fn release_with_delay<F: Frontier>(fresh: &impl Fresh<F>) {
    let Some(f) = fresh.fresh(None).await else {
        return;
    };
    f.offer(vec![entry("a", 0), entry("b", 0)])
        .await
        .expect("offer");
    let l = f.lease(2, LONG).await.expect("lease");
    let a = l.iter().find(|l| l.entry.url.ends_with("/a")).expect("a");
    let b = l.iter().find(|l| l.entry.url.ends_with("/b")).expect("b");
    f.release(a, Duration::ZERO).await.expect("release");
    f.release(b, HELD).await.expect("release");
    let now = f.lease(2, LONG).await.expect("lease");
    assert_eq!(
        urls(&now),
        BTreeSet::from([entry("a", 0).url]),
        "b waits out its delay"
    );
    let s = f.stats().await.expect("stats");
    assert_eq!((s.queued, s.leased), (1, 1), "a delayed entry is queued");
    let later = lease_eventually(&f, 2, LONG).await;
    assert_eq!(urls(&later), BTreeSet::from([entry("b", 0).url]));
    // `a`'s first lease is stale now: releasing it must not free `a`.
    f.release(a, Duration::ZERO).await.expect("stale release");
    assert!(f.lease(2, LONG).await.expect("lease").is_empty());
}

/// The page budget holds across concurrent workers: never more than
/// `max_pages − done − leased` handed out, never more than `max_pages`
/// records, and then the crawl is finished though entries remain.
pub async fn budget<F: Frontier>(fresh: &impl Fresh<F>) {
    let Some(f) = fresh.fresh(Some(3)).await else {
        return;
    };
    let all: Vec<FrontierEntry> = (0..10).map(|i| entry(&format!("p{i}"), 1)).collect();
    f.offer(all).await.expect("offer");
    let first = f.lease(10, LONG).await.expect("lease");
    assert_eq!(first.len(), 3, "the budget caps the lease");
    assert!(f.lease(10, LONG).await.expect("lease").is_empty());
    assert!(
        f.complete(&first[0], &record(&first[0]), Vec::new())
            .await
            .expect("complete")
    );
    assert!(
        f.lease(10, LONG).await.expect("lease").is_empty(),
        "1 done + 2 leased = 3"
    );
    f.release(&first[1], Duration::ZERO).await.expect("release");
    let refill = f.lease(10, LONG).await.expect("lease");
    assert_eq!(refill.len(), 1);
    assert!(!f.is_finished().await.expect("finished"));
    for l in [&first[2], &refill[0]] {
        assert!(
            f.complete(l, &record(l), Vec::new())
                .await
                .expect("complete")
        );
    }
    let s = f.stats().await.expect("stats");
    assert_eq!((s.done, s.leased), (3, 0));
    assert!(s.queued > 0);
    assert!(f.lease(10, LONG).await.expect("lease").is_empty());
    assert!(f.is_finished().await.expect("finished"), "budget reached");

    // Racing workers (expired leases included) store exactly the budget.
    let g = fresh.fresh(Some(5)).await.expect("second frontier");
    let all: Vec<FrontierEntry> = (0..40).map(|i| entry(&format!("q{i}"), 1)).collect();
    g.offer(all).await.expect("offer");
    let stale = g.lease(5, HELD).await.expect("lease");
    assert_eq!(stale.len(), 5);
    let stored = Mutex::new(0u64);
    let worker = || async {
        let deadline = Instant::now() + WAIT;
        while !g.is_finished().await.expect("finished") {
            assert!(Instant::now() < deadline, "budgeted crawl never finished");
            let got = g.lease(2, LONG).await.expect("lease");
            for l in &got {
                let links = vec![entry(&format!("{}-child", l.entry.url.len()), 2)];
                if g.complete(l, &record(l), links).await.expect("complete") {
                    *stored.lock().expect("lock") += 1;
                }
            }
            if got.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    futures_join((0..4).map(|_| worker())).await;
    // The stale leases (expired, their entries maybe done by others) store
    // nothing more.
    for l in &stale {
        if g.complete(l, &record(l), Vec::new())
            .await
            .expect("complete")
        {
            *stored.lock().expect("lock") += 1;
        }
    }
    assert_eq!(*stored.lock().expect("lock"), 5);
    assert_eq!(g.stats().await.expect("stats").done, 5);
}

/// Finished means nothing queued and nothing leased: never while a lease
/// may still add outlinks. Concurrent workers crawl a tree of URLs; each
/// quits only when the frontier says finished, and at that moment every
/// URL of the tree is done, exactly once.
pub async fn finished<F: Frontier>(fresh: &impl Fresh<F>) {
    let Some(f) = fresh.fresh(None).await else {
        return;
    };
    assert!(f.is_finished().await.expect("finished"), "empty");
    f.offer(vec![entry("a", 0)]).await.expect("offer");
    assert!(!f.is_finished().await.expect("finished"), "queued");
    let a = f.lease(1, LONG).await.expect("lease");
    assert!(!f.is_finished().await.expect("finished"), "leased");
    f.complete(&a[0], &record(&a[0]), vec![entry("b", 1)])
        .await
        .expect("complete");
    assert!(!f.is_finished().await.expect("finished"), "outlink queued");
    let b = f.lease(1, LONG).await.expect("lease");
    f.release(&b[0], HELD).await.expect("release");
    assert!(!f.is_finished().await.expect("finished"), "delayed");
    let b = lease_eventually(&f, 1, LONG).await;
    f.complete(&b[0], &record(&b[0]), Vec::new())
        .await
        .expect("complete");
    assert!(f.is_finished().await.expect("finished"), "all done");

    // The tree: node n links to 2n+1 and 2n+2, below N.
    const N: u64 = 250;
    let g = fresh.fresh(None).await.expect("second frontier");
    g.offer(vec![entry("n0", 0)]).await.expect("offer");
    let stored = Mutex::new(Vec::new());
    let worker = |slow: bool| {
        let (g, stored) = (&g, &stored);
        async move {
            let deadline = Instant::now() + WAIT * 4;
            loop {
                assert!(Instant::now() < deadline, "the tree crawl never finished");
                let got = g.lease(3, LONG).await.expect("lease");
                if got.is_empty() {
                    if g.is_finished().await.expect("finished") {
                        let done = g.stats().await.expect("stats").done;
                        assert_eq!(done, N, "a worker saw finished with pages left");
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                for l in got {
                    let n: u64 = l
                        .entry
                        .url
                        .rsplit('n')
                        .next()
                        .and_then(|s| s.parse().ok())
                        .expect("node number");
                    if slow {
                        // Holds a lease while the others find nothing ready.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    let links: Vec<FrontierEntry> = [2 * n + 1, 2 * n + 2]
                        .into_iter()
                        .filter(|c| *c < N)
                        .map(|c| entry(&format!("n{c}"), l.entry.depth + 1))
                        .collect();
                    if g.complete(&l, &record(&l), links).await.expect("complete") {
                        stored.lock().expect("lock").push(n);
                    }
                }
            }
        }
    };
    futures_join((0..6).map(|i| worker(i % 2 == 0))).await;
    let mut stored = stored.into_inner().expect("lock");
    stored.sort_unstable();
    assert_eq!(stored, (0..N).collect::<Vec<_>>(), "every node once");
}

/// Stats count queued (leasable now or later, expired leases included),
/// live leases, records and distinct URLs.
pub async fn stats<F: Frontier>(fresh: &impl Fresh<F>) {
    let Some(f) = fresh.fresh(None).await else {
        return;
    };
    let s = f.stats().await.expect("stats");
    assert_eq!((s.queued, s.leased, s.done, s.seen), (0, 0, 0, 0));
    let five: Vec<FrontierEntry> = (0..5).map(|i| entry(&format!("s{i}"), 0)).collect();
    f.offer(five).await.expect("offer");
    let short = f.lease(1, HELD).await.expect("lease");
    let long = f.lease(2, LONG).await.expect("lease");
    assert_eq!((short.len(), long.len()), (1, 2));
    f.complete(&long[0], &record(&long[0]), vec![entry("t", 1)])
        .await
        .expect("complete");
    let s = f.stats().await.expect("stats");
    assert_eq!((s.queued, s.leased, s.done, s.seen), (3, 2, 1, 6));
    // Once the short lease expires its entry counts as queued again.
    let deadline = Instant::now() + WAIT;
    loop {
        let s = f.stats().await.expect("stats");
        if s.leased == 1 {
            assert_eq!((s.queued, s.done, s.seen), (4, 1, 6));
            break;
        }
        assert!(Instant::now() < deadline, "the lease never expired: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A token the frontier never handed out is refused.
pub async fn unknown_lease<F: Frontier>(fresh: &impl Fresh<F>) {
    let Some(f) = fresh.fresh(None).await else {
        return;
    };
    f.offer(vec![entry("a", 0)]).await.expect("offer");
    let forged = Lease {
        entry: entry("a", 0),
        token: "not a token".into(),
    };
    assert!(
        f.complete(&forged, &record(&forged), Vec::new())
            .await
            .is_err()
    );
    assert!(f.release(&forged, Duration::ZERO).await.is_err());
    assert_eq!(f.stats().await.expect("stats").done, 0);
}

/// Runs the futures concurrently on the current task.
async fn futures_join<Fut: Future<Output = ()>>(futs: impl IntoIterator<Item = Fut>) {
    futures_util::future::join_all(futs).await;
}

/// Expands to one `#[tokio::test]` per check, given
/// `async fn fresh(max_pages: Option<u64>) -> Option<F>`.
#[macro_export]
macro_rules! frontier_conformance_tests {
    ($fresh:path) => {
        $crate::frontier_conformance_tests!(@cases $fresh;
            dedup, breadth_first, lease_exclusive, expiry_release, complete_at_most_once,
            complete_offers_outlinks, release_with_delay, budget, finished, stats,
            unknown_lease,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                $crate::frontier::conformance::$case(&$fresh).await;
            }
        )*
    };
}
