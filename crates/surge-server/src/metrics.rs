//! Prometheus metrics of the HTTP edge and the database pool, and the
//! lock-free counters `/stats` reads (status classes, error categories,
//! latency and runtime-lag histograms).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use surge_core::ErrorCategory;
use surge_store::PoolStats;

use crate::stats::window::LiveHistogram;
pub use crate::task_metrics::TaskMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabels {
    category: String,
}

type DurationFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// Every metric the server exports, and its registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: DurationFamily,
    errors: Family<CategoryLabels, Counter>,
    in_flight: Gauge,
    shed: Counter,
    served: AtomicU64,
    pool_size: Gauge,
    pool_idle: Gauge,
    pool_waiting: Gauge,
    pool_max: Gauge,
    tasks: Arc<TaskMetrics>,
    live: ServiceCounters,
}

/// What `/stats` reads of the HTTP edge, besides the Prometheus metrics:
/// plain atomics and a lock-free histogram, so that recording a request
/// costs a few relaxed atomic adds (measured: see docs/BENCHMARKS.md).
#[derive(Debug, Default)]
pub(crate) struct ServiceCounters {
    /// Responses per status class: 1xx, 2xx, 3xx, 4xx (499 included), 5xx.
    status: [AtomicU64; 5],
    /// Error responses per category, in [`ErrorCategory::ALL`] order.
    errors: [AtomicU64; ErrorCategory::ALL.len()],
    latency: LiveHistogram,
    lag: LiveHistogram,
}

/// A reading of [`ServiceCounters`] and the edge's counters at one instant.
#[derive(Debug, Clone)]
pub(crate) struct ServiceSnapshot {
    pub(crate) served: u64,
    pub(crate) shed: u64,
    pub(crate) status: [u64; 5],
    pub(crate) errors: [u64; ErrorCategory::ALL.len()],
    pub(crate) latency: histogram::Histogram,
    pub(crate) lag: histogram::Histogram,
}

impl ServiceSnapshot {
    /// All zero: the state at process start.
    pub(crate) fn zero() -> Self {
        ServiceSnapshot {
            served: 0,
            shed: 0,
            status: [0; 5],
            errors: [0; ErrorCategory::ALL.len()],
            latency: crate::stats::window::empty(),
            lag: crate::stats::window::empty(),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("served", &self.served)
            .finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("surge");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration: DurationFamily = Family::new_with_constructor(latency_histogram);
        let errors = Family::<CategoryLabels, Counter>::default();
        let in_flight = Gauge::default();
        let shed = Counter::default();
        let (pool_size, pool_idle, pool_waiting, pool_max) = Default::default();
        registry.register(
            "http_requests",
            "HTTP requests served, by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency, by method, route and status",
            duration.clone(),
        );
        registry.register(
            "http_errors",
            "HTTP error responses, by error category",
            errors.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being served now",
            in_flight.clone(),
        );
        registry.register(
            "http_requests_shed",
            "HTTP requests refused with 503 by the concurrency limit",
            shed.clone(),
        );
        let pool: [(&str, &str, &Gauge); 4] = [
            ("db_pool_size", "Open database connections", &pool_size),
            ("db_pool_idle", "Idle database connections", &pool_idle),
            (
                "db_pool_waiting",
                "Callers waiting for a database connection",
                &pool_waiting,
            ),
            (
                "db_pool_max",
                "Configured maximum database connections",
                &pool_max,
            ),
        ];
        for (name, help, gauge) in pool {
            registry.register(name, help, gauge.clone());
        }
        let tasks = Arc::new(TaskMetrics::register(&mut registry));
        Metrics {
            registry,
            requests,
            duration,
            errors,
            in_flight,
            shed,
            served: AtomicU64::new(0),
            pool_size,
            pool_idle,
            pool_waiting,
            pool_max,
            tasks,
            live: ServiceCounters::default(),
        }
    }

    /// Requests being served now.
    pub(crate) fn in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    /// Counts how late the runtime-lag probe's timer fired.
    pub(crate) fn record_lag(&self, late: Duration) {
        self.live.lag.record(late);
    }

    /// The edge's counters and histograms, now.
    pub(crate) fn service_snapshot(&self) -> ServiceSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ServiceSnapshot {
            served: self.requests_served(),
            shed: self.shed.get(),
            status: self.live.status.each_ref().map(load),
            errors: self.live.errors.each_ref().map(load),
            latency: self.live.latency.load(),
            lag: self.live.lag.load(),
        }
    }

    /// The task engine's metrics (the workers' [`surge_queue::Observer`]).
    pub fn tasks(&self) -> Arc<TaskMetrics> {
        Arc::clone(&self.tasks)
    }

    /// Marks a request as started; the returned guard records it when the
    /// response is known (or as cancelled, status 499, if dropped first).
    pub(crate) fn start(self: &Arc<Self>, method: &str, route: &str) -> InFlight {
        self.in_flight.inc();
        InFlight {
            metrics: Arc::clone(self),
            method: method.to_owned(),
            route: route.to_owned(),
            started: Instant::now(),
            status: None,
        }
    }

    /// Counts one request refused by load shedding.
    pub(crate) fn record_shed(&self) {
        self.shed.inc();
    }

    /// Requests completed since start (for `/health`).
    pub fn requests_served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Renders the OpenMetrics text, with pool gauges read now.
    pub fn render(&self, pool: Option<PoolStats>) -> String {
        if let Some(p) = pool {
            self.pool_size.set(i64::from(p.size));
            self.pool_idle.set(i64::from(p.idle));
            self.pool_waiting.set(i64::from(p.waiting));
            self.pool_max.set(i64::from(p.max));
        }
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A request being served; records itself when dropped.
pub(crate) struct InFlight {
    metrics: Arc<Metrics>,
    method: String,
    route: String,
    started: Instant,
    status: Option<(u16, Option<ErrorCategory>)>,
}

impl InFlight {
    /// The response status and, for errors, their category.
    pub(crate) fn finish(mut self, status: u16, category: Option<ErrorCategory>) {
        self.status = Some((status, category));
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let m = &*self.metrics;
        m.in_flight.dec();
        // 499: the client went away before the response (nginx's convention).
        let (status, category) = self.status.unwrap_or((499, None));
        let elapsed = self.started.elapsed();
        let labels = RequestLabels {
            method: std::mem::take(&mut self.method),
            route: std::mem::take(&mut self.route),
            status,
        };
        m.duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        m.requests.get_or_create(&labels).inc();
        let live = &m.live;
        live.latency.record(elapsed);
        let class = usize::from(labels.status / 100).clamp(1, 5) - 1;
        live.status[class].fetch_add(1, Ordering::Relaxed);
        if let Some(c) = category {
            m.errors
                .get_or_create(&CategoryLabels {
                    category: c.as_str().to_owned(),
                })
                .inc();
            if let Some(i) = ErrorCategory::ALL.iter().position(|k| *k == c) {
                live.errors[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        m.served.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_requests_errors_and_in_flight() {
        let m = Arc::new(Metrics::new());
        let a = m.start("GET", "/users/{id}");
        let b = m.start("GET", "/health");
        assert!(m.render(None).contains("surge_http_requests_in_flight 2"));
        a.finish(404, Some(ErrorCategory::Business));
        drop(b); // never finished: counted as 499
        m.record_shed();
        let text = m.render(Some(PoolStats {
            size: 3,
            idle: 1,
            waiting: 0,
            max: 16,
        }));
        assert!(
            text.contains(
                r#"surge_http_requests_total{method="GET",route="/users/{id}",status="404"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"status="499"} 1"#));
        assert!(text.contains(r#"surge_http_errors_total{category="business"} 1"#));
        assert!(text.contains("surge_http_requests_in_flight 0"));
        assert!(text.contains("surge_http_requests_shed_total 1"));
        assert!(text.contains("surge_db_pool_max 16"));
        assert_eq!(m.requests_served(), 2);
        let snap = m.service_snapshot();
        assert_eq!((snap.served, snap.shed), (2, 1));
        assert_eq!(snap.status, [0, 0, 0, 2, 0], "404 and 499 are 4xx");
        let business = ErrorCategory::ALL
            .iter()
            .position(|c| *c == ErrorCategory::Business)
            .expect("listed");
        assert_eq!(snap.errors[business], 1);
        assert_eq!(snap.errors.iter().sum::<u64>(), 1);
        let latency = crate::stats::window::percentiles(&snap.latency).expect("two requests");
        assert_eq!(latency.count, 2);
    }
}
