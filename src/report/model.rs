//! The report model: what an evidence report says, as plain data that serializes to the
//! JSON export and feeds the Markdown and HTML templates.
//!
//! A [`Report`] has four parts. `summary` is derived from the sealed record only (the
//! run's pinned definition and its hash-chained events) plus the few facts of `store`, so
//! `runway verify FILE.json` can derive it again and refuse a file whose summary was
//! edited. `store` holds what only the database knows (checkpoint sizes, linked runs'
//! current status, the recorded chain head, what the check against the rows found).
//! `definition` and `events` are the sealed record itself.

use serde::{Deserialize, Serialize};

use crate::store::Event;

/// The `format` of a JSON export; bumped when a reader would misread a newer file.
pub const FORMAT: &str = "runway-evidence/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format: String,
    pub summary: Summary,
    pub store: StoreFacts,
    /// The playbook text the run pinned; its sha256 is the content hash in `run.created`.
    pub definition: String,
    /// The run's whole chain, in `seq` order, as stored.
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub playbook: PlaybookInfo,
    pub run: RunInfo,
    pub params: Vec<NameValue>,
    /// Declared secret names; their values are never recorded.
    pub secrets: Vec<String>,
    /// Every step of the run: main steps in plan order, then compensations, then
    /// `on_failure` steps.
    pub steps: Vec<StepEntry>,
    pub gates: Vec<GateEntry>,
    pub approvals: Vec<ApprovalEntry>,
    pub checklists: Vec<ChecklistEntry>,
    pub escalations: Vec<EscalationEntry>,
    pub cancel: Option<CancelEntry>,
    /// Compensations and `on_failure` steps that were started or decided (not merely
    /// skipped because the run succeeded).
    pub unwinding: Vec<UndoEntry>,
    pub children: Vec<RunLink>,
    pub chain: ChainInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaybookInfo {
    pub name: String,
    pub title: String,
    pub description: Option<String>,
    /// `sha256:...` of the pinned definition, as sealed in `run.created`.
    pub content_hash: String,
    /// Whether the definition in this report hashes to `content_hash`.
    pub definition_matches: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub id: String,
    pub status: String,
    /// One line for people: "succeeded", "failed: step `x` failed: ...".
    pub outcome: String,
    pub starter: String,
    pub trigger: String,
    pub lock_key: Option<String>,
    /// What approvals are bound to: the content hash and the params, hashed.
    pub plan_hash: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration: Option<String>,
    pub error: Option<String>,
    pub parent: Option<RunLink>,
    /// The run this one retries (`runway retry`), from its trigger.
    pub retry_of: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepEntry {
    pub id: String,
    pub title: String,
    pub kind: String,
    /// `main`, `compensation` or `on_failure`.
    pub list: String,
    pub critical: bool,
    /// 1-based; steps of one stage may run at the same time. Main steps only.
    pub stage: Option<usize>,
    /// The steps it waits for (explicit `needs` or list order). Main steps only.
    pub needs: Vec<String>,
    /// For a compensation: the main step whose `undo` it is.
    pub undoes: Option<String>,
    pub status: String,
    /// Attempts started.
    pub attempts: i64,
    pub max_attempts: u32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration: Option<String>,
    pub error: Option<String>,
    /// Outputs other than the output streams, each value cut to a bounded excerpt.
    pub outputs: Vec<NameValue>,
    /// The end of the step's stdout / stderr, bounded.
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    /// Bytes of the checkpoint the store holds for the step (from `store`).
    pub checkpoint_bytes: Option<u64>,
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub attempt: Option<i32>,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateEntry {
    pub id: String,
    pub title: String,
    /// `GO` or `NO-GO`.
    pub verdict: String,
    pub go: bool,
    pub at: String,
    /// Every check was skipped: NO-GO, since nothing was checked.
    pub none_ran: bool,
    pub checks: Vec<CheckEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckEntry {
    pub id: String,
    pub title: String,
    /// `passed`, `failed` (a NO-GO reason), `warned` (a non-critical failure) or `skipped`.
    pub result: String,
    pub critical: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalEntry {
    pub step_id: String,
    pub prompt: String,
    pub operator: String,
    /// `approve` or `reject`.
    pub verdict: String,
    pub comment: Option<String>,
    pub plan_hash: String,
    /// Whether `plan_hash` is this run's plan hash.
    pub plan_hash_matches: bool,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChecklistEntry {
    pub step_id: String,
    pub title: String,
    pub status: String,
    pub items: Vec<ItemEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemEntry {
    pub id: String,
    pub text: String,
    pub required: bool,
    /// `pass`, `fail`, `na`, or `None` while unanswered.
    pub answer: Option<String>,
    pub operator: Option<String>,
    pub note: Option<String>,
    pub at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationEntry {
    pub step_id: String,
    pub at: String,
    pub message: String,
    pub delivered: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelEntry {
    pub by: String,
    pub reason: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UndoEntry {
    pub id: String,
    pub title: String,
    pub list: String,
    pub undoes: Option<String>,
    pub status: String,
    pub error: Option<String>,
}

/// Another run linked to this one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunLink {
    pub run_id: String,
    /// The step of the parent that started the child.
    pub step_id: Option<String>,
    pub playbook: Option<String>,
    /// The linked run's status when the report was made (from the store).
    pub status: Option<String>,
    pub trigger: Option<String>,
    /// Whether this run's own chain records the link (an `invoke` child, the parent named
    /// in `run.created`), or only the store does (a follow-up run).
    pub sealed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainInfo {
    pub events: usize,
    pub head_seq: Option<i64>,
    pub head_hash: Option<String>,
    pub first_at: Option<String>,
    pub last_at: Option<String>,
    /// Every event links to the one before and matches its content.
    pub intact: bool,
    /// The first event that does not, when not intact.
    pub first_bad: Option<i64>,
}

/// What only the database knows, and what checking the chain against it found.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StoreFacts {
    /// When the store was read (RFC 3339).
    pub read_at: String,
    pub checkpoints: Vec<CheckpointSize>,
    pub parent: Option<RunLink>,
    pub children: Vec<RunLink>,
    /// The head the database recorded for the run (`run_heads`).
    pub stored_head: Option<HeadInfo>,
    /// Problems found comparing the chain with the store's rows and recorded head; empty
    /// when they agree.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointSize {
    pub step_id: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadInfo {
    pub seq: i64,
    pub hash: String,
}
