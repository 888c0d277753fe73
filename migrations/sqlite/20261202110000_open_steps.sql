-- The open steps of each run, for the questions every transition asks ("is anything still
-- running?", "is any main step still open?") without reading the run's other steps: two
-- index probes whatever the run's size. Terminal steps leave the index, so it stays small.
CREATE INDEX step_runs_open ON step_runs (run_id, status, list)
    WHERE status IN ('pending', 'ready', 'running', 'waiting');
