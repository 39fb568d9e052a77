//! Black-box harness for `surge serve`: spawns the real binary against a
//! throw-away database (SQLite temp file or a private PostgreSQL schema),
//! learns its port from the `surge listening on http://IP:PORT` stdout line
//! and kills it (and drops the database) on `Drop`.
//!
//! Each integration-test file compiles this module on its own and uses a
//! subset of it.
#![allow(dead_code, unused_macros, unused_imports)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

/// How long a server may take to print its listening line. Generous on
/// purpose: the machine is shared; this only bounds a hang.
pub(crate) const STARTUP_DEADLINE: Duration = Duration::from_secs(90);
/// Safety net for a single HTTP request, so a hung server fails the test
/// instead of hanging it forever. Never a timing assertion.
pub(crate) const REQUEST_SAFETY_NET: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL base URL for tests, or `None` (after printing the SKIP
/// line) when unset. Panics when `SURGE_REQUIRE_BACKENDS` contains
/// `postgres` and the URL is unset.
pub(crate) fn postgres_base_url() -> Option<String> {
    surge_testkit::postgres_url()
}

/// The Redis URL for tests (`SURGE_TEST_REDIS_URL`), under the same rules
/// as [`postgres_base_url`].
pub(crate) fn redis_url() -> Option<String> {
    surge_testkit::redis_url()
}

/// Whether the PostgreSQL variant of a test should run (prints the SKIP line
/// or panics as documented on [`postgres_base_url`]).
pub(crate) fn postgres_enabled() -> bool {
    postgres_base_url().is_some()
}

/// True when `actual == base + suffix`; used at compile time by
/// [`backend_tests!`] so the generated test names can't drift from the
/// scenario name.
pub(crate) const fn name_is(actual: &str, base: &str, suffix: &str) -> bool {
    let (a, b, s) = (actual.as_bytes(), base.as_bytes(), suffix.as_bytes());
    if a.len() != b.len() + s.len() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    let mut j = 0;
    while j < s.len() {
        if a[b.len() + j] != s[j] {
            return false;
        }
        j += 1;
    }
    true
}

/// Write a scenario once as `async fn scenario(b: Backend)` and generate the
/// two tests `scenario_sqlite` and `scenario_postgres`:
///
/// ```ignore
/// backend_tests!(scenario => scenario_sqlite, scenario_postgres);
/// ```
///
/// (Both names are spelled out because stable `macro_rules!` can't paste
/// identifiers; a compile-time check rejects any other spelling.) The
/// PostgreSQL variant prints `SKIP postgres: ...` and passes when
/// `SURGE_TEST_POSTGRES_URL` is unset, unless `SURGE_REQUIRE_BACKENDS`
/// contains `postgres`.
macro_rules! backend_tests {
    ($($scenario:ident => $sqlite:ident, $postgres:ident;)+) => {
        $(
            const _: () = assert!(
                crate::common::name_is(stringify!($sqlite), stringify!($scenario), "_sqlite")
                    && crate::common::name_is(
                        stringify!($postgres),
                        stringify!($scenario),
                        "_postgres"
                    ),
                "backend_tests!: test names must be <scenario>_sqlite and <scenario>_postgres"
            );

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $sqlite() {
                $scenario(crate::common::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $postgres() {
                if crate::common::postgres_enabled() {
                    $scenario(crate::common::Backend::Postgres).await;
                }
            }
        )+
    };
}
pub(crate) use backend_tests;

// ---------------------------------------------------------------------------
// Test databases
// ---------------------------------------------------------------------------

/// A throw-away database: a fresh temp dir holding a SQLite file, or a
/// private PostgreSQL schema `surge_t_<uuid>`. Removed on drop.
pub(crate) struct TestDb {
    pub(crate) backend: Backend,
    /// The URL to hand the server.
    pub(crate) url: String,
    /// SQLite: the temp dir and the database file in it.
    pub(crate) dir: Option<PathBuf>,
    pub(crate) sqlite_path: Option<PathBuf>,
    /// PostgreSQL: the base URL (as given in the env) and the schema name.
    pub(crate) pg_base_url: Option<String>,
    pub(crate) pg_schema: Option<String>,
}

pub(crate) fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A fresh, empty temp dir under `std::env::temp_dir()`.
pub(crate) fn fresh_temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("surge-test-{tag}-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

impl TestDb {
    /// Panics for `Backend::Postgres` when `SURGE_TEST_POSTGRES_URL` is unset:
    /// callers guard with [`postgres_enabled`] (the macro does).
    pub(crate) async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = fresh_temp_dir("sqlite");
                let path = dir.join("surge.db");
                let url = format!("sqlite://{}", path.display());
                TestDb {
                    backend,
                    url,
                    dir: Some(dir),
                    sqlite_path: Some(path),
                    pg_base_url: None,
                    pg_schema: None,
                }
            }
            Backend::Postgres => {
                let base = postgres_base_url()
                    .expect("Postgres TestDb requested but SURGE_TEST_POSTGRES_URL is unset");
                let (schema, url) = surge_testkit::new_schema(&base, "surge_t_").await;
                TestDb {
                    backend,
                    url,
                    dir: None,
                    sqlite_path: None,
                    pg_base_url: Some(base),
                    pg_schema: Some(schema),
                }
            }
        }
    }

    /// The server URL for this database, but reaching PostgreSQL through
    /// `host_port` (e.g. a test proxy). SQLite: unchanged.
    pub(crate) fn url_via(&self, host_port: &str) -> String {
        match (&self.pg_base_url, &self.pg_schema) {
            (Some(base), Some(schema)) => {
                surge_testkit::with_search_path(&replace_host_port(base, host_port), schema)
            }
            _ => self.url.clone(),
        }
    }
}

/// The `host:port` of a `postgres://[user[:pw]@]host[:port]/db` URL
/// (port defaults to 5432).
pub(crate) fn host_port_of(url: &str) -> String {
    let after_scheme = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = after_scheme
        .split(['/', '?'])
        .next()
        .unwrap_or(after_scheme);
    let host_port = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:5432")
    }
}

/// `url` with its `host[:port]` replaced by `host_port`.
pub(crate) fn replace_host_port(url: &str, host_port: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL with a scheme");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let userinfo = authority.rsplit_once('@').map(|(u, _)| u);
    match userinfo {
        Some(u) => format!("{scheme}://{u}@{host_port}{tail}"),
        None => format!("{scheme}://{host_port}{tail}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let (Some(base), Some(schema)) = (self.pg_base_url.clone(), self.pg_schema.clone()) {
            // Drop may run inside a tokio runtime: do the async work on a
            // thread of our own with its own small runtime, and wait for it.
            let handle = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime for schema cleanup");
                rt.block_on(async move {
                    use sqlx::Connection;
                    match sqlx::PgConnection::connect(&base).await {
                        Ok(mut conn) => {
                            if let Err(e) =
                                sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                                    .execute(&mut conn)
                                    .await
                            {
                                eprintln!("warning: could not drop schema {schema}: {e}");
                            }
                            conn.close().await.ok();
                        }
                        Err(e) => eprintln!("warning: could not drop schema {schema}: {e}"),
                    }
                });
            });
            let _ = handle.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Server process
// ---------------------------------------------------------------------------

/// What to start: `surge serve --bind 127.0.0.1:0 --database-url <db> <args>`,
/// with every inherited `SURGE_*` variable removed (so the developer's shell
/// can't leak config into a test) and `envs` added.
pub(crate) struct ServerBuilder {
    backend: Backend,
    db: Option<TestDb>,
    database_url: Option<String>,
    bind: Option<String>,
    pass_bind: bool,
    pass_database_url: bool,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl ServerBuilder {
    pub(crate) fn new(backend: Backend) -> ServerBuilder {
        ServerBuilder {
            backend,
            db: None,
            database_url: None,
            bind: None,
            pass_bind: true,
            pass_database_url: true,
            args: Vec::new(),
            envs: Vec::new(),
        }
    }

    /// Use this database (otherwise a fresh one is made for the backend).
    pub(crate) fn db(mut self, db: TestDb) -> Self {
        self.db = Some(db);
        self
    }

    /// Hand the server this URL instead of the database's own (e.g. through
    /// a proxy).
    pub(crate) fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = Some(url.into());
        self
    }

    pub(crate) fn bind(mut self, addr: impl Into<String>) -> Self {
        self.bind = Some(addr.into());
        self
    }

    /// Don't pass `--bind` (it comes from env or a config file).
    pub(crate) fn without_bind_flag(mut self) -> Self {
        self.pass_bind = false;
        self
    }

    /// Don't pass `--database-url` (it comes from env or a config file).
    pub(crate) fn without_database_url_flag(mut self) -> Self {
        self.pass_database_url = false;
        self
    }

    pub(crate) fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub(crate) fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }

    async fn prepare(&mut self) -> (TestDb, Command) {
        let db = match self.db.take() {
            Some(db) => db,
            None => TestDb::new(self.backend).await,
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_surge"));
        cmd.arg("serve");
        if self.pass_bind {
            cmd.arg("--bind")
                .arg(self.bind.clone().unwrap_or_else(|| "127.0.0.1:0".into()));
        }
        if self.pass_database_url {
            cmd.arg("--database-url")
                .arg(self.database_url.clone().unwrap_or_else(|| db.url.clone()));
        }
        cmd.args(&self.args);
        for (k, _) in std::env::vars() {
            if k.starts_with("SURGE_") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        (db, cmd)
    }

    /// Spawns the server: its database, command line (for messages), process
    /// and captured stderr.
    async fn spawn(&mut self) -> (TestDb, String, Child, Arc<Mutex<String>>) {
        let (db, mut cmd) = self.prepare().await;
        let cmd_line = format!("{cmd:?}");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd_line}: {e}"));
        let stderr = capture(child.stderr.take().expect("stderr piped"));
        (db, cmd_line, child, stderr)
    }

    /// Start the server and wait for its listening line.
    pub(crate) async fn start(mut self) -> Server {
        let (db, cmd_line, mut child, stderr) = self.spawn().await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let stdout = child.stdout.take().expect("stdout piped");
        // Every stdout line after the listening line is kept, so tests can
        // check that stdout carries nothing else.
        let stdout_rest = Arc::new(Mutex::new(Vec::<String>::new()));
        let rest = stdout_rest.clone();
        std::thread::spawn(move || {
            let mut listening_seen = false;
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if listening_seen {
                            rest.lock().unwrap().push(l.clone());
                        }
                        if l.contains("surge listening on http://") {
                            listening_seen = true;
                        }
                        // Once the test stopped listening, just keep draining.
                        let _ = tx.send(l);
                    }
                    Err(_) => break,
                }
            }
        });

        let deadline = Instant::now() + STARTUP_DEADLINE;
        let mut seen = Vec::new();
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some(line)) => {
                    if let Some(rest) = line.trim().strip_prefix("surge listening on http://") {
                        break rest.trim().to_string();
                    }
                    seen.push(line);
                }
                Ok(None) => {
                    // stdout closed: the process is dying.
                    let status = wait_with_deadline_blocking(&mut child, Duration::from_secs(10));
                    std::thread::sleep(Duration::from_millis(200));
                    panic!(
                        "server exited before listening ({status:?})\ncommand: {cmd_line}\n\
                         stdout: {seen:?}\nstderr:\n{}",
                        snapshot(&stderr)
                    );
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "server printed no `surge listening on http://IP:PORT` line within \
                         {STARTUP_DEADLINE:?}\ncommand: {cmd_line}\nstdout: {seen:?}\nstderr:\n{}",
                        snapshot(&stderr)
                    );
                }
            }
        };
        let connect_addr = loopback_for(&addr);
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_SAFETY_NET)
            .build()
            .expect("reqwest client");
        Server {
            base: format!("http://{connect_addr}"),
            listening_addr: addr,
            client,
            child: Some(child),
            stderr,
            stdout_rest,
            db: Some(db),
        }
    }

    /// Start the server expecting it to refuse to start: returns its exit
    /// status and stderr. Panics if it prints its listening line.
    pub(crate) async fn start_expecting_exit(mut self) -> (ExitStatus, String) {
        let (db, cmd_line, mut child, stderr) = self.spawn().await;
        let stdout = capture(child.stdout.take().expect("stdout piped"));
        let deadline = Instant::now() + STARTUP_DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if snapshot(&stdout).contains("surge listening on") || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server was expected to refuse to start but did not exit\ncommand: \
                     {cmd_line}\nstdout: {}\nstderr:\n{}",
                    snapshot(&stdout),
                    snapshot(&stderr)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // Let the reader thread collect the rest of stderr.
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(db);
        (status, snapshot(&stderr))
    }
}

fn capture<R: Read + Send + 'static>(mut r: R) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let out = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => out
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n])),
            }
        }
    });
    buf
}

fn snapshot(buf: &Arc<Mutex<String>>) -> String {
    buf.lock().map(|s| s.clone()).unwrap_or_default()
}

/// `0.0.0.0:P` → `127.0.0.1:P`, `[::]:P` → `[::1]:P`, others unchanged.
fn loopback_for(addr: &str) -> String {
    if let Some(port) = addr.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = addr.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        addr.to_string()
    }
}

fn wait_with_deadline_blocking(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `surge serve`. Killed (and its database dropped) on drop.
pub(crate) struct Server {
    /// `http://127.0.0.1:PORT`
    pub(crate) base: String,
    /// The address from the listening line, as printed.
    pub(crate) listening_addr: String,
    pub(crate) client: reqwest::Client,
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
    stdout_rest: Arc<Mutex<Vec<String>>>,
    db: Option<TestDb>,
}

impl Server {
    /// A server on a fresh database with `args` after the default flags.
    pub(crate) async fn start(backend: Backend, args: &[&str]) -> Server {
        ServerBuilder::new(backend)
            .args(args.iter().copied())
            .start()
            .await
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub(crate) fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.as_ref().expect("child").id() as i32)
    }

    pub(crate) fn db(&self) -> &TestDb {
        self.db.as_ref().expect("db")
    }

    pub(crate) fn stderr(&self) -> String {
        snapshot(&self.stderr)
    }

    /// Lines the server printed to stdout after its listening line.
    pub(crate) fn stdout_after_listening(&self) -> Vec<String> {
        self.stdout_rest
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    pub(crate) fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).expect("send signal");
    }

    /// Wait (polling, without blocking the runtime) for the process to
    /// exit; `None` if it is still running after `limit`.
    pub(crate) async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self
                .child
                .as_mut()
                .expect("child")
                .try_wait()
                .expect("try_wait")
            {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub(crate) async fn send(&self, rb: RequestBuilder) -> Resp {
        let resp = rb.send().await.unwrap_or_else(|e| {
            panic!(
                "request failed: {e}\nserver stderr:\n{}",
                tail(&self.stderr(), 4000)
            )
        });
        Resp::read(resp).await
    }

    pub(crate) async fn get(&self, path: &str) -> Resp {
        self.send(self.request(Method::GET, path)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Resp {
        self.send(self.request(Method::DELETE, path)).await
    }

    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> Resp {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    pub(crate) async fn patch_json(&self, path: &str, body: &Value) -> Resp {
        self.send(self.request(Method::PATCH, path).json(body))
            .await
    }

    /// Send `raw` as the body with the given content type (or none).
    pub(crate) async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        raw: impl Into<reqwest::Body>,
    ) -> Resp {
        let mut rb = self.request(method, path).body(raw);
        if let Some(ct) = content_type {
            rb = rb.header("content-type", ct);
        }
        self.send(rb).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- surge stderr (last 8 KiB) ----\n{}\n---- end surge stderr ----",
                tail(&self.stderr(), 8192)
            );
        }
        // The database goes after the process (a schema can't be dropped
        // cleanly under a live server).
        drop(self.db.take());
    }
}

pub(crate) fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

// ---------------------------------------------------------------------------
// Responses and assertions
// ---------------------------------------------------------------------------

#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) text: String,
}

impl Resp {
    pub(crate) async fn read(resp: reqwest::Response) -> Resp {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("read response body");
        Resp {
            status,
            headers,
            text,
        }
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {}, body: {:?}",
                self.status,
                tail(&self.text, 2000)
            )
        })
    }

    /// Asserts the status, with the body in the message.
    #[track_caller]
    pub(crate) fn expect_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "expected status {status}, got {}; body: {}",
            self.status,
            tail(&self.text, 2000)
        );
        self
    }

    #[track_caller]
    pub(crate) fn assert_json_content_type(&self) {
        let ct = self.header("content-type").unwrap_or("");
        assert!(
            ct.to_ascii_lowercase().starts_with("application/json"),
            "expected Content-Type application/json, got {ct:?} (status {}, body {:?})",
            self.status,
            tail(&self.text, 500)
        );
    }

    #[track_caller]
    pub(crate) fn request_id(&self) -> String {
        let id = self
            .header("x-request-id")
            .unwrap_or_else(|| {
                panic!(
                    "response has no x-request-id header (status {}, headers {:?})",
                    self.status, self.headers
                )
            })
            .to_string();
        assert!(!id.is_empty(), "x-request-id header is empty");
        id
    }
}

/// Asserts the contract's error response: `status`, JSON content type,
/// `{"error":{"code":code,"message":"…","details":[{"field","message"}]?}}`
/// (details omitted when empty) and an `x-request-id` header. Returns the body.
#[track_caller]
pub(crate) fn assert_error(resp: &Resp, status: u16, code: &str) -> Value {
    resp.expect_status(status);
    resp.assert_json_content_type();
    resp.request_id();
    let body = resp.json();
    assert_error_shape(&body, code);
    body
}

#[track_caller]
pub(crate) fn assert_error_shape(body: &Value, code: &str) {
    let err = body
        .get("error")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("no `error` object in {body}"));
    assert_eq!(
        err.get("code").and_then(Value::as_str),
        Some(code),
        "error.code in {body}"
    );
    let message = err.get("message").and_then(Value::as_str);
    assert!(
        message.is_some_and(|m| !m.trim().is_empty()),
        "error.message must be a non-empty string in {body}"
    );
    if let Some(details) = err.get("details") {
        let details = details
            .as_array()
            .unwrap_or_else(|| panic!("error.details must be an array in {body}"));
        assert!(
            !details.is_empty(),
            "error.details must be omitted when empty, got [] in {body}"
        );
        for d in details {
            assert!(
                d.get("field").and_then(Value::as_str).is_some()
                    && d.get("message").and_then(Value::as_str).is_some(),
                "each detail needs string `field` and `message`: {d} in {body}"
            );
        }
    }
}

/// The `field`s named in `error.details` (empty if none).
pub(crate) fn detail_fields(body: &Value) -> Vec<String> {
    body.pointer("/error/details")
        .and_then(Value::as_array)
        .map(|ds| {
            ds.iter()
                .filter_map(|d| d.get("field").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts a 422 `validation_failed` whose details name exactly the
/// fields in `fields` (each at least once; no other fields).
#[track_caller]
pub(crate) fn assert_validation_fields(resp: &Resp, fields: &[&str]) -> Value {
    let body = assert_error(resp, 422, "validation_failed");
    let mut got = detail_fields(&body);
    got.sort();
    got.dedup();
    let mut want: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    want.sort();
    assert_eq!(
        got, want,
        "422 details should name exactly {want:?}; body {body}"
    );
    body
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` — RFC 3339 date-time.
pub(crate) fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.end <= b.len() && b[r].iter().all(u8::is_ascii_digit);
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !(b[10] == b'T' || b[10] == b't')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z'] | [b'z'] => true,
        [sign, h1, h2, b':', m1, m2] if *sign == b'+' || *sign == b'-' => {
            [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit())
        }
        _ => false,
    }
}

#[track_caller]
pub(crate) fn assert_rfc3339(v: &Value, what: &str) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} must be an RFC 3339 string, got {v}"));
    assert!(is_rfc3339(s), "{what} is not RFC 3339: {s:?}");
}

/// Poll `f` every 250 ms until it returns `Some`, or panic after `limit`
/// with the last observation.
pub(crate) async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) => {
                if Instant::now() > deadline {
                    panic!("{what}: not reached within {limit:?}; last: {last}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Write `contents` to a new file in a fresh temp dir (removed with the
/// returned guard).
pub(crate) struct TempFile {
    pub(crate) path: PathBuf,
    dir: PathBuf,
}

impl TempFile {
    pub(crate) fn new(name: &str, contents: &str) -> TempFile {
        let dir = fresh_temp_dir("file");
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        TempFile { path, dir }
    }

    pub(crate) fn path_str(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The `surge_http_requests_in_flight` gauge as `/metrics` reports it (the
/// `/metrics` request itself may be counted: compare against a baseline).
pub(crate) async fn in_flight_gauge(server: &Server) -> f64 {
    let text = server.get("/metrics").await.text;
    text.lines()
        .filter(|l| l.starts_with("surge_http_requests_in_flight"))
        .filter_map(|l| l.split_whitespace().last())
        .filter_map(|v| v.parse::<f64>().ok())
        .sum()
}

/// Poll until the in-flight gauge reaches `at_least` (a request the test
/// fired has reached the server). Generous deadline; bounds a hang only.
pub(crate) async fn wait_for_in_flight(server: &Server, at_least: f64) {
    eventually(Duration::from_secs(30), "request in flight", || async {
        let v = in_flight_gauge(server).await;
        if v >= at_least {
            Ok(())
        } else {
            Err(format!("surge_http_requests_in_flight = {v}"))
        }
    })
    .await
}
