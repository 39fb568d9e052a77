//! Wiring of the task engine: connecting to the broker, building workers,
//! `surge worker`, `surge task …` and `surge schedule …`.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde_json::Value;
use surge_queue::broker::AnyBroker;
use surge_queue::broker::any::redact;
use surge_queue::model::{CancelOutcome, RetryOutcome, TaskFilter};
use surge_queue::{
    Broker, BrokerConfig, Client, NewTask, Observer, Registry, TaskRecord, TaskState, Worker,
    WorkerConfig,
};

use crate::cli::{BrokerArgs, ScheduleCommand, TaskCommand, TaskSubmitArgs, WorkerArgs};
use crate::config::worker_config;
use crate::logging;

/// The broker settings: pool size, how long a call waits for a connection
/// (SQLite: for the write lock) before the broker counts as unavailable,
/// and the Redis key namespace from `SURGE_BROKER_NAMESPACE` (default
/// `surge`), so several deployments (or test runs) can share one Redis.
pub(crate) fn broker_config(
    max_connections: u32,
    acquire_timeout: Option<Duration>,
) -> BrokerConfig {
    let defaults = BrokerConfig::default();
    let mut config = BrokerConfig {
        max_connections,
        acquire_timeout: acquire_timeout.unwrap_or(defaults.acquire_timeout),
        ..defaults
    };
    if let Ok(ns) = std::env::var("SURGE_BROKER_NAMESPACE")
        && !ns.trim().is_empty()
    {
        config.namespace = ns.trim().to_owned();
    }
    config
}

/// Connects to `url` with the given pool size and acquire timeout (default
/// 5 s).
pub(crate) async fn connect(
    url: &str,
    max_connections: u32,
    acquire_timeout: Option<Duration>,
) -> anyhow::Result<AnyBroker> {
    let config = broker_config(max_connections, acquire_timeout);
    AnyBroker::connect(url, &config)
        .await
        .with_context(|| format!("cannot open the task broker {}", redact(url)))
}

/// A worker on `broker` whose heartbeat runs on its own thread with its own
/// connection to `url`.
pub(crate) fn worker(
    broker: AnyBroker,
    url: &str,
    registry: Arc<Registry>,
    config: WorkerConfig,
    observer: Arc<dyn Observer>,
) -> Worker<AnyBroker> {
    worker_with(
        broker,
        url,
        broker_config(1, None),
        registry,
        config,
        observer,
    )
}

/// [`worker`] whose heartbeat connection uses `heartbeat` (e.g. a Redis
/// namespace other than `SURGE_BROKER_NAMESPACE`'s).
pub(crate) fn worker_with(
    broker: AnyBroker,
    url: &str,
    heartbeat: BrokerConfig,
    registry: Arc<Registry>,
    config: WorkerConfig,
    observer: Arc<dyn Observer>,
) -> Worker<AnyBroker> {
    let url = url.to_owned();
    Worker::new(broker, registry, config)
        .with_observer(observer)
        .with_heartbeat_thread(Box::new(move || {
            let url = url.clone();
            let config = heartbeat.clone();
            Box::pin(async move { AnyBroker::connect(&url, &config).await })
        }))
}

/// `surge worker`.
/// `surge worker`'s settings, validated before anything starts (a bad
/// setting exits 2, like `surge serve`'s).
pub(crate) fn worker_settings(args: &WorkerArgs) -> anyhow::Result<WorkerConfig> {
    let lease = seconds("--lease-ttl", args.lease_ttl)?;
    let grace = seconds("--shutdown-grace", args.shutdown_grace)?;
    let mut config = worker_config(args.concurrency, args.queues.clone(), lease, grace)?;
    config.run_scheduler = !args.no_scheduler;
    Ok(config)
}

pub(crate) async fn run_worker(args: WorkerArgs, config: WorkerConfig) -> anyhow::Result<()> {
    logging::init(args.log_format, args.log_level.as_deref())?;
    let pool = u32::try_from(config.concurrency.clamp(4, 32)).unwrap_or(16);
    let broker = connect(&args.broker.broker, pool, None).await?;
    let registry = Arc::new(crate::kinds::registry(
        crate::kinds::KindOptions {
            fetch_allow_private: args.fetch_allow_private,
        },
        &args.broker.broker,
    )?);
    let worker = worker(
        broker,
        &args.broker.broker,
        registry,
        config,
        Arc::new(surge_queue::worker::NoObserver),
    );
    let report = worker
        .run(async {
            let signal = crate::serve::shutdown_signal().await;
            tracing::info!(signal, "shutting down the worker");
        })
        .await?;
    tracing::info!(
        started = report.started,
        handed_back = report.handed_back,
        "worker exited"
    );
    Ok(())
}

fn seconds(flag: &str, s: f64) -> anyhow::Result<Duration> {
    seconds_upto(flag, s, 86_400.0)
}

/// Seconds in `(0, max]`.
fn seconds_upto(flag: &str, s: f64, max: f64) -> anyhow::Result<Duration> {
    if s.is_finite() && s > 0.0 && s <= max {
        Ok(Duration::from_secs_f64(s))
    } else {
        bail!("{flag} must be a number of seconds in (0, {max}], got {s}")
    }
}

/// The limits `POST /tasks` applies: countdown up to ten years (0: now),
/// time limits up to a week, priority within ±1000, at most 100 retries.
const COUNTDOWN_MAX: f64 = 10.0 * 365.0 * 86_400.0;
const TIME_LIMIT_MAX: f64 = 7.0 * 86_400.0;

fn parse_json(flag: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("{flag} is not valid JSON: {text}"))
}

/// A task of `kind` with the `--args` given, or none: `null`, or `{}` for a
/// kind whose arguments are an object of optional fields (as `POST /tasks`
/// reads an absent `args`).
fn new_task(c: &Client<AnyBroker>, kind: &str, args: Option<&str>) -> anyhow::Result<NewTask> {
    Ok(match args {
        Some(text) => c.task(kind, parse_json("--args", text)?)?,
        None => c
            .task(kind, Value::Null)
            .or_else(|_| c.task(kind, Value::Object(serde_json::Map::new())))?,
    })
}

fn parse_id(text: &str) -> anyhow::Result<surge_queue::TaskId> {
    text.parse()
        .with_context(|| format!("{text:?} is not a task id (a UUID)"))
}

async fn client(broker: &BrokerArgs) -> anyhow::Result<Client<AnyBroker>> {
    let b = connect(&broker.broker, 2, None).await?;
    Ok(Client::new(
        b,
        Arc::new(crate::kinds::registry(
            crate::kinds::KindOptions::default(),
            &broker.broker,
        )?),
    ))
}

/// `surge task …`.
pub(crate) async fn run_task(command: TaskCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        TaskCommand::Submit(args) => submit(args, &mut out).await,
        TaskCommand::Get { broker, id, json } => {
            let id = parse_id(&id)?;
            let c = client(&broker).await?;
            let Some(task) = c.broker().get(id).await? else {
                bail!("task {id} not found");
            };
            print_task(&mut out, &task, json)
        }
        TaskCommand::List(args) => {
            let state = match args.state.as_deref() {
                None => None,
                Some(s) => Some(TaskState::parse(s).with_context(|| {
                    format!("--state {s:?} is not a state (pending, scheduled, running, retrying, succeeded, failed, cancelled, dead)")
                })?),
            };
            let c = client(&args.broker).await?;
            let tasks = c
                .broker()
                .list(&TaskFilter {
                    state,
                    kind: args.kind,
                    queue: args.queue,
                    limit: args.limit.clamp(1, 10_000),
                    ..TaskFilter::default()
                })
                .await?;
            if args.json {
                for t in &tasks {
                    writeln!(out, "{}", serde_json::to_string(t)?)?;
                }
            } else {
                writeln!(
                    out,
                    "{:<36}  {:<10}  {:<12}  {:<10}  {:>8}  CREATED",
                    "ID", "STATE", "KIND", "QUEUE", "ATTEMPTS"
                )?;
                for t in &tasks {
                    writeln!(
                        out,
                        "{:<36}  {:<10}  {:<12}  {:<10}  {:>8}  {}",
                        t.id,
                        t.state.as_str(),
                        t.kind,
                        t.queue,
                        t.attempts,
                        t.created_at.format("%Y-%m-%d %H:%M:%S%.3f")
                    )?;
                }
            }
            Ok(())
        }
        TaskCommand::Cancel { broker, id } => {
            let id = parse_id(&id)?;
            let c = client(&broker).await?;
            match c
                .broker()
                .cancel(id, Utc::now() + chrono::Duration::days(1))
                .await?
            {
                None => bail!("task {id} not found"),
                Some(CancelOutcome::Cancelled) => writeln!(out, "cancelled {id}")?,
                Some(CancelOutcome::Requested) => writeln!(
                    out,
                    "cancel requested for {id}: it is running; its worker stops it within a heartbeat"
                )?,
                Some(CancelOutcome::AlreadyFinished(s)) => {
                    bail!("task {id} already ended {s}; nothing to cancel")
                }
            }
            Ok(())
        }
        TaskCommand::Retry { broker, id } => {
            let id = parse_id(&id)?;
            let c = client(&broker).await?;
            match c.broker().retry(id).await? {
                None => bail!("task {id} not found"),
                Some(RetryOutcome::Requeued) => writeln!(out, "requeued {id}")?,
                Some(RetryOutcome::NotRetryable(s)) => {
                    bail!("task {id} is {s}; only dead, failed or cancelled tasks can be retried")
                }
            }
            Ok(())
        }
    }
}

async fn submit(args: TaskSubmitArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let c = client(&args.broker).await?;
    let mut task = new_task(&c, &args.kind, args.args.as_deref())?;
    task.queue = args.queue;
    if !(-1000..=1000).contains(&args.priority) {
        bail!(
            "--priority must be between -1000 and 1000, got {}",
            args.priority
        );
    }
    task.priority = args.priority;
    if let Some(s) = args.countdown.filter(|s| *s != 0.0) {
        task = task.with_countdown(seconds_upto("--countdown", s, COUNTDOWN_MAX)?);
    }
    if let Some(eta) = &args.eta {
        let eta: DateTime<Utc> = DateTime::parse_from_rfc3339(eta)
            .with_context(|| format!("--eta {eta:?} is not an RFC 3339 time"))?
            .with_timezone(&Utc);
        task.run_at = eta;
    }
    if let Some(m) = args.max_retries {
        if m > 100 {
            bail!("--max-retries must be at most 100, got {m}");
        }
        task.max_retries = m;
    }
    if let Some(s) = args.soft_time_limit {
        let limit = seconds_upto("--soft-time-limit", s, TIME_LIMIT_MAX)?;
        task.options.soft_time_limit_ms = Some(millis(limit));
    }
    if let Some(s) = args.hard_time_limit {
        let limit = seconds_upto("--hard-time-limit", s, TIME_LIMIT_MAX)?;
        task.options.hard_time_limit_ms = Some(millis(limit));
    }
    task.unique_key = args.unique_key;
    let enqueued = c.submit(task).await?;
    match args.wait {
        None => {
            if args.json {
                let task = c.broker().get(enqueued.id).await?;
                writeln!(out, "{}", serde_json::to_string(&task)?)?;
            } else {
                writeln!(out, "{}", enqueued.id)?;
            }
            Ok(())
        }
        Some(secs) => {
            let record = match c.wait(enqueued.id, seconds("--wait", secs)?).await {
                Ok(r) => r,
                Err(surge_queue::WaitError::Timeout(r)) => {
                    print_task(out, &r, args.json)?;
                    bail!("task {} still {} after {secs} s", r.id, r.state);
                }
                Err(e) => return Err(e.into()),
            };
            print_task(out, &record, args.json)?;
            if record.state != TaskState::Succeeded {
                bail!("task {} ended {}", record.id, record.state);
            }
            Ok(())
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn print_task(out: &mut impl Write, t: &TaskRecord, json: bool) -> anyhow::Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string(t)?)?;
        return Ok(());
    }
    writeln!(out, "id:        {}", t.id)?;
    writeln!(out, "kind:      {}", t.kind)?;
    writeln!(out, "state:     {}", t.state)?;
    writeln!(out, "queue:     {} (priority {})", t.queue, t.priority)?;
    writeln!(out, "attempts:  {} of {}", t.attempts, t.max_retries + 1)?;
    writeln!(out, "run at:    {}", t.run_at)?;
    if let Some(p) = &t.progress {
        writeln!(
            out,
            "progress:  {:.0}% {}",
            p.fraction * 100.0,
            p.message.as_deref().unwrap_or("")
        )?;
    }
    if let Some(r) = &t.result {
        writeln!(out, "result:    {r}")?;
    }
    if let Some(e) = &t.error {
        writeln!(out, "error:     {e}")?;
    }
    Ok(())
}

/// `surge schedule …`.
pub(crate) async fn run_schedule(command: ScheduleCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        ScheduleCommand::Add {
            broker,
            name,
            cron,
            tz,
            kind,
            args,
            queue,
        } => {
            let c = client(&broker).await?;
            let task = new_task(&c, &kind, args.as_deref())?.with_queue(queue);
            let s = c.schedule(&name, &cron, &tz, task).await?;
            writeln!(out, "schedule {} next fires at {}", s.name, s.next_fire_at)?;
        }
        ScheduleCommand::List { broker, json } => {
            let c = client(&broker).await?;
            let all = c.broker().schedules().await?;
            if json {
                for s in &all {
                    writeln!(out, "{}", serde_json::to_string(s)?)?;
                }
            } else {
                writeln!(
                    out,
                    "{:<24}  {:<20}  {:<16}  {:<12}  NEXT FIRE",
                    "NAME", "CRON", "TIME ZONE", "KIND"
                )?;
                for s in &all {
                    writeln!(
                        out,
                        "{:<24}  {:<20}  {:<16}  {:<12}  {}",
                        s.name, s.cron, s.timezone, s.task.kind, s.next_fire_at
                    )?;
                }
            }
        }
        ScheduleCommand::Rm { broker, name } => {
            let c = client(&broker).await?;
            if !c.broker().delete_schedule(&name).await? {
                bail!("schedule {name:?} not found");
            }
            writeln!(out, "deleted schedule {name}")?;
        }
    }
    Ok(())
}
