//! A bounded async cache with statistics and single-flight computation, on
//! [moka](https://docs.rs/moka)'s `future::Cache`.
//!
//! - Bounded by entries or by weight (bytes, with a weigher); entries expire
//!   after a TTL.
//! - [`Cache::get_or_compute`]: concurrent misses of one key run the
//!   computation once and share its result; an error is handed to every
//!   caller that waited for it and is not cached.
//! - [`Cache::snapshot`]: hits, misses, hit ratio, entries, weight, capacity,
//!   computes, and calls that waited on another's computation.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use surge_core::cache::Cache;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let cache: Cache<String, u64> = Cache::builder("lengths")
//!     .max_entries(10_000)
//!     .ttl(Duration::from_secs(60))
//!     .build();
//! let key = "surge".to_string();
//! let n = cache
//!     .get_or_compute(key.clone(), async { Ok::<_, std::io::Error>(5) })
//!     .await
//!     .unwrap();
//! assert_eq!(n, 5);
//! assert_eq!(cache.get(&key).await, Some(5));
//! let stats = cache.snapshot();
//! assert_eq!((stats.misses, stats.hits, stats.computes), (1, 1, 1));
//! assert_eq!(stats.hit_ratio, 0.5);
//! # }
//! ```

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// What a cache's `capacity` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// The number of entries.
    Entries,
    /// The sum of the weigher's values (usually bytes).
    Weight,
}

/// A cache's statistics at one moment (serialisable for `/stats`).
///
/// `entries` and `weight` are moka's running counts, which lag inserts and
/// evictions by a little until its housekeeping runs
/// ([`Cache::run_pending_tasks`] forces it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheSnapshot {
    /// The name given to the builder.
    pub name: String,
    /// Lookups that found a value.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
    /// `hits / (hits + misses)`; 0 before the first lookup.
    pub hit_ratio: f64,
    /// Entries stored.
    pub entries: u64,
    /// Total weight stored (equals `entries` for an entry-bounded cache).
    pub weight: u64,
    /// The most entries, or the most weight, the cache keeps.
    pub capacity: u64,
    /// What `capacity` counts.
    pub bound: Bound,
    /// Computations run by [`Cache::get_or_compute`].
    pub computes: u64,
    /// `get_or_compute` misses that waited for another caller's computation
    /// instead of running their own.
    pub coalesced: u64,
}

/// Anything that reports [`CacheSnapshot`]s (what the
/// [`Observatory`](crate::observe::Observatory) lists).
pub trait CacheStats: Send + Sync {
    /// The statistics now.
    fn cache_snapshot(&self) -> CacheSnapshot;
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    computes: AtomicU64,
    coalesced: AtomicU64,
}

struct Shared<K, V> {
    name: String,
    store: moka::future::Cache<K, V>,
    capacity: u64,
    bound: Bound,
    counters: Counters,
}

/// A bounded async cache with statistics; cheap to clone (clones share
/// the entries and the counters).
pub struct Cache<K, V> {
    shared: Arc<Shared<K, V>>,
}

impl<K, V> Clone for Cache<K, V> {
    fn clone(&self) -> Self {
        Cache {
            shared: Arc::clone(&self.shared),
        }
    }
}

type Weigher<K, V> = Box<dyn Fn(&K, &V) -> u32 + Send + Sync + 'static>;

/// Settings of a [`Cache`]: made by [`Cache::builder`].
pub struct CacheBuilder<K, V> {
    name: String,
    capacity: u64,
    weigher: Option<Weigher<K, V>>,
    ttl: Option<Duration>,
}

impl<K, V> CacheBuilder<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Keep at most `entries` entries (the default is 10,000).
    pub fn max_entries(mut self, entries: u64) -> Self {
        self.capacity = entries;
        self.weigher = None;
        self
    }

    /// Keep at most `weight` in total, each entry weighing what `weigher`
    /// says (for example its size in bytes; an entry may weigh up to
    /// `u32::MAX`).
    pub fn max_weight(
        mut self,
        weight: u64,
        weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static,
    ) -> Self {
        self.capacity = weight;
        self.weigher = Some(Box::new(weigher));
        self
    }

    /// Entries expire this long after they were inserted (none by default).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The cache.
    pub fn build(self) -> Cache<K, V> {
        let mut store = moka::future::Cache::builder()
            .name(&self.name)
            .max_capacity(self.capacity);
        let bound = match self.weigher {
            Some(weigher) => {
                store = store.weigher(weigher);
                Bound::Weight
            }
            None => Bound::Entries,
        };
        if let Some(ttl) = self.ttl {
            store = store.time_to_live(ttl);
        }
        Cache {
            shared: Arc::new(Shared {
                name: self.name,
                store: store.build(),
                capacity: self.capacity,
                bound,
                counters: Counters::default(),
            }),
        }
    }
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Settings for a cache called `name` (the name shows in its snapshot).
    pub fn builder(name: impl Into<String>) -> CacheBuilder<K, V> {
        CacheBuilder {
            name: name.into(),
            capacity: 10_000,
            weigher: None,
            ttl: None,
        }
    }

    /// The value stored for `key`, if any (a hit or a miss in the stats).
    pub async fn get(&self, key: &K) -> Option<V> {
        let value = self.shared.store.get(key).await;
        let counter = match value {
            Some(_) => &self.shared.counters.hits,
            None => &self.shared.counters.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        value
    }

    /// Stores `value` for `key`, replacing any value there.
    pub async fn insert(&self, key: K, value: V) {
        self.shared.store.insert(key, value).await;
    }

    /// Removes `key`'s value.
    pub async fn invalidate(&self, key: &K) {
        self.shared.store.invalidate(key).await;
    }

    /// Removes every value.
    pub fn invalidate_all(&self) {
        self.shared.store.invalidate_all();
    }

    /// The value for `key`, computed by `compute` on a miss and stored if
    /// it succeeds.
    ///
    /// Single flight: while one caller computes a key, other callers that
    /// miss on it wait for that result instead of computing their own (their
    /// `compute` is dropped unpolled). If the computing caller is cancelled,
    /// a waiting one takes over with its own `compute`.
    ///
    /// # Errors
    ///
    /// The computation's error, shared by every caller that waited for it,
    /// as `Arc<E>`. Errors are not cached: the next call computes again.
    pub async fn get_or_compute<E, F>(&self, key: K, compute: F) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<V, E>>,
    {
        let counters = &self.shared.counters;
        if let Some(value) = self.shared.store.get(&key).await {
            counters.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(value);
        }
        counters.misses.fetch_add(1, Ordering::Relaxed);
        let ran = AtomicBool::new(false);
        let compute = async {
            ran.store(true, Ordering::Relaxed);
            counters.computes.fetch_add(1, Ordering::Relaxed);
            compute.await
        };
        let result = self.shared.store.try_get_with(key, compute).await;
        if !ran.load(Ordering::Relaxed) {
            counters.coalesced.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Runs moka's pending housekeeping (evictions, expirations, counts), so
    /// that the next snapshot's `entries` and `weight` are exact.
    pub async fn run_pending_tasks(&self) {
        self.shared.store.run_pending_tasks().await;
    }

    /// The statistics now.
    pub fn snapshot(&self) -> CacheSnapshot {
        self.shared.cache_snapshot()
    }

    /// The name given to the builder.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Lists this cache in `observatory` under its name, for as long as any
    /// clone of it lives (the observatory keeps a weak reference).
    pub fn register(&self, observatory: &crate::observe::Observatory) {
        observatory.register_cache(self.shared.name.clone(), &self.shared);
    }
}

impl<K, V> CacheStats for Shared<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn cache_snapshot(&self) -> CacheSnapshot {
        let hits = self.counters.hits.load(Ordering::Relaxed);
        let misses = self.counters.misses.load(Ordering::Relaxed);
        let lookups = hits + misses;
        CacheSnapshot {
            name: self.name.clone(),
            hits,
            misses,
            hit_ratio: if lookups == 0 {
                0.0
            } else {
                hits as f64 / lookups as f64
            },
            entries: self.store.entry_count(),
            weight: self.store.weighted_size(),
            capacity: self.capacity,
            bound: self.bound,
            computes: self.counters.computes.load(Ordering::Relaxed),
            coalesced: self.counters.coalesced.load(Ordering::Relaxed),
        }
    }
}

impl<K, V> CacheStats for Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn cache_snapshot(&self) -> CacheSnapshot {
        self.shared.cache_snapshot()
    }
}

impl<K, V> std::fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.shared.name)
            .field("capacity", &self.shared.capacity)
            .field("bound", &self.shared.bound)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::Barrier;

    use super::*;

    #[derive(Debug, PartialEq)]
    struct Unreachable(u32);

    /// 100 callers miss on one key at once: `compute` runs once and they all
    /// get its value (or all get its error, which is then not cached).
    async fn hundred_at_once(
        cache: &Cache<&'static str, u64>,
        fail: bool,
        computed: &Arc<AtomicUsize>,
    ) -> Vec<Result<u64, Arc<Unreachable>>> {
        let barrier = Arc::new(Barrier::new(100));
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (cache, barrier, computed) = (cache.clone(), barrier.clone(), computed.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    cache
                        .get_or_compute("host", async move {
                            let n = computed.fetch_add(1, Ordering::SeqCst) as u32;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            if fail { Err(Unreachable(n)) } else { Ok(42) }
                        })
                        .await
                })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        results
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_compute_once() {
        let cache = Cache::builder("single-flight").build();
        let computed = Arc::new(AtomicUsize::new(0));
        let results = hundred_at_once(&cache, false, &computed).await;
        assert_eq!(computed.load(Ordering::SeqCst), 1);
        assert!(results.iter().all(|r| r.as_ref().ok() == Some(&42)));
        let s = cache.snapshot();
        assert_eq!(s.computes, 1, "{s:?}");
        assert_eq!(s.hits + s.misses, 100, "{s:?}");
        assert_eq!(s.coalesced + s.hits, 99, "{s:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_error_reaches_every_waiter_and_is_not_cached() {
        let cache = Cache::builder("errors").build();
        let computed = Arc::new(AtomicUsize::new(0));
        let results = hundred_at_once(&cache, true, &computed).await;
        assert_eq!(computed.load(Ordering::SeqCst), 1);
        for result in &results {
            assert_eq!(result.as_ref().unwrap_err().as_ref(), &Unreachable(0));
        }
        assert_eq!(cache.get(&"host").await, None, "the error was cached");
        // The next call computes again.
        let results = hundred_at_once(&cache, false, &computed).await;
        assert_eq!(computed.load(Ordering::SeqCst), 2);
        assert!(results.iter().all(|r| r.is_ok()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_computation_is_taken_over() {
        let cache: Cache<&str, u64> = Cache::builder("takeover").build();
        let first = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_compute("k", async {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok::<_, Unreachable>(1)
                    })
                    .await
            })
        };
        while cache.snapshot().computes == 0 {
            tokio::task::yield_now().await;
        }
        let second = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_compute("k", async { Ok::<_, Unreachable>(2) })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        first.abort();
        assert_eq!(second.await.unwrap().unwrap(), 2);
        assert_eq!(cache.snapshot().computes, 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn entries_expire_after_the_ttl() {
        let cache = Cache::builder("ttl").ttl(Duration::from_millis(50)).build();
        cache.insert("k", 1u8).await;
        assert_eq!(cache.get(&"k").await, Some(1));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(cache.get(&"k").await, None);
        let s = cache.snapshot();
        assert_eq!((s.hits, s.misses, s.hit_ratio), (1, 1, 0.5));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bounded_by_entries() {
        let cache = Cache::builder("entries").max_entries(100).build();
        for i in 0..1_000u32 {
            cache.insert(i, i).await;
        }
        cache.run_pending_tasks().await;
        let s = cache.snapshot();
        assert!(s.entries <= 100, "{s:?}");
        assert_eq!(
            (s.capacity, s.bound, s.weight),
            (100, Bound::Entries, s.entries)
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bounded_by_weight() {
        let cache = Cache::builder("bytes")
            .max_weight(10_000, |_k: &u32, v: &Vec<u8>| v.len() as u32)
            .build();
        for i in 0..100u32 {
            cache.insert(i, vec![0u8; 1_000]).await;
        }
        cache.run_pending_tasks().await;
        let s = cache.snapshot();
        assert!(s.weight <= 10_000 && s.weight > 0, "{s:?}");
        assert!(s.entries <= 10, "{s:?}");
        assert_eq!(s.bound, Bound::Weight);
        cache.invalidate_all();
        cache.run_pending_tasks().await;
        assert_eq!(cache.snapshot().entries, 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn invalidate_removes() {
        let cache = Cache::builder("inv").build();
        cache.insert(1, "one").await;
        cache.invalidate(&1).await;
        assert_eq!(cache.get(&1).await, None);
        let json = serde_json::to_value(cache.snapshot()).unwrap();
        assert_eq!(json["name"], "inv");
        assert_eq!(json["bound"], "entries");
    }
}
