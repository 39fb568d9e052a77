-- surge-queue on PostgreSQL: tasks, worker leases, schedules, chords and
-- rate buckets. Every time decision uses the server's clock (now()).

-- One row per task, live or finished. The hot path (claim, complete) only
-- touches the partial indexes of waiting and running tasks, so finished rows
-- cost nothing there until `prune` deletes them. fillfactor leaves room on
-- each page so an update can put the new row version beside the old one
-- (and progress / cancel updates, which change no indexed column, are HOT).
CREATE TABLE tasks (
    id               UUID        PRIMARY KEY,
    kind             TEXT        NOT NULL,
    args             JSONB       NOT NULL,
    queue            TEXT        NOT NULL,
    priority         INTEGER     NOT NULL,
    state            TEXT        NOT NULL CHECK (state IN ('pending', 'scheduled', 'running',
                         'retrying', 'succeeded', 'failed', 'cancelled', 'dead')),
    attempts         BIGINT      NOT NULL DEFAULT 0,
    max_retries      BIGINT      NOT NULL,
    run_at           TIMESTAMPTZ NOT NULL,
    -- A waiting task whose run_at has come (set at submission when due,
    -- else by the claim that first finds it due): claims look only at
    -- these, so tasks waiting for a far ETA cost a claim nothing.
    ready            BOOLEAN     NOT NULL,
    -- Set only while the task is live: released (NULL) on a terminal state.
    unique_key       TEXT,
    group_id         UUID,
    options          JSONB       NOT NULL,
    worker_id        UUID,
    epoch            BIGINT      NOT NULL DEFAULT 0,
    cancel_requested BOOLEAN     NOT NULL DEFAULT false,
    progress         JSONB,
    result           JSONB,
    error            JSONB,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    expires_at       TIMESTAMPTZ
) WITH (
    fillfactor = 80,
    -- A queue table churns: vacuum it long before a fifth of it is dead.
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);

-- Claims: the ready tasks of one queue in claim order.
CREATE INDEX tasks_claim ON tasks (queue, priority DESC, run_at, id)
    WHERE state IN ('pending', 'scheduled', 'retrying') AND ready;
-- Claims first mark the waiting tasks that have become due as ready.
CREATE INDEX tasks_due ON tasks (run_at)
    WHERE state IN ('pending', 'scheduled', 'retrying') AND NOT ready;
-- Heartbeats (cancel requests) and rescue: the running tasks.
CREATE INDEX tasks_running ON tasks (worker_id) WHERE state = 'running';
-- At most one live task per unique key.
CREATE UNIQUE INDEX tasks_unique_key ON tasks (unique_key) WHERE unique_key IS NOT NULL;
CREATE INDEX tasks_group ON tasks (group_id) WHERE group_id IS NOT NULL;
-- Prune: terminal tasks by expiry.
CREATE INDEX tasks_expires ON tasks (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE workers (
    id               UUID        PRIMARY KEY,
    hostname         TEXT        NOT NULL,
    pid              BIGINT      NOT NULL,
    queues           TEXT[]      NOT NULL,
    concurrency      BIGINT      NOT NULL,
    started_at       TIMESTAMPTZ NOT NULL,
    last_heartbeat   TIMESTAMPTZ NOT NULL,
    lease_expires_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE schedules (
    name          TEXT        PRIMARY KEY,
    cron          TEXT        NOT NULL,
    timezone      TEXT        NOT NULL,
    -- The submitted NewTask, as JSON.
    task          JSONB       NOT NULL,
    next_fire_at  TIMESTAMPTZ NOT NULL,
    last_fired_at TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A chord waits for `remaining` members of its group to succeed, then its
-- callback (kept column by column, ready to insert into tasks) is enqueued.
-- `state` goes waiting -> fired (the completion that took `remaining` to
-- zero) or waiting -> failed (a member ended failed, dead or cancelled).
CREATE TABLE chords (
    group_id       UUID        PRIMARY KEY,
    remaining      BIGINT      NOT NULL,
    state          TEXT        NOT NULL DEFAULT 'waiting'
                       CHECK (state IN ('waiting', 'fired', 'failed')),
    cb_id          UUID        NOT NULL,
    cb_kind        TEXT        NOT NULL,
    cb_args        JSONB       NOT NULL,
    cb_queue       TEXT        NOT NULL,
    cb_priority    INTEGER     NOT NULL,
    cb_run_at      TIMESTAMPTZ NOT NULL,
    cb_max_retries BIGINT      NOT NULL,
    cb_unique_key  TEXT,
    cb_group_id    UUID,
    cb_options     JSONB       NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Token buckets shared by every process; `taken` tells the caller whether
-- the last update took a token.
CREATE TABLE rate_buckets (
    key         TEXT             PRIMARY KEY,
    tokens      DOUBLE PRECISION NOT NULL,
    refilled_at TIMESTAMPTZ      NOT NULL,
    taken       BOOLEAN          NOT NULL
);
