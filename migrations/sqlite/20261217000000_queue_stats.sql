-- Query-planner statistics for apalis' Jobs table, so that acknowledging a job costs the
-- same whatever the table's size.
--
-- apalis-sqlite acknowledges with `UPDATE Jobs ... FROM (SELECT ... FROM json_each(?1)) j
-- WHERE Jobs.id = j.task_id AND Jobs.lock_by = ?2`. Without statistics SQLite drives that
-- from the lock_by index, and job rows keep their lock_by after they are done, so every
-- acknowledgement re-parsed its JSON argument once for every job this worker ever ran:
-- 5 ms an acknowledgement at 10,000 jobs, growing without bound (measured; see
-- docs/PERFORMANCE.md). With these rows the planner knows that lock_by selects half the
-- table and id one row, and drives the update from the JSON array through the id index
-- instead (0.07 ms at 10,000 jobs). `ANALYZE sqlite_schema` creates sqlite_stat1 if
-- missing and makes this connection load the rows; later connections load them at open.
-- A real ANALYZE of a populated table writes figures of the same shape.
ANALYZE sqlite_schema;
DELETE FROM sqlite_stat1 WHERE tbl = 'Jobs' AND idx IN ('LIdx', 'sqlite_autoindex_Jobs_1');
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
    ('Jobs', 'LIdx', '100000 50000'),
    ('Jobs', 'sqlite_autoindex_Jobs_1', '100000 1');
ANALYZE sqlite_schema;
