//! `surge bench http`: a load sweep of one or more HTTP targets (closed or
//! open loop), printed as a table, saved as versioned JSON, drawn as an
//! HTML report with SVG charts. The generator is `surge_bench`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use surge_bench::{Abort, Event, Level, LoadModel, Plan, Results, Stop, Target};

use crate::bench_report::{Outputs, write_outputs};

/// `surge bench http` flags.
#[derive(Debug, Args)]
pub(crate) struct BenchHttpArgs {
    /// A target, LABEL=URL (http only); repeat for more. Every level runs
    /// each target in turn, in the order given.
    #[arg(long = "target", value_name = "LABEL=URL", required = true)]
    pub(crate) targets: Vec<String>,
    /// Closed loop: connections per level, comma-separated [default:
    /// 10,25,50,100].
    #[arg(
        long,
        value_name = "N,…",
        value_delimiter = ',',
        allow_hyphen_values = true,
        conflicts_with = "rate"
    )]
    pub(crate) concurrency: Vec<String>,
    /// Open loop: requests per second per level, comma-separated; latency
    /// runs from each request's intended send time.
    #[arg(
        long,
        value_name = "R,…",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    pub(crate) rate: Vec<String>,
    /// Open loop: connections kept open per level (due requests go to the
    /// next idle one; when all are busy they wait, and that counts).
    #[arg(long, value_name = "N", default_value_t = 100, requires = "rate")]
    pub(crate) connections: u32,
    /// Measured time per level (after the warm-up), e.g. 10s, 500ms, 2m.
    #[arg(
        long,
        value_name = "TIME",
        default_value = "10s",
        conflicts_with = "requests"
    )]
    pub(crate) duration: String,
    /// Counted requests per level, instead of a duration.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub(crate) requests: Option<String>,
    /// Load sent before each level's measurement, not counted.
    #[arg(long, value_name = "TIME", default_value = "2s")]
    pub(crate) warmup: String,
    /// A request with no complete response within this is a timeout error.
    #[arg(long, value_name = "TIME", default_value = "10s")]
    pub(crate) timeout: String,
    /// Generator threads [default: the CPUs this process may use].
    #[arg(long, value_name = "N")]
    pub(crate) threads: Option<usize>,
    /// HTTP client: auto (the lean one for http:// targets), lean (request
    /// encoded once, httparse on a reused buffer) or hyper.
    #[arg(long, value_name = "auto|lean|hyper", default_value = "auto")]
    pub(crate) client: String,
    /// Method of every target's request.
    #[arg(long, value_name = "METHOD", default_value = "GET")]
    pub(crate) method: String,
    /// A header of every target's request, 'Name: value'; repeatable.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub(crate) headers: Vec<String>,
    /// Body of every target's request: TEXT, or @FILE.
    #[arg(long, value_name = "TEXT|@FILE")]
    pub(crate) body: Option<String>,
    /// Method of one target: LABEL=METHOD (overrides --method).
    #[arg(long = "target-method", value_name = "LABEL=METHOD")]
    pub(crate) target_methods: Vec<String>,
    /// A header of one target: LABEL=NAME: VALUE; repeatable.
    #[arg(long = "target-header", value_name = "LABEL=NAME: VALUE")]
    pub(crate) target_headers: Vec<String>,
    /// Body of one target: LABEL=TEXT or LABEL=@FILE (overrides --body).
    #[arg(long = "target-body", value_name = "LABEL=TEXT|@FILE")]
    pub(crate) target_bodies: Vec<String>,
    /// No live progress line on stderr.
    #[arg(long)]
    pub(crate) quiet: bool,
    #[command(flatten)]
    pub(crate) outputs: Outputs,
}

/// A checked sweep, ready to run.
#[derive(Debug)]
pub(crate) struct Prepared {
    targets: Vec<Target>,
    plan: Plan,
    outputs: Outputs,
    quiet: bool,
}

fn body(text: &str) -> anyhow::Result<Vec<u8>> {
    match text.strip_prefix('@') {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read the body file {path}"))
        }
        None => Ok(text.as_bytes().to_vec()),
    }
}

/// Splits `LABEL=rest` and checks the label is a target's.
fn for_label<'a>(flag: &str, spec: &'a str, labels: &[&str]) -> anyhow::Result<(&'a str, &'a str)> {
    let Some((label, rest)) = spec.split_once('=') else {
        bail!("{flag} {spec:?}: expected LABEL=VALUE");
    };
    if !labels.contains(&label) {
        bail!(
            "{flag} {spec:?}: no --target is labelled {label:?} (targets: {})",
            labels.join(", ")
        );
    }
    Ok((label, rest))
}

fn levels<T: std::str::FromStr>(flag: &str, raw: &[String]) -> anyhow::Result<Vec<T>> {
    raw.iter()
        .map(|s| {
            let s = s.trim();
            if s.starts_with('-') || s == "0" {
                bail!("{flag} {s}: levels must be positive (zero or negative levels make no load)");
            }
            s.parse::<T>()
                .map_err(|_| anyhow::anyhow!("{flag} {s:?}: not a number"))
        })
        .collect()
}

/// Checks every flag (stage two of the CLI: raw flags to a plan).
pub(crate) fn prepare(args: BenchHttpArgs) -> anyhow::Result<Prepared> {
    let mut targets = args
        .targets
        .iter()
        .map(|t| Target::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    let labels: Vec<String> = targets.iter().map(|t| t.label().to_owned()).collect();
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    if let Some(twice) = labels
        .iter()
        .enumerate()
        .find_map(|(i, l)| labels[..i].contains(l).then_some(l))
    {
        bail!("--target label {twice:?} is given twice; labels name the lines of the charts");
    }
    let default_body = args.body.as_deref().map(body).transpose()?;
    let mut with = Vec::new();
    for t in targets.drain(..) {
        let mut t = t.with_method(&args.method)?;
        for h in &args.headers {
            t = t.with_header(h)?;
        }
        if let Some(b) = &default_body {
            t = t.with_body(b.clone());
        }
        with.push(t);
    }
    targets = with;
    let find = |targets: &mut Vec<Target>, label: &str| -> usize {
        targets
            .iter()
            .position(|t| t.label() == label)
            .expect("label checked")
    };
    for spec in &args.target_methods {
        let (label, method) = for_label("--target-method", spec, &labels)?;
        let i = find(&mut targets, label);
        targets[i] = targets[i].clone().with_method(method)?;
    }
    for spec in &args.target_headers {
        let (label, header) = for_label("--target-header", spec, &labels)?;
        let i = find(&mut targets, label);
        targets[i] = targets[i].clone().with_header(header)?;
    }
    for spec in &args.target_bodies {
        let (label, text) = for_label("--target-body", spec, &labels)?;
        let i = find(&mut targets, label);
        targets[i] = targets[i].clone().with_body(body(text)?);
    }
    let load = if args.rate.is_empty() {
        let levels: Vec<u32> = if args.concurrency.is_empty() {
            surge_bench::plan::DEFAULT_CONCURRENCY.to_vec()
        } else {
            levels("--concurrency", &args.concurrency)?
        };
        LoadModel::closed(levels)?
    } else {
        LoadModel::open(levels("--rate", &args.rate)?, args.connections)?
    };
    let stop = match &args.requests {
        Some(n) => Stop::Requests(levels::<u64>("--requests", std::slice::from_ref(n))?[0]),
        None => Stop::Duration(surge_bench::parse_duration("--duration", &args.duration)?),
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let plan = Plan::new(
        load,
        stop,
        surge_bench::parse_duration("--warmup", &args.warmup)?,
        surge_bench::parse_duration("--timeout", &args.timeout)?,
        threads,
    )?
    .with_client(surge_bench::Client::parse(&args.client)?);
    args.outputs.check()?;
    Ok(Prepared {
        targets,
        plan,
        outputs: args.outputs,
        quiet: args.quiet,
    })
}

/// The live progress line (stderr; redrawn in place on a terminal, one
/// line per finished level otherwise).
struct ProgressLine {
    live: bool,
    runs: usize,
    done: usize,
    plan_stop: Stop,
    warmup: Duration,
}

impl ProgressLine {
    fn level(level: Level) -> String {
        match level {
            Level::Closed(c) => format!("{c} conn"),
            Level::Open { rate, .. } => {
                format!("{} req/s", surge_bench::report::chart::compact(rate))
            }
        }
    }

    fn show(&mut self, event: Event<'_>) {
        let mut err = std::io::stderr().lock();
        match event {
            Event::LevelStart { .. } => {}
            Event::Progress {
                label,
                level,
                progress,
            } if self.live => {
                let phase = if progress.measuring {
                    let t = progress.elapsed.saturating_sub(self.warmup).as_secs_f64();
                    match self.plan_stop {
                        Stop::Duration(d) => format!("measuring {t:.1}/{:.0}s", d.as_secs_f64()),
                        Stop::Requests(n) => {
                            format!("measuring {t:.1}s, {}/{n}", progress.responses)
                        }
                    }
                } else {
                    format!("warm-up {:.1}s", progress.elapsed.as_secs_f64())
                };
                let rate = if progress.measuring {
                    let t = progress.elapsed.saturating_sub(self.warmup).as_secs_f64();
                    if t > 0.0 {
                        progress.responses as f64 / t
                    } else {
                        0.0
                    }
                } else {
                    0.0
                };
                let _ = write!(
                    err,
                    "\r\x1b[K[{}/{}] {label} @ {}: {phase}, {} responses, {:.0}/s, {} errors",
                    self.done + 1,
                    self.runs,
                    ProgressLine::level(level),
                    progress.responses,
                    rate,
                    progress.errors
                );
                let _ = err.flush();
            }
            Event::Progress { .. } => {}
            Event::LevelDone { label, point } => {
                self.done += 1;
                let l = point.latency;
                let _ = writeln!(
                    err,
                    "{}[{}/{}] {label} @ {}: {:.0} req/s, p50 {} ms, p99 {} ms, {} errors",
                    if self.live { "\r\x1b[K" } else { "" },
                    self.done,
                    self.runs,
                    surge_bench::report::chart::compact(point.load),
                    point.throughput,
                    l.map_or("-".into(), |l| format!("{:.2}", l.p50_ms)),
                    l.map_or("-".into(), |l| format!("{:.2}", l.p99_ms)),
                    point.error_total()
                );
            }
        }
    }
}

/// Runs a prepared sweep; Ctrl-C stops it after the level in progress is
/// dropped, and whatever finished is still written.
pub(crate) async fn run(prepared: Prepared) -> anyhow::Result<()> {
    // 1000 connections and more need file descriptors.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let Prepared {
        targets,
        plan,
        outputs,
        quiet,
    } = prepared;
    let abort = Abort::new();
    let on_signal = abort.clone();
    let signal = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.fire();
        }
    });
    let runs = targets.len() * plan.load.levels().len();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let results = tokio::task::spawn_blocking(move || {
        let mut line = ProgressLine {
            live: !quiet && std::io::stderr().is_terminal(),
            runs,
            done: 0,
            plan_stop: plan.stop,
            warmup: plan.warmup,
        };
        let mut on_event = |e: Event<'_>| {
            if !quiet {
                line.show(e);
            }
        };
        surge_bench::sweep(&targets, &plan, &abort, &mut on_event)
    })
    .await
    .context("the load generator stopped")??;
    signal.abort();
    let results = Results {
        command: Some(command),
        ..results
    };
    write_outputs(&results, &outputs)
}
