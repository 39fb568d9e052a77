//! The frontier: where the queue of URLs to crawl, the seen-set and the
//! stored records live. One trait ([`Frontier`]), dispatched through
//! [`AnyFrontier`] (no `dyn`).

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::FrontierError;
use crate::record::PageRecord;

#[doc(hidden)]
pub mod conformance;
pub mod local;
pub mod postgres;
pub mod redis;
mod shared;

pub use local::LocalFrontier;
pub use postgres::PgFrontier;
pub use redis::RedisFrontier;

/// A URL waiting to be crawled.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FrontierEntry {
    /// The normalised URL.
    pub url: String,
    /// Links followed from a start URL (start URLs: 0).
    pub depth: u32,
}

/// An entry handed to one worker for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The entry.
    pub entry: FrontierEntry,
    /// Opaque, implementation-defined.
    pub token: String,
}

/// A frontier's counts at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontierStats {
    /// Entries waiting (leasable now or later).
    pub queued: u64,
    /// Entries leased and not completed or released.
    pub leased: u64,
    /// Records stored.
    pub done: u64,
    /// Distinct URLs ever offered.
    pub seen: u64,
}

/// The seam between the crawl engine and where the frontier, the seen-set
/// and the records live.
pub trait Frontier: Send + Sync {
    /// Adds entries whose fingerprint was never seen; returns how many were new.
    fn offer(
        &self,
        entries: Vec<FrontierEntry>,
    ) -> impl Future<Output = Result<u64, FrontierError>> + Send;

    /// Leases up to `n` ready entries for `ttl` (an expired lease makes the
    /// entry leasable again: a killed worker loses nothing). Respects the
    /// page budget: never hands out more than `max_pages - done - leased`.
    /// Empty `Vec` = nothing ready now.
    fn lease(
        &self,
        n: usize,
        ttl: Duration,
    ) -> impl Future<Output = Result<Vec<Lease>, FrontierError>> + Send;

    /// Atomically: stores the record (at most once per URL — a second
    /// complete for the same URL, e.g. from an expired lease, stores nothing
    /// and returns `Ok(false)`), offers the outlinks, and removes the entry.
    /// Returns `Ok(true)` when this call stored the record.
    fn complete(
        &self,
        lease: &Lease,
        record: &PageRecord,
        outlinks: Vec<FrontierEntry>,
    ) -> impl Future<Output = Result<bool, FrontierError>> + Send;

    /// Gives a lease back unfetched (shutdown, politeness), leasable again
    /// after `delay`.
    fn release(
        &self,
        lease: &Lease,
        delay: Duration,
    ) -> impl Future<Output = Result<(), FrontierError>> + Send;

    /// Extends live leases (heartbeat) — the engine calls it for long fetches.
    fn extend(
        &self,
        leases: &[Lease],
        ttl: Duration,
    ) -> impl Future<Output = Result<(), FrontierError>> + Send;

    /// The counts.
    fn stats(&self) -> impl Future<Output = Result<FrontierStats, FrontierError>> + Send;

    /// Finished: nothing queued, nothing leased (or budget reached and
    /// nothing leased).
    fn is_finished(&self) -> impl Future<Output = Result<bool, FrontierError>> + Send;
}

/// Every frontier, as one type.
#[derive(Debug)]
#[non_exhaustive]
// One frontier per crawl, made once and borrowed: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum AnyFrontier {
    /// A crawl directory on local disk.
    Local(LocalFrontier),
    /// A crawl stored in PostgreSQL (shared by every worker).
    Postgres(PgFrontier),
    /// A crawl stored in Redis (shared by every worker).
    Redis(RedisFrontier),
}

macro_rules! dispatch {
    ($self:ident, $f:ident => $e:expr) => {
        match $self {
            AnyFrontier::Local($f) => $e,
            AnyFrontier::Postgres($f) => $e,
            AnyFrontier::Redis($f) => $e,
        }
    };
}

impl Frontier for AnyFrontier {
    async fn offer(&self, entries: Vec<FrontierEntry>) -> Result<u64, FrontierError> {
        dispatch!(self, f => f.offer(entries).await)
    }

    async fn lease(&self, n: usize, ttl: Duration) -> Result<Vec<Lease>, FrontierError> {
        dispatch!(self, f => f.lease(n, ttl).await)
    }

    async fn complete(
        &self,
        lease: &Lease,
        record: &PageRecord,
        outlinks: Vec<FrontierEntry>,
    ) -> Result<bool, FrontierError> {
        dispatch!(self, f => f.complete(lease, record, outlinks).await)
    }

    async fn release(&self, lease: &Lease, delay: Duration) -> Result<(), FrontierError> {
        dispatch!(self, f => f.release(lease, delay).await)
    }

    async fn extend(&self, leases: &[Lease], ttl: Duration) -> Result<(), FrontierError> {
        dispatch!(self, f => f.extend(leases, ttl).await)
    }

    async fn stats(&self) -> Result<FrontierStats, FrontierError> {
        dispatch!(self, f => f.stats().await)
    }

    async fn is_finished(&self) -> Result<bool, FrontierError> {
        dispatch!(self, f => f.is_finished().await)
    }
}
