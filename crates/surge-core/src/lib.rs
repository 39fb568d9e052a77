#![warn(missing_docs)]

//! Domain types and concurrency primitives shared by every surge crate.
//!
//! - [`ErrorCategory`]: the one error taxonomy every surface classifies
//!   failures into.
//! - [`limit`]: static and adaptive concurrency limiters behind one
//!   [`Limiter`](limit::Limiter) trait, and [`LimitLayer`](limit::LimitLayer)
//!   to put one in front of a tower service.
//! - [`cache`]: a bounded async cache (moka) with statistics and
//!   single-flight `get_or_compute`.
//! - [`backoff`]: exponential backoff with full jitter, `Retry-After`
//!   parsing, and a retry budget.
//! - [`observe`]: the [`Observatory`](observe::Observatory) that lists live
//!   limiters and caches for `/stats` and the dashboard.

pub mod backoff;
pub mod cache;
pub mod error_category;
pub mod limit;
pub mod observe;

pub use error_category::ErrorCategory;
