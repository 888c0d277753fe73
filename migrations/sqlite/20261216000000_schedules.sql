-- Schedules: the same tables as migrations/postgres (JSON is TEXT, timestamps INTEGER unix
-- milliseconds). See that file for what each column means.

CREATE TABLE schedules (
    id                   TEXT PRIMARY KEY NOT NULL,
    kind                 TEXT NOT NULL CHECK (kind IN ('cron', 'once')),
    playbook             TEXT NOT NULL,
    content_hash         TEXT NOT NULL,
    definition           TEXT NOT NULL,
    params               TEXT NOT NULL,
    cron                 TEXT,
    timezone             TEXT NOT NULL,
    overlap              TEXT NOT NULL CHECK (overlap IN ('skip', 'queue', 'allow')),
    catch_up_ms          INTEGER NOT NULL CHECK (catch_up_ms >= 0),
    catch_up_fire        TEXT NOT NULL CHECK (catch_up_fire IN ('all', 'latest')),
    pause_after_failures INTEGER CHECK (pause_after_failures >= 1),
    notify               TEXT,
    status               TEXT NOT NULL CHECK (status IN ('active', 'paused', 'removed', 'done')),
    status_reason        TEXT,
    next_fire_at         INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    parent_run_id        TEXT REFERENCES runs (id),
    parent_step_id       TEXT,
    added_by             TEXT NOT NULL,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    CHECK ((kind = 'cron') = (cron IS NOT NULL)),
    CHECK ((kind = 'once') = (parent_run_id IS NOT NULL)),
    CHECK (status <> 'active' OR next_fire_at IS NOT NULL)
);

CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE status = 'active';
CREATE INDEX schedules_of_parent ON schedules (parent_run_id) WHERE parent_run_id IS NOT NULL;

CREATE TABLE schedule_fires (
    schedule_id     TEXT NOT NULL REFERENCES schedules (id),
    tick_at         INTEGER NOT NULL,
    outcome         TEXT NOT NULL CHECK (outcome IN
                        ('started', 'deferred', 'skipped', 'missed', 'failed')),
    through_at      INTEGER,
    reason          TEXT,
    run_id          TEXT REFERENCES runs (id),
    fired_by        TEXT NOT NULL,
    fired_at        INTEGER NOT NULL,
    run_status      TEXT CHECK (run_status IN ('succeeded', 'failed', 'cancelled')),
    settled_at      INTEGER,
    notify_state    TEXT CHECK (notify_state IN ('pending', 'sent', 'gave_up')),
    notify_attempts INTEGER NOT NULL DEFAULT 0,
    notify_next_at  INTEGER,
    notify_error    TEXT,
    notified_at     INTEGER,
    PRIMARY KEY (schedule_id, tick_at),
    CHECK ((outcome = 'started') = (run_id IS NOT NULL)),
    CHECK (through_at IS NULL OR through_at >= tick_at),
    CHECK (notify_state IS NULL OR notify_state <> 'pending' OR notify_next_at IS NOT NULL)
);

CREATE UNIQUE INDEX schedule_fires_run ON schedule_fires (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX schedule_fires_open ON schedule_fires (schedule_id)
    WHERE settled_at IS NULL AND outcome IN ('started', 'deferred');
CREATE INDEX schedule_fires_notices ON schedule_fires (notify_next_at)
    WHERE notify_state = 'pending';

CREATE TABLE schedule_events (
    schedule_id TEXT NOT NULL REFERENCES schedules (id),
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    data        TEXT NOT NULL,
    PRIMARY KEY (schedule_id, seq)
);

CREATE TRIGGER schedule_events_no_update BEFORE UPDATE ON schedule_events
BEGIN
    SELECT RAISE(ABORT, 'schedule_events are append-only: UPDATE refused');
END;

CREATE TRIGGER schedule_events_no_delete BEFORE DELETE ON schedule_events
BEGIN
    SELECT RAISE(ABORT, 'schedule_events are append-only: DELETE refused');
END;
