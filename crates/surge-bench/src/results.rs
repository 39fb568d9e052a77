//! The results document: what `--json` prints and `bench report` reads.
//!
//! One document holds one or more [`Suite`]s (one chart group each: the
//! same kind of load on the same axis); a suite holds one [`Series`] per
//! target, a series one [`Point`] per level. The document carries
//! [`SCHEMA`] and [`SCHEMA_VERSION`]; a reader refuses another version
//! instead of guessing.

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use surge_core::ErrorCategory;

use crate::BenchError;
use crate::machine::Machine;
use crate::plan::Plan;
use crate::target::TargetInfo;

/// The schema name in every results document.
pub const SCHEMA: &str = "surge-bench";
/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// A whole results document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Always [`SCHEMA_VERSION`] when written by this build.
    pub schema_version: u32,
    /// The surge that measured.
    pub surge_version: String,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// The command line, if known.
    pub command: Option<String>,
    /// Where it ran.
    pub machine: Machine,
    /// The chart groups.
    pub suites: Vec<Suite>,
}

/// What the load axis of a suite counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadAxis {
    /// Concurrent connections (closed loop).
    Connections,
    /// Offered requests per second (open loop).
    RequestRate,
    /// Concurrent task submitters (the queue benchmark).
    Submitters,
    /// Worker slots (the queue benchmark's burn-down).
    WorkerSlots,
}

impl LoadAxis {
    /// Axis title.
    pub fn title(self) -> &'static str {
        match self {
            LoadAxis::Connections => "connections",
            LoadAxis::RequestRate => "offered requests/s",
            LoadAxis::Submitters => "concurrent submitters",
            LoadAxis::WorkerSlots => "worker slots",
        }
    }
}

/// One chart group: series measured the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suite {
    /// Title, e.g. `HTTP closed loop`.
    pub title: String,
    /// What the load axis counts.
    pub axis: LoadAxis,
    /// Unit of the throughput figures, e.g. `requests/s`.
    pub throughput_unit: String,
    /// What the latency figures measure, in words.
    pub latency_meaning: String,
    /// The settings the suite was measured with, if it was an HTTP sweep.
    pub plan: Option<Plan>,
    /// Notes to print under the suite (settings of a non-HTTP benchmark).
    #[serde(default)]
    pub notes: Vec<String>,
    /// One per target.
    pub series: Vec<Series>,
}

/// One target's points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// The label (one line in each chart).
    pub label: String,
    /// The HTTP request, for an HTTP sweep.
    pub target: Option<TargetInfo>,
    /// When this series was measured (RFC 3339), when it differs from the
    /// document's `started_at` (a merged report).
    #[serde(default)]
    pub measured_at: Option<String>,
    /// One per level, in the order run.
    pub points: Vec<Point>,
}

/// One level of one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The level: connections, offered rate, submitters or slots.
    pub load: f64,
    /// Connections used (open loop: the pool; closed: = load).
    pub connections: Option<u32>,
    /// Measured seconds (warm-up excluded).
    pub seconds: f64,
    /// Responses counted (any status), or tasks for the queue.
    pub requests: u64,
    /// Counted per second.
    pub throughput: f64,
    /// Latency of the counted responses; `None` when nothing was counted.
    pub latency: Option<Latency>,
    /// Open loop only: latency from the actual send (what a tool without
    /// coordinated-omission correction reports).
    #[serde(default)]
    pub uncorrected_latency: Option<Latency>,
    /// Closed loop only: share of the time the connections had a request
    /// in flight (near 1: the generator kept up).
    #[serde(default)]
    pub in_flight_share: Option<f64>,
    /// Failed requests by category (every category, zeros included).
    pub errors: ErrorCounts,
    /// Responses by status code.
    #[serde(default)]
    pub statuses: BTreeMap<String, u64>,
    /// Response body bytes read.
    pub bytes: u64,
    /// The first error seen, in words.
    #[serde(default)]
    pub first_error: Option<String>,
}

impl Point {
    /// Errors of every category.
    pub fn error_total(&self) -> u64 {
        self.errors.total()
    }
}

/// A latency summary in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Samples.
    pub samples: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Smallest.
    pub min_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile (`None` when the source did not measure it).
    pub p999_ms: Option<f64>,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// The summary of a histogram of microseconds; `None` when empty.
    pub fn of_micros(h: &Histogram<u64>) -> Option<Latency> {
        let ms = |us: u64| us as f64 / 1e3;
        (!h.is_empty()).then(|| Latency {
            samples: h.len(),
            mean_ms: h.mean() / 1e3,
            min_ms: ms(h.min()),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: Some(ms(h.value_at_quantile(0.999))),
            max_ms: ms(h.max()),
        })
    }
}

impl Results {
    /// A new document stamped now, on this machine.
    pub fn new(command: Option<String>, suites: Vec<Suite>) -> Results {
        Results {
            schema: SCHEMA.to_owned(),
            schema_version: SCHEMA_VERSION,
            surge_version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            command,
            machine: Machine::describe(),
            suites,
        }
    }

    /// Parses a results document, checking its schema and version first.
    ///
    /// # Errors
    /// [`BenchError::NotResults`] for text that is not JSON or not of this
    /// schema, [`BenchError::SchemaVersion`] for another version.
    pub fn from_json(path: &Path, text: &str) -> Result<Results, BenchError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| BenchError::NotResults {
                path: path.to_owned(),
                reason: format!("not JSON ({e})"),
            })?;
        let schema = value.get("schema").and_then(|s| s.as_str()).unwrap_or("");
        if schema != SCHEMA {
            return Err(BenchError::NotResults {
                path: path.to_owned(),
                reason: format!("its \"schema\" is {schema:?}, expected {SCHEMA:?}"),
            });
        }
        match value.get("schema_version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(SCHEMA_VERSION) => {}
            Some(found) => {
                return Err(BenchError::SchemaVersion {
                    path: path.to_owned(),
                    schema: schema.to_owned(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            None => {
                return Err(BenchError::NotResults {
                    path: path.to_owned(),
                    reason: "no numeric \"schema_version\"".to_owned(),
                });
            }
        }
        serde_json::from_value(value).map_err(|e| BenchError::NotResults {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Reads and parses a results file.
    ///
    /// # Errors
    /// [`BenchError::Io`] when it cannot be read; otherwise as
    /// [`Results::from_json`].
    pub fn load(path: &Path) -> Result<Results, BenchError> {
        let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
            path: path.to_owned(),
            source,
        })?;
        Results::from_json(path, &text)
    }

    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("results serialize");
        s.push('\n');
        s
    }

    /// Writes [`Results::to_json`] to `path`.
    ///
    /// # Errors
    /// [`BenchError::Io`].
    pub fn save(&self, path: &Path) -> Result<(), BenchError> {
        std::fs::write(path, self.to_json()).map_err(|source| BenchError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// Puts several documents into one: suites with the same title and axis
    /// are joined; a series whose label is already there is joined with it
    /// when their levels do not overlap, and otherwise kept apart under
    /// `label (date)`. The machine and date are the first document's; each
    /// series from another date keeps its own in `measured_at`.
    pub fn merge(docs: Vec<Results>) -> Option<Results> {
        let mut docs = docs.into_iter();
        let mut out = docs.next()?;
        for doc in docs {
            for suite in doc.suites {
                let at = (doc.started_at != out.started_at).then(|| doc.started_at.clone());
                let idx = out
                    .suites
                    .iter()
                    .position(|s| s.title == suite.title && s.axis == suite.axis);
                let into = match idx {
                    Some(i) => &mut out.suites[i],
                    None => {
                        out.suites.push(Suite {
                            series: Vec::new(),
                            ..suite.clone()
                        });
                        out.suites.last_mut().expect("just pushed")
                    }
                };
                for mut series in suite.series {
                    if series.measured_at.is_none() {
                        series.measured_at.clone_from(&at);
                    }
                    into.add_series(series);
                }
            }
        }
        Some(out)
    }
}

impl Suite {
    fn add_series(&mut self, mut series: Series) {
        if let Some(same) = self.series.iter_mut().find(|s| s.label == series.label) {
            let overlap = series
                .points
                .iter()
                .any(|p| same.points.iter().any(|q| q.load == p.load));
            if !overlap && same.target == series.target {
                same.points.append(&mut series.points);
                same.points.sort_by(|a, b| a.load.total_cmp(&b.load));
                return;
            }
            let when = series.measured_at.as_deref().unwrap_or("again");
            let base = format!("{} ({when})", series.label);
            let mut label = base.clone();
            let mut n = 2;
            while self.series.iter().any(|s| s.label == label) {
                label = format!("{base} #{n}");
                n += 1;
            }
            series.label = label;
        }
        self.series.push(series);
    }

    /// Every load value of every series, ascending, without repeats.
    pub fn loads(&self) -> Vec<f64> {
        let mut loads: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.load))
            .collect();
        loads.sort_by(f64::total_cmp);
        loads.dedup();
        loads
    }
}

/// Failed requests per [`ErrorCategory`], every category listed (in
/// [`ErrorCategory::ALL`] order); JSON: `{"network": 0, "timeout": 2, …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCounts(Vec<(ErrorCategory, u64)>);

impl Default for ErrorCounts {
    fn default() -> ErrorCounts {
        ErrorCounts(ErrorCategory::ALL.iter().map(|&c| (c, 0)).collect())
    }
}

impl ErrorCounts {
    /// Adds `n` to `category`.
    pub fn add(&mut self, category: ErrorCategory, n: u64) {
        match self.0.iter_mut().find(|(c, _)| *c == category) {
            Some((_, v)) => *v += n,
            None => self.0.push((category, n)),
        }
    }

    /// The count of `category`.
    pub fn get(&self, category: ErrorCategory) -> u64 {
        self.0
            .iter()
            .find(|(c, _)| *c == category)
            .map_or(0, |(_, n)| *n)
    }

    /// All errors.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|(_, n)| n).sum()
    }

    /// (category, count) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (ErrorCategory, u64)> + '_ {
        self.0.iter().copied()
    }
}

impl Serialize for ErrorCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (c, n) in &self.0 {
            map.serialize_entry(c, n)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ErrorCounts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ErrorCounts, D::Error> {
        let read = std::collections::HashMap::<ErrorCategory, u64>::deserialize(d)?;
        let mut counts = ErrorCounts::default();
        for (c, n) in read {
            counts.add(c, n);
        }
        Ok(counts)
    }
}
