//! Prometheus metrics of the task engine: the [`Observer`] the workers
//! report to, and queue depth per state read from the broker at scrape time;
//! plus, per task kind, the lock-free counters and histograms `/stats` reads.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use surge_queue::Observer;
use surge_queue::model::{QueueCount, Rescued, TaskState};

use crate::stats::window::{LiveHistogram, empty};

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

/// The outcomes a finished attempt is counted under, in the order of
/// [`KindSnapshot::finished`].
pub(crate) const OUTCOMES: [&str; 6] = [
    "succeeded",
    "retry",
    "failed",
    "dead",
    "cancelled",
    "requeued",
];

/// Most task kinds tracked one by one for `/stats`; more fold into
/// [`OTHER_KINDS`], so memory stays bounded whatever kinds workers see.
pub(crate) const MAX_KINDS: usize = 64;
/// The name under which kinds past [`MAX_KINDS`] are counted.
pub(crate) const OTHER_KINDS: &str = "(other)";

/// One kind's counters and histograms (since start).
#[derive(Debug, Default)]
struct KindCounters {
    finished: [AtomicU64; OUTCOMES.len()],
    run: LiveHistogram,
    wait: LiveHistogram,
}

/// A reading of one kind's counters.
#[derive(Debug, Clone)]
pub(crate) struct KindSnapshot {
    /// Attempts ended, per outcome, in [`OUTCOMES`] order.
    pub(crate) finished: [u64; OUTCOMES.len()],
    pub(crate) run: histogram::Histogram,
    pub(crate) wait: histogram::Histogram,
}

impl KindSnapshot {
    /// Nothing recorded (a kind first seen after a window's base).
    pub(crate) fn zero() -> Self {
        KindSnapshot {
            finished: [0; OUTCOMES.len()],
            run: empty(),
            wait: empty(),
        }
    }
}

/// A reading of the task engine's counters at one instant.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskSnapshot {
    pub(crate) kinds: BTreeMap<String, KindSnapshot>,
    pub(crate) rescued: u64,
    pub(crate) rescued_dead: u64,
    pub(crate) time_limit_kills: u64,
    pub(crate) fenced: u64,
    pub(crate) schedule_fired: u64,
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
    kinds: RwLock<HashMap<String, KindCounters>>,
    time_limit_kills_total: AtomicU64,
    fenced_total: AtomicU64,
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
            kinds: RwLock::default(),
            time_limit_kills_total: AtomicU64::new(0),
            fenced_total: AtomicU64::new(0),
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

impl TaskMetrics {
    /// Runs `f` on the counters of `kind` (created on first sight, or the
    /// shared [`OTHER_KINDS`] ones once [`MAX_KINDS`] are tracked).
    fn with_kind(&self, kind: &str, f: impl Fn(&KindCounters)) {
        {
            let kinds = self.kinds.read().unwrap_or_else(|e| e.into_inner());
            let folded = || (kinds.len() >= MAX_KINDS).then(|| kinds.get(OTHER_KINDS));
            if let Some(c) = kinds.get(kind).or_else(|| folded().flatten()) {
                return f(c);
            }
        }
        let mut kinds = self.kinds.write().unwrap_or_else(|e| e.into_inner());
        let key = if kinds.len() < MAX_KINDS || kinds.contains_key(kind) {
            kind
        } else {
            OTHER_KINDS
        };
        f(kinds.entry(key.to_owned()).or_default());
    }

    /// The counters of every kind and of rescues, now.
    pub(crate) fn snapshot(&self) -> TaskSnapshot {
        let kinds = self.kinds.read().unwrap_or_else(|e| e.into_inner());
        TaskSnapshot {
            kinds: kinds
                .iter()
                .map(|(k, c)| {
                    let finished = c.finished.each_ref().map(|a| a.load(Ordering::Relaxed));
                    let snap = KindSnapshot {
                        finished,
                        run: c.run.load(),
                        wait: c.wait.load(),
                    };
                    (k.clone(), snap)
                })
                .collect(),
            rescued: self.rescued.get(),
            rescued_dead: self.rescued_dead.get(),
            time_limit_kills: self.time_limit_kills_total.load(Ordering::Relaxed),
            fenced: self.fenced_total.load(Ordering::Relaxed),
            schedule_fired: self.schedule_fired.get(),
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
        self.with_kind(k, |c| c.wait.record(queued));
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
        let i = OUTCOMES.iter().position(|o| *o == outcome);
        self.with_kind(k, |c| {
            if let Some(i) = i {
                c.finished[i].fetch_add(1, Ordering::Relaxed);
            }
            c.run.record(run_time);
        });
    }

    fn time_limit_killed(&self, k: &str) {
        self.time_limit_kills.get_or_create(&kind(k)).inc();
        self.time_limit_kills_total.fetch_add(1, Ordering::Relaxed);
    }

    fn rescued(&self, rescued: Rescued) {
        self.rescued.inc_by(rescued.requeued);
        self.rescued_dead.inc_by(rescued.dead);
    }

    fn fenced(&self, k: &str) {
        self.fenced.get_or_create(&kind(k)).inc();
        self.fenced_total.fetch_add(1, Ordering::Relaxed);
    }

    fn schedule_fired(&self, _name: &str) {
        self.schedule_fired.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_kind_and_folds_kinds_past_the_cap() {
        let m = TaskMetrics::register(&mut Registry::default());
        m.task_started("noop", Duration::from_millis(2));
        m.task_finished("noop", "succeeded", Duration::from_millis(1));
        m.task_finished("noop", "retry", Duration::from_millis(1));
        m.rescued(Rescued {
            requeued: 2,
            dead: 1,
            dead_ids: Vec::new(),
        });
        m.time_limit_killed("noop");
        let snap = m.snapshot();
        let noop = &snap.kinds["noop"];
        assert_eq!(noop.finished, [1, 1, 0, 0, 0, 0]);
        assert_eq!(noop.run.as_slice().iter().sum::<u64>(), 2);
        assert_eq!(noop.wait.as_slice().iter().sum::<u64>(), 1);
        assert_eq!(
            (snap.rescued, snap.rescued_dead, snap.time_limit_kills),
            (2, 1, 1)
        );

        for i in 0..MAX_KINDS + 10 {
            m.task_finished(&format!("k{i}"), "failed", Duration::ZERO);
        }
        let snap = m.snapshot();
        assert_eq!(
            snap.kinds.len(),
            MAX_KINDS + 1,
            "{MAX_KINDS} kinds + {OTHER_KINDS}"
        );
        assert_eq!(snap.kinds[OTHER_KINDS].finished[2], 11);
    }
}
