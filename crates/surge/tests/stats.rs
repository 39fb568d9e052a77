//! `GET /stats` checked against known activity, on every broker: submit N
//! tasks and the counts move by N; M requests move the request counters by
//! M; errors land in their category; what the workers ran, their leases,
//! schedules and failures are listed; the task lists need the token.

mod common;

use std::time::Duration;

use common::{Backend, Server, ServerBuilder, eventually};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// A `surge serve` whose broker is `broker` (with `args` after it), or
/// `None` after the SKIP line when that backend is not configured.
async fn server(broker: Broker, args: &[&str]) -> Option<Server> {
    let builder = match broker {
        Broker::Sqlite => ServerBuilder::new(Backend::Sqlite),
        Broker::Postgres => {
            if !common::postgres_enabled() {
                return None;
            }
            ServerBuilder::new(Backend::Postgres)
        }
        Broker::Redis => {
            let url = common::redis_url()?;
            ServerBuilder::new(Backend::Sqlite)
                .args(["--broker-url", url.as_str()])
                .env(
                    "SURGE_BROKER_NAMESPACE",
                    format!("surge-test-{}", common::unique_suffix()),
                )
        }
    };
    Some(builder.args(args.iter().copied()).start().await)
}

/// Which broker a scenario runs on (SQLite and PostgreSQL also hold the
/// API's database; Redis runs beside a SQLite database).
#[derive(Debug, Clone, Copy)]
enum Broker {
    Sqlite,
    Postgres,
    Redis,
}

/// One test per broker: `scenario_sqlite`, `scenario_postgres` and
/// `scenario_redis` (the last two print SKIP and pass when not configured).
macro_rules! on_every_broker {
    ($($scenario:ident => $sqlite:ident, $postgres:ident, $redis:ident;)+) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $sqlite() {
            $scenario(Broker::Sqlite).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $postgres() {
            $scenario(Broker::Postgres).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $redis() {
            $scenario(Broker::Redis).await;
        }
    )+};
}

on_every_broker! {
    counts_move_with_known_activity => counts_move_with_known_activity_sqlite,
        counts_move_with_known_activity_postgres, counts_move_with_known_activity_redis;
    reports_what_the_workers_ran => reports_what_the_workers_ran_sqlite,
        reports_what_the_workers_ran_postgres, reports_what_the_workers_ran_redis;
    pools_show_the_broker_and_the_worker_slots => pools_show_the_broker_and_the_worker_slots_sqlite,
        pools_show_the_broker_and_the_worker_slots_postgres,
        pools_show_the_broker_and_the_worker_slots_redis;
}

async fn stats(server: &Server) -> Value {
    let resp = server.get("/stats").await;
    resp.expect_status(200);
    resp.json()
}

/// `GET /stats` with `Authorization: Bearer <token>`.
async fn stats_with(server: &Server, token: &str) -> common::Resp {
    server
        .send(
            server
                .request(reqwest::Method::GET, "/stats")
                .bearer_auth(token),
        )
        .await
}

/// The server's inbound limiter in a `/stats` document.
fn inbound(s: &Value) -> Value {
    s["limiters"]
        .as_array()
        .expect("limiters")
        .iter()
        .find(|l| l["name"] == json!("http.inbound"))
        .cloned()
        .unwrap_or_else(|| panic!("http.inbound listed: {}", s["limiters"]))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

async fn submit(server: &Server, body: Value) -> String {
    let resp = server.post_json("/tasks", &body).await;
    resp.expect_status(201);
    resp.json()["task"]["id"]
        .as_str()
        .expect("task id")
        .to_owned()
}

/// With no worker running, N submissions move `pending` by N (per state,
/// and on their queue); M requests move the request total and the 2xx class
/// by M (plus the first `/stats` call itself); errors land in their
/// category.
async fn counts_move_with_known_activity(broker: Broker) {
    let Some(server) = server(broker, &["--workers", "0"]).await else {
        return;
    };
    let before = stats(&server).await;
    assert_eq!(before["queue"]["backend"], json!(broker_name(broker)));
    let pending0 = u(&before["queue"]["states"]["pending"]);
    const N: u64 = 7;
    for i in 0..N {
        let queue = if i % 2 == 0 { "default" } else { "emails" };
        submit(&server, json!({"kind": "noop", "args": i, "queue": queue})).await;
    }
    // The broker read is shared and at most a second old: wait for it.
    let after = eventually(WAIT, "pending moved by N", || async {
        let s = stats(&server).await;
        let pending = u(&s["queue"]["states"]["pending"]);
        if pending == pending0 + N {
            Ok(s)
        } else {
            Err(format!("pending {pending}, expected {}", pending0 + N))
        }
    })
    .await;
    let per_queue = |name: &str| {
        after["queue"]["queues"]
            .as_array()
            .expect("queues")
            .iter()
            .find(|q| q["name"] == json!(name))
            .map(|q| u(&q["counts"]["pending"]))
    };
    assert_eq!(per_queue("default"), Some(4));
    assert_eq!(per_queue("emails"), Some(3));
    let active = after["queue"]["active"].as_array().expect("active listed");
    assert_eq!(active.len() as u64, N, "up to 10 per state are listed");
    assert!(active.iter().all(|t| t["state"] == json!("pending")));

    // Requests: nothing else talks to this server now.
    let s1 = stats(&server).await;
    const M: u64 = 25;
    for _ in 0..M {
        server.get("/health").await.expect_status(200);
    }
    const NOT_FOUND: u64 = 3; // business
    for _ in 0..NOT_FOUND {
        server.get("/users/999999").await.expect_status(404);
    }
    const INVALID: u64 = 4; // validation
    for _ in 0..INVALID {
        server
            .post_json("/users", &json!({"name": "", "email": "nope"}))
            .await
            .expect_status(422);
    }
    let s2 = stats(&server).await;
    let moved = |path: &[&str]| {
        let get = |s: &Value| path.iter().fold(s.clone(), |v, k| v[*k].clone());
        u(&get(&s2)) - u(&get(&s1))
    };
    // +1: the first /stats call completed before the second read.
    assert_eq!(
        moved(&["service", "requests_total"]),
        M + NOT_FOUND + INVALID + 1
    );
    assert_eq!(moved(&["service", "status_classes", "2xx"]), M + 1);
    assert_eq!(
        moved(&["service", "status_classes", "4xx"]),
        NOT_FOUND + INVALID
    );
    assert_eq!(moved(&["service", "errors", "business"]), NOT_FOUND);
    assert_eq!(moved(&["service", "errors", "validation"]), INVALID);
    for other in ["network", "timeout", "http_status", "system"] {
        assert_eq!(moved(&["service", "errors", other]), 0, "{other}");
    }
    let latency = &s2["service"]["latency"];
    assert!(
        u(&latency["count"]) >= M + NOT_FOUND + INVALID,
        "the window holds the requests: {latency}"
    );
    assert!(latency["p50_ms"].as_f64().expect("p50") <= latency["p99_ms"].as_f64().expect("p99"));
    assert_eq!(s2["service"]["shed_total"], json!(0));
    // The inbound limit is a limiter of the process: the API requests (not
    // /health, not /stats) went through it.
    let (l1, l2) = (inbound(&s1), inbound(&s2));
    assert_eq!(l2["limit"], json!(4096), "--max-in-flight's default");
    assert_eq!(l2["algorithm"], json!("static"));
    assert_eq!(
        u(&l2["successes"]) - u(&l1["successes"]),
        NOT_FOUND + INVALID
    );
    assert_eq!(l2["in_flight"], json!(0));
    assert!(
        s2["caches"].is_array(),
        "caches listed (none in surge serve yet)"
    );
    assert_eq!(s2["pools"][0]["name"], json!("database"));
    assert!(u(&s2["pools"][0]["max"]) >= 1);
}

fn broker_name(b: Broker) -> &'static str {
    match b {
        Broker::Sqlite => "sqlite",
        Broker::Postgres => "postgres",
        Broker::Redis => "redis",
    }
}

/// With workers: N tasks that succeed and one that fails show as N
/// succeeded (broker counts and the kind's own counters), the failure is
/// listed with its error and attempts, the worker with a live lease, a
/// schedule with its next fire time; the series and the runtime lag fill in.
async fn reports_what_the_workers_ran(broker: Broker) {
    let Some(server) = server(broker, &["--workers", "2"]).await else {
        return;
    };
    const N: u64 = 5;
    for i in 0..N {
        submit(&server, json!({"kind": "noop", "args": i})).await;
    }
    let failing = submit(
        &server,
        json!({"kind": "fail", "args": {"category": "validation", "message": "bad input 42"}}),
    )
    .await;
    let dying = submit(
        &server,
        json!({"kind": "fail", "args": {"category": "system", "message": "disk on fire"},
               "max_retries": 1, "backoff": {"base_ms": 1, "cap_ms": 1}}),
    )
    .await;
    let resp = server
        .post_json(
            "/schedules",
            &json!({"name": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Paris",
                    "task": {"kind": "noop"}}),
        )
        .await;
    resp.expect_status(201);

    let s = eventually(WAIT, "the workers ran everything", || async {
        let s = stats(&server).await;
        let q = &s["queue"];
        let succeeded = u(&q["states"]["succeeded"]);
        let (failed, dead) = (u(&q["states"]["failed"]), u(&q["states"]["dead"]));
        let points = s["series"]["points"].as_array().map_or(0, Vec::len);
        if succeeded == N && failed == 1 && dead == 1 && points >= 2 {
            Ok(s)
        } else {
            Err(format!(
                "succeeded {succeeded}, failed {failed}, dead {dead}, points {points}"
            ))
        }
    })
    .await;
    let q = &s["queue"];
    let kind = |name: &str| {
        q["kinds"]
            .as_array()
            .expect("kinds")
            .iter()
            .find(|k| k["kind"] == json!(name))
            .cloned()
            .unwrap_or_else(|| panic!("kind {name} listed: {}", q["kinds"]))
    };
    let noop = kind("noop");
    assert_eq!(u(&noop["finished"]["succeeded"]), N);
    assert_eq!(u(&noop["run"]["count"]), N, "{noop}");
    let fail = kind("fail");
    assert_eq!(u(&fail["finished"]["failed"]), 1, "{fail}");
    assert_eq!(u(&fail["finished"]["retry"]), 1, "{fail}");
    assert_eq!(u(&fail["finished"]["dead"]), 1, "{fail}");
    assert_eq!(u(&q["retries_total"]), 1);

    let failures = q["failures"].as_array().expect("failures listed");
    let listed = |id: &str| {
        failures
            .iter()
            .find(|t| t["id"] == json!(id))
            .cloned()
            .unwrap_or_else(|| panic!("task {id} among the failures: {failures:?}"))
    };
    let f = listed(&failing);
    assert_eq!(f["state"], json!("failed"));
    assert_eq!(f["attempts"], json!(1));
    assert_eq!(f["error"]["category"], json!("validation"));
    assert_eq!(f["error"]["message"], json!("bad input 42"));
    let d = listed(&dying);
    assert_eq!(d["state"], json!("dead"));
    assert_eq!(d["attempts"], json!(2));
    assert_eq!(d["error"]["message"], json!("disk on fire"));

    let workers = q["workers"].as_array().expect("workers listed");
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert_eq!(workers[0]["concurrency"], json!(2));
    assert!(workers[0]["lease_left_seconds"].as_f64().expect("lease") > 0.0);
    assert!(workers[0]["heartbeat_age_seconds"].as_f64().expect("age") >= 0.0);
    common::assert_rfc3339(&workers[0]["last_heartbeat"], "last_heartbeat");

    let schedules = q["schedules"].as_array().expect("schedules listed");
    assert_eq!(schedules.len(), 1);
    assert_eq!(schedules[0]["name"], json!("nightly"));
    common::assert_rfc3339(&schedules[0]["next_fire_at"], "next_fire_at");

    let lag = &s["service"]["runtime_lag"];
    assert!(u(&lag["count"]) > 0, "the lag probe ran: {lag}");
    let last = s["series"]["points"]
        .as_array()
        .and_then(|p| p.last())
        .cloned()
        .expect("a point");
    assert!(last["t"].as_i64().expect("t") > 0);
    assert!(last["lag_max_ms"].is_number(), "{last}");
    assert!(
        s["window_seconds"].as_f64().expect("window") <= 61.0,
        "a one-minute window at most: {s}"
    );
}

/// `/stats` is open like `/metrics`, but with a token configured its
/// task-level lists need the token; a wrong one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn task_lists_need_the_token() {
    let server = ServerBuilder::new(Backend::Sqlite)
        .args(["--workers", "1", "--api-token", "s3cret"])
        .start()
        .await;
    let open = stats(&server).await;
    assert_eq!(
        open["access"],
        json!({"token_required": true, "details": false})
    );
    for list in ["workers", "schedules", "failures", "active"] {
        assert!(
            open["queue"][list].is_null(),
            "{list} hidden: {}",
            open["queue"]
        );
    }
    assert!(
        open["queue"]["states"]["pending"].is_u64(),
        "counts stay open"
    );
    assert!(open["service"]["requests_total"].is_u64());

    let with = stats_with(&server, "s3cret").await;
    with.expect_status(200);
    let with = with.json();
    assert_eq!(with["access"]["details"], json!(true));
    let workers = eventually(WAIT, "the worker registered", || async {
        let s = stats_with(&server, "s3cret").await.json();
        match s["queue"]["workers"].as_array() {
            Some(w) if !w.is_empty() => Ok(w.len()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(workers, 1);

    let wrong = stats_with(&server, "guess").await;
    common::assert_error(&wrong, 401, "unauthorized");
}

/// The document is described in the OpenAPI document.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stats_is_in_the_openapi_document() {
    let server = Server::start(Backend::Sqlite, &["--workers", "0"]).await;
    let doc = server.get("/openapi.json").await.json();
    let op = &doc["paths"]["/stats"]["get"];
    assert_eq!(
        op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        json!("#/components/schemas/StatsView"),
        "{op}"
    );
    let schemas = &doc["components"]["schemas"];
    let view = &schemas["StatsView"]["properties"];
    for field in [
        "service",
        "queue",
        "pools",
        "caches",
        "limiters",
        "series",
        "access",
        "window_seconds",
    ] {
        assert!(view[field].is_object(), "StatsView.{field}: {view}");
    }
    for field in [
        "latency",
        "errors",
        "in_flight",
        "shed_total",
        "runtime_lag",
    ] {
        assert!(
            schemas["ServiceStats"]["properties"][field].is_object(),
            "ServiceStats.{field}"
        );
    }
    for field in [
        "states",
        "kinds",
        "workers",
        "schedules",
        "failures",
        "active",
    ] {
        assert!(
            schemas["QueueStats"]["properties"][field].is_object(),
            "QueueStats.{field}"
        );
    }
    for (schema, field) in [("LimiterView", "rejected"), ("CacheView", "hit_ratio")] {
        assert!(
            schemas[schema]["properties"][field].is_object(),
            "{schema}.{field}"
        );
    }
    // The queue API's own `QueueView` (GET /queues) is still there, unmixed.
    assert!(schemas["QueueView"]["properties"]["counts"].is_object());
}

/// A request shed at `--max-in-flight` shows as shed and as a refusal of
/// the `http.inbound` limiter, and the held one as in flight under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shed_requests_show_in_the_service_and_the_limiter() {
    let server = Server::start(Backend::Sqlite, &["--workers", "0", "--max-in-flight", "1"]).await;
    let slow = {
        let rb = server.request(reqwest::Method::GET, "/api/data?delay_ms=3000");
        tokio::spawn(rb.send())
    };
    // /stats is not under the limit: it sees the slow request take the slot.
    eventually(WAIT, "the slow request holds the slot", || async {
        let held = inbound(&stats(&server).await)["in_flight"].clone();
        if held == json!(1) {
            Ok(())
        } else {
            Err(held.to_string())
        }
    })
    .await;
    let shed = server.get("/api/data?delay_ms=0").await;
    common::assert_error(&shed, 503, "overloaded");
    let s = stats(&server).await;
    assert_eq!(s["service"]["shed_total"], json!(1));
    let inbound = inbound(&s);
    assert_eq!(inbound["limit"], json!(1));
    assert_eq!(
        inbound["in_flight"],
        json!(1),
        "the slow request holds the slot"
    );
    assert_eq!(inbound["rejected"], json!(1));
    assert!(
        u(&s["service"]["in_flight"]) >= 2,
        "the slow one and this /stats"
    );
    let done = slow.await.expect("joined").expect("the slow request");
    assert_eq!(done.status(), 200);
}

/// The named pool in a `/stats` document.
fn pool(s: &Value, name: &str) -> Option<Value> {
    s["pools"]
        .as_array()
        .expect("pools")
        .iter()
        .find(|p| p["name"] == json!(name))
        .cloned()
}

/// The pools list the database, the broker's connections (not on Redis:
/// one multiplexed connection) and the embedded workers' slots: two long
/// tasks take both slots, three more wait for them, and cancelling them
/// frees the slots.
async fn pools_show_the_broker_and_the_worker_slots(broker: Broker) {
    let Some(server) = server(broker, &["--workers", "2"]).await else {
        return;
    };
    let s = stats(&server).await;
    assert!(pool(&s, "database").is_some(), "{}", s["pools"]);
    match (broker, pool(&s, "broker")) {
        (Broker::Redis, None) => {}
        (Broker::Redis, Some(p)) => panic!("Redis has no pool: {p}"),
        (_, Some(p)) => {
            assert_eq!(p["backend"], json!(broker_name(broker)));
            assert!(u(&p["max"]) >= 1, "{p}");
            assert!(u(&p["size"]) <= u(&p["max"]), "{p}");
            assert_eq!(u(&p["size"]), u(&p["idle"]) + u(&p["in_use"]), "{p}");
            assert!(p["waiting"].is_null(), "not counted for the broker: {p}");
        }
        (_, None) => panic!("the broker pool is listed: {}", s["pools"]),
    }
    let slots = pool(&s, "worker slots").expect("worker slots listed");
    assert_eq!(u(&slots["size"]), 2, "{slots}");
    assert_eq!(u(&slots["max"]), 2, "{slots}");

    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(submit(&server, json!({"kind": "sleep", "args": {"ms": 120_000}})).await);
    }
    eventually(WAIT, "both slots taken, three tasks waiting", || async {
        let s = stats(&server).await;
        let p = pool(&s, "worker slots").expect("worker slots");
        let (in_use, idle, waiting) = (u(&p["in_use"]), u(&p["idle"]), u(&p["waiting"]));
        if in_use == 2 && idle == 0 && waiting == 3 {
            Ok(())
        } else {
            Err(format!("in use {in_use}, idle {idle}, waiting {waiting}"))
        }
    })
    .await;
    for id in &ids {
        let resp = server
            .post_json(&format!("/tasks/{id}/cancel"), &json!({}))
            .await;
        assert!(resp.status.is_success(), "cancel {id}: {}", resp.status);
    }
    eventually(WAIT, "the slots are free again", || async {
        let s = stats(&server).await;
        let p = pool(&s, "worker slots").expect("worker slots");
        let (in_use, waiting) = (u(&p["in_use"]), u(&p["waiting"]));
        if in_use == 0 && waiting == 0 {
            Ok(())
        } else {
            Err(format!("in use {in_use}, waiting {waiting}"))
        }
    })
    .await;
}
