//! `GET /api/data` and `POST /api/process` (no database involved, so these
//! run on SQLite only).

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Server, assert_error, assert_rfc3339, assert_validation_fields};
use reqwest::Method;
use serde_json::{Value, json};

async fn server() -> Server {
    Server::start(Backend::Sqlite, &[]).await
}

// ---------------------------------------------------------------------------
// GET /api/data
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_defaults_to_100ms_delay_and_reports_request_id() {
    let server = server().await;
    let started = Instant::now();
    let resp = server.get("/api/data").await;
    let elapsed = started.elapsed();
    resp.expect_status(200);
    resp.assert_json_content_type();
    let body = resp.json();
    assert_eq!(body["delay_ms"], 100, "{body}");
    assert!(
        elapsed >= Duration::from_millis(100),
        "default delay is 100 ms but the answer came after {elapsed:?}"
    );
    assert_rfc3339(&body["timestamp"], "timestamp");
    assert!(body["data"].is_string(), "data must be a string: {body}");
    assert_eq!(
        body["request_id"].as_str(),
        Some(resp.request_id().as_str()),
        "request_id must equal the x-request-id header: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_waits_at_least_the_given_delay() {
    let server = server().await;
    let started = Instant::now();
    let resp = server.get("/api/data?delay_ms=400").await;
    let elapsed = started.elapsed();
    resp.expect_status(200);
    let body = resp.json();
    assert_eq!(body["delay_ms"], 400, "{body}");
    assert!(
        elapsed >= Duration::from_millis(400),
        "asked for 400 ms, answered after {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_accepts_zero_delay() {
    let server = server().await;
    let resp = server.get("/api/data?delay_ms=0").await;
    resp.expect_status(200);
    assert_eq!(resp.json()["delay_ms"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_accepts_the_maximum_delay_of_10000ms() {
    let server = server().await;
    let started = Instant::now();
    let resp = server.get("/api/data?delay_ms=10000").await;
    let elapsed = started.elapsed();
    resp.expect_status(200);
    assert_eq!(resp.json()["delay_ms"], 10000);
    assert!(elapsed >= Duration::from_millis(10000), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_request_id_echoes_client_supplied_header() {
    let server = server().await;
    let resp = server
        .send(
            server
                .request(Method::GET, "/api/data?delay_ms=0")
                .header("x-request-id", "client-chosen-id-42"),
        )
        .await;
    resp.expect_status(200);
    assert_eq!(resp.request_id(), "client-chosen-id-42");
    assert_eq!(resp.json()["request_id"], "client-chosen-id-42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_generates_distinct_request_ids() {
    let server = server().await;
    let a = server.get("/api/data?delay_ms=0").await;
    let b = server.get("/api/data?delay_ms=0").await;
    assert_ne!(a.request_id(), b.request_id());
    assert_eq!(
        a.json()["request_id"].as_str(),
        Some(a.request_id().as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_rejects_non_integer_delay_with_422_naming_delay_ms() {
    let server = server().await;
    for query in ["delay_ms=abc", "delay_ms=1.5", "delay_ms="] {
        let resp = server.get(&format!("/api/data?{query}")).await;
        assert_validation_fields(&resp, &["delay_ms"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_rejects_out_of_range_delay_with_422_naming_delay_ms() {
    let server = server().await;
    for query in [
        "delay_ms=10001",
        "delay_ms=-1",
        "delay_ms=99999999999999999999",
    ] {
        let resp = server.get(&format!("/api/data?{query}")).await;
        assert_validation_fields(&resp, &["delay_ms"]);
    }
}

// ---------------------------------------------------------------------------
// POST /api/process
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn process_echoes_whole_body_and_reports_processing_time() {
    let server = server().await;
    let body = json!({
        "processing_time": 0.2,
        "job": "resize",
        "nested": {"sizes": [1, 2, 3], "ok": true, "none": null}
    });
    let started = Instant::now();
    let resp = server.post_json("/api/process", &body).await;
    let elapsed = started.elapsed();
    resp.expect_status(200);
    resp.assert_json_content_type();
    let out = resp.json();
    assert_eq!(out["status"], "success", "{out}");
    assert_eq!(
        out["processed_data"], body,
        "processed_data must be the whole body"
    );
    assert_rfc3339(&out["completed_at"], "completed_at");
    assert_eq!(out["processing_time"].as_f64(), Some(0.2), "{out}");
    assert!(
        elapsed >= Duration::from_millis(200),
        "processing_time 0.2 s, answered after {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn process_defaults_processing_time_to_half_a_second() {
    let server = server().await;
    let body = json!({"x": 1});
    let started = Instant::now();
    let resp = server.post_json("/api/process", &body).await;
    let elapsed = started.elapsed();
    resp.expect_status(200);
    let out = resp.json();
    assert_eq!(out["processing_time"].as_f64(), Some(0.5), "{out}");
    assert_eq!(out["processed_data"], body);
    assert!(
        elapsed >= Duration::from_millis(500),
        "default processing_time 0.5 s, answered after {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn process_accepts_integer_zero_processing_time() {
    let server = server().await;
    let body = json!({"processing_time": 0});
    let resp = server.post_json("/api/process", &body).await;
    resp.expect_status(200);
    let out = resp.json();
    assert_eq!(out["processing_time"].as_f64(), Some(0.0), "{out}");
    assert_eq!(out["processed_data"], body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn process_accepts_the_maximum_processing_time_of_10s() {
    let server = server().await;
    let started = Instant::now();
    let resp = server
        .post_json("/api/process", &json!({"processing_time": 10}))
        .await;
    let elapsed = started.elapsed();
    resp.expect_status(200);
    assert_eq!(resp.json()["processing_time"].as_f64(), Some(10.0));
    assert!(elapsed >= Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn process_rejects_malformed_json_with_400() {
    let server = server().await;
    for raw in ["{\"processing_time\": ", "{not json}", ""] {
        let resp = server
            .send_raw(Method::POST, "/api/process", Some("application/json"), raw)
            .await;
        assert_error(&resp, 400, "bad_request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn process_without_json_content_type_is_415() {
    let server = server().await;
    let resp = server
        .send_raw(
            Method::POST,
            "/api/process",
            None,
            "{\"processing_time\":0}",
        )
        .await;
    assert_error(&resp, 415, "unsupported_media_type");
    let resp = server
        .send_raw(
            Method::POST,
            "/api/process",
            Some("text/plain"),
            "{\"processing_time\":0}",
        )
        .await;
    assert_error(&resp, 415, "unsupported_media_type");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn process_rejects_string_processing_time_with_422() {
    let server = server().await;
    let resp = server
        .post_json("/api/process", &json!({"processing_time": "1"}))
        .await;
    assert_validation_fields(&resp, &["processing_time"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn process_rejects_negative_processing_time_with_422() {
    let server = server().await;
    let resp = server
        .post_json("/api/process", &json!({"processing_time": -1}))
        .await;
    assert_validation_fields(&resp, &["processing_time"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn process_rejects_processing_time_over_10_with_422() {
    let server = server().await;
    for pt in [json!(11), json!(10.001)] {
        let resp = server
            .post_json("/api/process", &json!({"processing_time": pt}))
            .await;
        assert_validation_fields(&resp, &["processing_time"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn process_rejects_non_object_body_with_422() {
    let server = server().await;
    for body in [json!([1, 2, 3]), json!("text"), json!(42), Value::Null] {
        let resp = server.post_json("/api/process", &body).await;
        assert_error(&resp, 422, "validation_failed");
    }
}
