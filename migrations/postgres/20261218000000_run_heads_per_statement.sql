-- The chain head moves once per INSERT statement instead of once per event row.
--
-- The row trigger of 20261215000000_run_heads.sql ran a PL/pgSQL function, and an upsert
-- of `run_heads`, for every event: a step's transition inserts two to a few dozen events in
-- one statement (since the store inserts all of a transaction's events, of one run or of
-- two, in one statement), so most of those upserts moved a head that the next row moved
-- again. A statement trigger reads the statement's new rows (a transition table) and moves
-- each run's head once, to its highest new event. What it guarantees is unchanged: every
-- insert moves its run's head to the newest event, whoever inserts it, and a head only
-- moves forward (`run_heads_forward_only` still refuses anything else).
CREATE FUNCTION runway_run_heads_of_statement() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_heads (run_id, seq, hash)
    SELECT DISTINCT ON (run_id) run_id, seq, hash
    FROM new_events ORDER BY run_id, seq DESC
    ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash
    WHERE run_heads.seq < excluded.seq;
    RETURN NULL;
END
$$;

DROP TRIGGER events_move_head ON events;

CREATE TRIGGER events_move_head
    AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION runway_run_heads_of_statement();

DROP FUNCTION runway_run_head();
