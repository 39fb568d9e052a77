//! The dashboard at `/` in a real headless Chromium, against the real
//! `surge serve`: it loads with no console error and nothing from outside
//! 127.0.0.1, its numbers follow the tasks that run, its Retry and Cancel
//! buttons and submit form act on the backend (checked through the API),
//! actions need the token when one is set, and it draws something on a
//! desktop and a phone screen.
//!
//! Without Chromium these tests print `SKIP browser: …` and pass (unless
//! `SURGE_REQUIRE_BACKENDS` names `browser`).

mod common;

use std::time::Duration;

use common::{Backend, Server, ServerBuilder, eventually};
use fantoccini::Locator;
use serde_json::{Value, json};
use surge_testkit::browser::{Browser, screenshot_stats};

const WAIT: Duration = Duration::from_secs(60);

/// Opens the dashboard of `server` and waits for its first `/stats`.
async fn open(browser: &Browser, server: &Server) {
    browser.open(&server.url("/")).await;
    browser
        .wait_until(
            "return Number(document.body.dataset.refreshes || 0) >= 1;",
            WAIT,
        )
        .await;
}

/// The text of the first element matching `selector` (None if absent).
async fn text(browser: &Browser, selector: &str) -> Option<String> {
    let v = browser
        .eval(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            vec![json!(selector)],
        )
        .await;
    v.as_str().map(str::to_owned)
}

/// Waits until the element matching `selector` shows `want`.
async fn wait_text(browser: &Browser, selector: &str, want: &str) {
    let script = format!(
        "const e = document.querySelector({}); return !!e && e.textContent.trim() === {};",
        json!(selector),
        json!(want)
    );
    browser.wait_until(&script, WAIT).await;
}

/// Waits until the element matching `selector` exists.
async fn wait_for(browser: &Browser, selector: &str) {
    let script = format!(
        "return document.querySelector({}) !== null;",
        json!(selector)
    );
    browser.wait_until(&script, WAIT).await;
}

/// A real click (WebDriver: scrolled into view, hit-tested).
async fn click(browser: &Browser, selector: &str) {
    browser
        .client()
        .find(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("find {selector}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {selector}: {e}"));
}

/// Types `keys` into the field matching `selector` after clearing it.
async fn type_into(browser: &Browser, selector: &str, keys: &str) {
    let field = browser
        .client()
        .find(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("find {selector}: {e}"));
    field.clear().await.expect("clear");
    field.send_keys(keys).await.expect("type");
}

/// No console error, and nothing loaded from anywhere but the server.
async fn assert_clean(browser: &Browser, server: &Server) {
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let host = server.base.trim_start_matches("http://");
    let hosts = browser.resource_hosts().await;
    assert_eq!(hosts, vec![host.to_owned()], "every resource from {host}");
}

/// The screenshot shows a drawn page, not a blank one. With
/// `SURGE_TEST_SCREENSHOTS=DIR` it is also written to `DIR/NAME.png`, to
/// look at.
async fn assert_drawn(browser: &Browser, name: &str) -> surge_testkit::browser::ScreenshotStats {
    let png = browser.client().screenshot().await.expect("screenshot");
    if let Some(dir) = std::env::var_os("SURGE_TEST_SCREENSHOTS") {
        let path = std::path::Path::new(&dir).join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    let stats = screenshot_stats(&png);
    assert!(
        stats.colors > 8 && stats.non_background > 0.02,
        "a blank-looking screenshot: {stats:?}"
    );
    stats
}

async fn submit(server: &Server, body: Value) -> String {
    let resp = server.post_json("/tasks", &body).await;
    resp.expect_status(201);
    resp.json()["task"]["id"]
        .as_str()
        .expect("task id")
        .to_owned()
}

async fn task_state(server: &Server, id: &str, token: Option<&str>) -> String {
    let mut rb = server.request(reqwest::Method::GET, &format!("/tasks/{id}"));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let resp = server.send(rb).await;
    resp.expect_status(200);
    resp.json()["state"].as_str().expect("state").to_owned()
}

async fn wait_state(server: &Server, id: &str, want: &str, token: Option<&str>) {
    eventually(WAIT, &format!("task {id} {want}"), || async {
        let state = task_state(server, id, token).await;
        if state == want { Ok(()) } else { Err(state) }
    })
    .await;
}

/// Without a browser too: the page and everything it references come from
/// the binary, under a policy that allows this origin only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_and_its_assets_are_served_from_the_binary() {
    let server = Server::start(Backend::Sqlite, &["--workers", "0", "--api-token", "t"]).await;
    let page = server.get("/").await;
    page.expect_status(200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let policy = page.header("content-security-policy").expect("a CSP");
    assert!(policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"));
    // Every src/href is a path on this server (or the empty `data:,` icon).
    let mut refs = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for (at, _) in page.text.match_indices(attr) {
            let rest = &page.text[at + attr.len()..];
            refs.push(rest[..rest.find('"').expect("closing quote")].to_owned());
        }
    }
    let assets: Vec<_> = refs
        .iter()
        .filter(|r| r.starts_with("/dashboard/"))
        .collect();
    assert_eq!(assets.len(), 2, "a script and a style sheet: {refs:?}");
    for r in &refs {
        assert!(
            r.starts_with('/') || r == "data:,",
            "{r} is not on this server"
        );
    }
    for (asset, kind) in [
        ("/dashboard/dashboard.js", "text/javascript"),
        ("/dashboard/dashboard.css", "text/css"),
    ] {
        // Open with a token configured, like the page itself.
        let resp = server.get(asset).await;
        resp.expect_status(200);
        assert!(
            resp.header("content-type")
                .is_some_and(|c| c.starts_with(kind)),
            "{asset}: {:?}",
            resp.header("content-type")
        );
        // No URL elsewhere (the SVG namespace name is not fetched).
        let text = resp.text.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{asset}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn numbers_follow_the_tasks_that_run_and_the_page_stays_local() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let server = Server::start(Backend::Sqlite, &["--workers", "2"]).await;
    open(&browser, &server).await;
    assert_clean(&browser, &server).await;
    assert_eq!(
        text(&browser, "[data-stat='states.succeeded']")
            .await
            .as_deref(),
        Some("0")
    );
    let requests_before = text(&browser, "[data-stat='requests_total']")
        .await
        .expect("requests figure");

    const N: usize = 4;
    for i in 0..N {
        submit(&server, json!({"kind": "noop", "args": i})).await;
    }
    let failing = submit(
        &server,
        json!({"kind": "fail", "args": {"category": "validation", "message": "no such thing"}}),
    )
    .await;
    wait_text(&browser, "[data-stat='states.succeeded']", &N.to_string()).await;
    wait_text(
        &browser,
        "[data-stat='kinds.noop.succeeded']",
        &N.to_string(),
    )
    .await;
    wait_text(&browser, "[data-stat='states.failed']", "1").await;
    // The failure is listed with its error and attempts.
    let row = format!("#failures-table tr[data-task-id='{failing}']");
    wait_for(&browser, &row).await;
    let listed = text(&browser, &row).await.expect("row");
    assert!(listed.contains("validation: no such thing"), "{listed}");
    assert!(listed.contains("1 of 4"), "attempts: {listed}");
    assert_ne!(
        text(&browser, "[data-stat='requests_total']")
            .await
            .as_deref(),
        Some(requests_before.as_str()),
        "the request count moves"
    );
    // The worker is listed with a live lease; the charts fill in.
    wait_for(&browser, "#workers-table tr[data-worker-id]").await;
    let worker = text(&browser, "#workers-table tr[data-worker-id]")
        .await
        .expect("worker row");
    assert!(worker.contains("valid,"), "lease: {worker}");
    browser
        .wait_until(
            "return document.querySelectorAll(\"figure.chart[data-chart='tasks'] path\").length > 0;",
            WAIT,
        )
        .await;
    // The server's inbound limit is among the limiters.
    let limiters = text(&browser, "#limiters-table tbody")
        .await
        .unwrap_or_default();
    assert!(
        limiters.contains("http.inbound") && limiters.contains("static"),
        "{limiters}"
    );
    assert_clean(&browser, &server).await;
    assert_drawn(&browser, "desktop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fits_a_phone_screen() {
    let Some(browser) = Browser::launch_with_size(390, 844).await else {
        return;
    };
    let server = Server::start(Backend::Sqlite, &["--workers", "1"]).await;
    submit(&server, json!({"kind": "noop"})).await;
    open(&browser, &server).await;
    wait_for(&browser, "#workers-table tr[data-worker-id]").await;
    // No sideways scrolling of the page: wide tables scroll inside.
    let overflow = browser
        .eval(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await;
    let (page, viewport) = (overflow[0].as_f64(), overflow[1].as_f64());
    assert!(
        page.zip(viewport).is_some_and(|(p, v)| p <= v + 1.0),
        "page wider than the screen: {overflow}"
    );
    assert_clean(&browser, &server).await;
    assert_eq!(
        overflow,
        json!([390, 390]),
        "the page is as wide as the phone"
    );
    let shot = assert_drawn(&browser, "phone").await;
    assert_eq!((shot.width, shot.height), (390, 844), "{shot:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_and_cancel_buttons_change_the_task_in_the_backend() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    // A server with workers makes a dead task, then stops; a second one on
    // the same database runs no worker, so what the buttons do stays put.
    let mut producer = Server::start(Backend::Sqlite, &["--workers", "2"]).await;
    let dead = submit(
        &producer,
        json!({"kind": "fail", "args": {"category": "system", "message": "disk on fire"},
               "max_retries": 0}),
    )
    .await;
    wait_state(&producer, &dead, "dead", None).await;
    producer.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        producer.wait_exit(WAIT).await.is_some(),
        "the producer stops"
    );
    let server = ServerBuilder::new(Backend::Sqlite)
        .database_url(producer.db().url.clone())
        .args(["--workers", "0"])
        .start()
        .await;
    let waiting = submit(&server, json!({"kind": "noop", "countdown": 600})).await;

    open(&browser, &server).await;
    let retry = format!("#failures-table tr[data-task-id='{dead}'] button[data-action='retry']");
    wait_for(&browser, &retry).await;
    click(&browser, &retry).await;
    wait_state(&server, &dead, "pending", None).await;
    browser
        .wait_until(
            "const r = document.getElementById('action-result'); return !r.hidden && r.textContent.includes('requeued');",
            WAIT,
        )
        .await;

    let cancel = format!("#active-table tr[data-task-id='{waiting}'] button[data-action='cancel']");
    wait_for(&browser, &cancel).await;
    click(&browser, &cancel).await;
    wait_state(&server, &waiting, "cancelled", None).await;
    // The retried task is pending now, listed among the active ones.
    let cancel_retried =
        format!("#active-table tr[data-task-id='{dead}'] button[data-action='cancel']");
    wait_for(&browser, &cancel_retried).await;
    assert_clean(&browser, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_submit_form_creates_a_task() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let server = Server::start(Backend::Sqlite, &["--workers", "0"]).await;
    open(&browser, &server).await;
    wait_for(&browser, "#submit-kind option[value='sleep']").await;

    // Bad JSON is caught in the page: nothing is sent.
    type_into(&browser, "#submit-args", "{not json").await;
    click(&browser, "#submit-button").await;
    browser
        .wait_until(
            "const r = document.getElementById('action-result'); return r.dataset.outcome === 'error' && r.textContent.includes('not valid JSON');",
            WAIT,
        )
        .await;

    browser
        .client()
        .find(Locator::Css("#submit-kind"))
        .await
        .expect("kind select")
        .select_by_value("sleep")
        .await
        .expect("choose sleep");
    type_into(&browser, "#submit-args", r#"{"ms": 5}"#).await;
    type_into(&browser, "#submit-queue", "emails").await;
    type_into(&browser, "#submit-countdown", "600").await;
    click(&browser, "#submit-button").await;
    browser
        .wait_until("return !!document.body.dataset.lastSubmitted;", WAIT)
        .await;
    let id = browser
        .eval("return document.body.dataset.lastSubmitted;", vec![])
        .await;
    let id = id.as_str().expect("submitted id");
    let task = server.get(&format!("/tasks/{id}")).await;
    task.expect_status(200);
    let task = task.json();
    assert_eq!(task["kind"], json!("sleep"));
    assert_eq!(task["args"], json!({"ms": 5}));
    assert_eq!(task["queue"], json!("emails"));
    assert_eq!(task["state"], json!("scheduled"));
    let all = server.get("/tasks").await.json();
    assert_eq!(
        all["items"].as_array().map(Vec::len),
        Some(1),
        "only the good one"
    );
    // And the page lists it.
    wait_for(&browser, &format!("#active-table tr[data-task-id='{id}']")).await;
    assert_clean(&browser, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn actions_need_the_token_when_one_is_set() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    const TOKEN: &str = "s3cret-dashboard";
    let server = Server::start(Backend::Sqlite, &["--workers", "0", "--api-token", TOKEN]).await;
    open(&browser, &server).await;
    wait_for(&browser, "#token-form:not([hidden])").await;
    let hidden = text(&browser, "#active-table tbody")
        .await
        .unwrap_or_default();
    assert!(hidden.contains("enter the API token"), "{hidden}");

    // Without the token: refused, nothing stored.
    click(&browser, "#submit-button").await;
    browser
        .wait_until(
            "const r = document.getElementById('action-result'); return r.dataset.outcome === 'error' && r.textContent.includes('401 unauthorized');",
            WAIT,
        )
        .await;
    let tasks = |token: &'static str| {
        let server = &server;
        async move {
            let resp = server
                .send(
                    server
                        .request(reqwest::Method::GET, "/tasks")
                        .bearer_auth(token),
                )
                .await;
            resp.expect_status(200);
            resp.json()["items"].as_array().map_or(0, Vec::len)
        }
    };
    assert_eq!(tasks(TOKEN).await, 0);

    // With it: the lists show, and the same click creates the task.
    type_into(&browser, "#token-input", TOKEN).await;
    click(&browser, "#token-use").await;
    browser
        .wait_until(
            "return !document.querySelector('#active-table tbody').textContent.includes('enter the API token');",
            WAIT,
        )
        .await;
    click(&browser, "#submit-button").await;
    browser
        .wait_until("return !!document.body.dataset.lastSubmitted;", WAIT)
        .await;
    assert_eq!(tasks(TOKEN).await, 1);
    let id = browser
        .eval("return document.body.dataset.lastSubmitted;", vec![])
        .await;
    let id = id.as_str().expect("id").to_owned();
    let cancel = format!("#active-table tr[data-task-id='{id}'] button[data-action='cancel']");
    wait_for(&browser, &cancel).await;
    click(&browser, &cancel).await;
    wait_state(&server, &id, "cancelled", Some(TOKEN)).await;
    assert_clean(&browser, &server).await;
}
