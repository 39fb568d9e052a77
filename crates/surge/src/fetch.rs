//! `surge fetch`: URLs in (arguments, a file or stdin, read lazily), one
//! JSONL record per URL out, a progress bar and a summary.
//!
//! Memory stays flat whatever the number of URLs: the reader hands URLs
//! over a bounded channel in batches, at most `2 × concurrency` fetches
//! exist at once, records are written as they finish (in completion order,
//! with their input `index`), and latency goes into an HDR histogram.
//!
//! Per URL the CLI costs little beside the fetch: one lane per runtime
//! thread runs its fetches as futures of one task (no task spawned per
//! URL) and serializes its records into its own buffer, written out in
//! 32 KiB pieces.

use std::io::{BufRead, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use surge_core::ErrorCategory;
use surge_fetch::{
    AddressPolicy, BodyOutput, BodySink, FetchConfig, FetchRequest, Fetched, Fetcher,
};
use tokio::sync::mpsc;

use crate::cli::{BodyMode, FetchArgs, ProgressMode, SummaryFormat};

/// `surge fetch`'s settings, validated.
pub(crate) struct Settings {
    config: FetchConfig,
    urls: Vec<String>,
    input: Option<PathBuf>,
    output: Option<PathBuf>,
    method: Method,
    headers: HeaderMap,
    body: bytes::Bytes,
    body_mode: BodyMode,
    save_dir: Option<PathBuf>,
    progress: bool,
    summary: SummaryFormat,
}

fn seconds(flag: &str, s: f64) -> anyhow::Result<Duration> {
    if s.is_finite() && s > 0.0 && s <= 86_400.0 {
        Ok(Duration::from_secs_f64(s))
    } else {
        bail!("{flag} must be a number of seconds in (0, 86400], got {s}")
    }
}

impl Settings {
    pub(crate) fn resolve(args: FetchArgs) -> anyhow::Result<Settings> {
        if args.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        let method = Method::from_bytes(args.method.as_bytes())
            .with_context(|| format!("--method {:?} is not an HTTP method", args.method))?;
        let mut headers = HeaderMap::new();
        for h in &args.headers {
            let (name, value) = h
                .split_once(':')
                .with_context(|| format!("--header {h:?}: expected 'Name: value'"))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .with_context(|| format!("--header {h:?}: bad header name"))?;
            let value = HeaderValue::from_str(value.trim())
                .with_context(|| format!("--header {h:?}: bad header value"))?;
            headers.append(name, value);
        }
        let body = match (&args.json, &args.data) {
            (Some(json), _) => {
                let v: serde_json::Value =
                    serde_json::from_str(json).context("--json is not valid JSON")?;
                headers
                    .entry(http::header::CONTENT_TYPE)
                    .or_insert(HeaderValue::from_static("application/json"));
                bytes::Bytes::from(v.to_string())
            }
            (None, Some(data)) => bytes::Bytes::from(data.clone()),
            (None, None) => bytes::Bytes::new(),
        };
        if args.body == BodyMode::Save {
            let Some(dir) = &args.save_dir else {
                bail!("--body save needs --save-dir DIR");
            };
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create --save-dir {}", dir.display()))?;
        }
        let mut policy = if args.public_only {
            AddressPolicy::public_only()
        } else {
            AddressPolicy::allow_all()
        };
        for net in &args.allow_net {
            policy = policy.allowing(
                net.parse()
                    .with_context(|| format!("--allow-net {net:?} is not a CIDR network"))?,
            );
        }
        let base_url = match &args.base_url {
            Some(b) => Some(url::Url::parse(b).with_context(|| format!("--base-url {b:?}"))?),
            None => None,
        };
        let defaults = FetchConfig::default();
        let config = FetchConfig {
            concurrency: args.concurrency,
            per_host: args.per_host.unwrap_or(args.concurrency),
            per_host_rate: args.rate,
            adaptive: args
                .adaptive
                .then(surge_core::limit::AdaptiveConfig::default),
            per_host_adaptive: args
                .per_host_adaptive
                .then(surge_core::limit::AdaptiveConfig::default),
            response_cache: match args.cache_ttl {
                Some(t) => Some(surge_fetch::ResponseCacheConfig {
                    ttl: seconds("--cache-ttl", t)?,
                    max_bytes: args.cache_max_bytes,
                }),
                None => None,
            },
            dns_ttl: seconds("--dns-ttl", args.dns_ttl)?,
            connect_timeout: seconds("--connect-timeout", args.connect_timeout)?,
            request_timeout: seconds("--timeout", args.timeout)?,
            read_timeout: seconds("--read-timeout", args.read_timeout)?,
            max_retries: args.retries,
            backoff_base: Duration::from_millis(args.backoff_base_ms),
            backoff_cap: Duration::from_millis(args.backoff_cap_ms),
            max_retry_after: Duration::from_secs(args.max_retry_after),
            max_redirects: args.max_redirects,
            max_body_bytes: args.max_body_bytes,
            address_policy: policy,
            user_agent: args
                .user_agent
                .clone()
                .unwrap_or(defaults.user_agent.clone()),
            base_url,
            http2_prior_knowledge: args.http2,
            decompress: !args.no_decompress,
            ..defaults
        };
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("--{}: {}", e.field.replace('_', "-"), e.message))?;
        let input = match (&args.input, args.urls.is_empty()) {
            (Some(p), _) => Some(p.clone()),
            (None, true) if std::io::stdin().is_terminal() => {
                bail!("no URLs: give them as arguments, with --input FILE, or on stdin")
            }
            (None, true) => Some(PathBuf::from("-")),
            (None, false) => None,
        };
        let progress = match args.progress {
            ProgressMode::Always => true,
            ProgressMode::Never => false,
            ProgressMode::Auto => std::io::stderr().is_terminal(),
        };
        Ok(Settings {
            config,
            urls: args.urls,
            input,
            output: args.output,
            method,
            headers,
            body,
            body_mode: args.body,
            save_dir: args.save_dir,
            progress,
            summary: args.summary,
        })
    }
}

/// Appends one JSONL record (and its newline) to `line`: the fields of
/// [`Record`], in its order, as serde_json writes them (the same bytes; a
/// test holds them equal), without serde's per-field machinery: this runs
/// once per URL.
fn write_record(line: &mut Vec<u8>, index: u64, f: &Fetched) {
    let mut ints = itoa::Buffer::new();
    line.extend_from_slice(b"{\"index\":");
    line.extend_from_slice(ints.format(index).as_bytes());
    line.extend_from_slice(b",\"url\":");
    json_str(line, &f.url);
    line.extend_from_slice(b",\"final_url\":");
    json_opt_str(line, f.final_url.as_deref());
    line.extend_from_slice(b",\"status\":");
    match f.status {
        Some(s) => line.extend_from_slice(ints.format(s).as_bytes()),
        None => line.extend_from_slice(b"null"),
    }
    line.extend_from_slice(b",\"bytes\":");
    line.extend_from_slice(ints.format(f.bytes).as_bytes());
    line.extend_from_slice(b",\"content_type\":");
    json_opt_str(line, f.content_type.as_deref());
    line.extend_from_slice(b",\"elapsed_ms\":");
    let ms = elapsed_ms(f);
    if ms.is_finite() {
        line.extend_from_slice(ryu::Buffer::new().format_finite(ms).as_bytes());
    } else {
        line.extend_from_slice(b"null");
    }
    line.extend_from_slice(b",\"attempts\":");
    line.extend_from_slice(ints.format(f.attempts).as_bytes());
    line.extend_from_slice(b",\"redirects\":");
    line.extend_from_slice(ints.format(f.redirects).as_bytes());
    match &f.body {
        BodyOutput::Sha256(h) => {
            line.extend_from_slice(b",\"sha256\":");
            json_str(line, h);
        }
        BodyOutput::File(p) => {
            line.extend_from_slice(b",\"file\":");
            json_str(line, &p.display().to_string());
        }
        _ => {}
    }
    let e = f.error.as_ref();
    line.extend_from_slice(b",\"error_category\":");
    json_opt_str(line, e.map(|e| e.category().as_str()));
    line.extend_from_slice(b",\"error_kind\":");
    json_opt_str(line, e.map(|e| e.kind().as_str()));
    line.extend_from_slice(b",\"error\":");
    json_opt_str(line, e.map(|e| e.message()));
    line.extend_from_slice(b",\"retryable\":");
    line.extend_from_slice(match e.map(|e| e.retryable()) {
        Some(true) => b"true",
        Some(false) => b"false",
        None => b"null",
    });
    line.extend_from_slice(b"}\n");
}

fn elapsed_ms(f: &Fetched) -> f64 {
    (f.elapsed.as_secs_f64() * 1e6).round() / 1e3
}

fn json_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string as serde_json escapes it: `"`, `\\` and control
/// characters; everything else as it is.
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => {
                out.extend_from_slice(&bytes[from..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
                from = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[from..i]);
        out.extend_from_slice(escape);
        from = i + 1;
    }
    out.extend_from_slice(&bytes[from..]);
    out.push(b'"');
}

/// One JSONL record, as serde would write it (the reference for
/// [`write_record`]).
#[cfg(test)]
#[derive(Serialize)]
struct Record<'a> {
    index: u64,
    url: &'a str,
    final_url: Option<&'a str>,
    status: Option<u16>,
    bytes: u64,
    content_type: Option<&'a str>,
    elapsed_ms: f64,
    attempts: u32,
    redirects: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    error_category: Option<&'static str>,
    error_kind: Option<&'static str>,
    error: Option<&'a str>,
    retryable: Option<bool>,
}

#[cfg(test)]
fn record(index: u64, f: &Fetched) -> Record<'_> {
    let (sha256, file) = match &f.body {
        BodyOutput::Sha256(h) => (Some(h.as_str()), None),
        BodyOutput::File(p) => (None, Some(p.display().to_string())),
        _ => (None, None),
    };
    Record {
        index,
        url: &f.url,
        final_url: f.final_url.as_deref(),
        status: f.status,
        bytes: f.bytes,
        content_type: f.content_type.as_deref(),
        elapsed_ms: elapsed_ms(f),
        attempts: f.attempts,
        redirects: f.redirects,
        sha256,
        file,
        error_category: f.error.as_ref().map(|e| e.category().as_str()),
        error_kind: f.error.as_ref().map(|e| e.kind().as_str()),
        error: f.error.as_ref().map(|e| e.message()),
        retryable: f.error.as_ref().map(|e| e.retryable()),
    }
}

/// Counts for the summary.
struct Tally {
    total: u64,
    ok: u64,
    failed: [u64; ErrorCategory::ALL.len()],
    bytes: u64,
    attempts: u64,
    latency_us: Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            total: 0,
            ok: 0,
            failed: [0; ErrorCategory::ALL.len()],
            bytes: 0,
            attempts: 0,
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds"),
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.total += other.total;
        self.ok += other.ok;
        for (a, b) in self.failed.iter_mut().zip(other.failed) {
            *a += b;
        }
        self.bytes += other.bytes;
        self.attempts += other.attempts;
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms of the same bounds");
    }

    fn add(&mut self, f: &Fetched) {
        self.total += 1;
        self.bytes += f.bytes;
        self.attempts += u64::from(f.attempts);
        match &f.error {
            None => self.ok += 1,
            Some(e) => {
                let i = ErrorCategory::ALL
                    .iter()
                    .position(|c| *c == e.category())
                    .unwrap_or(0);
                self.failed[i] += 1;
            }
        }
        let us = u64::try_from(f.elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.latency_us.saturating_record(us);
    }
}

#[derive(Serialize)]
struct Summary {
    total: u64,
    ok: u64,
    failed: u64,
    failed_by_category: std::collections::BTreeMap<&'static str, u64>,
    seconds: f64,
    requests_per_second: f64,
    http_requests: u64,
    retries: u64,
    redirects: u64,
    bytes: u64,
    latency_ms: Latency,
    dns_lookups: u64,
    retries_refused_by_budget: u64,
    /// The global limit at the end (moves with --adaptive).
    limit: usize,
    cache_hits: Option<u64>,
}

#[derive(Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

/// Runs `surge fetch`: 0 when every URL succeeded, 1 when any failed.
pub(crate) async fn run(settings: Settings) -> ExitCode {
    match run_inner(settings).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("surge fetch: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run_inner(s: Settings) -> anyhow::Result<bool> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let fetcher = Fetcher::new(s.config.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let concurrency = s.config.concurrency;

    let out: Box<dyn Write + Send> = match &s.output {
        Some(p) => Box::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let out = BufWriter::with_capacity(64 * 1024, out);

    // URLs: arguments first, then the input, read on a blocking thread and
    // handed over a bounded channel in batches (never all in memory).
    let (url_tx, url_rx) = mpsc::channel::<Vec<(u64, String)>>(8);
    let args_urls = s.urls.clone();
    let input = s.input.clone();
    let reader = tokio::task::spawn_blocking(move || read_urls(args_urls, input, &url_tx));

    let progress = if s.progress {
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
        pb.set_style(
            ProgressStyle::with_template("{spinner} {pos} fetched, {per_sec}, {elapsed} {msg}")
                .expect("progress template"),
        );
        pb.enable_steady_tick(Duration::from_millis(250));
        Some(pb)
    } else {
        None
    };

    // One lane per runtime thread, each a task running its share of 2 ×
    // concurrency workers and writing its own records: at most 2 ×
    // concurrency fetches exist at once; the limits inside the engine keep
    // `concurrency` in flight, the rest wait their turn.
    let lanes = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 16);
    let per_lane = (concurrency * 2).div_ceil(lanes);
    let shared = Arc::new(Shared {
        fetcher: fetcher.clone(),
        input: tokio::sync::Mutex::new(url_rx),
        out: std::sync::Mutex::new(out),
        progress,
        method: s.method.clone(),
        headers: s.headers.clone(),
        body: s.body.clone(),
        body_mode: s.body_mode,
        save_dir: s.save_dir.clone(),
    });
    let started = Instant::now();
    let handles: Vec<_> = (0..lanes)
        .map(|_| tokio::spawn(lane(Arc::clone(&shared), per_lane)))
        .collect();
    let mut tally = Tally::new();
    let mut failure = None;
    for h in handles {
        match h.await.context("a fetch lane failed")? {
            Ok(t) => tally.merge(&t),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    shared
        .out
        .lock()
        .expect("output poisoned")
        .flush()
        .context("cannot write the records")?;
    let seconds = started.elapsed().as_secs_f64();
    reader.await.context("the URL reader failed")??;
    if let Some(pb) = &shared.progress {
        pb.finish_and_clear();
    }

    let stats = fetcher.stats();
    let ms = |q: f64| tally.latency_us.value_at_quantile(q) as f64 / 1000.0;
    let failed: u64 = tally.failed.iter().sum();
    let summary = Summary {
        total: tally.total,
        ok: tally.ok,
        failed,
        failed_by_category: ErrorCategory::ALL
            .iter()
            .zip(tally.failed)
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| (c.as_str(), n))
            .collect(),
        seconds,
        requests_per_second: if seconds > 0.0 {
            tally.total as f64 / seconds
        } else {
            0.0
        },
        http_requests: stats.requests,
        retries: stats.retries,
        redirects: stats.redirects,
        bytes: tally.bytes,
        latency_ms: Latency {
            p50: if tally.total > 0 { ms(0.5) } else { 0.0 },
            p90: if tally.total > 0 { ms(0.9) } else { 0.0 },
            p99: if tally.total > 0 { ms(0.99) } else { 0.0 },
            max: tally.latency_us.max() as f64 / 1000.0,
        },
        dns_lookups: stats.dns.lookups,
        retries_refused_by_budget: stats.budget_refused,
        limit: stats.limiter.limit,
        cache_hits: stats.responses.as_ref().map(|r| r.hits),
    };
    let mut err = std::io::stderr().lock();
    match s.summary {
        SummaryFormat::None => {}
        SummaryFormat::Json => {
            let _ = writeln!(
                err,
                "{}",
                serde_json::to_string(&summary).expect("summary serializes")
            );
        }
        SummaryFormat::Table => {
            let _ = write_table(&mut err, &summary);
        }
    }
    Ok(failed == 0)
}

/// What the lanes share.
struct Shared {
    fetcher: Fetcher,
    input: tokio::sync::Mutex<mpsc::Receiver<Vec<(u64, String)>>>,
    out: std::sync::Mutex<BufWriter<Box<dyn Write + Send>>>,
    progress: Option<ProgressBar>,
    method: Method,
    headers: HeaderMap,
    body: bytes::Bytes,
    body_mode: BodyMode,
    save_dir: Option<PathBuf>,
}

impl Shared {
    fn request(&self, index: u64, url: String) -> FetchRequest {
        let sink = match self.body_mode {
            BodyMode::Discard => BodySink::Discard,
            BodyMode::Sha256 => BodySink::Sha256,
            BodyMode::Save => BodySink::File(
                self.save_dir
                    .as_ref()
                    .expect("checked")
                    .join(format!("{index}.body")),
            ),
        };
        let mut req = FetchRequest::get(url).with_sink(sink);
        req.method = self.method.clone();
        req.headers = self.headers.clone();
        req.body = self.body.clone();
        req
    }

    /// Writes finished records (whole lines) to the output.
    fn write(&self, lines: &mut Vec<u8>) -> anyhow::Result<()> {
        self.out
            .lock()
            .expect("output poisoned")
            .write_all(lines)
            .context("cannot write the records")?;
        lines.clear();
        Ok(())
    }
}

/// Records a lane keeps before writing them out.
const LANE_BUFFER: usize = 32 * 1024;

/// What a lane's workers share.
struct Lane {
    /// URLs taken from the input, not started yet.
    queue: std::sync::Mutex<std::collections::VecDeque<(u64, String)>>,
    /// One worker at a time takes the next batch for the lane.
    refill: tokio::sync::Mutex<bool>,
    /// Finished records not written yet, and the lane's counts.
    done: std::sync::Mutex<(Vec<u8>, Tally)>,
}

/// One lane: `workers` long-lived fetch loops polled by one task. A
/// fetch's future lives inside its worker's, so no task and no allocation
/// is made per URL. The lane's tally.
async fn lane(shared: Arc<Shared>, workers: usize) -> anyhow::Result<Tally> {
    let lane = Lane {
        queue: Default::default(),
        refill: tokio::sync::Mutex::new(false),
        done: std::sync::Mutex::new((Vec::with_capacity(LANE_BUFFER + 4096), Tally::new())),
    };
    let mut running: FuturesUnordered<_> = (0..workers).map(|_| worker(&shared, &lane)).collect();
    while let Some(result) = running.next().await {
        result?;
    }
    drop(running);
    let (mut lines, tally) = lane.done.into_inner().expect("lane poisoned");
    shared.write(&mut lines)?;
    Ok(tally)
}

/// Fetches the lane's URLs one after another until the input ends.
async fn worker(shared: &Shared, lane: &Lane) -> anyhow::Result<()> {
    loop {
        let next = lane.queue.lock().expect("lane poisoned").pop_front();
        let Some((index, url)) = next else {
            // The queue is empty: take the next batch, unless another
            // worker is doing so (then wait for it) or the input ended.
            let mut ended = lane.refill.lock().await;
            if *ended {
                return Ok(());
            }
            if !lane.queue.lock().expect("lane poisoned").is_empty() {
                continue;
            }
            match shared.input.lock().await.recv().await {
                Some(batch) => lane.queue.lock().expect("lane poisoned").extend(batch),
                None => *ended = true,
            }
            continue;
        };
        let fetched = shared.fetcher.fetch(shared.request(index, url)).await;
        {
            let mut done = lane.done.lock().expect("lane poisoned");
            let (lines, tally) = &mut *done;
            tally.add(&fetched);
            write_record(lines, index, &fetched);
            if lines.len() >= LANE_BUFFER {
                shared.write(lines)?;
            }
        }
        if let Some(pb) = &shared.progress {
            pb.inc(1);
            if let Some(e) = &fetched.error {
                pb.set_message(format!("last error: {}", e.category()));
            }
        }
    }
}

/// Sends the URLs (arguments, then the input file or stdin) in batches.
fn read_urls(
    args_urls: Vec<String>,
    input: Option<PathBuf>,
    tx: &mpsc::Sender<Vec<(u64, String)>>,
) -> anyhow::Result<()> {
    const BATCH: usize = 256;
    let mut index = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    // A batch goes when it is full, or at once when the lanes have nothing
    // queued (URLs that trickle in on stdin are not held back).
    let mut push = |url: String, batch: &mut Vec<(u64, String)>| -> bool {
        batch.push((index, url));
        index += 1;
        if batch.len() < BATCH && tx.capacity() < tx.max_capacity() {
            return true;
        }
        tx.blocking_send(std::mem::replace(batch, Vec::with_capacity(BATCH)))
            .is_ok()
    };
    for u in args_urls {
        if !push(u, &mut batch) {
            return Ok(());
        }
    }
    if let Some(path) = input {
        let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
            Box::new(std::io::BufReader::new(std::io::stdin()))
        } else {
            Box::new(std::io::BufReader::new(
                std::fs::File::open(&path)
                    .with_context(|| format!("cannot open {}", path.display()))?,
            ))
        };
        for line in reader.lines() {
            let line = line.context("cannot read the URLs")?;
            let url = line.trim();
            if url.is_empty() || url.starts_with('#') {
                continue;
            }
            if !push(url.to_owned(), &mut batch) {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(batch);
    }
    Ok(())
}

fn write_table(w: &mut impl Write, s: &Summary) -> std::io::Result<()> {
    writeln!(w, "| metric | value |")?;
    writeln!(w, "|---|---:|")?;
    writeln!(w, "| URLs | {} |", s.total)?;
    writeln!(w, "| ok | {} |", s.ok)?;
    writeln!(w, "| failed | {} |", s.failed)?;
    for c in ErrorCategory::ALL {
        if let Some(n) = s.failed_by_category.get(c.as_str()) {
            writeln!(w, "| failed: {} | {n} |", c.as_str())?;
        }
    }
    writeln!(w, "| requests/s | {:.0} |", s.requests_per_second)?;
    writeln!(w, "| seconds | {:.2} |", s.seconds)?;
    writeln!(
        w,
        "| latency p50 / p90 / p99 / max (ms) | {:.2} / {:.2} / {:.2} / {:.2} |",
        s.latency_ms.p50, s.latency_ms.p90, s.latency_ms.p99, s.latency_ms.max
    )?;
    writeln!(
        w,
        "| HTTP requests (retries, redirects) | {} ({}, {}) |",
        s.http_requests, s.retries, s.redirects
    )?;
    writeln!(w, "| body bytes | {} |", s.bytes)?;
    writeln!(w, "| DNS lookups | {} |", s.dns_lookups)?;
    if s.retries_refused_by_budget > 0 {
        writeln!(
            w,
            "| retries refused by the budget | {} |",
            s.retries_refused_by_budget
        )?;
    }
    if let Some(hits) = s.cache_hits {
        writeln!(w, "| response cache hits | {hits} |")?;
    }
    writeln!(w, "| global limit at the end | {} |", s.limit)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use surge_fetch::{BodyOutput, FetchError, FetchErrorKind, Fetched};

    use super::{record, write_record};

    #[test]
    fn records_are_the_bytes_serde_json_writes() {
        let ok = Fetched {
            url: "http://example.com/a?b=\"c\"&d=\\e".into(),
            final_url: Some("http://example.com/\u{e9}t\u{e9}\n\t\u{1}\u{1f}/".into()),
            status: Some(200),
            bytes: 12_345,
            content_type: Some("text/html; charset=utf-8".into()),
            elapsed: Duration::from_micros(1_234_567),
            attempts: 1,
            body: BodyOutput::Sha256("ab".repeat(32)),
            ..Fetched::default()
        };
        let failed = Fetched {
            url: "not a url".into(),
            elapsed: Duration::from_secs(2),
            attempts: 3,
            redirects: 2,
            body: BodyOutput::File("/tmp/x \"y\".body".into()),
            error: Some(FetchError::new(
                FetchErrorKind::Timeout,
                "took \u{8}\u{c}\r too long",
            )),
            ..Fetched::default()
        };
        let nothing = Fetched::default();
        for (i, f) in [ok, failed, nothing].iter().enumerate() {
            let mut ours = Vec::new();
            write_record(&mut ours, i as u64 * 1_000_000_007, f);
            let mut theirs = serde_json::to_vec(&record(i as u64 * 1_000_000_007, f)).unwrap();
            theirs.push(b'\n');
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(theirs).unwrap()
            );
        }
    }
}
