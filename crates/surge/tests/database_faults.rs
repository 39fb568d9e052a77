//! The database misbehaving under a running server: a SQLite file locked by
//! another process, and PostgreSQL becoming unreachable (through a TCP
//! proxy the test controls) and coming back.

mod common;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{
    Backend, Resp, Server, ServerBuilder, TestDb, assert_error, eventually, host_port_of,
};
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Generous bound for "recovers without a restart": the pool only has to
/// reconnect. Only bounds a hang.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(30);

#[track_caller]
fn assert_database_unavailable(resp: &Resp) {
    assert_error(resp, 503, "database_unavailable");
    let retry = resp.header("retry-after").unwrap_or("");
    assert!(
        !retry.trim().is_empty(),
        "503 database_unavailable must carry Retry-After: {:?}",
        resp.headers
    );
}

// ---------------------------------------------------------------------------
// SQLite: the file is locked by someone else
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_locked_database_gives_503_database_unavailable_then_recovers() {
    let server = Server::start(Backend::Sqlite, &["--db-acquire-timeout", "1"]).await;
    server
        .post_json(
            "/users",
            &json!({"name": "Before", "email": "before@example.com"}),
        )
        .await
        .expect_status(201);

    // Another process (this test) takes the write lock and holds it.
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(&server.db().url)
        .expect("sqlite url")
        .busy_timeout(Duration::from_secs(30));
    let mut locker = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("open the server's SQLite file from the test");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .expect("BEGIN EXCLUSIVE");

    let body = json!({"name": "Blocked", "email": "blocked@example.com"});
    let resp = server.post_json("/users", &body).await;
    assert_database_unavailable(&resp);

    sqlx::query("ROLLBACK")
        .execute(&mut locker)
        .await
        .expect("ROLLBACK");
    locker.close().await.ok();

    // Released: the same POST now succeeds (the failed one stored nothing).
    let created = eventually(RECOVERY_DEADLINE, "POST /users after unlock", || async {
        let resp = server.post_json("/users", &body).await;
        if resp.status.as_u16() == 201 {
            Ok(resp.json())
        } else {
            Err(format!("{} {}", resp.status, resp.text))
        }
    })
    .await;
    assert_eq!(created["email"], "blocked@example.com");
    let list = server.get("/users").await.json();
    assert_eq!(list["total"], 2, "{list}");
}

// ---------------------------------------------------------------------------
// PostgreSQL: the network to the database is cut, then restored
// ---------------------------------------------------------------------------

/// A TCP proxy `127.0.0.1:0 → upstream` that can cut every open
/// connection and refuse new ones, then let traffic through again.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut_tx: watch::Sender<u64>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let (cut_tx, cut_rx) = watch::channel(0u64);
        let accept_up = up.clone();
        let accept_task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if !accept_up.load(Ordering::SeqCst) {
                    // "Down": close at once, before any byte is exchanged.
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let mut cut_rx = cut_rx.clone();
                cut_rx.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_rx.changed() => {}
                    }
                    // Both sockets close here.
                });
            }
        });
        Proxy {
            addr,
            up,
            cut_tx,
            accept_task,
        }
    }

    /// Close every proxied connection and refuse new ones.
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut_tx.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.cut_tx.send_modify(|g| *g += 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_outage_gives_503_and_recovers_without_restart() {
    if !common::postgres_enabled() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    let upstream = host_port_of(db.pg_base_url.as_deref().unwrap());
    let proxy = Proxy::start(upstream).await;
    let url = db.url_via(&proxy.addr.to_string());
    let mut server = ServerBuilder::new(Backend::Postgres)
        .db(db)
        .database_url(url)
        .args(["--db-acquire-timeout", "1"])
        .start()
        .await;
    let pid = server.pid();

    let created = server
        .post_json("/users", &json!({"name": "Pg", "email": "pg@example.com"}))
        .await;
    created.expect_status(201);
    let user_path = format!("/users/{}", created.json()["id"]);
    server.get(&user_path).await.expect_status(200);
    server.get("/health").await.expect_status(200);

    // --- outage ---
    proxy.cut();

    let resp = server.get(&user_path).await;
    assert_database_unavailable(&resp);
    assert_database_unavailable(&server.get("/users").await);
    assert_database_unavailable(
        &server
            .post_json(
                "/users",
                &json!({"name": "During", "email": "during@example.com"}),
            )
            .await,
    );

    // /health may reuse a recent check for a short while: poll until it
    // reports the outage.
    let health = eventually(RECOVERY_DEADLINE, "/health reports the outage", || async {
        let resp = server.get("/health").await;
        if resp.status.as_u16() == 503 {
            Ok(resp)
        } else {
            Err(format!("{} {}", resp.status, resp.text))
        }
    })
    .await;
    health.assert_json_content_type();
    health.request_id();
    let h = health.json();
    assert_eq!(h["status"], "unavailable", "{h}");
    assert_eq!(h["checks"]["database"]["status"], "down", "{h}");
    assert!(
        h["checks"]["database"]["error"].is_string(),
        "checks.database.error must describe the failure: {h}"
    );
    assert_eq!(h["error"]["code"], "unavailable", "{h}");
    let message = h["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("database"),
        "the error message must name the component `database`: {h}"
    );
    // Liveness of the process itself is unaffected.
    assert!(server.wait_exit(Duration::from_millis(1)).await.is_none());

    // --- restore: the same process recovers on its own ---
    proxy.restore();

    let user: Value = eventually(RECOVERY_DEADLINE, "GET user after restore", || async {
        let resp = server.get(&user_path).await;
        if resp.status.as_u16() == 200 {
            Ok(resp.json())
        } else {
            Err(format!("{} {}", resp.status, resp.text))
        }
    })
    .await;
    assert_eq!(user["email"], "pg@example.com");
    eventually(RECOVERY_DEADLINE, "/health after restore", || async {
        let resp = server.get("/health").await;
        if resp.status.as_u16() == 200 && resp.json()["status"] == "ok" {
            Ok(())
        } else {
            Err(format!("{} {}", resp.status, resp.text))
        }
    })
    .await;
    assert_error(&server.get("/users/987654").await, 404, "not_found");
    server
        .post_json(
            "/users",
            &json!({"name": "After", "email": "after@example.com"}),
        )
        .await
        .expect_status(201);
    assert_eq!(server.pid(), pid, "no restart happened");
}
