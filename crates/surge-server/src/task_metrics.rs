//! Prometheus metrics of the task engine: the [`Observer`] the workers
//! report to, and queue depth per state read from the broker at scrape time.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use surge_queue::Observer;
use surge_queue::model::{QueueCount, Rescued, TaskState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DepthLabels {
    queue: String,
    state: String,
}

type Seconds = Family<KindLabels, Histogram, fn() -> Histogram>;

fn run_histogram() -> Histogram {
    // 0.1 ms .. ~55 min.
    Histogram::new(exponential_buckets(0.000_1, 2.5, 20))
}

/// The task engine's metrics.
#[derive(Debug)]
pub struct TaskMetrics {
    finished: Family<OutcomeLabels, Counter>,
    run: Seconds,
    wait: Seconds,
    time_limit_kills: Family<KindLabels, Counter>,
    fenced: Family<KindLabels, Counter>,
    rescued: Counter,
    rescued_dead: Counter,
    schedule_fired: Counter,
    depth: Family<DepthLabels, Gauge>,
}

impl TaskMetrics {
    /// Registers the metrics in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> TaskMetrics {
        let m = TaskMetrics {
            finished: Family::default(),
            run: Family::new_with_constructor(run_histogram),
            wait: Family::new_with_constructor(run_histogram),
            time_limit_kills: Family::default(),
            fenced: Family::default(),
            rescued: Counter::default(),
            rescued_dead: Counter::default(),
            schedule_fired: Counter::default(),
            depth: Family::default(),
        };
        registry.register(
            "tasks_finished",
            "Task attempts ended, by kind and outcome (succeeded, retry, failed, dead, cancelled, requeued)",
            m.finished.clone(),
        );
        registry.register(
            "task_run_seconds",
            "Run time of task attempts, by kind",
            m.run.clone(),
        );
        registry.register(
            "task_wait_seconds",
            "Time from a task being due to its attempt starting, by kind",
            m.wait.clone(),
        );
        registry.register(
            "task_time_limit_kills",
            "Attempts dropped by their hard time limit, by kind",
            m.time_limit_kills.clone(),
        );
        registry.register(
            "task_completions_fenced",
            "Completions refused because the worker's lease was lost, by kind",
            m.fenced.clone(),
        );
        registry.register(
            "task_lease_rescues",
            "Tasks of expired leases put back to wait",
            m.rescued.clone(),
        );
        registry.register(
            "task_lease_rescues_dead",
            "Tasks of expired leases that had no attempt left (now dead)",
            m.rescued_dead.clone(),
        );
        registry.register(
            "schedule_ticks_fired",
            "Cron ticks fired by this process's scheduler",
            m.schedule_fired.clone(),
        );
        registry.register(
            "queue_tasks",
            "Tasks per queue and state (read from the broker at scrape time)",
            m.depth.clone(),
        );
        m
    }

    /// Sets the queue depth gauges from the broker's counts.
    pub(crate) fn set_depth(&self, counts: &[QueueCount]) {
        self.depth.clear();
        for c in counts {
            self.depth
                .get_or_create(&DepthLabels {
                    queue: c.queue.clone(),
                    state: c.state.as_str().to_owned(),
                })
                .set(i64::try_from(c.count).unwrap_or(i64::MAX));
        }
        // Waiting states with no task still show as 0 on the default queue.
        for state in [TaskState::Pending, TaskState::Running] {
            let _ = self.depth.get_or_create(&DepthLabels {
                queue: surge_queue::DEFAULT_QUEUE.to_owned(),
                state: state.as_str().to_owned(),
            });
        }
    }
}

fn kind(kind: &str) -> KindLabels {
    KindLabels {
        kind: kind.to_owned(),
    }
}

impl Observer for TaskMetrics {
    fn task_started(&self, k: &str, queued: Duration) {
        self.wait
            .get_or_create(&kind(k))
            .observe(queued.as_secs_f64());
    }

    fn task_finished(&self, k: &str, outcome: &'static str, run_time: Duration) {
        self.finished
            .get_or_create(&OutcomeLabels {
                kind: k.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.run
            .get_or_create(&kind(k))
            .observe(run_time.as_secs_f64());
    }

    fn time_limit_killed(&self, k: &str) {
        self.time_limit_kills.get_or_create(&kind(k)).inc();
    }

    fn rescued(&self, rescued: Rescued) {
        self.rescued.inc_by(rescued.requeued);
        self.rescued_dead.inc_by(rescued.dead);
    }

    fn fenced(&self, k: &str) {
        self.fenced.get_or_create(&kind(k)).inc();
    }

    fn schedule_fired(&self, _name: &str) {
        self.schedule_fired.inc();
    }
}
