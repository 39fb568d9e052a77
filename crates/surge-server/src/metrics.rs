//! Prometheus metrics of the HTTP edge and the database pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use surge_core::ErrorCategory;
use surge_store::PoolStats;

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
        let labels = RequestLabels {
            method: std::mem::take(&mut self.method),
            route: std::mem::take(&mut self.route),
            status,
        };
        m.duration
            .get_or_create(&labels)
            .observe(self.started.elapsed().as_secs_f64());
        m.requests.get_or_create(&labels).inc();
        if let Some(c) = category {
            m.errors
                .get_or_create(&CategoryLabels {
                    category: c.as_str().to_owned(),
                })
                .inc();
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
    }
}
