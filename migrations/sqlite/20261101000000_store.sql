-- Runway's durable state: runs, their steps, their evidence, and run locks.
--
-- The same tables as migrations/postgres: JSON is TEXT, bytes are BLOB, timestamps are
-- INTEGER unix milliseconds (UTC) on both backends (one decode path, the same value in an
-- event's hash whichever backend wrote it, and integers sort correctly).

CREATE TABLE runs (
    id             TEXT PRIMARY KEY NOT NULL,
    playbook       TEXT NOT NULL,
    content_hash   TEXT NOT NULL,
    -- The playbook text as started: editing the YAML never changes a run in flight.
    definition     TEXT NOT NULL,
    params         TEXT NOT NULL,
    starter        TEXT NOT NULL,
    -- `manual`, `schedule:ID` or `invoke:RUN/STEP`.
    trigger        TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN
                       ('queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')),
    lock_key       TEXT,
    parent_run_id  TEXT REFERENCES runs (id),
    parent_step_id TEXT,
    created_at     INTEGER NOT NULL,
    started_at     INTEGER,
    finished_at    INTEGER,
    error          TEXT
);

CREATE INDEX runs_recent ON runs (created_at DESC, id DESC);
CREATE INDEX runs_status_recent ON runs (status, created_at DESC);
CREATE INDEX runs_queued_per_lock ON runs (lock_key, created_at) WHERE status = 'queued';

CREATE TABLE step_runs (
    run_id           TEXT NOT NULL REFERENCES runs (id),
    step_id          TEXT NOT NULL,
    -- Index in the run's step list, so `steps_of_run` returns the engine's order.
    position         INTEGER NOT NULL,
    list             TEXT NOT NULL CHECK (list IN ('main', 'compensation', 'on_failure')),
    status           TEXT NOT NULL CHECK (status IN
                         ('pending', 'ready', 'running', 'waiting', 'succeeded', 'failed',
                          'warned', 'skipped', 'cancelled')),
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    ready_at         INTEGER,
    outputs          TEXT,
    checkpoint       BLOB,
    error            TEXT,
    idempotency_key  TEXT NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    PRIMARY KEY (run_id, step_id),
    UNIQUE (run_id, position),
    -- A lease exists exactly while the step is running.
    CHECK ((status = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CHECK (status <> 'ready' OR ready_at IS NOT NULL)
) WITHOUT ROWID;

CREATE INDEX step_runs_leases ON step_runs (lease_expires_at) WHERE status = 'running';

CREATE TABLE events (
    run_id    TEXT NOT NULL REFERENCES runs (id),
    seq       INTEGER NOT NULL CHECK (seq >= 1),
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    step_id   TEXT,
    attempt   INTEGER,
    data      TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

-- The evidence is append-only, and the database itself says so.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: UPDATE refused');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: DELETE refused');
END;

CREATE TABLE locks (
    -- At most one active run per key: acquiring is one INSERT guarded by this key.
    key         TEXT PRIMARY KEY NOT NULL,
    run_id      TEXT NOT NULL REFERENCES runs (id),
    acquired_at INTEGER NOT NULL
);
