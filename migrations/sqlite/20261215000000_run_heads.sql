-- The head of each run's evidence chain, kept by the database itself; see
-- migrations/postgres for why.
CREATE TABLE run_heads (
    run_id TEXT PRIMARY KEY NOT NULL REFERENCES runs (id),
    seq    INTEGER NOT NULL CHECK (seq >= 1),
    hash   TEXT NOT NULL
) WITHOUT ROWID;

INSERT INTO run_heads (run_id, seq, hash)
SELECT e.run_id, e.seq, e.hash FROM events e
WHERE e.seq = (SELECT max(seq) FROM events WHERE run_id = e.run_id);

CREATE TRIGGER events_move_head AFTER INSERT ON events
BEGIN
    INSERT OR IGNORE INTO run_heads (run_id, seq, hash) VALUES (NEW.run_id, NEW.seq, NEW.hash);
    UPDATE run_heads SET seq = NEW.seq, hash = NEW.hash
    WHERE run_id = NEW.run_id AND seq < NEW.seq;
END;

CREATE TRIGGER run_heads_forward_only BEFORE UPDATE ON run_heads
WHEN NEW.run_id <> OLD.run_id OR NEW.seq <= OLD.seq
BEGIN
    SELECT RAISE(ABORT, 'run_heads only move forward: UPDATE refused');
END;

CREATE TRIGGER run_heads_no_delete BEFORE DELETE ON run_heads
BEGIN
    SELECT RAISE(ABORT, 'run_heads only move forward: DELETE refused');
END;
