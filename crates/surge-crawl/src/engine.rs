//! The crawl engine: [`Crawler`], the loop over a [`Frontier`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use surge_fetch::{FetchConfig, Fetcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::CrawlConfig;
use crate::error::CrawlError;
use crate::frontier::Frontier;
use crate::record::PageRecord;

/// What a crawl did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CrawlSummary {
    /// Records stored by this run.
    pub pages: u64,
    /// Failed pages per error category.
    pub errors_by_category: BTreeMap<String, u64>,
    /// Body bytes received.
    pub bytes: u64,
    /// Wall time of the run.
    pub duration: Duration,
    /// `pages / duration`.
    pub pages_per_sec: f64,
}

/// The crawler.
#[derive(Debug)]
pub struct Crawler {
    config: CrawlConfig,
    fetcher: Fetcher,
}

impl Crawler {
    /// A crawler with its own fetcher.
    ///
    /// # Errors
    /// [`CrawlError::Config`] for a bad setting.
    pub fn new(config: CrawlConfig) -> Result<Crawler, CrawlError> {
        config.validate()?;
        let fetcher = Fetcher::new(FetchConfig {
            concurrency: config.concurrency,
            per_host: config.per_host,
            request_timeout: config.timeout,
            max_retries: config.max_retries,
            max_body_bytes: config.max_body_bytes,
            user_agent: config.user_agent.clone(),
            ..FetchConfig::default()
        })?;
        Crawler::with_fetcher(config, fetcher)
    }

    /// A crawler on a given fetcher.
    ///
    /// # Errors
    /// [`CrawlError::Config`] for a bad setting.
    pub fn with_fetcher(config: CrawlConfig, fetcher: Fetcher) -> Result<Crawler, CrawlError> {
        config.validate()?;
        Ok(Crawler { config, fetcher })
    }

    /// The settings.
    pub fn config(&self) -> &CrawlConfig {
        &self.config
    }

    /// The fetcher.
    pub fn fetcher(&self) -> &Fetcher {
        &self.fetcher
    }

    /// Seeds the frontier with the start URLs and crawls until the frontier
    /// is finished, the time budget ends, or `shutdown` fires.
    ///
    /// # Errors
    /// [`CrawlError::Frontier`] when the frontier fails.
    pub async fn run<F: Frontier>(
        &self,
        frontier: &F,
        records: Option<mpsc::Sender<PageRecord>>,
        shutdown: CancellationToken,
    ) -> Result<CrawlSummary, CrawlError> {
        let _ = (frontier, records, shutdown);
        Err(CrawlError::Config(
            "the engine is not written yet (skeleton)".into(),
        ))
    }
}
