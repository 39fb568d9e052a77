//! Raw command-line arguments (stage one of configuration: nothing is
//! validated or defaulted here, so that the config file can fill gaps).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

/// surge: high-concurrency async work in one binary.
#[derive(Debug, Parser)]
#[command(name = "surge", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve the JSON API (health, users, tasks, schedules, docs, metrics)
    /// with embedded task workers.
    Serve(ServeArgs),
    /// Run a standalone task worker (scale out: any number, any host).
    Worker(WorkerArgs),
    /// Submit, inspect, cancel and retry tasks.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Add, list and remove cron schedules.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Measure surge on this machine.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Fetch many URLs at once: one JSONL record per URL, a summary at the
    /// end (exit 1 when any URL failed, 2 on bad flags).
    Fetch(FetchArgs),
    /// Crawl web sites from start URLs: one JSONL record per page, polite
    /// per host, resumable after a kill (exit 2 on bad flags).
    Crawl(CrawlArgs),
}

/// `surge crawl` flags.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  surge crawl https://example.com/ --depth 3 --max-pages 1000 --output pages.jsonl\n  surge crawl https://example.com/ --dir crawl1   (kill it any time, then:)\n  surge crawl --resume crawl1"
)]
pub(crate) struct CrawlArgs {
    /// Start URLs (depth 0); the crawl stays on their hosts by default.
    pub(crate) urls: Vec<String>,
    /// Deepest link depth followed (start URLs are depth 0) [default: no limit].
    #[arg(long = "depth", value_name = "N")]
    pub(crate) depth: Option<u32>,
    /// Page budget: records written [default: no limit].
    #[arg(long, value_name = "N")]
    pub(crate) max_pages: Option<u64>,
    /// Time budget in seconds (the crawl stops, resumable) [default: no limit].
    #[arg(long, value_name = "SECS")]
    pub(crate) max_time: Option<f64>,
    /// Fetches in flight at once [default: 64].
    #[arg(long, value_name = "N")]
    pub(crate) concurrency: Option<usize>,
    /// Fetches in flight at once to one host [default: 8].
    #[arg(long, value_name = "N")]
    pub(crate) per_host: Option<usize>,
    /// Least time between two request starts to one host, in milliseconds
    /// (robots.txt Crawl-delay raises it) [default: 0].
    #[arg(long, value_name = "MS")]
    pub(crate) delay: Option<u64>,
    /// Only URLs matching one of these regexes (repeatable).
    #[arg(long = "allow", value_name = "RE")]
    pub(crate) allow: Vec<String>,
    /// Never URLs matching one of these regexes (repeatable).
    #[arg(long = "deny", value_name = "RE")]
    pub(crate) deny: Vec<String>,
    /// Follow links to subdomains of the start hosts too.
    #[arg(long)]
    pub(crate) subdomains: bool,
    /// Remove query parameters matching this glob before dedup (`utm_*`; repeatable).
    #[arg(long = "strip-query", value_name = "P")]
    pub(crate) strip_query: Vec<String>,
    /// Put each page's outlinks in its record.
    #[arg(long)]
    pub(crate) outlinks: bool,
    /// Ignore robots.txt.
    #[arg(long)]
    pub(crate) no_robots: bool,
    /// Read the sitemaps (robots.txt `Sitemap:` lines and /sitemap.xml).
    #[arg(long)]
    pub(crate) sitemaps: bool,
    /// The User-Agent sent and matched against robots.txt [default: surge-crawler/<version>].
    #[arg(long, value_name = "S")]
    pub(crate) user_agent: Option<String>,
    /// Time one request may take, in seconds [default: 30].
    #[arg(long, value_name = "SECS")]
    pub(crate) timeout: Option<f64>,
    /// Largest page body read, in bytes (larger: an error record) [default: 10 MiB].
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_body: Option<u64>,
    /// Where the JSONL records go (`-`: stdout) [default: -].
    #[arg(long, short = 'o', value_name = "FILE|-")]
    pub(crate) output: Option<String>,
    /// Keep the crawl's state in DIR (kill-safe; continue it with --resume DIR).
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub(crate) dir: Option<std::path::PathBuf>,
    /// Continue the crawl kept in DIR (its start URLs and scope; budgets,
    /// rates and --output may be given again).
    #[arg(long, value_name = "DIR")]
    pub(crate) resume: Option<std::path::PathBuf>,
    /// Store the crawl in this PostgreSQL or Redis broker (postgres://…,
    /// redis://…) so that `surge worker` processes on it crawl too; the
    /// output is then every crawler's records.
    #[arg(long, value_name = "URL", conflicts_with_all = ["dir", "resume"])]
    pub(crate) broker: Option<String>,
    /// With --broker: crawl.join tasks enqueued (one crawler each, run by
    /// `surge worker`) [default: 2].
    #[arg(long, value_name = "N", requires = "broker")]
    pub(crate) workers: Option<u32>,
    /// Progress line on stderr: auto (when it is a terminal), always, never.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub(crate) progress: ProgressMode,
}

/// What `surge fetch` does with response bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BodyMode {
    /// Count the bytes and drop them.
    Discard,
    /// Count and hash them (SHA-256 in the record).
    Sha256,
    /// Write each body to --save-dir (file name in the record).
    Save,
}

/// Where `surge fetch` prints its summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SummaryFormat {
    /// A table on stderr.
    Table,
    /// One JSON object on stderr.
    Json,
    /// None.
    None,
}

/// When `surge fetch` draws a progress bar (on stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProgressMode {
    /// When stderr is a terminal.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// `surge fetch` flags.
#[derive(Debug, Args)]
pub(crate) struct FetchArgs {
    /// URLs to fetch (before those of --input).
    #[arg(value_name = "URL")]
    pub(crate) urls: Vec<String>,
    /// File of URLs, one per line ('-': stdin; blank lines and lines
    /// starting with '#' are skipped) [default: stdin when no URL is
    /// given].
    #[arg(short, long, value_name = "FILE")]
    pub(crate) input: Option<PathBuf>,
    /// Write the JSONL records here [default: stdout].
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Requests in flight at once, in all.
    #[arg(short, long, value_name = "N", default_value_t = 100)]
    pub(crate) concurrency: usize,
    /// Requests in flight at once to one host [default: --concurrency].
    #[arg(long, value_name = "N")]
    pub(crate) per_host: Option<usize>,
    /// Make the global limit adaptive: it starts at 10, grows while latency
    /// stays near its floor, and backs off on latency growth, 429, 503 and
    /// timeouts, never above --concurrency.
    #[arg(long)]
    pub(crate) adaptive: bool,
    /// Make each host's limit adaptive the same way, never above
    /// --per-host: a host that slows down or answers 429 / 503 gets fewer
    /// requests at once, and more again when it recovers (learnt afresh
    /// for a host that comes back after being idle).
    #[arg(long)]
    pub(crate) per_host_adaptive: bool,
    /// Reuse successful GET answers for this many seconds (duplicate URLs
    /// in the input are fetched once) [default: no cache].
    #[arg(long, value_name = "SECS")]
    pub(crate) cache_ttl: Option<f64>,
    /// Size bound of the response cache in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024 * 1024, requires = "cache_ttl")]
    pub(crate) cache_max_bytes: u64,
    /// Request starts per second per host [default: no limit].
    #[arg(long, value_name = "R")]
    pub(crate) rate: Option<f64>,
    /// Seconds a resolved name is kept. Names are resolved by the system
    /// resolver (getaddrinfo: /etc/hosts, nsswitch), which reports no TTL,
    /// so every answer is kept this long.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub(crate) dns_ttl: f64,
    /// Seconds to connect (TCP and TLS).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub(crate) connect_timeout: f64,
    /// Seconds one attempt may take, body included.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub(crate) timeout: f64,
    /// Seconds of silence allowed while waiting for or reading an answer.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub(crate) read_timeout: f64,
    /// Retries after the first attempt (only for network errors, timeouts,
    /// 408, 429 and 5xx except 501).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub(crate) retries: u32,
    /// First backoff in milliseconds (full jitter, doubling per retry).
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub(crate) backoff_base_ms: u64,
    /// Largest backoff in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub(crate) backoff_cap_ms: u64,
    /// Longest Retry-After waited for, in seconds (longer: the error is
    /// recorded instead).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub(crate) max_retry_after: u64,
    /// Redirects followed at most.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub(crate) max_redirects: u32,
    /// Largest body in bytes (after decompression).
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024 * 1024)]
    pub(crate) max_body_bytes: u64,
    /// HTTP method.
    #[arg(short = 'X', long, default_value = "GET")]
    pub(crate) method: String,
    /// A request header, 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub(crate) headers: Vec<String>,
    /// A JSON body (sets Content-Type: application/json).
    #[arg(long, value_name = "JSON", conflicts_with = "data")]
    pub(crate) json: Option<String>,
    /// A raw body.
    #[arg(long, value_name = "TEXT")]
    pub(crate) data: Option<String>,
    /// User-Agent [default: surge/VERSION].
    #[arg(long, value_name = "UA")]
    pub(crate) user_agent: Option<String>,
    /// Relative URLs are joined to this.
    #[arg(long, value_name = "URL")]
    pub(crate) base_url: Option<String>,
    /// What to do with bodies.
    #[arg(long, value_enum, default_value = "discard")]
    pub(crate) body: BodyMode,
    /// Folder for --body save (one file per URL, named by its input line).
    #[arg(long, value_name = "DIR")]
    pub(crate) save_dir: Option<PathBuf>,
    /// Speak HTTP/2 to http:// URLs without negotiation (h2c).
    #[arg(long)]
    pub(crate) http2: bool,
    /// Do not ask for compressed bodies.
    #[arg(long)]
    pub(crate) no_decompress: bool,
    /// Refuse private, loopback, link-local, CGNAT and metadata addresses
    /// (as work submitted over the API is).
    #[arg(long)]
    pub(crate) public_only: bool,
    /// With --public-only, still allow this network (CIDR; repeatable).
    #[arg(long, value_name = "CIDR", requires = "public_only")]
    pub(crate) allow_net: Vec<String>,
    /// Progress bar on stderr.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) progress: ProgressMode,
    /// The summary at the end.
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) summary: SummaryFormat,
}

/// `surge bench …`.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// The task queue: burn-down, end-to-end and submit-to-start latency of
    /// no-op tasks with in-process workers (the ones `surge serve` embeds),
    /// on a fresh SQLite file, PostgreSQL schema or Redis namespace that is
    /// deleted at the end.
    Queue(BenchQueueArgs),
    /// HTTP load sweep: closed-loop concurrency levels or open-loop rates
    /// (latency from each request's intended send time), one or more
    /// labelled targets side by side; table, JSON, HTML report with charts.
    Http(Box<crate::bench_http::BenchHttpArgs>),
    /// One report (table, HTML, SVG charts) from saved results of `surge
    /// bench http --save` and `surge bench queue --json`, side by side.
    Report(crate::bench_report::BenchReportArgs),
}

/// A phase of `surge bench queue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BenchPhase {
    /// Pre-insert the tasks (not timed), start the workers, time until all
    /// succeeded.
    Burn,
    /// Submissions alone (one call per task, to a queue no worker takes):
    /// the ceiling of end-to-end. Not run unless named.
    Submit,
    /// Workers idle; submit one task per call, time until all succeeded.
    E2e,
    /// Workers idle; one task every --latency-interval-ms; submit-to-start.
    Latency,
}

/// `surge bench queue` flags.
#[derive(Debug, Args)]
pub(crate) struct BenchQueueArgs {
    /// sqlite://PATH (created, refused if it exists unless --overwrite,
    /// deleted at the end), postgres://USER@HOST/DB (a schema bench_<random>
    /// is created and dropped) or redis://HOST:PORT (a namespace
    /// surge-bench-<random> whose keys are deleted).
    #[arg(long, value_name = "URL", default_value = "sqlite://surge-bench.db")]
    pub(crate) broker: String,
    /// Replace an existing SQLite file.
    #[arg(long)]
    pub(crate) overwrite: bool,
    /// Tasks in the burn-down and end-to-end phases.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub(crate) tasks: u64,
    /// Worker slots (tasks run at once) per worker.
    #[arg(long, value_name = "C", default_value_t = 256)]
    pub(crate) concurrency: usize,
    /// Workers in this process, each with its own claim loop, acker and
    /// lease, sharing one broker connection pool (as `surge serve` does).
    #[arg(long, value_name = "W", default_value_t = 1)]
    pub(crate) workers: usize,
    /// Concurrent submitters in the end-to-end phase (1 = one `.delay()`
    /// call after another, as the Celery peer does).
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub(crate) submitters: usize,
    /// Tasks in the latency phase.
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub(crate) latency_tasks: u64,
    /// Milliseconds between two submissions in the latency phase.
    #[arg(long, value_name = "MS", default_value_t = 2.0)]
    pub(crate) latency_interval_ms: f64,
    /// Phases to run, comma-separated (burn, submit, e2e, latency; they run
    /// in that order).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "burn,e2e,latency"
    )]
    pub(crate) phase: Vec<BenchPhase>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Where the task broker is (shared by the queue commands).
#[derive(Debug, Args, Clone)]
pub(crate) struct BrokerArgs {
    /// sqlite://PATH, postgres://USER@HOST/DB or redis://HOST:PORT.
    #[arg(
        long,
        env = "SURGE_BROKER_URL",
        value_name = "URL",
        default_value = "sqlite://surge.db"
    )]
    pub(crate) broker: String,
}

/// `surge worker` flags.
#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    pub(crate) broker: BrokerArgs,
    /// Tasks run at once.
    #[arg(long, env = "SURGE_CONCURRENCY", default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Queues to take tasks from, comma-separated.
    #[arg(
        long,
        env = "SURGE_QUEUES",
        value_delimiter = ',',
        default_value = "default"
    )]
    pub(crate) queues: Vec<String>,
    /// Seconds a lease lives without a heartbeat; a dead worker's tasks run
    /// again this long after it died.
    #[arg(long, env = "SURGE_LEASE_TTL", default_value_t = 10.0)]
    pub(crate) lease_ttl: f64,
    /// Seconds running tasks get to finish after SIGINT/SIGTERM before they
    /// are handed back to the queue.
    #[arg(long, env = "SURGE_SHUTDOWN_GRACE", default_value_t = 30.0)]
    pub(crate) shutdown_grace: f64,
    /// Do not fire cron schedules from this worker.
    #[arg(long, env = "SURGE_NO_SCHEDULER")]
    pub(crate) no_scheduler: bool,
    /// Let http.fetch tasks reach private, loopback, link-local, CGNAT and
    /// cloud-metadata addresses (refused by default).
    #[arg(long, env = "SURGE_FETCH_ALLOW_PRIVATE")]
    pub(crate) fetch_allow_private: bool,
    /// Log format on stderr.
    #[arg(long, env = "SURGE_LOG_FORMAT", value_enum, default_value = "human")]
    pub(crate) log_format: LogFormat,
    /// Log filter [default: RUST_LOG, else info].
    #[arg(long, env = "SURGE_LOG_LEVEL", value_name = "FILTER")]
    pub(crate) log_level: Option<String>,
}

/// `surge task …`.
#[derive(Debug, Subcommand)]
pub(crate) enum TaskCommand {
    /// Submit a task; prints its id (or the whole record with --json).
    Submit(TaskSubmitArgs),
    /// Show one task.
    Get {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Task id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tasks, newest first.
    List(TaskListArgs),
    /// Cancel a waiting task, or ask a running one to stop.
    Cancel {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Task id.
        id: String,
    },
    /// Run a dead, failed or cancelled task again.
    Retry {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Task id.
        id: String,
    },
}

/// `surge task submit` flags.
#[derive(Debug, Args)]
pub(crate) struct TaskSubmitArgs {
    #[command(flatten)]
    pub(crate) broker: BrokerArgs,
    /// Task kind: noop, sleep, process, fail.
    pub(crate) kind: String,
    /// Arguments as JSON, e.g. '{"ms": 500}' [default: none: null, or {}
    /// for a kind whose arguments are all optional].
    #[arg(long, value_name = "JSON")]
    pub(crate) args: Option<String>,
    /// Queue.
    #[arg(long, default_value = "default")]
    pub(crate) queue: String,
    /// Priority, -1000..=1000 (higher first).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub(crate) priority: i32,
    /// Seconds before it may run (0: now; at most ten years).
    #[arg(long, conflicts_with = "eta", value_name = "SECS")]
    pub(crate) countdown: Option<f64>,
    /// Not before this time (RFC 3339).
    #[arg(long)]
    pub(crate) eta: Option<String>,
    /// Retries after the first attempt, at most 100 [default: the kind's].
    #[arg(long)]
    pub(crate) max_retries: Option<u32>,
    /// Soft time limit in seconds (the handler is told to stop).
    #[arg(long, value_name = "SECS")]
    pub(crate) soft_time_limit: Option<f64>,
    /// Hard time limit in seconds (the handler is dropped).
    #[arg(long, value_name = "SECS")]
    pub(crate) hard_time_limit: Option<f64>,
    /// Unique key: a live task holding it is returned instead.
    #[arg(long)]
    pub(crate) unique_key: Option<String>,
    /// Wait up to this many seconds for the task to finish and print it.
    #[arg(long, value_name = "SECS")]
    pub(crate) wait: Option<f64>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `surge task list` flags.
#[derive(Debug, Args)]
pub(crate) struct TaskListArgs {
    #[command(flatten)]
    pub(crate) broker: BrokerArgs,
    /// Only in this state.
    #[arg(long)]
    pub(crate) state: Option<String>,
    /// Only of this kind.
    #[arg(long)]
    pub(crate) kind: Option<String>,
    /// Only on this queue.
    #[arg(long)]
    pub(crate) queue: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: u32,
    /// Print JSON lines.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `surge schedule …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Create or replace a schedule.
    Add {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Schedule name.
        name: String,
        /// Cron expression (5 fields, or 6-7 with seconds first).
        #[arg(long)]
        cron: String,
        /// IANA time zone.
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// Task kind.
        #[arg(long)]
        kind: String,
        /// Task arguments as JSON [default: none].
        #[arg(long, value_name = "JSON")]
        args: Option<String>,
        /// Queue.
        #[arg(long, default_value = "default")]
        queue: String,
    },
    /// List schedules.
    List {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Delete a schedule.
    Rm {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Schedule name.
        name: String,
    },
}

/// `surge serve` flags. Each also reads a `SURGE_*` environment variable and
/// the same key (with `_`) in the TOML file given by `--config`; a flag wins
/// over the environment, which wins over the file.
#[derive(Debug, Args, Default)]
pub(crate) struct ServeArgs {
    /// TOML file with any of the settings below (keys like `max_in_flight`).
    #[arg(long, env = "SURGE_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:8000]; port 0 picks a free one.
    #[arg(long, env = "SURGE_BIND", value_name = "ADDR")]
    pub(crate) bind: Option<String>,

    /// sqlite://PATH (embedded, created if missing) or postgres://USER@HOST/DB
    /// [default: sqlite://surge.db].
    #[arg(long, env = "SURGE_DATABASE_URL", value_name = "URL")]
    pub(crate) database_url: Option<String>,

    /// Require `Authorization: Bearer TOKEN` on the API (not on /health,
    /// /metrics, /docs, /openapi.json).
    #[arg(
        long,
        env = "SURGE_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub(crate) api_token: Option<String>,

    /// Allow listening on a non-loopback address with no API token.
    #[arg(long, env = "SURGE_ALLOW_UNAUTHENTICATED")]
    pub(crate) allow_unauthenticated: bool,

    /// Requests served at once; more are refused with 503 + Retry-After
    /// [default: 4096].
    #[arg(long, env = "SURGE_MAX_IN_FLIGHT", value_name = "N")]
    pub(crate) max_in_flight: Option<usize>,

    /// Seconds a request may take before it is answered 503 [default: 30].
    #[arg(long, env = "SURGE_REQUEST_TIMEOUT", value_name = "SECS")]
    pub(crate) request_timeout: Option<f64>,

    /// Largest request body in bytes [default: 1048576].
    #[arg(long, env = "SURGE_MAX_BODY_BYTES", value_name = "N")]
    pub(crate) max_body_bytes: Option<usize>,

    /// Database connections at most [default: 16].
    #[arg(long, env = "SURGE_DB_POOL_SIZE", value_name = "N")]
    pub(crate) db_pool_size: Option<u32>,

    /// Seconds to wait for a free database connection (and, on SQLite, for
    /// another writer's lock) before answering 503 [default: 5].
    #[arg(long, env = "SURGE_DB_ACQUIRE_TIMEOUT", value_name = "SECS")]
    pub(crate) db_acquire_timeout: Option<f64>,

    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM
    /// [default: 30].
    #[arg(long, env = "SURGE_SHUTDOWN_GRACE", value_name = "SECS")]
    pub(crate) shutdown_grace: Option<f64>,

    /// Task broker: sqlite://PATH, postgres://… or redis://… [default: the
    /// database URL].
    #[arg(long, env = "SURGE_BROKER_URL", value_name = "URL")]
    pub(crate) broker_url: Option<String>,

    /// Embedded worker slots (tasks run at once in this process); 0 runs
    /// none [default: 64].
    #[arg(long, env = "SURGE_WORKERS", value_name = "N")]
    pub(crate) workers: Option<usize>,

    /// Queues the embedded workers take tasks from, comma-separated
    /// [default: default].
    #[arg(long, env = "SURGE_QUEUES", value_delimiter = ',')]
    pub(crate) queues: Option<Vec<String>>,

    /// Seconds a worker lease lives without a heartbeat [default: 10].
    #[arg(long, env = "SURGE_LEASE_TTL", value_name = "SECS")]
    pub(crate) lease_ttl: Option<f64>,

    /// Let http.fetch tasks reach private, loopback, link-local, CGNAT and
    /// cloud-metadata addresses (refused by default: tasks arrive over the
    /// API).
    #[arg(long, env = "SURGE_FETCH_ALLOW_PRIVATE")]
    pub(crate) fetch_allow_private: bool,

    /// Log format on stderr [default: human].
    #[arg(long, env = "SURGE_LOG_FORMAT", value_enum)]
    pub(crate) log_format: Option<LogFormat>,

    /// Log filter, e.g. `info` or `surge=debug,tower_http=debug`
    /// [default: RUST_LOG, else info].
    #[arg(long, env = "SURGE_LOG_LEVEL", value_name = "FILTER")]
    pub(crate) log_level: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}
