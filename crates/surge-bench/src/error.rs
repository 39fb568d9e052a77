//! The errors of this crate: each variant says what the caller can do.

use std::path::PathBuf;

/// Why a benchmark could not be planned, run, saved or reported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A setting is wrong (bad URL, zero level, unknown label…): fix the
    /// input; the message names the setting.
    #[error("{0}")]
    Invalid(String),
    /// A target refused or did not answer the check made before any load:
    /// start the server or fix its address.
    #[error("target {label} ({url}) is unreachable: {reason}")]
    Unreachable {
        /// The target's label.
        label: String,
        /// Its URL.
        url: String,
        /// What the connection attempt said.
        reason: String,
    },
    /// A results file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A results file is not JSON of a known surge benchmark schema.
    #[error("{}: not a surge bench results file: {reason}", path.display())]
    NotResults {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A results file has a schema version this build does not read:
    /// rebuild the report with the surge that wrote it, or re-run.
    #[error(
        "{}: schema {schema} version {found}, but this surge reads version {supported}",
        path.display()
    )]
    SchemaVersion {
        /// The file.
        path: PathBuf,
        /// The schema name found.
        schema: String,
        /// The version found.
        found: u64,
        /// The version this build reads.
        supported: u32,
    },
    /// The load generator could not start its threads or runtimes (out of
    /// threads or file descriptors): lower the load or raise the limits.
    #[error("cannot start the load generator: {0}")]
    Start(String),
}

impl BenchError {
    pub(crate) fn invalid(msg: impl Into<String>) -> BenchError {
        BenchError::Invalid(msg.into())
    }
}
