-- surge's task queue on SQLite. Timestamps are INTEGER microseconds since
-- the Unix epoch; ids are UUIDv7 text (sorts by creation time); JSON columns
-- are TEXT.

CREATE TABLE tasks (
    id               TEXT PRIMARY KEY NOT NULL,
    kind             TEXT NOT NULL,
    args             TEXT NOT NULL,
    queue            TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_retries      INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    -- Held only while the task is live: cleared when it ends.
    unique_key       TEXT,
    group_id         TEXT,
    options          TEXT NOT NULL,
    worker_id        TEXT,
    epoch            INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    progress         TEXT,
    result           TEXT,
    error            TEXT,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    expires_at       INTEGER
);

-- Claims walk this index in claim order and stop after `limit` entries; it
-- holds waiting tasks only, so finished tasks cost a claim nothing.
CREATE INDEX tasks_ready ON tasks (queue, priority DESC, run_at, id)
    WHERE state IN ('pending', 'scheduled', 'retrying');
-- Heartbeats (cancel list) and rescue look at running tasks only.
CREATE INDEX tasks_running ON tasks (worker_id) WHERE state = 'running';
CREATE UNIQUE INDEX tasks_unique_key ON tasks (unique_key) WHERE unique_key IS NOT NULL;
CREATE INDEX tasks_group ON tasks (group_id) WHERE group_id IS NOT NULL;
-- Prune: only finished tasks have an expiry.
CREATE INDEX tasks_expires ON tasks (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE workers (
    id               TEXT PRIMARY KEY NOT NULL,
    hostname         TEXT NOT NULL,
    pid              INTEGER NOT NULL,
    queues           TEXT NOT NULL,
    concurrency      INTEGER NOT NULL,
    started_at       INTEGER NOT NULL,
    last_heartbeat   INTEGER NOT NULL,
    lease_expires_at INTEGER NOT NULL
);

CREATE TABLE schedules (
    name          TEXT PRIMARY KEY NOT NULL,
    cron          TEXT NOT NULL,
    timezone      TEXT NOT NULL,
    task          TEXT NOT NULL,
    next_fire_at  INTEGER NOT NULL,
    last_fired_at INTEGER,
    created_at    INTEGER NOT NULL
);

-- A chord lives until its last member succeeds (its callback is enqueued)
-- or one member ends otherwise (the chord is dropped: no callback).
CREATE TABLE chords (
    group_id  TEXT PRIMARY KEY NOT NULL,
    remaining INTEGER NOT NULL,
    callback  TEXT NOT NULL
);

CREATE TABLE rate_buckets (
    key        TEXT PRIMARY KEY NOT NULL,
    tokens     REAL NOT NULL,
    updated_at INTEGER NOT NULL
);
