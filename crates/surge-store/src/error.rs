use std::time::Duration;

use surge_core::ErrorCategory;

/// What went wrong in the store, phrased as what the caller can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL could not be understood; nothing was opened.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The row asked for does not exist.
    #[error("not found")]
    NotFound,
    /// A unique value is already taken (`field` names it).
    #[error("{field} is already in use")]
    Conflict {
        /// The field whose value collides.
        field: &'static str,
    },
    /// The database cannot be reached right now: pool timeout, connection
    /// refused or cut, server shutting down, SQLite file locked. Retrying
    /// later may succeed.
    #[error("database unavailable: {source}")]
    Unavailable {
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Migrations failed at start.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// Any other database error (a bug or a schema problem, not the input).
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    /// The taxonomy category of this error.
    pub fn category(&self) -> ErrorCategory {
        match self {
            StoreError::InvalidUrl(_) => ErrorCategory::Validation,
            StoreError::NotFound | StoreError::Conflict { .. } => ErrorCategory::Business,
            StoreError::Unavailable { source } => match source {
                sqlx::Error::PoolTimedOut => ErrorCategory::Timeout,
                _ => ErrorCategory::Network,
            },
            StoreError::Migration(_) | StoreError::Database(_) => ErrorCategory::System,
        }
    }

    /// A hint for how long a client should wait before retrying, when
    /// retrying may help.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            StoreError::Unavailable { .. } => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        classify(e)
    }
}

/// Sorts a driver error into the variant the caller can act on.
fn classify(e: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    let unavailable = match &e {
        E::RowNotFound => return StoreError::NotFound,
        E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed => true,
        // A protocol error means the connection is in an unknown state (cut
        // mid-message); a fresh connection may work.
        E::Protocol(_) => true,
        E::Database(db) => {
            if db.is_unique_violation() {
                return StoreError::Conflict {
                    field: unique_field(db.constraint().unwrap_or_default(), db.message()),
                };
            }
            let is_sqlite = db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some();
            db.code().is_some_and(|code| {
                if is_sqlite {
                    sqlite_unavailable_code(&code)
                } else {
                    postgres_unavailable_code(&code)
                }
            })
        }
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable { source: e }
    } else {
        StoreError::Database(e)
    }
}

/// SQLite BUSY (5) and LOCKED (6), including their extended codes.
fn sqlite_unavailable_code(code: &str) -> bool {
    code.parse::<i32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
}

/// PostgreSQL class 08 (connection exception), 57P01-03 (shutting down,
/// cannot connect now), 53300 (too many connections).
fn postgres_unavailable_code(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

fn unique_field(constraint: &str, message: &str) -> &'static str {
    // Only one unique index exists today; keep the mapping explicit so a new
    // one fails loudly in review rather than being reported as `email`.
    if constraint.contains("email") || message.contains("email") {
        "email"
    } else {
        "value"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_and_connection_codes_are_unavailable() {
        for code in ["5", "6", "517", "262"] {
            assert!(sqlite_unavailable_code(code), "{code}");
        }
        for code in ["19", "2067", "1"] {
            assert!(!sqlite_unavailable_code(code), "{code}");
        }
        for code in ["08006", "08001", "57P01", "57P03", "53300"] {
            assert!(postgres_unavailable_code(code), "{code}");
        }
        for code in ["23505", "42P01", "40001"] {
            assert!(!postgres_unavailable_code(code), "{code}");
        }
    }

    #[test]
    fn pool_timeout_is_unavailable_and_retryable() {
        let e = StoreError::from(sqlx::Error::PoolTimedOut);
        assert!(matches!(e, StoreError::Unavailable { .. }));
        assert!(e.category().retry_may_help());
        assert!(e.retry_after().is_some());
    }
}
