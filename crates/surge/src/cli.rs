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
    /// Serve the JSON API (health, demo endpoints, users, docs, metrics).
    Serve(ServeArgs),
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
