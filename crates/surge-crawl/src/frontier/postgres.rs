//! The PostgreSQL frontier: a crawl's frontier, seen-set and records in the
//! broker database, so any number of workers crawl it together.
//!
//! # Layout
//! Tables in the connection's schema (the first of its `search_path`, as
//! for the task broker), created by migration `2001_crawl.sql`:
//! `crawls` (one row per crawl: id, config, page budget), `crawl_frontier`
//! (URLs waiting or leased), `crawl_seen` (64-bit fingerprints: the
//! seen-set holds no URLs), `crawl_pages` (one record per URL). Rows of the
//! last three carry the crawl's compact `key`, not its UUID.
//!
//! # Guarantees
//! - Every time decision is the server's `now()`.
//! - [`Frontier::complete`] is one transaction: the record is inserted
//!   `ON CONFLICT DO NOTHING` on the primary key `(crawl, fp)` (so at most
//!   once per URL), and only if it was, the frontier row is deleted and the
//!   outlinks are offered. A frontier row therefore leaves only together
//!   with its outlinks: [`Frontier::is_finished`] ("no row left") can never
//!   be true while some worker may still add URLs.
//! - With a page budget, leases and completes take the crawl's row lock and
//!   count `done` and live leases after acquiring it (a fresh snapshot), so
//!   leases never exceed `max_pages - done - leased` and no more than
//!   `max_pages` records are stored, however many workers race.
//! - Rows are inserted in fingerprint order and deadlocks (and
//!   serialisation failures) are retried, so concurrent offers of
//!   overlapping batches cannot fail the crawl.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use super::shared::{by_fingerprint, millis, parse_token, token};
use super::{Frontier, FrontierEntry, FrontierStats, Lease};
use crate::config::CrawlConfig;
use crate::crawls::{CrawlInfo, CrawlState};
use crate::error::FrontierError;
use crate::record::PageRecord;

/// Attempts of a statement that hit a deadlock or serialisation failure.
const ATTEMPTS: u32 = 5;

/// The crawls stored in one PostgreSQL schema. Cheap to clone.
#[derive(Clone)]
pub struct PgCrawls {
    pool: PgPool,
}

impl std::fmt::Debug for PgCrawls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCrawls").finish_non_exhaustive()
    }
}

fn backend(e: sqlx::Error) -> FrontierError {
    FrontierError::Backend(format!("postgres: {e}"))
}

/// A deadlock or serialisation failure: the transaction may simply be run
/// again.
fn retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

/// Runs `op` again (after a short pause) while it fails retryably.
macro_rules! retrying {
    ($op:expr) => {{
        let mut attempt = 1;
        loop {
            match $op.await {
                Err(e) if attempt < ATTEMPTS && retryable(&e) => {
                    tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                    attempt += 1;
                }
                other => break other.map_err(backend),
            }
        }
    }};
}

impl PgCrawls {
    /// Connects to `url` (`postgres://…`) with at most `max_connections`
    /// and creates or migrates the crawl tables.
    ///
    /// # Errors
    /// [`FrontierError::Backend`] when the server cannot be reached or the
    /// tables cannot be created.
    pub async fn connect(url: &str, max_connections: u32) -> Result<PgCrawls, FrontierError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| FrontierError::Backend(format!("bad PostgreSQL URL: {e}")))?
            .options([("jit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(backend)?;
        let mut migrator = sqlx::migrate!("migrations/postgres");
        // The queue's and the store's migrations live in the same table.
        migrator.set_ignore_missing(true);
        migrator
            .run(&pool)
            .await
            .map_err(|e| FrontierError::Backend(format!("crawl tables: {e}")))?;
        Ok(PgCrawls { pool })
    }

    /// Stores a new crawl; `false` (and nothing changed) when `id` exists.
    ///
    /// # Errors
    /// [`FrontierError::Backend`].
    pub async fn create(&self, id: Uuid, config: &CrawlConfig) -> Result<bool, FrontierError> {
        let text = serde_json::to_string(config)?;
        let max_pages = config
            .max_pages
            .map(|m| i64::try_from(m).unwrap_or(i64::MAX));
        let done = sqlx::query(
            "INSERT INTO crawls (id, config, max_pages) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(text)
        .bind(max_pages)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    /// The frontier of crawl `id`.
    ///
    /// # Errors
    /// [`FrontierError::NotFound`] for an unknown id.
    pub async fn open(&self, id: Uuid) -> Result<PgFrontier, FrontierError> {
        let row = sqlx::query("SELECT key, max_pages FROM crawls WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .ok_or_else(|| FrontierError::NotFound(id.to_string()))?;
        Ok(PgFrontier {
            pool: self.pool.clone(),
            key: row.get("key"),
            budget: row.get::<Option<i64>, _>("max_pages").is_some(),
        })
    }

    fn info(row: &sqlx::postgres::PgRow) -> Result<CrawlInfo, FrontierError> {
        let config: String = row.get("config");
        let reason: Option<String> = row.get("end_reason");
        Ok(CrawlInfo {
            id: row.get("id"),
            config: serde_json::from_str(&config)?,
            created_at: row.get("created_at"),
            ended_at: row.get("ended_at"),
            state: match reason.as_deref() {
                None => CrawlState::Running,
                Some(r) => CrawlState::parse(r)
                    .ok_or_else(|| FrontierError::Corrupt(format!("crawl state {r:?}")))?,
            },
        })
    }

    /// Crawl `id`, if stored.
    ///
    /// # Errors
    /// [`FrontierError::Backend`], [`FrontierError::Corrupt`].
    pub async fn get(&self, id: Uuid) -> Result<Option<CrawlInfo>, FrontierError> {
        let row = sqlx::query(
            "SELECT id, config, created_at, ended_at, end_reason FROM crawls WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(Self::info).transpose()
    }

    /// Up to `limit` crawls, newest first, older than `before` if given.
    ///
    /// # Errors
    /// [`FrontierError::Backend`], [`FrontierError::Corrupt`].
    pub async fn list(
        &self,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<CrawlInfo>, FrontierError> {
        let rows = sqlx::query(
            "SELECT id, config, created_at, ended_at, end_reason FROM crawls \
             WHERE $1::uuid IS NULL OR id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(before)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(Self::info).collect()
    }

    /// Marks crawl `id` ended in `state` (the first end counts); `false`
    /// when it was already ended or is unknown.
    ///
    /// # Errors
    /// [`FrontierError::Backend`].
    pub async fn end(&self, id: Uuid, state: CrawlState) -> Result<bool, FrontierError> {
        let done = sqlx::query(
            "UPDATE crawls SET ended_at = now(), end_reason = $2 \
             WHERE id = $1 AND ended_at IS NULL",
        )
        .bind(id)
        .bind(state.as_str())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    /// Up to `limit` stored records (JSON text) of crawl `id` after cursor
    /// `after` (0: from the start), in the order they were stored, each
    /// with the cursor that follows it.
    ///
    /// # Errors
    /// [`FrontierError::NotFound`] for an unknown crawl,
    /// [`FrontierError::Backend`].
    pub async fn pages(
        &self,
        id: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, FrontierError> {
        let frontier = self.open(id).await?;
        let rows = sqlx::query(
            "SELECT seq, record FROM crawl_pages WHERE crawl = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3",
        )
        .bind(frontier.key)
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| {
                let seq: i64 = r.get("seq");
                (u64::try_from(seq).unwrap_or(0), r.get("record"))
            })
            .collect())
    }
}

/// One crawl's frontier in PostgreSQL (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct PgFrontier {
    pool: PgPool,
    key: i64,
    budget: bool,
}

impl std::fmt::Debug for PgFrontier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgFrontier")
            .field("key", &self.key)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// Fingerprints as PostgreSQL `bigint`s (the bits, reinterpreted).
fn signed(fp: u64) -> i64 {
    i64::from_ne_bytes(fp.to_ne_bytes())
}

/// Offers `entries` inside `tx`: fingerprints new to the seen-set get a
/// frontier row.
async fn offer_in(
    tx: &mut Transaction<'_, Postgres>,
    key: i64,
    entries: &[(i64, String, i32)],
) -> Result<u64, sqlx::Error> {
    if entries.is_empty() {
        return Ok(0);
    }
    let fps: Vec<i64> = entries.iter().map(|e| e.0).collect();
    let urls: Vec<&str> = entries.iter().map(|e| e.1.as_str()).collect();
    let depths: Vec<i32> = entries.iter().map(|e| e.2).collect();
    let added = sqlx::query(
        "WITH new AS ( \
             INSERT INTO crawl_seen (crawl, fp) \
             SELECT $1, fp FROM unnest($2::bigint[]) AS t(fp) \
             ON CONFLICT DO NOTHING RETURNING fp) \
         INSERT INTO crawl_frontier (crawl, fp, url, depth) \
         SELECT $1, t.fp, t.url, t.depth \
         FROM unnest($2::bigint[], $3::text[], $4::integer[]) WITH ORDINALITY AS t(fp, url, depth, n) \
         JOIN new USING (fp) ORDER BY t.n",
    )
    .bind(key)
    .bind(&fps)
    .bind(&urls)
    .bind(&depths)
    .execute(&mut **tx)
    .await?;
    Ok(added.rows_affected())
}

fn rows_of(entries: Vec<FrontierEntry>) -> Result<Vec<(i64, String, i32)>, FrontierError> {
    Ok(by_fingerprint(entries)
        .into_iter()
        .map(|(fp, e)| {
            (
                signed(fp),
                e.url,
                i32::try_from(e.depth).unwrap_or(i32::MAX),
            )
        })
        .collect())
}

impl PgFrontier {
    async fn offer_once(&self, rows: &[(i64, String, i32)]) -> Result<u64, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let n = offer_in(&mut tx, self.key, rows).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn lease_once(
        &self,
        n: usize,
        ttl: Duration,
        nonce: Uuid,
    ) -> Result<Vec<Lease>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let mut room = i64::try_from(n).unwrap_or(i64::MAX);
        if self.budget {
            // The lock first, then a statement of its own: its snapshot
            // is taken after the lock, so it sees every lease and record
            // committed before.
            let (max, done): (Option<i64>, i64) =
                sqlx::query_as("SELECT max_pages, done FROM crawls WHERE key = $1 FOR UPDATE")
                    .bind(self.key)
                    .fetch_one(&mut *tx)
                    .await?;
            let live: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM crawl_frontier WHERE crawl = $1 AND lease_until > now()",
            )
            .bind(self.key)
            .fetch_one(&mut *tx)
            .await?;
            if let Some(max) = max {
                room = room.min(max - done - live);
            }
        }
        if room <= 0 {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "WITH pick AS ( \
                 SELECT fp FROM crawl_frontier \
                 WHERE crawl = $1 AND ready_at <= now() \
                   AND (lease_until IS NULL OR lease_until <= now()) \
                 ORDER BY depth, seq LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE crawl_frontier f \
             SET lease_token = $3, lease_until = now() + $4 * interval '1 millisecond' \
             FROM pick WHERE f.crawl = $1 AND f.fp = pick.fp \
             RETURNING f.fp, f.url, f.depth",
        )
        .bind(self.key)
        .bind(room)
        .bind(nonce)
        .bind(millis(ttl) as f64)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let nonce = nonce.simple().to_string();
        Ok(rows
            .iter()
            .map(|r| {
                let fp: i64 = r.get("fp");
                let depth: i32 = r.get("depth");
                Lease {
                    entry: FrontierEntry {
                        url: r.get("url"),
                        depth: u32::try_from(depth).unwrap_or(0),
                    },
                    token: token(u64::from_ne_bytes(fp.to_ne_bytes()), &nonce),
                }
            })
            .collect())
    }

    async fn complete_once(
        &self,
        fp: i64,
        record: &str,
        outlinks: &[(i64, String, i32)],
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        if self.budget {
            let counted = sqlx::query(
                "UPDATE crawls SET done = done + 1 \
                 WHERE key = $1 AND (max_pages IS NULL OR done < max_pages)",
            )
            .bind(self.key)
            .execute(&mut *tx)
            .await?;
            if counted.rows_affected() == 0 {
                // The budget is spent: nothing stored; the entry is no
                // longer leased (it will never be fetched).
                sqlx::query(
                    "UPDATE crawl_frontier SET lease_token = NULL, lease_until = NULL \
                     WHERE crawl = $1 AND fp = $2",
                )
                .bind(self.key)
                .bind(fp)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(false);
            }
        }
        let stored = sqlx::query(
            "INSERT INTO crawl_pages (crawl, fp, record) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(self.key)
        .bind(fp)
        .bind(record)
        .execute(&mut *tx)
        .await?;
        if stored.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query("DELETE FROM crawl_frontier WHERE crawl = $1 AND fp = $2")
            .bind(self.key)
            .bind(fp)
            .execute(&mut *tx)
            .await?;
        offer_in(&mut tx, self.key, outlinks).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Runs a transaction on its own task: it commits or rolls back even when
/// the caller stops polling it or drops it. (A caller that parks a
/// half-done transaction while it waits for another connection of the
/// same pool would otherwise hold its locks and its connection and can
/// stall every worker of the pool.)
async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, FrontierError>> + Send + 'static,
) -> Result<T, FrontierError> {
    tokio::spawn(work)
        .await
        .map_err(|e| FrontierError::Backend(format!("postgres frontier task: {e}")))?
}

impl Frontier for PgFrontier {
    async fn offer(&self, entries: Vec<FrontierEntry>) -> Result<u64, FrontierError> {
        let rows = rows_of(entries)?;
        let this = self.clone();
        detached(async move { retrying!(this.offer_once(&rows)) }).await
    }

    async fn lease(&self, n: usize, ttl: Duration) -> Result<Vec<Lease>, FrontierError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let nonce = Uuid::new_v4();
        let this = self.clone();
        detached(async move { retrying!(this.lease_once(n, ttl, nonce)) }).await
    }

    async fn complete(
        &self,
        lease: &Lease,
        record: &PageRecord,
        outlinks: Vec<FrontierEntry>,
    ) -> Result<bool, FrontierError> {
        let (fp, _) = parse_token(lease)?;
        let record = serde_json::to_string(record)?;
        let outlinks = rows_of(outlinks)?;
        let this = self.clone();
        detached(async move { retrying!(this.complete_once(signed(fp), &record, &outlinks)) }).await
    }

    async fn release(&self, lease: &Lease, delay: Duration) -> Result<(), FrontierError> {
        let (fp, nonce) = parse_token(lease)?;
        let nonce =
            Uuid::try_parse(nonce).map_err(|_| FrontierError::UnknownLease(lease.token.clone()))?;
        retrying!(
            sqlx::query(
                "UPDATE crawl_frontier SET lease_token = NULL, lease_until = NULL, \
                 ready_at = now() + $4 * interval '1 millisecond' \
                 WHERE crawl = $1 AND fp = $2 AND lease_token = $3",
            )
            .bind(self.key)
            .bind(signed(fp))
            .bind(nonce)
            .bind(millis(delay) as f64)
            .execute(&self.pool)
        )?;
        Ok(())
    }

    async fn extend(&self, leases: &[Lease], ttl: Duration) -> Result<(), FrontierError> {
        if leases.is_empty() {
            return Ok(());
        }
        let mut fps = Vec::with_capacity(leases.len());
        let mut nonces = Vec::with_capacity(leases.len());
        for lease in leases {
            let (fp, nonce) = parse_token(lease)?;
            fps.push(signed(fp));
            nonces.push(
                Uuid::try_parse(nonce)
                    .map_err(|_| FrontierError::UnknownLease(lease.token.clone()))?,
            );
        }
        retrying!(
            sqlx::query(
                "UPDATE crawl_frontier f SET lease_until = now() + $4 * interval '1 millisecond' \
                 FROM unnest($2::bigint[], $3::uuid[]) AS t(fp, token) \
                 WHERE f.crawl = $1 AND f.fp = t.fp AND f.lease_token = t.token",
            )
            .bind(self.key)
            .bind(&fps)
            .bind(&nonces)
            .bind(millis(ttl) as f64)
            .execute(&self.pool)
        )?;
        Ok(())
    }

    async fn stats(&self) -> Result<FrontierStats, FrontierError> {
        let row = retrying!(
            sqlx::query(
                "SELECT \
                   (SELECT count(*) FROM crawl_frontier WHERE crawl = $1 \
                      AND (lease_until IS NULL OR lease_until <= now())) AS queued, \
                   (SELECT count(*) FROM crawl_frontier WHERE crawl = $1 \
                      AND lease_until > now()) AS leased, \
                   (SELECT count(*) FROM crawl_pages WHERE crawl = $1) AS done, \
                   (SELECT count(*) FROM crawl_seen WHERE crawl = $1) AS seen",
            )
            .bind(self.key)
            .fetch_one(&self.pool)
        )?;
        let n = |c: &str| u64::try_from(row.get::<i64, _>(c)).unwrap_or(0);
        Ok(FrontierStats {
            queued: n("queued"),
            leased: n("leased"),
            done: n("done"),
            seen: n("seen"),
        })
    }

    async fn is_finished(&self) -> Result<bool, FrontierError> {
        retrying!(
            sqlx::query_scalar(
                "SELECT NOT EXISTS (SELECT 1 FROM crawl_frontier WHERE crawl = $1) \
                   OR (c.max_pages IS NOT NULL AND c.done >= c.max_pages \
                       AND NOT EXISTS (SELECT 1 FROM crawl_frontier \
                                       WHERE crawl = $1 AND lease_until > now())) \
                 FROM crawls c WHERE c.key = $1",
            )
            .bind(self.key)
            .fetch_one(&self.pool)
        )
    }
}
