//! `surge crawl` as a user runs it, against the shared test site: JSONL on
//! stdout and a summary on stderr, exit 2 for bad flags, and a crawl
//! killed with SIGKILL at several points that `--resume` finishes with the
//! exact page set and no duplicate record.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use surge_testkit::site::{CrawlRules, SiteConfig, TestSite};

fn surge() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_surge"));
    cmd.arg("crawl").env("RUST_LOG", "warn");
    cmd
}

fn lines(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => s.lines().map(str::to_owned).collect(),
        Err(_) => Vec::new(),
    }
}

fn urls_once(lines: &[String]) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for l in lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}"));
        let url = v["url"].as_str().expect("url").to_owned();
        assert!(set.insert(url.clone()), "duplicate record for {url}");
    }
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_to_stdout_with_a_summary() {
    let site = TestSite::start(SiteConfig::plain(25)).await;
    let url = site.start_url();
    let out = tokio::task::spawn_blocking(move || {
        surge()
            .args([&url, "--depth", "2", "--concurrency", "8", "--outlinks"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let got = urls_once(&stdout);
    let expected = site.expected(&CrawlRules {
        max_depth: Some(2),
        ..CrawlRules::default()
    });
    assert_eq!(got, expected.urls());
    let first: serde_json::Value = serde_json::from_str(&stdout[0]).unwrap();
    for field in [
        "url",
        "final_url",
        "status",
        "depth",
        "title",
        "description",
        "content_type",
        "content_length",
        "links",
        "images",
        "fetched_at",
        "elapsed_ms",
        "error",
        "outlinks",
    ] {
        assert!(first.get(field).is_some(), "no {field} in {first}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{} pages in", got.len())),
        "{stderr}"
    );
    assert!(stderr.contains("pages/s"), "{stderr}");
}

#[test]
fn bad_flags_and_urls_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![], "start URL"),
        (vec!["ftp://example.com/".into()], "not an http"),
        (vec!["not a url".into()], "not an http"),
        (
            vec!["http://127.0.0.1:9/".into(), "--deny".into(), "(".into()],
            "scope.deny",
        ),
        (
            vec![
                "http://127.0.0.1:9/".into(),
                "--concurrency".into(),
                "0".into(),
            ],
            "--concurrency",
        ),
        (
            vec![
                "http://127.0.0.1:9/".into(),
                "--max-time".into(),
                "0".into(),
            ],
            "--max-time",
        ),
        (
            vec![
                "--resume".into(),
                dir.path().join("nope").display().to_string(),
            ],
            "not a crawl directory",
        ),
        (
            vec![
                "--resume".into(),
                dir.path().display().to_string(),
                "http://127.0.0.1:9/".into(),
            ],
            "give no URLs",
        ),
    ];
    for (args, want) in cases {
        let out = surge().args(&args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_sigkill_finishes_with_the_exact_set_and_no_duplicates() {
    // A slow site so the kills land mid-crawl.
    let site = TestSite::start(SiteConfig::plain(120).delay(Duration::from_millis(15))).await;
    let expected = site.expected(&CrawlRules::default()).urls();
    let dir = tempfile::tempdir().unwrap();
    let crawl_dir = dir.path().join("crawl");
    let pages = crawl_dir.join("pages.jsonl");
    let url = site.start_url();
    let cd = crawl_dir.clone();
    let expected_len = expected.len();
    let kills = tokio::task::spawn_blocking(move || {
        let mut kills = Vec::new();
        // Kill right at the start, then after about 5, 25, 50 and 80 records.
        for (i, at) in [0usize, 5, 25, 50, 80].into_iter().enumerate() {
            let mut cmd = surge();
            if i == 0 {
                cmd.args([url.as_str(), "--dir"]).arg(&cd);
            } else {
                cmd.arg("--resume").arg(&cd);
            }
            cmd.args(["--concurrency", "4", "--per-host", "4", "--output", "-"]);
            let log = std::fs::File::create(cd.with_extension(format!("log{i}"))).unwrap();
            let mut child = cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                // The first kill lands as soon as the directory exists.
                let started = cd.join("crawl.json").exists();
                let n = lines(&cd.join("pages.jsonl")).len();
                if (started && n >= at) || Instant::now() > deadline {
                    break;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            kills.push(lines(&cd.join("pages.jsonl")).len());
        }
        kills
    })
    .await
    .unwrap();
    let logs: Vec<String> = (0..5)
        .map(|i| {
            std::fs::read_to_string(crawl_dir.with_extension(format!("log{i}"))).unwrap_or_default()
        })
        .collect();
    assert!(
        kills.iter().any(|&n| n > 0 && n < expected_len),
        "no kill landed mid-crawl: {kills:?} {logs:?}"
    );
    let before = lines(&pages);
    let cd = crawl_dir.clone();
    let out = tokio::task::spawn_blocking(move || {
        surge()
            .arg("--resume")
            .arg(&cd)
            .args(["--concurrency", "8"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = lines(&pages);
    let all = urls_once(&after);
    assert_eq!(all, expected, "kills at {kills:?}");
    // What the resumed run printed is exactly what it added.
    let resumed = urls_once(
        &String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    );
    let earlier = urls_once(
        &before
            .iter()
            .filter(|l| l.ends_with('}'))
            .cloned()
            .collect::<Vec<_>>(),
    );
    assert!(
        resumed.is_disjoint(&earlier),
        "a recorded page was fetched again"
    );
    assert_eq!(resumed.len() + earlier.len(), expected.len());
    // A page recorded before a kill is never requested again: each page at
    // most once per run that could have had it in flight.
    for (path, n) in site.path_counts() {
        assert!(n <= 1 + kills.len() as u64, "{path} requested {n} times");
    }
}
