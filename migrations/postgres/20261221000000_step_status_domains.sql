-- A step's status and list are checked by their types (domains) instead of table CHECK
-- constraints: the same values are allowed, and refused with an error that names the
-- domain.
--
-- Postgres reads a table's CHECK constraints from their stored text, and plans them, in
-- every statement that writes the table (`ExecRelCheck`: `stringToNode`, then
-- `ExecPrepareExpr`); it does not keep them between statements. A step's transition updates
-- `step_runs` twice in one `runway_step_finish`, so the five constraints were read and
-- planned ten times a step, and the two lists of allowed values were most of it (an array
-- constant is stored byte by byte). A domain's check is planned once per session (the type
-- cache) and is part of each statement's cached plan. Measured with pgbench driving
-- `runway_step_finish` over 100 runs of 100 ready steps, one client, alternating with the
-- schema before this migration (docs/PERFORMANCE.md): about a tenth less server CPU a
-- transition; dropping all five constraints saved about a fifth, which is not done: the
-- three that remain (a lease exactly while running, a ready step has its time,
-- `max_attempts` at least 1) are small and keep their guarantees.
CREATE DOMAIN runway_step_status AS text CHECK (VALUE IN
    ('pending', 'ready', 'running', 'waiting', 'succeeded', 'failed', 'warned', 'skipped',
     'cancelled'));
CREATE DOMAIN runway_step_list AS text CHECK (VALUE IN ('main', 'compensation', 'on_failure'));

ALTER TABLE step_runs
    DROP CONSTRAINT step_runs_list_check,
    DROP CONSTRAINT step_runs_status_check,
    ALTER COLUMN status TYPE runway_step_status,
    ALTER COLUMN list TYPE runway_step_list;
