//! The broker's typed error.

use std::time::Duration;

/// What went wrong talking to a broker, and what the caller can do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker URL is malformed or names an unsupported scheme.
    #[error("invalid broker URL: {0}")]
    InvalidUrl(String),
    /// The broker cannot be reached or is overloaded right now (connection
    /// refused or cut, pool timeout, SQLite busy): retrying may help.
    #[error("broker unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
        /// Retry no sooner than this, if the broker said.
        retry_after: Option<Duration>,
    },
    /// The request is wrong (a bad schedule, a bad name): retrying will not
    /// help.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The schema could not be created or migrated.
    #[error("broker migration failed: {0}")]
    Migration(String),
    /// A stored record could not be read back (corrupt or foreign data).
    #[error("broker data error: {0}")]
    Data(String),
    /// Any other backend failure.
    #[error("broker error: {0}")]
    Backend(String),
}

impl BrokerError {
    /// Whether the same call may succeed later (the broker was unavailable).
    pub fn is_transient(&self) -> bool {
        matches!(self, BrokerError::Unavailable { .. })
    }

    /// An [`BrokerError::Unavailable`] with `message`.
    pub fn unavailable(message: impl Into<String>) -> BrokerError {
        BrokerError::Unavailable {
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<sqlx::Error> for BrokerError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &e {
            E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed => {
                BrokerError::unavailable(e.to_string())
            }
            E::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                // SQLite: 5 BUSY, 6 LOCKED (and extended codes 261, 262, 517, …)
                // PostgreSQL: class 08 connection, 57P0x shutdown, 53300 too many
                // connections, 40001 serialization, 40P01 deadlock.
                let sqlite_busy = code
                    .parse::<i32>()
                    .map(|c| c & 0xff == 5 || c & 0xff == 6)
                    .unwrap_or(false);
                let pg_transient = code.starts_with("08")
                    || code.starts_with("57P0")
                    || code == "53300"
                    || code == "40001"
                    || code == "40P01";
                if sqlite_busy || pg_transient {
                    BrokerError::unavailable(e.to_string())
                } else {
                    BrokerError::Backend(e.to_string())
                }
            }
            E::ColumnDecode { .. }
            | E::Decode(_)
            | E::ColumnNotFound(_)
            | E::TypeNotFound { .. } => BrokerError::Data(e.to_string()),
            E::Migrate(m) => BrokerError::Migration(m.to_string()),
            _ => BrokerError::Backend(e.to_string()),
        }
    }
}

impl From<redis::RedisError> for BrokerError {
    fn from(e: redis::RedisError) -> Self {
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.is_cluster_error()
            || matches!(
                e.kind(),
                redis::ErrorKind::BusyLoadingError | redis::ErrorKind::TryAgain
            )
        {
            BrokerError::unavailable(e.to_string())
        } else {
            BrokerError::Backend(e.to_string())
        }
    }
}

impl From<serde_json::Error> for BrokerError {
    fn from(e: serde_json::Error) -> Self {
        BrokerError::Data(e.to_string())
    }
}
