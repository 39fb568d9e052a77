//! The broker's SQL, one statement per operation.
//!
//! Every statement runs on its own (autocommit), so each operation is one
//! round trip and one transaction. Waking claimers is part of the same
//! statement (`pg_notify`, delivered at commit).
//!
//! Plans must not depend on estimates, which are stale on a queue table:
//! - updates of rows chosen by a subquery take them as `id = ANY
//!   (ARRAY(…))`, a primary-key lookup of those ids (a join could become a
//!   scan of the whole table);
//! - statements that address tasks by id and must find them running say
//!   [`RUNNING`] instead of `state = 'running'`: the same test, but one
//!   that does not let the planner read the whole running-task index
//!   instead (with stats that saw few running tasks it did, then matched
//!   each of them against the whole batch).

use std::sync::LazyLock;

use super::columns::{CompletionColumns, TASK_COLUMNS, TaskColumns};

/// States a task waits in (claimable once due).
const WAITING: &str = "('pending', 'scheduled', 'retrying')";

/// `t` is running, in a form the planner does not match with the partial
/// index `tasks_running` (see the module docs).
const RUNNING: &str = "t.state IS NOT DISTINCT FROM 'running'";

/// `INSERT` of the rows of `source` (a table `n` with [`TaskColumns`]'
/// columns), skipping ids that exist and unique keys that are held;
/// returns the id, queue and state of the created tasks.
fn insert_tasks(source: &str) -> String {
    format!(
        "INSERT INTO tasks (id, kind, args, queue, priority, state, max_retries, run_at, \
                            ready, unique_key, group_id, options)
         SELECT n.id, n.kind, n.args, n.queue, n.priority,
                CASE WHEN n.run_at <= now() THEN 'pending' ELSE 'scheduled' END,
                n.max_retries, n.run_at, n.run_at <= now(), n.unique_key, n.group_id, n.options
         FROM {source}
         ON CONFLICT DO NOTHING
         RETURNING id, queue, state"
    )
}

/// Notifies `channel` (parameter `channel`) once per queue named by the
/// `queue` column of `ready`; evaluates to the number of queues.
fn notify(channel: &str, ready: &str) -> String {
    format!("(SELECT count(pg_notify({channel}, queue)) FROM ({ready}) AS ready)")
}

/// `$1` tasks (as [`TaskColumns`] from `$1` on), `$12` channel: the created
/// tasks' ids.
pub(super) static ENQUEUE: LazyLock<String> = LazyLock::new(|| {
    let insert = insert_tasks(&format!("{} ORDER BY n.owner", TaskColumns::unnest(1)));
    let wake = notify(
        &format!("${}", TaskColumns::PARAMS + 1),
        "SELECT DISTINCT queue FROM created WHERE state = 'pending'",
    );
    format!("WITH created AS ({insert}) SELECT created.id::text, {wake} FROM created")
});

/// After an [`ENQUEUE`] that did not create every task: the live tasks
/// holding ids `$1` or unique keys `$2`.
pub(super) const EXISTING: &str = "SELECT id::text, unique_key FROM tasks
     WHERE id = ANY($1::uuid[]) OR unique_key = ANY($2::text[])";

/// How many newly due tasks one claim marks ready (for every queue).
const PROMOTE_AT_ONCE: u32 = 1_000;

/// `$1` worker, `$2` queues, `$3` limit, `$4` channel.
///
/// First, up to [`PROMOTE_AT_ONCE`] waiting tasks of any queue whose
/// `run_at` has come are marked ready (a due `scheduled` task becomes
/// `pending`) and their queues notified: claimable from the next claim on,
/// which the notification triggers. Then the claim proper takes only ready
/// tasks, so tasks waiting for a far ETA cost it nothing. Each queue's
/// ready tasks come from its own ordered index range (an `= ANY` over
/// several queues would sort every ready task); nothing is locked when the
/// worker's lease is not valid.
///
/// A claim commits without waiting for its WAL flush (`synchronous_commit`
/// off for its own transaction only): a claim lost in a server crash leaves
/// the task waiting with its old epoch, so it is claimed again and the lost
/// claim's completion is fenced out: at-least-once either way, and a task
/// starts one disk flush sooner. (Submissions and completions keep
/// synchronous commit: losing one would lose a task or strand it running.)
pub(super) static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH promoted AS (
             UPDATE tasks t SET ready = true,
                 state = CASE WHEN t.state = 'scheduled' THEN 'pending' ELSE t.state END
             WHERE t.id = ANY (ARRAY(
                 SELECT id FROM tasks
                 WHERE state IN {WAITING} AND NOT ready AND run_at <= now()
                 ORDER BY run_at
                 LIMIT {PROMOTE_AT_ONCE}
                 FOR UPDATE SKIP LOCKED))
             -- Runs whether or not the claim takes anything; the server
             -- sends one notification per queue.
             RETURNING pg_notify($4, t.queue)
         ),
         picked AS MATERIALIZED (
             SELECT pick.id FROM unnest($2::text[]) AS q(name)
             CROSS JOIN LATERAL (
                 SELECT id, priority, run_at FROM tasks
                 WHERE queue = q.name AND state IN {WAITING} AND ready AND run_at <= now()
                 ORDER BY priority DESC, run_at, id
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED
             ) AS pick
             WHERE EXISTS (SELECT 1 FROM workers w
                           WHERE w.id = $1::uuid AND w.lease_expires_at > now())
             ORDER BY pick.priority DESC, pick.run_at, pick.id
             LIMIT $3
         )
         UPDATE tasks t SET state = 'running', worker_id = $1::uuid, started_at = now(),
             attempts = t.attempts + 1, epoch = t.epoch + 1, progress = NULL
         WHERE t.id = ANY (ARRAY(SELECT id FROM picked))
           -- Evaluated once (an init plan), for this transaction only.
           AND (SELECT set_config('synchronous_commit', 'off', true)) = 'off'
         RETURNING {TASK_COLUMNS}"
    )
});

/// Completions (as [`CompletionColumns`], `$1..$8`), their follow-ups (as
/// [`TaskColumns`] owned by the 1-based completion position, from `$9`),
/// channel `$20`: the positions of the completions that applied.
///
/// Fencing is in the `WHERE`: running, same epoch, same worker, that
/// worker's lease still valid. Chord counters move in the same statement;
/// the update that takes one to zero flips it to `fired` and inserts its
/// callback (a chord leaves `waiting` once, so the callback is inserted
/// once).
pub(super) static COMPLETE: LazyLock<String> = LazyLock::new(|| {
    let follow_ups = TaskColumns::unnest(CompletionColumns::PARAMS + 1);
    let channel = format!("${}", CompletionColumns::PARAMS + TaskColumns::PARAMS + 1);
    let insert = insert_tasks(&format!(
        "(SELECT n.id, n.kind, n.args, n.queue, n.priority, n.run_at, n.max_retries,
                 n.unique_key, n.group_id, n.options
          FROM {follow_ups} WHERE n.owner IN (SELECT ord FROM applied)
          UNION ALL
          SELECT cb_id, cb_kind, cb_args, cb_queue, cb_priority, cb_run_at, cb_max_retries,
                 cb_unique_key, cb_group_id, cb_options
          FROM chord WHERE state = 'fired'
         ) AS n (id, kind, args, queue, priority, run_at, max_retries, unique_key, group_id,
                 options)"
    ));
    let wake = notify(
        &channel,
        "SELECT queue FROM applied WHERE state IN ('pending', 'retrying') AND run_at <= now()
         UNION SELECT queue FROM created WHERE state = 'pending'",
    );
    format!(
        "WITH done AS MATERIALIZED (
             SELECT * FROM unnest($1::uuid[], $2::int8[], $3::uuid[], $4::text[], $5::jsonb[],
                                  $6::jsonb[], $7::timestamptz[], $8::timestamptz[])
                 WITH ORDINALITY AS d(id, epoch, worker_id, outcome, result, error, run_at,
                                      expires_at, ord)
         ),
         applied AS (
             UPDATE tasks t SET
                 state = CASE WHEN d.outcome <> 'requeue' THEN d.outcome
                              WHEN d.run_at <= now() THEN 'pending'
                              ELSE 'scheduled' END,
                 attempts = CASE WHEN d.outcome = 'requeue' THEN greatest(t.attempts - 1, 0)
                                 ELSE t.attempts END,
                 run_at = coalesce(d.run_at, t.run_at),
                 -- Waiting again (retry, requeue): claimable at once if due.
                 ready = coalesce(d.run_at <= now(), false),
                 result = CASE WHEN d.outcome = 'succeeded' THEN d.result ELSE t.result END,
                 error = coalesce(d.error, t.error),
                 -- expires_at is given exactly for the terminal outcomes.
                 finished_at = CASE WHEN d.expires_at IS NOT NULL THEN now() END,
                 expires_at = d.expires_at,
                 unique_key = CASE WHEN d.expires_at IS NULL THEN t.unique_key END
             FROM done d
             WHERE t.id = d.id AND {RUNNING} AND t.epoch = d.epoch
               AND t.worker_id = d.worker_id
               AND EXISTS (SELECT 1 FROM workers w
                           WHERE w.id = d.worker_id AND w.lease_expires_at > now())
             RETURNING d.ord, t.state, t.queue, t.run_at, t.group_id
         ),
         chord AS (
             UPDATE chords c SET
                 remaining = c.remaining - g.succeeded,
                 state = CASE WHEN g.failed THEN 'failed'
                              WHEN c.remaining - g.succeeded <= 0 THEN 'fired'
                              ELSE 'waiting' END
             FROM (SELECT group_id,
                          count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
                          bool_or(state IN ('failed', 'dead', 'cancelled')) AS failed
                   FROM applied WHERE group_id IS NOT NULL GROUP BY group_id) AS g
             WHERE c.group_id = g.group_id AND c.state = 'waiting'
             RETURNING c.*
         ),
         created AS ({insert})
         SELECT applied.ord, {wake} FROM applied"
    )
});

/// `$1` group, `$2` members, the callback (as [`TaskColumns`] from `$3`).
pub(super) static CREATE_CHORD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO chords (group_id, remaining, cb_id, cb_kind, cb_args, cb_queue, cb_priority,
                             cb_run_at, cb_max_retries, cb_unique_key, cb_group_id, cb_options)
         SELECT $1::uuid, $2, n.id, n.kind, n.args, n.queue, n.priority, n.run_at,
                n.max_retries, n.unique_key, n.group_id, n.options
         FROM {}
         ON CONFLICT (group_id) DO NOTHING",
        TaskColumns::unnest(3)
    )
});

/// `$1` task, `$2` epoch, `$3` progress.
pub(super) static PROGRESS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE tasks t SET progress = $3::jsonb
         WHERE t.id = $1::uuid AND t.epoch = $2 AND {RUNNING}"
    )
});

/// `$1` id, `$2` hostname, `$3` pid, `$4` queues, `$5` concurrency, `$6`
/// started at, `$7` lease ttl.
pub(super) const REGISTER_WORKER: &str = "INSERT INTO workers
         (id, hostname, pid, queues, concurrency, started_at, last_heartbeat, lease_expires_at)
     VALUES ($1::uuid, $2, $3, $4, $5, $6, now(), now() + $7)
     ON CONFLICT (id) DO UPDATE SET
         hostname = EXCLUDED.hostname, pid = EXCLUDED.pid, queues = EXCLUDED.queues,
         concurrency = EXCLUDED.concurrency, last_heartbeat = now(),
         lease_expires_at = EXCLUDED.lease_expires_at";

/// `$1` worker, `$2` lease ttl: whether the lease was still valid (and is
/// renewed), and the running tasks whose cancellation was asked.
pub(super) const HEARTBEAT: &str = "WITH renewed AS (
         UPDATE workers SET last_heartbeat = now(), lease_expires_at = now() + $2
         WHERE id = $1::uuid AND lease_expires_at > now()
         RETURNING id
     )
     SELECT EXISTS (SELECT 1 FROM renewed),
            ARRAY(SELECT id::text FROM tasks
                  WHERE worker_id = $1::uuid AND state = 'running' AND cancel_requested)";

/// `$1` worker.
pub(super) const DEREGISTER_WORKER: &str = "DELETE FROM workers WHERE id = $1::uuid";

/// Every worker.
pub(super) static WORKERS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM workers ORDER BY started_at, id",
        super::columns::WORKER_COLUMNS
    )
});

/// `$1` forget after, `$2` channel, `$3` result ttl (seconds) of tasks that
/// go dead when no `result_ttl_secs` is set: how many went back to wait,
/// how many went dead.
pub(super) static RESCUE: LazyLock<String> = LazyLock::new(|| {
    let wake = notify(
        "$2",
        "SELECT DISTINCT queue FROM moved WHERE state = 'retrying'",
    );
    format!(
        "WITH moved AS (
             UPDATE tasks t SET
                 state = CASE WHEN t.attempts > t.max_retries THEN 'dead' ELSE 'retrying' END,
                 run_at = now(),
                 ready = true,
                 error = jsonb_build_object(
                     'category', 'system',
                     'message', 'lease expired: worker '
                                || coalesce(t.worker_id::text, 'unknown')
                                || ' stopped renewing its lease',
                     'retryable', true),
                 finished_at = CASE WHEN t.attempts > t.max_retries THEN now() END,
                 expires_at = CASE WHEN t.attempts > t.max_retries
                     THEN now() + make_interval(secs =>
                         greatest(coalesce((t.options ->> 'result_ttl_secs')::float8, 0), $3))
                     END,
                 unique_key = CASE WHEN t.attempts > t.max_retries THEN NULL
                                   ELSE t.unique_key END
             WHERE t.id = ANY (ARRAY(
                 SELECT lost.id FROM tasks lost
                 WHERE lost.state = 'running'
                   AND NOT EXISTS (SELECT 1 FROM workers w
                                   WHERE w.id = lost.worker_id AND w.lease_expires_at > now())
                 FOR UPDATE SKIP LOCKED))
             RETURNING t.id, t.state, t.queue, t.group_id
         ),
         failed_chords AS (
             UPDATE chords SET state = 'failed'
             WHERE state = 'waiting'
               AND group_id IN (SELECT group_id FROM moved WHERE state = 'dead')
         ),
         forgotten AS (
             DELETE FROM workers WHERE lease_expires_at < now() - $1
         )
         SELECT count(*) FILTER (WHERE state = 'retrying'),
                count(*) FILTER (WHERE state = 'dead'),
                {wake},
                array_agg(id::text) FILTER (WHERE state = 'dead')
         FROM moved"
    )
});

/// `$1` id.
pub(super) static GET: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE t.id = $1::uuid"));

/// `$1` id, `$2` expiry: the state before.
pub(super) const CANCEL: &str = "WITH old AS (
         SELECT id, state FROM tasks WHERE id = $1::uuid FOR UPDATE
     ),
     cancelled AS (
         UPDATE tasks t SET
             state = CASE WHEN old.state = 'running' THEN t.state ELSE 'cancelled' END,
             cancel_requested = t.cancel_requested OR old.state = 'running',
             unique_key = CASE WHEN old.state = 'running' THEN t.unique_key END,
             finished_at = CASE WHEN old.state = 'running' THEN t.finished_at ELSE now() END,
             expires_at = CASE WHEN old.state = 'running' THEN t.expires_at ELSE $2 END
         FROM old
         WHERE t.id = $1::uuid AND old.state IN ('pending', 'scheduled', 'retrying', 'running')
         RETURNING t.state, t.group_id
     ),
     failed_chords AS (
         UPDATE chords SET state = 'failed'
         WHERE state = 'waiting'
           AND group_id IN (SELECT group_id FROM cancelled WHERE state = 'cancelled')
     )
     SELECT state FROM old";

/// `$1` id, `$2` channel: the state before.
pub(super) static RETRY: LazyLock<String> = LazyLock::new(|| {
    let wake = notify("$2", "SELECT queue FROM requeued");
    format!(
        "WITH old AS (
             SELECT id, state FROM tasks WHERE id = $1::uuid FOR UPDATE
         ),
         requeued AS (
             UPDATE tasks t SET state = 'pending', run_at = now(), ready = true, attempts = 0,
                 error = NULL, result = NULL, progress = NULL, cancel_requested = false,
                 finished_at = NULL, expires_at = NULL
             FROM old
             WHERE t.id = $1::uuid AND old.state IN ('dead', 'failed', 'cancelled')
             RETURNING t.queue
         )
         SELECT old.state, {wake} FROM old"
    )
});

/// Task counts per queue and state.
pub(super) const COUNTS: &str =
    "SELECT queue, state, count(*) FROM tasks GROUP BY queue, state ORDER BY queue, state";

/// `$1` limit: how many tasks were deleted. Chords that are done and have
/// no task left go too (a later prune gets those whose last tasks this
/// one deletes).
pub(super) const PRUNE: &str = "WITH pruned AS (
         DELETE FROM tasks
         WHERE id = ANY (ARRAY(
             SELECT id FROM tasks
             WHERE expires_at <= now()
               AND state IN ('succeeded', 'failed', 'cancelled', 'dead')
             ORDER BY expires_at
             LIMIT $1
             FOR UPDATE SKIP LOCKED))
         RETURNING id
     ),
     done_chords AS (
         DELETE FROM chords c
         WHERE c.state <> 'waiting'
           AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.group_id = c.group_id)
     )
     SELECT count(*) FROM pruned";

/// `$1` name, `$2` cron, `$3` time zone, `$4` task, `$5` next fire,
/// `$6` last fired, `$7` created.
pub(super) const PUT_SCHEDULE: &str = "INSERT INTO schedules
         (name, cron, timezone, task, next_fire_at, last_fired_at, created_at)
     VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)
     ON CONFLICT (name) DO UPDATE SET
         cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, task = EXCLUDED.task,
         next_fire_at = EXCLUDED.next_fire_at, last_fired_at = EXCLUDED.last_fired_at,
         created_at = EXCLUDED.created_at";

/// Every schedule.
pub(super) static SCHEDULES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM schedules ORDER BY name",
        super::columns::SCHEDULE_COLUMNS
    )
});

/// `$1` name.
pub(super) const DELETE_SCHEDULE: &str = "DELETE FROM schedules WHERE name = $1";

/// `$1` name, `$2` tick, `$3` next tick, the task (as [`TaskColumns`] from
/// `$4`), channel `$15`: whether the tick fired.
pub(super) static FIRE_SCHEDULE: LazyLock<String> = LazyLock::new(|| {
    let insert = insert_tasks(&format!(
        "{} WHERE EXISTS (SELECT 1 FROM fired)",
        TaskColumns::unnest(4)
    ));
    let wake = notify(
        &format!("${}", TaskColumns::PARAMS + 4),
        "SELECT queue FROM created WHERE state = 'pending'",
    );
    format!(
        "WITH fired AS (
             UPDATE schedules SET next_fire_at = $3, last_fired_at = $2
             WHERE name = $1 AND next_fire_at = $2
             RETURNING name
         ),
         created AS ({insert})
         SELECT EXISTS (SELECT 1 FROM fired), {wake}"
    )
});

/// `$1` key, `$2` tokens per second, `$3` burst: whether a token was
/// taken, and the tokens left. The clock is read after the row lock, so
/// concurrent takers never see time run backwards.
pub(super) const TAKE_RATE_TOKEN: &str = "INSERT INTO rate_buckets AS b
         (key, tokens, refilled_at, taken)
     VALUES ($1, $3 - 1, clock_timestamp(), true)
     ON CONFLICT (key) DO UPDATE SET (tokens, refilled_at, taken) = (
         SELECT CASE WHEN r.tokens >= 1 THEN r.tokens - 1 ELSE r.tokens END,
                r.at,
                r.tokens >= 1
         FROM (SELECT c.at, least($3, b.tokens + $2 * greatest(0,
                          extract(epoch FROM c.at - b.refilled_at)::float8)) AS tokens
               FROM (SELECT clock_timestamp() AS at) AS c) AS r
     )
     RETURNING taken, tokens";
