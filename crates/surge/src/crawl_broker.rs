//! `surge crawl --broker URL`: the crawl is stored in a PostgreSQL or
//! Redis broker, `crawl.join` tasks are enqueued there for `surge worker`
//! processes, and this process crawls too. The output is the whole
//! crawl's records (every crawler's), read back from the broker at the end.

use std::io::Write;

use anyhow::Context;
use surge_crawl::crawls::{CrawlState, Crawls};
use surge_crawl::task::join_task;
use surge_crawl::{AnyFrontier, CrawlConfig, Frontier};
use surge_queue::Broker;
use surge_queue::broker::any::redact;
use uuid::Uuid;

/// A crawl this process created on a broker.
pub(crate) struct Distributed {
    crawls: Crawls,
    id: Uuid,
}

/// Stores a new crawl of `config` on the broker at `url`, enqueues `joins`
/// `crawl.join` tasks and opens its frontier.
pub(crate) async fn start(
    url: &str,
    config: &CrawlConfig,
    joins: u32,
) -> anyhow::Result<(AnyFrontier, Distributed)> {
    let namespace = crate::queue::broker_config(1, None).namespace;
    let crawls = Crawls::connect(url, &namespace)
        .await
        .with_context(|| format!("cannot store the crawl on {}", redact(url)))?;
    let id = Uuid::now_v7();
    crawls.create(id, config).await?;
    if joins > 0 {
        let broker = crate::queue::connect(url, 2, None).await?;
        let tasks: Vec<_> = (1..=joins).map(|i| join_task(id, i)).collect();
        broker
            .enqueue(&tasks)
            .await
            .context("cannot enqueue the crawl.join tasks")?;
    }
    eprintln!(
        "surge crawl: crawl {id} on {} ({joins} crawl.join tasks for surge worker)",
        redact(url)
    );
    let frontier = crawls.open(id).await?;
    Ok((frontier, Distributed { crawls, id }))
}

impl Distributed {
    /// Marks the crawl finished if its frontier is, and writes every
    /// stored record to `out` (one JSON line each).
    pub(crate) async fn finish(
        &self,
        frontier: &AnyFrontier,
        out: &mut dyn Write,
    ) -> anyhow::Result<u64> {
        if frontier.is_finished().await? {
            self.crawls.end(self.id, CrawlState::Finished).await?;
        }
        let mut after = 0;
        let mut n = 0;
        loop {
            let chunk = self.crawls.pages(self.id, after, 1000).await?;
            let Some((last, _)) = chunk.last() else {
                out.flush()?;
                return Ok(n);
            };
            after = *last;
            for (_, record) in &chunk {
                out.write_all(record.as_bytes())?;
                out.write_all(b"\n")?;
                n += 1;
            }
        }
    }
}
