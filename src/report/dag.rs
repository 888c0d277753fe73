//! The run's DAG as an inline SVG for the HTML report: main steps in layers by stage (top to
//! bottom; a stage's steps side by side), an edge from each step to every step that needs
//! it, and each step drawn in its status' colour with its status written out, so the
//! picture still reads in black and white.
//!
//! Generated here rather than by a graph-layout dependency: stages already are a layering
//! (`compiler::StepGraph::stage`), and the output must be one self-contained file.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::model::StepEntry;

const NODE_W: usize = 190;
const NODE_H: usize = 38;
const GAP_X: usize = 22;
const GAP_Y: usize = 30;
const PAD: usize = 12;
/// Characters of a step id shown in a box; the full id and title are in its tooltip.
const LABEL_CHARS: usize = 26;

/// The SVG of the main steps, or `None` when there are none or their stages are unknown
/// (the definition did not decode).
pub fn svg(steps: &[StepEntry]) -> Option<String> {
    let main: Vec<&StepEntry> = steps.iter().filter(|s| s.stage.is_some()).collect();
    if main.is_empty() {
        return None;
    }
    let mut per_stage: HashMap<usize, usize> = HashMap::new();
    let mut at: HashMap<&str, (usize, usize)> = HashMap::new();
    for s in &main {
        let stage = s.stage.unwrap_or(1).max(1);
        let column = per_stage.entry(stage).or_default();
        let x = PAD + *column * (NODE_W + GAP_X);
        let y = PAD + (stage - 1) * (NODE_H + GAP_Y);
        at.insert(s.id.as_str(), (x, y));
        *column += 1;
    }
    let columns = per_stage.values().copied().max().unwrap_or(1);
    let stages = per_stage.keys().copied().max().unwrap_or(1);
    let width = 2 * PAD + columns * (NODE_W + GAP_X) - GAP_X;
    let height = 2 * PAD + stages * (NODE_H + GAP_Y) - GAP_Y;

    let mut out = String::with_capacity(main.len() * 400);
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="dag" role="img" aria-label="The run's steps and their dependencies" viewBox="0 0 {width} {height}" width="{width}" height="{height}">"#
    );
    out.push_str(
        r##"<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#777"/></marker></defs>"##,
    );
    for s in &main {
        let Some(&(x2, y2)) = at.get(s.id.as_str()) else {
            continue;
        };
        for need in &s.needs {
            let Some(&(x1, y1)) = at.get(need.as_str()) else {
                continue;
            };
            let (sx, sy) = (x1 + NODE_W / 2, y1 + NODE_H);
            let (ex, ey) = (x2 + NODE_W / 2, y2);
            let bend = (ey.saturating_sub(sy) / 2).max(8);
            let _ = write!(
                out,
                r#"<path class="edge" d="M{sx},{sy} C{sx},{} {ex},{} {ex},{ey}" marker-end="url(#arrow)"/>"#,
                sy + bend,
                ey.saturating_sub(bend)
            );
        }
    }
    for s in &main {
        let Some(&(x, y)) = at.get(s.id.as_str()) else {
            continue;
        };
        let label: String = if s.id.chars().count() > LABEL_CHARS {
            let mut l: String = s.id.chars().take(LABEL_CHARS - 1).collect();
            l.push('…');
            l
        } else {
            s.id.clone()
        };
        let status = escape(&s.status);
        let _ = write!(
            out,
            r#"<g class="node status-{status}"><title>{} ({}): {status}</title><rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="5"/><text x="{}" y="{}" class="id">{}</text><text x="{}" y="{}" class="st">{} · {status}</text></g>"#,
            escape(&s.title),
            escape(&s.id),
            x + 8,
            y + 16,
            escape(&label),
            x + 8,
            y + 31,
            escape(&s.kind),
        );
    }
    out.push_str("</svg>");
    Some(out)
}

/// Text for XML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: &str, stage: usize, needs: &[&str], status: &str) -> StepEntry {
        StepEntry {
            id: id.into(),
            title: format!("<{id}> & co"),
            kind: "noop".into(),
            list: "main".into(),
            critical: true,
            stage: Some(stage),
            needs: needs.iter().map(|n| (*n).to_owned()).collect(),
            undoes: None,
            status: status.into(),
            attempts: 1,
            max_attempts: 1,
            started_at: None,
            finished_at: None,
            duration: None,
            error: None,
            outputs: Vec::new(),
            stdout: None,
            stderr: None,
            checkpoint_bytes: None,
            history: Vec::new(),
        }
    }

    #[test]
    fn draws_one_box_per_step_and_one_edge_per_need() {
        let steps = [
            step("a", 1, &[], "succeeded"),
            step("b", 1, &[], "failed"),
            step("c", 2, &["a", "b"], "cancelled"),
        ];
        let svg = svg(&steps).unwrap();
        assert_eq!(svg.matches("<rect").count(), 3);
        assert_eq!(svg.matches(r#"class="edge""#).count(), 2);
        assert!(svg.contains("status-failed"));
        assert!(svg.contains("&lt;a&gt; &amp; co"), "{svg}");
        // Two columns in stage 1, two stages.
        let w = 2 * PAD + 2 * NODE_W + GAP_X;
        let h = 2 * PAD + 2 * NODE_H + GAP_Y;
        assert!(svg.contains(&format!(r#"viewBox="0 0 {w} {h}""#)), "{svg}");
    }

    #[test]
    fn no_main_steps_no_picture() {
        assert_eq!(svg(&[]), None);
    }
}
