//! surge's durable task engine.
//!
//! - [`model`]: the task model (states, submissions, records, outcomes).
//! - [`broker`]: the [`Broker`] trait, the one seam to storage, and its
//!   backends: [`broker::sqlite`] (embedded default), [`broker::postgres`],
//!   [`broker::redis`].
//! - [`Task`], [`Registry`]: the library API for task kinds;
//!   [`builtin`] holds `noop`, `sleep`, `process` and `fail`.
//! - [`Client`]: submit tasks, chains, groups, chords and schedules; await
//!   results.
//! - [`Worker`]: the worker runtime.
//! - [`schedule`]: cron expressions with time zones.
//! - `conformance`: the one test suite every backend passes.

pub mod broker;
pub mod builtin;
mod client;
#[doc(hidden)]
pub mod conformance;
mod error;
pub mod model;
mod registry;
pub mod schedule;
mod task;
pub mod worker;

pub use broker::{AnyBroker, Broker, BrokerConfig, BrokerPool};
pub use client::{Client, GroupHandle, PublishRetry, SubmitError, TaskHandle, WaitError};
pub use error::BrokerError;
pub use model::{DEFAULT_QUEUE, NewTask, TaskError, TaskId, TaskOptions, TaskRecord, TaskState};
pub use registry::{KindError, Registry};
pub use task::{KindSettings, Task, TaskContext};
pub use worker::{Observer, Worker, WorkerConfig, WorkerReport, WorkerSlots};
