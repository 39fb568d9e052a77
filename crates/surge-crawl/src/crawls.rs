//! Crawls stored in a broker (PostgreSQL or Redis), so that any number of
//! workers crawl one site together: [`Crawls`] creates, lists and ends
//! them, opens their [`AnyFrontier`] and reads their records back.
//!
//! A crawl has an id (UUID v7, so ids sort by creation) and its
//! [`CrawlConfig`] is stored with it: a worker given only the id crawls
//! with the same settings.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::CrawlConfig;
use crate::engine::{CrawlSummary, Crawler};
use crate::error::{CrawlError, FrontierError};
use crate::frontier::postgres::PgCrawls;
use crate::frontier::redis::RedisCrawls;
use crate::frontier::{AnyFrontier, Frontier};
use crate::record::PageRecord;

/// Where a stored crawl stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrawlState {
    /// Not ended yet: workers may be crawling it.
    Running,
    /// The frontier ran empty (or the page budget was reached).
    Finished,
    /// Stopped before finishing: the time budget ended.
    Stopped,
}

impl CrawlState {
    /// The name stored and shown (`running`, `finished`, `stopped`).
    pub fn as_str(self) -> &'static str {
        match self {
            CrawlState::Running => "running",
            CrawlState::Finished => "finished",
            CrawlState::Stopped => "stopped",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<CrawlState> {
        [
            CrawlState::Running,
            CrawlState::Finished,
            CrawlState::Stopped,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// A stored crawl.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrawlInfo {
    /// Its id (UUID v7).
    pub id: Uuid,
    /// Its settings.
    pub config: CrawlConfig,
    /// When it was created (the broker's clock).
    pub created_at: DateTime<Utc>,
    /// When a worker saw it end.
    pub ended_at: Option<DateTime<Utc>>,
    /// Running, finished or stopped.
    pub state: CrawlState,
}

impl CrawlInfo {
    /// What is left of the time budget at `now` (`None`: no budget).
    pub fn time_left(&self, now: DateTime<Utc>) -> Option<std::time::Duration> {
        let budget = self.config.max_duration?;
        let spent = (now - self.created_at).to_std().unwrap_or_default();
        Some(budget.saturating_sub(spent))
    }
}

/// The crawls of one broker, picked by URL.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Crawls {
    /// `postgres://…` / `postgresql://…`: tables in the connection's schema.
    Postgres(PgCrawls),
    /// `redis://…` / `rediss://…`: keys under the namespace.
    Redis(RedisCrawls),
}

macro_rules! each {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            Crawls::Postgres($c) => $e,
            Crawls::Redis($c) => $e,
        }
    };
}

/// Whether `url` names a broker that can hold crawls (PostgreSQL, Redis).
pub fn is_broker_url(url: &str) -> bool {
    ["postgres://", "postgresql://", "redis://", "rediss://"]
        .iter()
        .any(|s| url.starts_with(s))
}

impl Crawls {
    /// Connects to the broker at `url`; `namespace` prefixes Redis keys
    /// (PostgreSQL uses the connection's schema instead).
    ///
    /// # Errors
    /// [`FrontierError::Backend`] for another scheme (SQLite cannot be
    /// shared by workers on several machines) or an unreachable broker.
    pub async fn connect(url: &str, namespace: &str) -> Result<Crawls, FrontierError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Crawls::Postgres(PgCrawls::connect(url, 16).await?))
        } else if url.starts_with("redis://") || url.starts_with("rediss://") {
            Ok(Crawls::Redis(RedisCrawls::connect(url, namespace).await?))
        } else {
            Err(FrontierError::Backend(
                "a distributed crawl needs a PostgreSQL (postgres://…) or Redis (redis://…) broker"
                    .to_owned(),
            ))
        }
    }

    /// Stores a new crawl under `id`; `false` (nothing changed) when it
    /// exists.
    ///
    /// # Errors
    /// [`FrontierError::Backend`].
    pub async fn create(&self, id: Uuid, config: &CrawlConfig) -> Result<bool, FrontierError> {
        each!(self, c => c.create(id, config).await)
    }

    /// The frontier of crawl `id`.
    ///
    /// # Errors
    /// [`FrontierError::NotFound`] for an unknown id.
    pub async fn open(&self, id: Uuid) -> Result<AnyFrontier, FrontierError> {
        Ok(match self {
            Crawls::Postgres(c) => AnyFrontier::Postgres(c.open(id).await?),
            Crawls::Redis(c) => AnyFrontier::Redis(c.open(id).await?),
        })
    }

    /// Crawl `id`, if stored.
    ///
    /// # Errors
    /// [`FrontierError::Backend`], [`FrontierError::Corrupt`].
    pub async fn get(&self, id: Uuid) -> Result<Option<CrawlInfo>, FrontierError> {
        each!(self, c => c.get(id).await)
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
        each!(self, c => c.list(before, limit).await)
    }

    /// Marks crawl `id` ended (the first end counts).
    ///
    /// # Errors
    /// [`FrontierError::Backend`].
    pub async fn end(&self, id: Uuid, state: CrawlState) -> Result<bool, FrontierError> {
        each!(self, c => c.end(id, state).await)
    }

    /// Up to `limit` records (JSON text) of crawl `id` after cursor `after`
    /// (0: from the start), in storage order, each with the next cursor.
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
        each!(self, c => c.pages(id, after, limit).await)
    }
}

/// What one [`Crawls::join`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Joined {
    /// The crawl.
    pub crawl: Uuid,
    /// Where the crawl stands after this run.
    pub state: CrawlState,
    /// This run's share of the work.
    pub summary: CrawlSummary,
}

impl Crawls {
    /// Crawls stored crawl `id` with its stored settings until its frontier
    /// is finished, its time budget (counted from the crawl's creation)
    /// ends, or `shutdown` fires; any number of processes may join one
    /// crawl at once. Private addresses are reached only if both the
    /// stored config and `allow_private` allow them. The first joiner to
    /// see the end marks the crawl finished or stopped.
    ///
    /// # Errors
    /// [`CrawlError::Frontier`] with [`FrontierError::NotFound`] for an
    /// unknown id; the engine's errors.
    pub async fn join(
        &self,
        id: Uuid,
        allow_private: bool,
        records: Option<mpsc::Sender<PageRecord>>,
        shutdown: CancellationToken,
    ) -> Result<Joined, CrawlError> {
        let info = self
            .get(id)
            .await?
            .ok_or_else(|| FrontierError::NotFound(id.to_string()))?;
        let frontier = self.open(id).await?;
        let joined = |state, summary| Joined {
            crawl: id,
            state,
            summary,
        };
        if info.state != CrawlState::Running {
            return Ok(joined(info.state, CrawlSummary::default()));
        }
        let mut config = info.config.clone();
        config.allow_private &= allow_private;
        let left = info.time_left(Utc::now());
        if left == Some(std::time::Duration::ZERO) {
            self.end(id, CrawlState::Stopped).await?;
            return Ok(joined(CrawlState::Stopped, CrawlSummary::default()));
        }
        config.max_duration = left;
        let summary = Crawler::new(config)?
            .run(&frontier, records, shutdown)
            .await?;
        let state = if frontier.is_finished().await? {
            CrawlState::Finished
        } else if info.time_left(Utc::now()) == Some(std::time::Duration::ZERO) {
            CrawlState::Stopped
        } else {
            // Shut down early: the crawl goes on without this process.
            return Ok(joined(CrawlState::Running, summary));
        };
        self.end(id, state).await?;
        let state = self.get(id).await?.map_or(state, |i| i.state);
        Ok(joined(state, summary))
    }

    /// The frontier's counts of crawl `id`.
    ///
    /// # Errors
    /// [`FrontierError::NotFound`] for an unknown id.
    pub async fn stats(&self, id: Uuid) -> Result<crate::frontier::FrontierStats, FrontierError> {
        self.open(id).await?.stats().await
    }
}

impl AnyFrontier {
    /// The frontier of stored crawl `id` on the broker at `url`
    /// (`postgres://…` or `redis://…`; `namespace` prefixes Redis keys).
    ///
    /// # Errors
    /// As [`Crawls::connect`] and [`Crawls::open`].
    pub async fn connect(
        url: &str,
        namespace: &str,
        id: Uuid,
    ) -> Result<AnyFrontier, FrontierError> {
        Crawls::connect(url, namespace).await?.open(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for s in [
            CrawlState::Running,
            CrawlState::Finished,
            CrawlState::Stopped,
        ] {
            assert_eq!(CrawlState::parse(s.as_str()), Some(s));
        }
        assert_eq!(CrawlState::parse("done"), None);
    }

    #[test]
    fn time_left_counts_from_creation() {
        let created = Utc::now();
        let info = CrawlInfo {
            id: Uuid::now_v7(),
            config: CrawlConfig {
                max_duration: Some(std::time::Duration::from_secs(10)),
                ..CrawlConfig::default()
            },
            created_at: created,
            ended_at: None,
            state: CrawlState::Running,
        };
        let later = created + chrono::Duration::seconds(4);
        assert_eq!(
            info.time_left(later),
            Some(std::time::Duration::from_secs(6))
        );
        let much_later = created + chrono::Duration::seconds(40);
        assert_eq!(info.time_left(much_later), Some(std::time::Duration::ZERO));
    }
}
