//! The compile pipeline: text in, a validated [`Plan`] or every error out.
//!
//! ```text
//! Source::from_bytes ─▶ yaml::parse ─▶ Playbook::decode ─▶ analyze (graph, scope, catalog) ─▶ Plan
//! ```
//!
//! Architecture invariant: nothing here does I/O, spawns, sleeps or touches a database.
//! The CLI reads the files and hands the texts over; tests compile strings.

mod analyze;
mod catalog;
mod graph;
mod scope;

pub use catalog::Catalog;
pub use graph::StepGraph;
pub use scope::{RUN_FIELDS, STEP_STATUSES};

use crate::diagnostic::{Diagnostic, Diagnostics, Severity};
use crate::plan::Plan;
use crate::playbook::Playbook;
use crate::source::Source;
use crate::yaml;

/// The result of compiling one file.
#[derive(Debug)]
pub struct Compiled {
    pub source: Source,
    /// Errors and warnings, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
    /// Present when there are no errors (warnings allowed).
    pub plan: Option<Plan>,
}

impl Compiled {
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == severity)
            .count()
    }
}

/// Parses and decodes one file, without cross-playbook checks.
pub fn decode(source: &Source, diags: &mut Diagnostics) -> Option<Playbook> {
    let root = match yaml::parse(&source.text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            diags
                .error(
                    crate::diagnostic::Location::new(1, 1, 1),
                    "file holds no YAML document",
                )
                .hint("a playbook starts with `runway: 1`, a `name:` and a list of `steps:`");
            return None;
        }
        Err(e) => {
            let d = diags.error(e.location, e.message);
            if let Some(h) = e.hint {
                d.hint(h);
            }
            return None;
        }
    };
    Playbook::decode(&root, diags)
}

/// Compiles `targets`, resolving `invoke` against the targets and `references` (playbooks
/// that are loaded for their names and params only; their own problems are not reported).
pub fn compile_all(targets: Vec<Source>, references: &[Source]) -> Vec<Compiled> {
    let mut decoded: Vec<(Source, Diagnostics, Option<Playbook>)> = targets
        .into_iter()
        .map(|source| {
            let mut diags = Diagnostics::default();
            let playbook = decode(&source, &mut diags);
            (source, diags, playbook)
        })
        .collect();
    let mut catalog = Catalog::default();
    for reference in references {
        if let Some(p) = decode(reference, &mut Diagnostics::default()) {
            catalog.add(&p);
        }
    }
    // Targets win over references with the same name: they are what the user is editing.
    for (_, _, playbook) in &decoded {
        if let Some(p) = playbook {
            catalog.add(p);
        }
    }
    report_duplicate_names(&mut decoded);
    decoded
        .into_iter()
        .map(|(source, mut diags, playbook)| {
            let plan = playbook.and_then(|p| {
                let graph = analyze::analyze(&p, &catalog, &mut diags);
                match (graph, diags.has_errors()) {
                    (Some(graph), false) => Some(Plan::new(p, graph, &source.text)),
                    _ => None,
                }
            });
            Compiled {
                source,
                diagnostics: diags.into_sorted(),
                plan,
            }
        })
        .collect()
}

/// Compiles one playbook on its own (its `invoke` targets must be itself or absent).
pub fn compile(source: Source) -> Compiled {
    compile_all(vec![source], &[])
        .pop()
        .expect("one input, one output")
}

/// The plan of a run's pinned definition, without the checks that need other playbooks:
/// for reading a run's evidence long after it ran, when the playbooks it invoked may have
/// changed or gone. `None` when the text does not decode or its steps form a cycle (which
/// a definition that started a run never does).
pub fn outline(source: &Source) -> Option<Plan> {
    let mut diags = Diagnostics::default();
    let playbook = decode(source, &mut diags)?;
    let index: std::collections::HashMap<&str, usize> = playbook
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let graph = StepGraph::build(&playbook.steps, &index, &mut diags)?;
    Some(Plan::new(playbook, graph, &source.text))
}

fn report_duplicate_names(decoded: &mut [(Source, Diagnostics, Option<Playbook>)]) {
    for i in 0..decoded.len() {
        let Some(name) = decoded[i].2.as_ref().map(|p| p.name.clone()) else {
            continue;
        };
        if name.value.is_empty() {
            continue;
        }
        let first = decoded[..i]
            .iter()
            .find(|(_, _, p)| p.as_ref().is_some_and(|p| p.name.value == name.value));
        if let Some((other, _, _)) = first {
            let other = other.name.clone();
            decoded[i]
                .1
                .error(name.location, format!("playbook name `{}` is also used by {other}", name.value))
                .hint("playbook names must be unique: `invoke` and `runway run NAME` find playbooks by name");
        }
    }
}
