//! `surge bench queue`: throughput and wake-up latency of the task queue,
//! measured with the workers `surge serve` embeds (in-process [`Worker`]s
//! sharing one broker pool), on storage made for the run and removed after
//! it.
//!
//! Phases, each on its own queue of the same database, schema or namespace:
//! - **burn-down**: N no-op tasks are inserted in batches of 1,000 (not
//!   timed); then the workers start, and the clock runs until the broker
//!   counts N succeeded.
//! - **submit** (only when named): the same submissions to a queue no worker
//!   takes: submissions alone, the ceiling of end-to-end.
//! - **end-to-end**: the workers run, idle; S submitters submit N no-op
//!   tasks, one `submit` call per task (Celery's `.delay()`); the clock runs
//!   from the first submission until the broker counts N succeeded.
//! - **latency**: the workers are idle; one task every 2 ms.
//!
//! Submit-to-start latency comes from each task's record (`started_at -
//! created_at`, both stamped by the broker's clock), read back after the
//! phase; and, as seen in this process, from building the task just before
//! `submit` to its handler starting (an [`Observer`]). Histograms are HDR
//! (3 significant digits), in microseconds.
//!
//! "Done" is counted in process (the observer) and then confirmed with
//! [`Broker::counts`]: a phase ends when the `counts` call that first sees
//! every task succeeded was issued (their acknowledgements were committed
//! before it).
//!
//! [`Worker`]: surge_queue::Worker

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::json;
use surge_queue::broker::AnyBroker;
use surge_queue::broker::any::redact;
use surge_queue::model::TaskFilter;
use surge_queue::{
    Broker, BrokerConfig, BrokerError, Client, NewTask, Observer, Registry, TaskState,
    WorkerConfig, WorkerReport,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::{BenchPhase, BenchQueueArgs, LogFormat};

const BURN_QUEUE: &str = "bench-burn";
const E2E_QUEUE: &str = "bench-e2e";
const LATENCY_QUEUE: &str = "bench-latency";
/// No worker takes this queue: the submit phase measures submissions alone.
const SUBMIT_QUEUE: &str = "bench-submit";
/// Tasks per `submit_many` when pre-inserting.
const INSERT_BATCH: u64 = 1_000;
/// Records per `list` page when reading latencies back.
const LIST_PAGE: u32 = 1_000;
/// A phase fails when no task finished for this long.
const STALL: Duration = Duration::from_secs(60);
/// Broker pool size: `surge serve`'s default.
const POOL: u32 = 16;
/// Time for idle workers to settle in `wait_for_work` before a phase that
/// needs them idle.
const SETTLE: Duration = Duration::from_millis(300);
const MAX_TASKS: u64 = 10_000_000;
/// The `schema` of `surge bench queue --json`.
const QUEUE_SCHEMA: &str = "surge-bench-queue";
/// Its version; `surge bench report` refuses others.
const QUEUE_SCHEMA_VERSION: u32 = 1;

/// The validated settings of one run.
#[derive(Debug)]
struct Plan {
    target: Target,
    url: String,
    overwrite: bool,
    tasks: u64,
    concurrency: usize,
    workers: usize,
    submitters: usize,
    latency_tasks: u64,
    latency_interval: Duration,
    phases: Vec<BenchPhase>,
    json: bool,
}

impl Plan {
    fn runs(&self, phase: BenchPhase) -> bool {
        self.phases.contains(&phase)
    }
}

/// The backend named by the URL.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// The database file.
    Sqlite(PathBuf),
    Postgres,
    Redis,
}

/// Checks the flags (stage two of the CLI: raw flags to a plan).
fn plan(args: BenchQueueArgs) -> anyhow::Result<Plan> {
    let target = target(&args.broker)?;
    if !(1..=MAX_TASKS).contains(&args.tasks) {
        bail!(
            "--tasks must be between 1 and {MAX_TASKS}, got {}",
            args.tasks
        );
    }
    if !(1..=1_000_000).contains(&args.concurrency) {
        bail!(
            "--concurrency must be between 1 and 1000000, got {}",
            args.concurrency
        );
    }
    if !(1..=64).contains(&args.workers) {
        bail!("--workers must be between 1 and 64, got {}", args.workers);
    }
    if !(1..=1_024).contains(&args.submitters) {
        bail!(
            "--submitters must be between 1 and 1024, got {}",
            args.submitters
        );
    }
    if args.submitters as u64 > args.tasks {
        bail!(
            "--submitters ({}) cannot exceed --tasks ({})",
            args.submitters,
            args.tasks
        );
    }
    if !(1..=MAX_TASKS).contains(&args.latency_tasks) {
        bail!(
            "--latency-tasks must be between 1 and {MAX_TASKS}, got {}",
            args.latency_tasks
        );
    }
    let ms = args.latency_interval_ms;
    if !(ms.is_finite() && ms > 0.0 && ms <= 10_000.0) {
        bail!("--latency-interval-ms must be in (0, 10000], got {ms}");
    }
    let mut phases = Vec::new();
    for p in [
        BenchPhase::Burn,
        BenchPhase::Submit,
        BenchPhase::E2e,
        BenchPhase::Latency,
    ] {
        if args.phase.contains(&p) {
            phases.push(p);
        }
    }
    if phases.is_empty() {
        bail!("--phase names no phase; use burn, e2e, latency (comma-separated)");
    }
    Ok(Plan {
        target,
        url: args.broker,
        overwrite: args.overwrite,
        tasks: args.tasks,
        concurrency: args.concurrency,
        workers: args.workers,
        submitters: args.submitters,
        latency_tasks: args.latency_tasks,
        latency_interval: Duration::from_secs_f64(ms / 1e3),
        phases,
        json: args.json,
    })
}

fn target(url: &str) -> anyhow::Result<Target> {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() || path.contains(":memory:") || url.contains("mode=memory") {
            bail!(
                "--broker {url}: the benchmark needs a SQLite file it can create and delete, \
                 e.g. sqlite://surge-bench.db"
            );
        }
        Ok(Target::Sqlite(PathBuf::from(path)))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        if url.contains("search_path") || url.contains("options=") {
            bail!(
                "--broker {}: leave out `options`/`search_path`: the benchmark runs in a schema \
                 of its own, created and dropped by it",
                redact(url)
            );
        }
        Ok(Target::Postgres)
    } else if url.starts_with("redis://") || url.starts_with("rediss://") {
        Ok(Target::Redis)
    } else {
        bail!(
            "--broker {}: unsupported URL; use sqlite://PATH, postgres://USER@HOST/DB or \
             redis://HOST:PORT",
            redact(url)
        )
    }
}

/// `surge bench queue`.
pub(crate) async fn run(args: BenchQueueArgs) -> anyhow::Result<()> {
    let plan = plan(args)?;
    crate::logging::init(LogFormat::Human, Some("warn"))?;
    let storage = Storage::create(&plan).await?;
    // Ctrl-C still removes the storage (the workers stop when `measure` is
    // dropped: see `Workers`).
    let measured = tokio::select! {
        r = measure(&plan, &storage) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    let removed = storage.remove().await;
    let report = measured?;
    let mut out = std::io::stdout().lock();
    if plan.json {
        serde_json::to_writer(&mut out, &report)?;
        std::io::Write::write_all(&mut out, b"\n")?;
    } else {
        print_table(&mut out, &report)?;
    }
    removed.with_context(|| format!("could not remove {}", storage.describe()))
}

/// Where one run's tasks live: made fresh, removed at the end.
#[derive(Debug)]
enum Storage {
    Sqlite {
        path: PathBuf,
        url: String,
    },
    Postgres {
        admin_url: String,
        schema: String,
        url: String,
    },
    Redis {
        url: String,
        namespace: String,
    },
}

impl Storage {
    async fn create(plan: &Plan) -> anyhow::Result<Storage> {
        match &plan.target {
            Target::Sqlite(path) => {
                if path.exists() {
                    if !plan.overwrite {
                        bail!(
                            "{} exists: the benchmark makes its own database and deletes it at \
                             the end; remove the file, name another (--broker sqlite://OTHER.db) \
                             or pass --overwrite",
                            path.display()
                        );
                    }
                    remove_sqlite(path)?;
                } else {
                    // Stale WAL files of a file that is gone would be replayed.
                    remove_sqlite(path)?;
                }
                Ok(Storage::Sqlite {
                    path: path.clone(),
                    url: plan.url.clone(),
                })
            }
            Target::Postgres => {
                let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
                let mut admin = pg_admin(&plan.url).await?;
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&mut admin)
                    .await
                    .with_context(|| format!("cannot create schema {schema}"))?;
                let sep = if plan.url.contains('?') { '&' } else { '?' };
                Ok(Storage::Postgres {
                    url: format!("{}{sep}options=-c%20search_path%3D{schema}", plan.url),
                    admin_url: plan.url.clone(),
                    schema,
                })
            }
            Target::Redis => Ok(Storage::Redis {
                url: plan.url.clone(),
                namespace: format!("surge-bench-{}", uuid::Uuid::new_v4().simple()),
            }),
        }
    }

    /// The URL the broker connects with.
    fn url(&self) -> &str {
        match self {
            Storage::Sqlite { url, .. }
            | Storage::Postgres { url, .. }
            | Storage::Redis { url, .. } => url,
        }
    }

    fn config(&self) -> BrokerConfig {
        let mut config = BrokerConfig {
            max_connections: POOL,
            ..BrokerConfig::default()
        };
        if let Storage::Redis { namespace, .. } = self {
            config.namespace.clone_from(namespace);
        }
        config
    }

    fn describe(&self) -> String {
        match self {
            Storage::Sqlite { path, .. } => format!("fresh file {}", path.display()),
            Storage::Postgres { schema, .. } => format!("schema {schema}"),
            Storage::Redis { namespace, .. } => format!("namespace {namespace}"),
        }
    }

    async fn remove(&self) -> anyhow::Result<()> {
        match self {
            Storage::Sqlite { path, .. } => remove_sqlite(path),
            Storage::Postgres {
                admin_url, schema, ..
            } => {
                let mut admin = pg_admin(admin_url).await?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .execute(&mut admin)
                    .await?;
                Ok(())
            }
            Storage::Redis { url, namespace } => remove_redis_keys(url, namespace).await,
        }
    }
}

fn remove_sqlite(path: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", p.display())),
        }
    }
    Ok(())
}

async fn pg_admin(url: &str) -> anyhow::Result<sqlx::PgConnection> {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(url)))
}

/// Deletes every key of `namespace` (`{namespace}:*`).
async fn remove_redis_keys(url: &str, namespace: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{namespace}:*"))
            .arg("COUNT")
            .arg(1_000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let () = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// A histogram of microseconds, 1 µs to 1 hour, 3 significant digits.
fn histogram() -> Histogram<u64> {
    // Constant, valid bounds: this cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// What the workers tell the benchmark: attempts finished, and in-process
/// submit-to-start (from the task's `run_at`, set when it was built just
/// before `submit`, to its handler starting).
struct Tally {
    finished: AtomicU64,
    started: Mutex<Histogram<u64>>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            finished: AtomicU64::new(0),
            started: Mutex::new(histogram()),
        }
    }

    fn finished(&self) -> u64 {
        self.finished.load(Ordering::Relaxed)
    }

    fn reset(&self) {
        self.finished.store(0, Ordering::Relaxed);
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reset();
    }

    fn started(&self) -> Histogram<u64> {
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Observer for Tally {
    fn task_started(&self, _kind: &str, queued: Duration) {
        let us = u64::try_from(queued.as_micros()).unwrap_or(u64::MAX);
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .saturating_record(us);
    }

    fn task_finished(&self, _kind: &str, _outcome: &'static str, _run_time: Duration) {
        self.finished.fetch_add(1, Ordering::Relaxed);
    }
}

/// The in-process workers. They stop when [`Workers::stop`] is called or
/// when this is dropped (the stop channel closes).
struct Workers {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<Result<WorkerReport, BrokerError>>>,
}

impl Workers {
    fn start(
        plan: &Plan,
        storage: &Storage,
        broker: &AnyBroker,
        registry: &Arc<Registry>,
        config: &WorkerConfig,
        tally: &Arc<Tally>,
    ) -> Workers {
        let stop = watch::Sender::new(false);
        let heartbeat = BrokerConfig {
            max_connections: 1,
            ..storage.config()
        };
        let handles = (0..plan.workers)
            .map(|_| {
                let worker = crate::queue::worker_with(
                    broker.clone(),
                    storage.url(),
                    heartbeat.clone(),
                    Arc::clone(registry),
                    config.clone(),
                    Arc::clone(tally) as Arc<dyn Observer>,
                );
                let mut stopped = stop.subscribe();
                tokio::spawn(worker.run(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                }))
            })
            .collect();
        Workers { stop, handles }
    }

    /// Fails if a worker has already ended (it should run until stopped).
    fn check(&self) -> anyhow::Result<()> {
        if self.handles.iter().any(JoinHandle::is_finished) {
            bail!("a worker stopped during the run (see the log above)");
        }
        Ok(())
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.send_replace(true);
        for h in self.handles {
            h.await.context("a worker panicked")??;
        }
        Ok(())
    }
}

/// Submit-to-start latency summary, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Latency {
    samples: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    /// Absent in results written before it was added.
    #[serde(default)]
    p999_ms: Option<f64>,
    max_ms: f64,
    mean_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Option<Latency> {
        let ms = |us: u64| us as f64 / 1e3;
        (!h.is_empty()).then(|| Latency {
            samples: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: Some(ms(h.value_at_quantile(0.999))),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1e3,
        })
    }
}

/// The burn-down phase.
#[derive(Debug, Serialize, Deserialize)]
struct BurnDown {
    tasks: u64,
    /// Pre-insertion (not part of the rate).
    insert_seconds: f64,
    seconds: f64,
    tasks_per_sec: f64,
}

/// The submit phase: submissions alone, no worker taking them.
#[derive(Debug, Serialize, Deserialize)]
struct SubmitOnly {
    tasks: u64,
    submitters: usize,
    seconds: f64,
    submits_per_sec: f64,
}

/// The end-to-end phase.
#[derive(Debug, Serialize, Deserialize)]
struct EndToEnd {
    tasks: u64,
    submitters: usize,
    /// First submission to last submission returned.
    submit_seconds: f64,
    submits_per_sec: f64,
    /// First submission to every task counted succeeded.
    seconds: f64,
    tasks_per_sec: f64,
    /// From the records: `started_at - created_at`.
    start_latency: Option<Latency>,
    /// In process: task built (just before `submit`) to handler started.
    client_start_latency: Option<Latency>,
}

/// The latency phase.
#[derive(Debug, Serialize, Deserialize)]
struct Wakeup {
    tasks: u64,
    interval_ms: f64,
    seconds: f64,
    start_latency: Option<Latency>,
    client_start_latency: Option<Latency>,
}

/// What `surge bench queue` prints.
#[derive(Debug, Serialize, Deserialize)]
struct Report {
    /// [`QUEUE_SCHEMA`]: `surge bench report` reads this document.
    schema: String,
    /// [`QUEUE_SCHEMA_VERSION`].
    schema_version: u32,
    /// When the run started (RFC 3339, UTC).
    started_at: String,
    machine: surge_bench::machine::Machine,
    surge_version: String,
    backend: String,
    broker: String,
    storage: String,
    workers: usize,
    concurrency: usize,
    claim_batch: usize,
    burn_down: Option<BurnDown>,
    submit: Option<SubmitOnly>,
    end_to_end: Option<EndToEnd>,
    latency: Option<Wakeup>,
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

async fn measure(plan: &Plan, storage: &Storage) -> anyhow::Result<Report> {
    let broker = AnyBroker::connect(storage.url(), &storage.config())
        .await
        .with_context(|| format!("cannot open the task broker {}", redact(&plan.url)))?;
    let registry = Arc::new(Registry::with_builtins());
    let client = Client::new(broker.clone(), Arc::clone(&registry));
    let tally = Arc::new(Tally::new());
    let queues = [BURN_QUEUE, E2E_QUEUE, LATENCY_QUEUE]
        .map(str::to_owned)
        .to_vec();
    // The settings `surge serve` gives its embedded workers.
    let config = crate::config::worker_config(
        plan.concurrency,
        queues,
        Duration::from_secs(10),
        Duration::from_secs(30),
    )?;
    let mut report = Report {
        schema: QUEUE_SCHEMA.to_owned(),
        schema_version: QUEUE_SCHEMA_VERSION,
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        machine: surge_bench::machine::Machine::describe(),
        surge_version: env!("CARGO_PKG_VERSION").to_owned(),
        backend: broker.backend().to_owned(),
        broker: redact(&plan.url),
        storage: storage.describe(),
        workers: plan.workers,
        concurrency: plan.concurrency,
        claim_batch: config.claim_batch,
        burn_down: None,
        submit: None,
        end_to_end: None,
        latency: None,
    };
    let start = || Workers::start(plan, storage, &broker, &registry, &config, &tally);

    let workers = if plan.runs(BenchPhase::Burn) {
        progress(
            plan,
            format_args!("burn-down: inserting {} tasks", plan.tasks),
        );
        let inserted = Instant::now();
        insert(&client, BURN_QUEUE, plan.tasks).await?;
        let insert_took = inserted.elapsed();
        progress(plan, format_args!("burn-down: starting the workers"));
        tally.reset();
        let t0 = Instant::now();
        let workers = start();
        let end = wait_done(&broker, &tally, &workers, BURN_QUEUE, plan.tasks).await?;
        let took = end - t0;
        report.burn_down = Some(BurnDown {
            tasks: plan.tasks,
            insert_seconds: insert_took.as_secs_f64(),
            seconds: took.as_secs_f64(),
            tasks_per_sec: rate(plan.tasks, took),
        });
        workers
    } else {
        start()
    };

    if plan.runs(BenchPhase::Submit) {
        settle(
            plan,
            &workers,
            format_args!(
                "submit: {} tasks, {} submitter(s), to a queue no worker takes",
                plan.tasks, plan.submitters
            ),
        )
        .await?;
        let took = submit_all(&client, SUBMIT_QUEUE, plan.tasks, plan.submitters).await?;
        report.submit = Some(SubmitOnly {
            tasks: plan.tasks,
            submitters: plan.submitters,
            seconds: took.as_secs_f64(),
            submits_per_sec: rate(plan.tasks, took),
        });
    }

    if plan.runs(BenchPhase::E2e) {
        settle(
            plan,
            &workers,
            format_args!(
                "end-to-end: {} tasks, {} submitter(s)",
                plan.tasks, plan.submitters
            ),
        )
        .await?;
        tally.reset();
        let t0 = Instant::now();
        let submitted = submit_all(&client, E2E_QUEUE, plan.tasks, plan.submitters).await?;
        let end = wait_done(&broker, &tally, &workers, E2E_QUEUE, plan.tasks).await?;
        let took = end - t0;
        report.end_to_end = Some(EndToEnd {
            tasks: plan.tasks,
            submitters: plan.submitters,
            submit_seconds: submitted.as_secs_f64(),
            submits_per_sec: rate(plan.tasks, submitted),
            seconds: took.as_secs_f64(),
            tasks_per_sec: rate(plan.tasks, took),
            start_latency: Latency::of(&record_latencies(&broker, E2E_QUEUE).await?),
            client_start_latency: Latency::of(&tally.started()),
        });
    }

    if plan.runs(BenchPhase::Latency) {
        settle(
            plan,
            &workers,
            format_args!(
                "latency: {} tasks, one every {:?}",
                plan.latency_tasks, plan.latency_interval
            ),
        )
        .await?;
        tally.reset();
        let mut tick = tokio::time::interval(plan.latency_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let t0 = Instant::now();
        for i in 0..plan.latency_tasks {
            tick.tick().await;
            client.submit(task(&client, LATENCY_QUEUE, i)?).await?;
        }
        let end = wait_done(&broker, &tally, &workers, LATENCY_QUEUE, plan.latency_tasks).await?;
        report.latency = Some(Wakeup {
            tasks: plan.latency_tasks,
            interval_ms: plan.latency_interval.as_secs_f64() * 1e3,
            seconds: (end - t0).as_secs_f64(),
            start_latency: Latency::of(&record_latencies(&broker, LATENCY_QUEUE).await?),
            client_start_latency: Latency::of(&tally.started()),
        });
    }

    workers.stop().await?;
    Ok(report)
}

/// Submits `n` no-op tasks to `queue` from `submitters` concurrent loops,
/// one `submit` call per task; returns how long that took.
async fn submit_all(
    client: &Client<AnyBroker>,
    queue: &'static str,
    n: u64,
    submitters: usize,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let loops: Vec<_> = shares(n, submitters)
        .into_iter()
        .map(|range| {
            let client = client.clone();
            tokio::spawn(async move {
                for i in range {
                    client.submit(task(&client, queue, i)?).await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for l in loops {
        l.await.context("a submitter panicked")??;
    }
    Ok(t0.elapsed())
}

/// Lets the workers go idle (waiting for work), then announces a phase.
async fn settle(
    plan: &Plan,
    workers: &Workers,
    phase: std::fmt::Arguments<'_>,
) -> anyhow::Result<()> {
    tokio::time::sleep(SETTLE).await;
    workers.check()?;
    progress(plan, phase);
    Ok(())
}

/// A progress line on stderr (the table or JSON goes to stdout).
fn progress(plan: &Plan, what: std::fmt::Arguments<'_>) {
    if !plan.json {
        eprintln!("[bench queue] {what}");
    }
}

/// `0..n` cut into `parts` contiguous ranges whose sizes differ by at most 1.
fn shares(n: u64, parts: usize) -> Vec<std::ops::Range<u64>> {
    let parts = parts as u64;
    (0..parts)
        .map(|k| (n * k / parts)..(n * (k + 1) / parts))
        .collect()
}

/// The `i`th no-op task of `queue` (its args are `i`, as the Celery peer's).
fn task(client: &Client<AnyBroker>, queue: &str, i: u64) -> anyhow::Result<NewTask> {
    Ok(client.task("noop", json!(i))?.with_queue(queue))
}

/// Inserts `n` no-op tasks in batches.
async fn insert(client: &Client<AnyBroker>, queue: &str, n: u64) -> anyhow::Result<()> {
    let mut i = 0;
    while i < n {
        let end = (i + INSERT_BATCH).min(n);
        let batch = (i..end)
            .map(|i| task(client, queue, i))
            .collect::<anyhow::Result<Vec<_>>>()?;
        client.submit_many(&batch).await?;
        i = end;
    }
    Ok(())
}

/// Tasks of `queue` the broker counts succeeded.
async fn succeeded(broker: &AnyBroker, queue: &str) -> anyhow::Result<u64> {
    Ok(broker
        .counts()
        .await?
        .iter()
        .filter(|c| c.queue == queue && c.state == TaskState::Succeeded)
        .map(|c| c.count)
        .sum())
}

/// Waits until the broker counts `n` succeeded tasks on `queue`; returns
/// when the `counts` call that first saw them was issued.
async fn wait_done(
    broker: &AnyBroker,
    tally: &Tally,
    workers: &Workers,
    queue: &str,
    n: u64,
) -> anyhow::Result<Instant> {
    let mut seen = tally.finished();
    let mut moved = Instant::now();
    // In process first: an atomic load costs nothing, `counts` does.
    while seen < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let now = tally.finished();
        if now != seen {
            seen = now;
            moved = Instant::now();
        } else if moved.elapsed() > STALL {
            bail!(
                "{queue}: no task finished for {STALL:?}; {seen} of {n} finished; counts: {}",
                counts_text(broker, queue).await
            );
        }
        workers.check()?;
    }
    let confirming = Instant::now();
    loop {
        let asked = Instant::now();
        if succeeded(broker, queue).await? >= n {
            return Ok(asked);
        }
        if confirming.elapsed() > STALL {
            bail!(
                "{queue}: every attempt finished but the broker does not count {n} succeeded \
                 after {STALL:?}; counts: {}",
                counts_text(broker, queue).await
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn counts_text(broker: &AnyBroker, queue: &str) -> String {
    match broker.counts().await {
        Ok(counts) => counts
            .iter()
            .filter(|c| c.queue == queue)
            .map(|c| format!("{} {}", c.state, c.count))
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) => format!("unavailable ({e})"),
    }
}

/// `started_at - created_at` of every started task of `queue`, read back
/// by pages.
async fn record_latencies(broker: &AnyBroker, queue: &str) -> anyhow::Result<Histogram<u64>> {
    let mut h = histogram();
    let mut before = None;
    loop {
        let page = broker
            .list(&TaskFilter {
                queue: Some(queue.to_owned()),
                before,
                limit: LIST_PAGE,
                ..TaskFilter::default()
            })
            .await?;
        for t in &page {
            if let Some(started) = t.started_at {
                let us = (started - t.created_at).num_microseconds().unwrap_or(0);
                h.saturating_record(u64::try_from(us).unwrap_or(0));
            }
        }
        if page.len() < LIST_PAGE as usize {
            return Ok(h);
        }
        before = page.last().map(|t| t.id);
    }
}

/// `1234567.8` → `1,234,568`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn print_table(out: &mut impl std::io::Write, r: &Report) -> anyhow::Result<()> {
    writeln!(
        out,
        "surge bench queue: {} ({}), {} worker(s) x {} slots, claim batch {}",
        r.backend, r.storage, r.workers, r.concurrency, r.claim_batch
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<11} {:>8} {:>8} {:>9}   {:>9} {:>9} {:>9}   {:>13}",
        "phase", "tasks", "seconds", "tasks/s", "start p50", "p99", "max", "in-proc p50/99"
    )?;
    let lat = |l: Option<Latency>| match l {
        Some(l) => (
            format!("{:.2} ms", l.p50_ms),
            format!("{:.2} ms", l.p99_ms),
            format!("{:.2} ms", l.max_ms),
        ),
        None => ("-".into(), "-".into(), "-".into()),
    };
    let client = |l: Option<Latency>| {
        l.map_or_else(
            || "-".to_owned(),
            |l| format!("{:.2}/{:.2} ms", l.p50_ms, l.p99_ms),
        )
    };
    if let Some(b) = &r.burn_down {
        writeln!(
            out,
            "{:<11} {:>8} {:>8.3} {:>9}   {:>9} {:>9} {:>9}   {:>13}",
            "burn-down",
            b.tasks,
            b.seconds,
            thousands(b.tasks_per_sec),
            "-",
            "-",
            "-",
            "-"
        )?;
    }
    if let Some(s) = &r.submit {
        writeln!(
            out,
            "{:<11} {:>8} {:>8.3} {:>9}   {:>9} {:>9} {:>9}   {:>13}",
            "submit",
            s.tasks,
            s.seconds,
            thousands(s.submits_per_sec),
            "-",
            "-",
            "-",
            "-"
        )?;
    }
    if let Some(e) = &r.end_to_end {
        let (p50, p99, max) = lat(e.start_latency);
        writeln!(
            out,
            "{:<11} {:>8} {:>8.3} {:>9}   {p50:>9} {p99:>9} {max:>9}   {:>13}",
            "end-to-end",
            e.tasks,
            e.seconds,
            thousands(e.tasks_per_sec),
            client(e.client_start_latency)
        )?;
    }
    if let Some(l) = &r.latency {
        let (p50, p99, max) = lat(l.start_latency);
        writeln!(
            out,
            "{:<11} {:>8} {:>8.3} {:>9}   {p50:>9} {p99:>9} {max:>9}   {:>13}",
            "latency",
            l.tasks,
            l.seconds,
            "-",
            client(l.client_start_latency)
        )?;
    }
    writeln!(out)?;
    if let Some(b) = &r.burn_down {
        writeln!(
            out,
            "burn-down:  tasks inserted beforehand in {:.2} s (batches of {INSERT_BATCH}; not timed); \
             clock from starting the workers to the broker counting all succeeded",
            b.insert_seconds
        )?;
    }
    if let Some(s) = &r.submit {
        writeln!(
            out,
            "submit:     {} submitter(s), one submit call per task, to a queue no worker takes \
             (the ceiling of end-to-end)",
            s.submitters
        )?;
    }
    if let Some(e) = &r.end_to_end {
        writeln!(
            out,
            "end-to-end: {} submitter(s), one submit call per task: {} submits/s; clock from the \
             first submit to the broker counting all succeeded",
            e.submitters,
            thousands(e.submits_per_sec)
        )?;
    }
    if let Some(l) = &r.latency {
        writeln!(
            out,
            "latency:    one task every {} ms with the workers idle",
            l.interval_ms
        )?;
    }
    writeln!(
        out,
        "start p50/p99/max: submit-to-start from each task's record (started_at - created_at, \
         the broker's clock); in-proc: from building the task just before submit to its \
         handler starting"
    )?;
    Ok(())
}

/// Whether `text` is a `surge bench queue --json` document (by its
/// `schema`), so that `surge bench report` can read it.
pub(crate) fn is_queue_results(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("schema")?.as_str().map(|s| s == QUEUE_SCHEMA))
        .unwrap_or(false)
}

impl Latency {
    fn to_report(self) -> surge_bench::Latency {
        surge_bench::Latency {
            samples: self.samples,
            mean_ms: self.mean_ms,
            // Not kept by this benchmark: the median is the closest bound
            // the report shows.
            min_ms: self.p50_ms.min(self.mean_ms),
            p50_ms: self.p50_ms,
            p90_ms: self.p90_ms,
            p99_ms: self.p99_ms,
            p999_ms: self.p999_ms,
            max_ms: self.max_ms,
        }
    }
}

fn queue_point(
    load: f64,
    tasks: u64,
    seconds: f64,
    rate: f64,
    latency: Option<Latency>,
) -> surge_bench::Point {
    surge_bench::Point {
        load,
        connections: None,
        seconds,
        requests: tasks,
        throughput: rate,
        latency: latency.map(Latency::to_report),
        uncorrected_latency: None,
        in_flight_share: None,
        errors: surge_bench::results::ErrorCounts::default(),
        statuses: Default::default(),
        bytes: 0,
        first_error: None,
    }
}

/// Converts a `surge bench queue --json` document into the report format:
/// an end-to-end suite (load: concurrent submitters; latency:
/// submit-to-start from the task records) and a burn-down suite (load:
/// worker slots), one series per backend; the submit and idle-latency
/// phases become notes.
///
/// # Errors
/// When it is not such a document, or of another schema version.
pub(crate) fn results_from_json(path: &Path, text: &str) -> anyhow::Result<surge_bench::Results> {
    let value: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("{}: not JSON", path.display()))?;
    let version = value
        .get("schema_version")
        .and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(QUEUE_SCHEMA_VERSION)) {
        return Err(surge_bench::BenchError::SchemaVersion {
            path: path.to_owned(),
            schema: QUEUE_SCHEMA.to_owned(),
            found: version.unwrap_or(0),
            supported: QUEUE_SCHEMA_VERSION,
        }
        .into());
    }
    let r: Report = serde_json::from_value(value)
        .with_context(|| format!("{}: not a surge bench queue result", path.display()))?;
    let label = format!("queue-{}", r.backend);
    let series = |points: Vec<surge_bench::Point>| surge_bench::Series {
        label: label.clone(),
        target: None,
        measured_at: None,
        points,
    };
    let mut notes = Vec::new();
    if let Some(s) = &r.submit {
        notes.push(format!(
            "{label}: submissions alone ({} tasks, {} submitters, no worker): {:.0} submits/s",
            s.tasks, s.submitters, s.submits_per_sec
        ));
    }
    if let Some(w) = &r.latency
        && let Some(l) = w.start_latency
    {
        notes.push(format!(
            "{label}: submit-to-start with idle workers ({} tasks, one every {} ms): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            w.tasks, w.interval_ms, l.p50_ms, l.p99_ms, l.max_ms
        ));
    }
    let slots = (r.workers * r.concurrency) as f64;
    let mut suites = Vec::new();
    if let Some(e) = &r.end_to_end {
        suites.push(surge_bench::Suite {
            title: "Task queue end-to-end".to_owned(),
            axis: surge_bench::results::LoadAxis::Submitters,
            throughput_unit: "tasks/s".to_owned(),
            latency_meaning: "submit-to-start of each task, from its record (started_at - created_at)"
                .to_owned(),
            plan: None,
            notes: std::mem::take(&mut notes),
            series: vec![series(vec![queue_point(
                e.submitters as f64,
                e.tasks,
                e.seconds,
                e.tasks_per_sec,
                e.start_latency,
            )])],
        });
    }
    if let Some(b) = &r.burn_down {
        suites.push(surge_bench::Suite {
            title: "Task queue burn-down".to_owned(),
            axis: surge_bench::results::LoadAxis::WorkerSlots,
            throughput_unit: "tasks/s".to_owned(),
            latency_meaning: "not measured in this phase".to_owned(),
            plan: None,
            notes: std::mem::take(&mut notes),
            series: vec![series(vec![queue_point(
                slots,
                b.tasks,
                b.seconds,
                b.tasks_per_sec,
                None,
            )])],
        });
    }
    if suites.is_empty() {
        bail!(
            "{}: this queue run has no end-to-end or burn-down phase to chart",
            path.display()
        );
    }
    Ok(surge_bench::Results {
        schema: surge_bench::results::SCHEMA.to_owned(),
        schema_version: surge_bench::results::SCHEMA_VERSION,
        surge_version: r.surge_version,
        started_at: r.started_at,
        command: Some(format!("surge bench queue --broker {}", r.broker)),
        machine: r.machine,
        suites,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{BenchCommand, Cli, Command};

    fn parse(extra: &[&str]) -> anyhow::Result<Plan> {
        let argv = ["surge", "bench", "queue"].iter().chain(extra);
        let cli = Cli::try_parse_from(argv)?;
        let Command::Bench(BenchCommand::Queue(args)) = cli.command else {
            bail!("not bench queue");
        };
        plan(args)
    }

    fn error(extra: &[&str]) -> String {
        match parse(extra) {
            Ok(p) => panic!("{extra:?} was accepted: {p:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn defaults_run_every_phase_on_a_sqlite_file() {
        let p = parse(&[]).unwrap();
        assert_eq!(p.target, Target::Sqlite(PathBuf::from("surge-bench.db")));
        assert_eq!(
            (p.tasks, p.concurrency, p.workers, p.submitters),
            (20_000, 256, 1, 1)
        );
        assert_eq!(
            p.phases,
            [BenchPhase::Burn, BenchPhase::E2e, BenchPhase::Latency]
        );
        assert_eq!(p.latency_interval, Duration::from_millis(2));
    }

    #[test]
    fn phases_are_deduplicated_and_run_in_order() {
        let p = parse(&["--phase", "latency,burn,submit,latency"]).unwrap();
        assert_eq!(
            p.phases,
            [BenchPhase::Burn, BenchPhase::Submit, BenchPhase::Latency]
        );
        let e = error(&["--phase", "bogus"]);
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn zero_or_too_many_tasks_are_refused_with_the_flag_named() {
        let e = error(&["--tasks", "0"]);
        assert!(e.contains("--tasks must be between 1 and"), "{e}");
        let e = error(&["--tasks", "10000001"]);
        assert!(e.contains("--tasks"), "{e}");
        let e = error(&["--tasks", "3", "--submitters", "4"]);
        assert!(
            e.contains("--submitters (4) cannot exceed --tasks (3)"),
            "{e}"
        );
        for flag in [
            "--concurrency",
            "--workers",
            "--submitters",
            "--latency-tasks",
        ] {
            let e = error(&[flag, "0"]);
            assert!(e.contains(&format!("{flag} must be between")), "{e}");
        }
        let e = error(&["--latency-interval-ms", "0"]);
        assert!(
            e.contains("--latency-interval-ms must be in (0, 10000]"),
            "{e}"
        );
    }

    #[test]
    fn bad_broker_urls_are_refused_with_the_forms_that_work() {
        let e = error(&["--broker", "mysql://root:secret@db/x"]);
        assert!(e.contains("unsupported URL; use sqlite://PATH"), "{e}");
        assert!(!e.contains("secret"), "the password is redacted: {e}");
        let e = error(&["--broker", "sqlite::memory:"]);
        assert!(e.contains("needs a SQLite file"), "{e}");
        let e = error(&["--broker", "sqlite://"]);
        assert!(e.contains("needs a SQLite file"), "{e}");
        let e = error(&["--broker", "postgres://u@h/db?options=-c%20search_path%3Dx"]);
        assert!(e.contains("schema of its own"), "{e}");
        assert_eq!(
            parse(&["--broker", "sqlite:///tmp/b.db?mode=rwc"])
                .unwrap()
                .target,
            Target::Sqlite(PathBuf::from("/tmp/b.db"))
        );
        assert_eq!(
            parse(&["--broker", "postgresql://u@h/db"]).unwrap().target,
            Target::Postgres
        );
        assert_eq!(
            parse(&["--broker", "redis://127.0.0.1:6379"])
                .unwrap()
                .target,
            Target::Redis
        );
    }

    #[test]
    fn shares_cover_every_task_once() {
        let s = shares(10, 3);
        assert_eq!(s, [0..3, 3..6, 6..10]);
        assert_eq!(shares(5, 1).len(), 1);
        assert_eq!(shares(5, 1)[0], 0..5);
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_run_on_sqlite_measures_every_phase_and_removes_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        let url = format!("sqlite://{}", path.display());
        let p = parse(&[
            "--broker",
            &url,
            "--tasks",
            "300",
            "--workers",
            "2",
            "--submitters",
            "3",
            "--latency-tasks",
            "20",
            "--phase",
            "burn,submit,e2e,latency",
            "--json",
        ])
        .unwrap();
        let storage = Storage::create(&p).await.unwrap();
        let report = measure(&p, &storage).await.unwrap();
        storage.remove().await.unwrap();
        assert!(!path.exists());
        let mut table = Vec::new();
        print_table(&mut table, &report).unwrap();
        let table = String::from_utf8(table).unwrap();
        for phase in ["burn-down", "submit", "end-to-end", "latency"] {
            assert!(table.contains(phase), "{table}");
        }
        assert_eq!(report.submit.as_ref().unwrap().tasks, 300);
        let b = report.burn_down.unwrap();
        assert_eq!(b.tasks, 300);
        assert!(b.tasks_per_sec > 0.0);
        let e = report.end_to_end.unwrap();
        assert_eq!(e.start_latency.unwrap().samples, 300);
        assert_eq!(e.client_start_latency.unwrap().samples, 300);
        let l = report.latency.unwrap();
        assert_eq!(l.start_latency.unwrap().samples, 20);
    }

    #[tokio::test]
    async fn an_existing_sqlite_file_is_kept_unless_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.db");
        std::fs::write(&path, b"precious").unwrap();
        let url = format!("sqlite://{}", path.display());
        let e = Storage::create(&parse(&["--broker", &url]).unwrap())
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("--overwrite"), "{e:#}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        let s = Storage::create(&parse(&["--broker", &url, "--overwrite"]).unwrap())
            .await
            .unwrap();
        assert!(!path.exists());
        s.remove().await.unwrap();
    }
}
