-- The commonest transitions in one round trip each.
--
-- A worker finishing a step of a running run, with the decision that follows already
-- taken (the engine decided it ahead, from rows it read earlier), used to spend a
-- transaction of six to eight statements on it: BEGIN, the run's lock, the finishing
-- UPDATE, the successor's, the events, COMMIT, each a round trip, with the run's lock held
-- across all of them. `runway_step_finish` does the same work in one statement, which
-- commits on its own. It refuses (SQLSTATE RW001, rolling back everything it did) whenever
-- what it was given no longer holds or the transition is not the plain kind it knows:
-- the store then takes the general path, a transaction in which the engine decides under
-- the run's lock. So this function never decides anything: it checks and applies. The
-- claim of a step woken by its job (`runway_step_claim`) is done the same way.
--
-- Events are hashed here, with exactly the preimage `store::chain::hash` builds (see
-- `runway_event_hash`), because the chain's head is only known under the lock.

-- The hash of an event: lower-case hex SHA-256 of the compact JSON array
-- `[run_id, seq, at_ms, kind, step_id, attempt, data, prev_hash]` (store::chain). `p_data`
-- is the event's data already in canonical form (keys sorted at every depth, compact),
-- written by the engine; the other members are strings and integers whose JSON form is
-- the same whoever writes it (`to_json` escapes a string as serde_json does). PL/pgSQL
-- rather than SQL: called from PL/pgSQL, the SQL function was not inlined but parsed
-- again at every call (10 % of Postgres' CPU in a 10,000-step run, measured with perf).
CREATE FUNCTION runway_event_hash(
    p_run text, p_seq bigint, p_at bigint, p_kind text, p_step text, p_attempt integer,
    p_data text, p_prev text
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN encode(sha256(convert_to(
        '[' || to_json(p_run)::text || ',' || p_seq::text || ',' || p_at::text || ','
        || to_json(p_kind)::text || ',' || COALESCE(to_json(p_step)::text, 'null') || ','
        || COALESCE(p_attempt::text, 'null') || ',' || p_data || ','
        || to_json(p_prev)::text || ']', 'UTF8')), 'hex');
END
$$;

-- Appends events to a run's chain after the head (`p_seq`, `p_prev`) the caller read with
-- the run's lock, all stamped `p_at`, in one INSERT (the head moves with it: see
-- `runway_run_heads_of_statement`), and returns the new head's `seq`.
--
-- The helpers here return one value (a row with every column NULL for "none") rather than
-- a set: PL/pgSQL evaluates `v := f(...)` as a plain expression, where `SELECT * INTO v
-- FROM f(...)` or `PERFORM f(...)` runs a whole query (executor start-up, a function scan,
-- a tuple store), measured at a tenth of a transition's time.
CREATE FUNCTION runway_append(
    p_run text, p_seq bigint, p_prev text, p_at bigint,
    p_kinds text[], p_steps text[], p_attempts integer[], p_datas text[]
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_seqs bigint[] := '{}';
    v_prevs text[] := '{}';
    v_hashes text[] := '{}';
BEGIN
    FOR i IN 1 .. cardinality(p_kinds) LOOP
        v_seqs := array_append(v_seqs, p_seq + i);
        v_prevs := array_append(v_prevs, p_prev);
        p_prev := runway_event_hash(p_run, p_seq + i, p_at, p_kinds[i], p_steps[i],
                                    p_attempts[i], p_datas[i], p_prev);
        v_hashes := array_append(v_hashes, p_prev);
    END LOOP;
    INSERT INTO events (run_id, seq, at, kind, step_id, attempt, data, prev_hash, hash)
    SELECT p_run, u.seq, p_at, u.kind, u.step_id, u.attempt, u.data::jsonb, u.prev, u.hash
    FROM unnest(v_seqs, p_kinds, p_steps, p_attempts, p_datas, v_prevs, v_hashes)
         AS u (seq, kind, step_id, attempt, data, prev, hash);
    RETURN p_seq + cardinality(p_kinds);
END
$$;

-- Takes run `p_run`'s lock for a transition, as the store's `lock_run` does (`FOR NO KEY
-- UPDATE` of the run and its chain head, so that a wait returns the newest head), and
-- returns the head; refuses (RW001) unless the run is running.
CREATE FUNCTION runway_lock_running(p_run text) RETURNS run_heads
LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    v_head run_heads;
BEGIN
    SELECT r.status, h.run_id, h.seq, h.hash
    INTO v_status, v_head.run_id, v_head.seq, v_head.hash
    FROM runs r JOIN run_heads h ON h.run_id = r.id
    WHERE r.id = p_run
    FOR NO KEY UPDATE OF r, h;
    IF NOT FOUND OR v_status <> 'running' THEN
        RAISE EXCEPTION USING ERRCODE = 'RW001', MESSAGE = 'the run is not running';
    END IF;
    RETURN v_head;
END
$$;

-- Claims for `p_worker` (until `p_expires`) the first ready step of run `p_run` that is due
-- at `p_now`, and deletes the job queued to wake it unless a worker fetched it already
-- (that worker then finds the step taken). The caller holds the run's lock and appends the
-- `step.running` event. A row of NULLs when nothing is ready. (PL/pgSQL rather than SQL:
-- Postgres 15 plans a SQL function's statements again at every call, PL/pgSQL once per
-- session.)
CREATE FUNCTION runway_claim_ready(p_run text, p_worker text, p_expires bigint, p_now bigint)
RETURNS step_runs
LANGUAGE plpgsql AS $$
DECLARE
    v_row step_runs;
BEGIN
    WITH c AS (
        UPDATE step_runs SET status = 'running', attempt = attempt + 1,
            lease_owner = p_worker, lease_expires_at = p_expires, ready_at = NULL,
            started_at = COALESCE(started_at, p_now)
        WHERE run_id = p_run AND step_id = (
            SELECT step_id FROM step_runs
            WHERE run_id = p_run AND status = 'ready' AND ready_at <= p_now
            ORDER BY ready_at, step_id LIMIT 1)
        AND status = 'ready'
        RETURNING *
    ), j AS (
        DELETE FROM apalis.jobs WHERE id = (SELECT job_id FROM c) AND status = 'Pending'
    )
    SELECT * INTO v_row FROM c;
    RETURN v_row;
END
$$;

-- The hand-over to another run, for a worker that finished a step of run `p_run` and made
-- nothing ready: a running run other than `p_run` with a step ready and due, whose lock
-- nobody holds, is locked with its head (SKIP LOCKED: this never waits, and two
-- transactions that each hold one run and look for another never wait on each other); its
-- first ready step is claimed for `p_worker` and its `step.running` event (data
-- `p_running_data`, canonical) appended to that run's chain. A row of NULLs when the worker
-- should take a step of its own run instead, or there is none anywhere:
--
-- 1. A worker alone in a run with a step ready (no other step of it running) stays: nobody
--    else will wait for its lock, and the caller's claim is one index probe.
-- 2. Otherwise a run with no step running is taken: a run with a step running has a
--    worker that will need its lock to finish it, and workers that took such runs would
--    queue on their locks one behind the other (measured: 16 slots of one worker spent
--    2.4 s waiting on run locks per second of a 10,000-step run when they all took the
--    first run found).
-- 3. With none, the caller takes a step of its own run after all, if it has one.
--
-- The look is at the 16 newest running runs: newest first, so a run just started gets
-- workers from crowded ones; bounded, because it is made while this run's lock is held
-- (looking at up to 256 cost a tenth of the throughput with 64 slots over 100 runs, where
-- most looks found nothing; looking only at the first 32 runs with a step ready kept 64
-- slots on 33 runs).
CREATE FUNCTION runway_hand_over_other(
    p_run text, p_worker text, p_expires bigint, p_now bigint, p_running_data text
) RETURNS step_runs
LANGUAGE plpgsql AS $$
DECLARE
    v_other text;
    v_seq bigint;
    v_prev text;
    v_row step_runs;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM step_runs WHERE run_id = p_run AND status = 'running')
       AND EXISTS (SELECT 1 FROM step_runs WHERE run_id = p_run AND status = 'ready'
                   AND ready_at <= p_now) THEN
        RETURN v_row;
    END IF;
    SELECT r.id, h.seq, h.hash INTO v_other, v_seq, v_prev
    FROM (SELECT c.id FROM runs c WHERE c.status = 'running' AND c.id <> p_run
          ORDER BY c.created_at DESC LIMIT 16) c
    JOIN runs r ON r.id = c.id JOIN run_heads h ON h.run_id = r.id
    WHERE r.status = 'running'
    AND EXISTS (SELECT 1 FROM step_runs s WHERE s.run_id = r.id
                AND s.status = 'ready' AND s.ready_at <= p_now)
    AND NOT EXISTS (SELECT 1 FROM step_runs s WHERE s.run_id = r.id AND s.status = 'running')
    LIMIT 1
    FOR NO KEY UPDATE OF r, h SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN v_row;
    END IF;
    v_row := runway_claim_ready(v_other, p_worker, p_expires, p_now);
    IF v_row.run_id IS NOT NULL THEN
        v_seq := runway_append(v_other, v_seq, v_prev, p_now, ARRAY['step.running'],
                               ARRAY[v_row.step_id], ARRAY[v_row.attempt],
                               ARRAY[p_running_data]);
    END IF;
    RETURN v_row;
END
$$;

-- Finishes step `p_step` of run `p_run`, held by `p_worker` in attempt `p_attempt`, with
-- status `p_status` (succeeded or warned) at `p_now`, and applies the decision the engine
-- took ahead: at most one step made ready (`p_ready`), claimed at once for the hand-over's
-- worker. With no step made ready, the hand-over takes another run's ready step, else one
-- of this run's. Returns the finished row, then the claimed one, then (when the claimed
-- step is `p_ready`) the rows `p_next_reads` names as this transition leaves them.
--
-- Refuses (RW001) unless the run is running, every row the decision read (`p_expect`:
-- step id to `open` or its terminal status) still says the same, the lease still holds,
-- and the run still has a step ready or running and a main step open afterwards: a run
-- that may end or wait needs the engine's whole view, under the lock.
--
-- `p_finish_data`, `p_ready_data` and `p_running_data` are the canonical data of the
-- `step.<status>`, `step.ready` and `step.running` events. The rows and events written are
-- those the general path writes for the same transition (tests/store.rs compares them).
CREATE FUNCTION runway_step_finish(
    p_run text, p_step text, p_worker text, p_attempt integer,
    p_status text, p_outputs jsonb, p_checkpoint bytea, p_error text, p_now bigint,
    p_finish_data text, p_expect jsonb, p_ready text, p_ready_data text,
    p_claim_worker text, p_claim_expires bigint, p_running_data text, p_next_reads jsonb
) RETURNS SETOF step_runs
LANGUAGE plpgsql AS $$
DECLARE
    v_head run_heads;
    v_seq bigint;
    v_prev text;
    v_done step_runs;
    v_next step_runs;
    v_kinds text[];
    v_steps text[];
    v_attempts integer[];
    v_datas text[];
    v_running boolean;
    v_ready boolean;
    v_due boolean;
    v_main_open boolean;
BEGIN
    v_head := runway_lock_running(p_run);
    v_seq := v_head.seq;
    v_prev := v_head.hash;
    IF p_expect <> '{}' THEN
        IF EXISTS (
            SELECT 1 FROM jsonb_each_text(p_expect) e
            JOIN step_runs s ON s.run_id = p_run AND s.step_id = e.key
            WHERE CASE WHEN s.status IN ('pending', 'ready', 'running', 'waiting') THEN 'open'
                       ELSE s.status END <> e.value
        ) THEN
            RAISE EXCEPTION USING ERRCODE = 'RW001',
                MESSAGE = 'a row the decision read has changed';
        END IF;
    END IF;
    UPDATE step_runs SET status = p_status, outputs = p_outputs,
        checkpoint = COALESCE(p_checkpoint, checkpoint), error = p_error,
        finished_at = p_now, lease_owner = NULL, lease_expires_at = NULL, ready_at = NULL
    WHERE run_id = p_run AND step_id = p_step AND status = 'running'
      AND lease_owner = p_worker AND attempt = p_attempt
    RETURNING * INTO v_done;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'RW001', MESSAGE = 'the lease is not held';
    END IF;
    v_kinds := ARRAY['step.' || p_status];
    v_steps := ARRAY[p_step];
    v_attempts := ARRAY[v_done.attempt];
    v_datas := ARRAY[p_finish_data];
    IF p_ready IS NOT NULL THEN
        UPDATE step_runs SET status = 'running', attempt = attempt + 1,
            lease_owner = p_claim_worker, lease_expires_at = p_claim_expires,
            ready_at = NULL, error = NULL, started_at = COALESCE(started_at, p_now)
        WHERE run_id = p_run AND step_id = p_ready AND status = 'pending'
        RETURNING * INTO v_next;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'RW001', MESSAGE = 'the step to start is not pending';
        END IF;
        v_kinds := v_kinds || ARRAY['step.ready', 'step.running'];
        v_steps := v_steps || ARRAY[p_ready, p_ready];
        v_attempts := v_attempts || ARRAY[v_next.attempt - 1, v_next.attempt];
        v_datas := v_datas || ARRAY[p_ready_data, p_running_data];
    END IF;
    -- What is open now, in one statement: for the run's fate, and for the hand-over.
    SELECT EXISTS (SELECT 1 FROM step_runs WHERE run_id = p_run AND status = 'running'),
           EXISTS (SELECT 1 FROM step_runs WHERE run_id = p_run AND status = 'ready'),
           EXISTS (SELECT 1 FROM step_runs WHERE run_id = p_run AND status = 'ready'
                   AND ready_at <= p_now),
           EXISTS (SELECT 1 FROM step_runs WHERE run_id = p_run AND list = 'main'
                   AND status IN ('pending', 'ready', 'running', 'waiting'))
    INTO v_running, v_ready, v_due, v_main_open;
    IF NOT (v_running OR v_ready) OR NOT v_main_open THEN
        RAISE EXCEPTION USING ERRCODE = 'RW001', MESSAGE = 'the run may end or wait';
    END IF;
    IF p_ready IS NULL AND p_claim_worker IS NOT NULL THEN
        -- Alone here with a step ready: stay (`runway_hand_over_other`'s first rule,
        -- answered from the look above).
        IF NOT (v_due AND NOT v_running) THEN
            v_next := runway_hand_over_other(
                p_run, p_claim_worker, p_claim_expires, p_now, p_running_data);
        END IF;
        IF v_next.run_id IS NULL THEN
            v_next := runway_claim_ready(p_run, p_claim_worker, p_claim_expires, p_now);
            IF v_next.run_id IS NOT NULL THEN
                v_kinds := v_kinds || 'step.running'::text;
                v_steps := v_steps || v_next.step_id;
                v_attempts := v_attempts || v_next.attempt;
                v_datas := v_datas || p_running_data;
            END IF;
        END IF;
    END IF;
    v_seq := runway_append(p_run, v_seq, v_prev, p_now, v_kinds, v_steps, v_attempts, v_datas);
    RETURN NEXT v_done;
    IF v_next.run_id IS NOT NULL THEN
        RETURN NEXT v_next;
        IF p_ready IS NOT NULL THEN
            RETURN QUERY SELECT * FROM step_runs WHERE run_id = p_run
                AND step_id IN (SELECT jsonb_array_elements_text(p_next_reads));
        END IF;
    END IF;
END
$$;

-- A worker woken by a job for step `p_step` of run `p_run` claims it for `p_worker` until
-- `p_expires`: ready (or a waiting step whose timer is due) and due at `p_now` -> running,
-- with its `step.running` event (data `p_running_data`, canonical). Returns the claimed
-- row, then the rows `p_reads` names as the claim leaves them. No row at all, without
-- taking the run's lock, when the step is not ready or waiting (or does not exist): the
-- job is stale, its step taken by a hand-over or ended. Refuses (RW001, changing nothing)
-- whatever needs more than that: a run that is not running (a waiting one moves back to
-- running, with an event, on the general path), a step not yet due (which gets another job
-- for its due time there), a step that changed under the lock. The general path
-- (`store::ops::step_claim`) then decides and says why.
CREATE FUNCTION runway_step_claim(
    p_run text, p_step text, p_worker text, p_expires bigint, p_now bigint,
    p_running_data text, p_reads jsonb
) RETURNS SETOF step_runs
LANGUAGE plpgsql AS $$
DECLARE
    v_head run_heads;
    v_seq bigint;
    v_prev text;
    v_row step_runs;
BEGIN
    PERFORM 1 FROM step_runs WHERE run_id = p_run AND step_id = p_step
        AND status IN ('ready', 'waiting');
    IF NOT FOUND THEN
        RETURN;
    END IF;
    v_head := runway_lock_running(p_run);
    v_seq := v_head.seq;
    v_prev := v_head.hash;
    UPDATE step_runs SET status = 'running',
        attempt = CASE WHEN status = 'waiting' THEN attempt ELSE attempt + 1 END,
        lease_owner = p_worker, lease_expires_at = p_expires, ready_at = NULL,
        started_at = COALESCE(started_at, p_now)
    WHERE run_id = p_run AND step_id = p_step AND status IN ('ready', 'waiting')
      AND ready_at <= p_now
    RETURNING * INTO v_row;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'RW001', MESSAGE = 'the step is not claimable now';
    END IF;
    v_seq := runway_append(p_run, v_seq, v_prev, p_now, ARRAY['step.running'],
                           ARRAY[p_step], ARRAY[v_row.attempt], ARRAY[p_running_data]);
    RETURN NEXT v_row;
    RETURN QUERY SELECT * FROM step_runs WHERE run_id = p_run
        AND step_id IN (SELECT jsonb_array_elements_text(p_reads));
END
$$;

-- The plans of these functions' statements are kept per session and chosen once: left to
-- itself, Postgres planned the hand-over's statements anew at every call (a custom plan for
-- each `p_now`), which cost more than executing them (0.4 ms against 0.5 ms, measured with
-- pg_stat_statements.track_planning). Every statement here is an index probe or a short
-- scan of one run's open steps, whatever the parameters, so one plan fits all. Set on the
-- functions the store calls; the helpers they call run with their caller's setting.
ALTER FUNCTION runway_claim_ready(text, text, bigint, bigint)
    SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION runway_hand_over_other(text, text, bigint, bigint, text)
    SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION runway_step_finish(text, text, text, integer, text, jsonb, bytea, text, bigint,
                                  text, jsonb, text, text, text, bigint, text, jsonb)
    SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION runway_step_claim(text, text, text, bigint, bigint, text, jsonb)
    SET plan_cache_mode = force_generic_plan;
