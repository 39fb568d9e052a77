//! surge's relational storage.
//!
//! [`Database`] opens the configured backend — an embedded SQLite file (the
//! default, WAL mode) or PostgreSQL — with an explicit pool size and acquire
//! timeout, runs the migrations, and hands out repositories. Each repository
//! is one trait ([`UserStore`]) with one module per backend and one
//! conformance suite ([`conformance`]) that every backend must pass.
//!
//! Errors are typed ([`StoreError`]): an unavailable database (pool timeout,
//! connection refused or cut, SQLite lock) is distinguishable from a conflict
//! or a missing row, so the HTTP edge can answer 503 / 409 / 404.

mod database;
mod error;
pub mod users;

#[doc(hidden)]
pub mod conformance;

pub use database::{Backend, Database, PoolConfig, PoolStats};
pub use error::StoreError;
pub use users::{NewUser, Page, User, UserFilter, UserPatch, UserStore};
