//! `GET /health`, `GET /metrics`, `GET /openapi.json`, `GET /docs`.

mod common;

use common::{Backend, Resp, Server, backend_tests};

backend_tests! {
    health_reports_ok_version_uptime_and_database_up => health_reports_ok_version_uptime_and_database_up_sqlite, health_reports_ok_version_uptime_and_database_up_postgres;
    health_requests_total_and_uptime_grow => health_requests_total_and_uptime_grow_sqlite, health_requests_total_and_uptime_grow_postgres;
    metrics_exposes_every_contract_metric => metrics_exposes_every_contract_metric_sqlite, metrics_exposes_every_contract_metric_postgres;
    metrics_counts_request_under_route_template_label => metrics_counts_request_under_route_template_label_sqlite, metrics_counts_request_under_route_template_label_postgres;
    db_pool_size_flag_sets_pool_max_metric => db_pool_size_flag_sets_pool_max_metric_sqlite, db_pool_size_flag_sets_pool_max_metric_postgres;
}

async fn health_reports_ok_version_uptime_and_database_up(b: Backend) {
    let server = Server::start(b, &[]).await;
    let resp = server.get("/health").await;
    resp.expect_status(200);
    resp.assert_json_content_type();
    resp.request_id();
    let body = resp.json();
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"), "{body}");
    let uptime = body["uptime_seconds"]
        .as_f64()
        .unwrap_or_else(|| panic!("uptime_seconds must be a number: {body}"));
    assert!(uptime >= 0.0, "{body}");
    assert!(
        body["requests_total"].is_u64(),
        "requests_total must be a non-negative integer: {body}"
    );
    let db = &body["checks"]["database"];
    assert_eq!(db["status"], "up", "{body}");
    let latency = db["latency_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("checks.database.latency_ms must be a number: {body}"));
    assert!(latency >= 0.0, "{body}");
    assert!(
        body.get("error").is_none(),
        "a healthy /health has no error object: {body}"
    );
}

async fn health_requests_total_and_uptime_grow(b: Backend) {
    let server = Server::start(b, &[]).await;
    let before = server.get("/health").await.json()["requests_total"]
        .as_u64()
        .expect("requests_total");
    for _ in 0..3 {
        server.get("/api/data?delay_ms=0").await.expect_status(200);
    }
    let after = server.get("/health").await.json()["requests_total"]
        .as_u64()
        .expect("requests_total");
    assert!(
        after >= before + 3,
        "requests_total should grow by at least the 3 requests made: before {before}, after {after}"
    );

    let uptime_1 = server.get("/health").await.json()["uptime_seconds"]
        .as_f64()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let uptime_2 = server.get("/health").await.json()["uptime_seconds"]
        .as_f64()
        .unwrap();
    assert!(
        uptime_2 > uptime_1,
        "uptime_seconds should grow: {uptime_1} then {uptime_2}"
    );
}

/// One sample line of the Prometheus text: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => continue,
        };
        let mut labels = Vec::new();
        let value_part = if let Some(inner) = rest.strip_prefix('{') {
            // Parse k="v" pairs up to the closing brace (values may hold
            // escaped quotes and braces, e.g. route="/users/{id}").
            let bytes = inner.as_bytes();
            let mut i = 0;
            loop {
                while i < bytes.len() && (bytes[i] == b',' || bytes[i] == b' ') {
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] == b'}' {
                    i += 1;
                    break;
                }
                let key_start = i;
                while i < bytes.len() && bytes[i] != b'=' {
                    i += 1;
                }
                let key = inner[key_start..i].trim().to_string();
                i += 2; // ="
                let mut val = String::new();
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' && i + 1 < bytes.len() {
                        i += 1;
                        val.push(match bytes[i] {
                            b'n' => '\n',
                            c => c as char,
                        });
                    } else {
                        // Copy one UTF-8 char.
                        let ch = inner[i..].chars().next().unwrap();
                        val.push(ch);
                        i += ch.len_utf8() - 1;
                    }
                    i += 1;
                }
                i += 1; // closing quote
                labels.push((key, val));
            }
            inner.get(i..).unwrap_or("")
        } else {
            rest
        };
        let value = value_part
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok());
        if let Some(value) = value {
            out.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
    }
    out
}

async fn metrics_text(server: &Server) -> String {
    let resp = server.get("/metrics").await;
    resp.expect_status(200);
    let ct = resp.header("content-type").unwrap_or("").to_string();
    assert!(
        ct.starts_with("text/plain") || ct.starts_with("application/openmetrics-text"),
        "/metrics content type should be Prometheus/OpenMetrics text, got {ct:?}"
    );
    resp.text
}

async fn metrics_exposes_every_contract_metric(b: Backend) {
    let server = Server::start(b, &[]).await;
    // Make sure the labelled families have samples, and the pool was used.
    server.get("/api/data?delay_ms=0").await.expect_status(200);
    server.get("/users").await.expect_status(200);
    let text = metrics_text(&server).await;
    let samples = parse_samples(&text);
    let has = |name: &str| samples.iter().any(|s| s.name == name);
    for name in [
        "surge_http_requests_total",
        "surge_http_requests_in_flight",
        "surge_http_requests_shed_total",
        "surge_db_pool_size",
        "surge_db_pool_idle",
        "surge_db_pool_waiting",
        "surge_db_pool_max",
        "surge_http_request_duration_seconds_bucket",
        "surge_http_request_duration_seconds_sum",
        "surge_http_request_duration_seconds_count",
    ] {
        assert!(has(name), "/metrics has no sample named {name}:\n{text}");
    }
    for s in samples.iter().filter(|s| {
        s.name == "surge_http_requests_total"
            || s.name.starts_with("surge_http_request_duration_seconds")
    }) {
        for label in ["method", "route", "status"] {
            assert!(
                s.label(label).is_some(),
                "{} sample lacks label {label}: {s:?}",
                s.name
            );
        }
    }
    let max = samples
        .iter()
        .find(|s| s.name == "surge_db_pool_max")
        .unwrap()
        .value;
    assert_eq!(
        max, 16.0,
        "surge_db_pool_max should be the default --db-pool-size 16"
    );
}

fn requests_total_for(text: &str, method: &str, route: &str, status: &str) -> f64 {
    parse_samples(text)
        .iter()
        .filter(|s| s.name == "surge_http_requests_total")
        .filter(|s| {
            s.label("method") == Some(method)
                && s.label("route") == Some(route)
                && s.label("status") == Some(status)
        })
        .map(|s| s.value)
        .sum()
}

async fn metrics_counts_request_under_route_template_label(b: Backend) {
    let server = Server::start(b, &[]).await;
    server.get("/users/987654").await.expect_status(404);
    let text_1 = metrics_text(&server).await;
    let first = requests_total_for(&text_1, "GET", "/users/{id}", "404");
    assert!(
        first >= 1.0,
        "expected surge_http_requests_total{{method=\"GET\",route=\"/users/{{id}}\",status=\"404\"}} >= 1:\n{text_1}"
    );
    assert!(
        !text_1.contains("route=\"/users/987654\""),
        "the route label must be the template, not the raw path:\n{text_1}"
    );
    let histogram_count: f64 = parse_samples(&text_1)
        .iter()
        .filter(|s| s.name == "surge_http_request_duration_seconds_count")
        .filter(|s| {
            s.label("method") == Some("GET")
                && s.label("route") == Some("/users/{id}")
                && s.label("status") == Some("404")
        })
        .map(|s| s.value)
        .sum();
    assert!(
        histogram_count >= 1.0,
        "duration histogram should count the request with the same labels:\n{text_1}"
    );

    server.get("/users/987655").await.expect_status(404);
    let text_2 = metrics_text(&server).await;
    let second = requests_total_for(&text_2, "GET", "/users/{id}", "404");
    assert!(
        second >= first + 1.0,
        "counter should grow by one request: {first} then {second}"
    );
}

// ---------------------------------------------------------------------------
// OpenAPI and Swagger UI (backend-independent: SQLite only)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openapi_json_is_3_1_and_lists_every_endpoint() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let resp = server.get("/openapi.json").await;
    resp.expect_status(200);
    resp.assert_json_content_type();
    let doc = resp.json();
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(
        version.starts_with("3.1"),
        "openapi should be 3.1.x, got {version:?}"
    );
    let paths = doc["paths"]
        .as_object()
        .unwrap_or_else(|| panic!("no paths object in {doc}"));
    for (path, methods) in [
        ("/health", &["get"][..]),
        ("/api/data", &["get"][..]),
        ("/api/process", &["post"][..]),
        ("/users", &["get", "post"][..]),
        ("/users/{id}", &["get", "patch", "delete"][..]),
    ] {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("openapi.json lacks path {path}; has {:?}", paths.keys()));
        for m in methods {
            assert!(
                item.get(*m).is_some(),
                "openapi.json path {path} lacks method {m}: {item}"
            );
        }
    }
}

/// `(tag, attribute, value)` for every `src`/`href` attribute in `html`.
fn asset_refs(html: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let end = rest.find('>').unwrap_or(rest.len());
        let tag = &rest[..end];
        rest = &rest[end..];
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if name.is_empty() {
            continue;
        }
        for attr in ["src", "href"] {
            let lower = tag.to_ascii_lowercase();
            let mut from = 0;
            while let Some(pos) = lower[from..].find(&format!("{attr}=")) {
                let at = from + pos;
                from = at + attr.len() + 1;
                // Must be a whole attribute name (preceded by whitespace).
                if at > 0 && !lower.as_bytes()[at - 1].is_ascii_whitespace() {
                    continue;
                }
                let after = &tag[from..];
                let value = match after.chars().next() {
                    Some(q @ ('"' | '\'')) => after[1..].split(q).next().unwrap_or(""),
                    _ => after
                        .split(|c: char| c.is_whitespace() || c == '>')
                        .next()
                        .unwrap_or(""),
                };
                out.push((name.clone(), attr.to_string(), value.to_string()));
            }
        }
    }
    out
}

/// Resolve `reference` against the page URL `base` (absolute, root-relative
/// or relative).
fn resolve(base: &reqwest::Url, reference: &str) -> reqwest::Url {
    base.join(reference)
        .unwrap_or_else(|e| panic!("cannot resolve {reference:?} against {base}: {e}"))
}

/// `GET /docs`, following its redirect to `/docs/`: the page's final URL
/// (to resolve its relative assets against) and the response.
async fn docs_page(server: &Server) -> (reqwest::Url, Resp) {
    let resp = server
        .client
        .get(server.url("/docs"))
        .send()
        .await
        .expect("GET /docs");
    let page_url = resp.url().clone();
    (page_url, Resp::read(resp).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docs_serves_swagger_ui_with_only_local_assets() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    let (page_url, resp) = docs_page(&server).await;
    resp.expect_status(200);
    let ct = resp.header("content-type").unwrap_or("").to_string();
    assert!(
        ct.starts_with("text/html"),
        "/docs should be HTML, got {ct:?}"
    );
    let html = &resp.text;
    assert!(
        html.to_ascii_lowercase().contains("swagger"),
        "/docs should be Swagger UI:\n{html}"
    );

    let refs = asset_refs(html);
    let assets: Vec<_> = refs
        .iter()
        .filter(|(tag, attr, _)| attr == "src" || tag == "link")
        .collect();
    assert!(
        assets.iter().any(|(tag, _, _)| tag == "script"),
        "/docs should load scripts; found refs {refs:?}"
    );
    assert!(
        assets
            .iter()
            .any(|(_, _, v)| v.split('?').next().unwrap_or("").ends_with(".css")),
        "/docs should load a stylesheet; found refs {refs:?}"
    );

    for (tag, attr, value) in &refs {
        let lower = value.to_ascii_lowercase();
        let external = lower.starts_with("//")
            || ((lower.starts_with("http://") || lower.starts_with("https://"))
                && !lower.starts_with("http://127.0.0.1")
                && !lower.starts_with("https://127.0.0.1"));
        assert!(
            !external,
            "/docs references an external URL <{tag} {attr}={value:?}>"
        );
    }

    for (tag, attr, value) in assets {
        if value.starts_with("data:") || value.is_empty() {
            continue;
        }
        let url = resolve(&page_url, value);
        let asset = Resp::read(
            server
                .client
                .get(url.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {url}: {e}")),
        )
        .await;
        assert_eq!(
            asset.status.as_u16(),
            200,
            "asset <{tag} {attr}={value:?}> at {url} should be served by surge"
        );
        assert!(!asset.text.is_empty(), "asset {url} is empty");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docs_initializer_points_at_local_openapi_json() {
    // The Swagger UI page, once its scripts run, loads the spec: whatever
    // URL the page (or its initializer script) names must be local.
    let server = Server::start(Backend::Sqlite, &[]).await;
    let (page_url, resp) = docs_page(&server).await;
    let html = resp.text;
    let mut texts = vec![html.clone()];
    for (tag, _, value) in asset_refs(&html) {
        if tag == "script" && value.contains("initializer") {
            let url = resolve(&page_url, &value);
            texts.push(
                Resp::read(server.client.get(url).send().await.unwrap())
                    .await
                    .text,
            );
        }
    }
    let all = texts.join("\n");
    assert!(
        all.contains("openapi.json"),
        "the Swagger UI page or its initializer should reference openapi.json"
    );
}

fn metric_value(text: &str, name: &str) -> Option<f64> {
    parse_samples(text)
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .reduce(|a, b| a + b)
}

async fn db_pool_size_flag_sets_pool_max_metric(b: Backend) {
    let server = Server::start(b, &["--db-pool-size", "3"]).await;
    server.get("/users").await.expect_status(200);
    let text = metrics_text(&server).await;
    assert_eq!(
        metric_value(&text, "surge_db_pool_max"),
        Some(3.0),
        "--db-pool-size 3 should show as surge_db_pool_max 3:\n{text}"
    );
    let size = metric_value(&text, "surge_db_pool_size").expect("surge_db_pool_size");
    let idle = metric_value(&text, "surge_db_pool_idle").expect("surge_db_pool_idle");
    assert!(size <= 3.0, "pool size {size} exceeds the max 3");
    assert!(idle <= size, "idle {idle} exceeds pool size {size}");
    let waiting = metric_value(&text, "surge_db_pool_waiting").expect("surge_db_pool_waiting");
    assert!(waiting >= 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_in_flight_gauge_counts_running_requests() {
    let server = Server::start(Backend::Sqlite, &[]).await;
    // /metrics may count itself: measure the idle baseline first.
    let baseline = common::in_flight_gauge(&server).await;
    let slow = futures_join_all(&server, 3, "/api/data?delay_ms=3000");
    let observe = async {
        // Poll while the three slow requests run; the gauge must reach
        // baseline + 3.
        let mut best = 0.0;
        for _ in 0..100 {
            let text = metrics_text(&server).await;
            let v = metric_value(&text, "surge_http_requests_in_flight").unwrap_or(0.0);
            if v > best {
                best = v;
            }
            if best >= baseline + 3.0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        best
    };
    let (statuses, best) = tokio::join!(slow, observe);
    assert_eq!(statuses, vec![200, 200, 200]);
    assert!(
        best >= baseline + 3.0,
        "surge_http_requests_in_flight should reach {baseline} (idle) + 3 while 3 requests run, saw at most {best}"
    );
}

/// Fire `n` concurrent GETs and return their statuses.
async fn futures_join_all(server: &Server, n: usize, path: &str) -> Vec<u16> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let rb = server.client.get(server.url(path));
            tokio::spawn(async move { rb.send().await.expect("request").status().as_u16() })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}
