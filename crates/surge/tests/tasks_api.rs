//! The task queue through the real `surge serve` and its HTTP API: submit
//! and poll, every 422, unique keys, cancel, retry, listing, workflows,
//! schedules, queues, workers, health, metrics, OpenAPI and auth — on SQLite
//! and PostgreSQL (the broker is the database), and on Redis as the broker.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{
    Backend, Server, ServerBuilder, assert_error, assert_rfc3339, assert_validation_fields,
    backend_tests, eventually,
};
use reqwest::Method;
use serde_json::{Value, json};

/// Bounds a wait for the workers (never a timing assertion).
const WAIT: Duration = Duration::from_secs(60);

backend_tests! {
    noop_and_process_run_to_success_with_progress_visible => noop_and_process_run_to_success_with_progress_visible_sqlite, noop_and_process_run_to_success_with_progress_visible_postgres;
    every_bad_submission_is_422_naming_each_field_and_stores_nothing => every_bad_submission_is_422_naming_each_field_and_stores_nothing_sqlite, every_bad_submission_is_422_naming_each_field_and_stores_nothing_postgres;
    unique_key_returns_the_live_task_with_200 => unique_key_returns_the_live_task_with_200_sqlite, unique_key_returns_the_live_task_with_200_postgres;
    concurrent_submissions_are_all_stored_and_one_unique_key_wins => concurrent_submissions_are_all_stored_and_one_unique_key_wins_sqlite, concurrent_submissions_are_all_stored_and_one_unique_key_wins_postgres;
    cancel_stops_a_running_task_and_refuses_a_finished_one => cancel_stops_a_running_task_and_refuses_a_finished_one_sqlite, cancel_stops_a_running_task_and_refuses_a_finished_one_postgres;
    retry_runs_a_dead_task_again => retry_runs_a_dead_task_again_sqlite, retry_runs_a_dead_task_again_postgres;
    limits_delays_ttls_and_failure_callbacks_are_honoured => limits_delays_ttls_and_failure_callbacks_are_honoured_sqlite, limits_delays_ttls_and_failure_callbacks_are_honoured_postgres;
    list_filters_and_paginates_newest_first => list_filters_and_paginates_newest_first_sqlite, list_filters_and_paginates_newest_first_postgres;
    workflows_chain_group_and_chord => workflows_chain_group_and_chord_sqlite, workflows_chain_group_and_chord_postgres;
    bad_workflows_are_422_and_store_nothing => bad_workflows_are_422_and_store_nothing_sqlite, bad_workflows_are_422_and_store_nothing_postgres;
    schedules_are_created_listed_fired_and_deleted => schedules_are_created_listed_fired_and_deleted_sqlite, schedules_are_created_listed_fired_and_deleted_postgres;
    bad_schedules_are_422_naming_each_field => bad_schedules_are_422_naming_each_field_sqlite, bad_schedules_are_422_naming_each_field_postgres;
    queues_workers_health_metrics_and_openapi_show_the_queue => queues_workers_health_metrics_and_openapi_show_the_queue_sqlite, queues_workers_health_metrics_and_openapi_show_the_queue_postgres;
    task_routes_need_the_bearer_token => task_routes_need_the_bearer_token_sqlite, task_routes_need_the_bearer_token_postgres;
    sigterm_hands_running_tasks_back_and_exits_zero => sigterm_hands_running_tasks_back_and_exits_zero_sqlite, sigterm_hands_running_tasks_back_and_exits_zero_postgres;
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `POST /tasks`, asserting 201 and the `Location` header; the task.
async fn submit(server: &Server, body: Value) -> Value {
    let resp = server.post_json("/tasks", &body).await;
    resp.expect_status(201);
    let out = resp.json();
    assert_eq!(out["created"], json!(true), "{out}");
    let task = out["task"].clone();
    let id = id_of(&task);
    assert_eq!(
        resp.header("location"),
        Some(format!("/tasks/{id}").as_str()),
        "Location of {task}"
    );
    task
}

#[track_caller]
fn id_of(task: &Value) -> String {
    task["id"]
        .as_str()
        .unwrap_or_else(|| panic!("task id must be a string: {task}"))
        .to_owned()
}

/// `GET /tasks/{id}`, asserting 200.
async fn get_task(server: &Server, id: &str) -> Value {
    let resp = server.get(&format!("/tasks/{id}")).await;
    resp.expect_status(200);
    resp.json()
}

/// Polls `GET /tasks/{id}` until its state is `state` (a 404 counts as
/// "not yet": a chain's later links exist once their turn comes).
async fn wait_state(server: &Server, id: &str, state: &str) -> Value {
    eventually(WAIT, &format!("task {id} becomes {state}"), || async {
        let resp = server.get(&format!("/tasks/{id}")).await;
        if resp.status == 404 {
            return Err("not found (yet)".to_owned());
        }
        resp.expect_status(200);
        let task = resp.json();
        if task["state"] == json!(state) {
            Ok(task)
        } else {
            Err(task.to_string())
        }
    })
    .await
}

/// Every task id listed by `GET /tasks` with `query`, following
/// `next_before` to the end.
async fn list_all(server: &Server, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut path = format!("/tasks?limit=500&{query}");
        if let Some(b) = &before {
            path.push_str(&format!("&before={b}"));
        }
        let resp = server.get(&path).await;
        resp.expect_status(200);
        let page = resp.json();
        out.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_before"].as_str() {
            Some(b) => before = Some(b.to_owned()),
            None => return out,
        }
    }
}

async fn task_count(server: &Server) -> usize {
    list_all(server, "").await.len()
}

/// The value of the metric line `name{labels}` exactly, if present.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A time field of a task.
#[track_caller]
fn ts(task: &Value, field: &str) -> chrono::DateTime<chrono::Utc> {
    let text = task[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} must be a time: {task}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{field} is not RFC 3339 ({e}): {task}"))
        .to_utc()
}

/// A `surge serve` on `backend` with `workers` embedded worker slots.
async fn server_with_workers(backend: Backend, workers: usize) -> Server {
    Server::start(backend, &["--workers", &workers.to_string()]).await
}

// ---------------------------------------------------------------------------
// Submit and poll
// ---------------------------------------------------------------------------

async fn noop_and_process_run_to_success_with_progress_visible(b: Backend) {
    let server = server_with_workers(b, 4).await;
    let task = submit(
        &server,
        json!({"kind": "noop", "args": {"hello": [1, 2, 3]}}),
    )
    .await;
    assert_eq!(task["kind"], json!("noop"));
    assert_eq!(task["queue"], json!("default"));
    assert!(
        ["pending", "running", "succeeded"].contains(&task["state"].as_str().unwrap_or("")),
        "{task}"
    );
    assert_rfc3339(&task["created_at"], "created_at");
    let done = wait_state(&server, &id_of(&task), "succeeded").await;
    assert_eq!(done["result"], json!({"hello": [1, 2, 3]}), "{done}");
    assert_eq!(done["attempts"], json!(1), "{done}");
    assert!(done["error"].is_null(), "{done}");
    assert_rfc3339(&done["finished_at"], "finished_at");
    assert_rfc3339(&done["expires_at"], "expires_at");

    // A slow `process` shows its progress while it runs.
    let items: Vec<Value> = (0..6).map(|i| json!(format!("item-{i}"))).collect();
    let task = submit(
        &server,
        json!({"kind": "process", "args": {"items": items, "item_ms": 700}}),
    )
    .await;
    let id = id_of(&task);
    let running = eventually(WAIT, "process reports progress while running", || async {
        let t = get_task(&server, &id).await;
        let fraction = t["progress"]["fraction"].as_f64().unwrap_or(0.0);
        if t["state"] == json!("running") && fraction > 0.0 && fraction < 1.0 {
            Ok(t)
        } else {
            Err(t.to_string())
        }
    })
    .await;
    let message = running["progress"]["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with("processed ") && message.ends_with(" of 6"),
        "{running}"
    );
    assert!(running["result"].is_null(), "{running}");
    let done = wait_state(&server, &id, "succeeded").await;
    assert_eq!(done["result"]["total_processed"], json!(6), "{done}");
    let results = done["result"]["results"].as_array().expect("results");
    assert_eq!(results.len(), 6);
    assert_eq!(results[0]["original"], json!("item-0"));
    assert_eq!(results[0]["size"], json!(6));
}

// ---------------------------------------------------------------------------
// 422s
// ---------------------------------------------------------------------------

async fn every_bad_submission_is_422_naming_each_field_and_stores_nothing(b: Backend) {
    // No workers: nothing runs, so the count only moves by submissions.
    let server = server_with_workers(b, 0).await;
    let eta = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"kind": "no.such.kind"}), vec!["kind"]),
        (json!({"args": {}}), vec!["kind"]),
        (json!({"kind": 7}), vec!["kind"]),
        (
            json!({"kind": "sleep", "args": {"seconds": 1}}),
            vec!["args"],
        ),
        (json!({"kind": "sleep"}), vec!["args"]),
        (
            json!({"kind": "process", "args": {"items": "not a list"}}),
            vec!["args"],
        ),
        (
            json!({"kind": "noop", "countdown": 5, "eta": eta}),
            vec!["eta"],
        ),
        (json!({"kind": "noop", "countdown": -1}), vec!["countdown"]),
        (json!({"kind": "noop", "eta": "tomorrow"}), vec!["eta"]),
        (
            json!({"kind": "noop", "soft_time_limit": -1, "hard_time_limit": "x"}),
            vec!["soft_time_limit", "hard_time_limit"],
        ),
        (
            json!({"kind": "noop", "soft_time_limit": 10, "hard_time_limit": 5}),
            vec!["soft_time_limit"],
        ),
        (
            json!({"kind": "noop", "max_retries": 101}),
            vec!["max_retries"],
        ),
        (
            json!({"kind": "noop", "max_retries": -1}),
            vec!["max_retries"],
        ),
        (json!({"kind": "noop", "priority": 5000}), vec!["priority"]),
        (
            json!({"kind": "noop", "backoff": {"base_ms": 5000, "cap_ms": 10}}),
            vec!["backoff"],
        ),
        (
            json!({"kind": "noop", "backoff": {"base_ms": 5}}),
            vec!["backoff"],
        ),
        (json!({"kind": "noop", "result_ttl": 0}), vec!["result_ttl"]),
        (
            json!({"kind": "noop", "queue": "bad queue!"}),
            vec!["queue"],
        ),
        (
            json!({"kind": "noop", "unique_key": ""}),
            vec!["unique_key"],
        ),
        (json!({"kind": "noop", "colour": "red"}), vec!["colour"]),
        (
            json!({"kind": "noop", "on_success": [{"kind": "zz"}, 3]}),
            vec!["on_success[0].kind", "on_success[1]"],
        ),
        (
            json!({"kind": "noop", "on_failure": {}}),
            vec!["on_failure"],
        ),
        // Every bad field at once, whatever else is wrong.
        (
            json!({
                "kind": "no.such.kind", "countdown": 5, "eta": eta, "priority": 5000,
                "queue": "bad queue!", "unique_key": "", "max_retries": 101, "zzz": 1,
                "soft_time_limit": 0,
            }),
            vec![
                "kind",
                "eta",
                "priority",
                "queue",
                "unique_key",
                "max_retries",
                "zzz",
                "soft_time_limit",
            ],
        ),
    ];
    for (body, fields) in &cases {
        let resp = server.post_json("/tasks", body).await;
        let err = assert_validation_fields(&resp, fields);
        for d in err["error"]["details"].as_array().expect("details") {
            let field = d["field"].as_str().unwrap_or("");
            assert!(
                !field.is_empty(),
                "a detail names no field for {body}: {err}"
            );
        }
        let message = err["error"]["message"].as_str().unwrap_or("");
        for f in fields {
            assert!(message.contains(f), "message should name {f}: {err}");
        }
    }
    // Not an object at all.
    let resp = server.post_json("/tasks", &json!([1, 2])).await;
    assert_validation_fields(&resp, &["body"]);
    // Malformed JSON and a wrong content type are not 422s.
    let resp = server
        .send_raw(
            Method::POST,
            "/tasks",
            Some("application/json"),
            "{\"kind\":",
        )
        .await;
    assert_error(&resp, 400, "bad_request");
    let resp = server
        .send_raw(Method::POST, "/tasks", Some("text/plain"), "{}")
        .await;
    assert_error(&resp, 415, "unsupported_media_type");

    assert_eq!(
        task_count(&server).await,
        0,
        "a refused submission stored a task"
    );

    // Path and query: 422 for a non-UUID id, 404 for an unknown one.
    let resp = server.get("/tasks/not-a-uuid").await;
    assert_validation_fields(&resp, &["id"]);
    let unknown = uuid::Uuid::now_v7();
    let resp = server.get(&format!("/tasks/{unknown}")).await;
    assert_error(&resp, 404, "not_found");
    let resp = server
        .get("/tasks?state=bogus&limit=0&group_id=x&before=y")
        .await;
    assert_validation_fields(&resp, &["state", "limit", "group_id", "before"]);
    let resp = server.get("/tasks?limit=501").await;
    assert_validation_fields(&resp, &["limit"]);

    // A good submission right after is stored (the 422s did not break
    // anything), and countdown 0 means "now".
    submit(&server, json!({"kind": "noop", "countdown": 0})).await;
    assert_eq!(task_count(&server).await, 1);
}

// ---------------------------------------------------------------------------
// Unique keys, cancel, retry
// ---------------------------------------------------------------------------

async fn unique_key_returns_the_live_task_with_200(b: Backend) {
    let server = server_with_workers(b, 2).await;
    let body = json!({"kind": "sleep", "args": {"ms": 60_000}, "unique_key": "report:42"});
    let first = submit(&server, body.clone()).await;
    let id = id_of(&first);
    assert_eq!(first["unique_key"], json!("report:42"));
    // Waiting, then running: the same task either way.
    for expect_running in [false, true] {
        if expect_running {
            wait_state(&server, &id, "running").await;
        }
        let resp = server.post_json("/tasks", &body).await;
        resp.expect_status(200);
        let again = resp.json();
        assert_eq!(again["created"], json!(false), "{again}");
        assert_eq!(id_of(&again["task"]), id, "{again}");
        assert_eq!(
            resp.header("location"),
            Some(format!("/tasks/{id}").as_str())
        );
    }
    // Another key is another task.
    let other = submit(
        &server,
        json!({"kind": "sleep", "args": {"ms": 60_000}, "unique_key": "report:43"}),
    )
    .await;
    assert_ne!(id_of(&other), id);
    assert_eq!(task_count(&server).await, 2);

    // Once the holder has ended, the key is free again.
    let resp = server
        .send(server.request(Method::POST, &format!("/tasks/{id}/cancel")))
        .await;
    resp.expect_status(200);
    wait_state(&server, &id, "cancelled").await;
    let fresh = submit(&server, body).await;
    assert_ne!(id_of(&fresh), id);
    assert_eq!(task_count(&server).await, 3);
}

/// `POST /tasks` of every body at once; (status, task id) of each.
async fn submit_concurrently(server: &Server, bodies: Vec<Value>) -> Vec<(u16, String)> {
    let mut set = tokio::task::JoinSet::new();
    for body in bodies {
        let request = server.client.post(server.url("/tasks")).json(&body);
        set.spawn(async move {
            let resp = common::Resp::read(request.send().await.expect("POST /tasks")).await;
            let id = resp.json()["task"]["id"].as_str().unwrap_or("").to_owned();
            (resp.status.as_u16(), id)
        });
    }
    set.join_all().await
}

async fn concurrent_submissions_are_all_stored_and_one_unique_key_wins(b: Backend) {
    let server = server_with_workers(b, 0).await;
    let same = json!({"kind": "noop", "unique_key": "once"});
    let answers = submit_concurrently(&server, vec![same; 30]).await;
    let created: Vec<_> = answers.iter().filter(|(s, _)| *s == 201).collect();
    assert_eq!(
        created.len(),
        1,
        "one submission creates the task: {answers:?}"
    );
    let winner = created[0].1.clone();
    assert!(
        answers
            .iter()
            .all(|(s, id)| (*s == 201 || *s == 200) && *id == winner),
        "the others get the same task with 200: {answers:?}"
    );
    let distinct = (0..40)
        .map(|i| json!({"kind": "noop", "args": i}))
        .collect();
    let answers = submit_concurrently(&server, distinct).await;
    assert!(answers.iter().all(|(s, _)| *s == 201), "{answers:?}");
    let ids: HashSet<&String> = answers.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), 40);
    assert_eq!(
        task_count(&server).await,
        41,
        "every submission stored once"
    );
}

async fn post(server: &Server, path: &str) -> common::Resp {
    server.send(server.request(Method::POST, path)).await
}

async fn cancel_stops_a_running_task_and_refuses_a_finished_one(b: Backend) {
    let server = server_with_workers(b, 2).await;
    let task = submit(&server, json!({"kind": "sleep", "args": {"ms": 120_000}})).await;
    let id = id_of(&task);
    wait_state(&server, &id, "running").await;
    let resp = post(&server, &format!("/tasks/{id}/cancel")).await;
    resp.expect_status(200);
    let body = resp.json();
    assert_eq!(body["outcome"], json!("cancel_requested"), "{body}");
    assert_eq!(body["task"]["cancel_requested"], json!(true), "{body}");
    let cancelled = wait_state(&server, &id, "cancelled").await;
    assert_rfc3339(&cancelled["finished_at"], "finished_at");
    assert!(cancelled["result"].is_null(), "{cancelled}");

    // Finished: 409, with the state named.
    let resp = post(&server, &format!("/tasks/{id}/cancel")).await;
    let err = assert_error(&resp, 409, "conflict");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("cancelled"),
        "{err}"
    );
    let done = submit(&server, json!({"kind": "noop"})).await;
    let done_id = id_of(&done);
    wait_state(&server, &done_id, "succeeded").await;
    let resp = post(&server, &format!("/tasks/{done_id}/cancel")).await;
    assert_error(&resp, 409, "conflict");
    assert_eq!(
        get_task(&server, &done_id).await["state"],
        json!("succeeded")
    );

    // A task waiting for its countdown is cancelled at once.
    let later = submit(&server, json!({"kind": "noop", "countdown": 3600})).await;
    assert_eq!(later["state"], json!("scheduled"), "{later}");
    let later_id = id_of(&later);
    let resp = post(&server, &format!("/tasks/{later_id}/cancel")).await;
    resp.expect_status(200);
    let body = resp.json();
    assert_eq!(body["outcome"], json!("cancelled"), "{body}");
    assert_eq!(body["task"]["state"], json!("cancelled"), "{body}");

    // Unknown and malformed ids.
    let unknown = uuid::Uuid::now_v7();
    assert_error(
        &post(&server, &format!("/tasks/{unknown}/cancel")).await,
        404,
        "not_found",
    );
    assert_validation_fields(&post(&server, "/tasks/nope/cancel").await, &["id"]);
}

async fn retry_runs_a_dead_task_again(b: Backend) {
    let server = server_with_workers(b, 2).await;
    let task = submit(
        &server,
        json!({"kind": "fail", "args": {"message": "boom"}, "max_retries": 0}),
    )
    .await;
    let id = id_of(&task);
    let dead = wait_state(&server, &id, "dead").await;
    assert_eq!(dead["attempts"], json!(1), "{dead}");
    assert_eq!(dead["error"]["message"], json!("boom"), "{dead}");
    assert_eq!(dead["error"]["category"], json!("system"), "{dead}");
    let first_finish = ts(&dead, "finished_at");

    let resp = post(&server, &format!("/tasks/{id}/retry")).await;
    resp.expect_status(200);
    let body = resp.json();
    assert_eq!(body["outcome"], json!("requeued"), "{body}");
    assert!(
        ["pending", "running", "dead"].contains(&body["task"]["state"].as_str().unwrap_or("")),
        "{body}"
    );
    // It runs again and ends dead again, later.
    let again = eventually(WAIT, "the retried task ends again", || async {
        let t = get_task(&server, &id).await;
        if t["state"] == json!("dead") && ts(&t, "finished_at") > first_finish {
            Ok(t)
        } else {
            Err(t.to_string())
        }
    })
    .await;
    assert_eq!(again["attempts"], json!(1), "attempts restart: {again}");
    let metrics = server.get("/metrics").await.text;
    assert_eq!(
        metric(
            &metrics,
            "surge_tasks_finished_total{kind=\"fail\",outcome=\"dead\"}"
        ),
        Some(2.0),
        "two dead attempts in the metrics"
    );

    // Not retryable: succeeded, running; unknown: 404.
    let ok = submit(&server, json!({"kind": "noop"})).await;
    let ok_id = id_of(&ok);
    wait_state(&server, &ok_id, "succeeded").await;
    let err = assert_error(
        &post(&server, &format!("/tasks/{ok_id}/retry")).await,
        409,
        "conflict",
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("succeeded"),
        "{err}"
    );
    let long = submit(&server, json!({"kind": "sleep", "args": {"ms": 120_000}})).await;
    let long_id = id_of(&long);
    wait_state(&server, &long_id, "running").await;
    assert_error(
        &post(&server, &format!("/tasks/{long_id}/retry")).await,
        409,
        "conflict",
    );
    let unknown = uuid::Uuid::now_v7();
    assert_error(
        &post(&server, &format!("/tasks/{unknown}/retry")).await,
        404,
        "not_found",
    );
}

async fn limits_delays_ttls_and_failure_callbacks_are_honoured(b: Backend) {
    let server = server_with_workers(b, 4).await;
    let sleep =
        |limit: &str| json!({"kind": "sleep", "args": {"ms": 120_000}, limit: 1, "max_retries": 0});
    let hard = id_of(&submit(&server, sleep("hard_time_limit")).await);
    let soft = id_of(&submit(&server, sleep("soft_time_limit")).await);
    let delayed = submit(&server, json!({"kind": "noop", "countdown": 1.5})).await;
    assert_eq!(delayed["state"], json!("scheduled"), "{delayed}");
    let past = json!({"kind": "noop", "eta": "2020-01-01T00:00:00Z", "result_ttl": 60});
    let past = id_of(&submit(&server, past).await);
    let failing = submit(
        &server,
        json!({"kind": "fail", "max_retries": 0,
               "on_failure": [{"kind": "noop", "args": "cleanup"}]}),
    )
    .await;
    let failing = id_of(&failing);

    for (id, limit) in [(&hard, "hard time limit"), (&soft, "soft time limit")] {
        let t = wait_state(&server, id, "dead").await;
        assert_eq!(t["error"]["category"], json!("timeout"), "{t}");
        let message = t["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(limit), "{t}");
    }
    let metrics = server.get("/metrics").await.text;
    assert_eq!(
        metric(
            &metrics,
            "surge_task_time_limit_kills_total{kind=\"sleep\"}"
        ),
        Some(1.0),
        "the hard limit's kill is counted"
    );

    let t = wait_state(&server, &id_of(&delayed), "succeeded").await;
    assert!(
        ts(&t, "started_at") >= ts(&t, "run_at"),
        "not before its countdown: {t}"
    );
    let t = wait_state(&server, &past, "succeeded").await;
    let kept = ts(&t, "expires_at") - ts(&t, "finished_at");
    assert!(
        (59..=61).contains(&kept.num_seconds()),
        "result_ttl 60 keeps the result a minute: {t}"
    );

    wait_state(&server, &failing, "dead").await;
    let cleanup = eventually(WAIT, "the failure callback runs", || async {
        let found = list_all(&server, "kind=noop")
            .await
            .into_iter()
            .find(|t| t["args"] == json!("cleanup") && t["state"] == json!("succeeded"));
        found.ok_or_else(|| "no cleanup task yet".to_owned())
    })
    .await;
    assert_eq!(cleanup["parent"]["task"], json!(failing), "{cleanup}");
    assert_eq!(
        cleanup["parent"]["error"]["message"],
        json!("failed on purpose"),
        "{cleanup}"
    );
}

// ---------------------------------------------------------------------------
// Listing
// ---------------------------------------------------------------------------

fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(id_of).collect()
}

async fn list_filters_and_paginates_newest_first(b: Backend) {
    // No workers: every task stays where it was put.
    list_scenario(&server_with_workers(b, 0).await).await;
}

/// Listing, filters, pagination and queue counts on a server with no
/// workers and no tasks yet.
async fn list_scenario(server: &Server) {
    let mut submitted = Vec::new();
    for i in 0..5 {
        let t = submit(server, json!({"kind": "noop", "args": i, "queue": "a"})).await;
        submitted.push(id_of(&t));
    }
    for i in 0..3 {
        let t = submit(
            server,
            json!({"kind": "sleep", "args": {"ms": i}, "queue": "b"}),
        )
        .await;
        submitted.push(id_of(&t));
    }
    for _ in 0..2 {
        let t = submit(server, json!({"kind": "noop", "countdown": 3600})).await;
        assert_eq!(t["state"], json!("scheduled"), "{t}");
        submitted.push(id_of(&t));
    }
    let newest_first: Vec<String> = submitted.iter().rev().cloned().collect();

    let all = list_all(server, "").await;
    assert_eq!(ids(&all), newest_first, "GET /tasks is newest first");
    let only =
        |items: &[Value], key: &str, value: &str| items.iter().all(|t| t[key] == json!(value));
    let sleeps = list_all(server, "kind=sleep").await;
    assert_eq!(sleeps.len(), 3);
    assert!(only(&sleeps, "kind", "sleep"));
    let on_a = list_all(server, "queue=a").await;
    assert_eq!(ids(&on_a), newest_first[5..].to_vec());
    let scheduled = list_all(server, "state=scheduled").await;
    assert_eq!(ids(&scheduled), newest_first[..2].to_vec());
    let pending_noops = list_all(server, "state=pending&kind=noop").await;
    assert_eq!(pending_noops.len(), 5);
    assert!(list_all(server, "kind=process").await.is_empty());
    assert!(list_all(server, "queue=a&kind=sleep").await.is_empty());
    assert!(list_all(server, "state=running").await.is_empty());

    // Pages of 4: 4, 4, 2, each continuing where the last stopped.
    let mut pages = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let path = match &before {
            Some(b) => format!("/tasks?limit=4&before={b}"),
            None => "/tasks?limit=4".to_owned(),
        };
        let page = server.get(&path).await;
        page.expect_status(200);
        let page = page.json();
        let items = page["items"].as_array().expect("items").clone();
        pages.push(ids(&items));
        match page["next_before"].as_str() {
            Some(b) => {
                assert_eq!(Some(b.to_owned()), ids(&items).last().cloned(), "{page}");
                before = Some(b.to_owned());
            }
            None => break,
        }
        assert!(pages.len() < 10, "pagination does not end: {pages:?}");
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [4, 4, 2],
        "{pages:?}"
    );
    assert_eq!(pages.concat(), newest_first);
    // A page that ends exactly at the last task says there is no next one.
    let page = server.get("/tasks?limit=5&queue=a").await.json();
    assert_eq!(page["items"].as_array().map(Vec::len), Some(5));
    assert!(
        page["next_before"].is_null(),
        "last page has no next_before: {page}"
    );
    let page = server.get("/tasks?limit=10").await.json();
    assert!(page["next_before"].is_null(), "{page}");
    // Filters combine with pagination.
    let page = server.get("/tasks?kind=noop&limit=3").await.json();
    let first = ids(page["items"].as_array().expect("items"));
    assert_eq!(first.len(), 3);
    let next = page["next_before"]
        .as_str()
        .expect("next_before")
        .to_owned();
    let rest = list_all(server, &format!("kind=noop&before={next}")).await;
    assert_eq!(first.len() + rest.len(), 7);
    assert!(only(&rest, "kind", "noop"));

    // The counts per queue agree.
    let queues = server.get("/queues").await;
    queues.expect_status(200);
    let queues = queues.json();
    let count = |queue: &str, state: &str| {
        queues["queues"]
            .as_array()
            .expect("queues")
            .iter()
            .find(|q| q["name"] == json!(queue))
            .map(|q| q["counts"][state].as_u64().unwrap_or(u64::MAX))
    };
    assert_eq!(count("a", "pending"), Some(5), "{queues}");
    assert_eq!(count("a", "succeeded"), Some(0), "{queues}");
    assert_eq!(count("b", "pending"), Some(3), "{queues}");
    assert_eq!(count("default", "scheduled"), Some(2), "{queues}");
    assert_eq!(queues["workers"], json!(0), "{queues}");
    let workers = server.get("/workers").await;
    workers.expect_status(200);
    assert_eq!(workers.json(), json!([]), "--workers 0 runs no worker");
}

// ---------------------------------------------------------------------------
// Workflows
// ---------------------------------------------------------------------------

async fn post_workflow(server: &Server, body: Value) -> Value {
    let resp = server.post_json("/workflows", &body).await;
    resp.expect_status(201);
    resp.json()
}

fn id_list(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array of ids: {v}"))
        .iter()
        .map(|x| x.as_str().expect("id").to_owned())
        .collect()
}

async fn workflows_chain_group_and_chord(b: Backend) {
    let server = server_with_workers(b, 8).await;

    // Chain: each task gets the previous result as its parent, in turn.
    let chain = post_workflow(
        &server,
        json!({"type": "chain", "tasks": [
            {"kind": "noop", "args": "first"},
            {"kind": "noop", "args": "second"},
            {"kind": "noop", "args": "third"},
        ]}),
    )
    .await;
    assert_eq!(chain["type"], json!("chain"));
    let links = id_list(&chain["tasks"]);
    assert_eq!(links.len(), 3);
    let mut previous: Option<Value> = None;
    for (i, id) in links.iter().enumerate() {
        let t = wait_state(&server, id, "succeeded").await;
        assert_eq!(t["args"], json!(["first", "second", "third"][i]), "{t}");
        if let Some(prev) = &previous {
            assert_eq!(
                t["parent"], prev["result"],
                "link {i} gets the previous result: {t}"
            );
            assert!(
                ts(&t, "started_at") >= ts(prev, "finished_at"),
                "link {i} starts only once the previous one finished: {prev} / {t}"
            );
        }
        previous = Some(t);
    }

    // Group: every member at once, listed by group id.
    let group = post_workflow(
        &server,
        json!({"type": "group", "tasks": [
            {"kind": "noop", "args": 1}, {"kind": "noop", "args": 2}, {"kind": "noop", "args": 3},
        ]}),
    )
    .await;
    let group_id = group["group_id"].as_str().expect("group_id").to_owned();
    assert!(group["callback"].is_null(), "{group}");
    let members = id_list(&group["tasks"]);
    for id in &members {
        wait_state(&server, id, "succeeded").await;
    }
    let listed = list_all(&server, &format!("group_id={group_id}")).await;
    let listed: HashSet<String> = ids(&listed).into_iter().collect();
    assert_eq!(listed, members.iter().cloned().collect::<HashSet<_>>());

    // Chord: the callback runs once, after every member, with every result.
    let chord = post_workflow(
        &server,
        json!({"type": "chord",
            "tasks": [
                {"kind": "process", "args": {"items": ["a"], "item_ms": 300}},
                {"kind": "process", "args": {"items": ["bb", "cc"], "item_ms": 100}},
                {"kind": "noop", "args": "x"},
            ],
            "callback": {"kind": "sleep", "args": {"ms": 1}}}),
    )
    .await;
    let callback = chord["callback"].as_str().expect("callback id").to_owned();
    let chord_group = chord["group_id"].as_str().expect("group_id").to_owned();
    let chord_members = id_list(&chord["tasks"]);
    let done = wait_state(&server, &callback, "succeeded").await;
    assert_eq!(done["attempts"], json!(1), "{done}");
    for id in &chord_members {
        let t = get_task(&server, id).await;
        assert_eq!(t["state"], json!("succeeded"), "{t}");
        assert!(
            ts(&done, "started_at") >= ts(&t, "finished_at"),
            "the callback starts after every member: {t} / {done}"
        );
    }
    let listed = list_all(&server, &format!("group_id={chord_group}")).await;
    assert_eq!(listed.len(), 3, "the chord's group holds its members");
    // Exactly one callback task exists and it ran once.
    let sleeps = list_all(&server, "kind=sleep").await;
    assert_eq!(ids(&sleeps), vec![callback.clone()], "one callback task");
    let metrics = server.get("/metrics").await.text;
    assert_eq!(
        metric(
            &metrics,
            "surge_tasks_finished_total{kind=\"sleep\",outcome=\"succeeded\"}"
        ),
        Some(1.0),
        "the callback ran once"
    );
    // 3 chain links + 3 group members + 3 chord members + 1 callback.
    assert_eq!(task_count(&server).await, 10);
}

async fn bad_workflows_are_422_and_store_nothing(b: Backend) {
    let server = server_with_workers(b, 0).await;
    let noop = json!({"kind": "noop"});
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"tasks": [noop]}), vec!["type"]),
        (json!({"type": "star", "tasks": [noop]}), vec!["type"]),
        (json!({"type": "chain"}), vec!["tasks"]),
        (json!({"type": "chain", "tasks": []}), vec!["tasks"]),
        (json!({"type": "group", "tasks": {}}), vec!["tasks"]),
        (
            json!({"type": "group", "tasks": [noop, {"kind": "zz"}, 5]}),
            vec!["tasks[1].kind", "tasks[2]"],
        ),
        (json!({"type": "chord", "tasks": [noop]}), vec!["callback"]),
        (
            json!({"type": "chord", "tasks": [noop], "callback": {"kind": "sleep"}}),
            vec!["callback.args"],
        ),
        (
            json!({"type": "group", "tasks": [noop], "callback": noop}),
            vec!["callback"],
        ),
        (
            json!({"type": "chain", "tasks": [noop], "extra": true}),
            vec!["extra"],
        ),
    ];
    for (body, fields) in &cases {
        let resp = server.post_json("/workflows", body).await;
        assert_validation_fields(&resp, fields);
    }
    assert_eq!(
        task_count(&server).await,
        0,
        "a refused workflow stored a task"
    );
}

// ---------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------

async fn schedules(server: &Server) -> Vec<Value> {
    let resp = server.get("/schedules").await;
    resp.expect_status(200);
    resp.json().as_array().expect("an array").clone()
}

async fn schedules_are_created_listed_fired_and_deleted(b: Backend) {
    let server = server_with_workers(b, 4).await;
    assert!(schedules(&server).await.is_empty());

    // Standard five-field cron in a time zone: stored, not fired soon.
    let resp = server
        .post_json(
            "/schedules",
            &json!({"name": "nightly.report", "cron": "30 3 * * *", "timezone": "Europe/Paris",
                    "task": {"kind": "noop", "args": {"report": "nightly"}, "queue": "reports"}}),
        )
        .await;
    resp.expect_status(201);
    let nightly = resp.json();
    assert_eq!(nightly["name"], json!("nightly.report"));
    assert_eq!(nightly["timezone"], json!("Europe/Paris"));
    assert_eq!(nightly["kind"], json!("noop"));
    assert_eq!(nightly["queue"], json!("reports"));
    assert_eq!(nightly["args"], json!({"report": "nightly"}));
    assert!(nightly["last_fired_at"].is_null());
    assert_rfc3339(&nightly["next_fire_at"], "next_fire_at");
    // 03:30 in Paris is 01:30 or 02:30 UTC.
    let next = nightly["next_fire_at"].as_str().unwrap_or("");
    assert!(
        next.contains("T01:30:00") || next.contains("T02:30:00"),
        "03:30 Europe/Paris in UTC: {nightly}"
    );

    // A shortcut is stored as given.
    let resp = server
        .post_json(
            "/schedules",
            &json!({"name": "hourly", "cron": "@hourly", "task": {"kind": "noop"}}),
        )
        .await;
    resp.expect_status(201);
    assert_eq!(resp.json()["cron"], json!("@hourly"));
    server.delete("/schedules/hourly").await.expect_status(204);

    // Every second: it fires, and tasks appear.
    let resp = server
        .post_json(
            "/schedules",
            &json!({"name": "tick", "cron": "* * * * * *",
                    "task": {"kind": "noop", "args": {"tick": true}}}),
        )
        .await;
    resp.expect_status(201);
    assert_eq!(resp.json()["timezone"], json!("UTC"));
    let names: Vec<String> = schedules(&server)
        .await
        .iter()
        .map(|s| s["name"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(names, ["nightly.report", "tick"]);
    let fired = eventually(WAIT, "the every-second schedule fires twice", || async {
        let ticks: Vec<Value> = list_all(&server, "kind=noop")
            .await
            .into_iter()
            .filter(|t| t["args"] == json!({"tick": true}))
            .collect();
        if ticks.len() >= 2 && ticks.iter().any(|t| t["state"] == json!("succeeded")) {
            Ok(ticks)
        } else {
            Err(format!("{} tick tasks", ticks.len()))
        }
    })
    .await;
    let distinct: HashSet<String> = ids(&fired).into_iter().collect();
    assert_eq!(distinct.len(), fired.len());
    let tick = schedules(&server)
        .await
        .into_iter()
        .find(|s| s["name"] == json!("tick"))
        .expect("tick listed");
    assert_rfc3339(&tick["last_fired_at"], "last_fired_at");

    // Replacing keeps one schedule of that name.
    let resp = server
        .post_json(
            "/schedules",
            &json!({"name": "nightly.report", "cron": "0 4 * * *",
                    "task": {"kind": "noop"}}),
        )
        .await;
    resp.expect_status(201);
    let all = schedules(&server).await;
    assert_eq!(all.len(), 2);
    assert!(
        all.iter()
            .any(|s| s["name"] == json!("nightly.report") && s["timezone"] == json!("UTC"))
    );

    // Deleted: it fires no more.
    let resp = server.delete("/schedules/tick").await;
    resp.expect_status(204);
    let after_delete = list_all(&server, "kind=noop").await.len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        list_all(&server, "kind=noop").await.len(),
        after_delete,
        "a deleted schedule fired"
    );
    assert_error(&server.delete("/schedules/tick").await, 404, "not_found");
    let names: Vec<Value> = schedules(&server)
        .await
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(names, [json!("nightly.report")]);
}

async fn bad_schedules_are_422_naming_each_field(b: Backend) {
    let server = server_with_workers(b, 0).await;
    let task = json!({"kind": "noop"});
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"name": "a", "cron": "not a cron", "task": task}),
            vec!["cron"],
        ),
        (
            json!({"name": "a", "cron": "* * * * *", "timezone": "Mars/Olympus", "task": task}),
            vec!["timezone"],
        ),
        (
            json!({"name": "a", "cron": "61 * * * *", "timezone": "Mars/Olympus", "task": task}),
            vec!["cron", "timezone"],
        ),
        (
            json!({"name": "bad name!", "cron": "* * * * *", "task": task}),
            vec!["name"],
        ),
        (json!({"cron": "* * * * *", "task": task}), vec!["name"]),
        (json!({"name": "a", "task": task}), vec!["cron"]),
        (json!({"name": "a", "cron": "* * * * *"}), vec!["task"]),
        (
            json!({"name": "a", "cron": "* * * * *", "task": {"kind": "zz"}}),
            vec!["task.kind"],
        ),
        (
            json!({"name": "a", "cron": "* * * * *", "task": {"kind": "sleep", "args": {}}}),
            vec!["task.args"],
        ),
        (
            json!({"name": "a", "cron": "* * * * *", "task": {"kind": "noop", "queue": "a b"}}),
            vec!["task.queue"],
        ),
        (
            json!({"name": "a", "cron": "* * * * *", "task": task, "every": 5}),
            vec!["every"],
        ),
        (
            json!({"name": 5, "cron": 6, "timezone": 7, "task": 8}),
            vec!["name", "cron", "timezone", "task"],
        ),
    ];
    for (body, fields) in &cases {
        let resp = server.post_json("/schedules", body).await;
        assert_validation_fields(&resp, fields);
    }
    assert!(
        schedules(&server).await.is_empty(),
        "a refused schedule was stored"
    );
}

// ---------------------------------------------------------------------------
// Observability and auth
// ---------------------------------------------------------------------------

async fn queues_workers_health_metrics_and_openapi_show_the_queue(b: Backend) {
    let server = ServerBuilder::new(b)
        .args(["--workers", "3", "--queues", "default,mail"])
        .start()
        .await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(id_of(
            &submit(&server, json!({"kind": "noop", "args": i})).await,
        ));
    }
    let mail = submit(&server, json!({"kind": "noop", "queue": "mail"})).await;
    ids.push(id_of(&mail));
    let failing = submit(&server, json!({"kind": "fail", "max_retries": 0})).await;
    for id in &ids {
        wait_state(&server, id, "succeeded").await;
    }
    wait_state(&server, &id_of(&failing), "dead").await;

    let queues = server.get("/queues").await;
    queues.expect_status(200);
    let queues = queues.json();
    let by_name = |name: &str| {
        queues["queues"]
            .as_array()
            .expect("queues")
            .iter()
            .find(|q| q["name"] == json!(name))
            .cloned()
            .unwrap_or_else(|| panic!("queue {name} in {queues}"))
    };
    let default = by_name("default");
    assert_eq!(default["counts"]["succeeded"], json!(4), "{queues}");
    assert_eq!(default["counts"]["dead"], json!(1), "{queues}");
    assert_eq!(default["counts"]["pending"], json!(0), "{queues}");
    assert_eq!(by_name("mail")["counts"]["succeeded"], json!(1), "{queues}");
    assert_eq!(queues["workers"], json!(1), "{queues}");

    let workers = server.get("/workers").await;
    workers.expect_status(200);
    let workers = workers.json();
    let list = workers.as_array().expect("an array");
    assert_eq!(list.len(), 1, "the embedded worker: {workers}");
    let w = &list[0];
    assert_eq!(w["pid"], json!(server.pid().as_raw()), "{w}");
    assert_eq!(w["concurrency"], json!(3), "{w}");
    assert_eq!(w["queues"], json!(["default", "mail"]), "{w}");
    assert_rfc3339(&w["last_heartbeat"], "last_heartbeat");
    assert!(ts(w, "lease_expires_at") > ts(w, "last_heartbeat"), "{w}");

    let health = server.get("/health").await;
    health.expect_status(200);
    let health = health.json();
    assert_eq!(health["status"], json!("ok"), "{health}");
    let broker = &health["checks"]["broker"];
    assert_eq!(broker["status"], json!("up"), "{health}");
    let backend = match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(broker["backend"], json!(backend), "{health}");

    let metrics = server.get("/metrics").await;
    metrics.expect_status(200);
    let text = metrics.text;
    let want = [
        (
            "surge_tasks_finished_total{kind=\"noop\",outcome=\"succeeded\"}",
            5.0,
        ),
        (
            "surge_tasks_finished_total{kind=\"fail\",outcome=\"dead\"}",
            1.0,
        ),
        ("surge_task_run_seconds_count{kind=\"noop\"}", 5.0),
        ("surge_task_wait_seconds_count{kind=\"noop\"}", 5.0),
        (
            "surge_queue_tasks{queue=\"default\",state=\"succeeded\"}",
            4.0,
        ),
        ("surge_queue_tasks{queue=\"default\",state=\"dead\"}", 1.0),
        ("surge_queue_tasks{queue=\"mail\",state=\"succeeded\"}", 1.0),
        (
            "surge_queue_tasks{queue=\"default\",state=\"pending\"}",
            0.0,
        ),
    ];
    for (series, value) in want {
        assert_eq!(metric(&text, series), Some(value), "{series} in /metrics");
    }
    for family in [
        "surge_task_run_seconds",
        "surge_queue_tasks",
        "surge_tasks_finished",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# TYPE {family} "))),
            "# TYPE of {family}"
        );
    }

    let doc = server.get("/openapi.json").await;
    doc.expect_status(200);
    let doc = doc.json();
    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in [
        ("/tasks", &["get", "post"][..]),
        ("/tasks/{id}", &["get"]),
        ("/tasks/{id}/cancel", &["post"]),
        ("/tasks/{id}/retry", &["post"]),
        ("/workflows", &["post"]),
        ("/queues", &["get"]),
        ("/workers", &["get"]),
        ("/schedules", &["get", "post"]),
        ("/schedules/{name}", &["delete"]),
    ] {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} in /openapi.json"));
        for m in methods {
            assert!(item.get(*m).is_some(), "{m} {path} in /openapi.json");
        }
    }
    assert!(
        paths["/tasks"]["post"]["responses"].get("422").is_some(),
        "POST /tasks documents its 422"
    );
    for (path, method) in [
        ("/tasks/{id}", "get"),
        ("/tasks/{id}/cancel", "post"),
        ("/tasks/{id}/retry", "post"),
    ] {
        let responses = &paths[path][method]["responses"];
        for status in ["200", "404", "422"] {
            assert!(
                responses.get(status).is_some(),
                "{method} {path} documents {status}: {responses}"
            );
        }
    }
    for (path, method) in [
        ("/tasks/{id}/cancel", "post"),
        ("/tasks/{id}/retry", "post"),
    ] {
        assert!(paths[path][method]["responses"].get("409").is_some());
    }
}

async fn task_routes_need_the_bearer_token(b: Backend) {
    let server = Server::start(b, &["--api-token", "s3cret", "--workers", "2"]).await;
    let routes: [(Method, &str); 9] = [
        (Method::POST, "/tasks"),
        (Method::GET, "/tasks"),
        (Method::GET, "/tasks/01a208a3-621f-7350-a7ac-cd54f2b1d512"),
        (
            Method::POST,
            "/tasks/01a208a3-621f-7350-a7ac-cd54f2b1d512/cancel",
        ),
        (Method::POST, "/workflows"),
        (Method::GET, "/queues"),
        (Method::GET, "/workers"),
        (Method::GET, "/schedules"),
        (Method::DELETE, "/schedules/x"),
    ];
    let body = json!({"kind": "noop"});
    for (method, path) in &routes {
        for auth in [None, Some("Bearer wrong"), Some("s3cret")] {
            let mut rb = server.request(method.clone(), path).json(&body);
            if let Some(a) = auth {
                rb = rb.header("authorization", a);
            }
            let resp = server.send(rb).await;
            assert_error(&resp, 401, "unauthorized");
            assert!(resp.header("www-authenticate").is_some(), "{method} {path}");
        }
    }
    assert_eq!(
        server
            .send(server.request(Method::GET, "/tasks").bearer_auth("s3cret"))
            .await
            .json()["items"],
        json!([]),
        "nothing was stored without the token"
    );
    let resp = server
        .send(
            server
                .request(Method::POST, "/tasks")
                .bearer_auth("s3cret")
                .json(&json!({"kind": "noop", "args": "authorised"})),
        )
        .await;
    resp.expect_status(201);
    let id = id_of(&resp.json()["task"]);
    let done = eventually(WAIT, "the authorised task succeeds", || async {
        let t = server
            .send(
                server
                    .request(Method::GET, &format!("/tasks/{id}"))
                    .bearer_auth("s3cret"),
            )
            .await
            .json();
        if t["state"] == json!("succeeded") {
            Ok(t)
        } else {
            Err(t.to_string())
        }
    })
    .await;
    assert_eq!(done["result"], json!("authorised"));
    // Probes and scrapes stay open.
    server.get("/health").await.expect_status(200);
    server.get("/metrics").await.expect_status(200);
    server.get("/openapi.json").await.expect_status(200);
}

// ---------------------------------------------------------------------------
// Shutdown and startup
// ---------------------------------------------------------------------------

async fn sigterm_hands_running_tasks_back_and_exits_zero(b: Backend) {
    let mut server = Server::start(b, &["--workers", "2", "--shutdown-grace", "1"]).await;
    let task = submit(&server, json!({"kind": "sleep", "args": {"ms": 120_000}})).await;
    let id = id_of(&task);
    wait_state(&server, &id, "running").await;
    server.signal(nix::sys::signal::Signal::SIGTERM);
    // Two minutes of sleep to go: exiting at all means it was handed back
    // after the one-second grace rather than waited for.
    let status = server
        .wait_exit(Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("surge serve did not exit after SIGTERM"));
    assert!(status.success(), "exit status {status}");
    assert!(
        server.stderr().contains("handed_back=1"),
        "{}",
        server.stderr()
    );
    // The server is gone: ask the broker with the CLI.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_surge"));
    cmd.args(["task", "get", &id, "--json", "--broker", &server.db().url]);
    for (k, _) in std::env::vars() {
        if k.starts_with("SURGE_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("run surge task get");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let task: Value = serde_json::from_slice(&out.stdout).expect("JSON record");
    assert_eq!(task["state"], json!("pending"), "handed back: {task}");
    assert_eq!(task["attempts"], json!(0), "{task}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_locked_sqlite_broker_is_503_broker_unavailable_and_stores_nothing() {
    use sqlx::Connection as _;
    use std::str::FromStr as _;
    // The broker in a file of its own, so that locking it leaves the
    // database alone.
    let dir = common::fresh_temp_dir("broker");
    let broker_url = format!("sqlite://{}", dir.join("broker.db").display());
    let server = ServerBuilder::new(Backend::Sqlite)
        .args([
            "--broker-url",
            broker_url.as_str(),
            "--db-acquire-timeout",
            "1",
        ])
        .args(["--workers", "0"])
        .start()
        .await;
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(&broker_url)
        .expect("sqlite url")
        .busy_timeout(Duration::from_secs(30));
    let mut locker = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("open the broker file from the test");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .expect("BEGIN EXCLUSIVE");

    let resp = server
        .post_json("/tasks", &json!({"kind": "noop", "args": "locked out"}))
        .await;
    assert_error(&resp, 503, "broker_unavailable");
    assert!(resp.header("retry-after").is_some(), "{:?}", resp.headers);
    let schedule = json!({"name": "s", "cron": "* * * * *", "task": {"kind": "noop"}});
    let resp = server.post_json("/schedules", &schedule).await;
    assert_error(&resp, 503, "broker_unavailable");
    // Counted as system errors (the caller did nothing wrong).
    let metrics = server.get("/metrics").await.text;
    assert_eq!(
        metric(&metrics, "surge_http_errors_total{category=\"system\"}"),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "surge_http_errors_total{category=\"validation\"}"),
        None
    );

    sqlx::query("ROLLBACK")
        .execute(&mut locker)
        .await
        .expect("ROLLBACK");
    locker.close().await.ok();
    assert_eq!(
        task_count(&server).await,
        0,
        "the refused submission was stored"
    );
    assert!(schedules(&server).await.is_empty());
    submit(&server, json!({"kind": "noop"})).await;
    server
        .post_json("/schedules", &schedule)
        .await
        .expect_status(201);
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_broker_is_refused_at_startup_with_the_url_redacted() {
    let (status, stderr) = ServerBuilder::new(Backend::Sqlite)
        .args(["--broker-url", "redis://user:hunter2@127.0.0.1:1"])
        .start_expecting_exit()
        .await;
    assert!(!status.success(), "{status}");
    assert!(
        stderr.contains("cannot open the task broker redis://user:***@127.0.0.1:1"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    let (status, stderr) = ServerBuilder::new(Backend::Sqlite)
        .args(["--broker-url", "amqp://127.0.0.1"])
        .start_expecting_exit()
        .await;
    assert!(!status.success(), "{status}");
    assert!(stderr.contains("unsupported scheme"), "{stderr}");
}

// ---------------------------------------------------------------------------
// Redis as the broker
// ---------------------------------------------------------------------------

/// A server on a SQLite database whose broker is Redis, in a namespace of
/// its own.
async fn redis_server(extra: &[&str]) -> Option<Server> {
    let url = common::redis_url()?;
    let namespace = format!("surge-test-{}", common::unique_suffix());
    Some(
        ServerBuilder::new(Backend::Sqlite)
            .args(["--broker-url", url.as_str()])
            .args(extra.iter().copied())
            .env("SURGE_BROKER_NAMESPACE", namespace)
            .start()
            .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_broker_runs_cancels_retries_and_dedups() {
    let Some(server) = redis_server(&["--workers", "4"]).await else {
        return;
    };
    let health = server.get("/health").await.json();
    assert_eq!(
        health["checks"]["broker"]["backend"],
        json!("redis"),
        "{health}"
    );
    assert_eq!(
        health["checks"]["broker"]["status"],
        json!("up"),
        "{health}"
    );
    assert_eq!(
        health["checks"]["database"]["backend"],
        json!("sqlite"),
        "{health}"
    );

    let task = submit(&server, json!({"kind": "noop", "args": {"via": "redis"}})).await;
    let done = wait_state(&server, &id_of(&task), "succeeded").await;
    assert_eq!(done["result"], json!({"via": "redis"}));

    let body = json!({"kind": "sleep", "args": {"ms": 120_000}, "unique_key": "only-one"});
    let long = submit(&server, body.clone()).await;
    let long_id = id_of(&long);
    wait_state(&server, &long_id, "running").await;
    let resp = server.post_json("/tasks", &body).await;
    resp.expect_status(200);
    assert_eq!(id_of(&resp.json()["task"]), long_id);
    let resp = post(&server, &format!("/tasks/{long_id}/cancel")).await;
    resp.expect_status(200);
    assert_eq!(resp.json()["outcome"], json!("cancel_requested"));
    wait_state(&server, &long_id, "cancelled").await;
    assert_error(
        &post(&server, &format!("/tasks/{long_id}/cancel")).await,
        409,
        "conflict",
    );

    let failing = submit(&server, json!({"kind": "fail", "max_retries": 0})).await;
    let failing_id = id_of(&failing);
    wait_state(&server, &failing_id, "dead").await;
    let resp = post(&server, &format!("/tasks/{failing_id}/retry")).await;
    resp.expect_status(200);
    eventually(WAIT, "the retried task runs again", || async {
        let text = server.get("/metrics").await.text;
        match metric(
            &text,
            "surge_tasks_finished_total{kind=\"fail\",outcome=\"dead\"}",
        ) {
            Some(2.0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let bad = server
        .post_json("/tasks", &json!({"kind": "zz", "eta": 5}))
        .await;
    assert_validation_fields(&bad, &["kind", "eta"]);
    assert_eq!(task_count(&server).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_broker_lists_filters_and_paginates() {
    if let Some(server) = redis_server(&["--workers", "0"]).await {
        list_scenario(&server).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_broker_fires_schedules_and_runs_chords() {
    let Some(server) = redis_server(&["--workers", "4"]).await else {
        return;
    };
    let resp = server
        .post_json(
            "/schedules",
            &json!({"name": "tick", "cron": "* * * * * *", "timezone": "Asia/Tokyo",
                    "task": {"kind": "noop", "args": "tick"}}),
        )
        .await;
    resp.expect_status(201);
    eventually(WAIT, "the schedule fires on Redis", || async {
        let n = list_all(&server, "kind=noop")
            .await
            .iter()
            .filter(|t| t["state"] == json!("succeeded"))
            .count();
        if n >= 2 {
            Ok(())
        } else {
            Err(format!("{n} ticks ran"))
        }
    })
    .await;
    server.delete("/schedules/tick").await.expect_status(204);

    let chord = post_workflow(
        &server,
        json!({"type": "chord", "tasks": [{"kind": "noop", "args": 1}, {"kind": "noop", "args": 2}],
               "callback": {"kind": "sleep", "args": {"ms": 1}}}),
    )
    .await;
    let callback = chord["callback"].as_str().expect("callback").to_owned();
    wait_state(&server, &callback, "succeeded").await;
    assert_eq!(ids(&list_all(&server, "kind=sleep").await), vec![callback]);

    let workers = server.get("/workers").await.json();
    assert_eq!(workers.as_array().map(Vec::len), Some(1), "{workers}");
}
