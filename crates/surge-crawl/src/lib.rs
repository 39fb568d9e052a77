#![warn(missing_docs)]

//! surge's web crawler (`surge crawl`).
//!
//! - [`url_norm`]: URL normalisation before dedup and a stable 64-bit
//!   fingerprint.
//! - [`scope`]: which URLs belong to the crawl (same host, subdomains,
//!   allow / deny patterns).
//! - [`seen`]: a bounded-memory seen-set of fingerprints (in memory up to a
//!   threshold, then spilled to sorted files).
//! - [`extract`]: streaming extraction with lol_html and charset detection.
//! - [`robots`]: robots.txt (RFC 9309) parsing, matching and a per-host cache.
//! - [`sitemap`]: optional sitemap discovery.
//! - [`politeness`]: per-host concurrency, minimum delay and adaptive backoff.
//! - [`frontier`]: the [`Frontier`] trait and its implementations.
//! - [`engine`]: the [`Crawler`] loop over a frontier.
//! - [`crawls`]: crawls stored in a broker (PostgreSQL, Redis) that any
//!   number of workers crawl together.
//! - `task` (feature `task`): the `crawl` and `crawl.join` task kinds.

pub mod config;
pub mod crawls;
pub mod engine;
pub mod error;
pub mod extract;
pub mod frontier;
pub mod politeness;
pub mod record;
pub mod robots;
pub mod scope;
pub mod seen;
pub mod sitemap;
#[cfg(feature = "task")]
pub mod task;
pub mod url_norm;

pub use config::{CrawlConfig, ScopeConfig};
pub use engine::{CrawlSummary, Crawler};
pub use error::{CrawlError, FrontierError};
pub use frontier::{AnyFrontier, Frontier, FrontierEntry, FrontierStats, Lease};
pub use record::{PageError, PageRecord};
