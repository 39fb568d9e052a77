//! Crawls through the real `surge serve` and its HTTP API, on a
//! PostgreSQL database and broker with embedded workers: `POST /crawls`
//! starts a crawl of the test site as tasks, `GET /crawls` lists it,
//! `GET /crawls/{id}` shows its config, counts and state, and
//! `GET /crawls/{id}/pages` downloads its records as JSON lines — exactly
//! the site's page set. Bad input is a 422 naming each field; the routes
//! need the bearer token; on SQLite they answer 501.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Backend, Resp, Server, assert_error, assert_validation_fields};
use reqwest::Method;
use serde_json::{Value, json};
use surge_testkit::site::{CrawlRules, SiteConfig, TestSite};

const TOKEN: &str = "crawl-s3cret";
const DEADLINE: Duration = Duration::from_secs(180);

async fn send(server: &Server, method: Method, path: &str, body: Option<&Value>) -> Resp {
    let mut rb = server.request(method, path).bearer_auth(TOKEN);
    if let Some(b) = body {
        rb = rb.json(b);
    }
    server.send(rb).await
}

async fn pg_server(extra: &[&str]) -> Option<Server> {
    surge_testkit::postgres_url()?;
    let mut args = vec!["--api-token", TOKEN, "--workers", "4"];
    args.extend_from_slice(extra);
    Some(Server::start(Backend::Postgres, &args).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn post_list_get_and_download_a_crawl() {
    let Some(server) = pg_server(&["--fetch-allow-private"]).await else {
        return;
    };
    let site = TestSite::start(SiteConfig::plain(60)).await;
    let resp = send(
        &server,
        Method::POST,
        "/crawls",
        Some(&json!({
            "start_urls": [site.start_url()],
            "max_depth": 3,
            "concurrency": 8,
            "allow_private": true,
            "workers": 2,
        })),
    )
    .await;
    resp.expect_status(201);
    let started = resp.json();
    let id = started["crawl"]["id"].as_str().expect("id").to_owned();
    assert_eq!(started["task"], id.as_str(), "the crawl's id is its task's");
    assert_eq!(started["joins"], 1);
    assert_eq!(
        resp.header("location"),
        Some(format!("/crawls/{id}").as_str())
    );
    assert_eq!(started["crawl"]["config"]["max_depth"], 3);

    // Listed at once.
    let list = send(&server, Method::GET, "/crawls", None).await;
    list.expect_status(200);
    let items = list.json()["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id.as_str());

    // Runs to the end on the embedded workers.
    let deadline = Instant::now() + DEADLINE;
    let crawl = loop {
        let r = send(&server, Method::GET, &format!("/crawls/{id}"), None).await;
        r.expect_status(200);
        let c = r.json();
        if c["state"] != "running" {
            break c;
        }
        assert!(Instant::now() < deadline, "crawl never ended: {c}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(crawl["state"], "finished", "{crawl}");
    assert!(crawl["ended_at"].is_string());
    let expected = site.expected(&CrawlRules {
        start: vec![site.start_url()],
        max_depth: Some(3),
        ..CrawlRules::default()
    });
    assert_eq!(
        crawl["stats"]["done"],
        expected.pages.len() as u64,
        "{crawl}"
    );
    assert_eq!(crawl["stats"]["queued"], 0);
    assert_eq!(crawl["stats"]["leased"], 0);

    // The records, as JSON lines.
    let pages = send(&server, Method::GET, &format!("/crawls/{id}/pages"), None).await;
    pages.expect_status(200);
    assert_eq!(pages.header("content-type"), Some("application/x-ndjson"));
    let urls: Vec<String> = pages
        .text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line");
            v["url"].as_str().expect("url").to_owned()
        })
        .collect();
    let set: BTreeSet<String> = urls.iter().cloned().collect();
    assert_eq!(set.len(), urls.len(), "a URL twice");
    assert_eq!(set, expected.urls());

    // The task behind it.
    let task = send(&server, Method::GET, &format!("/tasks/{id}"), None).await;
    task.expect_status(200);
    assert_eq!(task.json()["kind"], "crawl");

    // Unknown and malformed ids.
    let unknown = uuid::Uuid::now_v7();
    for path in [
        format!("/crawls/{unknown}"),
        format!("/crawls/{unknown}/pages"),
    ] {
        let r = send(&server, Method::GET, &path, None).await;
        assert_error(&r, 404, "not_found");
    }
    let r = send(&server, Method::GET, "/crawls/nope", None).await;
    assert_validation_fields(&r, &["id"]);

    // The OpenAPI document lists the routes.
    let doc = server.get("/openapi.json").await;
    doc.expect_status(200);
    let doc = doc.json();
    for path in ["/crawls", "/crawls/{id}", "/crawls/{id}/pages"] {
        assert!(doc["paths"][path].is_object(), "{path} not documented");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_422_naming_each_field_and_stores_nothing() {
    // No --fetch-allow-private: private addresses are refused.
    let Some(server) = pg_server(&[]).await else {
        return;
    };
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), vec!["start_urls"]),
        (json!({"start_urls": "http://a.test/"}), vec!["start_urls"]),
        (
            json!({"start_urls": ["ftp://a.test/"]}),
            vec!["start_urls[0]"],
        ),
        (
            json!({"start_urls": ["http://a.test/"], "max_pages": -1, "colour": 1, "workers": 100}),
            vec!["max_pages", "colour", "workers"],
        ),
        (
            json!({"start_urls": ["http://a.test/"], "allow_private": true}),
            vec!["allow_private"],
        ),
        (
            json!({"start_urls": ["http://a.test/"], "concurrency": 0}),
            vec!["concurrency"],
        ),
        (
            json!({"start_urls": ["http://a.test/"], "scope": {"deny": ["("]}}),
            vec!["scope.deny"],
        ),
    ];
    for (body, fields) in cases {
        let r = send(&server, Method::POST, "/crawls", Some(&body)).await;
        assert_validation_fields(&r, &fields);
    }
    let r = server
        .send(
            server
                .request(Method::POST, "/crawls")
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_error(&r, 400, "bad_request");
    let r = send(&server, Method::GET, "/crawls?limit=0", None).await;
    assert_validation_fields(&r, &["limit"]);
    let list = send(&server, Method::GET, "/crawls", None).await;
    assert_eq!(list.json()["items"], json!([]), "nothing stored");

    // Without the token: 401, for every crawl route.
    for (method, path) in [
        (Method::POST, "/crawls"),
        (Method::GET, "/crawls"),
        (Method::GET, "/crawls/01a23497-cf3c-71b9-a157-e2c04db868b0"),
    ] {
        let r = server.send(server.request(method, path)).await;
        assert_error(&r, 401, "unauthorized");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sqlite_broker_cannot_hold_crawls() {
    let server = Server::start(Backend::Sqlite, &["--api-token", TOKEN]).await;
    let r = send(
        &server,
        Method::POST,
        "/crawls",
        Some(&json!({"start_urls": ["http://a.test/"]})),
    )
    .await;
    assert_error(&r, 501, "not_supported");
    let r = send(&server, Method::GET, "/crawls", None).await;
    assert_error(&r, 501, "not_supported");
}
