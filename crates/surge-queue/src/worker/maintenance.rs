//! Periodic work every worker shares: rescuing expired leases' tasks,
//! firing due cron ticks (each exactly once, whoever fires it), pruning
//! expired results.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::watch;
use uuid::Uuid;

use super::Shared;
use crate::broker::Broker;
use crate::schedule::CronSchedule;

/// Prune every this many maintenance rounds.
const PRUNE_EVERY: u32 = 60;
/// Most tasks deleted by one prune call.
const PRUNE_BATCH: u32 = 1000;

pub(crate) async fn run<B: Broker>(shared: Arc<Shared<B>>, mut stop: watch::Receiver<bool>) {
    let mut round: u32 = 0;
    loop {
        tokio::select! {
            () = tokio::time::sleep(shared.config.maintenance_interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        round = round.wrapping_add(1);
        rescue(&shared).await;
        if shared.config.run_scheduler {
            fire_due(&shared).await;
        }
        if round.is_multiple_of(PRUNE_EVERY) {
            prune(&shared).await;
        }
    }
}

async fn rescue<B: Broker>(shared: &Shared<B>) {
    match shared
        .broker
        .rescue_expired(shared.config.forget_after)
        .await
    {
        Ok(r) if r.requeued + r.dead > 0 => {
            tracing::warn!(
                requeued = r.requeued,
                dead = r.dead,
                "rescued the tasks of workers whose lease expired"
            );
            for id in &r.dead_ids {
                submit_failure_callbacks(shared, *id).await;
            }
            shared.observer.rescued(r);
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "lease rescue failed"),
    }
}

/// Submits the failure callbacks of a task that a rescue made dead (its
/// worker died on the last attempt, so no completion carried them). A crash
/// between the rescue and this leaves them unsubmitted: the one gap.
async fn submit_failure_callbacks<B: Broker>(shared: &Shared<B>, id: crate::TaskId) {
    let task = match shared.broker.get(id).await {
        Ok(Some(t)) if !t.options.on_failure.is_empty() => t,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(task = %id, error = %e, "cannot read a dead task; its failure callbacks are not submitted");
            return;
        }
    };
    let error = task.error.clone().unwrap_or_else(|| {
        crate::TaskError::new(surge_core::ErrorCategory::System, "lease expired")
    });
    let follow_ups = super::executor::failure_follow_ups(&task, &error);
    let mut wait = std::time::Duration::from_millis(50);
    for _ in 0..5 {
        match shared.broker.enqueue(&follow_ups).await {
            Ok(_) => return,
            Err(e) if e.is_transient() => {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) => {
                tracing::error!(task = %id, error = %e, "failure callbacks of a dead task refused");
                return;
            }
        }
    }
    tracing::error!(task = %id, "failure callbacks of a dead task not submitted: broker unavailable");
}

/// Fires every due tick. Ticks missed while no scheduler ran fire once (the
/// latest missed one), then the schedule moves to its next future tick.
pub(crate) async fn fire_due<B: Broker>(shared: &Shared<B>) {
    let schedules = match shared.broker.schedules().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read schedules");
            return;
        }
    };
    let now = Utc::now();
    for schedule in schedules.into_iter().filter(|s| s.next_fire_at <= now) {
        let cron = match CronSchedule::parse(&schedule.cron, &schedule.timezone) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(schedule = %schedule.name, error = %e, "stored schedule does not parse; skipped");
                continue;
            }
        };
        let Some(next) = cron.next_after(now.max(schedule.next_fire_at)) else {
            continue;
        };
        let mut task = schedule.task.clone();
        task.id = Uuid::now_v7();
        task.run_at = now;
        // The handler learns which tick it runs for (`ctx.parent()`).
        task.options.parent = Some(serde_json::json!({
            "schedule": schedule.name,
            "tick": schedule.next_fire_at,
        }));
        match shared
            .broker
            .fire_schedule(&schedule.name, schedule.next_fire_at, next, &task)
            .await
        {
            Ok(true) => {
                tracing::info!(schedule = %schedule.name, tick = %schedule.next_fire_at, task = %task.id, "schedule fired");
                shared.observer.schedule_fired(&schedule.name);
            }
            Ok(false) => {} // another scheduler fired this tick
            Err(e) => {
                tracing::warn!(schedule = %schedule.name, error = %e, "schedule tick not fired")
            }
        }
    }
}

async fn prune<B: Broker>(shared: &Shared<B>) {
    for _ in 0..10 {
        match shared.broker.prune(PRUNE_BATCH).await {
            Ok(n) if u64::from(PRUNE_BATCH) == n => continue,
            Ok(n) => {
                if n > 0 {
                    tracing::debug!(pruned = n, "expired results pruned");
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "prune failed");
                return;
            }
        }
    }
}
