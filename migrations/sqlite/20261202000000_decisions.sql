-- What people decided at approval and checklist steps; see migrations/postgres.
CREATE TABLE step_decisions (
    run_id    TEXT NOT NULL REFERENCES runs (id),
    step_id   TEXT NOT NULL,
    attempt   INTEGER NOT NULL,
    item      TEXT NOT NULL,
    operator  TEXT NOT NULL,
    verdict   TEXT NOT NULL CHECK (verdict IN ('approve', 'reject', 'pass', 'fail', 'na')),
    comment   TEXT,
    plan_hash TEXT NOT NULL,
    at        INTEGER NOT NULL,
    FOREIGN KEY (run_id, step_id) REFERENCES step_runs (run_id, step_id)
);

CREATE UNIQUE INDEX step_decisions_once_per_person
    ON step_decisions (run_id, step_id, attempt, operator) WHERE item = '';
CREATE UNIQUE INDEX step_decisions_once_per_item
    ON step_decisions (run_id, step_id, attempt, item) WHERE item <> '';

CREATE TRIGGER step_decisions_no_update BEFORE UPDATE ON step_decisions
BEGIN
    SELECT RAISE(ABORT, 'step_decisions are append-only: UPDATE refused');
END;

CREATE TRIGGER step_decisions_no_delete BEFORE DELETE ON step_decisions
BEGIN
    SELECT RAISE(ABORT, 'step_decisions are append-only: DELETE refused');
END;
