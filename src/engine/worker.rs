//! A worker: takes step jobs from the queue (apalis), claims each step, runs the attempt
//! while renewing its lease, and records the result with everything that follows from it
//! in one transaction. It also reaps the expired leases of dead workers.
//!
//! Every job is only a wake-up: a job whose step is not claimable (a duplicate, a
//! re-delivery, a step already done, a cancelled run) is acknowledged and does nothing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apalis_core::backend::ext::BackendExt as _;
use apalis_core::backend::ext::poll_strategy::Strategy;
use apalis_core::task::data::Data;
use apalis_core::worker::builder::WorkerBuilder;
use chrono::Utc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::limit::ConcurrencyLimitLayer;

use super::attempt::{Action, Ended, Input, attempt};
use super::context::{context, template_data};
use super::create::{Origin, new_run};
use super::decide::Decider;
use super::drain::Drain;
use super::poll::Wakeups;
use super::{Error, Secrets};
use crate::plan::{Plan, bind_params};
use crate::playbook::step::Step;
use crate::source::Source;
use crate::state::StepStatus;
use crate::store::{
    self, Decide as _, Finish, Guard, Lease, QUEUE, Retry, Run, StepJob, StepRun, Store,
};

/// How a worker behaves; the defaults suit one host.
#[derive(Debug, Clone)]
pub struct Config {
    /// Steps this worker runs at once.
    pub concurrency: usize,
    /// A running step's lease: another worker takes the step over at most this long (plus
    /// one reaper tick) after this one stops renewing it.
    pub lease: Duration,
    /// How often the reaper looks for expired leases.
    pub reap_every: Duration,
    /// How often an idle worker polls for due jobs, besides being notified.
    pub poll_every: Duration,
    /// Where relative `cwd`s of shell steps resolve.
    pub workdir: PathBuf,
    /// Where `invoke` finds playbooks by name.
    pub workflows: PathBuf,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            concurrency: 4,
            lease: Duration::from_secs(10),
            reap_every: Duration::from_secs(1),
            poll_every: Duration::from_millis(100),
            workdir: PathBuf::from("."),
            workflows: PathBuf::from("workflows"),
        }
    }
}

/// One worker process' engine: the store, its identity and its compiled plans.
pub struct Engine {
    pub store: Store,
    pub config: Config,
    /// Unique per process: host, pid and a random suffix (apalis requires unique names).
    pub worker_id: String,
    plans: Mutex<HashMap<String, Arc<Plan>>>,
    /// Runs by id (see [`Engine::run_of`]), at most [`RUN_CACHE`].
    runs: Mutex<HashMap<String, Arc<Run>>>,
    slots: Semaphore,
}

/// Runs a worker keeps in memory: enough for every run it is likely to be working on at
/// once; a run evicted is read again on its next step.
const RUN_CACHE: usize = 256;

impl Engine {
    pub fn new(store: Store, config: Config) -> Arc<Engine> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "host".to_owned());
        let worker_id = format!("{host}:{}:{}", std::process::id(), &store::new_id()[20..]);
        Arc::new(Engine {
            store,
            slots: Semaphore::new(config.concurrency.max(1)),
            config,
            worker_id,
            plans: Mutex::new(HashMap::new()),
            runs: Mutex::new(HashMap::new()),
        })
    }

    /// The plan a run pinned: its stored definition, compiled once per process.
    pub fn plan_of(&self, run: &Run) -> Result<Arc<Plan>, Error> {
        if let Some(plan) = self
            .plans
            .lock()
            .expect("plan cache")
            .get(&run.content_hash)
        {
            return Ok(plan.clone());
        }
        let plan = Arc::new(plan_of_run(run, &self.config.workflows)?);
        self.plans
            .lock()
            .expect("plan cache")
            .insert(run.content_hash.clone(), plan.clone());
        Ok(plan)
    }

    /// The run a claimed step belongs to, read once per process while it is cached. Only
    /// fields that never change once a run has started are read from it (id, params,
    /// starter, trigger, started_at, the pinned definition): never its status, which the
    /// store checks under the run's lock in every transition.
    async fn run_of(&self, run_id: &str) -> Result<Arc<Run>, store::Error> {
        if let Some(run) = self.runs.lock().expect("run cache").get(run_id) {
            return Ok(run.clone());
        }
        let run = Arc::new(self.store.run_get(run_id).await?);
        let mut runs = self.runs.lock().expect("run cache");
        if runs.len() >= RUN_CACHE {
            let evicted = runs.keys().next().cloned();
            if let Some(key) = evicted {
                runs.remove(&key);
            }
        }
        runs.insert(run_id.to_owned(), run.clone());
        Ok(run)
    }

    /// Handles one job: claim, attempt, record, and then the step that result made ready,
    /// if the store handed one over (see [`store::ClaimNext`]). Errors are logged by the
    /// caller; the job itself is never retried by apalis (a retry is a new delayed job).
    pub async fn handle(&self, job: StepJob) -> Result<(), Error> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| Error::ShuttingDown)?;
        // A job whose step another worker already took over (handed over in a finishing
        // transaction, or reaped and claimed) is skipped after one look that takes no lock.
        // A job is acknowledged however its handling ends, so neither the look nor the
        // claim may be lost to a database fault (a restart, a cut connection): both are
        // retried until the database answers. Without that a ready step would be left with
        // no job to wake it.
        let run = until_answered("read the step's run", None, || self.run_of(&job.run_id)).await;
        let run = match run {
            Ok(run) => run,
            Err(store::Error::RunNotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        // The rows the step reads come with its claim where the store can. A plan that
        // no longer compiles asks for none here: `execute` reports it, as it always did.
        let reads = self
            .plan_of(&run)
            .map(|plan| Decider { plan: &plan }.reads_for(&job.step_id))
            .unwrap_or_default();
        let claimed = until_answered("claim the step", None, || {
            self.store.step_claim_woken(
                &job.run_id,
                &job.step_id,
                &self.worker_id,
                self.config.lease,
                &reads,
            )
        })
        .await;
        let mut next = claimed?;
        while let Some(claimed) = next {
            next = self.execute(claimed).await?;
        }
        Ok(())
    }

    /// Runs one claimed attempt and records it; returns the step claimed next, if any.
    async fn execute(&self, claimed: store::Claimed) -> Result<Option<store::Claimed>, Error> {
        let row = claimed.row;
        let run = self.run_of(&row.run_id).await?;
        let plan = self.plan_of(&run)?;
        let step = plan
            .step(&row.step_id)
            .ok_or_else(|| Error::UnknownStep(row.step_id.clone()))?;
        let lease = row.lease().ok_or(Error::NoLease)?;
        // Only the steps this one's templates and conditions read (and, where the store
        // decides ahead, those the decision after it reads): a step's cost does not grow
        // with the size of its run. A hand-over may have brought them with the claim.
        let rows = match claimed.rows {
            Some(rows) => rows,
            None if self.store.decides_ahead() => {
                let reads = Decider { plan: &plan }.reads_for(&row.step_id);
                self.store.steps_named(&run.id, &reads).await?
            }
            None => {
                let reads = plan.index().reads(&plan.playbook, &row.step_id);
                self.store.steps_named(&run.id, reads).await?
            }
        };
        let secrets = Secrets::from_env(plan.playbook.secrets.iter().map(|s| s.value.as_str()));
        let data = template_data(&run, &rows, &secrets);
        let timeout = plan
            .timeout(step)
            .map_or(crate::exec::DEFAULT_TIMEOUT, |d| d.as_std());
        let input = Input {
            run: &run,
            row: &row,
            step,
            data: &data,
            secrets: &secrets,
            timeout,
            workdir: &self.config.workdir,
        };
        tracing::info!(run.id = %run.id, step.id = %row.step_id, attempt = row.attempt, "step started");

        let action = if let Some(ended) = exhausted(&row) {
            tracing::warn!(run.id = %run.id, step.id = %row.step_id, attempt = row.attempt, "no attempts left after a lost worker; step fails");
            Action::Ended(ended)
        } else {
            let lost = CancellationToken::new();
            let renewal = tokio::spawn(renew(
                self.store.clone(),
                lease.clone(),
                self.config.lease,
                lost.clone(),
            ));
            let action = attempt(&input, lost.clone()).await;
            renewal.abort();
            if lost.is_cancelled() {
                // The lease is gone (the run was cancelled, or another worker took over
                // after a stall): what this attempt did is not ours to record.
                tracing::warn!(run.id = %run.id, step.id = %row.step_id, "lease lost; result dropped");
                return Ok(None);
            }
            action
        };
        let result = match action {
            Action::Ended(ended) => self.record(&plan, &input, &rows, lease, ended).await,
            Action::Park(until) => self
                .store
                .step_park(&Guard::Lease(lease), until)
                .await
                .map(|_| None),
            Action::Escalated(data) => {
                tracing::warn!(run.id = %run.id, step.id = %row.step_id, "approval timed out; escalated, waiting on");
                self.store.step_escalate(&lease, data).await.map(|_| None)
            }
            Action::Invoke {
                playbook,
                params,
                until,
            } => self
                .invoke(&plan, &run, &row, lease, &playbook, &params, until)
                .await
                .map(|()| None),
            Action::Followup {
                playbook,
                params,
                due,
            } => self
                .followup(&plan, &run, &row, lease, &playbook, &params, due)
                .await
                .map(|()| None),
        };
        match result {
            Err(store::Error::LeaseLost { .. }) => {
                tracing::warn!(run.id = %run.id, step.id = %row.step_id, "late completion refused: lease lost");
                Ok(None)
            }
            other => other.map_err(Error::from),
        }
    }

    /// Records an ended attempt: retried later, or finished with its successors decided.
    async fn record(
        &self,
        plan: &Plan,
        input: &Input<'_>,
        rows: &[StepRun],
        lease: Lease,
        ended: Ended,
    ) -> Result<Option<store::Claimed>, store::Error> {
        let Input {
            run,
            row,
            step,
            secrets,
            ..
        } = *input;
        let outputs = ended.outputs.as_ref().map(|o| secrets.mask_json(o));
        let mut error = ended.error.as_deref().map(|e| secrets.mask(e));
        if error.is_none()
            && let Some(expect) = &step.expect
        {
            let mut ctx = context(run, rows);
            if let Some(root) = ctx.as_object_mut() {
                root.insert(
                    "outputs".into(),
                    outputs.clone().unwrap_or(serde_json::Value::Null),
                );
            }
            match expect.value.eval(&ctx) {
                Ok(true) => {}
                Ok(false) => error = Some(format!("expect `{}` is false", expect.value.source())),
                Err(e) => {
                    error = Some(format!(
                        "expect `{}` could not be evaluated: {e}",
                        expect.value.source()
                    ))
                }
            }
        }
        if let Some(e) = &error
            && !ended.permanent
            && row.attempt < row.max_attempts
        {
            let delay = backoff(plan, step, row.attempt);
            let ready_at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
            tracing::info!(run.id = %run.id, step.id = %row.step_id, attempt = row.attempt, "attempt failed; retry in {delay:?}");
            let retry = Retry {
                ready_at,
                error: Some(e.clone()),
                checkpoint: ended.checkpoint.clone(),
            };
            return self
                .store
                .step_retry_later(&lease, &retry)
                .await
                .map(|_| None);
        }
        let status = match (&error, step.critical) {
            (None, _) => StepStatus::Succeeded,
            (Some(_), true) => StepStatus::Failed,
            (Some(_), false) => StepStatus::Warned,
        };
        tracing::info!(run.id = %run.id, step.id = %row.step_id, attempt = row.attempt, status = %status, "step ended");
        let finish = Finish {
            outputs,
            checkpoint: ended.checkpoint,
            error,
            ..Finish::new(status)
        };
        let claim = store::ClaimNext {
            worker: self.worker_id.clone(),
            lease_for: self.config.lease,
        };
        // Retried through a database fault while the lease can still be ours (the guard
        // refuses a finish once another worker has taken the step over).
        let guard = Guard::Lease(lease);
        let decider = Decider { plan };
        let known = store::Known { run, rows };
        until_answered("record the step's result", Some(self.config.lease), || {
            self.store
                .step_finish_claiming(&guard, &finish, &decider, &claim, Some(known))
        })
        .await
        .map(|(_, next)| next)
    }

    /// An `invoke` step: finished from its child run's outcome when the child has ended;
    /// otherwise the child is created (once) and the step waits for it.
    #[allow(clippy::too_many_arguments)]
    async fn invoke(
        &self,
        plan: &Plan,
        run: &Run,
        row: &StepRun,
        lease: Lease,
        playbook: &str,
        params: &[(String, String)],
        until: Option<chrono::DateTime<Utc>>,
    ) -> Result<(), store::Error> {
        let decider = Decider { plan };
        let finish = |status: StepStatus, error: Option<String>, child: &Run| Finish {
            outputs: Some(
                serde_json::json!({ "child_run_id": child.id, "status": child.status.as_str() }),
            ),
            error,
            ..Finish::new(status)
        };
        if let Some(child) = self.store.run_child(&run.id, &row.step_id).await? {
            let critical = plan.step(&row.step_id).is_none_or(|s| s.critical);
            let failed = if critical {
                StepStatus::Failed
            } else {
                StepStatus::Warned
            };
            let f = match child.status {
                crate::state::RunStatus::Succeeded => finish(StepStatus::Succeeded, None, &child),
                s if s.is_terminal() => finish(
                    failed,
                    Some(format!(
                        "child run {} ({}) {s}: {}",
                        child.id,
                        child.playbook,
                        child.error.as_deref().unwrap_or("no error recorded")
                    )),
                    &child,
                ),
                _ if until.is_some_and(|u| Utc::now() >= u) => finish(
                    failed,
                    Some(format!(
                        "child run {} did not end within the step's timeout",
                        child.id
                    )),
                    &child,
                ),
                _ => {
                    return self
                        .store
                        .step_park(&Guard::Lease(lease), until)
                        .await
                        .map(|_| ());
                }
            };
            return self
                .store
                .step_finish_with(&Guard::Lease(lease), &f, &decider)
                .await
                .map(|_| ());
        }
        let fail = |message: String| Finish {
            error: Some(message),
            ..Finish::new(StepStatus::Failed)
        };
        let child = match self.child_run(run, row, playbook, params) {
            Ok(child) => child,
            Err(message) => {
                return self
                    .store
                    .step_finish_with(&Guard::Lease(lease), &fail(message), &decider)
                    .await
                    .map(|_| ());
            }
        };
        self.store
            .step_park_with_child(&lease, until, &child)
            .await
            .map(|_| ())
    }

    fn child_run(
        &self,
        run: &Run,
        row: &StepRun,
        playbook: &str,
        params: &[(String, String)],
    ) -> Result<store::NewRun, String> {
        let (plan, text, bound) = self.load_playbook(playbook, params)?;
        let origin = Origin {
            starter: run.starter.clone(),
            trigger: format!("invoke:{}/{}", run.id, row.step_id),
            parent: Some((run.id.clone(), row.step_id.clone())),
        };
        new_run(&plan, &text, bound, &origin)
    }

    /// The playbook an `invoke` or `followup` step names, from the workflows directory as
    /// it is now: compiled, with its text (which the new run pins) and `params` bound.
    pub(super) fn load_playbook(
        &self,
        playbook: &str,
        params: &[(String, String)],
    ) -> Result<(Plan, String, serde_json::Map<String, serde_json::Value>), String> {
        let path = crate::library::resolve_in(&self.config.workflows, playbook)
            .map_err(|e| format!("cannot load playbook `{playbook}`: {e:#}"))?;
        let source = match crate::library::read(&path) {
            Ok(Ok(source)) => source,
            Ok(Err(d)) => return Err(format!("cannot read `{}`: {}", path.display(), d.message)),
            Err(e) => return Err(format!("{e:#}")),
        };
        let text = source.text.clone();
        let plan = compile(source, &self.config.workflows).map_err(|e| e.to_string())?;
        let bound = bind_params(&plan.playbook.params, params).map_err(|errors| {
            errors
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        Ok((plan, text, bound))
    }

    /// Runs the reaper until `stop`: expired leases become ready again, with a new job.
    pub async fn reap(self: Arc<Engine>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.reap_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.store.steps_reap_expired(Utc::now()).await {
                Ok(reaped) if reaped.is_empty() => {}
                Ok(reaped) => {
                    tracing::info!(reaped = reaped.len(), "re-queued steps whose lease expired");
                    // Their workers are gone: nobody else ends what the attempts started.
                    let swept = super::orphans::sweep_reaped(&reaped).await;
                    if swept > 0 {
                        tracing::warn!(
                            count = swept,
                            "killed processes that dead attempts left running"
                        );
                    }
                }
                Err(e) => tracing::warn!("reaper: {e}"),
            }
        }
    }

    /// Takes jobs until `stop` fires, with the reaper alongside. A database outage does not
    /// end it: apalis ends its worker when a fetch or a heartbeat fails (its stream yields
    /// the error and `run` returns it), so the queue consumer is started again, with
    /// backoff, until `stop`; attempts in flight run on (they are tasks of their own, see
    /// [`job_handler`]) and record their results once the database is back, lease allowing.
    pub async fn work(self: Arc<Engine>, stop: CancellationToken) -> Result<(), Error> {
        // The queue's bookkeeping commits asynchronously on Postgres (see Store::for_queue).
        let queue = self.store.for_queue().await?;
        let reaper = tokio::spawn(self.clone().reap(stop.clone()));
        let mut delay = RECONNECT_FIRST;
        let mut incarnation = 0u32;
        loop {
            let began = std::time::Instant::now();
            let result = self
                .clone()
                .consume(&queue, incarnation, stop.clone())
                .await;
            if stop.is_cancelled() {
                break;
            }
            let why = match result {
                Ok(()) => "its stream ended".to_owned(),
                Err(e) => e.to_string(),
            };
            if began.elapsed() >= RECONNECT_RESET {
                delay = RECONNECT_FIRST;
            }
            tracing::warn!(worker = %self.worker_id, retry_in = ?delay, "queue consumer stopped ({why}); reconnecting");
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(RECONNECT_MAX);
            incarnation += 1;
        }
        let _ = reaper.await;
        if !matches!(queue, Store::Sqlite(_)) {
            queue.close().await;
        }
        Ok(())
    }

    /// One apalis worker on the queue until it ends (an error) or `stop` fires. Each one
    /// has a name of its own: apalis registers a name under a session advisory lock, which
    /// a pooled connection that survived the failure would still hold for the last one.
    async fn consume(
        self: Arc<Engine>,
        queue: &Store,
        incarnation: u32,
        stop: CancellationToken,
    ) -> Result<(), Error> {
        let name = match incarnation {
            0 => self.worker_id.clone(),
            n => format!("{}~{n}", self.worker_id),
        };
        if incarnation > 0 {
            tracing::info!(worker = %name, "queue consumer started again");
        }
        let poll = self.config.poll_every;
        let slots = self.config.concurrency.max(1);
        // apalis is told to shut down only once the jobs in flight have finished (see
        // `drain`); until then it takes no more jobs but keeps its bookkeeping going.
        let drain = Drain::new(stop);
        let shutdown = {
            let drain = drain.clone();
            async move {
                drain.idle().await;
                Ok::<(), std::io::Error>(())
            }
        };
        let result = match queue {
            Store::Postgres(pool) => {
                // One job per fetch, and no fetch while every slot is busy (the concurrency
                // layer makes the worker's service not ready, which stops apalis polling):
                // jobs this worker cannot start yet stay in the queue for the other workers.
                let config = apalis_postgres::Config::default()
                    .queue(QUEUE)
                    .batch_size(1)
                    .heartbeat_interval(Duration::from_secs(2))
                    .missed_heartbeats(3);
                let notices = apalis_postgres::Pubsub::new(pool.clone(), QUEUE.to_owned());
                let strategy = Strategy::new().apply(Wakeups::with_notices(notices, poll));
                let backend = apalis_postgres::PostgresStorage::<StepJob>::new(pool)
                    .with_config(config)
                    .poll_with_strategy(strategy);
                WorkerBuilder::new(name)
                    .backend(backend)
                    .layer(drain.clone())
                    .layer(ConcurrencyLimitLayer::new(slots))
                    .data(self.clone())
                    .build(job_handler)
                    .run_until(shutdown)
                    .await
            }
            Store::Sqlite(pool) => {
                // One process per database file: there is no other worker to leave jobs
                // for, so a fetch takes as many as there are slots (one transaction).
                let config = apalis_sqlite::Config::default()
                    .queue(QUEUE)
                    .batch_size(slots)
                    .heartbeat_interval(Duration::from_secs(2))
                    .missed_heartbeats(3);
                let backend = apalis_sqlite::SqliteStorage::<StepJob>::new(pool)
                    .with_config(config)
                    .poll_with_strategy(Strategy::new().apply(Wakeups::every(poll)));
                WorkerBuilder::new(name)
                    .backend(backend)
                    .layer(drain.clone())
                    .layer(ConcurrencyLimitLayer::new(slots))
                    .data(self.clone())
                    .build(job_handler)
                    .run_until(shutdown)
                    .await
            }
        };
        result.map_err(|e| Error::Queue(e.to_string()))
    }
}

/// The first wait before the queue consumer is started again after it stopped; doubled
/// each time up to [`RECONNECT_MAX`], and back to this once a consumer has lasted
/// [`RECONNECT_RESET`].
const RECONNECT_FIRST: Duration = Duration::from_millis(250);
// One connection attempt a second per worker during an outage costs nothing, and the
// database is used again within about a second of its return.
const RECONNECT_MAX: Duration = Duration::from_secs(1);
const RECONNECT_RESET: Duration = Duration::from_secs(30);

/// A job's handling runs as a task of its own, so an attempt in flight is not dropped
/// (its process killed, its result lost) when the apalis worker it came from ends on a
/// database error; the engine's own slots still bound the attempts running at once.
async fn job_handler(
    job: StepJob,
    engine: Data<Arc<Engine>>,
) -> Result<(), apalis_core::error::BoxDynError> {
    let engine: Arc<Engine> = (*engine).clone();
    let task = tokio::spawn(async move {
        if let Err(e) = engine.handle(job.clone()).await {
            tracing::error!(run.id = %job.run_id, step.id = %job.step_id, "job failed: {e}");
        }
    });
    let _ = task.await;
    // Always acknowledged: the step's row, not the job, says what happens next.
    Ok(())
}

/// The attempts a step gets in all when its attempts are lost with their workers (their
/// leases expired and the reaper made the step ready again), if its `retry` gives fewer.
/// A lost attempt counts like a failed one, so a step that kills every worker that runs it
/// fails instead of being taken over forever; but a worker's death alone does not fail a
/// step that was given no retries: it is taken over, up to this many attempts.
pub const TAKEOVER_ATTEMPTS: i32 = 3;

/// The failure to record, without running anything, for an attempt claimed after the
/// step's last allowed attempt was lost with its worker. Only a takeover claims past
/// `max_attempts` (a failed attempt is retried only while attempts are left).
fn exhausted(row: &StepRun) -> Option<Ended> {
    let allowed = row.max_attempts.max(TAKEOVER_ATTEMPTS);
    (row.attempt > allowed).then(|| Ended {
        error: Some(format!(
            "attempt {} was lost with its worker (its lease expired) and the step has no \
             attempts left ({allowed} allowed, lost attempts included)",
            row.attempt - 1
        )),
        permanent: true,
        ..Ended::default()
    })
}

/// Calls `op` until it succeeds or fails with an error that is not transient (see
/// [`store::Error::is_transient`]), waiting 100 ms doubling to 1 s between calls, for at
/// most `bound` (none: until the database answers). Logs the first failure and every
/// thirtieth after it.
async fn until_answered<T, F, Fut>(
    what: &str,
    bound: Option<Duration>,
    mut op: F,
) -> Result<T, store::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, store::Error>>,
{
    let began = std::time::Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut failures = 0u32;
    loop {
        match op().await {
            Err(e) if e.is_transient() && bound.is_none_or(|b| began.elapsed() < b) => {
                if failures.is_multiple_of(30) {
                    tracing::warn!(retry_in = ?delay, "could not {what} ({e}); trying again");
                }
                failures += 1;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// Renews the lease every third of its length until aborted; fires `lost` when the lease
/// is gone (cancelled run, another worker's takeover) so the attempt stops.
async fn renew(store: Store, lease: Lease, lease_for: Duration, lost: CancellationToken) {
    let every = (lease_for / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        match store.step_renew_lease(&lease, lease_for, None).await {
            Ok(_) => {}
            Err(store::Error::LeaseLost { .. } | store::Error::StepNotFound { .. }) => {
                lost.cancel();
                return;
            }
            // A database hiccup: keep trying while the lease lasts.
            Err(e) => {
                tracing::warn!(run.id = %lease.run_id, step.id = %lease.step_id, "lease renewal failed: {e}")
            }
        }
    }
}

/// The delay before the next attempt: the step's exponential backoff, with jitter (a
/// random 50-100% of it), so retries of many steps do not stampede.
fn backoff(plan: &Plan, step: &Step, attempt: i32) -> Duration {
    let retry = plan.retry(step);
    let base = retry.delay_after(u32::try_from(attempt.max(1)).unwrap_or(1));
    let mut bytes = [0u8; 2];
    let r = getrandom::fill(&mut bytes).map_or(u16::MAX, |()| u16::from_le_bytes(bytes));
    base.mul_f64(0.5 + 0.5 * f64::from(r) / f64::from(u16::MAX))
}

/// The plan a run pinned, compiled from its stored definition (`invoke` resolved against
/// `workflows`).
pub fn plan_of_run(run: &Run, workflows: &std::path::Path) -> Result<Plan, Error> {
    let source = Source {
        name: format!("{} (run {})", run.playbook, run.id),
        text: run.definition.clone(),
    };
    compile(source, workflows)
}

/// Compiles a playbook text, resolving `invoke` against the workflows directory.
pub fn compile(source: Source, workflows: &std::path::Path) -> Result<Plan, Error> {
    let name = source.name.clone();
    let references = crate::library::references_in(workflows, &[]);
    let compiled = crate::compiler::compile_all(vec![source], &references)
        .pop()
        .expect("one input, one output");
    compiled.plan.ok_or_else(|| Error::Invalid {
        name,
        errors: compiled
            .diagnostics
            .iter()
            .filter(|d| d.severity == crate::diagnostic::Severity::Error)
            .map(|d| format!("{}:{}: {}", d.location.line, d.location.column, d.message))
            .collect::<Vec<_>>()
            .join("; "),
    })
}
