-- Runway's durable state: runs, their steps, their evidence, and run locks.
--
-- Timestamps are BIGINT unix milliseconds (UTC), as in the SQLite schema: one
-- representation on both backends means one decode path, the same value in an event's
-- hash whichever backend wrote it, and exact round trips (a timestamptz would be
-- microseconds, SQLite has no time type at all). Integers sort correctly.
--
-- Statuses are text with CHECK constraints rather than Postgres enums, so both backends
-- store the same text (`state::RunStatus::as_str`), and adding a status is a plain
-- constraint change on both.

CREATE TABLE runs (
    id             TEXT PRIMARY KEY,
    playbook       TEXT NOT NULL,
    content_hash   TEXT NOT NULL,
    -- The playbook text as started: editing the YAML never changes a run in flight.
    definition     TEXT NOT NULL,
    params         JSONB NOT NULL,
    starter        TEXT NOT NULL,
    -- `manual`, `schedule:ID` or `invoke:RUN/STEP`.
    trigger        TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN
                       ('queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')),
    lock_key       TEXT,
    parent_run_id  TEXT REFERENCES runs (id),
    parent_step_id TEXT,
    created_at     BIGINT NOT NULL,
    started_at     BIGINT,
    finished_at    BIGINT,
    error          TEXT
);

CREATE INDEX runs_recent ON runs (created_at DESC, id DESC);
CREATE INDEX runs_status_recent ON runs (status, created_at DESC);
-- The next run to start when a lock is released: oldest queued run with that key.
CREATE INDEX runs_queued_per_lock ON runs (lock_key, created_at) WHERE status = 'queued';

CREATE TABLE step_runs (
    run_id           TEXT NOT NULL REFERENCES runs (id),
    step_id          TEXT NOT NULL,
    -- Index in the run's step list (main steps in plan order, then compensations and
    -- on_failure steps), so `steps_of_run` returns them in the order the engine indexes.
    position         INTEGER NOT NULL,
    list             TEXT NOT NULL CHECK (list IN ('main', 'compensation', 'on_failure')),
    status           TEXT NOT NULL CHECK (status IN
                         ('pending', 'ready', 'running', 'waiting', 'succeeded', 'failed',
                          'warned', 'skipped', 'cancelled')),
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    -- When the next attempt may start (backoff, wait timers); set whenever the step is ready.
    ready_at         BIGINT,
    outputs          JSONB,
    checkpoint       BYTEA,
    error            TEXT,
    -- Stable across attempts: `run_id:step_id`, handed to the step as RUNWAY_IDEMPOTENCY_KEY.
    idempotency_key  TEXT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    PRIMARY KEY (run_id, step_id),
    UNIQUE (run_id, position),
    -- A lease exists exactly while the step is running: no running step without an owner
    -- for the reaper to time out, no stale owner on a step that moved on.
    CHECK ((status = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CHECK (status <> 'ready' OR ready_at IS NOT NULL)
);

-- The reaper's scan: running steps by lease expiry.
CREATE INDEX step_runs_leases ON step_runs (lease_expires_at) WHERE status = 'running';

CREATE TABLE events (
    run_id    TEXT NOT NULL REFERENCES runs (id),
    seq       BIGINT NOT NULL CHECK (seq >= 1),
    at        BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    step_id   TEXT,
    attempt   INTEGER,
    data      JSONB NOT NULL,
    -- 64 zeros for seq 1; the previous event's `hash` otherwise.
    prev_hash TEXT NOT NULL,
    -- sha256 (hex) over the canonical form of every column above: see store::chain.
    hash      TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- The evidence is append-only, and the database itself says so: not even the store's own
-- code (or an operator with psql and the app's role) can edit or remove an event.
CREATE FUNCTION runway_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % refused', TG_OP;
END
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION runway_events_append_only();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION runway_events_append_only();

CREATE TABLE locks (
    -- At most one active run per key: acquiring is one INSERT guarded by this key.
    key         TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL REFERENCES runs (id),
    acquired_at BIGINT NOT NULL
);
