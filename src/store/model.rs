//! The values the store reads and writes: rows as typed structs, and the inputs of the
//! operations that take more than an id.
//!
//! Rows are decoded through `*Row` structs of plain column types (`String`, `i64`, ...),
//! which `sqlx::FromRow` can decode from either backend, then checked and converted here
//! (status text to `state` enums, milliseconds to `DateTime<Utc>`).

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;

use super::error::{Error, Result};
use super::evidence::Head;
use crate::state::{RunStatus, StepStatus, UnknownStatus};

/// A run as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: String,
    pub playbook: String,
    pub content_hash: String,
    pub definition: String,
    pub params: Value,
    pub starter: String,
    pub trigger: String,
    pub status: RunStatus,
    pub lock_key: Option<String>,
    pub parent_run_id: Option<String>,
    pub parent_step_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// Which list of the playbook a step row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepList {
    Main,
    /// An `undo` step, run in reverse order of completion after a failure.
    Compensation,
    /// A playbook-level `on_failure` step.
    OnFailure,
}

impl StepList {
    pub fn as_str(self) -> &'static str {
        match self {
            StepList::Main => "main",
            StepList::Compensation => "compensation",
            StepList::OnFailure => "on_failure",
        }
    }
}

impl FromStr for StepList {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [StepList::Main, StepList::Compensation, StepList::OnFailure]
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| UnknownStatus {
                what: "step list",
                text: s.to_owned(),
            })
    }
}

impl fmt::Display for StepList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of one run, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRun {
    pub run_id: String,
    pub step_id: String,
    pub position: i32,
    pub list: StepList,
    pub status: StepStatus,
    /// Attempts started so far: 0 before the first claim.
    pub attempt: i32,
    pub max_attempts: i32,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub ready_at: Option<DateTime<Utc>>,
    pub outputs: Option<Value>,
    pub checkpoint: Option<Vec<u8>>,
    pub error: Option<String>,
    /// `run_id:step_id`: the same for every attempt (RUNWAY_IDEMPOTENCY_KEY).
    pub idempotency_key: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl StepRun {
    /// The lease this row shows, if the step is running.
    pub fn lease(&self) -> Option<Lease> {
        Some(Lease {
            run_id: self.run_id.clone(),
            step_id: self.step_id.clone(),
            worker: self.lease_owner.clone()?,
            attempt: self.attempt,
        })
    }
}

/// One event of a run's evidence chain, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub run_id: String,
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub step_id: Option<String>,
    pub attempt: Option<i32>,
    pub data: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// An event to append; the store gives it its `seq`, time and hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: String,
    pub step_id: Option<String>,
    pub attempt: Option<i32>,
    pub data: Value,
}

impl NewEvent {
    pub fn run(kind: impl Into<String>, data: Value) -> NewEvent {
        NewEvent {
            kind: kind.into(),
            step_id: None,
            attempt: None,
            data,
        }
    }

    pub fn step(kind: impl Into<String>, step_id: &str, attempt: i32, data: Value) -> NewEvent {
        NewEvent {
            kind: kind.into(),
            step_id: Some(step_id.to_owned()),
            attempt: Some(attempt),
            data,
        }
    }
}

/// A run to create, with all its step rows.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    /// From [`new_id`]: ULIDs sort by creation time.
    pub id: String,
    pub playbook: String,
    pub content_hash: String,
    pub definition: String,
    pub params: Value,
    pub starter: String,
    /// `manual`, `schedule:ID` or `invoke:RUN/STEP`.
    pub trigger: String,
    /// When set, the run starts only while it holds this lock; otherwise it is `queued`.
    pub lock_key: Option<String>,
    /// When the lock is held by another run: `true` queues this run behind it (the
    /// default of `runway run`/`start`), `false` refuses it with `Error::LockHeld` and
    /// creates nothing (`--no-wait`).
    pub queue_on_lock: bool,
    pub parent_run_id: Option<String>,
    pub parent_step_id: Option<String>,
    /// In the engine's order; a step's `position` is its index here.
    pub steps: Vec<NewStep>,
}

/// A step row to create with its run.
#[derive(Debug, Clone, PartialEq)]
pub struct NewStep {
    pub step_id: String,
    pub list: StepList,
    /// `Pending`, `Ready` (a job is pushed once the run runs) or `Skipped`; `Succeeded` or
    /// `Warned` only for a step kept from an earlier run (`runway retry`), with its outputs.
    pub status: StepStatus,
    pub max_attempts: i32,
    /// The outputs of a kept step.
    pub outputs: Option<Value>,
}

/// Who may move a step: the state a guarded statement requires it to be in, and for a
/// running step, the lease holder and attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    Lease(Lease),
    Ready { run_id: String, step_id: String },
    Waiting { run_id: String, step_id: String },
}

impl Guard {
    pub fn run_id(&self) -> &str {
        match self {
            Guard::Lease(l) => &l.run_id,
            Guard::Ready { run_id, .. } | Guard::Waiting { run_id, .. } => run_id,
        }
    }

    pub fn step_id(&self) -> &str {
        match self {
            Guard::Lease(l) => &l.step_id,
            Guard::Ready { step_id, .. } | Guard::Waiting { step_id, .. } => step_id,
        }
    }

    pub fn status(&self) -> StepStatus {
        match self {
            Guard::Lease(_) => StepStatus::Running,
            Guard::Ready { .. } => StepStatus::Ready,
            Guard::Waiting { .. } => StepStatus::Waiting,
        }
    }
}

/// A worker's hold on one attempt of a running step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub run_id: String,
    pub step_id: String,
    pub worker: String,
    pub attempt: i32,
}

/// The result of an attempt (or of a parked step's decision), recorded by `step_finish`
/// together with everything that follows from it, in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    /// A terminal status.
    pub status: StepStatus,
    pub outputs: Option<Value>,
    /// Replaces the stored checkpoint when set.
    pub checkpoint: Option<Vec<u8>>,
    pub error: Option<String>,
    /// Other steps the engine decided now (successors made ready, skips, gate verdicts).
    pub then: Vec<Decision>,
    /// The run's new status, when this result ends (or parks) the run.
    pub run_status: Option<RunStatus>,
    /// Events to append after the store's own `step.<status>` event.
    pub events: Vec<NewEvent>,
}

/// A finishing worker's offer to run one of the steps its result makes ready: the store
/// claims it for `worker` in the same transaction instead of pushing a job for it, so a
/// chain of steps runs without a trip through the queue for every link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNext {
    pub worker: String,
    pub lease_for: std::time::Duration,
}

impl Finish {
    pub fn new(status: StepStatus) -> Finish {
        Finish {
            status,
            outputs: None,
            checkpoint: None,
            error: None,
            then: Vec::new(),
            run_status: None,
            events: Vec::new(),
        }
    }
}

/// A pending step the engine decided: `Ready` (its job is pushed), `Skipped`, or a verdict
/// reached without a worker (`Succeeded`, `Failed`, `Warned`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub step_id: String,
    pub status: StepStatus,
    pub error: Option<String>,
}

impl Decision {
    pub fn ready(step_id: impl Into<String>) -> Decision {
        Decision {
            step_id: step_id.into(),
            status: StepStatus::Ready,
            error: None,
        }
    }

    pub fn skipped(step_id: impl Into<String>) -> Decision {
        Decision {
            step_id: step_id.into(),
            status: StepStatus::Skipped,
            error: None,
        }
    }
}

/// A failed attempt that will be tried again later.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    pub ready_at: DateTime<Utc>,
    pub error: Option<String>,
    /// Replaces the stored checkpoint when set, so the next attempt resumes from it.
    pub checkpoint: Option<Vec<u8>>,
}

/// The payload of every queued job: which step to wake. The database rows are the truth;
/// `attempt` is the attempt the job was pushed for, a hint for logs only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepJob {
    pub run_id: String,
    pub step_id: String,
    pub attempt: i32,
}

/// A new id for a run: a ULID rather than a UUID because it sorts by creation time (26
/// characters, and already in the dependency tree through apalis), so ids make the
/// tie-break for runs created in the same millisecond. Monotonic within this process, so
/// that tie-break follows creation order here too.
pub fn new_id() -> String {
    static IDS: Mutex<ulid::Generator> = Mutex::new(ulid::Generator::new());
    let mut ids = IDS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let id = match ids.generate() {
        Ok(id) => id,
        // 2^80 ids in one millisecond: carry into the next one.
        Err(overflow) => overflow.commit_overflow_increment(),
    };
    id.to_string()
}

pub(super) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn time(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| {
        Error::Corrupt(UnknownStatus {
            what: "timestamp",
            text: ms.to_string(),
        })
    })
}

fn opt_time(ms: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    ms.map(time).transpose()
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct RunRow {
    id: String,
    playbook: String,
    content_hash: String,
    definition: String,
    params: Json<Value>,
    starter: String,
    trigger: String,
    status: String,
    lock_key: Option<String>,
    parent_run_id: Option<String>,
    parent_step_id: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    error: Option<String>,
}

impl TryFrom<RunRow> for Run {
    type Error = Error;

    fn try_from(r: RunRow) -> Result<Run> {
        Ok(Run {
            status: r.status.parse()?,
            created_at: time(r.created_at)?,
            started_at: opt_time(r.started_at)?,
            finished_at: opt_time(r.finished_at)?,
            id: r.id,
            playbook: r.playbook,
            content_hash: r.content_hash,
            definition: r.definition,
            params: r.params.0,
            starter: r.starter,
            trigger: r.trigger,
            lock_key: r.lock_key,
            parent_run_id: r.parent_run_id,
            parent_step_id: r.parent_step_id,
            error: r.error,
        })
    }
}

/// What a run's open steps say, read with its lock by one statement (`census`): valid
/// until the transaction changes a step or the run's status.
#[derive(Debug, Clone, Copy)]
pub(super) struct Census {
    /// The run's status as the transaction sees it.
    pub status: crate::state::RunStatus,
    /// A step is ready or running.
    pub active: bool,
    /// A step is waiting (for a person, a timer, a child run).
    pub waiting: bool,
    /// A main step is still pending, ready, running or waiting.
    pub main_open: bool,
}

/// A run row read with its lock, as a decision sees it (no definition), and the head of
/// its evidence chain (`head_seq` is `None` for a run with no event yet).
#[derive(Debug, sqlx::FromRow)]
pub(super) struct LockedRow {
    #[sqlx(flatten)]
    run: RunRow,
    head_seq: Option<i64>,
    head_hash: Option<String>,
}

/// A run whose append lock the caller's transaction holds: the run as a decision sees it
/// (every column but the definition) and the head of its chain, both read after the lock
/// was granted, so they stay true until the transaction moves them itself.
#[derive(Debug)]
pub(super) struct Locked {
    pub(super) run: Run,
    pub(super) head: Head,
}

impl TryFrom<LockedRow> for Locked {
    type Error = Error;

    fn try_from(r: LockedRow) -> Result<Locked> {
        let head = match (r.head_seq, r.head_hash) {
            (Some(seq), Some(hash)) => Head { seq, hash },
            _ => Head::genesis(),
        };
        Ok(Locked {
            run: r.run.try_into()?,
            head,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct StepRow {
    run_id: String,
    step_id: String,
    position: i32,
    list: String,
    status: String,
    attempt: i32,
    max_attempts: i32,
    lease_owner: Option<String>,
    lease_expires_at: Option<i64>,
    ready_at: Option<i64>,
    outputs: Option<Json<Value>>,
    checkpoint: Option<Vec<u8>>,
    error: Option<String>,
    idempotency_key: String,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    /// The last job pushed to wake the step (see `ops::Wake::id`); the store's own.
    pub(super) job_id: Option<String>,
}

impl TryFrom<StepRow> for StepRun {
    type Error = Error;

    fn try_from(r: StepRow) -> Result<StepRun> {
        Ok(StepRun {
            list: r.list.parse()?,
            status: r.status.parse()?,
            lease_expires_at: opt_time(r.lease_expires_at)?,
            ready_at: opt_time(r.ready_at)?,
            started_at: opt_time(r.started_at)?,
            finished_at: opt_time(r.finished_at)?,
            run_id: r.run_id,
            step_id: r.step_id,
            position: r.position,
            attempt: r.attempt,
            max_attempts: r.max_attempts,
            lease_owner: r.lease_owner,
            outputs: r.outputs.map(|j| j.0),
            checkpoint: r.checkpoint,
            error: r.error,
            idempotency_key: r.idempotency_key,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct EventRow {
    run_id: String,
    seq: i64,
    at: i64,
    kind: String,
    step_id: Option<String>,
    attempt: Option<i32>,
    data: Json<Value>,
    prev_hash: String,
    hash: String,
}

impl TryFrom<EventRow> for Event {
    type Error = Error;

    fn try_from(r: EventRow) -> Result<Event> {
        Ok(Event {
            at: time(r.at)?,
            run_id: r.run_id,
            seq: r.seq,
            kind: r.kind,
            step_id: r.step_id,
            attempt: r.attempt,
            data: r.data.0,
            prev_hash: r.prev_hash,
            hash: r.hash,
        })
    }
}

pub(super) fn convert<R, T>(rows: Vec<R>) -> Result<Vec<T>>
where
    T: TryFrom<R, Error = Error>,
{
    rows.into_iter().map(T::try_from).collect()
}

/// What the engine decides from a run's rows, inside the transaction that changed them:
/// the store reads the run and all its steps under the run's lock, asks a [`Decide`], and
/// applies the answer before the commit. Deciding inside the transaction is what makes a
/// join safe: two parallel steps finishing at once are serialized by the run lock, and
/// the second sees the first's result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Advance {
    /// Pending steps decided now (ready: a job is pushed; or skipped, succeeded, failed,
    /// warned, cancelled without a worker).
    pub then: Vec<Decision>,
    /// Open steps (ready, running, waiting) to cancel. A running step loses its lease, so
    /// its worker's next renewal fails and it stops the attempt.
    pub cancel: Vec<String>,
    /// Waiting steps of *other* runs to wake now (a parent's `invoke` step when this child
    /// run ends): made due, with a job pushed.
    pub wake: Vec<(String, String)>,
    /// The run's new status, when it ends (or parks).
    pub run_status: Option<RunStatus>,
    pub run_error: Option<String>,
    /// Events to append (after the store's own).
    pub events: Vec<NewEvent>,
}

impl Advance {
    pub fn is_empty(&self) -> bool {
        *self == Advance::default()
    }
}

/// A step that has just ended, the change a finishing transaction asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended<'a> {
    pub step_id: &'a str,
    pub status: StepStatus,
}

/// The engine's decision function, as the store sees it. It must be pure and quick: it runs
/// while the run's lock is held.
///
/// Two ways to ask. [`Decide::decide`] looks at every row of the run. After one step ended,
/// the store first asks [`Decide::reads_after`] which few rows a decision needs and
/// [`Decide::decide_after`] to decide from those alone, so that a transition costs the same
/// in a run of 10 steps and of 10,000; it falls back to `decide` when either says `None`,
/// and when a partial answer starts nothing and no main step is still open (the run may be
/// over, which only the whole view can tell).
///
/// The `run` given to both is read without its definition (`run.definition` is empty):
/// the decider holds the compiled plan.
pub trait Decide: Send + Sync {
    fn decide(&self, run: &Run, steps: &[StepRun]) -> Advance;

    /// The steps whose rows [`Decide::decide_after`] needs, or `None` to decide over all.
    fn reads_after(&self, _ended: &Ended<'_>) -> Option<Vec<String>> {
        None
    }

    /// What follows from `ended` given the rows [`Decide::reads_after`] named (fewer when
    /// a named step has no row), or `None` when only the whole view can tell.
    fn decide_after(&self, _run: &Run, _ended: &Ended<'_>, _rows: &[StepRun]) -> Option<Advance> {
        None
    }

    /// The rows step `step_id` reads: what its attempt renders and evaluates, and what the
    /// decision after its success reads ([`Decide::reads_after`]). A store that claims the
    /// step in a hand-over may return them with the claim (`store::Claimed::rows`), so
    /// that the step's finish can be decided ahead (see `store::ahead`).
    fn reads_for(&self, _step_id: &str) -> Vec<String> {
        Vec::new()
    }
}

/// Decides nothing: the step's own result is recorded and nothing follows from it.
pub struct NoDecide;

impl Decide for NoDecide {
    fn decide(&self, _: &Run, _: &[StepRun]) -> Advance {
        Advance::default()
    }
}

/// What a person said at an approval or checklist step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Approve,
    Reject,
    /// A checklist item passed.
    Pass,
    /// A checklist item failed.
    Fail,
    /// A checklist item does not apply.
    Na,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Na => "na",
        }
    }
}

impl FromStr for Verdict {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Verdict::Approve,
            Verdict::Reject,
            Verdict::Pass,
            Verdict::Fail,
            Verdict::Na,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
        .ok_or_else(|| UnknownStatus {
            what: "verdict",
            text: s.to_owned(),
        })
    }
}

/// A decision to record: `item` is empty for an approval, the item id for a checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStepDecision {
    pub item: String,
    pub operator: String,
    pub verdict: Verdict,
    pub comment: Option<String>,
    pub plan_hash: String,
}

/// A recorded decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepDecision {
    pub run_id: String,
    pub step_id: String,
    pub attempt: i32,
    pub item: String,
    pub operator: String,
    pub verdict: Verdict,
    pub comment: Option<String>,
    pub plan_hash: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct DecisionRow {
    run_id: String,
    step_id: String,
    attempt: i32,
    item: String,
    operator: String,
    verdict: String,
    comment: Option<String>,
    plan_hash: String,
    at: i64,
}

impl TryFrom<DecisionRow> for StepDecision {
    type Error = Error;

    fn try_from(r: DecisionRow) -> Result<StepDecision> {
        Ok(StepDecision {
            verdict: r.verdict.parse()?,
            at: time(r.at)?,
            run_id: r.run_id,
            step_id: r.step_id,
            attempt: r.attempt,
            item: r.item,
            operator: r.operator,
            comment: r.comment,
            plan_hash: r.plan_hash,
        })
    }
}

/// Whether the decisions recorded so far at a parked step end it: `Some` finish (succeeded
/// when the quorum approved or every required item passed, failed on a rejection or a
/// failed required item), or `None` to keep waiting. Asked inside the recording transaction.
pub trait Judge: Send + Sync {
    fn judge(&self, decisions: &[StepDecision]) -> Option<Finish>;
}
