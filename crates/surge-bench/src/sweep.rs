//! A sweep: every level, and at each level every target, one after another.

use std::time::Duration;

use crate::BenchError;
use crate::engine::{Abort, Level, Progress, run_level};
use crate::plan::{LoadModel, Plan};
use crate::results::{LoadAxis, Point, Results, Series, Suite};
use crate::target::Target;

/// What a sweep reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A level starts for a target.
    LevelStart {
        /// The target's label.
        label: &'a str,
        /// The level.
        level: Level,
    },
    /// A snapshot of the level in progress.
    Progress {
        /// The target's label.
        label: &'a str,
        /// The level.
        level: Level,
        /// The snapshot.
        progress: Progress,
    },
    /// A level finished for a target.
    LevelDone {
        /// The target's label.
        label: &'a str,
        /// Its figures.
        point: &'a Point,
    },
}

/// Runs the sweep: first checks that every target is reachable, then for
/// each level runs every target in turn (so that a slow spell of a shared
/// machine falls on every target, not one), and returns the results. When
/// `abort` fires, the level in progress is dropped and the results hold the
/// levels that finished, with a note.
///
/// # Errors
/// [`BenchError::Invalid`] for no targets or a repeated label,
/// [`BenchError::Unreachable`] when a target cannot be connected to,
/// [`BenchError::Start`] when the generator cannot start.
pub fn sweep(
    targets: &[Target],
    plan: &Plan,
    abort: &Abort,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<Results, BenchError> {
    if targets.is_empty() {
        return Err(BenchError::invalid(
            "no target: give one or more --target LABEL=URL",
        ));
    }
    for (i, t) in targets.iter().enumerate() {
        if targets[..i].iter().any(|o| o.label() == t.label()) {
            return Err(BenchError::invalid(format!(
                "--target label {:?} is given twice; labels name the lines of the charts",
                t.label()
            )));
        }
    }
    let connect_timeout = plan.timeout.min(Duration::from_secs(5));
    let addrs = targets
        .iter()
        .map(|t| t.check_reachable(connect_timeout))
        .collect::<Result<Vec<_>, _>>()?;
    let levels: Vec<Level> = match &plan.load {
        LoadModel::Closed { levels } => levels.iter().map(|&c| Level::Closed(c)).collect(),
        LoadModel::Open { rates, connections } => rates
            .iter()
            .map(|&rate| Level::Open {
                rate,
                connections: *connections,
            })
            .collect(),
    };
    let mut series: Vec<Series> = targets
        .iter()
        .map(|t| Series {
            label: t.label().to_owned(),
            target: Some(t.info()),
            measured_at: None,
            points: Vec::new(),
        })
        .collect();
    let mut notes = Vec::new();
    'levels: for &level in &levels {
        for (i, target) in targets.iter().enumerate() {
            let label = target.label();
            on_event(Event::LevelStart { label, level });
            let point = run_level(target, addrs[i], level, plan, abort, &mut |progress| {
                on_event(Event::Progress {
                    label,
                    level,
                    progress,
                });
            })?;
            if abort.fired() {
                notes.push(format!(
                    "interrupted during {label} at {}: that level and the ones after it were not measured",
                    level_text(level)
                ));
                break 'levels;
            }
            on_event(Event::LevelDone {
                label,
                point: &point,
            });
            series[i].points.push(point);
        }
    }
    let (title, axis, meaning) = match plan.load {
        LoadModel::Closed { .. } => (
            "HTTP closed loop",
            LoadAxis::Connections,
            "from sending a request to reading the end of its response",
        ),
        LoadModel::Open { .. } => (
            "HTTP open loop",
            LoadAxis::RequestRate,
            "from each request's intended send time to the end of its response \
             (coordinated omission corrected)",
        ),
    };
    let suite = Suite {
        title: title.to_owned(),
        axis,
        throughput_unit: "requests/s".to_owned(),
        latency_meaning: meaning.to_owned(),
        plan: Some(plan.clone()),
        notes,
        series,
    };
    Ok(Results::new(None, vec![suite]))
}

/// `100 connections` or `500 requests/s`.
pub(crate) fn level_text(level: Level) -> String {
    match level {
        Level::Closed(c) => format!("{c} connections"),
        Level::Open { rate, connections } => {
            format!("{rate} requests/s over {connections} connections")
        }
    }
}
