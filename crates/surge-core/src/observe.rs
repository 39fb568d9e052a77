//! The [`Observatory`]: the live limiters and caches, listed for `/stats`
//! and the dashboard.
//!
//! It holds weak references: registering does not keep anything alive, and a
//! limiter or cache that is dropped leaves the list by itself (per-host
//! limiters come and go with their hosts).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use surge_core::cache::Cache;
//! use surge_core::limit::{Limiter, StaticLimiter};
//! use surge_core::observe::Observatory;
//!
//! let observatory = Observatory::new();
//! let limiter: Arc<dyn Limiter> = Arc::new(StaticLimiter::new(8));
//! observatory.register_limiter("fetch.global", &limiter);
//! let cache: Cache<String, String> = Cache::builder("dns").build();
//! cache.register(&observatory);
//!
//! let stats = observatory.snapshot();
//! assert_eq!(stats.limiters[0].name, "fetch.global");
//! assert_eq!(stats.limiters[0].snapshot.limit, 8);
//! assert_eq!(stats.caches[0].name, "dns");
//! let json = serde_json::to_value(&stats).unwrap();
//! assert_eq!(json["limiters"][0]["in_flight"], 0);
//!
//! drop((limiter, cache));
//! assert!(observatory.limiters().is_empty() && observatory.caches().is_empty());
//! ```

use std::sync::{Arc, Mutex, OnceLock, Weak};

use serde::Serialize;

use crate::cache::{CacheSnapshot, CacheStats};
use crate::limit::{Limiter, LimiterSnapshot};

/// Weak entries under one name each; dead ones are pruned as it grows.
struct Registry<T: ?Sized> {
    entries: Vec<(String, Weak<T>)>,
    /// Prune when `entries` reaches this length.
    prune_at: usize,
}

impl<T: ?Sized> Registry<T> {
    const fn new() -> Self {
        Registry {
            entries: Vec::new(),
            prune_at: 64,
        }
    }

    fn add(&mut self, name: String, entry: Weak<T>) {
        if self.entries.len() >= self.prune_at {
            self.entries.retain(|(_, weak)| weak.strong_count() > 0);
            // Amortised: the next prune comes after as many adds as live ones.
            self.prune_at = (self.entries.len() * 2).max(64);
        }
        self.entries.push((name, entry));
    }

    /// The live entries (dead ones are dropped from the list).
    fn live(&mut self) -> Vec<(String, Arc<T>)> {
        let mut live = Vec::with_capacity(self.entries.len());
        self.entries.retain(|(name, weak)| match weak.upgrade() {
            Some(entry) => {
                live.push((name.clone(), entry));
                true
            }
            None => false,
        });
        live
    }
}

/// Lists the live limiters and caches; see the [module docs](self).
pub struct Observatory {
    limiters: Mutex<Registry<dyn Limiter>>,
    caches: Mutex<Registry<dyn CacheStats>>,
}

/// One limiter in an [`ObservatorySnapshot`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedLimiter {
    /// The name it was registered under.
    pub name: String,
    /// Its state (flattened into this object in JSON).
    #[serde(flatten)]
    pub snapshot: LimiterSnapshot,
}

/// Everything an [`Observatory`] lists, ready to serialise:
/// `{"limiters": [{"name": …, "limit": …, …}], "caches": [{"name": …, …}]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObservatorySnapshot {
    /// Live limiters, in registration order.
    pub limiters: Vec<NamedLimiter>,
    /// Live caches, in registration order (each `name` is the registered
    /// one).
    pub caches: Vec<CacheSnapshot>,
}

fn lock<T: ?Sized>(registry: &Mutex<Registry<T>>) -> std::sync::MutexGuard<'_, Registry<T>> {
    // A registry is a list of weak references: usable after any panic.
    registry.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for Observatory {
    fn default() -> Self {
        Observatory::new()
    }
}

impl Observatory {
    /// An empty observatory (for tests, or a component of its own).
    pub const fn new() -> Observatory {
        Observatory {
            limiters: Mutex::new(Registry::new()),
            caches: Mutex::new(Registry::new()),
        }
    }

    /// The process-wide observatory that the binary's `/stats` lists.
    pub fn global() -> &'static Observatory {
        static GLOBAL: OnceLock<Observatory> = OnceLock::new();
        GLOBAL.get_or_init(Observatory::new)
    }

    /// Lists `limiter` under `name` while it lives. Names need not be
    /// unique; each registration is listed.
    pub fn register_limiter(&self, name: impl Into<String>, limiter: &Arc<dyn Limiter>) {
        lock(&self.limiters).add(name.into(), Arc::downgrade(limiter));
    }

    /// Lists `cache` under `name` while it lives. For a
    /// [`Cache`](crate::cache::Cache), [`Cache::register`](crate::cache::Cache::register)
    /// does this with the cache's own name.
    pub fn register_cache<S: CacheStats + 'static>(&self, name: impl Into<String>, cache: &Arc<S>) {
        let weak: Weak<dyn CacheStats> = Arc::downgrade(cache) as Weak<dyn CacheStats>;
        lock(&self.caches).add(name.into(), weak);
    }

    /// The live limiters' states, in registration order.
    pub fn limiters(&self) -> Vec<(String, LimiterSnapshot)> {
        // Snapshots are taken after the registry lock is released.
        let live = lock(&self.limiters).live();
        live.into_iter()
            .map(|(name, limiter)| (name, limiter.snapshot()))
            .collect()
    }

    /// The live caches' statistics, in registration order; each
    /// snapshot's `name` is the registered one.
    pub fn caches(&self) -> Vec<(String, CacheSnapshot)> {
        let live = lock(&self.caches).live();
        live.into_iter()
            .map(|(name, cache)| {
                let snapshot = CacheSnapshot {
                    name: name.clone(),
                    ..cache.cache_snapshot()
                };
                (name, snapshot)
            })
            .collect()
    }

    /// Both lists in one serialisable value.
    pub fn snapshot(&self) -> ObservatorySnapshot {
        ObservatorySnapshot {
            limiters: self
                .limiters()
                .into_iter()
                .map(|(name, snapshot)| NamedLimiter { name, snapshot })
                .collect(),
            caches: self
                .caches()
                .into_iter()
                .map(|(_, snapshot)| snapshot)
                .collect(),
        }
    }
}

impl std::fmt::Debug for Observatory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observatory")
            .field("limiters", &lock(&self.limiters).entries.len())
            .field("caches", &lock(&self.caches).entries.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Cache;
    use crate::limit::{AdaptiveConfig, AdaptiveLimiter, StaticLimiter};

    #[test]
    fn dropped_items_leave_and_the_list_stays_bounded() {
        let observatory = Observatory::new();
        let kept: Arc<dyn Limiter> = Arc::new(StaticLimiter::new(1));
        observatory.register_limiter("kept", &kept);
        for i in 0..10_000 {
            let host: Arc<dyn Limiter> = Arc::new(AdaptiveLimiter::new(AdaptiveConfig::default()));
            observatory.register_limiter(format!("host-{i}"), &host);
        }
        assert!(lock(&observatory.limiters).entries.len() <= 130);
        let listed = observatory.limiters();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0, "kept");
        assert_eq!(listed[0].1.algorithm, "static");
    }

    #[test]
    fn caches_are_listed_while_any_clone_lives() {
        let observatory = Observatory::new();
        let cache: Cache<u8, u8> = Cache::builder("responses").max_entries(5).build();
        cache.register(&observatory);
        let clone = cache.clone();
        drop(cache);
        let listed = observatory.caches();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].1.capacity, listed[0].1.name.as_str()),
            (5, "responses")
        );
        drop(clone);
        assert!(observatory.caches().is_empty());

        // A caller-owned Arc of anything that reports stats.
        let shared = Arc::new(Cache::<u8, u8>::builder("arc").build());
        observatory.register_cache("renamed", &shared);
        let json = serde_json::to_value(observatory.snapshot()).unwrap();
        assert_eq!(json["caches"][0]["name"], "renamed");
        assert_eq!(json["caches"][0]["hit_ratio"], 0.0);
    }

    #[test]
    fn the_global_observatory_is_one() {
        assert!(std::ptr::eq(Observatory::global(), Observatory::global()));
    }
}
