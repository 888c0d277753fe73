//! Located messages about a playbook: what is wrong, where, and what to write instead.
//!
//! Every stage of the compiler reports into a [`Diagnostics`] list instead of returning at the
//! first problem, so a user sees every mistake in one pass (as `vector`'s config compiler
//! does). Rendering is plain text in the style of rustc; the CLI decides where it goes.

use std::fmt::Write as _;

use serde::Serialize;

/// A position in a source file: 1-based line and column (in characters), and how many
/// characters the offending text spans on that line (at least 1). `u32` keeps the many
/// located values of a large playbook small; files are limited to 4 MiB anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
pub struct Location {
    pub line: u32,
    pub column: u32,
    #[serde(skip)]
    pub len: u32,
}

fn small(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Location {
    pub fn new(line: usize, column: usize, len: usize) -> Self {
        Location {
            line: small(line),
            column: small(column),
            len: small(len.max(1)),
        }
    }

    /// A location `offset` characters to the right on the same line.
    pub fn shifted(self, offset: usize, len: usize) -> Self {
        Location::new(self.line as usize, self.column as usize + offset, len)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One message, anchored at a location in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    #[serde(flatten)]
    pub location: Location,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The diagnostics of one file, in the order they were found.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn error(&mut self, location: Location, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Error, location, message)
    }

    pub fn warning(&mut self, location: Location, message: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Warning, location, message)
    }

    fn push(
        &mut self,
        severity: Severity,
        location: Location,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.items.push(Diagnostic {
            severity,
            location,
            message: message.into(),
            hint: None,
        });
        self.items.last_mut().expect("just pushed")
    }

    /// Appends another list's diagnostics.
    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The diagnostics sorted by position (stable, so equal positions keep discovery order).
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items
            .sort_by_key(|d| (d.location.line, d.location.column));
        self.items
    }
}

impl Diagnostic {
    /// Hints for `hint`: sets it only when not set, so the most specific hint wins.
    pub fn hint(&mut self, hint: impl Into<String>) -> &mut Self {
        if self.hint.is_none() {
            self.hint = Some(hint.into());
        }
        self
    }

    /// Renders in rustc's style:
    ///
    /// ```text
    /// error: unknown field `neds` in a step
    ///   --> workflows/go-live.yaml:12:5
    ///    |
    /// 12 |     neds: [a]
    ///    |     ^^^^
    ///    = help: did you mean `needs`?
    /// ```
    pub fn render(&self, file: &str, source: &str) -> String {
        let mut out = String::new();
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let loc = self.location;
        let _ = writeln!(out, "{label}: {}", self.message);
        let number = loc.line.to_string();
        let pad = " ".repeat(number.len());
        let _ = writeln!(out, "{pad}--> {file}:{}:{}", loc.line, loc.column);
        if let Some(text) = source.lines().nth((loc.line as usize).saturating_sub(1)) {
            // Long lines (minified or generated input) are cut so one message stays readable.
            let shown: String = text.chars().take(200).collect();
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{number} | {}", shown.replace('\t', " "));
            let start = (loc.column as usize)
                .saturating_sub(1)
                .min(shown.chars().count());
            let len = (loc.len as usize)
                .min(200usize.saturating_sub(start))
                .max(1);
            let _ = writeln!(out, "{pad} | {}{}", " ".repeat(start), "^".repeat(len));
        }
        if let Some(hint) = &self.hint {
            let _ = writeln!(out, "{pad} = help: {hint}");
        }
        out
    }
}

/// Suggests the closest of `candidates` to `word`, if one is close enough to be a typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(distance, c)| *distance <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_close_words_only() {
        assert_eq!(did_you_mean("neds", ["needs", "when"]), Some("needs"));
        assert_eq!(
            did_you_mean("tiemout", ["timeout", "title"]),
            Some("timeout")
        );
        assert_eq!(did_you_mean("banana", ["needs", "when"]), None);
    }

    #[test]
    fn render_points_at_the_column() {
        let d = Diagnostic {
            severity: Severity::Error,
            location: Location::new(2, 5, 4),
            message: "unknown field `neds`".into(),
            hint: Some("did you mean `needs`?".into()),
        };
        let text = d.render("f.yaml", "steps:\n  - neds: [a]\n");
        assert_eq!(
            text,
            "error: unknown field `neds`\n --> f.yaml:2:5\n  |\n2 |   - neds: [a]\n  |     ^^^^\n  = help: did you mean `needs`?\n"
        );
    }
}
