//! The Redis broker: every operation one Lua script, so each is atomic and
//! one round trip; Redis `TIME` inside the scripts is the one clock.
//!
//! # Durability
//! Redis keeps this data in memory. For the no-loss guarantee across a
//! Redis restart, production needs the append-only file: `appendonly yes`
//! with `appendfsync everysec` (at most about a second of acknowledged
//! changes lost on a power cut) or `appendfsync always` (none). Without
//! persistence a Redis restart loses every task; [`RedisBroker::connect`]
//! logs a warning when `CONFIG GET appendonly` says `no`.
//!
//! # Layout
//! Every key starts with `{namespace}:` ([`BrokerConfig::namespace`]); `P`
//! below stands for it. Ids are 32 lower hex digits (UUIDv7: they sort by
//! time), timestamps integer microseconds.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P t:{id}` | hash | the task (fields as in [`TaskRecord`]; args, options, result, error and progress as JSON) |
//! | `P ready:{queue}` | sorted set | due waiting tasks: score `-priority`, member `run_at` (16 hex digits) then id, so claim order is the set's order |
//! | `P delayed:{queue}` | sorted set | waiting tasks not due yet (score `run_at`), moved to `ready` by claims |
//! | `P created` | sorted set | every id (score 0, so ordered by id), for [`Broker::list`] |
//! | `P g:{group}` | sorted set | the ids of a group, for [`Broker::list`] by group |
//! | `P expiring` | sorted set | terminal ids by `expires_at`, for [`Broker::prune`] |
//! | `P u:{key}` | string | the id of the live task holding a unique key |
//! | `P counts` | hash | `{state}:{queue}` → task count, kept at every transition |
//! | `P leases` | sorted set | worker id → lease expiry |
//! | `P workers`, `P heartbeats` | hashes | worker id → [`WorkerInfo`] JSON, last heartbeat |
//! | `P running:{worker}` | set | the ids a worker is running, for rescue and heartbeats |
//! | `P c:{group}` | hash | a chord: members left, and the callback submission |
//! | `P schedule:def`, `:next`, `:last` | hashes | schedule name → JSON, next tick, last tick |
//! | `P rate:{key}` | hash | a token bucket (expires once full again) |
//! | `P wake` | channel | queue names with a task due now or an earlier next ETA (see `wake.rs`) |
//!
//! # Costs and caveats
//! - Claim and complete cost a few commands per task inside one script;
//!   finished tasks leave the ready sets, so neither grows with history.
//! - A claim first moves due tasks of its queues from `delayed` to `ready`,
//!   at most 256 per call: a backlog of thousands is moved over several
//!   claims (never in one script). While such a backlog drains, claim order
//!   holds among the tasks moved so far.
//! - [`Broker::list`] walks `P created` (or the group's set) newest first in
//!   pages of 512 ids per script call, applying the state, kind and queue
//!   filters as it goes: cheap without filters or by group, but a filter
//!   that matches few tasks reads up to every stored task to fill a page.
//! - [`Broker::enqueue`] of a batch is one script, so one huge batch blocks
//!   Redis while it runs (measured: about 10 µs per task, so 10,000 tasks
//!   hold Redis for about 0.1 s). Ids are chosen by the submitter, so a
//!   submission retried after a timeout creates nothing twice.
//! - A task that ends releases its unique key and drops it from its record
//!   (`unique_key` is `None` from then on, also after a manual retry).
//! - A chord created with 0 members enqueues its callback at once.
//! - A task that rescue finds with no attempt left ends `dead` without an
//!   `expires_at` (rescue has no retention to apply): kept until retried by
//!   hand.
//! - A claim whose reply is lost (connection cut after the script ran)
//!   leaves its tasks running under a lease the worker keeps renewing; they
//!   are handed out again only once that lease expires (the worker
//!   re-registers or stops).
//! - Scripts touch keys they compute, so Redis Cluster is not supported
//!   unless every key hashes to one slot: a namespace such as `{surge}`
//!   makes it so.

mod codec;
mod scripts;
mod wake;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, FromRedisValue, Pipeline, RedisError, Script, ScriptInvocation, Value};
use chrono::{DateTime, Utc};
use surge_core::ErrorCategory;
use tokio::time::Instant;

use self::codec::{array, hex, int, micros, push_new_task, text, time_from_micros};
use self::scripts::SCRIPTS;
use self::wake::Waker;
use crate::BrokerError;
use crate::broker::{Broker, BrokerConfig};
use crate::model::{
    CancelOutcome, Completion, Enqueued, Heartbeat, NewTask, Outcome, Progress, QueueCount,
    Rescued, RetryOutcome, Schedule, TaskError, TaskFilter, TaskId, TaskRecord, TaskState,
    WorkerId, WorkerInfo,
};

/// Most tasks one claim script hands out (a larger `limit` gets this many).
const MAX_CLAIM: usize = 1_000;
/// Ids one `list` script call looks at.
const LIST_PAGE: u32 = 512;
/// Tasks one `rescue` or `prune` script call handles.
const SCRIPT_BATCH: u32 = 500;

/// A [`Broker`] on Redis 6.2 or later (see the module docs).
///
/// Cheap to clone: clones share one multiplexed, reconnecting connection
/// and one wake-up subscription.
#[derive(Clone)]
pub struct RedisBroker {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    /// `{namespace}:`.
    prefix: String,
    waker: Waker,
    /// The error a rescued task records.
    lease_expired: String,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// Connects to the Redis at `url` (`redis://[:password@]host[:port][/db]`
    /// or `rediss://…`), checks it is Redis 6.2 or later and loads the
    /// scripts. Keys live under `{config.namespace}:`.
    ///
    /// # Errors
    /// [`BrokerError::InvalidUrl`] for a malformed URL,
    /// [`BrokerError::Invalid`] for an empty namespace,
    /// [`BrokerError::Unavailable`] when Redis cannot be reached within
    /// `config.acquire_timeout`, [`BrokerError::Migration`] when the server
    /// is too old or refuses the scripts.
    pub async fn connect(url: &str, config: &BrokerConfig) -> Result<Self, BrokerError> {
        if config.namespace.is_empty() {
            return Err(BrokerError::Invalid(
                "the Redis namespace must not be empty".to_owned(),
            ));
        }
        let client = Client::open(url).map_err(|e| BrokerError::InvalidUrl(e.to_string()))?;
        let timeout = config.acquire_timeout;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        let conn = tokio::time::timeout(
            timeout,
            ConnectionManager::new_with_config(client.clone(), manager_config),
        )
        .await
        .map_err(|_| {
            BrokerError::unavailable(format!("no Redis connection within {timeout:?}"))
        })??;
        let prefix = format!("{}:", config.namespace);
        let lease_expired = serde_json::to_string(&TaskError::new(
            ErrorCategory::System,
            "lease expired: its worker stopped renewing it, so the task was taken back",
        ))?;
        let broker = RedisBroker {
            inner: Arc::new(Inner {
                conn,
                waker: Waker::new(client, format!("{prefix}wake")),
                prefix,
                lease_expired,
            }),
        };
        broker.check_server().await?;
        Ok(broker)
    }

    /// Refuses servers without the commands the scripts use, loads the
    /// scripts and warns when nothing is persisted.
    async fn check_server(&self) -> Result<(), BrokerError> {
        let mut conn = self.conn();
        let info: String = ::redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await?;
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("0")
            .trim();
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if (major, minor) < (6, 2) {
            return Err(BrokerError::Migration(format!(
                "Redis {version} is too old: surge needs 6.2 or later"
            )));
        }
        for script in SCRIPTS.all() {
            script
                .prepare_invoke()
                .load_async(&mut conn)
                .await
                .map_err(|e| match BrokerError::from(e) {
                    BrokerError::Backend(m) => {
                        BrokerError::Migration(format!("loading a script: {m}"))
                    }
                    other => other,
                })?;
        }
        // Managed services may refuse CONFIG: then there is nothing to say.
        let aof: Result<Vec<String>, RedisError> = ::redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .query_async(&mut conn)
            .await;
        if let Ok(pair) = aof
            && pair.get(1).map(String::as_str) == Some("no")
        {
            tracing::warn!(
                "Redis runs without appendonly: a Redis restart loses every task \
                 (set appendonly yes, appendfsync everysec or always)"
            );
        }
        Ok(())
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.inner.prefix)
    }

    /// An invocation of `script` with the key prefix as `ARGV[1]`.
    fn invocation<'a>(&self, script: &'a Script) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        inv.arg(&self.inner.prefix);
        inv
    }

    /// Runs `inv` (EVALSHA, loading the script on NOSCRIPT).
    async fn run<T: FromRedisValue>(&self, inv: &ScriptInvocation<'_>) -> Result<T, BrokerError> {
        inv.invoke_async(&mut self.conn())
            .await
            .map_err(reply_error)
    }

    /// Sends `cmd`.
    async fn query<T: FromRedisValue>(&self, cmd: &::redis::Cmd) -> Result<T, BrokerError> {
        cmd.query_async(&mut self.conn()).await.map_err(reply_error)
    }

    /// Sends `pipe`.
    async fn query_pipe<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, BrokerError> {
        pipe.query_async(&mut self.conn())
            .await
            .map_err(reply_error)
    }

    /// Runs `inv` and returns the elements of its array reply.
    async fn run_array(&self, inv: &ScriptInvocation<'_>) -> Result<Vec<Value>, BrokerError> {
        array(self.run(inv).await?)
    }

    /// Whether a task of `queues` is ready now (`Some(ZERO)`), else how long
    /// until the earliest delayed one is due (`None`: none is).
    async fn next_due(&self, queues: &[String]) -> Result<Option<Duration>, BrokerError> {
        let mut pipe = ::redis::pipe();
        pipe.cmd("TIME");
        for q in queues {
            pipe.cmd("ZCARD").arg(self.key(&format!("ready:{q}")));
            pipe.cmd("ZRANGE")
                .arg(self.key(&format!("delayed:{q}")))
                .arg(0)
                .arg(0)
                .arg("WITHSCORES");
        }
        let replies: Vec<Value> = self.query_pipe(&pipe).await?;
        let (secs, us): (i64, i64) = ::redis::from_redis_value(&replies[0]).map_err(reply_error)?;
        let now = secs * 1_000_000 + us;
        let mut earliest: Option<i64> = None;
        for pair in replies[1..].chunks(2) {
            let [ready, delayed] = pair else {
                return Err(BrokerError::Data("short pipeline reply".to_owned()));
            };
            if int(ready)? > 0 {
                return Ok(Some(Duration::ZERO));
            }
            let head: Vec<(String, f64)> =
                ::redis::from_redis_value(delayed).map_err(reply_error)?;
            if let Some((_, due)) = head.first() {
                let due = *due as i64;
                earliest = Some(earliest.map_or(due, |e| e.min(due)));
            }
        }
        Ok(earliest.map(|due| Duration::from_micros(u64::try_from(due - now).unwrap_or(0))))
    }
}

/// Maps a failed call: a reply of the wrong shape is corrupt data; a server
/// out of memory (`OOM`), busy with a long script (`BUSY`) or failing over
/// (`MASTERDOWN`, `READONLY`) is unavailable for now; the rest as
/// [`BrokerError`]'s `From` says (connection trouble is `Unavailable`).
fn reply_error(e: RedisError) -> BrokerError {
    use ::redis::ErrorKind;
    let for_now = matches!(e.kind(), ErrorKind::MasterDown | ErrorKind::ReadOnly)
        || matches!(e.code(), Some("OOM" | "BUSY"));
    if e.kind() == ErrorKind::TypeError {
        BrokerError::Data(e.to_string())
    } else if for_now {
        BrokerError::unavailable(e.to_string())
    } else {
        BrokerError::from(e)
    }
}

/// `d` in whole microseconds, saturating.
fn duration_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The `outcome` argument of `complete.lua` and its payload and time.
fn outcome_args(outcome: &Outcome) -> Result<(&'static str, Vec<u8>, i64), BrokerError> {
    let json = |e: &TaskError| serde_json::to_vec(e);
    Ok(match outcome {
        Outcome::Succeeded { result, expires_at } => (
            "succeeded",
            serde_json::to_vec(result)?,
            micros(*expires_at),
        ),
        Outcome::Retry { error, run_at } => ("retrying", json(error)?, micros(*run_at)),
        Outcome::Failed { error, expires_at } => ("failed", json(error)?, micros(*expires_at)),
        Outcome::Dead { error, expires_at } => ("dead", json(error)?, micros(*expires_at)),
        Outcome::Cancelled { expires_at } => ("cancelled", Vec::new(), micros(*expires_at)),
        Outcome::Requeue { run_at } => ("requeue", Vec::new(), micros(*run_at)),
    })
}

/// The state a task was in before `cancel.lua` or `retry.lua`; `None` when
/// there was no such task.
fn state_before(reply: &Value) -> Result<Option<TaskState>, BrokerError> {
    text(reply)?
        .map(|s| {
            TaskState::parse(s).ok_or_else(|| BrokerError::Data(format!("unknown state {s:?}")))
        })
        .transpose()
}

impl Broker for RedisBroker {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        let _: String = self.query(&::redis::cmd("PING")).await?;
        Ok(())
    }

    async fn enqueue(&self, tasks: &[NewTask]) -> Result<Vec<Enqueued>, BrokerError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.invocation(&SCRIPTS.enqueue);
        for t in tasks {
            push_new_task(&mut inv, t)?;
        }
        let reply = self.run_array(&inv).await?;
        if reply.len() != tasks.len() * 2 {
            return Err(BrokerError::Data(format!(
                "enqueue answered {} values for {} tasks",
                reply.len(),
                tasks.len()
            )));
        }
        reply
            .chunks_exact(2)
            .map(|pair| {
                Ok(Enqueued {
                    id: codec::id(&pair[0])?,
                    created: int(&pair[1])? == 1,
                })
            })
            .collect()
    }

    async fn create_chord(
        &self,
        group_id: TaskId,
        members: u32,
        callback: &NewTask,
    ) -> Result<(), BrokerError> {
        let mut inv = self.invocation(&SCRIPTS.chord);
        inv.arg(hex(group_id)).arg(members);
        push_new_task(&mut inv, callback)?;
        let _: Value = self.run(&inv).await?;
        Ok(())
    }

    async fn claim(
        &self,
        worker: WorkerId,
        queues: &[String],
        limit: usize,
    ) -> Result<Vec<TaskRecord>, BrokerError> {
        if limit == 0 || queues.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.invocation(&SCRIPTS.claim);
        inv.arg(hex(worker)).arg(limit.min(MAX_CLAIM));
        let mut named = HashSet::with_capacity(queues.len());
        for q in queues {
            if named.insert(q.as_str()) {
                inv.arg(q);
            }
        }
        codec::records(&self.run_array(&inv).await?)
    }

    async fn wait_for_work(&self, queues: &[String], max_wait: Duration) {
        let deadline = Instant::now() + max_wait;
        let waker = &self.inner.waker;
        if queues.is_empty() || !waker.subscribed(deadline).await {
            tokio::time::sleep_until(deadline).await;
            return;
        }
        // Listen before looking, so that a task enqueued after the look
        // still wakes this waiter.
        let notifiers = waker.notifiers(queues);
        let mut woken: Vec<_> = notifiers.iter().map(|n| Box::pin(n.notified())).collect();
        for n in &mut woken {
            n.as_mut().enable();
        }
        let until = match self.next_due(queues).await {
            Ok(Some(due)) if due.is_zero() => return,
            Ok(Some(due)) => deadline.min(Instant::now() + due),
            Ok(None) | Err(_) => deadline,
        };
        tokio::select! {
            _ = futures_util::future::select_all(woken) => {}
            () = tokio::time::sleep_until(until) => {}
        }
    }

    async fn complete(&self, completions: &[Completion]) -> Result<Vec<bool>, BrokerError> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.invocation(&SCRIPTS.complete);
        for c in completions {
            let (outcome, payload, at) = outcome_args(&c.outcome)?;
            inv.arg(hex(c.id))
                .arg(c.epoch)
                .arg(hex(c.worker_id))
                .arg(outcome)
                .arg(payload)
                .arg(at)
                .arg(c.follow_ups.len());
            for f in &c.follow_ups {
                push_new_task(&mut inv, f)?;
            }
        }
        let reply = self.run_array(&inv).await?;
        if reply.len() != completions.len() {
            return Err(BrokerError::Data(format!(
                "complete answered {} values for {} completions",
                reply.len(),
                completions.len()
            )));
        }
        reply.iter().map(|v| Ok(int(v)? == 1)).collect()
    }

    async fn progress(
        &self,
        id: TaskId,
        epoch: i64,
        progress: &Progress,
    ) -> Result<bool, BrokerError> {
        let mut inv = self.invocation(&SCRIPTS.progress);
        inv.arg(hex(id))
            .arg(epoch)
            .arg(serde_json::to_vec(progress)?);
        Ok(self.run::<i64>(&inv).await? == 1)
    }

    async fn register_worker(
        &self,
        worker: &WorkerInfo,
        lease_ttl: Duration,
    ) -> Result<(), BrokerError> {
        let mut inv = self.invocation(&SCRIPTS.register);
        inv.arg(hex(worker.id))
            .arg(serde_json::to_vec(worker)?)
            .arg(duration_micros(lease_ttl));
        let _: Value = self.run(&inv).await?;
        Ok(())
    }

    async fn heartbeat(
        &self,
        worker: WorkerId,
        lease_ttl: Duration,
    ) -> Result<Heartbeat, BrokerError> {
        let mut inv = self.invocation(&SCRIPTS.heartbeat);
        inv.arg(hex(worker)).arg(duration_micros(lease_ttl));
        let reply = self.run_array(&inv).await?;
        let Some((valid, cancel)) = reply.split_first() else {
            return Err(BrokerError::Data("empty heartbeat reply".to_owned()));
        };
        Ok(Heartbeat {
            lease_valid: int(valid)? == 1,
            cancel: cancel.iter().map(codec::id).collect::<Result<_, _>>()?,
        })
    }

    async fn deregister_worker(&self, worker: WorkerId) -> Result<(), BrokerError> {
        let mut inv = self.invocation(&SCRIPTS.deregister);
        inv.arg(hex(worker));
        let _: Value = self.run(&inv).await?;
        Ok(())
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>, BrokerError> {
        type Replies = (
            HashMap<String, Vec<u8>>,
            HashMap<String, f64>,
            HashMap<String, i64>,
        );
        let (infos, leases, beats): Replies = self
            .query_pipe(
                ::redis::pipe()
                    .atomic()
                    .hgetall(self.key("workers"))
                    .zrange_withscores(self.key("leases"), 0, -1)
                    .hgetall(self.key("heartbeats")),
            )
            .await?;
        let mut out = Vec::with_capacity(infos.len());
        for (id, json) in infos {
            let mut w: WorkerInfo = serde_json::from_slice(&json)?;
            if let Some(lease) = leases.get(&id) {
                w.lease_expires_at = time_from_micros(*lease as i64)?;
            }
            if let Some(beat) = beats.get(&id) {
                w.last_heartbeat = time_from_micros(*beat)?;
            }
            out.push(w);
        }
        out.sort_by_key(|w| w.id);
        Ok(out)
    }

    async fn rescue_expired(&self, forget_after: Duration) -> Result<Rescued, BrokerError> {
        let mut total = Rescued::default();
        loop {
            let mut inv = self.invocation(&SCRIPTS.rescue);
            inv.arg(duration_micros(forget_after))
                .arg(SCRIPT_BATCH)
                .arg(&self.inner.lease_expired);
            let reply = self.run_array(&inv).await?;
            let [requeued, dead, more, ids @ ..] = reply.as_slice() else {
                return Err(BrokerError::Data("bad rescue reply".to_owned()));
            };
            total.requeued += u64::try_from(int(requeued)?).unwrap_or(0);
            total.dead += u64::try_from(int(dead)?).unwrap_or(0);
            for id in ids {
                let text: String = ::redis::from_redis_value(id)?;
                total.dead_ids.push(
                    text.parse()
                        .map_err(|e| BrokerError::Data(format!("task id {text:?}: {e}")))?,
                );
            }
            if int(more)? == 0 {
                return Ok(total);
            }
        }
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, BrokerError> {
        let reply: Value = self
            .query(
                ::redis::cmd("HMGET")
                    .arg(self.key(&format!("t:{}", hex(id))))
                    .arg(&codec::FIELDS[..]),
            )
            .await?;
        codec::record(id, &array(reply)?)
    }

    async fn list(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, BrokerError> {
        let limit = filter.limit as usize;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let index = match filter.group_id {
            Some(g) => format!("g:{}", hex(g)),
            None => "created".to_owned(),
        };
        let mut start = match filter.before {
            Some(id) => format!("({}", hex(id)),
            None => "+".to_owned(),
        };
        loop {
            let mut inv = self.invocation(&SCRIPTS.list);
            inv.arg(&index)
                .arg(&start)
                .arg(LIST_PAGE)
                .arg(limit - out.len())
                .arg(filter.state.map_or("", TaskState::as_str))
                .arg(filter.kind.as_deref().unwrap_or(""))
                .arg(filter.queue.as_deref().unwrap_or(""));
            let reply = self.run_array(&inv).await?;
            let Some((cursor, tasks)) = reply.split_first() else {
                return Err(BrokerError::Data("empty list reply".to_owned()));
            };
            out.extend(codec::records(tasks)?);
            match text(cursor)? {
                Some(next) if !next.is_empty() && out.len() < limit => start = format!("({next}"),
                _ => return Ok(out),
            }
        }
    }

    async fn cancel(
        &self,
        id: TaskId,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<CancelOutcome>, BrokerError> {
        let mut inv = self.invocation(&SCRIPTS.cancel);
        inv.arg(hex(id)).arg(micros(expires_at));
        let before = state_before(&self.run(&inv).await?)?;
        Ok(before.map(|state| match state {
            TaskState::Running => CancelOutcome::Requested,
            s if s.is_waiting() => CancelOutcome::Cancelled,
            s => CancelOutcome::AlreadyFinished(s),
        }))
    }

    async fn retry(&self, id: TaskId) -> Result<Option<RetryOutcome>, BrokerError> {
        let mut inv = self.invocation(&SCRIPTS.retry);
        inv.arg(hex(id));
        let before = state_before(&self.run(&inv).await?)?;
        Ok(before.map(|state| match state {
            TaskState::Dead | TaskState::Failed | TaskState::Cancelled => RetryOutcome::Requeued,
            s => RetryOutcome::NotRetryable(s),
        }))
    }

    async fn counts(&self) -> Result<Vec<QueueCount>, BrokerError> {
        let counts: HashMap<String, i64> = self
            .query(::redis::cmd("HGETALL").arg(self.key("counts")))
            .await?;
        let mut out = Vec::with_capacity(counts.len());
        for (field, n) in counts {
            let parsed = field
                .split_once(':')
                .and_then(|(state, queue)| Some((TaskState::parse(state)?, queue)));
            let Some((state, queue)) = parsed else {
                return Err(BrokerError::Data(format!("bad count field {field:?}")));
            };
            if let Ok(count @ 1..) = u64::try_from(n) {
                out.push(QueueCount {
                    queue: queue.to_owned(),
                    state,
                    count,
                });
            }
        }
        out.sort_by(|a, b| (&a.queue, a.state as u8).cmp(&(&b.queue, b.state as u8)));
        Ok(out)
    }

    async fn prune(&self, limit: u32) -> Result<u64, BrokerError> {
        let mut deleted = 0u32;
        while deleted < limit {
            let batch = (limit - deleted).min(SCRIPT_BATCH);
            let mut inv = self.invocation(&SCRIPTS.prune);
            inv.arg(batch);
            let reply = self.run_array(&inv).await?;
            let [gone, looked] = reply.as_slice() else {
                return Err(BrokerError::Data("bad prune reply".to_owned()));
            };
            deleted += u32::try_from(int(gone)?).unwrap_or(0);
            if int(looked)? < i64::from(batch) {
                break;
            }
        }
        Ok(u64::from(deleted))
    }

    async fn put_schedule(&self, schedule: &Schedule) -> Result<(), BrokerError> {
        super::check_schedule(schedule)?;
        let name = &schedule.name;
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .hset(
                self.key("schedule:def"),
                name,
                serde_json::to_vec(schedule)?,
            )
            .hset(
                self.key("schedule:next"),
                name,
                micros(schedule.next_fire_at),
            );
        match schedule.last_fired_at {
            Some(last) => pipe.hset(self.key("schedule:last"), name, micros(last)),
            None => pipe.hdel(self.key("schedule:last"), name),
        };
        let _: Value = self.query_pipe(&pipe).await?;
        Ok(())
    }

    async fn schedules(&self) -> Result<Vec<Schedule>, BrokerError> {
        type Replies = (
            HashMap<String, Vec<u8>>,
            HashMap<String, i64>,
            HashMap<String, i64>,
        );
        let (defs, next, last): Replies = self
            .query_pipe(
                ::redis::pipe()
                    .atomic()
                    .hgetall(self.key("schedule:def"))
                    .hgetall(self.key("schedule:next"))
                    .hgetall(self.key("schedule:last")),
            )
            .await?;
        let mut out = Vec::with_capacity(defs.len());
        for (name, json) in defs {
            let mut s: Schedule = serde_json::from_slice(&json)?;
            if let Some(n) = next.get(&name) {
                s.next_fire_at = time_from_micros(*n)?;
            }
            s.last_fired_at = last.get(&name).map(|l| time_from_micros(*l)).transpose()?;
            out.push(s);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, BrokerError> {
        let (deleted, _, _): (u32, u32, u32) = self
            .query_pipe(
                ::redis::pipe()
                    .atomic()
                    .hdel(self.key("schedule:def"), name)
                    .hdel(self.key("schedule:next"), name)
                    .hdel(self.key("schedule:last"), name),
            )
            .await?;
        Ok(deleted > 0)
    }

    async fn fire_schedule(
        &self,
        name: &str,
        tick: DateTime<Utc>,
        next: DateTime<Utc>,
        task: &NewTask,
    ) -> Result<bool, BrokerError> {
        let mut inv = self.invocation(&SCRIPTS.fire_schedule);
        inv.arg(name).arg(micros(tick)).arg(micros(next));
        push_new_task(&mut inv, task)?;
        Ok(self.run::<i64>(&inv).await? == 1)
    }

    async fn take_rate_token(
        &self,
        key: &str,
        per_second: f64,
        burst: u32,
    ) -> Result<Option<Duration>, BrokerError> {
        super::check_rate(key, per_second, burst)?;
        let mut inv = self.invocation(&SCRIPTS.rate);
        inv.arg(key).arg(per_second).arg(burst);
        let wait: i64 = self.run(&inv).await?;
        Ok((wait > 0).then(|| Duration::from_micros(wait.unsigned_abs())))
    }
}
