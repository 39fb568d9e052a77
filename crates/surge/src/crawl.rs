//! `surge crawl`: the crawler on a local crawl directory, JSONL records
//! streamed out, a progress line on a terminal and a summary at the end.
//!
//! With `--dir DIR` the crawl's state lives in DIR (kill -9 safe, continue
//! with `--resume DIR`); without, in a temporary directory removed at the
//! end. The distributed frontiers (`--broker`) plug in at
//! [`open_frontier`].

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use surge_crawl::frontier::LocalFrontier;
use surge_crawl::url_norm::{NormaliseOptions, normalise_str};
use surge_crawl::{
    AnyFrontier, CrawlConfig, CrawlSummary, Crawler, Frontier, PageRecord, ScopeConfig,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cli::{CrawlArgs, ProgressMode};

/// `surge crawl`'s settings, validated.
pub(crate) struct Settings {
    config: CrawlConfig,
    /// The crawl directory (`None`: a temporary one).
    dir: Option<PathBuf>,
    resume: bool,
    output: Option<PathBuf>,
    progress: bool,
    /// `--broker` and how many `crawl.join` tasks to enqueue.
    broker: Option<(String, u32)>,
}

fn seconds(flag: &str, s: f64) -> anyhow::Result<Duration> {
    if s.is_finite() && s > 0.0 && s <= 30.0 * 86_400.0 {
        Ok(Duration::from_secs_f64(s))
    } else {
        bail!("{flag} must be a number of seconds in (0, 2592000], got {s}")
    }
}

impl Settings {
    pub(crate) fn resolve(a: CrawlArgs) -> anyhow::Result<Settings> {
        let resume = a.resume.is_some();
        let mut config = if let Some(dir) = &a.resume {
            if !a.urls.is_empty() {
                bail!(
                    "--resume takes the start URLs from {}: give no URLs",
                    dir.display()
                );
            }
            let scope_flags = !a.allow.is_empty()
                || !a.deny.is_empty()
                || a.subdomains
                || !a.strip_query.is_empty()
                || a.depth.is_some()
                || a.no_robots
                || a.sitemaps
                || a.outlinks
                || a.user_agent.is_some();
            if scope_flags {
                bail!(
                    "--resume continues the crawl as it was started: --depth, --allow, --deny, --subdomains, \
                     --strip-query, --outlinks, --no-robots, --sitemaps and --user-agent cannot change"
                );
            }
            LocalFrontier::load_config(dir).map_err(|e| anyhow::anyhow!("--resume: {e}"))?
        } else {
            if a.urls.is_empty() {
                bail!("give at least one start URL (or --resume DIR)");
            }
            let norm = NormaliseOptions::new(&a.strip_query);
            for u in &a.urls {
                if normalise_str(u, &norm).is_none() {
                    bail!("{u:?} is not an http:// or https:// URL");
                }
            }
            if let Some(dir) = &a.dir
                && dir.join(surge_crawl::frontier::local::CONFIG_FILE).exists()
            {
                bail!(
                    "{} already holds a crawl: continue it with --resume {}",
                    dir.display(),
                    dir.display()
                );
            }
            CrawlConfig {
                start_urls: a.urls.clone(),
                scope: ScopeConfig {
                    same_host: true,
                    subdomains: a.subdomains,
                    allow: a.allow.clone(),
                    deny: a.deny.clone(),
                },
                max_depth: a.depth,
                respect_robots: !a.no_robots,
                sitemaps: a.sitemaps,
                outlinks: a.outlinks,
                strip_query: a.strip_query.clone(),
                user_agent: a
                    .user_agent
                    .clone()
                    .unwrap_or_else(surge_crawl::config::default_user_agent),
                allow_private: true,
                ..CrawlConfig::default()
            }
        };
        if let Some(n) = a.max_pages {
            if n == 0 {
                bail!("--max-pages must be at least 1");
            }
            config.max_pages = Some(n);
        }
        if let Some(s) = a.max_time {
            config.max_duration = Some(seconds("--max-time", s)?);
        }
        if let Some(n) = a.concurrency {
            if n == 0 || n > 100_000 {
                bail!("--concurrency must be in 1..=100000, got {n}");
            }
            config.concurrency = n;
        }
        if let Some(n) = a.per_host {
            if n == 0 {
                bail!("--per-host must be at least 1");
            }
            config.per_host = n;
        }
        if let Some(ms) = a.delay {
            config.min_delay = Duration::from_millis(ms);
        }
        if let Some(s) = a.timeout {
            config.timeout = seconds("--timeout", s)?;
        }
        if let Some(b) = a.max_body {
            if b == 0 {
                bail!("--max-body must be at least 1");
            }
            config.max_body_bytes = b;
        }
        config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        let output = match a.output.as_deref() {
            None | Some("-") => None,
            Some(p) => Some(PathBuf::from(p)),
        };
        let progress = match a.progress {
            ProgressMode::Auto => std::io::stderr().is_terminal(),
            ProgressMode::Always => true,
            ProgressMode::Never => false,
        };
        if let Some(url) = &a.broker
            && !surge_crawl::crawls::is_broker_url(url)
        {
            bail!("--broker takes a postgres:// or redis:// URL, got {url:?}");
        }
        if a.workers
            .is_some_and(|w| w > surge_crawl::task::MAX_WORKERS)
        {
            bail!(
                "--workers must be at most {}",
                surge_crawl::task::MAX_WORKERS
            );
        }
        Ok(Settings {
            broker: a.broker.map(|u| (u, a.workers.unwrap_or(2))),
            config,
            dir: a.resume.or(a.dir),
            resume,
            output,
            progress,
        })
    }
}

/// Opens the frontier the crawl runs on. `--broker` (distributed crawls)
/// adds its PostgreSQL / Redis frontiers here.
fn open_frontier(
    config: &CrawlConfig,
    dir: &std::path::Path,
    resume: bool,
) -> anyhow::Result<AnyFrontier> {
    if !resume {
        LocalFrontier::save_config(dir, config)
            .with_context(|| format!("cannot write to {}", dir.display()))?;
    }
    let f = LocalFrontier::open(dir, config.max_pages)
        .with_context(|| format!("cannot open {}", dir.display()))?;
    Ok(AnyFrontier::Local(f))
}

/// Runs `surge crawl`: 0 when the crawl ran (page errors are records), 1
/// when it could not go on, 2 for bad settings.
pub(crate) async fn run(s: Settings) -> ExitCode {
    match run_inner(s).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("surge crawl: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run_inner(s: Settings) -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let crawler = Crawler::new(s.config.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let temp = match &s.dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("surge-crawl-")
                .tempdir()
                .context("cannot create a temporary directory")?,
        ),
    };
    let dir = s
        .dir
        .clone()
        .or_else(|| temp.as_ref().map(|t| t.path().to_owned()))
        .context("no crawl directory")?;
    let (frontier, distributed) = match &s.broker {
        Some((url, joins)) => {
            let (f, d) = crate::crawl_broker::start(url, &s.config, *joins).await?;
            (f, Some(d))
        }
        None => (open_frontier(&s.config, &dir, s.resume)?, None),
    };

    // Records: a bounded channel to one writer thread (blocking writes off
    // the runtime).
    let (tx, mut rx) = mpsc::channel::<PageRecord>(1024);
    let out: Box<dyn Write + Send> = match &s.output {
        // Distributed: the whole crawl is written from the broker at the end.
        _ if distributed.is_some() => Box::new(std::io::sink()),
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(s.resume)
                .write(true)
                .truncate(!s.resume)
                .open(p)
                .with_context(|| format!("cannot write {}", p.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, out);
        let mut line = Vec::with_capacity(1024);
        while let Some(r) = rx.blocking_recv() {
            line.clear();
            serde_json::to_writer(&mut line, &r).map_err(std::io::Error::other)?;
            line.push(b'\n');
            w.write_all(&line)?;
            if rx.is_empty() {
                w.flush()?;
            }
        }
        w.flush()
    });

    let shutdown = CancellationToken::new();
    let signals = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            eprintln!("surge crawl: stopping (leases released; continue with --resume)");
            shutdown.cancel();
        })
    };
    let progress = s.progress.then(|| {
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
        pb.set_style(
            ProgressStyle::with_template("{spinner} {pos} pages, {per_sec}, {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        pb
    });
    let started_done = frontier.stats().await.map(|st| st.done).unwrap_or(0);
    let summary = {
        let run = crawler.run(&frontier, Some(tx), shutdown.clone());
        tokio::pin!(run);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                r = &mut run => break r,
                _ = tick.tick(), if progress.is_some() => {
                    if let (Some(pb), Ok(st)) = (&progress, frontier.stats().await) {
                        pb.set_position(st.done - started_done);
                        pb.set_message(format!("({} queued, {} in flight, {} seen)", st.queued, st.leased, st.seen));
                    }
                }
            }
        }
    };
    signals.abort();
    if let Some(pb) = &progress {
        pb.finish_and_clear();
    }
    let written = writer.await.context("the output writer failed")?;
    let summary = summary.map_err(|e| anyhow::anyhow!("{e}"))?;
    if let AnyFrontier::Local(f) = &frontier {
        f.sync().context("cannot sync the crawl directory")?;
    }
    written.context("cannot write the records")?;
    if let Some(d) = &distributed {
        let mut out: Box<dyn Write> = match &s.output {
            Some(p) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(p)
                    .with_context(|| format!("cannot write {}", p.display()))?,
            )),
            None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        };
        d.finish(&frontier, &mut out).await?;
    }
    let stats = frontier.stats().await.ok();
    print_summary(&summary, stats, s.dir.as_deref(), shutdown.is_cancelled());
    drop(frontier);
    drop(temp);
    Ok(())
}

fn print_summary(
    s: &CrawlSummary,
    stats: Option<surge_crawl::FrontierStats>,
    dir: Option<&std::path::Path>,
    interrupted: bool,
) {
    let errors: u64 = s.errors_by_category.values().sum();
    let mut msg = format!(
        "surge crawl: {} pages in {:.2} s ({:.1} pages/s), {} bytes, {} errors",
        s.pages,
        s.duration.as_secs_f64(),
        s.pages_per_sec,
        s.bytes,
        errors
    );
    if errors > 0 {
        let by: Vec<String> = s
            .errors_by_category
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        msg.push_str(&format!(" ({})", by.join(", ")));
    }
    if let Some(st) = stats {
        msg.push_str(&format!(
            "; frontier: {} done, {} queued, {} seen",
            st.done, st.queued, st.seen
        ));
    }
    eprintln!("{msg}");
    if let Some(d) = dir
        && (interrupted || stats.is_some_and(|st| st.queued > 0))
    {
        eprintln!(
            "surge crawl: not finished; continue with: surge crawl --resume {}",
            d.display()
        );
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
