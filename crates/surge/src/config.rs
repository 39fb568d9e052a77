//! Stage two of configuration: flags and environment (from clap), then the
//! TOML file, then defaults — merged and validated into ready-to-use values.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use surge_queue::schedule::validate_name;
use surge_server::ServerConfig;
use surge_store::PoolConfig;

use crate::cli::{LogFormat, ServeArgs};

/// The `--config` file: the same keys as the flags, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<String>,
    database_url: Option<String>,
    api_token: Option<String>,
    allow_unauthenticated: Option<bool>,
    max_in_flight: Option<usize>,
    request_timeout: Option<f64>,
    max_body_bytes: Option<usize>,
    db_pool_size: Option<u32>,
    db_acquire_timeout: Option<f64>,
    shutdown_grace: Option<f64>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    broker_url: Option<String>,
    workers: Option<usize>,
    queues: Option<Vec<String>>,
    lease_ttl: Option<f64>,
    fetch_allow_private: Option<bool>,
}

/// Everything `surge serve` needs, validated.
#[derive(Debug)]
pub(crate) struct ServeSettings {
    pub(crate) bind: SocketAddr,
    pub(crate) database_url: String,
    pub(crate) server: ServerConfig,
    pub(crate) pool: PoolConfig,
    pub(crate) shutdown_grace: Duration,
    pub(crate) log_format: LogFormat,
    /// `None`: use `RUST_LOG`, else `info`.
    pub(crate) log_level: Option<String>,
    pub(crate) broker_url: String,
    /// Embedded workers; `None` when `--workers 0`.
    pub(crate) worker: Option<surge_queue::WorkerConfig>,
    /// What task kinds may reach.
    pub(crate) kinds: crate::kinds::KindOptions,
}

impl ServeSettings {
    pub(crate) fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let defaults = ServerConfig::default();
        let api_token = args.api_token.or(file.api_token).filter(|t| !t.is_empty());
        let allow_unauthenticated =
            args.allow_unauthenticated || file.allow_unauthenticated.unwrap_or(false);

        let bind_text = args
            .bind
            .or(file.bind)
            .unwrap_or_else(|| "127.0.0.1:8000".into());
        let bind = parse_bind(&bind_text)?;
        if !bind.ip().is_loopback() && api_token.is_none() && !allow_unauthenticated {
            bail!(
                "refusing to listen on {bind} without an API token: anyone who can reach it \
                 could use the API. Set --api-token / SURGE_API_TOKEN, bind a loopback address \
                 (127.0.0.1), or pass --allow-unauthenticated to serve it open on purpose"
            );
        }

        let max_in_flight = args
            .max_in_flight
            .or(file.max_in_flight)
            .unwrap_or(defaults.max_in_flight);
        if max_in_flight == 0 {
            bail!("--max-in-flight must be at least 1");
        }
        let max_body_bytes = args
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(defaults.max_body_bytes);
        let db_pool_size = args.db_pool_size.or(file.db_pool_size).unwrap_or(16);
        if db_pool_size == 0 {
            bail!("--db-pool-size must be at least 1");
        }
        let database_url = args
            .database_url
            .or(file.database_url)
            .unwrap_or_else(|| "sqlite://surge.db".into());
        let broker_url = args
            .broker_url
            .or(file.broker_url)
            .unwrap_or_else(|| database_url.clone());
        let shutdown_grace = seconds(
            "--shutdown-grace",
            args.shutdown_grace.or(file.shutdown_grace),
            Duration::from_secs(30),
        )?;
        let workers = args.workers.or(file.workers).unwrap_or(64);
        let worker = if workers == 0 {
            None
        } else {
            let lease_ttl = seconds(
                "--lease-ttl",
                args.lease_ttl.or(file.lease_ttl),
                Duration::from_secs(10),
            )?;
            let queues = args
                .queues
                .or(file.queues)
                .unwrap_or_else(|| vec![surge_queue::DEFAULT_QUEUE.to_owned()]);
            Some(worker_config(workers, queues, lease_ttl, shutdown_grace)?)
        };
        let kinds = crate::kinds::KindOptions {
            fetch_allow_private: args.fetch_allow_private
                || file.fetch_allow_private.unwrap_or(false),
        };
        Ok(ServeSettings {
            kinds,
            bind,
            database_url,
            broker_url,
            worker,
            server: ServerConfig {
                api_token,
                max_in_flight,
                request_timeout: seconds(
                    "--request-timeout",
                    args.request_timeout.or(file.request_timeout),
                    defaults.request_timeout,
                )?,
                max_body_bytes,
            },
            pool: PoolConfig {
                max_connections: db_pool_size,
                acquire_timeout: seconds(
                    "--db-acquire-timeout",
                    args.db_acquire_timeout.or(file.db_acquire_timeout),
                    Duration::from_secs(5),
                )?,
            },
            shutdown_grace,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            log_level: args.log_level.or(file.log_level),
        })
    }
}

/// A validated worker configuration (shared by `serve` and `worker`).
pub(crate) fn worker_config(
    concurrency: usize,
    queues: Vec<String>,
    lease_ttl: Duration,
    grace: Duration,
) -> anyhow::Result<surge_queue::WorkerConfig> {
    if lease_ttl < Duration::from_millis(500) {
        bail!("--lease-ttl must be at least 0.5 seconds");
    }
    if concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let queues: Vec<String> = queues
        .into_iter()
        .map(|q| q.trim().to_owned())
        .filter(|q| !q.is_empty())
        .collect();
    if queues.is_empty() {
        bail!("--queues must name at least one queue");
    }
    if let Some(bad) = queues.iter().find(|q| validate_name(q).is_err()) {
        bail!(
            "--queues: {bad:?} is not a queue name (1 to 200 letters, digits, '.', '_', '-', ':')"
        );
    }
    let config = surge_queue::WorkerConfig {
        queues,
        concurrency,
        lease_ttl,
        heartbeat_interval: (lease_ttl / 5).min(Duration::from_secs(1)),
        grace_period: grace,
        ..surge_queue::WorkerConfig::default()
    };
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid worker settings: {e}"))?;
    Ok(config)
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// `HOST:PORT` where HOST is an IP address or `localhost`.
fn parse_bind(text: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        let port = port
            .parse()
            .with_context(|| format!("invalid port in --bind {text:?}"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    bail!("invalid --bind {text:?}: expected IP:PORT, e.g. 127.0.0.1:8000 or [::1]:8000")
}

fn seconds(flag: &str, value: Option<f64>, default: Duration) -> anyhow::Result<Duration> {
    match value {
        None => Ok(default),
        Some(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        Some(s) => bail!("{flag} must be a number of seconds in (0, 86400], got {s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServeArgs {
        ServeArgs::default()
    }

    #[test]
    fn defaults_are_loopback_and_sqlite() {
        let s = ServeSettings::resolve(args()).unwrap();
        assert_eq!(s.bind, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(s.database_url, "sqlite://surge.db");
        assert!(s.server.api_token.is_none());
    }

    #[test]
    fn public_bind_needs_a_token_or_explicit_consent() {
        let open = ServeArgs {
            bind: Some("0.0.0.0:8000".into()),
            ..args()
        };
        let err = ServeSettings::resolve(open).unwrap_err().to_string();
        assert!(err.contains("--allow-unauthenticated"), "{err}");
        let with_token = ServeArgs {
            bind: Some("0.0.0.0:8000".into()),
            api_token: Some("t".into()),
            ..args()
        };
        assert!(ServeSettings::resolve(with_token).is_ok());
        let consented = ServeArgs {
            bind: Some("0.0.0.0:8000".into()),
            allow_unauthenticated: true,
            ..args()
        };
        assert!(ServeSettings::resolve(consented).is_ok());
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = std::env::temp_dir().join(format!("surge-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("surge.toml");
        std::fs::write(
            &path,
            "max_in_flight = 7\nrequest_timeout = 2.5\nbind = \"127.0.0.1:9\"\n",
        )
        .unwrap();
        let s = ServeSettings::resolve(ServeArgs {
            config: Some(path.clone()),
            bind: Some("127.0.0.1:10".into()),
            ..args()
        })
        .unwrap();
        assert_eq!(s.server.max_in_flight, 7);
        assert_eq!(s.server.request_timeout, Duration::from_millis(2500));
        assert_eq!(s.bind.port(), 10);
        std::fs::write(&path, "max_in_fligth = 7\n").unwrap();
        let err = ServeSettings::resolve(ServeArgs {
            config: Some(path),
            ..args()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        let e = ServeSettings::resolve(ServeArgs {
            request_timeout: Some(0.0),
            ..args()
        })
        .unwrap_err();
        assert!(e.to_string().contains("--request-timeout"));
        let e = ServeSettings::resolve(ServeArgs {
            bind: Some("nope".into()),
            ..args()
        })
        .unwrap_err();
        assert!(e.to_string().contains("--bind"));
        let e = ServeSettings::resolve(ServeArgs {
            max_in_flight: Some(0),
            ..args()
        })
        .unwrap_err();
        assert!(e.to_string().contains("--max-in-flight"));
    }
}
