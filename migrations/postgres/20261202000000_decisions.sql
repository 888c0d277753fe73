-- What people decided at approval and checklist steps. One row per decision; a decision
-- is never changed (the evidence chain records it too).
CREATE TABLE step_decisions (
    run_id    TEXT NOT NULL REFERENCES runs (id),
    step_id   TEXT NOT NULL,
    -- The step's attempt the decision was made for.
    attempt   INTEGER NOT NULL,
    -- '' for an approval; the item id for a checklist answer.
    item      TEXT NOT NULL,
    operator  TEXT NOT NULL,
    verdict   TEXT NOT NULL CHECK (verdict IN ('approve', 'reject', 'pass', 'fail', 'na')),
    comment   TEXT,
    -- The plan the person decided on: the run's content hash and params, hashed.
    plan_hash TEXT NOT NULL,
    at        BIGINT NOT NULL,
    FOREIGN KEY (run_id, step_id) REFERENCES step_runs (run_id, step_id)
);

-- A person approves or rejects a step once (quorum counts distinct people)...
CREATE UNIQUE INDEX step_decisions_once_per_person
    ON step_decisions (run_id, step_id, attempt, operator) WHERE item = '';
-- ...and a checklist item is answered once.
CREATE UNIQUE INDEX step_decisions_once_per_item
    ON step_decisions (run_id, step_id, attempt, item) WHERE item <> '';

CREATE FUNCTION step_decisions_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'step_decisions are append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER step_decisions_no_update_delete BEFORE UPDATE OR DELETE ON step_decisions
    FOR EACH ROW EXECUTE FUNCTION step_decisions_append_only();
