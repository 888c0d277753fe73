-- Schedules: cron schedules registered from playbooks (`runway schedule add`) and one-off
-- follow-up runs a run asked for (the `followup` step kind), with every tick a scheduler
-- handled and the audit trail of who changed a schedule.

CREATE TABLE schedules (
    -- `PLAYBOOK/SCHEDULE` for a cron schedule, `followup/RUN/STEP` for a follow-up.
    id                   TEXT PRIMARY KEY,
    kind                 TEXT NOT NULL CHECK (kind IN ('cron', 'once')),
    -- The playbook pinned when the schedule was added (or replaced): the runs it starts pin
    -- this text, so editing the YAML never changes what a schedule runs.
    playbook             TEXT NOT NULL,
    content_hash         TEXT NOT NULL,
    definition           TEXT NOT NULL,
    -- Bound and checked when the schedule was added.
    params               JSONB NOT NULL,
    cron                 TEXT,
    timezone             TEXT NOT NULL,
    overlap              TEXT NOT NULL CHECK (overlap IN ('skip', 'queue', 'allow')),
    catch_up_ms          BIGINT NOT NULL CHECK (catch_up_ms >= 0),
    catch_up_fire        TEXT NOT NULL CHECK (catch_up_fire IN ('all', 'latest')),
    pause_after_failures INTEGER CHECK (pause_after_failures >= 1),
    -- The failure webhook's templates (`url`, `message`, `headers`); secrets are rendered
    -- from the scheduler's environment when it sends, never stored.
    notify               JSONB,
    status               TEXT NOT NULL CHECK (status IN ('active', 'paused', 'removed', 'done')),
    status_reason        TEXT,
    -- The earliest tick no scheduler has handled yet. Moved only by the transaction that
    -- records that tick (guarded by its old value).
    next_fire_at         BIGINT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    parent_run_id        TEXT REFERENCES runs (id),
    parent_step_id       TEXT,
    -- Who added (or last replaced) it; the runs it starts have this starter.
    added_by             TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    CHECK ((kind = 'cron') = (cron IS NOT NULL)),
    CHECK ((kind = 'once') = (parent_run_id IS NOT NULL)),
    CHECK (status <> 'active' OR next_fire_at IS NOT NULL)
);

-- The scheduler's scan: active schedules by their next tick.
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE status = 'active';
-- Follow-ups of a run, for its evidence report.
CREATE INDEX schedules_of_parent ON schedules (parent_run_id) WHERE parent_run_id IS NOT NULL;

CREATE TABLE schedule_fires (
    schedule_id     TEXT NOT NULL REFERENCES schedules (id),
    -- The tick (the time the cron expression named), not when it was handled. The primary
    -- key is what makes a tick fire once, however many schedulers race for it.
    tick_at         BIGINT NOT NULL,
    outcome         TEXT NOT NULL CHECK (outcome IN
                        ('started', 'deferred', 'skipped', 'missed', 'failed')),
    -- A skipped or missed row covers every tick from `tick_at` through `through_at`.
    through_at      BIGINT,
    reason          TEXT,
    run_id          TEXT REFERENCES runs (id),
    fired_by        TEXT NOT NULL,
    fired_at        BIGINT NOT NULL,
    -- The run's end, as a scheduler observed it.
    run_status      TEXT CHECK (run_status IN ('succeeded', 'failed', 'cancelled')),
    settled_at      BIGINT,
    -- The failure webhook's outbox: pending until a 2xx answer (at least once).
    notify_state    TEXT CHECK (notify_state IN ('pending', 'sent', 'gave_up')),
    notify_attempts INTEGER NOT NULL DEFAULT 0,
    -- When a pending notice may be tried (again): a sender's claim, or the retry's backoff.
    notify_next_at  BIGINT,
    notify_error    TEXT,
    notified_at     BIGINT,
    PRIMARY KEY (schedule_id, tick_at),
    CHECK ((outcome = 'started') = (run_id IS NOT NULL)),
    CHECK (through_at IS NULL OR through_at >= tick_at),
    CHECK (notify_state IS NULL OR notify_state <> 'pending' OR notify_next_at IS NOT NULL)
);

CREATE UNIQUE INDEX schedule_fires_run ON schedule_fires (run_id) WHERE run_id IS NOT NULL;
-- Ticks whose run has not been observed to end yet, and queued (deferred) ticks.
CREATE INDEX schedule_fires_open ON schedule_fires (schedule_id)
    WHERE settled_at IS NULL AND outcome IN ('started', 'deferred');
CREATE INDEX schedule_fires_notices ON schedule_fires (notify_next_at)
    WHERE notify_state = 'pending';

-- Who added, replaced, paused, resumed or removed a schedule, and when: append-only.
CREATE TABLE schedule_events (
    schedule_id TEXT NOT NULL REFERENCES schedules (id),
    seq         BIGINT NOT NULL CHECK (seq >= 1),
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    data        JSONB NOT NULL,
    PRIMARY KEY (schedule_id, seq)
);

CREATE FUNCTION schedule_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'schedule_events are append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER schedule_events_no_update_delete BEFORE UPDATE OR DELETE ON schedule_events
    FOR EACH ROW EXECUTE FUNCTION schedule_events_append_only();
