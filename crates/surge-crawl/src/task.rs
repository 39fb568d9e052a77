//! Crawls as queue work (feature `task`): two task kinds over the crawls
//! stored in the broker ([`crate::crawls`]).
//!
//! - `crawl` — args `{"config": CrawlConfig, "workers": n}` (`workers`
//!   1..=64, default 1): stores the crawl under the task's own id (so a
//!   retried attempt reopens the same crawl), enqueues `workers − 1`
//!   `crawl.join` tasks for it (unique keys `crawl.join:{id}:{i}`: a retry
//!   enqueues none twice) and joins it itself.
//! - `crawl.join` — args `{"crawl": id}`: one more crawler on a stored
//!   crawl, until its frontier is finished or its time budget ends. Each
//!   join task is one crawler (with the crawl's own `concurrency`); a
//!   worker runs as many at once as it has free slots.
//!
//! Both return this crawler's share ([`CrawlOutput`]). The broker
//! frontier's leases make a killed worker lose nothing: its URLs are
//! leased again once their leases expire, and its task is rescued by the
//! queue like any other.
//!
//! Private, loopback and link-local addresses are reached only when the
//! crawl's config allows them *and* the worker was started with
//! `--fetch-allow-private` (`allow_private` here): tasks arrive over the
//! API.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use surge_core::ErrorCategory;
use surge_queue::broker::AnyBroker;
use surge_queue::broker::postgres::PgBroker;
use surge_queue::broker::redis::RedisBroker;
use surge_queue::{
    Broker, BrokerConfig, KindSettings, NewTask, Registry, Task, TaskContext, TaskError,
};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::CrawlConfig;
use crate::crawls::{CrawlState, Crawls, Joined};
use crate::error::{CrawlError, FrontierError};

/// Most crawlers one `crawl` task asks for.
pub const MAX_WORKERS: u32 = 64;

/// Args of `crawl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrawlArgs {
    /// The crawl's settings.
    pub config: CrawlConfig,
    /// Crawlers in all: this task plus `workers − 1` `crawl.join` tasks.
    #[serde(default = "one")]
    pub workers: u32,
}

fn one() -> u32 {
    1
}

/// Args of `crawl.join`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinArgs {
    /// The stored crawl's id.
    pub crawl: Uuid,
}

/// The `crawl.join` task that adds crawler `index` to crawl `id`.
pub fn join_task(id: Uuid, index: u32) -> NewTask {
    NewTask::new(
        CrawlJoin::KIND,
        serde_json::json!({ "crawl": id.to_string() }),
    )
    .with_unique_key(format!("crawl.join:{id}:{index}"))
}

/// What a `crawl` or `crawl.join` task returns: this crawler's share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrawlOutput {
    /// The crawl.
    pub crawl: Uuid,
    /// Where the crawl stood when this crawler stopped.
    pub state: CrawlState,
    /// Records this crawler stored.
    pub pages: u64,
    /// Its failed pages per error category.
    pub errors_by_category: std::collections::BTreeMap<String, u64>,
    /// Body bytes it received.
    pub bytes: u64,
    /// How long it crawled, in seconds.
    pub seconds: f64,
}

impl From<Joined> for CrawlOutput {
    fn from(j: Joined) -> Self {
        CrawlOutput {
            crawl: j.crawl,
            state: j.state,
            pages: j.summary.pages,
            errors_by_category: j.summary.errors_by_category,
            bytes: j.summary.bytes,
            seconds: j.summary.duration.as_secs_f64(),
        }
    }
}

/// What the crawl kinds share: the broker they store crawls in (connected
/// on first use) and the address policy.
#[derive(Clone)]
pub struct CrawlKinds {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    config: BrokerConfig,
    allow_private: bool,
    crawls: OnceCell<Crawls>,
    broker: OnceCell<AnyBroker>,
}

impl std::fmt::Debug for CrawlKinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrawlKinds")
            .field("allow_private", &self.inner.allow_private)
            .finish_non_exhaustive()
    }
}

fn system(e: impl std::fmt::Display) -> TaskError {
    TaskError::new(ErrorCategory::System, e.to_string()).retryable(true)
}

fn crawl_error(e: CrawlError) -> TaskError {
    match e {
        CrawlError::Config(m) => TaskError::new(ErrorCategory::Validation, m).retryable(false),
        CrawlError::Frontier(FrontierError::NotFound(id)) => {
            TaskError::new(ErrorCategory::Validation, format!("no stored crawl {id}"))
                .retryable(false)
        }
        other => system(other),
    }
}

impl CrawlKinds {
    /// Kinds storing crawls on the broker at `url` (PostgreSQL or Redis;
    /// `config.namespace` prefixes Redis keys); private addresses allowed
    /// only with `allow_private`.
    pub fn new(url: &str, config: BrokerConfig, allow_private: bool) -> CrawlKinds {
        CrawlKinds {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                config,
                allow_private,
                crawls: OnceCell::new(),
                broker: OnceCell::new(),
            }),
        }
    }

    /// Registers `crawl` and `crawl.join` in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(CrawlStart(self.clone()));
        registry.register(CrawlJoin(self.clone()));
    }

    async fn crawls(&self) -> Result<&Crawls, TaskError> {
        self.inner
            .crawls
            .get_or_try_init(|| Crawls::connect(&self.inner.url, &self.inner.config.namespace))
            .await
            .map_err(system)
    }

    async fn broker(&self) -> Result<&AnyBroker, TaskError> {
        self.inner
            .broker
            .get_or_try_init(|| async {
                // The backends by name: `AnyBroker::connect`'s SQLite arm
                // makes its future not `Send` for every lifetime.
                let (url, config) = (&self.inner.url, &self.inner.config);
                if url.starts_with("redis") {
                    RedisBroker::connect(url, config)
                        .await
                        .map(AnyBroker::Redis)
                } else {
                    PgBroker::connect(url, config)
                        .await
                        .map(AnyBroker::Postgres)
                }
            })
            .await
            .map_err(system)
    }

    /// Joins crawl `id` until it ends or the soft time limit passes.
    async fn join(&self, ctx: &TaskContext, id: Uuid) -> Result<CrawlOutput, TaskError> {
        let crawls = self.crawls().await?;
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let watch = ctx.clone();
        let watcher = tokio::spawn(async move {
            watch.soft_limit().await;
            stop.cancel();
        });
        ctx.progress(0.0, format!("crawling {id}"));
        let joined = crawls
            .join(id, self.inner.allow_private, None, shutdown)
            .await;
        watcher.abort();
        joined.map(CrawlOutput::from).map_err(crawl_error)
    }
}

fn settings() -> KindSettings {
    KindSettings {
        // A crawler that lost its broker connection joins again.
        max_retries: 5,
        result_ttl: Duration::from_secs(7 * 86_400),
        ..KindSettings::default()
    }
}

/// The `crawl` kind (see the module docs).
#[derive(Debug, Clone)]
pub struct CrawlStart(pub CrawlKinds);

impl Task for CrawlStart {
    const KIND: &'static str = "crawl";
    type Args = CrawlArgs;
    type Output = CrawlOutput;

    async fn run(&self, ctx: TaskContext, args: CrawlArgs) -> Result<CrawlOutput, TaskError> {
        args.config.validate().map_err(crawl_error)?;
        if !(1..=MAX_WORKERS).contains(&args.workers) {
            return Err(TaskError::new(
                ErrorCategory::Validation,
                format!("workers must be 1 to {MAX_WORKERS}, got {}", args.workers),
            )
            .retryable(false));
        }
        let id = ctx.id();
        let crawls = self.0.crawls().await?;
        crawls.create(id, &args.config).await.map_err(system)?;
        let joins: Vec<NewTask> = (1..args.workers).map(|i| join_task(id, i)).collect();
        if !joins.is_empty() {
            self.0
                .broker()
                .await?
                .enqueue(&joins)
                .await
                .map_err(system)?;
        }
        self.0.join(&ctx, id).await
    }

    fn settings(&self) -> KindSettings {
        settings()
    }
}

/// The `crawl.join` kind (see the module docs).
#[derive(Debug, Clone)]
pub struct CrawlJoin(pub CrawlKinds);

impl Task for CrawlJoin {
    const KIND: &'static str = "crawl.join";
    type Args = JoinArgs;
    type Output = CrawlOutput;

    async fn run(&self, ctx: TaskContext, args: JoinArgs) -> Result<CrawlOutput, TaskError> {
        self.0.join(&ctx, args.crawl).await
    }

    fn settings(&self) -> KindSettings {
        settings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_refuse_unknown_fields_and_default_one_worker() {
        let a: CrawlArgs = serde_json::from_value(serde_json::json!({
            "config": {"start_urls": ["http://a.test/"]}
        }))
        .unwrap();
        assert_eq!(a.workers, 1);
        assert!(
            serde_json::from_value::<CrawlArgs>(serde_json::json!({
                "config": {}, "wrokers": 2
            }))
            .is_err()
        );
        assert!(serde_json::from_value::<JoinArgs>(serde_json::json!({"crawl": "x"})).is_err());
    }

    #[test]
    fn join_tasks_are_unique_per_crawler() {
        let id = Uuid::now_v7();
        let a = join_task(id, 1);
        let b = join_task(id, 2);
        assert_eq!(a.kind, "crawl.join");
        assert_ne!(a.unique_key, b.unique_key);
        assert_eq!(a.args["crawl"], id.to_string());
    }
}
