//! surge's durable task engine.
//!
//! - [`model`]: the task model (states, submissions, records, outcomes).
//! - [`broker`]: the [`Broker`] trait, the one seam to storage, and its
//!   backends: [`broker::sqlite`] (embedded default), [`broker::postgres`],
//!   [`broker::redis`].
//! - `conformance`: the one test suite every backend passes.

pub mod broker;
#[doc(hidden)]
pub mod conformance;
mod error;
pub mod model;

pub use broker::Broker;
pub use error::BrokerError;
pub use model::{NewTask, TaskError, TaskId, TaskOptions, TaskRecord, TaskState};
