//! Comparing a run's chain with what else the store holds: the head the database recorded
//! (`run_heads`), and the run's and steps' rows, whose status the chain must explain.
//!
//! The chain alone proves that nothing in its middle was edited, removed or reordered. It
//! cannot show that events were removed from its end; the recorded head can, since a head
//! only moves forward. And the rows are mutable: an edit to a row's status behind the store
//! (no trigger guards them) shows up as a row the chain disagrees with.

use super::model::{CheckpointSize, HeadInfo, RunLink, StoreFacts, Summary};
use crate::store::{Evidence, Run};

/// The store's facts about the run, without `problems` (see [`compare`]).
pub fn store_facts(evidence: &Evidence, read_at: String) -> StoreFacts {
    StoreFacts {
        read_at,
        checkpoints: evidence
            .steps
            .iter()
            .filter_map(|s| {
                Some(CheckpointSize {
                    step_id: s.step_id.clone(),
                    bytes: s.checkpoint.as_ref().filter(|c| !c.is_empty())?.len() as u64,
                })
            })
            .collect(),
        parent: evidence
            .parent
            .as_ref()
            .map(|p| link(p, p.parent_step_id.clone())),
        children: evidence
            .children
            .iter()
            .map(|c| link(c, c.parent_step_id.clone()))
            .collect(),
        stored_head: evidence.head.as_ref().map(|h| HeadInfo {
            seq: h.seq,
            hash: h.hash.clone(),
        }),
        problems: Vec::new(),
    }
}

fn link(run: &Run, step_id: Option<String>) -> RunLink {
    RunLink {
        run_id: run.id.clone(),
        step_id,
        playbook: Some(run.playbook.clone()),
        status: Some(run.status.as_str().to_owned()),
        trigger: Some(run.trigger.clone()),
        sealed: false,
    }
}

/// Where the store disagrees with the chain summarized in `summary`: each problem as a
/// sentence, none when they agree.
pub fn compare(evidence: &Evidence, summary: &Summary) -> Vec<String> {
    let mut problems = Vec::new();
    let last = evidence.events.last();
    match (&evidence.head, last) {
        (Some(head), Some(last)) if head.seq == last.seq && head.hash == last.hash => {}
        (Some(head), Some(last)) => problems.push(format!(
            "the database recorded the chain's head as event {} ({}), but the chain ends at event {} ({}): events were removed from its end, or the head was changed",
            head.seq, head.hash, last.seq, last.hash
        )),
        (Some(head), None) => problems.push(format!(
            "the database recorded the chain's head as event {}, but the run has no events",
            head.seq
        )),
        (None, Some(_)) => {
            problems.push("the database recorded no head for a run that has events".into())
        }
        (None, None) => problems.push("the run has no events".into()),
    }
    let run = &evidence.run;
    if run.status.as_str() != summary.run.status {
        problems.push(format!(
            "the run's row says {} but its chain says {}",
            run.status, summary.run.status
        ));
    }
    for row in &evidence.steps {
        match summary.steps.iter().find(|s| s.id == row.step_id) {
            Some(s) if s.status == row.status.as_str() => {}
            Some(s) => problems.push(format!(
                "step `{}`: its row says {} but the chain says {}",
                row.step_id, row.status, s.status
            )),
            None => problems.push(format!(
                "step `{}` has a row but is neither in the definition nor in the chain",
                row.step_id
            )),
        }
    }
    problems
}
