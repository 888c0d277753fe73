//! Lookups the engine needs on every transition, derived once per plan: a step by id, the
//! main steps that need a given one, and the other steps whose results a step reads.
//!
//! They turn "scan every step of the playbook" into "look at the few steps this change
//! concerns", which is what keeps a transition's cost independent of the run's size.

use std::collections::{BTreeSet, HashMap};

use crate::playbook::Playbook;
use crate::playbook::step::Step;

use super::StepGraph;

/// Where a step id is in the playbook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Main(usize),
    Compensation(usize),
    OnFailure(usize),
}

#[derive(Debug, Clone, Default)]
pub struct Index {
    places: HashMap<String, Place>,
    /// For each main step, the main steps that list it among their dependencies.
    dependents: Vec<Vec<usize>>,
    /// For each step (main steps first, then compensations, then on_failure, as
    /// [`Playbook::all_steps`] orders them), the ids of other steps whose `status` or
    /// `outputs` its templates, `when` or `expect` read.
    reads: Vec<Vec<String>>,
}

impl Index {
    pub fn build(playbook: &Playbook, graph: &StepGraph) -> Index {
        let places = playbook
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.value.clone(), Place::Main(i)))
            .chain(
                playbook
                    .compensations
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.id.value.clone(), Place::Compensation(i))),
            )
            .chain(
                playbook
                    .on_failure
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.id.value.clone(), Place::OnFailure(i))),
            )
            .collect();
        let mut dependents = vec![Vec::new(); playbook.steps.len()];
        for (i, deps) in graph.deps.iter().enumerate() {
            for &j in deps {
                dependents[j].push(i);
            }
        }
        let reads = playbook.all_steps().map(step_reads).collect();
        Index {
            places,
            dependents,
            reads,
        }
    }

    pub fn place(&self, id: &str) -> Option<Place> {
        self.places.get(id).copied()
    }

    /// The main steps that need main step `i`, in list order.
    pub fn dependents(&self, i: usize) -> &[usize] {
        &self.dependents[i]
    }

    /// The other steps whose results step `id` reads (empty for an unknown id).
    pub fn reads(&self, playbook: &Playbook, id: &str) -> &[String] {
        let at = match self.place(id) {
            Some(Place::Main(i)) => i,
            Some(Place::Compensation(i)) => playbook.steps.len() + i,
            Some(Place::OnFailure(i)) => playbook.steps.len() + playbook.compensations.len() + i,
            None => return &[],
        };
        &self.reads[at]
    }
}

/// The step ids named as `steps.ID...` in a step's title, kind templates, `when` and
/// `expect`, each once, sorted.
fn step_reads(step: &Step) -> Vec<String> {
    let mut ids = BTreeSet::new();
    let templates = step
        .title
        .iter()
        .chain(step.kind.templates().into_iter().map(|u| u.template));
    for t in templates {
        for r in &t.refs {
            if let ["steps", id, ..] = r.segments().as_slice() {
                ids.insert((*id).to_owned());
            }
        }
    }
    for c in step.when.iter().chain(step.expect.iter()) {
        for p in c.value.paths() {
            if let [
                crate::condition::Segment::Field(root),
                crate::condition::Segment::Field(id),
                ..,
            ] = p.segments.as_slice()
                && root == "steps"
            {
                ids.insert(id.clone());
            }
        }
    }
    ids.remove(&step.id.value);
    ids.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use crate::compiler::compile;
    use crate::source::Source;

    #[test]
    fn reads_name_the_steps_templates_and_conditions_use_and_dependents_follow_needs() {
        let text = concat!(
            "runway: 1\nname: t\nsteps:\n",
            "  - { id: a, shell: { argv: [echo] } }\n",
            "  - { id: b, needs: [], shell: { argv: [echo] } }\n",
            "  - id: c\n",
            "    needs: [a, b]\n",
            "    when: 'steps.a.status == \"succeeded\"'\n",
            "    expect: 'outputs.exit_code == 0'\n",
            "    shell: { argv: [echo, '{{steps.b.outputs.stdout}}'] }\n",
            "  - { id: d, noop: {} }\n",
        );
        let plan = compile(Source::from_bytes("t.yaml", text.as_bytes()).unwrap())
            .plan
            .unwrap();
        let index = plan.index();
        assert_eq!(index.reads(&plan.playbook, "c"), ["a", "b"]);
        assert!(index.reads(&plan.playbook, "d").is_empty());
        assert!(index.reads(&plan.playbook, "no-such-step").is_empty());
        assert_eq!(index.dependents(0), [2]);
        assert_eq!(index.dependents(2), [3]);
        assert_eq!(plan.step("d").map(|s| s.id.value.as_str()), Some("d"));
    }
}
