//! The `http.fetch` task kind through `surge serve`: bad args are refused
//! at submission, private addresses are refused unless the server allows
//! them, and the result holds what was fetched.

mod common;
#[path = "../../surge-fetch/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use common::{Backend, Server, eventually};
use serde_json::{Value, json};

async fn finished(server: &Server, id: &str) -> Value {
    eventually(Duration::from_secs(60), "the task finishes", || async {
        let task = server.get(&format!("/tasks/{id}")).await.json();
        match task["state"].as_str() {
            Some("succeeded" | "failed" | "dead") => Ok(task),
            _ => Err(task.to_string()),
        }
    })
    .await
}

async fn submit(server: &Server, args: Value) -> String {
    let resp = server
        .post_json(
            "/tasks",
            &json!({"kind": "http.fetch", "args": args, "max_retries": 0}),
        )
        .await;
    resp.expect_status(201);
    resp.json()["task"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_args_are_refused_at_submission() {
    let server = Server::start(Backend::Sqlite, &["--workers", "1"]).await;
    for args in [
        json!({}),
        json!({"url": "not a url"}),
        json!({"url": "ftp://example.com/"}),
        json!({"url": "http://example.com/", "method": "B@D"}),
        json!({"url": "http://example.com/", "headers": {"bad name": "x"}}),
        json!({"url": "http://example.com/", "json": {}, "body": "x"}),
        json!({"url": "http://example.com/", "max_body_bytes": 0}),
        json!({"url": "http://example.com/", "surprise": true}),
    ] {
        let resp = server
            .post_json("/tasks", &json!({"kind": "http.fetch", "args": args}))
            .await;
        assert_eq!(resp.status, 422, "{args}: {}", resp.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_by_default() {
    let target = support::Server::start().await;
    let server = Server::start(Backend::Sqlite, &["--workers", "2"]).await;
    let id = submit(&server, json!({"url": target.url("/ok")})).await;
    let task = finished(&server, &id).await;
    assert_eq!(task["state"], "failed", "{task}");
    assert_eq!(task["error"]["category"], "validation", "{task}");
    assert_eq!(task["error"]["retryable"], false);
    // Also when a redirect leads there.
    let id = submit(
        &server,
        json!({"url": format!("http://localhost:{}/ok", target.addr.port())}),
    )
    .await;
    assert_eq!(
        finished(&server, &id).await["error"]["category"],
        "validation"
    );
    assert_eq!(target.stats.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_private_allowed_the_result_holds_what_was_fetched() {
    let target = support::Server::start().await;
    let server = Server::start(
        Backend::Sqlite,
        &["--workers", "2", "--fetch-allow-private"],
    )
    .await;
    let id = submit(
        &server,
        json!({"url": target.url("/redirect/chain/1"), "keep_body": true}),
    )
    .await;
    let task = finished(&server, &id).await;
    assert_eq!(task["state"], "succeeded", "{task}");
    let r = &task["result"];
    assert_eq!(r["status"], 200);
    assert_eq!(r["redirects"], 1);
    assert_eq!(r["body"], "end of chain");
    assert_eq!(r["bytes"], 12);
    assert_eq!(r["headers"]["content-length"], "12");
    assert!(r["elapsed_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(r["final_url"], target.url("/redirect/chain/0"));

    // An error status fails the task with its category; a 503 may be retried.
    let id = submit(&server, json!({"url": target.url("/status/404")})).await;
    let task = finished(&server, &id).await;
    assert_eq!(
        (
            task["error"]["category"].as_str(),
            task["error"]["retryable"].as_bool()
        ),
        (Some("http_status"), Some(false)),
        "{task}"
    );
    let id = submit(&server, json!({"url": target.url("/status/503")})).await;
    let task = finished(&server, &id).await;
    assert_eq!(
        (
            task["error"]["category"].as_str(),
            task["error"]["retryable"].as_bool()
        ),
        (Some("http_status"), Some(true)),
        "{task}"
    );
    // fail_on_status: false keeps it a result.
    let id = submit(
        &server,
        json!({"url": target.url("/status/404"), "fail_on_status": false}),
    )
    .await;
    let task = finished(&server, &id).await;
    assert_eq!(task["state"], "succeeded");
    assert_eq!(task["result"]["error"]["kind"], "status");
}
