//! How much load, for how long: the validated settings of a sweep.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::BenchError;

/// Default closed-loop levels (connections).
pub const DEFAULT_CONCURRENCY: [u32; 4] = [10, 25, 50, 100];
/// Most connections one level may open.
pub const MAX_CONNECTIONS: u32 = 100_000;
/// Highest open-loop rate, requests per second.
pub const MAX_RATE: f64 = 10_000_000.0;

/// The load model of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "model")]
pub enum LoadModel {
    /// Closed loop: each level is a number of connections, each sending its
    /// next request as soon as the previous response has been read.
    Closed {
        /// Connections per level.
        levels: Vec<u32>,
    },
    /// Open loop: each level is a request rate; request `k` of a level is
    /// due at `start + k / rate` whatever happened before, and its latency
    /// runs from that intended time (coordinated omission corrected).
    Open {
        /// Requests per second per level.
        rates: Vec<f64>,
        /// Connections kept open per level: due requests go to the next idle
        /// one; when all are busy, requests wait (and that wait is latency).
        connections: u32,
    },
}

impl LoadModel {
    /// Closed loop at `levels` connections.
    ///
    /// # Errors
    /// [`BenchError::Invalid`] for an empty list or a level that is zero or
    /// above [`MAX_CONNECTIONS`].
    pub fn closed(levels: Vec<u32>) -> Result<LoadModel, BenchError> {
        if levels.is_empty() {
            return Err(BenchError::invalid(
                "--concurrency: give at least one level",
            ));
        }
        for &c in &levels {
            if c == 0 || c > MAX_CONNECTIONS {
                return Err(BenchError::invalid(format!(
                    "--concurrency {c}: each level must be between 1 and {MAX_CONNECTIONS} connections"
                )));
            }
        }
        Ok(LoadModel::Closed { levels })
    }

    /// Open loop at `rates` requests per second over `connections`.
    ///
    /// # Errors
    /// [`BenchError::Invalid`] for an empty list, a rate that is not a
    /// positive number up to [`MAX_RATE`], or zero connections.
    pub fn open(rates: Vec<f64>, connections: u32) -> Result<LoadModel, BenchError> {
        if rates.is_empty() {
            return Err(BenchError::invalid("--rate: give at least one level"));
        }
        for &r in &rates {
            if !(r.is_finite() && r > 0.0 && r <= MAX_RATE) {
                return Err(BenchError::invalid(format!(
                    "--rate {r}: each level must be a rate above 0 and at most {MAX_RATE} requests/s"
                )));
            }
        }
        if connections == 0 || connections > MAX_CONNECTIONS {
            return Err(BenchError::invalid(format!(
                "--connections {connections}: must be between 1 and {MAX_CONNECTIONS}"
            )));
        }
        Ok(LoadModel::Open { rates, connections })
    }

    /// The levels, as numbers (connections or requests/s).
    pub fn levels(&self) -> Vec<f64> {
        match self {
            LoadModel::Closed { levels } => levels.iter().map(|&c| f64::from(c)).collect(),
            LoadModel::Open { rates, .. } => rates.clone(),
        }
    }
}

/// When a level's measurement ends.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// After this long (requests in flight then are finished and counted).
    #[serde(with = "secs")]
    Duration(Duration),
    /// After this many counted requests.
    Requests(u64),
}

/// Which HTTP client the generator uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Client {
    /// The lean client for every target this build supports (plain
    /// `http://`).
    #[default]
    Auto,
    /// The lean HTTP/1.1 client: the request encoded once, the response
    /// parsed with `httparse` from a reused buffer, nothing allocated per
    /// request.
    Lean,
    /// hyper's HTTP/1.1 client (about 5× the user-space instructions per
    /// request).
    Hyper,
}

impl Client {
    /// Parses `auto`, `lean` or `hyper`.
    ///
    /// # Errors
    /// [`BenchError::Invalid`] for anything else.
    pub fn parse(text: &str) -> Result<Client, BenchError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Client::Auto),
            "lean" => Ok(Client::Lean),
            "hyper" => Ok(Client::Hyper),
            _ => Err(BenchError::invalid(format!(
                "--client {text:?}: expected auto, lean or hyper"
            ))),
        }
    }

    fn before_the_choice() -> Client {
        Client::Hyper
    }

    /// The client actually used: `Auto` is the lean one (every target
    /// is plain `http://`).
    pub fn resolved(self) -> Client {
        match self {
            Client::Auto | Client::Lean => Client::Lean,
            Client::Hyper => Client::Hyper,
        }
    }
}

/// Settings shared by every level of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The load model and its levels.
    pub load: LoadModel,
    /// When each level's measurement ends.
    pub stop: Stop,
    /// Load sent before each level's measurement and not counted.
    #[serde(with = "secs")]
    pub warmup: Duration,
    /// A request not answered within this is a timeout error (and its
    /// connection is replaced).
    #[serde(with = "secs")]
    pub timeout: Duration,
    /// Generator threads (each with its own single-threaded runtime and a
    /// share of the connections).
    pub threads: usize,
    /// The HTTP client (absent in documents written before it was a
    /// choice: those were measured with hyper's).
    #[serde(default = "Client::before_the_choice")]
    pub client: Client,
}

impl Plan {
    /// Checks the settings together.
    ///
    /// # Errors
    /// [`BenchError::Invalid`] for a zero duration or request count, a zero
    /// timeout, zero threads, or more than an hour per level.
    pub fn new(
        load: LoadModel,
        stop: Stop,
        warmup: Duration,
        timeout: Duration,
        threads: usize,
    ) -> Result<Plan, BenchError> {
        match stop {
            Stop::Duration(d) if d.is_zero() || d > Duration::from_secs(3600) => {
                return Err(BenchError::invalid(format!(
                    "--duration {d:?}: must be above 0 and at most 1 hour"
                )));
            }
            Stop::Requests(0) => {
                return Err(BenchError::invalid("--requests 0: must be at least 1"));
            }
            _ => {}
        }
        if warmup > Duration::from_secs(3600) {
            return Err(BenchError::invalid("--warmup: at most 1 hour"));
        }
        if timeout.is_zero() || timeout > Duration::from_secs(3600) {
            return Err(BenchError::invalid(
                "--timeout: must be above 0 and at most 1 hour",
            ));
        }
        if threads == 0 || threads > 1024 {
            return Err(BenchError::invalid(format!(
                "--threads {threads}: must be between 1 and 1024"
            )));
        }
        Ok(Plan {
            load,
            stop,
            warmup,
            timeout,
            threads,
            client: Client::Auto,
        })
    }

    /// Uses `client` (default [`Client::Auto`]).
    #[must_use]
    pub fn with_client(mut self, client: Client) -> Plan {
        self.client = client;
        self
    }
}

/// Durations as (fractional) seconds in JSON.
pub(crate) mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = f64::deserialize(d)?;
        Duration::try_from_secs_f64(s).map_err(serde::de::Error::custom)
    }
}

/// Parses `500ms`, `2s`, `1.5s`, `3m` (a bare number is seconds).
///
/// # Errors
/// [`BenchError::Invalid`] naming `flag` for anything else or a negative
/// value.
///
/// # Example
/// ```
/// use std::time::Duration;
/// assert_eq!(surge_bench::parse_duration("--duration", "250ms").unwrap(), Duration::from_millis(250));
/// assert_eq!(surge_bench::parse_duration("--duration", "2").unwrap(), Duration::from_secs(2));
/// assert!(surge_bench::parse_duration("--duration", "-1s").is_err());
/// ```
pub fn parse_duration(flag: &str, text: &str) -> Result<Duration, BenchError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        _ => f64::NAN,
    };
    let value: Option<f64> = number.parse().ok();
    match value.map(|v| v * scale) {
        Some(secs) if secs.is_finite() && secs >= 0.0 => Duration::try_from_secs_f64(secs)
            .map_err(|e| BenchError::invalid(format!("{flag} {text:?}: {e}"))),
        _ => Err(BenchError::invalid(format!(
            "{flag} {text:?}: expected a duration such as 500ms, 10s or 2m"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_kept_in_results_and_older_plans_read_as_hyper() {
        let plan = Plan::new(
            LoadModel::closed(vec![10]).unwrap(),
            Stop::Requests(5),
            Duration::ZERO,
            Duration::from_secs(1),
            1,
        )
        .unwrap();
        assert_eq!(plan.client, Client::Auto);
        let lean = plan.clone().with_client(Client::Lean);
        let json = serde_json::to_value(&lean).unwrap();
        assert_eq!(json["client"], "lean");
        assert_eq!(serde_json::from_value::<Plan>(json.clone()).unwrap(), lean);
        // Written before the choice existed: measured with hyper's client.
        let mut old = json;
        old.as_object_mut().unwrap().remove("client");
        let old: Plan = serde_json::from_value(old).unwrap();
        assert_eq!(old.client, Client::Hyper);
        assert_eq!(Client::Auto.resolved(), Client::Lean);
        assert_eq!(Client::parse(" Hyper ").unwrap(), Client::Hyper);
        assert!(Client::parse("h2").is_err());
    }
}
