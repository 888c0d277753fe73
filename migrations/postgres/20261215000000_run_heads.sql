-- The head of each run's evidence chain, kept by the database itself.
--
-- The hash chain proves that no event was edited, removed or reordered in the middle of a
-- run's events, but a chain cut short at its end is still a valid chain. The head recorded
-- here is what the chain must end at: `runway verify` compares the two, so removing the last
-- events (which needs the append-only trigger disabled) is detected unless this row is
-- rolled back as well, and that is refused too: a head only ever moves forward.
CREATE TABLE run_heads (
    run_id TEXT PRIMARY KEY REFERENCES runs (id),
    seq    BIGINT NOT NULL CHECK (seq >= 1),
    hash   TEXT NOT NULL
);

INSERT INTO run_heads (run_id, seq, hash)
SELECT DISTINCT ON (run_id) run_id, seq, hash FROM events ORDER BY run_id, seq DESC;

CREATE FUNCTION runway_run_head() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_heads (run_id, seq, hash) VALUES (NEW.run_id, NEW.seq, NEW.hash)
    ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash
    WHERE run_heads.seq < excluded.seq;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_move_head
    AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION runway_run_head();

CREATE FUNCTION runway_run_heads_forward_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.run_id = OLD.run_id AND NEW.seq > OLD.seq THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'run_heads only move forward: % refused', TG_OP;
END
$$;

CREATE TRIGGER run_heads_forward_only
    BEFORE UPDATE OR DELETE ON run_heads
    FOR EACH ROW EXECUTE FUNCTION runway_run_heads_forward_only();

CREATE TRIGGER run_heads_no_truncate
    BEFORE TRUNCATE ON run_heads
    FOR EACH STATEMENT EXECUTE FUNCTION runway_run_heads_forward_only();
