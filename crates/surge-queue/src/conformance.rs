//! The one conformance suite every [`crate::Broker`] backend passes.
//!
//! Each case is a `pub async fn case(broker: &B)` taking a fresh, empty
//! broker (its own SQLite file / PostgreSQL schema / Redis key prefix).
//! `conformance_tests!(fresh)` expands, in a backend's test file
//! (`tests/conformance_<backend>.rs`), to one `#[tokio::test]` per case,
//! where `fresh` is an `async fn() -> Option<B>` that returns `None` (after
//! printing `SKIP <backend>: <reason>` to stderr) when the backend's URL is
//! not set.
