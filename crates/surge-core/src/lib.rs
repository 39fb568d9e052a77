//! Domain types shared by every surge crate.
//!
//! Today this is the error taxonomy that every surface (HTTP edge, task
//! engine, fetcher, metrics) classifies failures into; later capabilities add
//! the task model, retry policy and limiters here.

pub mod error_category;

pub use error_category::ErrorCategory;
