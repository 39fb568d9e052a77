//! surge's outbound HTTP engine: the batch fetcher behind `surge fetch`, the
//! `http.fetch` task kind and the crawler.
//!
//! - [`Fetcher`] ([`engine`]): a pooled keep-alive client (plain HTTP/1.1
//!   on surge's own pool, `pool`, whose connections are driven by the
//!   request holding them; HTTPS with HTTP/1.1 or HTTP/2 by ALPN, and h2c
//!   by prior knowledge, on hyper-util's client), with a
//!   global and a per-host concurrency limit (static, or adaptive and
//!   capped by the static one) that are never exceeded, an
//!   optional per-host rate, retries only where a retry may help (backoff
//!   with full jitter, `Retry-After` honoured, a retry budget), connect /
//!   request / idle-read timeouts, redirects followed by us (every hop is
//!   checked and limited like a first request) and transparent
//!   decompression.
//! - [`dns`]: a DNS cache with a TTL whose concurrent lookups of one name
//!   are merged into one.
//! - [`hosts`]: per-host state (slots, rate, the next allowed time after a
//!   `Retry-After`), released when a host goes idle.
//! - [`ssrf`]: which addresses work submitted over the API may reach.
//! - [`body`]: bodies streamed into a sink (count, hash, file, bounded
//!   buffer), never more than a maximum size.
//! - [`FetchError`] ([`error`]): every failure in one category of
//!   [`surge_core::ErrorCategory`], saying whether a retry may help.
//!
//! # Example
//! ```no_run
//! # async fn demo() {
//! use surge_fetch::{FetchConfig, FetchRequest, Fetcher};
//! let fetcher = Fetcher::new(FetchConfig::default()).unwrap();
//! let fetched = fetcher.fetch(FetchRequest::get("https://example.com/")).await;
//! match &fetched.error {
//!     None => println!("{} bytes", fetched.bytes),
//!     Some(e) => println!("{}: {e} (retry may help: {})", e.category(), e.retryable()),
//! }
//! # }
//! ```

pub mod body;
pub mod config;
pub mod dns;
pub mod engine;
pub mod error;
pub mod hosts;
mod pool;
mod request;
pub mod ssrf;
#[cfg(feature = "task")]
pub mod task;
mod urls;

pub use body::{BodyOutput, BodySink};
pub use config::{ConfigError, FetchConfig, ResponseCacheConfig};
pub use engine::{EngineStats, Fetcher};
pub use error::{FetchError, FetchErrorKind};
pub use request::{FetchRequest, Fetched};
pub use ssrf::AddressPolicy;
