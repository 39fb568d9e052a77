//! Built-in task kinds: `noop`, `sleep`, `process` (the seed's batch data
//! processing, reporting progress) and `fail` (fails on purpose: for trying
//! retry policies, dead-lettering and failure callbacks).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use surge_core::ErrorCategory;

use crate::model::TaskError;
use crate::registry::Registry;
use crate::task::{Task, TaskContext};

/// Registers every built-in kind in `registry`.
pub(crate) fn register(registry: &mut Registry) {
    registry
        .register(Noop)
        .register(Sleep)
        .register(Process)
        .register(Fail);
}

/// `noop`: returns its args unchanged (benchmarks, smoke tests).
#[derive(Debug, Clone, Copy)]
pub struct Noop;

impl Task for Noop {
    const KIND: &'static str = "noop";
    type Args = Value;
    type Output = Value;

    async fn run(&self, _ctx: TaskContext, args: Value) -> Result<Value, TaskError> {
        Ok(args)
    }
}

/// Args of `sleep`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepArgs {
    /// How long to sleep, in milliseconds (at most one day).
    pub ms: u64,
}

/// `sleep`: sleeps `ms` milliseconds, reporting progress, and returns
/// `{"slept_ms": …}`; stops early with a timeout error when its soft time
/// limit passes.
#[derive(Debug, Clone, Copy)]
pub struct Sleep;

impl Task for Sleep {
    const KIND: &'static str = "sleep";
    type Args = SleepArgs;
    type Output = Value;

    async fn run(&self, ctx: TaskContext, args: SleepArgs) -> Result<Value, TaskError> {
        if args.ms > 86_400_000 {
            return Err(TaskError::new(
                ErrorCategory::Validation,
                "sleep: ms must be at most 86400000 (one day)",
            ));
        }
        let total = Duration::from_millis(args.ms);
        let step = (total / 10).max(Duration::from_millis(100));
        let start = tokio::time::Instant::now();
        loop {
            let elapsed = start.elapsed();
            if elapsed >= total {
                break;
            }
            let wait = (total - elapsed).min(step);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = ctx.soft_limit() => {
                    return Err(TaskError::new(
                        ErrorCategory::Timeout,
                        format!("sleep: soft time limit reached after {} ms", start.elapsed().as_millis()),
                    ));
                }
            }
            let done = start.elapsed().as_secs_f64() / total.as_secs_f64();
            ctx.progress(
                done,
                format!(
                    "slept {} of {} ms",
                    start.elapsed().as_millis().min(u128::from(args.ms)),
                    args.ms
                ),
            );
        }
        Ok(serde_json::json!({ "slept_ms": args.ms }))
    }
}

/// Args of `process`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessArgs {
    /// The items to process.
    pub items: Vec<Value>,
    /// Simulated work per item, in milliseconds (default 0).
    #[serde(default)]
    pub item_ms: u64,
}

/// One processed item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessedItem {
    /// The item as given.
    pub original: Value,
    /// Its size: characters of a string, elements of an array or object,
    /// bytes of its JSON otherwise.
    pub size: usize,
    /// When it was processed (Unix seconds).
    pub processed_at: f64,
    /// `"success"`.
    pub status: String,
}

/// Result of `process`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessOutput {
    /// Items processed.
    pub total_processed: usize,
    /// Per item.
    pub results: Vec<ProcessedItem>,
    /// Finished at (Unix seconds).
    pub completed_at: f64,
}

/// `process`: the seed's batch data processing — measures each item,
/// reporting progress as it goes.
#[derive(Debug, Clone, Copy)]
pub struct Process;

fn unix_now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

impl Task for Process {
    const KIND: &'static str = "process";
    type Args = ProcessArgs;
    type Output = ProcessOutput;

    async fn run(&self, ctx: TaskContext, args: ProcessArgs) -> Result<ProcessOutput, TaskError> {
        let total = args.items.len();
        let mut results = Vec::with_capacity(total);
        for (i, item) in args.items.into_iter().enumerate() {
            if args.item_ms > 0 {
                tokio::time::sleep(Duration::from_millis(args.item_ms)).await;
            }
            if ctx.soft_limit_reached() {
                return Err(TaskError::new(
                    ErrorCategory::Timeout,
                    format!("process: soft time limit reached after {i} of {total} items"),
                ));
            }
            let size = match &item {
                Value::String(s) => s.chars().count(),
                Value::Array(a) => a.len(),
                Value::Object(o) => o.len(),
                other => other.to_string().len(),
            };
            results.push(ProcessedItem {
                original: item,
                size,
                processed_at: unix_now(),
                status: "success".to_owned(),
            });
            if (i + 1) % 100 == 0 || i + 1 == total || args.item_ms > 0 {
                ctx.progress(
                    (i + 1) as f64 / total as f64,
                    format!("processed {} of {total}", i + 1),
                );
            }
        }
        Ok(ProcessOutput {
            total_processed: results.len(),
            results,
            completed_at: unix_now(),
        })
    }
}

/// Args of `fail`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailArgs {
    /// Error category to fail with (default `system`, which is retried).
    #[serde(default = "default_fail_category")]
    pub category: ErrorCategory,
    /// Error message.
    #[serde(default = "default_fail_message")]
    pub message: String,
    /// Succeed (returning `{"attempt": n}`) from this attempt on; never if
    /// absent.
    #[serde(default)]
    pub succeed_on_attempt: Option<u32>,
}

fn default_fail_category() -> ErrorCategory {
    ErrorCategory::System
}

fn default_fail_message() -> String {
    "failed on purpose".to_owned()
}

/// `fail`: fails with the given error until `succeed_on_attempt`.
#[derive(Debug, Clone, Copy)]
pub struct Fail;

impl Task for Fail {
    const KIND: &'static str = "fail";
    type Args = FailArgs;
    type Output = Value;

    async fn run(&self, ctx: TaskContext, args: FailArgs) -> Result<Value, TaskError> {
        match args.succeed_on_attempt {
            Some(n) if ctx.attempt() >= n => Ok(serde_json::json!({ "attempt": ctx.attempt() })),
            _ => Err(TaskError::new(args.category, args.message)),
        }
    }
}
