//! `/schedules`: cron schedules stored in the broker; every tick fires once
//! whichever worker's scheduler sees it first.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use surge_queue::Broker;
use surge_queue::model::Schedule;
use surge_queue::schedule::{CronSchedule, validate_name};
use utoipa::ToSchema;

use super::tasks::{SubmitTask, parse_task};
use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody, FieldError};
use crate::extract::{JsonObject, json_type};

/// Body of `POST /schedules`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the body; parsed by `create`
pub(crate) struct CreateSchedule {
    /// Unique name (letters, digits, `.`, `_`, `-`, `:`); an existing
    /// schedule of that name is replaced.
    name: String,
    /// Cron expression: 5 fields (`min hour dom month dow`), or 6–7 with
    /// seconds first (and a year last); `@hourly`-style shortcuts.
    cron: String,
    /// IANA time zone the expression is read in (default `UTC`).
    timezone: Option<String>,
    /// The task submitted at every tick.
    task: SubmitTask,
}

/// A schedule as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ScheduleView {
    name: String,
    cron: String,
    timezone: String,
    kind: String,
    args: Value,
    queue: String,
    next_fire_at: DateTime<Utc>,
    last_fired_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl From<Schedule> for ScheduleView {
    fn from(s: Schedule) -> Self {
        ScheduleView {
            name: s.name,
            cron: s.cron,
            timezone: s.timezone,
            kind: s.task.kind,
            args: s.task.args,
            queue: s.task.queue,
            next_fire_at: s.next_fire_at,
            last_fired_at: s.last_fired_at,
            created_at: s.created_at,
        }
    }
}

/// Create or replace a schedule.
#[utoipa::path(post, path = "/schedules", tag = "schedules", request_body = CreateSchedule,
    security(("bearer" = [])),
    responses(
        (status = 201, body = ScheduleView),
        (status = 422, description = "Bad name, cron expression, time zone or task: every one named", body = ErrorBody),
    ))]
pub(crate) async fn create(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let mut errors = Vec::new();
    for key in body.keys() {
        if !matches!(key.as_str(), "name" | "cron" | "timezone" | "task") {
            errors.push(FieldError::new(key.as_str(), "unknown field"));
        }
    }
    let text = |name: &str, errors: &mut Vec<FieldError>| match body.get(name) {
        Some(Value::String(s)) => Some(s.clone()),
        None => {
            errors.push(FieldError::new(name, "is required"));
            None
        }
        Some(other) => {
            errors.push(FieldError::new(
                name,
                format!("must be a string, not {}", json_type(other)),
            ));
            None
        }
    };
    let name = text("name", &mut errors);
    if let Some(Err(e)) = name.as_deref().map(validate_name) {
        errors.push(FieldError::new("name", e.to_string()));
    }
    let cron = text("cron", &mut errors);
    let timezone = match body.get("timezone") {
        None | Some(Value::Null) => Some("UTC".to_owned()),
        Some(_) => text("timezone", &mut errors),
    };
    // Each checked on its own, so that both are named when both are bad.
    if let Some(Err(e)) = cron.as_deref().map(|c| CronSchedule::parse(c, "UTC")) {
        errors.push(FieldError::new("cron", e.to_string()));
    }
    // (`@daily` always parses: only the time zone can fail.)
    if let Some(Err(e)) = timezone
        .as_deref()
        .map(|tz| CronSchedule::parse("@daily", tz))
    {
        errors.push(FieldError::new("timezone", e.to_string()));
    }
    let task = match body.get("task") {
        Some(Value::Object(m)) => parse_task(&state, m, "task.", &mut errors),
        None => {
            errors.push(FieldError::new("task", "is required"));
            None
        }
        Some(other) => {
            errors.push(FieldError::new(
                "task",
                format!("must be an object, not {}", json_type(other)),
            ));
            None
        }
    };
    let (Some(name), Some(cron), Some(tz), Some(task), true) =
        (name, cron, timezone, task, errors.is_empty())
    else {
        return Err(ApiError::validation(errors));
    };
    let schedule = state
        .queue
        .client()
        .schedule(&name, &cron, &tz, task)
        .await?;
    Ok((StatusCode::CREATED, Json(ScheduleView::from(schedule))).into_response())
}

/// Every schedule, by name.
#[utoipa::path(get, path = "/schedules", tag = "schedules",
    security(("bearer" = [])),
    responses((status = 200, body = Vec<ScheduleView>)))]
pub(crate) async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<ScheduleView>>> {
    let all = state.queue.client().broker().schedules().await?;
    Ok(Json(all.into_iter().map(ScheduleView::from).collect()))
}

/// Delete a schedule.
#[utoipa::path(delete, path = "/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "Schedule name")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = ErrorBody),
    ))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    if state.queue.client().broker().delete_schedule(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("schedule {name:?} not found")))
    }
}
