//! One attempt of one claimed task: rate limit, time limits, cancellation,
//! progress, and the outcome handed to the acker.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use surge_core::ErrorCategory;
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc};

use super::Shared;
use super::acker::Ack;
use crate::broker::Broker;
use crate::client::unknown_kind_error;
use crate::model::{Completion, NewTask, Outcome, Progress, TaskError, TaskFilter, TaskRecord};
use crate::task::{SoftLimit, TaskContext};

/// Failed and dead tasks are kept at least this long for inspection.
const KEEP_FAILED: Duration = Duration::from_secs(7 * 24 * 3600);
/// Progress reaches the broker at most this often per task.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Runs `task` on its own tokio task, holding `permit` (a worker slot) until
/// its outcome is queued for acknowledgement.
pub(crate) fn spawn<B: Broker>(
    shared: Arc<Shared<B>>,
    task: TaskRecord,
    permit: OwnedSemaphorePermit,
) {
    tokio::spawn(async move {
        let _slot = permit;
        let cancel = Arc::new(Notify::new());
        shared
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                task.id,
                super::Running {
                    cancel: Arc::clone(&cancel),
                },
            );
        let queued = (Utc::now() - task.run_at).to_std().unwrap_or_default();
        shared.observer.task_started(&task.kind, queued);
        let started = tokio::time::Instant::now();
        let result = attempt(&shared, &task, &cancel).await;
        shared
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&task.id);
        let Some((outcome, follow_ups)) = result else {
            return; // lease lost: no acknowledgement
        };
        shared
            .observer
            .task_finished(&task.kind, label(&outcome), started.elapsed());
        let completion = Completion {
            id: task.id,
            epoch: task.epoch,
            worker_id: task.worker_id.unwrap_or_else(|| shared.worker_id()),
            outcome,
            follow_ups,
        };
        let _ = shared.acks.send(Ack::Done {
            completion,
            kind: task.kind,
        });
    });
}

fn label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded { .. } => "succeeded",
        Outcome::Retry { .. } => "retry",
        Outcome::Failed { .. } => "failed",
        Outcome::Dead { .. } => "dead",
        Outcome::Cancelled { .. } => "cancelled",
        Outcome::Requeue { .. } => "requeued",
    }
}

fn after(d: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

enum Ended {
    Returned(Result<Value, TaskError>),
    Cancelled,
    HandBack,
    LeaseLost,
}

/// Runs one attempt; `None` when the lease was lost (nothing to acknowledge).
async fn attempt<B: Broker>(
    shared: &Arc<Shared<B>>,
    task: &TaskRecord,
    cancel: &Notify,
) -> Option<(Outcome, Vec<NewTask>)> {
    let Some(kind) = shared.registry.get(&task.kind) else {
        return Some(decide(task, Err(unknown_kind_error(&task.kind))));
    };
    if let Some(rate) = kind.settings.rate_limit {
        let key = format!("kind:{}", task.kind);
        match shared
            .broker
            .take_rate_token(&key, rate, kind.settings.rate_burst.max(1))
            .await
        {
            Ok(None) => {}
            Ok(Some(wait)) => {
                return Some((
                    Outcome::Requeue {
                        run_at: after(wait),
                    },
                    Vec::new(),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, task = %task.id, "rate limit check failed; handing the task back");
                return Some((
                    Outcome::Requeue {
                        run_at: after(Duration::from_secs(1)),
                    },
                    Vec::new(),
                ));
            }
        }
    }
    let parent = match task.options.chord_of {
        Some(group) => match chord_results(&shared.broker, group).await {
            Ok(results) => Some(results),
            Err(e) => {
                let error = TaskError::new(
                    ErrorCategory::System,
                    format!("cannot read the chord's results: {e}"),
                );
                return Some(decide(task, Err(error)));
            }
        },
        None => task.options.parent.clone(),
    };

    let (progress_tx, progress_rx) = mpsc::unbounded_channel();
    let soft_limit = Arc::new(SoftLimit::default());
    let ctx = TaskContext {
        id: task.id,
        attempt: task.attempts,
        parent,
        progress: progress_tx,
        soft_limit: Arc::clone(&soft_limit),
    };
    let reporter = tokio::spawn(report_progress(
        shared.broker.clone(),
        task.id,
        task.epoch,
        progress_rx,
    ));
    let mut handler = tokio::spawn(kind.handler.run(ctx, task.args.clone()));

    let soft = task.options.soft_time_limit_ms.map(millis);
    let hard = task.options.hard_time_limit_ms.map(millis);
    let soft_timer = async {
        if let Some(d) = soft {
            tokio::time::sleep(d).await;
            soft_limit.trip();
        }
        std::future::pending::<std::convert::Infallible>().await
    };
    let hard_timer = async {
        match hard {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let mut lease = shared.lease_generation.subscribe();
    let mut hand_back = shared.hand_back.subscribe();
    let ended = tokio::select! {
        joined = &mut handler => Ended::Returned(match joined {
            Ok(result) => result,
            Err(e) if e.is_panic() => Err(TaskError::new(ErrorCategory::System, format!("handler panicked: {}", panic_message(e)))),
            Err(e) => Err(TaskError::new(ErrorCategory::System, format!("handler stopped: {e}"))),
        }),
        never = soft_timer => match never {},
        () = hard_timer => {
            shared.observer.time_limit_killed(&task.kind);
            let ms = hard.map_or(0, |d| d.as_millis());
            Ended::Returned(Err(TaskError::new(ErrorCategory::Timeout, format!("hard time limit of {ms} ms exceeded; the handler was stopped"))))
        }
        () = cancel.notified() => Ended::Cancelled,
        _ = lease.changed() => Ended::LeaseLost,
        _ = hand_back.wait_for(|h| *h) => Ended::HandBack,
    };
    handler.abort();
    // The reporter ends when the handler (holding the context) is gone.
    drop(reporter);
    match ended {
        Ended::Returned(result) => Some(decide(task, result)),
        Ended::Cancelled => Some((
            Outcome::Cancelled {
                expires_at: after(result_ttl(task)),
            },
            Vec::new(),
        )),
        Ended::HandBack => Some((Outcome::Requeue { run_at: Utc::now() }, Vec::new())),
        Ended::LeaseLost => None,
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic".to_owned()),
        Err(e) => e.to_string(),
    }
}

fn result_ttl(task: &TaskRecord) -> Duration {
    Duration::from_secs(task.options.result_ttl_secs.unwrap_or(24 * 3600))
}

/// Turns an attempt's result into the outcome and the follow-up tasks.
fn decide(task: &TaskRecord, result: Result<Value, TaskError>) -> (Outcome, Vec<NewTask>) {
    match result {
        Ok(value) => {
            let follow_ups = task
                .options
                .on_success
                .iter()
                .map(|next| {
                    let mut next = next.clone();
                    next.options.parent = Some(value.clone());
                    next
                })
                .collect();
            (
                Outcome::Succeeded {
                    result: value,
                    expires_at: after(result_ttl(task)),
                },
                follow_ups,
            )
        }
        Err(error) if error.retryable && task.attempts <= task.max_retries => {
            let run_at = after(task.options.backoff.delay(task.attempts));
            (Outcome::Retry { error, run_at }, Vec::new())
        }
        Err(error) => {
            let follow_ups = failure_follow_ups(task, &error);
            let expires_at = after(result_ttl(task).max(KEEP_FAILED));
            let outcome = if error.retryable {
                Outcome::Dead { error, expires_at }
            } else {
                Outcome::Failed { error, expires_at }
            };
            (outcome, follow_ups)
        }
    }
}

/// `task`'s failure callbacks, each handed `{"task", "kind", "attempts",
/// "error"}` as its parent. Their ids were chosen at submission, so
/// submitting them twice creates them once.
pub(crate) fn failure_follow_ups(task: &TaskRecord, error: &TaskError) -> Vec<NewTask> {
    task.options
        .on_failure
        .iter()
        .map(|next| {
            let mut next = next.clone();
            next.options.parent = Some(serde_json::json!({
                "task": task.id,
                "kind": task.kind,
                "attempts": task.attempts,
                "error": error,
            }));
            next
        })
        .collect()
}

/// The results of a chord's members, in group order.
async fn chord_results<B: Broker>(
    broker: &B,
    group: crate::TaskId,
) -> Result<Value, crate::BrokerError> {
    let mut members = Vec::new();
    let mut before = None;
    loop {
        let page = broker
            .list(&TaskFilter {
                group_id: Some(group),
                before,
                limit: 1000,
                ..TaskFilter::default()
            })
            .await?;
        let full = page.len() == 1000;
        before = page.last().map(|t| t.id);
        members.extend(page);
        if !full {
            break;
        }
    }
    members.sort_by_key(|t| (t.options.group_index, t.id));
    Ok(Value::Array(
        members
            .into_iter()
            .map(|t| t.result.unwrap_or(Value::Null))
            .collect(),
    ))
}

/// Writes the latest progress report at most every [`PROGRESS_EVERY`].
async fn report_progress<B: Broker>(
    broker: B,
    id: crate::TaskId,
    epoch: i64,
    mut rx: mpsc::UnboundedReceiver<Progress>,
) {
    while let Some(mut latest) = rx.recv().await {
        tokio::time::sleep(PROGRESS_EVERY).await;
        while let Ok(newer) = rx.try_recv() {
            latest = newer;
        }
        match broker.progress(id, epoch, &latest).await {
            Ok(true) => {}
            Ok(false) => return, // the attempt is over or fenced
            Err(e) => tracing::debug!(error = %e, task = %id, "progress not stored"),
        }
    }
}
