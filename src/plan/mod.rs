//! A compiled playbook: the validated steps, their DAG, and what follows from them
//! (timeouts, attempts, worst-case durations, the critical path).
//!
//! The plan is what a run pins (with the content hash of the text it came from) and what
//! the engine executes; `runway plan` shows it.

mod bind;
mod index;
mod render;

pub use bind::{BindError, bind_params};
pub use index::{Index, Place};
pub use render::{Format, render};

use std::sync::OnceLock;
use std::time::Duration as StdDuration;

use sha2::{Digest, Sha256};

use crate::compiler::StepGraph;
use crate::playbook::Playbook;
use crate::playbook::duration::Duration;
use crate::playbook::kinds::{StepKind, Wait};
use crate::playbook::step::{Retry, Step};

#[derive(Debug, Clone)]
pub struct Plan {
    pub playbook: Playbook,
    pub graph: StepGraph,
    /// `sha256:` and the hex digest of the playbook text, as the run pins it.
    pub content_hash: String,
    /// Built on first use: only the engine needs it, and the compiler stays lean.
    index: OnceLock<Index>,
}

/// How long a step or a path can take at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WorstCase {
    Bounded(StdDuration),
    /// Waits for a human or a timestamp, with no timeout.
    Unbounded,
}

impl WorstCase {
    fn plus(self, other: WorstCase) -> WorstCase {
        match (self, other) {
            (WorstCase::Bounded(a), WorstCase::Bounded(b)) => {
                WorstCase::Bounded(a.saturating_add(b))
            }
            _ => WorstCase::Unbounded,
        }
    }
}

impl std::fmt::Display for WorstCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorstCase::Bounded(d) => write!(f, "{}", Duration(*d)),
            WorstCase::Unbounded => f.write_str("unbounded"),
        }
    }
}

/// `sha256:` and the hex digest of a playbook text: what a run pins as its content hash.
pub fn content_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

impl Plan {
    pub fn new(playbook: Playbook, graph: StepGraph, text: &str) -> Plan {
        Plan {
            playbook,
            graph,
            content_hash: content_hash(text),
            index: OnceLock::new(),
        }
    }

    /// Steps by id, dependents, and which steps each step reads (see [`Index`]).
    pub fn index(&self) -> &Index {
        self.index
            .get_or_init(|| Index::build(&self.playbook, &self.graph))
    }

    /// A step of any list by id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        Some(match self.index().place(id)? {
            Place::Main(i) => &self.playbook.steps[i],
            Place::Compensation(i) => &self.playbook.compensations[i],
            Place::OnFailure(i) => &self.playbook.on_failure[i],
        })
    }

    /// The per-attempt timeout of a step. `defaults.timeout` applies to steps that execute
    /// something (shell, http, sql, notify, invoke), never to a human's or a timer's wait.
    pub fn timeout(&self, step: &Step) -> Option<Duration> {
        if let Some(t) = &step.timeout {
            return Some(t.value);
        }
        match self.playbook.defaults.timeout {
            Some(d) if step.kind.executes() => Some(d),
            _ => step.kind.builtin_timeout(),
        }
    }

    /// Attempts and backoff; only steps that execute something are ever retried.
    pub fn retry(&self, step: &Step) -> Retry {
        if !step.kind.executes() {
            return Retry::ONCE;
        }
        step.retry
            .or(self.playbook.defaults.retry)
            .unwrap_or(Retry::ONCE)
    }

    /// All attempts at their timeout, plus the backoff delays between them.
    pub fn worst_case(&self, step: &Step) -> WorstCase {
        match &step.kind {
            StepKind::Wait(Wait::For(d)) => return WorstCase::Bounded(d.value.as_std()),
            // A follow-up only registers a run for later: it is not part of this run's time.
            StepKind::Gate(_) | StepKind::Noop(_) | StepKind::Followup(_) => {
                return WorstCase::Bounded(StdDuration::ZERO);
            }
            _ => {}
        }
        let Some(timeout) = self.timeout(step) else {
            return WorstCase::Unbounded;
        };
        let retry = self.retry(step);
        let attempts = retry.attempts.max(1);
        let mut total = timeout.as_std().saturating_mul(attempts);
        for n in 1..attempts {
            total = total.saturating_add(retry.delay_after(n));
        }
        WorstCase::Bounded(total)
    }

    /// The longest chain of main steps by worst case, and its length.
    pub fn critical_path(&self) -> (WorstCase, Vec<usize>) {
        let steps = &self.playbook.steps;
        let mut best: Vec<(WorstCase, Option<usize>)> =
            vec![(WorstCase::Bounded(StdDuration::ZERO), None); steps.len()];
        for &i in &self.graph.order {
            let (before, from) = self.graph.deps[i]
                .iter()
                .map(|&j| (best[j].0, Some(j)))
                .max_by_key(|(w, _)| *w)
                .unwrap_or((WorstCase::Bounded(StdDuration::ZERO), None));
            best[i] = (before.plus(self.worst_case(&steps[i])), from);
        }
        let Some(end) = (0..steps.len()).max_by_key(|&i| (best[i].0, i)) else {
            return (WorstCase::Bounded(StdDuration::ZERO), Vec::new());
        };
        let mut path = vec![end];
        let mut cur = end;
        while let Some(prev) = best[cur].1 {
            path.push(prev);
            cur = prev;
        }
        path.reverse();
        (best[end].0, path)
    }

    /// Main steps that can run at the same time as step `i`: neither waits for the other.
    pub fn parallel_with(&self, i: usize) -> Vec<usize> {
        (0..self.playbook.steps.len())
            .filter(|&j| j != i && !self.graph.is_ancestor(i, j) && !self.graph.is_ancestor(j, i))
            .collect()
    }
}
