//! `surge fetch` through the real binary, against the misbehaving servers
//! of the engine's own tests.

#[path = "../../surge-fetch/tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::{Server, closed_port};

fn surge_fetch(args: &[&str], stdin: Option<&str>) -> (Output, Vec<Value>, Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_surge"));
    cmd.arg("fetch")
        .args([
            "--summary",
            "json",
            "--progress",
            "never",
            "--backoff-base-ms",
            "1",
            "--backoff-cap-ms",
            "5",
        ])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn surge fetch");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let records = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stderr
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or(Value::Null);
    (out, records, summary)
}

fn by_index(records: &[Value], i: u64) -> &Value {
    records
        .iter()
        .find(|r| r["index"] == i)
        .unwrap_or_else(|| panic!("no record {i}"))
}

async fn run(args: Vec<String>, stdin: Option<String>) -> (Output, Vec<Value>, Value) {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        surge_fetch(&a, stdin.as_deref())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_from_arguments_file_and_stdin_each_get_one_record() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("urls.txt");
    std::fs::write(
        &file,
        format!(
            "# a comment\n{}\n\nnot a url\n{}\n",
            server.url("/ok"),
            server.url("/status/404")
        ),
    )
    .unwrap();
    let (out, records, summary) = run(
        vec![
            server.url("/ok"),
            "--input".into(),
            file.display().to_string(),
        ],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "a failed URL makes exit code 1");
    assert_eq!(records.len(), 4);
    assert_eq!(by_index(&records, 0)["status"], 200);
    assert_eq!(by_index(&records, 1)["bytes"], 2);
    let bad = by_index(&records, 2);
    assert_eq!(
        (bad["error_category"].as_str(), bad["error_kind"].as_str()),
        (Some("validation"), Some("invalid_url"))
    );
    assert_eq!(bad["url"], "not a url");
    let missing = by_index(&records, 3);
    assert_eq!(
        (
            missing["status"].as_u64(),
            missing["error_category"].as_str()
        ),
        (Some(404), Some("http_status"))
    );
    assert_eq!(summary["total"], 4);
    assert_eq!(summary["ok"], 2);
    assert_eq!(summary["failed_by_category"]["validation"], 1);
    assert_eq!(summary["failed_by_category"]["http_status"], 1);

    let urls = (0..50)
        .map(|_| server.url("/ok"))
        .collect::<Vec<_>>()
        .join("\n");
    let (out, records, summary) = run(vec![], Some(urls)).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(records.len(), 50);
    let mut seen: Vec<u64> = records
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..50).collect::<Vec<_>>());
    assert_eq!(summary["ok"], 50);
    assert!(
        summary["latency_ms"]["p99"].as_f64().unwrap()
            >= summary["latency_ms"]["p50"].as_f64().unwrap()
    );
}

/// 60 URLs of 20 ms answers, one per line.
fn slow_urls(server: &Server) -> String {
    (0..60)
        .map(|_| server.url("/slow/20"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_host_and_global_limits_hold_through_the_cli() {
    let server = Server::start().await;
    let urls = slow_urls(&server);
    let (out, records, _) = run(
        vec!["-c".into(), "50".into(), "--per-host".into(), "3".into()],
        Some(urls),
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(records.len(), 60);
    assert_eq!(server.stats.max_in_flight(), 3);

    let server = Server::start().await;
    let urls = slow_urls(&server);
    let (_, records, _) = run(vec!["-c".into(), "5".into()], Some(urls)).await;
    assert_eq!(records.len(), 60);
    assert_eq!(server.stats.max_in_flight(), 5);

    // An adaptive per-host limit stays under --per-host as well.
    let server = Server::start().await;
    let urls = slow_urls(&server);
    let (out, records, _) = run(
        vec![
            "-c".into(),
            "50".into(),
            "--per-host".into(),
            "4".into(),
            "--per-host-adaptive".into(),
        ],
        Some(urls),
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(records.len(), 60);
    assert!((1..=4).contains(&server.stats.max_in_flight()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_is_recorded_in_its_category_with_its_attempts() {
    let server = Server::start().await;
    let urls = [
        server.url("/500/burst/2"),
        server.url("/status/501"),
        server.url("/drop/d"),
        server.url("/hang"),
        format!("http://127.0.0.1:{}/", closed_port()),
        server.url("/redirect/loop"),
        server.url("/bytes/100000"),
        "ftp://example.com/".to_owned(),
    ]
    .join("\n");
    let args = [
        "--retries",
        "2",
        "--read-timeout",
        "0.3",
        "--max-body-bytes",
        "1000",
        "--max-redirects",
        "3",
    ];
    let (_, records, summary) = run(args.iter().map(|s| s.to_string()).collect(), Some(urls)).await;
    let got = |i: u64| {
        let r = by_index(&records, i);
        (
            r["error_category"].as_str().map(str::to_owned),
            r["attempts"].as_u64().unwrap(),
        )
    };
    assert_eq!(got(0), (None, 3), "two 500s, then 200");
    assert_eq!(
        got(1),
        (Some("http_status".into()), 1),
        "501 is not retried"
    );
    assert_eq!(got(2), (Some("network".into()), 3));
    assert_eq!(got(3), (Some("timeout".into()), 3));
    assert_eq!(got(4), (Some("network".into()), 3));
    assert_eq!(got(5), (Some("http_status".into()), 1));
    assert_eq!(by_index(&records, 5)["error_kind"], "too_many_redirects");
    assert_eq!(got(6), (Some("validation".into()), 1));
    assert_eq!(by_index(&records, 6)["error_kind"], "body_too_large");
    assert_eq!(got(7), (Some("validation".into()), 0));
    assert_eq!(server.stats.arrivals("burst").len(), 3);
    assert_eq!(server.stats.arrivals("d").len(), 3);
    let by_cat = &summary["failed_by_category"];
    assert_eq!(
        (
            by_cat["http_status"].as_u64(),
            by_cat["network"].as_u64(),
            by_cat["timeout"].as_u64(),
            by_cat["validation"].as_u64()
        ),
        (Some(2), Some(2), Some(1), Some(2))
    );
    assert_eq!(summary["ok"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_only_refuses_loopback_and_sends_nothing() {
    let server = Server::start().await;
    let (out, records, _) = run(
        vec![
            "--public-only".into(),
            server.url("/ok"),
            format!("http://localhost:{}/ok", server.addr.port()),
        ],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    for r in &records {
        assert_eq!(
            (r["error_category"].as_str(), r["error_kind"].as_str()),
            (Some("validation"), Some("address_refused")),
            "{r}"
        );
    }
    assert_eq!(server.stats.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_hashed_or_saved_on_request() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, records, _) = run(
        vec!["--body".into(), "sha256".into(), server.url("/ok")],
        None,
    )
    .await;
    assert_eq!(
        records[0]["sha256"],
        "2689367b205c16ce32ed4200942b8b8b1e262dfc70d9bc9fbc77c49699a4f1df"
    );
    let save = dir.path().join("bodies");
    let (_, records, _) = run(
        vec![
            "--body".into(),
            "save".into(),
            "--save-dir".into(),
            save.display().to_string(),
            server.url("/bytes/5000"),
        ],
        None,
    )
    .await;
    let file = records[0]["file"].as_str().unwrap();
    assert_eq!(std::fs::metadata(file).unwrap().len(), 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_exit_2_with_the_flag_named() {
    for (args, needle) in [
        (vec!["-c", "0", "http://x/"], "--concurrency"),
        (vec!["-H", "nocolon", "http://x/"], "--header"),
        (vec!["--json", "{bad", "http://x/"], "--json"),
        (vec!["--timeout", "0", "http://x/"], "--timeout"),
        (vec!["--body", "save", "http://x/"], "--save-dir"),
        (vec!["-X", "B@D", "http://x/"], "--method"),
    ] {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (out, records, _) = run(args.clone(), None).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(records.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
