use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool};

use crate::StoreError;

/// Which database a [`Database`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file (the default).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// `"sqlite"` or `"postgres"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Pool sizing: explicit, because the defaults hide contention.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Most connections open at once.
    pub max_connections: u32,
    /// How long a caller waits for a free connection before
    /// [`StoreError::Unavailable`]. For SQLite it is also the busy timeout: how
    /// long a statement waits for another writer's lock.
    pub acquire_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// A snapshot of the pool, for metrics and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open (idle + in use).
    pub size: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// Callers waiting for a connection right now.
    pub waiting: u32,
    /// The configured maximum.
    pub max: u32,
}

/// The configured database: a connection pool with migrations applied.
///
/// Cheap to clone (shared pool).
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    max: u32,
    /// Callers inside `acquire` right now (sqlx does not report waiters).
    waiting: AtomicUsize,
}

pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend())
            .field("stats", &self.pool_stats())
            .finish()
    }
}

impl Database {
    /// Opens the database named by `url` and runs its migrations.
    ///
    /// Accepted: `sqlite://PATH` (relative), `sqlite:///ABS/PATH`,
    /// `sqlite:PATH`, `postgres://…` / `postgresql://…`. A SQLite file is
    /// created if missing.
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] for an unknown scheme or an in-memory
    /// SQLite URL; [`StoreError::Unavailable`] when the server cannot be
    /// reached; [`StoreError::Migration`] when a migration fails.
    pub async fn connect(url: &str, config: &PoolConfig) -> Result<Self, StoreError> {
        let max = config.max_connections.max(1);
        let pool = if url.starts_with("sqlite:") {
            if url.contains(":memory:") || url.contains("mode=memory") {
                return Err(StoreError::InvalidUrl(format!(
                    "{url}: in-memory SQLite is not supported (each pooled connection would see \
                     its own empty database); give a file, e.g. sqlite://surge.db"
                )));
            }
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::InvalidUrl(format!("{url}: {e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // NORMAL is durable in WAL mode except for the last commits
                // before a power loss; never corrupts.
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(config.acquire_timeout)
                .pragma("temp_store", "memory")
                .pragma("cache_size", "-16000");
            let pool = SqlitePoolOptions::new()
                .max_connections(max)
                .acquire_timeout(config.acquire_timeout)
                .test_before_acquire(false)
                .connect_with(options)
                .await?;
            let mut migrator = sqlx::migrate!("migrations/sqlite");
            // The task queue keeps its own migrations (versions 1000+) in the
            // same database; each migrator ignores the other's.
            migrator.set_ignore_missing(true);
            migrator.run(&pool).await?;
            Pool::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| StoreError::InvalidUrl(format!("{}: {e}", redact(url))))?;
            let pool = PgPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(config.acquire_timeout)
                // sqlx pings each connection when it is released, so a
                // connection broken by an outage is dropped there; a ping on
                // every acquire too would add a round trip per request.
                .test_before_acquire(false)
                .connect_with(options)
                .await?;
            let mut migrator = sqlx::migrate!("migrations/postgres");
            // The task queue keeps its own migrations (versions 1000+) in the
            // same database; each migrator ignores the other's.
            migrator.set_ignore_missing(true);
            migrator.run(&pool).await?;
            Pool::Postgres(pool)
        } else {
            return Err(StoreError::InvalidUrl(format!(
                "{}: unsupported scheme; use sqlite://PATH or postgres://USER@HOST/DB",
                redact(url)
            )));
        };
        Ok(Database {
            inner: Arc::new(Inner {
                pool,
                max,
                waiting: AtomicUsize::new(0),
            }),
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        match self.inner.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Round-trips `SELECT 1` through a pooled connection.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot answer.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.inner.pool {
            Pool::Sqlite(_) => {
                let mut c = self.sqlite().await?;
                sqlx::query("SELECT 1").execute(&mut *c).await?;
            }
            Pool::Postgres(_) => {
                let mut c = self.postgres().await?;
                sqlx::query("SELECT 1").execute(&mut *c).await?;
            }
        }
        Ok(())
    }

    /// Pool size, idle connections and waiting callers right now.
    pub fn pool_stats(&self) -> PoolStats {
        let (size, idle) = match &self.inner.pool {
            Pool::Sqlite(p) => (p.size(), p.num_idle()),
            Pool::Postgres(p) => (p.size(), p.num_idle()),
        };
        PoolStats {
            size,
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
            waiting: u32::try_from(self.inner.waiting.load(Ordering::Relaxed)).unwrap_or(u32::MAX),
            max: self.inner.max,
        }
    }

    /// Closes every connection; later calls fail with `Unavailable`.
    pub async fn close(&self) {
        match &self.inner.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// A SQLite connection, counted while waiting. Panics on a PostgreSQL
    /// database: callers dispatch on [`Database::pool`] first.
    pub(crate) async fn sqlite(&self) -> Result<PoolConnection<Sqlite>, StoreError> {
        let Pool::Sqlite(pool) = &self.inner.pool else {
            unreachable!("sqlite() called on a PostgreSQL database")
        };
        let _waiting = Waiting::enter(&self.inner.waiting);
        Ok(pool.acquire().await?)
    }

    /// A PostgreSQL connection, counted while waiting.
    pub(crate) async fn postgres(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        let Pool::Postgres(pool) = &self.inner.pool else {
            unreachable!("postgres() called on a SQLite database")
        };
        let _waiting = Waiting::enter(&self.inner.waiting);
        Ok(pool.acquire().await?)
    }
}

/// Counts a caller as waiting until dropped (also on cancellation).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Waiting(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Hides a password in a URL before it goes into an error message.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &userinfo[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }

    #[tokio::test]
    async fn unknown_scheme_and_memory_sqlite_are_refused() {
        let cfg = PoolConfig::default();
        let e = Database::connect("mysql://u:pw@h/db", &cfg)
            .await
            .unwrap_err();
        assert!(
            matches!(e, StoreError::InvalidUrl(ref m) if m.contains("***") && !m.contains("pw"))
        );
        let e = Database::connect("sqlite::memory:", &cfg)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::InvalidUrl(_)));
    }
}
