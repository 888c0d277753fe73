//! The main steps as a DAG: explicit `needs`, implicit list order, cycles named in full.

use std::collections::HashMap;
use std::sync::OnceLock;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::diagnostic::{Diagnostics, did_you_mean};
use crate::playbook::step::Step;

/// Edges point from a step to the steps that need it. Node `i` is `steps[i]`.
#[derive(Debug, Clone)]
pub struct StepGraph {
    pub graph: DiGraph<usize, ()>,
    /// Direct dependencies of each step, explicit or implied by list order, in list order.
    pub deps: Vec<Vec<usize>>,
    /// Whether step `i` wrote `needs:` itself.
    pub explicit: Vec<bool>,
    /// A topological order that keeps list order wherever the graph allows.
    pub order: Vec<usize>,
    /// Length of the longest dependency chain before each step: steps with equal stage can
    /// run at the same time.
    pub stage: Vec<usize>,
    /// Ancestor bitsets, built on first use: most questions are about a direct dependency,
    /// and 10,000 steps would cost 12 MB of bits up front.
    ancestors: OnceLock<Vec<Vec<u64>>>,
}

impl StepGraph {
    /// Builds the graph; reports unknown needs and cycles. `None` when there is a cycle.
    pub fn build(
        steps: &[Step],
        index: &HashMap<&str, usize>,
        diags: &mut Diagnostics,
    ) -> Option<StepGraph> {
        let n = steps.len();
        let mut deps: Vec<Vec<usize>> = Vec::with_capacity(n);
        let mut explicit = Vec::with_capacity(n);
        // Steps above the current one that nothing above depends on yet: a step without
        // `needs` waits for exactly these, which is "everything above" with fewer edges.
        let mut frontier: Vec<usize> = Vec::new();
        let mut has_dependent = vec![false; n];
        for (i, step) in steps.iter().enumerate() {
            let d = match &step.needs {
                None => frontier.clone(),
                Some(needs) => {
                    let mut d = Vec::new();
                    for need in needs {
                        match index.get(need.as_str()) {
                            Some(&j) if d.contains(&j) => {
                                diags.warning(
                                    need.location,
                                    format!("`{}` is listed twice in `needs`", need.value),
                                );
                            }
                            Some(&j) => d.push(j),
                            None => {
                                let e = diags.error(
                                    need.location,
                                    format!("`needs` names an unknown step `{}`", need.value),
                                );
                                if let Some(close) = did_you_mean(need, index.keys().copied()) {
                                    e.hint(format!("did you mean `{close}`?"));
                                }
                            }
                        }
                    }
                    d
                }
            };
            explicit.push(step.needs.is_some());
            for &j in &d {
                if j < n {
                    has_dependent[j] = true;
                }
            }
            frontier.retain(|&j| !has_dependent[j]);
            frontier.push(i);
            deps.push(d);
        }

        let mut graph = DiGraph::<usize, ()>::with_capacity(n, n);
        for i in 0..n {
            graph.add_node(i);
        }
        for (i, d) in deps.iter().enumerate() {
            for &j in d {
                graph.add_edge(NodeIndex::new(j), NodeIndex::new(i), ());
            }
        }
        if report_cycles(&graph, steps, &deps, diags) {
            return None;
        }
        let order = list_order_toposort(&deps, n);
        let mut stage = vec![0usize; n];
        for &i in &order {
            stage[i] = deps[i].iter().map(|&j| stage[j] + 1).max().unwrap_or(0);
        }
        Some(StepGraph {
            graph,
            deps,
            explicit,
            order,
            stage,
            ancestors: OnceLock::new(),
        })
    }

    fn ancestor_sets(&self) -> &[Vec<u64>] {
        self.ancestors.get_or_init(|| {
            let n = self.deps.len();
            let words = n.div_ceil(64);
            let mut ancestors = vec![Vec::new(); n];
            for &i in &self.order {
                let mut a = vec![0u64; words];
                for &j in &self.deps[i] {
                    a[j / 64] |= 1 << (j % 64);
                    for (w, x) in a.iter_mut().zip(&ancestors[j]) {
                        *w |= *x;
                    }
                }
                ancestors[i] = a;
            }
            ancestors
        })
    }

    /// Whether step `a` always finishes before step `b` starts.
    pub fn is_ancestor(&self, a: usize, b: usize) -> bool {
        if self.deps.get(b).is_some_and(|d| d.contains(&a)) {
            return true;
        }
        self.ancestor_sets()
            .get(b)
            .and_then(|words| words.get(a / 64))
            .is_some_and(|w| w & (1 << (a % 64)) != 0)
    }
}

/// Kahn's algorithm, always taking the ready step that comes first in the file.
fn list_order_toposort(deps: &[Vec<usize>], n: usize) -> Vec<usize> {
    let mut remaining: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); n];
    for (i, d) in deps.iter().enumerate() {
        for &j in d {
            dependents[j].push(i);
        }
    }
    let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = (0..n)
        .filter(|&i| remaining[i] == 0)
        .map(std::cmp::Reverse)
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some(std::cmp::Reverse(i)) = ready.pop() {
        order.push(i);
        for &k in &dependents[i] {
            remaining[k] -= 1;
            if remaining[k] == 0 {
                ready.push(std::cmp::Reverse(k));
            }
        }
    }
    order
}

/// Reports each cycle once, naming every step on it in order. Returns whether any exists.
fn report_cycles(
    graph: &DiGraph<usize, ()>,
    steps: &[Step],
    deps: &[Vec<usize>],
    diags: &mut Diagnostics,
) -> bool {
    let mut found = false;
    for (i, d) in deps.iter().enumerate() {
        if d.contains(&i) {
            found = true;
            let at = steps[i]
                .needs
                .iter()
                .flatten()
                .find(|n| n.value == steps[i].id.value);
            diags.error(
                at.map_or(steps[i].id.location, |n| n.location),
                format!("step `{}` needs itself", steps[i].id.value),
            );
        }
    }
    for scc in tarjan_scc(graph) {
        if scc.len() < 2 {
            continue;
        }
        found = true;
        let members: Vec<usize> = scc.iter().map(|n| n.index()).collect();
        let start = *members.iter().min().expect("non-empty");
        let mut path = cycle_through(start, &members, deps);
        // Read it in `needs` direction: each step needs the next one.
        path.reverse();
        let names: Vec<String> = path
            .iter()
            .map(|&i| format!("`{}`", steps[i].id.value))
            .collect();
        let first_needs = steps[start].needs.as_ref().and_then(|n| n.first());
        diags
            .error(
                first_needs.map_or(steps[start].id.location, |n| n.location),
                format!("steps form a cycle: {} (each needs the next)", names.join(" -> ")),
            )
            .hint("a step can only need steps that do not (directly or indirectly) need it; remove one of these `needs`");
    }
    found
}

/// A cycle inside one strongly connected component, from `start` back to `start`, following
/// "runs before" order (dependency first).
fn cycle_through(start: usize, members: &[usize], deps: &[Vec<usize>]) -> Vec<usize> {
    // Walk dependents of `start` inside the component with a BFS, then read the path back.
    let mut dependents: HashMap<usize, Vec<usize>> = HashMap::new();
    for &m in members {
        for &d in &deps[m] {
            if members.contains(&d) {
                dependents.entry(d).or_default().push(m);
            }
        }
    }
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(x) = queue.pop_front() {
        let mut next: Vec<usize> = dependents.get(&x).cloned().unwrap_or_default();
        next.sort_unstable();
        for y in next {
            if y == start {
                let mut path = vec![start];
                let mut cur = x;
                while cur != start {
                    path.push(cur);
                    cur = parent[&cur];
                }
                path[1..].reverse();
                path.push(start);
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = parent.entry(y) {
                e.insert(x);
                queue.push_back(y);
            }
        }
    }
    vec![start, start]
}
