//! The playbooks an `invoke` can name: their params, and whom they invoke in turn.

use std::collections::HashMap;

use crate::playbook::kinds::StepKind;
use crate::playbook::{Params, Playbook};

#[derive(Debug, Clone)]
pub struct Entry {
    pub params: Params,
    /// Playbooks this one invokes, by name.
    pub invokes: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Catalog {
    entries: HashMap<String, Entry>,
}

impl Catalog {
    pub fn add(&mut self, playbook: &Playbook) {
        let invokes = playbook
            .all_steps()
            .filter_map(|s| match &s.kind {
                StepKind::Invoke(i) => Some(i.playbook.value.clone()),
                _ => None,
            })
            .collect();
        self.entries.insert(
            playbook.name.value.clone(),
            Entry {
                params: playbook.params.clone(),
                invokes,
            },
        );
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// A chain of invocations from `to` back to `from`, if `from` invoking `to` closes a
    /// cycle: `[from, to, ..., from]`.
    pub fn invoke_cycle(&self, from: &str, to: &str) -> Option<Vec<String>> {
        let mut stack = vec![(to.to_owned(), vec![from.to_owned(), to.to_owned()])];
        let mut seen = std::collections::HashSet::new();
        while let Some((name, path)) = stack.pop() {
            if name == from {
                return Some(path);
            }
            if !seen.insert(name.clone()) {
                continue;
            }
            for next in self
                .get(&name)
                .map(|e| e.invokes.as_slice())
                .unwrap_or_default()
            {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
        None
    }
}
