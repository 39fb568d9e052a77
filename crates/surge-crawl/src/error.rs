//! The crawler's errors.

/// A crawl that cannot start or cannot go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrawlError {
    /// A setting that cannot work (named).
    #[error("invalid crawl config: {0}")]
    Config(String),
    /// The fetch engine could not be built.
    #[error("fetch engine: {0}")]
    Fetch(#[from] surge_fetch::ConfigError),
    /// The frontier failed.
    #[error("frontier: {0}")]
    Frontier(#[from] FrontierError),
    /// A local file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A frontier (queue + seen-set + records) that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrontierError {
    /// A local file could not be read or written.
    #[error("frontier i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A stored entry or record does not decode.
    #[error("frontier data is corrupt: {0}")]
    Corrupt(String),
    /// The backend (database, Redis, …) failed.
    #[error("frontier backend: {0}")]
    Backend(String),
    /// The crawl (id, directory) does not exist or does not match.
    #[error("crawl not found: {0}")]
    NotFound(String),
    /// The lease token is not one this frontier handed out.
    #[error("unknown lease: {0}")]
    UnknownLease(String),
}

impl From<serde_json::Error> for FrontierError {
    fn from(e: serde_json::Error) -> Self {
        FrontierError::Corrupt(e.to_string())
    }
}
