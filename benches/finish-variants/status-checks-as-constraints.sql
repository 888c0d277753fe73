-- For `scripts/bench-finish`: the schema before 20261221000000_step_status_domains.sql
-- (a step's status and list checked by table CHECK constraints), to compare with as migrated.
ALTER TABLE step_runs
    ALTER COLUMN status TYPE text,
    ALTER COLUMN list TYPE text,
    ADD CONSTRAINT step_runs_list_check CHECK (list IN ('main', 'compensation', 'on_failure')),
    ADD CONSTRAINT step_runs_status_check CHECK (status IN
        ('pending', 'ready', 'running', 'waiting', 'succeeded', 'failed', 'warned', 'skipped',
         'cancelled'));
