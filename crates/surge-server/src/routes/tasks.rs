//! The task queue over HTTP: `/tasks`, `/workflows`, `/queues`, `/workers`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use surge_queue::model::{
    Backoff, CancelOutcome, Progress, QueueCount, RetryOutcome, TaskFilter, WorkerInfo,
};
use surge_queue::schedule::validate_name;
use surge_queue::{Broker, NewTask, SubmitError, TaskError, TaskId, TaskRecord, TaskState};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody, FieldError};
use crate::extract::{JsonObject, PathUuid, QueryParams, json_type};

const PAGE_DEFAULT: i64 = 50;
const PAGE_MAX: i64 = 500;
/// Most tasks in one workflow.
const WORKFLOW_MAX: usize = 10_000;
/// Longest countdown / ETA ahead: ten years.
const MAX_DELAY_SECS: f64 = 10.0 * 365.0 * 86_400.0;

/// A task as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskView {
    #[schema(value_type = String, format = Uuid)]
    id: TaskId,
    kind: String,
    args: Value,
    queue: String,
    priority: i32,
    state: TaskState,
    /// Attempts started (a rescue after a lost worker counts).
    attempts: u32,
    max_retries: u32,
    /// Not run before this time.
    run_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unique_key: Option<String>,
    #[schema(value_type = Option<String>, format = Uuid)]
    #[serde(skip_serializing_if = "Option::is_none")]
    group_id: Option<TaskId>,
    /// What the task was handed from upstream: the previous task's result
    /// in a chain, `{"task", "error"}` for a failure callback, `{"schedule",
    /// "tick"}` for a cron tick.
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<Value>,
    /// The worker running it, or that last ran it.
    #[schema(value_type = Option<String>, format = Uuid)]
    worker_id: Option<TaskId>,
    cancel_requested: bool,
    progress: Option<Progress>,
    result: Option<Value>,
    error: Option<TaskError>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    /// The record may be deleted after this time.
    expires_at: Option<DateTime<Utc>>,
}

impl From<TaskRecord> for TaskView {
    fn from(t: TaskRecord) -> Self {
        TaskView {
            id: t.id,
            kind: t.kind,
            args: t.args,
            queue: t.queue,
            priority: t.priority,
            state: t.state,
            attempts: t.attempts,
            max_retries: t.max_retries,
            run_at: t.run_at,
            unique_key: t.unique_key,
            group_id: t.group_id,
            parent: t.options.parent,
            worker_id: t.worker_id,
            cancel_requested: t.cancel_requested,
            progress: t.progress,
            result: t.result,
            error: t.error,
            created_at: t.created_at,
            started_at: t.started_at,
            finished_at: t.finished_at,
            expires_at: t.expires_at,
        }
    }
}

/// Body of `POST /tasks` (and each task of a workflow). Unknown fields are
/// refused; every bad field is named.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the body; parsed by `parse_task`
pub(crate) struct SubmitTask {
    /// A registered kind: `noop`, `sleep`, `process`, `fail`, …
    kind: String,
    /// The kind's arguments (checked against the kind); absent means none
    /// (`null`, or `{}` for a kind whose arguments are all optional).
    args: Option<Value>,
    /// Queue name (default `default`).
    queue: Option<String>,
    /// Higher runs first (-1000..=1000, default 0).
    priority: Option<i32>,
    /// Seconds from now before it may run (0: now). Not with `eta`.
    countdown: Option<f64>,
    /// Not before this time (RFC 3339). Not with `countdown`.
    eta: Option<DateTime<Utc>>,
    /// Retries after the first attempt (0..=100; default: the kind's).
    max_retries: Option<u32>,
    /// Exponential backoff with full jitter between attempts.
    backoff: Option<Backoff>,
    /// Seconds after which the handler is told to stop.
    soft_time_limit: Option<f64>,
    /// Seconds after which the handler is dropped (the attempt fails with a
    /// timeout and is retried while retries remain).
    hard_time_limit: Option<f64>,
    /// A second submission with the same key, while the first is waiting
    /// or running, returns the first (200 instead of 201).
    unique_key: Option<String>,
    /// Seconds the result is kept (default: the kind's, one day).
    result_ttl: Option<f64>,
    /// Tasks submitted when this one succeeds, with its result as their
    /// parent.
    #[schema(no_recursion)]
    on_success: Option<Vec<SubmitTask>>,
    /// Tasks submitted when this one ends failed or dead.
    #[schema(no_recursion)]
    on_failure: Option<Vec<SubmitTask>>,
}

/// What `POST /tasks` answers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Submitted {
    /// `false` when the unique key was held by a live task: `task` is that
    /// task.
    created: bool,
    task: TaskView,
}

/// Reads one field with serde, recording a named error.
fn field<T: DeserializeOwned>(
    body: &Map<String, Value>,
    name: &str,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let v = body.get(name)?;
    if v.is_null() {
        return None;
    }
    match T::deserialize(v) {
        Ok(t) => Some(t),
        Err(e) => {
            errors.push(FieldError::new(
                format!("{path}{name}"),
                format!("{e} (got {})", json_type(v)),
            ));
            None
        }
    }
}

/// A number of seconds in `min..=max` (`min` itself allowed only when
/// `zero_ok`), recording a named error.
fn seconds(
    body: &Map<String, Value>,
    name: &str,
    path: &str,
    (zero_ok, max): (bool, f64),
    errors: &mut Vec<FieldError>,
) -> Option<Duration> {
    let s: f64 = field(body, name, path, errors)?;
    let low_ok = if zero_ok { s >= 0.0 } else { s > 0.0 };
    if !(s.is_finite() && low_ok && s <= max) {
        let low = if zero_ok { "at least 0" } else { "above 0" };
        errors.push(FieldError::new(
            format!("{path}{name}"),
            format!("must be a number of seconds {low} and at most {max}"),
        ));
        return None;
    }
    Some(Duration::from_secs_f64(s))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Longest time limit: a week.
const LIMIT_MAX: (bool, f64) = (false, 7.0 * 86_400.0);

/// The task of `kind` with `args` (absent: no arguments — `null`, or `{}`
/// for a kind whose arguments are an object of optional fields), with a
/// named error for an unknown kind or args the kind refuses.
fn new_task(
    state: &AppState,
    kind: &str,
    args: Option<&Value>,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<NewTask> {
    let client = state.queue.client();
    let result = match args.filter(|a| !a.is_null()) {
        Some(args) => client.task(kind, args.clone()),
        None => client
            .task(kind, Value::Null)
            .or_else(|_| client.task(kind, Value::Object(Map::new()))),
    };
    match result {
        Ok(t) => Some(t),
        Err(SubmitError::Kind(surge_queue::KindError::Unknown { known, .. })) => {
            errors.push(FieldError::new(
                format!("{path}kind"),
                format!("unknown task kind {kind:?}; known kinds: {known}"),
            ));
            None
        }
        Err(e) => {
            errors.push(FieldError::new(format!("{path}args"), e.to_string()));
            None
        }
    }
}

/// Checks a queue name (the broker's rule for names).
fn queue_name(q: String, path: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    if validate_name(&q).is_ok() {
        return Some(q);
    }
    errors.push(FieldError::new(
        format!("{path}queue"),
        format!("{q:?} is not a queue name: 1 to 200 letters, digits, '.', '_', '-', ':'"),
    ));
    None
}

/// Parses a task body into a validated [`NewTask`], naming every bad field
/// (`path` prefixes nested fields, e.g. `tasks[2].`): each field is checked
/// whatever is wrong with the others.
pub(crate) fn parse_task(
    state: &AppState,
    body: &Map<String, Value>,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<NewTask> {
    const KNOWN: [&str; 14] = [
        "kind",
        "args",
        "queue",
        "priority",
        "countdown",
        "eta",
        "max_retries",
        "backoff",
        "soft_time_limit",
        "hard_time_limit",
        "unique_key",
        "result_ttl",
        "on_success",
        "on_failure",
    ];
    let before = errors.len();
    let named = |name: &str| format!("{path}{name}");
    for key in body.keys() {
        if !KNOWN.contains(&key.as_str()) {
            errors.push(FieldError::new(named(key), "unknown field"));
        }
    }
    let kind: Option<String> = field(body, "kind", path, errors);
    if body.get("kind").is_none_or(Value::is_null) {
        errors.push(FieldError::new(named("kind"), "is required"));
    }
    let mut task = kind.and_then(|k| new_task(state, &k, body.get("args"), path, errors));
    let queue = field(body, "queue", path, errors).and_then(|q| queue_name(q, path, errors));
    let priority: Option<i32> = field(body, "priority", path, errors);
    if priority.is_some_and(|p| !(-1000..=1000).contains(&p)) {
        errors.push(FieldError::new(
            named("priority"),
            "must be between -1000 and 1000",
        ));
    }
    let countdown = seconds(body, "countdown", path, (true, MAX_DELAY_SECS), errors);
    let eta: Option<DateTime<Utc>> = field(body, "eta", path, errors);
    if body.get("countdown").is_some_and(|v| !v.is_null())
        && body.get("eta").is_some_and(|v| !v.is_null())
    {
        errors.push(FieldError::new(
            named("eta"),
            "give countdown or eta, not both",
        ));
    }
    if eta.is_some_and(|eta| (eta - Utc::now()).num_seconds() as f64 > MAX_DELAY_SECS) {
        errors.push(FieldError::new(
            named("eta"),
            "must be at most ten years ahead",
        ));
    }
    let max_retries: Option<u32> = field(body, "max_retries", path, errors);
    if max_retries.is_some_and(|m| m > 100) {
        errors.push(FieldError::new(named("max_retries"), "must be at most 100"));
    }
    let backoff: Option<Backoff> = field(body, "backoff", path, errors);
    if let Some(b) = backoff.filter(|b| b.base_ms > b.cap_ms) {
        errors.push(FieldError::new(
            named("backoff"),
            format!(
                "base_ms ({}) must not be larger than cap_ms ({})",
                b.base_ms, b.cap_ms
            ),
        ));
    }
    let soft = seconds(body, "soft_time_limit", path, LIMIT_MAX, errors);
    let hard = seconds(body, "hard_time_limit", path, LIMIT_MAX, errors);
    let unique_key: Option<String> = field(body, "unique_key", path, errors);
    if unique_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 512)
    {
        errors.push(FieldError::new(
            named("unique_key"),
            "must be 1 to 512 characters",
        ));
    }
    let result_ttl = seconds(body, "result_ttl", path, (false, 365.0 * 86_400.0), errors);
    let mut links = |name: &str| -> Vec<NewTask> {
        let Some(v) = body.get(name).filter(|v| !v.is_null()) else {
            return Vec::new();
        };
        let Value::Array(items) = v else {
            errors.push(FieldError::new(
                named(name),
                format!("must be an array of tasks, not {}", json_type(v)),
            ));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let sub = format!("{path}{name}[{i}].");
            match item {
                Value::Object(m) => out.extend(parse_task(state, m, &sub, errors)),
                other => errors.push(FieldError::new(
                    format!("{path}{name}[{i}]"),
                    format!("must be an object, not {}", json_type(other)),
                )),
            }
        }
        out
    };
    let on_success = links("on_success");
    let on_failure = links("on_failure");

    let task = task.as_mut()?;
    if let Some(q) = queue {
        task.queue = q;
    }
    if let Some(p) = priority {
        task.priority = p;
    }
    if let Some(c) = countdown {
        task.run_at = Utc::now() + chrono::Duration::from_std(c).unwrap_or_default();
    }
    if let Some(eta) = eta {
        task.run_at = eta;
    }
    if let Some(m) = max_retries {
        task.max_retries = m;
    }
    if let Some(b) = backoff {
        task.options.backoff = b;
    }
    if let Some(s) = soft {
        task.options.soft_time_limit_ms = Some(millis(s));
    }
    if let Some(h) = hard {
        task.options.hard_time_limit_ms = Some(millis(h));
    }
    if let Some(ttl) = result_ttl {
        task.options.result_ttl_secs = Some(ttl.as_secs().max(1));
    }
    task.unique_key = unique_key;
    task.options.on_success = on_success;
    task.options.on_failure = on_failure;
    // The kind's own limits count too: a soft limit given alone may pass
    // the kind's hard one.
    let o = &task.options;
    if let (Some(soft_ms), Some(hard_ms)) = (o.soft_time_limit_ms, o.hard_time_limit_ms)
        && soft_ms > hard_ms
    {
        errors.push(FieldError::new(
            named(if soft.is_some() { "soft_time_limit" } else { "hard_time_limit" }),
            format!(
                "the soft time limit ({soft_ms} ms) must not be longer than the hard one ({hard_ms} ms)"
            ),
        ));
    }
    if errors.len() > before {
        return None;
    }
    // Every rule is checked above; this is a safety net for new ones.
    if let Err(e) = state.queue.client().validate(task) {
        let whole = if path.is_empty() {
            "body"
        } else {
            path.trim_end_matches('.')
        };
        errors.push(FieldError::new(whole, e.to_string()));
        return None;
    }
    Some(task.clone())
}

/// Submit a task.
#[utoipa::path(post, path = "/tasks", tag = "tasks", request_body = SubmitTask,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored", body = Submitted, headers(("location" = String, description = "/tasks/{id}"))),
        (status = 200, description = "A live task holds the unique key: that task", body = Submitted),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 422, description = "Unknown kind, bad args, bad fields: every one named; nothing stored", body = ErrorBody),
        (status = 503, description = "Broker unavailable (after publish retries)", body = ErrorBody),
    ))]
pub(crate) async fn submit(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let mut errors = Vec::new();
    let task = parse_task(&state, &body, "", &mut errors);
    let Some(task) = task.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let client = state.queue.client();
    let enqueued = client.submit(task).await?;
    let record = client
        .broker()
        .get(enqueued.id)
        .await?
        .ok_or_else(ApiError::internal)?;
    let status = if enqueued.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        [(header::LOCATION, format!("/tasks/{}", enqueued.id))],
        Json(Submitted {
            created: enqueued.created,
            task: record.into(),
        }),
    )
        .into_response())
}

/// Body of `POST /workflows`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the body; parsed by `workflow`
pub(crate) struct SubmitWorkflow {
    /// `chain` (each task gets the previous result as its parent), `group`
    /// (all at once) or `chord` (a group, then `callback` with every
    /// result).
    r#type: String,
    /// The tasks, in order (1..=10000).
    tasks: Vec<SubmitTask>,
    /// The chord's callback (chord only).
    callback: Option<SubmitTask>,
}

/// What `POST /workflows` answers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WorkflowView {
    r#type: String,
    /// Task ids, in order (a chain's later tasks exist once their turn
    /// comes).
    #[schema(value_type = Vec<String>)]
    tasks: Vec<TaskId>,
    /// Group id (`GET /tasks?group_id=`), for a group or chord.
    #[schema(value_type = Option<String>, format = Uuid)]
    group_id: Option<TaskId>,
    /// The chord callback's id.
    #[schema(value_type = Option<String>, format = Uuid)]
    callback: Option<TaskId>,
}

/// Submit a chain, group or chord.
#[utoipa::path(post, path = "/workflows", tag = "tasks", request_body = SubmitWorkflow,
    security(("bearer" = [])),
    responses(
        (status = 201, body = WorkflowView),
        (status = 422, description = "Every bad field named; nothing stored", body = ErrorBody),
        (status = 503, description = "Broker unavailable", body = ErrorBody),
    ))]
pub(crate) async fn workflow(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let mut errors = Vec::new();
    for key in body.keys() {
        if !matches!(key.as_str(), "type" | "tasks" | "callback") {
            errors.push(FieldError::new(key.as_str(), "unknown field"));
        }
    }
    let kind: Option<String> = field(&body, "type", "", &mut errors);
    let kind = match kind.as_deref() {
        Some(k @ ("chain" | "group" | "chord")) => Some(k.to_owned()),
        Some(other) => {
            errors.push(FieldError::new(
                "type",
                format!("must be chain, group or chord, not {other:?}"),
            ));
            None
        }
        None => {
            if !body.contains_key("type") {
                errors.push(FieldError::new("type", "is required"));
            }
            None
        }
    };
    let mut tasks = Vec::new();
    match body.get("tasks") {
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= WORKFLOW_MAX => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::Object(m) => {
                        tasks.extend(parse_task(&state, m, &format!("tasks[{i}]."), &mut errors));
                    }
                    other => errors.push(FieldError::new(
                        format!("tasks[{i}]"),
                        format!("must be an object, not {}", json_type(other)),
                    )),
                }
            }
        }
        Some(Value::Array(_)) => errors.push(FieldError::new(
            "tasks",
            format!("must hold 1 to {WORKFLOW_MAX} tasks"),
        )),
        Some(other) => errors.push(FieldError::new(
            "tasks",
            format!("must be an array of tasks, not {}", json_type(other)),
        )),
        None => errors.push(FieldError::new("tasks", "is required")),
    }
    let callback = match (kind.as_deref(), body.get("callback")) {
        (Some("chord"), Some(Value::Object(m))) => parse_task(&state, m, "callback.", &mut errors),
        (Some("chord"), None) => {
            errors.push(FieldError::new("callback", "is required for a chord"));
            None
        }
        (Some("chord"), Some(other)) => {
            errors.push(FieldError::new(
                "callback",
                format!("must be an object, not {}", json_type(other)),
            ));
            None
        }
        (Some(_), Some(_)) => {
            errors.push(FieldError::new("callback", "only a chord has a callback"));
            None
        }
        _ => None,
    };
    let Some(kind) = kind.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let client = state.queue.client();
    let view = match (kind.as_str(), callback) {
        ("chain", _) => WorkflowView {
            tasks: client.chain(tasks).await?,
            r#type: kind,
            group_id: None,
            callback: None,
        },
        ("chord", Some(callback)) => {
            let g = client.chord(tasks, callback).await?;
            WorkflowView {
                r#type: kind,
                tasks: g.members,
                group_id: Some(g.group_id),
                callback: g.callback,
            }
        }
        _ => {
            let g = client.group(tasks).await?;
            WorkflowView {
                r#type: kind,
                tasks: g.members,
                group_id: Some(g.group_id),
                callback: None,
            }
        }
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// One task.
#[utoipa::path(get, path = "/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "Task id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TaskView),
        (status = 404, body = ErrorBody),
        (status = 422, description = "Not a UUID", body = ErrorBody),
    ))]
pub(crate) async fn get(
    State(state): State<AppState>,
    PathUuid(id): PathUuid,
) -> ApiResult<Json<TaskView>> {
    let task = state.queue.client().broker().get(id).await?;
    task.map(|t| Json(t.into()))
        .ok_or_else(|| ApiError::not_found(format!("task {id} not found")))
}

/// Query of `GET /tasks`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the query; parsed by `QueryParams`
pub(crate) struct ListQuery {
    /// Only in this state.
    state: Option<TaskState>,
    /// Only of this kind.
    kind: Option<String>,
    /// Only on this queue.
    queue: Option<String>,
    /// Only of this group.
    group_id: Option<String>,
    /// Only tasks older than this id (the previous page's `next_before`).
    before: Option<String>,
    /// Page size, 1..=500 (default 50).
    limit: Option<i64>,
}

/// A page of tasks, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskPage {
    items: Vec<TaskView>,
    /// Pass as `before` for the next page; absent on the last page.
    #[schema(value_type = Option<String>, format = Uuid)]
    next_before: Option<TaskId>,
}

pub(crate) fn uuid_param(
    query: &QueryParams,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<TaskId> {
    let raw = query.text(name)?;
    match raw.parse() {
        Ok(id) => Some(id),
        Err(_) => {
            errors.push(FieldError::new(
                name,
                format!("must be a UUID, got {raw:?}"),
            ));
            None
        }
    }
}

/// List tasks, filtered, newest first, paginated by `before`.
#[utoipa::path(get, path = "/tasks", tag = "tasks", params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TaskPage),
        (status = 422, description = "Bad filter or page parameter", body = ErrorBody),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    query: QueryParams,
) -> ApiResult<Json<TaskPage>> {
    let mut errors = Vec::new();
    let limit = query.int("limit", PAGE_DEFAULT, 1, PAGE_MAX, &mut errors);
    let task_state = query.text("state").and_then(|s| {
        TaskState::parse(&s).or_else(|| {
            let all: Vec<_> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
            errors.push(FieldError::new(
                "state",
                format!("must be one of {}, got {s:?}", all.join(", ")),
            ));
            None
        })
    });
    let group_id = uuid_param(&query, "group_id", &mut errors);
    let before = uuid_param(&query, "before", &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let limit = usize::try_from(limit).unwrap_or(50);
    // One more than the page: whether a next page exists, without an empty
    // last page when the tasks end exactly at a page boundary.
    let filter = TaskFilter {
        state: task_state,
        kind: query.text("kind"),
        queue: query.text("queue"),
        group_id,
        before,
        limit: u32::try_from(limit + 1).unwrap_or(u32::MAX),
    };
    let mut items = state.queue.client().broker().list(&filter).await?;
    let next_before = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|t| t.id)
    } else {
        None
    };
    Ok(Json(TaskPage {
        items: items.into_iter().map(TaskView::from).collect(),
        next_before,
    }))
}

/// What cancel / retry answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ActionView {
    /// `cancelled` (it was waiting), `cancel_requested` (it is running: its
    /// worker stops it within a heartbeat), or `requeued` (retry).
    outcome: &'static str,
    task: TaskView,
}

async fn reload(state: &AppState, id: TaskId) -> ApiResult<TaskView> {
    state
        .queue
        .client()
        .broker()
        .get(id)
        .await?
        .map(TaskView::from)
        .ok_or_else(|| ApiError::not_found(format!("task {id} not found")))
}

/// Cancel a waiting or running task.
#[utoipa::path(post, path = "/tasks/{id}/cancel", tag = "tasks",
    params(("id" = String, Path, description = "Task id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ActionView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Already finished", body = ErrorBody),
        (status = 422, description = "Not a UUID", body = ErrorBody),
    ))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    PathUuid(id): PathUuid,
) -> ApiResult<Json<ActionView>> {
    let expires = Utc::now() + chrono::Duration::days(1);
    let outcome = state.queue.client().broker().cancel(id, expires).await?;
    let outcome = match outcome {
        None => return Err(ApiError::not_found(format!("task {id} not found"))),
        Some(CancelOutcome::Cancelled) => "cancelled",
        Some(CancelOutcome::Requested) => "cancel_requested",
        Some(CancelOutcome::AlreadyFinished(s)) => {
            return Err(ApiError::conflict(
                "state",
                format!("task {id} already ended {s}; nothing to cancel"),
            ));
        }
    };
    Ok(Json(ActionView {
        outcome,
        task: reload(&state, id).await?,
    }))
}

/// Run a dead, failed or cancelled task again (attempts reset).
#[utoipa::path(post, path = "/tasks/{id}/retry", tag = "tasks",
    params(("id" = String, Path, description = "Task id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ActionView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not dead, failed or cancelled", body = ErrorBody),
        (status = 422, description = "Not a UUID", body = ErrorBody),
    ))]
pub(crate) async fn retry(
    State(state): State<AppState>,
    PathUuid(id): PathUuid,
) -> ApiResult<Json<ActionView>> {
    match state.queue.client().broker().retry(id).await? {
        None => Err(ApiError::not_found(format!("task {id} not found"))),
        Some(RetryOutcome::NotRetryable(s)) => Err(ApiError::conflict(
            "state",
            format!("task {id} is {s}; only dead, failed or cancelled tasks can be retried"),
        )),
        Some(RetryOutcome::Requeued) => Ok(Json(ActionView {
            outcome: "requeued",
            task: reload(&state, id).await?,
        })),
    }
}

/// Task counts per queue and state.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueuesView {
    /// One entry per queue, every state listed (zeros included).
    queues: Vec<QueueView>,
    /// Workers registered on the broker (leases not yet forgotten).
    workers: usize,
}

/// One queue.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueueView {
    name: String,
    /// Tasks per state.
    counts: std::collections::BTreeMap<String, u64>,
}

/// Counts per queue and state.
#[utoipa::path(get, path = "/queues", tag = "tasks",
    security(("bearer" = [])),
    responses((status = 200, body = QueuesView)))]
pub(crate) async fn queues(State(state): State<AppState>) -> ApiResult<Json<QueuesView>> {
    let broker = state.queue.client().broker();
    let counts: Vec<QueueCount> = broker.counts().await?;
    let workers = broker.workers().await?.len();
    let mut by_queue: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>> =
        std::collections::BTreeMap::new();
    for c in counts {
        let entry = by_queue.entry(c.queue).or_insert_with(|| {
            TaskState::ALL
                .iter()
                .map(|s| (s.as_str().to_owned(), 0))
                .collect()
        });
        *entry.entry(c.state.as_str().to_owned()).or_default() += c.count;
    }
    Ok(Json(QueuesView {
        queues: by_queue
            .into_iter()
            .map(|(name, counts)| QueueView { name, counts })
            .collect(),
        workers,
    }))
}

/// The workers registered on the broker, with their leases.
#[utoipa::path(get, path = "/workers", tag = "tasks",
    security(("bearer" = [])),
    responses((status = 200, body = Vec<WorkerInfo>)))]
pub(crate) async fn workers(State(state): State<AppState>) -> ApiResult<Json<Vec<WorkerInfo>>> {
    Ok(Json(state.queue.client().broker().workers().await?))
}
