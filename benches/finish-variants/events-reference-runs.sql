-- For `scripts/bench-finish`: the schema before 20261220000000_events_reference_through_head.sql
-- (each event row checked against `runs` by its own foreign key), to compare with as migrated.
ALTER TABLE events ADD CONSTRAINT events_run_id_fkey FOREIGN KEY (run_id) REFERENCES runs (id);
