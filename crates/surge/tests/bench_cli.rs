//! `surge bench http` and `surge bench report`, black box: the real binary
//! against real local servers (`surge-bench/tests/servers`); its JSON, its
//! HTML report (parsed, and drawn by a real headless Chromium), the report
//! round trip, the queue benchmark's results in the same report, and clear
//! errors for bad input.

#[path = "../../surge-bench/tests/servers/mod.rs"]
mod servers;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use scraper::{Html, Selector};
use surge_bench::Results;

fn surge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_surge"))
        .args(args)
        .output()
        .expect("run surge")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs surge expecting failure; returns (exit code, stderr).
fn fails(args: &[&str]) -> (i32, String) {
    let o = surge(args);
    assert!(
        !o.status.success(),
        "surge {args:?} succeeded: {}",
        stderr(&o)
    );
    (o.status.code().unwrap_or(-1), stderr(&o))
}

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temp dir")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Two targets (one with a 2 ms delay), levels 1 and 4, 60 requests each.
fn sweep(out: &Path, extra: &[&str]) -> (servers::Server, PathBuf, PathBuf) {
    let server = servers::plain();
    let json = out.join("http.json");
    let html = out.join("http.html");
    let fast = format!("fast={}", server.url("/fast"));
    let slow = format!("slow & steady={}", server.url("/delay/2"));
    let mut args = vec![
        "bench",
        "http",
        "--target",
        &fast,
        "--target",
        &slow,
        "--concurrency",
        "1,4",
        "--requests",
        "60",
        "--warmup",
        "100ms",
        "--save",
        path_str(&json),
        "--html",
        path_str(&html),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let o = surge(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    if !extra.contains(&"--json") {
        assert!(
            table.contains("fast") && table.contains("slow & steady"),
            "{table}"
        );
        assert!(table.contains("p99.9 ms"), "{table}");
    }
    (server, json, html)
}

#[test]
fn a_sweep_saves_versioned_json_and_an_html_report_of_every_target() {
    let out = dir();
    let charts = out.path().join("charts");
    let (server, json, html) = sweep(out.path(), &["--charts", path_str(&charts)]);
    let results = Results::load(&json).expect("saved results load");
    assert_eq!(results.schema, surge_bench::results::SCHEMA);
    assert_eq!(results.schema_version, surge_bench::results::SCHEMA_VERSION);
    assert!(results.machine.cpus >= 1 && !results.machine.kernel.is_empty());
    assert!(results.command.as_deref().unwrap().contains("bench http"));
    let suite = &results.suites[0];
    let labels: Vec<&str> = suite.series.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels, ["fast", "slow & steady"]);
    for s in &suite.series {
        let loads: Vec<f64> = s.points.iter().map(|p| p.load).collect();
        assert_eq!(loads, [1.0, 4.0]);
        for p in &s.points {
            assert_eq!((p.requests, p.error_total()), (60, 0));
        }
    }
    assert!(server.served() >= 4 * 60, "warm-up plus counted requests");
    // The slow target's latencies are at least its delay.
    let slow = &suite.series[1].points[0];
    assert!(slow.latency.unwrap().min_ms >= 2.0);

    // The HTML parses and holds every target, in the charts and the table.
    let doc = Html::parse_document(&std::fs::read_to_string(&html).unwrap());
    let sel = |s: &str| Selector::parse(s).unwrap();
    let charts_in_page = doc.select(&sel("svg.chart")).count();
    assert_eq!(charts_in_page, 5, "throughput + p50/p90/p99/p99.9");
    for label in &labels {
        let in_charts = doc
            .select(&sel("svg.chart g.series"))
            .filter(|g| g.value().attr("data-label") == Some(label))
            .count();
        assert_eq!(in_charts, 5, "{label} in every chart");
        let rows = doc
            .select(&sel("table.results tr td:first-child"))
            .filter(|td| td.text().collect::<String>() == *label)
            .count();
        assert_eq!(rows, 2, "{label}: one table row per level");
    }
    let machine = doc.select(&sel("#machine")).next().expect("machine table");
    let text: String = machine.text().collect();
    for what in ["CPU", "memory", "kernel", "surge", "date"] {
        assert!(text.contains(what), "{what} missing from {text}");
    }
    // Nothing is loaded from anywhere: no script, stylesheet link, image.
    assert_eq!(
        doc.select(&sel("script, link, img, iframe, object"))
            .count(),
        0
    );
    // The same charts as files.
    let mut files: Vec<String> = std::fs::read_dir(&charts)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "http-closed-loop-latency-p50.svg",
            "http-closed-loop-latency-p90.svg",
            "http-closed-loop-latency-p99.svg",
            "http-closed-loop-latency-p999.svg",
            "http-closed-loop-throughput.svg"
        ]
    );
}

#[test]
fn json_on_stdout_is_the_saved_document() {
    let out = dir();
    let o = {
        let server = servers::plain();
        let url = format!("t={}", server.url("/fast"));
        surge(&[
            "bench",
            "http",
            "--target",
            &url,
            "--rate",
            "200",
            "--connections",
            "2",
            "--requests",
            "40",
            "--warmup",
            "0s",
            "--client",
            "hyper",
            "--json",
        ])
    };
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let r = Results::from_json(&out.path().join("stdout"), &text).expect("stdout is results");
    let s = &r.suites[0];
    assert_eq!(s.axis, surge_bench::results::LoadAxis::RequestRate);
    assert_eq!(
        s.plan.as_ref().map(|p| p.client),
        Some(surge_bench::Client::Hyper)
    );
    let p = &s.series[0].points[0];
    assert_eq!((p.load, p.requests), (200.0, 40));
    assert!(p.uncorrected_latency.is_some());
}

#[test]
fn bench_report_round_trips_saved_results_and_puts_runs_side_by_side() {
    let out = dir();
    let (_server, json, _) = sweep(out.path(), &[]);
    let again = out.path().join("again.json");
    let o = surge(&[
        "bench",
        "report",
        path_str(&json),
        "--save",
        path_str(&again),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        Results::load(&json).unwrap(),
        Results::load(&again).unwrap()
    );

    // A second run of the same targets at other levels joins their lines;
    // the same levels again are kept apart, labelled with their date.
    let mut other = Results::load(&json).unwrap();
    other.started_at = "2030-01-01T00:00:00Z".to_owned();
    for s in &mut other.suites[0].series {
        for p in &mut s.points {
            p.load *= 100.0;
        }
    }
    let other_path = out.path().join("other.json");
    other.save(&other_path).unwrap();
    let same_path = out.path().join("same.json");
    let mut same = Results::load(&json).unwrap();
    same.started_at = "2031-01-01T00:00:00Z".to_owned();
    same.save(&same_path).unwrap();
    let merged = out.path().join("merged.json");
    let html = out.path().join("merged.html");
    let o = surge(&[
        "bench",
        "report",
        path_str(&json),
        path_str(&other_path),
        path_str(&same_path),
        "--save",
        path_str(&merged),
        "--html",
        path_str(&html),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = Results::load(&merged).unwrap();
    let labels: Vec<(&str, usize)> = m.suites[0]
        .series
        .iter()
        .map(|s| (s.label.as_str(), s.points.len()))
        .collect();
    assert_eq!(
        labels,
        [
            ("fast", 4),
            ("slow & steady", 4),
            ("fast (2031-01-01T00:00:00Z)", 2),
            ("slow & steady (2031-01-01T00:00:00Z)", 2)
        ]
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("fast (2031-01-01T00:00:00Z)"));
}

#[test]
fn the_queue_benchmark_plugs_into_the_same_report() {
    let out = dir();
    let (_server, http_json, _) = sweep(out.path(), &[]);
    let db = out.path().join("q.db");
    let broker = format!("sqlite://{}", db.display());
    let o = surge(&[
        "bench",
        "queue",
        "--broker",
        &broker,
        "--tasks",
        "200",
        "--latency-tasks",
        "10",
        "--latency-interval-ms",
        "1",
        "--submitters",
        "4",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let queue_json = out.path().join("queue.json");
    std::fs::write(&queue_json, &o.stdout).unwrap();
    let html = out.path().join("all.html");
    let saved = out.path().join("all.json");
    let o = surge(&[
        "bench",
        "report",
        path_str(&http_json),
        path_str(&queue_json),
        "--html",
        path_str(&html),
        "--save",
        path_str(&saved),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = Results::load(&saved).unwrap();
    let titles: Vec<&str> = r.suites.iter().map(|s| s.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "HTTP closed loop",
            "Task queue end-to-end",
            "Task queue burn-down"
        ]
    );
    let e2e = &r.suites[1].series[0];
    assert_eq!(e2e.label, "queue-sqlite");
    assert_eq!((e2e.points[0].load, e2e.points[0].requests), (4.0, 200));
    assert!(e2e.points[0].latency.is_some());
    assert!(r.suites[1].notes.iter().any(|n| n.contains("idle workers")));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("queue-sqlite") && page.contains("tasks/s"));
}

#[test]
fn bad_inputs_get_clear_errors() {
    let server = servers::plain();
    let ok = format!("ok={}", server.url("/fast"));
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = format!("gone=http://127.0.0.1:{free_port}/");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["--target", "nolabel"], 2, "expected LABEL=URL"),
        (vec!["--target", "x=not a url"], 2, "not a URL"),
        (
            vec!["--target", "x=https://127.0.0.1/"],
            2,
            "https is not supported",
        ),
        (vec!["--target", "x=ftp://127.0.0.1/"], 2, "not supported"),
        (
            vec!["--target", &ok, "--client", "fast"],
            2,
            "expected auto, lean or hyper",
        ),
        (
            vec!["--target", &ok, "--concurrency", "0"],
            2,
            "levels must be positive",
        ),
        (
            vec!["--target", &ok, "--concurrency", "10,-5"],
            2,
            "levels must be positive",
        ),
        (
            vec!["--target", &ok, "--rate", "0"],
            2,
            "levels must be positive",
        ),
        (
            vec!["--target", &ok, "--concurrency", "ten"],
            2,
            "not a number",
        ),
        (
            vec!["--target", &ok, "--requests", "0"],
            2,
            "levels must be positive",
        ),
        (
            vec!["--target", &ok, "--duration", "soon"],
            2,
            "expected a duration",
        ),
        (
            vec!["--target", &ok, "--target-header", "other=A: b"],
            2,
            "no --target is labelled",
        ),
        (
            vec!["--target", &ok, "--header", "no colon"],
            2,
            "expected 'Name: value'",
        ),
        (vec!["--target", &ok, "--target", &ok], 2, "given twice"),
        (
            vec!["--target", &ok, "--frobnicate"],
            2,
            "unexpected argument '--frobnicate'",
        ),
        (
            vec!["--target", &gone, "--requests", "1"],
            1,
            "is unreachable",
        ),
    ];
    for (args, code, message) in cases {
        let mut all = vec!["bench", "http", "--quiet"];
        all.extend(args.iter().copied());
        let (got, err) = fails(&all);
        assert_eq!(got, code, "{all:?}: {err}");
        assert!(
            err.contains(message),
            "{all:?}: expected {message:?} in: {err}"
        );
    }
    assert_eq!(server.served(), 0, "no bad invocation sent load");

    let out = dir();
    let newer = out.path().join("newer.json");
    std::fs::write(
        &newer,
        r#"{"schema": "surge-bench", "schema_version": 99, "suites": []}"#,
    )
    .unwrap();
    let (code, err) = fails(&["bench", "report", path_str(&newer)]);
    assert_eq!(code, 1);
    assert!(
        err.contains("schema surge-bench version 99, but this surge reads version 1"),
        "{err}"
    );
    let other = out.path().join("other.json");
    std::fs::write(&other, r#"{"hello": 1}"#).unwrap();
    let (_, err) = fails(&["bench", "report", path_str(&other)]);
    assert!(err.contains("not a surge bench results file"), "{err}");
    let queue_newer = out.path().join("q.json");
    std::fs::write(
        &queue_newer,
        r#"{"schema": "surge-bench-queue", "schema_version": 7}"#,
    )
    .unwrap();
    let (_, err) = fails(&["bench", "report", path_str(&queue_newer)]);
    assert!(err.contains("version 7"), "{err}");
    let (_, err) = fails(&[
        "bench",
        "report",
        path_str(&out.path().join("missing.json")),
    ]);
    assert!(err.contains("cannot read"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_renders_in_chromium_with_visible_charts_and_fetches_nothing() {
    let Some(browser) = surge_testkit::browser::Browser::launch().await else {
        return;
    };
    let out = dir();
    let (_server, _, html) = tokio::task::spawn_blocking({
        let p = out.path().to_owned();
        move || sweep(&p, &[])
    })
    .await
    .unwrap();
    let url = format!("file://{}", html.display());
    browser.open(&url).await;
    browser
        .wait_until(
            "return document.readyState === 'complete';",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    // The page itself is the only thing loaded: a file has no host.
    let hosts = browser.resource_hosts().await;
    assert_eq!(hosts, [""], "loaded from elsewhere: {hosts:?}");
    let drawn = browser
        .eval(
            "return Array.from(document.querySelectorAll('svg.chart')).map(svg => {\
               const r = svg.getBoundingClientRect();\
               const lines = Array.from(svg.querySelectorAll('polyline')).filter(p => p.getBBox().width > 0);\
               return [r.width, r.height, lines.length];\
             });",
            vec![],
        )
        .await;
    let drawn: Vec<(f64, f64, usize)> = serde_json::from_value(drawn).unwrap();
    assert_eq!(drawn.len(), 5);
    for (w, h, lines) in drawn {
        assert!(w > 300.0 && h > 200.0, "chart {w}×{h}");
        assert_eq!(lines, 2, "one visible line per target");
    }
    let png = browser.client().screenshot().await.unwrap();
    let stats = surge_testkit::browser::screenshot_stats(&png);
    assert!(stats.colors > 8 && stats.non_background > 0.02, "{stats:?}");
}
