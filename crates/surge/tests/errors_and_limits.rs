//! Error responses, request ids, auth, load shedding, request timeout,
//! bind safety and configuration precedence. None of this depends on the
//! database backend, so it runs on SQLite.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Resp, Server, ServerBuilder, TempFile, TestDb, assert_error, detail_fields};
use reqwest::Method;
use serde_json::json;

async fn sqlite_server(args: &[&str]) -> Server {
    Server::start(Backend::Sqlite, args).await
}

async fn get_with_token(server: &Server, path: &str, token: Option<&str>) -> Resp {
    let mut rb = server.request(Method::GET, path);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    server.send(rb).await
}

// ---------------------------------------------------------------------------
// Error responses
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_route_is_404_json() {
    let server = sqlite_server(&[]).await;
    for path in ["/nope", "/users/1/friends", "/api", "/api/data/extra"] {
        assert_error(&server.get(path).await, 404, "not_found");
    }
    let resp = server.post_json("/nope", &json!({})).await;
    assert_error(&resp, 404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_method_is_405_json() {
    let server = sqlite_server(&[]).await;
    for (method, path) in [
        (Method::DELETE, "/users"),
        (Method::PUT, "/users/1"),
        (Method::POST, "/api/data"),
        (Method::GET, "/api/process"),
        (Method::POST, "/health"),
    ] {
        let resp = server.send(server.request(method.clone(), path)).await;
        assert_error(&resp, 405, "method_not_allowed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn body_over_max_body_bytes_is_413_json() {
    let server = sqlite_server(&["--max-body-bytes", "1024"]).await;
    let big = json!({"processing_time": 0, "blob": "x".repeat(8 * 1024)}).to_string();
    let resp = server
        .send_raw(
            Method::POST,
            "/api/process",
            Some("application/json"),
            big.clone(),
        )
        .await;
    assert_error(&resp, 413, "payload_too_large");
    let big_user =
        json!({"name": "A", "email": "a@example.com", "pad": "x".repeat(8 * 1024)}).to_string();
    let resp = server
        .send_raw(Method::POST, "/users", Some("application/json"), big_user)
        .await;
    assert_error(&resp, 413, "payload_too_large");

    // Just under the limit is fine.
    let small = json!({"processing_time": 0, "blob": "x".repeat(900)}).to_string();
    assert!(small.len() < 1024);
    let resp = server
        .send_raw(
            Method::POST,
            "/api/process",
            Some("application/json"),
            small,
        )
        .await;
    resp.expect_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_error_response_is_json_with_error_shape_and_code() {
    let token = "shape-token";
    let server = sqlite_server(&["--max-body-bytes", "1024", "--api-token", token]).await;
    let created = server
        .send(
            server
                .request(Method::POST, "/users")
                .bearer_auth(token)
                .json(&json!({"name": "Dup", "email": "dup@example.com"})),
        )
        .await;
    created.expect_status(201);

    // Every request below carries the token except the 401 case.
    let authed = |method: Method, path: &str| server.request(method, path).bearer_auth(token);
    let json_body = |method: Method, path: &str, body: String| {
        authed(method, path)
            .header("content-type", "application/json")
            .body(body)
    };
    let cases = vec![
        (
            "malformed JSON",
            json_body(Method::POST, "/api/process", "{".into()),
            400,
            "bad_request",
        ),
        (
            "missing token",
            server.request(Method::GET, "/users"),
            401,
            "unauthorized",
        ),
        (
            "unknown route",
            authed(Method::GET, "/nope"),
            404,
            "not_found",
        ),
        (
            "unknown user",
            authed(Method::GET, "/users/987654"),
            404,
            "not_found",
        ),
        (
            "wrong method",
            authed(Method::PUT, "/users"),
            405,
            "method_not_allowed",
        ),
        (
            "duplicate email",
            json_body(
                Method::POST,
                "/users",
                json!({"name": "Dup", "email": "DUP@example.com"}).to_string(),
            ),
            409,
            "conflict",
        ),
        (
            "body too large",
            json_body(
                Method::POST,
                "/api/process",
                json!({"pad": "x".repeat(4096)}).to_string(),
            ),
            413,
            "payload_too_large",
        ),
        (
            "no content type",
            authed(Method::POST, "/api/process").body("{}"),
            415,
            "unsupported_media_type",
        ),
        (
            "bad query",
            authed(Method::GET, "/api/data?delay_ms=abc"),
            422,
            "validation_failed",
        ),
        (
            "bad path",
            authed(Method::GET, "/users/abc"),
            422,
            "validation_failed",
        ),
        (
            "bad body",
            json_body(
                Method::POST,
                "/users",
                json!({"name": "", "email": "x"}).to_string(),
            ),
            422,
            "validation_failed",
        ),
    ];
    for (what, request, status, code) in cases {
        let resp = server.send(request).await;
        assert_eq!(
            resp.status.as_u16(),
            status,
            "{what}: expected {status} got {} body {}",
            resp.status,
            resp.text
        );
        let body = assert_error(&resp, status, code);
        if status == 422 {
            assert!(
                !detail_fields(&body).is_empty(),
                "{what}: 422 must name the bad fields: {body}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_id_is_echoed_when_sent_and_generated_otherwise() {
    let server = sqlite_server(&[]).await;
    for (path, status) in [
        ("/health", 200),
        ("/metrics", 200),
        ("/openapi.json", 200),
        ("/docs/", 200),
        ("/api/data?delay_ms=0", 200),
        ("/nope", 404),
        ("/api/data?delay_ms=abc", 422),
        ("/users/987654", 404),
    ] {
        let sent = format!("req-{}", common::unique_suffix());
        let resp = server
            .send(
                server
                    .request(Method::GET, path)
                    .header("x-request-id", &sent),
            )
            .await;
        resp.expect_status(status);
        assert_eq!(
            resp.request_id(),
            sent,
            "x-request-id must be echoed on {path}"
        );

        let resp = server.get(path).await;
        resp.expect_status(status);
        let generated = resp.request_id();
        assert_ne!(generated, sent);
    }
    // Also on a 204 with no body.
    let u = server
        .post_json("/users", &json!({"name": "R", "email": "r@example.com"}))
        .await;
    u.expect_status(201);
    u.request_id();
    let resp = server
        .send(
            server
                .request(Method::DELETE, &format!("/users/{}", u.json()["id"]))
                .header("x-request-id", "delete-me-id"),
        )
        .await;
    resp.expect_status(204);
    assert_eq!(resp.request_id(), "delete-me-id");
}

// ---------------------------------------------------------------------------
// Auth
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_token_guards_users_and_demo_endpoints() {
    let server = sqlite_server(&["--api-token", "s3cret-token"]).await;
    for path in ["/users", "/users/1", "/api/data?delay_ms=0"] {
        let resp = get_with_token(&server, path, None).await;
        assert_error(&resp, 401, "unauthorized");
        let www = resp.header("www-authenticate").unwrap_or_else(|| {
            panic!(
                "401 on {path} must carry WWW-Authenticate: {:?}",
                resp.headers
            )
        });
        assert!(
            www.starts_with("Bearer"),
            "WWW-Authenticate should be Bearer, got {www:?}"
        );

        let resp = get_with_token(&server, path, Some("wrong-token")).await;
        assert_error(&resp, 401, "unauthorized");
        assert!(resp.header("www-authenticate").is_some());

        // Token prefix or different scheme is wrong too.
        let resp = get_with_token(&server, path, Some("s3cret")).await;
        assert_error(&resp, 401, "unauthorized");
        let resp = server
            .send(
                server
                    .request(Method::GET, path)
                    .header("authorization", "Basic czNjcmV0LXRva2Vu"),
            )
            .await;
        assert_error(&resp, 401, "unauthorized");
    }
    get_with_token(&server, "/users", Some("s3cret-token"))
        .await
        .expect_status(200);
    get_with_token(&server, "/users/987654", Some("s3cret-token"))
        .await
        .expect_status(404);
    get_with_token(&server, "/api/data?delay_ms=0", Some("s3cret-token"))
        .await
        .expect_status(200);
    let resp = server
        .send(
            server
                .request(Method::POST, "/users")
                .bearer_auth("s3cret-token")
                .json(&json!({"name": "Authed", "email": "authed@example.com"})),
        )
        .await;
    resp.expect_status(201);
    let resp = server
        .send(
            server
                .request(Method::POST, "/users")
                .json(&json!({"name": "Anon", "email": "anon@example.com"})),
        )
        .await;
    assert_error(&resp, 401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_metrics_docs_and_openapi_are_open_without_token() {
    let server = sqlite_server(&["--api-token", "s3cret-token"]).await;
    for path in ["/health", "/metrics", "/openapi.json", "/docs"] {
        // reqwest follows /docs → /docs/ redirects.
        let resp = get_with_token(&server, path, None).await;
        resp.expect_status(200);
    }
    // The Swagger UI assets under /docs are open too.
    let page = server
        .client
        .get(server.url("/docs"))
        .send()
        .await
        .expect("GET /docs");
    let page_url = page.url().clone();
    let html = Resp::read(page).await.text;
    let mut assets = 0;
    for piece in html.split("src=\"").skip(1) {
        let reference = piece.split('"').next().unwrap_or("");
        let url = page_url.join(reference).expect("asset url");
        let resp = Resp::read(server.client.get(url.clone()).send().await.unwrap()).await;
        assert_eq!(
            resp.status.as_u16(),
            200,
            "{url} should be open without a token"
        );
        assets += 1;
    }
    assert!(assets > 0, "the /docs page should load scripts:\n{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_token_from_surge_api_token_env_var_takes_effect() {
    let server = ServerBuilder::new(Backend::Sqlite)
        .env("SURGE_API_TOKEN", "env-token")
        .start()
        .await;
    assert_error(
        &get_with_token(&server, "/users", None).await,
        401,
        "unauthorized",
    );
    assert_token_refused_then_accepted(&server, "other", "env-token").await;
}

// ---------------------------------------------------------------------------
// Overload and timeout
// ---------------------------------------------------------------------------

/// Fire `n` concurrent `GET path` and return their responses.
async fn burst(server: &Server, n: usize, path: &str, token: Option<&str>) -> Vec<Resp> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let mut rb = server.client.get(server.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        tasks.push(tokio::spawn(async move {
            Resp::read(rb.send().await.expect("burst request")).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("burst task"));
    }
    out
}

#[track_caller]
fn assert_some_shed_and_some_served(resps: &[Resp]) {
    let ok = resps.iter().filter(|r| r.status.as_u16() == 200).count();
    let shed: Vec<_> = resps.iter().filter(|r| r.status.as_u16() == 503).collect();
    let statuses: Vec<u16> = resps.iter().map(|r| r.status.as_u16()).collect();
    assert!(
        ok >= 1,
        "at least one request should be served: {statuses:?}"
    );
    assert!(
        !shed.is_empty(),
        "at least one request should be shed with 503: {statuses:?}"
    );
    for r in &shed {
        assert_error(r, 503, "overloaded");
        let retry = r.header("retry-after").unwrap_or("");
        assert!(
            !retry.trim().is_empty(),
            "503 overloaded must carry Retry-After: {:?}",
            r.headers
        );
    }
    for r in resps {
        assert!(
            matches!(r.status.as_u16(), 200 | 503),
            "only 200 or 503 expected under overload, got {} {}",
            r.status,
            r.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_beyond_max_in_flight_is_shed_with_503_and_retry_after() {
    let server = sqlite_server(&["--max-in-flight", "2"]).await;
    let (resps, ()) = tokio::join!(burst(&server, 12, "/api/data?delay_ms=1500", None), async {
        // While saturated, /health and /metrics are never shed.
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.get("/health").await.expect_status(200);
        server.get("/metrics").await.expect_status(200);
    });
    assert_some_shed_and_some_served(&resps);

    // Afterwards the server serves normally again.
    let resp = server.get("/api/data?delay_ms=0").await;
    resp.expect_status(200);

    let metrics = server.get("/metrics").await.text;
    let shed_total: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("surge_http_requests_shed_total"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    let shed = resps.iter().filter(|r| r.status.as_u16() == 503).count() as f64;
    assert!(
        shed_total >= shed,
        "surge_http_requests_shed_total ({shed_total}) should count the {shed} shed requests:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_exceeding_request_timeout_gets_503_timeout() {
    let server = sqlite_server(&["--request-timeout", "0.5"]).await;
    let started = Instant::now();
    let resp = server.get("/api/data?delay_ms=3000").await;
    let elapsed = started.elapsed();
    assert_error(&resp, 503, "timeout");
    assert!(
        elapsed >= Duration::from_millis(500),
        "timed out after {elapsed:?}, before the 0.5 s timeout"
    );
    // Requests within the timeout still succeed.
    server.get("/api/data?delay_ms=0").await.expect_status(200);
}

// ---------------------------------------------------------------------------
// Bind safety
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn non_loopback_bind_without_token_is_refused_with_exit_code_2() {
    let (status, stderr) = ServerBuilder::new(Backend::Sqlite)
        .bind("0.0.0.0:0")
        .start_expecting_exit()
        .await;
    assert!(!status.success(), "must exit non-zero, got {status:?}");
    assert_eq!(
        status.code(),
        Some(2),
        "contract: exit code 2; stderr:\n{stderr}"
    );
    assert!(
        !stderr.trim().is_empty(),
        "the refusal must be explained on stderr"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn non_loopback_bind_with_allow_unauthenticated_starts() {
    let server = ServerBuilder::new(Backend::Sqlite)
        .bind("0.0.0.0:0")
        .arg("--allow-unauthenticated")
        .start()
        .await;
    assert!(
        server.listening_addr.starts_with("0.0.0.0:"),
        "listening line should show the bound address, got {}",
        server.listening_addr
    );
    server.get("/health").await.expect_status(200);
    server.get("/users").await.expect_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn non_loopback_bind_with_token_starts() {
    let server = ServerBuilder::new(Backend::Sqlite)
        .bind("0.0.0.0:0")
        .args(["--api-token", "bind-token"])
        .start()
        .await;
    server.get("/health").await.expect_status(200);
    assert_error(&server.get("/users").await, 401, "unauthorized");
}

// ---------------------------------------------------------------------------
// Configuration precedence: flag > env > config file > default
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn config_file_sets_max_in_flight_and_api_token() {
    let file = TempFile::new(
        "surge.toml",
        "max_in_flight = 1\napi_token = \"file-token\"\n",
    );
    let server = sqlite_server(&["--config", file.path_str()]).await;
    assert_error(
        &get_with_token(&server, "/users", None).await,
        401,
        "unauthorized",
    );
    get_with_token(&server, "/users", Some("file-token"))
        .await
        .expect_status(200);
    let resps = burst(&server, 6, "/api/data?delay_ms=1500", Some("file-token")).await;
    assert_some_shed_and_some_served(&resps);
}

/// `/users` answers 401 `unauthorized` with `refused` and 200 with `accepted`.
async fn assert_token_refused_then_accepted(server: &Server, refused: &str, accepted: &str) {
    assert_error(
        &get_with_token(server, "/users", Some(refused)).await,
        401,
        "unauthorized",
    );
    get_with_token(server, "/users", Some(accepted))
        .await
        .expect_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_token_flag_overrides_config_file() {
    let file = TempFile::new("surge.toml", "api_token = \"file-token\"\n");
    let server = sqlite_server(&["--config", file.path_str(), "--api-token", "flag-token"]).await;
    assert_token_refused_then_accepted(&server, "file-token", "flag-token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn env_overrides_config_file_and_flag_overrides_env() {
    let file = TempFile::new("surge.toml", "api_token = \"file-token\"\n");
    let server = ServerBuilder::new(Backend::Sqlite)
        .args(["--config", file.path_str()])
        .env("SURGE_API_TOKEN", "env-token")
        .start()
        .await;
    assert_token_refused_then_accepted(&server, "file-token", "env-token").await;
    drop(server);

    let server = ServerBuilder::new(Backend::Sqlite)
        .args(["--api-token", "flag-token"])
        .env("SURGE_API_TOKEN", "env-token")
        .start()
        .await;
    assert_token_refused_then_accepted(&server, "env-token", "flag-token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn config_file_named_by_surge_config_sets_bind_and_database_url() {
    let db = TestDb::new(Backend::Sqlite).await;
    let file = TempFile::new(
        "surge.toml",
        &format!(
            "bind = \"127.0.0.1:0\"\ndatabase_url = \"{}\"\nmax_body_bytes = 512\n",
            db.url
        ),
    );
    let sqlite_path = db.sqlite_path.clone().unwrap();
    let server = ServerBuilder::new(Backend::Sqlite)
        .db(db)
        .without_bind_flag()
        .without_database_url_flag()
        .env("SURGE_CONFIG", file.path_str())
        .start()
        .await;
    assert!(server.listening_addr.starts_with("127.0.0.1:"));
    server
        .post_json(
            "/users",
            &json!({"name": "Cfg", "email": "cfg@example.com"}),
        )
        .await
        .expect_status(201);
    assert!(
        sqlite_path.exists(),
        "the database_url from the config file should be used ({})",
        sqlite_path.display()
    );
    let resp = server
        .send_raw(
            Method::POST,
            "/api/process",
            Some("application/json"),
            json!({"pad": "x".repeat(2048)}).to_string(),
        )
        .await;
    assert_error(&resp, 413, "payload_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn surge_bind_and_database_url_env_vars_take_effect() {
    let db = TestDb::new(Backend::Sqlite).await;
    let url = db.url.clone();
    let sqlite_path = db.sqlite_path.clone().unwrap();
    let server = ServerBuilder::new(Backend::Sqlite)
        .db(db)
        .without_bind_flag()
        .without_database_url_flag()
        .env("SURGE_BIND", "127.0.0.1:0")
        .env("SURGE_DATABASE_URL", url)
        .env("SURGE_MAX_IN_FLIGHT", "1")
        .start()
        .await;
    server
        .post_json(
            "/users",
            &json!({"name": "Env", "email": "env@example.com"}),
        )
        .await
        .expect_status(201);
    assert!(sqlite_path.exists());
    let resps = burst(&server, 6, "/api/data?delay_ms=1500", None).await;
    assert_some_shed_and_some_served(&resps);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn surge_env_vars_set_timeout_body_limit_and_allow_unauthenticated() {
    let server = ServerBuilder::new(Backend::Sqlite)
        .bind("0.0.0.0:0")
        .env("SURGE_ALLOW_UNAUTHENTICATED", "true")
        .env("SURGE_REQUEST_TIMEOUT", "0.5")
        .env("SURGE_MAX_BODY_BYTES", "1024")
        .start()
        .await;
    assert_error(&server.get("/api/data?delay_ms=3000").await, 503, "timeout");
    let resp = server
        .send_raw(
            Method::POST,
            "/api/process",
            Some("application/json"),
            json!({"pad": "x".repeat(4096)}).to_string(),
        )
        .await;
    assert_error(&resp, 413, "payload_too_large");
}

// ---------------------------------------------------------------------------
// Process output: stdout has the listening line only, logs go to stderr
// ---------------------------------------------------------------------------

/// Stops the server with SIGTERM, asserts it exits 0, and lets the reader
/// threads drain its pipes so `stderr()` is complete.
async fn stop_gracefully(server: &mut Server) {
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("server exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Make a few requests, stop the server with SIGTERM and return it exited.
async fn exercise_and_stop(mut server: Server) -> Server {
    server.get("/health").await.expect_status(200);
    server.get("/nope").await.expect_status(404);
    server
        .post_json(
            "/users",
            &json!({"name": "Log", "email": "log@example.com"}),
        )
        .await
        .expect_status(201);
    stop_gracefully(&mut server).await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stdout_carries_only_the_listening_line() {
    let server = exercise_and_stop(sqlite_server(&[]).await).await;
    assert_eq!(
        server.stdout_after_listening(),
        Vec::<String>::new(),
        "stdout must carry exactly one line (logs go to stderr)"
    );
}

fn json_log_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| {
                panic!("--log-format json: stderr line is not JSON ({e}): {l:?}")
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn log_format_json_writes_one_json_object_per_stderr_line() {
    let server = exercise_and_stop(sqlite_server(&["--log-format", "json"]).await).await;
    let lines = json_log_lines(&server.stderr());
    assert!(
        !lines.is_empty(),
        "at the default info level a start and a stop should be logged"
    );
    for l in &lines {
        assert!(l.is_object(), "each log line is a JSON object: {l}");
    }
    assert_eq!(server.stdout_after_listening(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn log_level_warn_drops_info_lines() {
    let server =
        exercise_and_stop(sqlite_server(&["--log-format", "json", "--log-level", "warn"]).await)
            .await;
    for l in json_log_lines(&server.stderr()) {
        let level = l["level"].as_str().unwrap_or("").to_ascii_uppercase();
        assert!(
            level == "WARN" || level == "ERROR",
            "--log-level warn must drop lines below warn: {l}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn responses_are_compressed_only_for_clients_that_accept_it() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let plain = server
        .request(Method::GET, "/openapi.json")
        .send()
        .await
        .expect("plain request");
    assert_eq!(plain.status(), 200);
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.expect("plain body");
    serde_json::from_slice::<serde_json::Value>(&plain).expect("uncompressed body is JSON");

    let gz = server
        .request(Method::GET, "/openapi.json")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("gzip request");
    assert_eq!(gz.status(), 200);
    assert_eq!(
        gz.headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    let gz = gz.bytes().await.expect("gzip body");
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic number");
    assert!(
        gz.len() < plain.len(),
        "compressed {} bytes, plain {} bytes",
        gz.len(),
        plain.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_token_never_reaches_the_logs_even_at_trace_level() {
    const TOKEN: &str = "tok-5e1f-never-logged";
    let mut server = Server::start(
        Backend::Sqlite,
        &["--api-token", TOKEN, "--log-level", "trace"],
    )
    .await;
    let authed = server
        .request(Method::GET, "/users")
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("authorised request");
    assert_eq!(authed.status(), 200);
    let denied = server
        .request(Method::GET, "/users")
        .bearer_auth(format!("{TOKEN}-wrong"))
        .send()
        .await
        .expect("denied request");
    assert_eq!(denied.status(), 401);
    stop_gracefully(&mut server).await;
    let stderr = server.stderr();
    assert!(
        stderr.contains("request"),
        "trace level logs the requests, so this test looks at real log lines"
    );
    assert!(
        !stderr.contains(TOKEN),
        "the token appears in the logs:\n{}",
        common::tail(&stderr, 4000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_error_is_logged_with_its_request_id_at_the_default_level() {
    let mut server = Server::start(
        Backend::Sqlite,
        &["--log-format", "json", "--request-timeout", "0.3"],
    )
    .await;
    let resp = server
        .send(
            server
                .request(Method::GET, "/api/data?delay_ms=3000")
                .header("x-request-id", "trace-me-5xx"),
        )
        .await;
    resp.expect_status(503);
    assert_eq!(resp.header("x-request-id"), Some("trace-me-5xx"));
    stop_gracefully(&mut server).await;
    let lines = json_log_lines(&server.stderr());
    let failed: Vec<_> = lines
        .iter()
        .filter(|l| l["request_id"] == "trace-me-5xx")
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "one log line for the failed request: {lines:?}"
    );
    assert_eq!(failed[0]["level"], "WARN");
    assert_eq!(failed[0]["status"], 503);
    assert_eq!(failed[0]["route"], "/api/data");
}
