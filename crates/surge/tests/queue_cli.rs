//! The queue's command line, black-box: `surge task …`, `surge schedule …`
//! and `surge worker` processes on a SQLite file — outputs, exit codes,
//! error messages, and a worker's graceful shutdown (SIGTERM hands its
//! running task back) — plus one round trip on PostgreSQL and on Redis.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Bounds a wait (never a timing assertion).
const WAIT: Duration = Duration::from_secs(60);

/// One test's broker: a SQLite file in a temp dir of its own, a private
/// PostgreSQL schema (dropped on drop) or a private Redis namespace.
struct Broker {
    /// Worker logs (and the SQLite file).
    dir: tempfile::TempDir,
    url: String,
    /// `SURGE_BROKER_NAMESPACE` for Redis.
    namespace: Option<String>,
    /// PostgreSQL: the private schema (dropped with it).
    _pg: Option<common::TestDb>,
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("queue-cli-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
}

impl Broker {
    fn new() -> Broker {
        let dir = temp_dir();
        let url = format!("sqlite://{}", dir.path().join("queue.db").display());
        Broker {
            dir,
            url,
            namespace: None,
            _pg: None,
        }
    }

    fn postgres() -> Option<Broker> {
        common::postgres_base_url()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let db = runtime.block_on(common::TestDb::new(common::Backend::Postgres));
        Some(Broker {
            dir: temp_dir(),
            url: db.url.clone(),
            namespace: None,
            _pg: Some(db),
        })
    }

    fn redis() -> Option<Broker> {
        Some(Broker {
            dir: temp_dir(),
            url: common::redis_url()?,
            namespace: Some(format!("cli-{}", common::unique_suffix())),
            _pg: None,
        })
    }

    /// `surge ARGS` with no inherited `SURGE_*` setting but this broker's
    /// namespace.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = surge(args);
        if let Some(ns) = &self.namespace {
            cmd.env("SURGE_BROKER_NAMESPACE", ns);
        }
        cmd
    }

    /// `surge ARGS --broker URL`, to the end.
    fn run(&self, args: &[&str]) -> Out {
        let mut cmd = self.command(args);
        cmd.arg("--broker").arg(&self.url);
        Out::of(cmd)
    }

    /// `surge ARGS` with the broker given by `SURGE_BROKER_URL`.
    fn run_env(&self, args: &[&str]) -> Out {
        let mut cmd = self.command(args);
        cmd.env("SURGE_BROKER_URL", &self.url);
        Out::of(cmd)
    }

    /// `surge task get ID --json`, parsed.
    fn task(&self, id: &str) -> Value {
        self.run(&["task", "get", id, "--json"]).ok().json()
    }

    /// Polls the task until `pred` holds.
    fn wait_task(&self, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        eventually(what, || {
            let t = self.task(id);
            if pred(&t) { Ok(t) } else { Err(t.to_string()) }
        })
    }

    /// `surge task list --json ARGS`: one record per line.
    fn list(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["task", "list", "--json", "--limit", "1000"];
        all.extend_from_slice(args);
        self.run(&all).ok().json_lines()
    }

    /// A `surge worker` on this broker with `args`, once it has started.
    fn worker(&self, args: &[&str]) -> Worker {
        let log = self
            .dir
            .path()
            .join(format!("worker-{}.log", uuid::Uuid::new_v4()));
        let mut cmd = self.command(&["worker", "--broker", &self.url]);
        cmd.args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("worker log"));
        let child = cmd.spawn().expect("spawn surge worker");
        let worker = Worker { child, log };
        eventually("the worker starts", || {
            let log = worker.log();
            if log.contains("worker started") {
                Ok(())
            } else {
                Err(log)
            }
        });
        worker
    }
}

/// `surge ARGS` with no inherited `SURGE_*` setting.
fn surge(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_surge"));
    cmd.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("SURGE_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// What a command did.
struct Out {
    cmd: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Out {
    fn of(mut cmd: Command) -> Out {
        let line = format!("{cmd:?}");
        let out = cmd.output().unwrap_or_else(|e| panic!("run {line}: {e}"));
        Out {
            cmd: line,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    #[track_caller]
    fn ok(self) -> Out {
        assert!(
            self.status.success(),
            "{} failed ({}):\nstdout: {}\nstderr: {}",
            self.cmd,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts a non-zero exit with `message` on stderr, nothing on stdout.
    #[track_caller]
    fn fails_with(&self, message: &str) {
        assert!(
            !self.status.success(),
            "{} should fail, but exited {}:\nstdout: {}",
            self.cmd,
            self.status,
            self.stdout
        );
        assert!(
            self.stderr.contains(message),
            "{}: stderr should say {message:?}, got: {}",
            self.cmd,
            self.stderr
        );
        assert!(
            self.stderr.starts_with("surge: "),
            "{}: one clear line, not a panic: {}",
            self.cmd,
            self.stderr
        );
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "{}: stdout is not one JSON value ({e}): {}",
                self.cmd, self.stdout
            )
        })
    }

    #[track_caller]
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{}: not a JSON line ({e}): {l}", self.cmd))
            })
            .collect()
    }
}

/// A `surge worker` process, killed on drop if still running.
struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, sig).expect("signal the worker");
    }

    /// The exit status, if it exits within `limit`.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- worker log ----\n{}\n---- end ----", self.log());
        }
    }
}

fn eventually<T>(what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: not within {WAIT:?}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

#[track_caller]
fn uuid_line(out: &Out) -> String {
    let id = out.stdout.trim();
    assert!(
        id.parse::<uuid::Uuid>().is_ok() && out.stdout.lines().count() == 1,
        "{}: expected one task id line, got {:?}",
        out.cmd,
        out.stdout
    );
    id.to_owned()
}

/// Asserts that every row puts `column` where the header does.
#[track_caller]
fn assert_aligned(table: &str, column: &str) {
    let mut lines = table.lines();
    let header = lines.next().expect("a header line");
    let at = header
        .find(column)
        .unwrap_or_else(|| panic!("no {column} in header {header:?}"));
    for row in lines {
        let before = &row[..at.min(row.len())];
        assert!(
            before.ends_with("  ") && !row[at..].starts_with(' '),
            "column {column} of {row:?} is not under the header {header:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn submit_wait_prints_the_finished_task_run_by_a_worker_process() {
    let b = Broker::new();
    let _worker = b.worker(&["--concurrency", "4", "--queues", "default,mail"]);

    let out = b
        .run(&[
            "task",
            "submit",
            "noop",
            "--args",
            r#"{"n": 1}"#,
            "--wait",
            "30",
            "--json",
        ])
        .ok();
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "one JSON line: {}",
        out.stdout
    );
    let task = out.json();
    assert_eq!(task["state"], json!("succeeded"), "{task}");
    assert_eq!(task["kind"], json!("noop"));
    assert_eq!(task["result"], json!({"n": 1}), "{task}");
    assert_eq!(task["attempts"], json!(1), "{task}");

    // Human output, and the broker from SURGE_BROKER_URL.
    let out = b
        .run_env(&[
            "task",
            "submit",
            "process",
            "--args",
            r#"{"items": ["a", "bb"]}"#,
            "--queue",
            "mail",
            "--wait",
            "30",
        ])
        .ok();
    assert!(
        out.stdout.contains("state:     succeeded"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("queue:     mail"), "{}", out.stdout);
    assert!(
        out.stdout.contains("\"total_processed\":2"),
        "{}",
        out.stdout
    );

    // Countdowns: 0 is now; two days ahead waits (the CLI allows what the
    // API allows).
    let now = b
        .run(&[
            "task",
            "submit",
            "noop",
            "--countdown",
            "0",
            "--wait",
            "30",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(now["state"], json!("succeeded"), "{now}");
    let later = b
        .run(&["task", "submit", "noop", "--countdown", "172800", "--json"])
        .ok()
        .json();
    assert_eq!(later["state"], json!("scheduled"), "{later}");

    // A queue no worker serves: still waiting when the wait ends.
    let out = b.run(&[
        "task", "submit", "noop", "--queue", "nobody", "--wait", "1", "--json",
    ]);
    out.fails_with("still pending after 1 s");
    assert_eq!(
        serde_json::from_str::<Value>(out.stdout.trim()).expect("the record is printed")["state"],
        json!("pending")
    );

    // A task that ends dead: the record, then a non-zero exit. `fail` needs
    // no --args (its arguments are all optional).
    let out = b.run(&[
        "task",
        "submit",
        "fail",
        "--max-retries",
        "0",
        "--wait",
        "30",
    ]);
    out.fails_with("ended dead");
    assert!(out.stdout.contains("state:     dead"), "{}", out.stdout);
    assert!(out.stdout.contains("failed on purpose"), "{}", out.stdout);
}

#[test]
fn get_list_cancel_and_retry_print_results_and_exit_non_zero_on_errors() {
    let b = Broker::new();
    // No worker: every task stays where the commands put it.
    let mut ids = Vec::new();
    for n in 0..3 {
        let out = b
            .run(&["task", "submit", "noop", "--args", &n.to_string()])
            .ok();
        ids.push(uuid_line(&out));
    }
    let out = b
        .run(&[
            "task",
            "submit",
            "sleep",
            "--args",
            r#"{"ms": 5}"#,
            "--queue",
            "q2",
        ])
        .ok();
    ids.push(uuid_line(&out));
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();

    let table = b.run(&["task", "list"]).ok().stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "a header and 4 rows: {table}");
    for column in ["ID", "STATE", "KIND", "QUEUE", "ATTEMPTS", "CREATED"] {
        assert!(lines[0].contains(column), "{table}");
    }
    let listed: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(listed, newest_first, "newest first: {table}");
    assert!(
        lines[1].contains("pending") && lines[1].contains("sleep"),
        "{table}"
    );
    for column in ["STATE", "KIND", "QUEUE", "CREATED"] {
        assert_aligned(&table, column);
    }

    let all = b.list(&[]);
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|t| t["state"] == json!("pending")));
    assert_eq!(b.list(&["--kind", "sleep"]).len(), 1);
    assert_eq!(b.list(&["--queue", "q2"])[0]["id"], json!(ids[3]));
    assert_eq!(b.list(&["--state", "pending", "--kind", "noop"]).len(), 3);
    assert!(b.list(&["--state", "running"]).is_empty());
    let two = b.run(&["task", "list", "--limit", "2"]).ok().stdout;
    assert_eq!(two.lines().count(), 3, "{two}");
    b.run(&["task", "list", "--state", "bogus"])
        .fails_with("\"bogus\" is not a state");

    // get
    let out = b.run(&["task", "get", &ids[0]]).ok();
    assert!(
        out.stdout.contains(&format!("id:        {}", ids[0])),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("state:     pending"), "{}", out.stdout);
    assert!(out.stdout.contains("kind:      noop"), "{}", out.stdout);
    assert_eq!(b.task(&ids[0])["args"], json!(0));
    let unknown = uuid::Uuid::now_v7().to_string();
    let out = b.run(&["task", "get", &unknown]);
    out.fails_with(&format!("task {unknown} not found"));
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    b.run(&["task", "get", "xyz"])
        .fails_with("\"xyz\" is not a task id");

    // cancel: waiting → cancelled; again → refused.
    let out = b.run(&["task", "cancel", &ids[0]]).ok();
    assert_eq!(out.stdout.trim(), format!("cancelled {}", ids[0]));
    assert_eq!(b.task(&ids[0])["state"], json!("cancelled"));
    b.run(&["task", "cancel", &ids[0]])
        .fails_with("already ended cancelled");
    b.run(&["task", "cancel", &unknown])
        .fails_with(&format!("task {unknown} not found"));

    // retry: cancelled → pending; waiting → refused.
    let out = b.run(&["task", "retry", &ids[0]]).ok();
    assert_eq!(out.stdout.trim(), format!("requeued {}", ids[0]));
    let again = b.task(&ids[0]);
    assert_eq!(again["state"], json!("pending"), "{again}");
    assert_eq!(again["attempts"], json!(0), "{again}");
    b.run(&["task", "retry", &ids[1]])
        .fails_with("only dead, failed or cancelled tasks can be retried");
    b.run(&["task", "retry", &unknown])
        .fails_with(&format!("task {unknown} not found"));
    assert_eq!(b.list(&[]).len(), 4, "nothing added or lost");
}

/// `surge schedule add NAME --cron CRON` followed by `rest`.
fn schedule_add<'a>(name: &'a str, cron: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["schedule", "add", name, "--cron", cron];
    args.extend_from_slice(rest);
    args
}

#[test]
fn bad_input_is_refused_with_a_clear_message_and_stores_nothing() {
    let b = Broker::new();
    let submit = |rest: &[&'static str]| [&["task", "submit"][..], rest].concat();
    let hourly = "0 * * * *";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            submit(&["noop", "--args", "{bad"]),
            "--args is not valid JSON",
        ),
        (submit(&["nope"]), "unknown task kind \"nope\""),
        (
            submit(&["sleep", "--args", r#"{"x": 1}"#]),
            "bad args for sleep",
        ),
        (
            submit(&["noop", "--eta", "tomorrow"]),
            "--eta \"tomorrow\" is not an RFC 3339 time",
        ),
        (submit(&["noop", "--countdown=-5"]), "--countdown"),
        (
            submit(&["noop", "--priority", "5000"]),
            "--priority must be between -1000 and 1000",
        ),
        (
            submit(&["noop", "--max-retries", "101"]),
            "--max-retries must be at most 100",
        ),
        (
            submit(&["noop", "--soft-time-limit", "10", "--hard-time-limit", "5"]),
            "soft time limit (10000 ms) is longer than the hard one (5000 ms)",
        ),
        (
            submit(&["noop", "--queue", "bad queue"]),
            "queue \"bad queue\"",
        ),
        (
            schedule_add("s", "not a cron", &["--kind", "noop"]),
            "bad cron expression \"not a cron\"",
        ),
        (
            schedule_add("s", hourly, &["--tz", "Mars/Olympus", "--kind", "noop"]),
            "unknown time zone \"Mars/Olympus\"",
        ),
        (
            schedule_add("s", hourly, &["--kind", "nope"]),
            "unknown task kind \"nope\"",
        ),
        (
            schedule_add("bad name", hourly, &["--kind", "noop"]),
            "bad schedule name",
        ),
        (
            schedule_add("s", hourly, &["--kind", "noop", "--args", "[1,"]),
            "--args is not valid JSON",
        ),
        (
            vec!["schedule", "rm", "nothing-here"],
            "schedule \"nothing-here\" not found",
        ),
    ];
    for (args, message) in cases {
        let out = b.run(&args);
        out.fails_with(message);
        assert!(
            out.stdout.is_empty(),
            "{}: stdout {:?}",
            out.cmd,
            out.stdout
        );
    }
    assert!(b.list(&[]).is_empty(), "a refused submission stored a task");
    let schedules = b.run(&["schedule", "list", "--json"]).ok();
    assert!(schedules.stdout.is_empty(), "{}", schedules.stdout);
}

#[test]
fn worker_refuses_bad_settings_naming_the_flag() {
    let b = Broker::new();
    let cases: [(&[&str], &str); 5] = [
        (&["--concurrency", "0"], "--concurrency must be at least 1"),
        (&["--queues", ","], "--queues must name at least one queue"),
        (
            &["--queues", "default,a b"],
            "--queues: \"a b\" is not a queue name",
        ),
        (&["--shutdown-grace", "0"], "--shutdown-grace"),
        (
            &["--lease-ttl", "0.1"],
            "--lease-ttl must be at least 0.5 seconds",
        ),
    ];
    for (flags, message) in cases {
        b.run(&[&["worker"][..], flags].concat())
            .fails_with(message);
    }
    let mut cmd = surge(&["worker", "--broker", "amqp://127.0.0.1/"]);
    cmd.stdout(Stdio::piped());
    Out::of(cmd).fails_with("unsupported scheme");
}

#[test]
fn schedules_are_added_listed_fired_and_removed() {
    let b = Broker::new();
    let nightly = [
        "--tz",
        "Europe/Paris",
        "--kind",
        "noop",
        "--args",
        r#"{"a": 1}"#,
    ];
    let out = b.run(&schedule_add("nightly", "30 3 * * *", &nightly)).ok();
    assert!(
        out.stdout.starts_with("schedule nightly next fires at "),
        "{}",
        out.stdout
    );
    let tick = ["--kind", "noop", "--args", r#""tick""#];
    b.run(&schedule_add("every-second", "* * * * * *", &tick))
        .ok();

    let table = b.run(&["schedule", "list"]).ok().stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two rows: {table}");
    assert!(
        lines[1].starts_with("every-second ") && lines[2].starts_with("nightly "),
        "{table}"
    );
    assert!(lines[2].contains("Europe/Paris"), "{table}");
    for column in ["CRON", "TIME ZONE", "KIND", "NEXT FIRE"] {
        assert_aligned(&table, column);
    }
    let listed = b.run(&["schedule", "list", "--json"]).ok().json_lines();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["name"], json!("nightly"));
    assert_eq!(listed[1]["timezone"], json!("Europe/Paris"));
    assert_eq!(listed[1]["task"]["kind"], json!("noop"));
    assert_eq!(listed[1]["task"]["args"], json!({"a": 1}));

    // A worker fires the every-second schedule.
    let _worker = b.worker(&["--concurrency", "2"]);
    eventually("ticks run", || {
        let ticks = b
            .list(&["--kind", "noop", "--state", "succeeded"])
            .into_iter()
            .filter(|t| t["args"] == json!("tick"))
            .count();
        if ticks >= 2 {
            Ok(())
        } else {
            Err(format!("{ticks} ticks"))
        }
    });

    let out = b.run(&["schedule", "rm", "every-second"]).ok();
    assert_eq!(out.stdout.trim(), "deleted schedule every-second");
    b.run(&["schedule", "rm", "every-second"])
        .fails_with("schedule \"every-second\" not found");
    let names: Vec<Value> = b
        .run(&["schedule", "list", "--json"])
        .ok()
        .json_lines()
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(names, [json!("nightly")]);
}

/// Starts a worker with `--shutdown-grace GRACE`, runs a `sleep` of `ms`
/// on it, sends SIGTERM once it runs and waits for a successful exit (it
/// must come: a hang fails). The worker, for its log, and the task id.
fn sigterm_during_sleep(b: &Broker, grace: &str, ms: u64) -> (Worker, String) {
    let mut worker = b.worker(&["--concurrency", "2", "--shutdown-grace", grace]);
    let args = json!({ "ms": ms }).to_string();
    let id = uuid_line(&b.run(&["task", "submit", "sleep", "--args", &args]).ok());
    b.wait_task(&id, "the sleep runs", |t| t["state"] == json!("running"));
    worker.signal(nix::sys::signal::Signal::SIGTERM);
    let status = worker
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no exit after SIGTERM; log:\n{}", worker.log()));
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        worker.log()
    );
    (worker, id)
}

#[test]
fn sigterm_hands_a_running_task_back_within_the_grace_and_exits_zero() {
    let b = Broker::new();
    // Two minutes of sleep against a one-second grace: exiting at all
    // means the task was handed back, not waited for.
    let (worker, id) = sigterm_during_sleep(&b, "1", 120_000);
    let log = worker.log();
    assert!(log.contains("handed_back=1"), "{log}");
    let task = b.task(&id);
    assert_eq!(task["state"], json!("pending"), "handed back: {task}");
    assert_eq!(
        task["attempts"],
        json!(0),
        "the attempt is not counted: {task}"
    );
    assert!(task["error"].is_null(), "{task}");

    // Another worker takes it up again; a cancel then stops it.
    let _next = b.worker(&["--concurrency", "2"]);
    b.wait_task(&id, "the task runs again", |t| {
        t["state"] == json!("running")
    });
    let out = b.run(&["task", "cancel", &id]).ok();
    let requested = format!("cancel requested for {id}");
    assert!(out.stdout.starts_with(&requested), "{}", out.stdout);
    b.wait_task(&id, "the cancel reaches the worker", |t| {
        t["state"] == json!("cancelled")
    });
}

#[test]
fn sigterm_lets_a_task_finish_within_the_grace() {
    let b = Broker::new();
    let (worker, id) = sigterm_during_sleep(&b, "60", 1500);
    let task = b.task(&id);
    assert_eq!(
        task["state"],
        json!("succeeded"),
        "finished, not handed back: {task}"
    );
    assert_eq!(task["result"], json!({"slept_ms": 1500}), "{task}");
    assert!(worker.log().contains("handed_back=0"), "{}", worker.log());
}

// ---------------------------------------------------------------------------
// PostgreSQL and Redis
// ---------------------------------------------------------------------------

/// Submit and wait, cancel a running task, retry it, list, and a schedule
/// that fires, against a worker process on `b`.
fn round_trip(b: &Broker) {
    let _worker = b.worker(&["--concurrency", "4"]);
    let done = b
        .run(&[
            "task", "submit", "noop", "--args", "[1, 2]", "--wait", "30", "--json",
        ])
        .ok()
        .json();
    assert_eq!(done["state"], json!("succeeded"), "{done}");
    assert_eq!(done["result"], json!([1, 2]), "{done}");

    let id = uuid_line(
        &b.run(&["task", "submit", "sleep", "--args", r#"{"ms": 120000}"#])
            .ok(),
    );
    b.wait_task(&id, "the sleep runs", |t| t["state"] == json!("running"));
    let out = b.run(&["task", "cancel", &id]).ok();
    assert!(out.stdout.starts_with("cancel requested"), "{}", out.stdout);
    b.wait_task(&id, "it is cancelled", |t| t["state"] == json!("cancelled"));
    b.run(&["task", "cancel", &id])
        .fails_with("already ended cancelled");
    b.run(&["task", "retry", &id]).ok();
    b.wait_task(&id, "it runs again", |t| t["state"] == json!("running"));
    b.run(&["task", "cancel", &id]).ok();
    let listed: Vec<Value> = b.list(&[]).iter().map(|t| t["id"].clone()).collect();
    assert_eq!(listed, [json!(id), done["id"].clone()], "newest first");

    b.run(&schedule_add(
        "tick",
        "* * * * * *",
        &["--kind", "noop", "--args", "\"tick\""],
    ))
    .ok();
    eventually("the schedule fires", || {
        let ticks = b.list(&["--state", "succeeded"]).into_iter();
        let n = ticks.filter(|t| t["args"] == json!("tick")).count();
        if n >= 1 {
            Ok(())
        } else {
            Err(format!("{n} ticks"))
        }
    });
    b.run(&["schedule", "rm", "tick"]).ok();
    b.run(&["task", "get", &uuid::Uuid::now_v7().to_string()])
        .fails_with("not found");
}

#[test]
fn round_trip_on_postgres() {
    if let Some(b) = Broker::postgres() {
        round_trip(&b);
    }
}

#[test]
fn round_trip_on_redis() {
    if let Some(b) = Broker::redis() {
        round_trip(&b);
    }
}
