//! Conditions: the small expression language of a step's `when:` and `expect:` fields.
//!
//! A condition is parsed and type-checked when the playbook is compiled, long before it is
//! evaluated, so that a typo such as `steps.health.status == "sucess"` is reported with a
//! hint instead of silently skipping a step in the middle of a go-live. The language has no
//! side effects, no loops and no arithmetic: evaluating a condition visits each node of its
//! syntax tree at most once, so its cost is bounded by its (bounded) size.
//!
//! # Grammar
//!
//! ```text
//! condition  = or ;
//! or         = and { "||" and } ;
//! and        = not { "&&" not } ;
//! not        = "!" not | comparison ;
//! comparison = operand [ compare_op operand ] ;      (* non-associative *)
//! compare_op = "==" | "!=" | "<" | "<=" | ">" | ">=" | "in" ;
//! operand    = literal | list | call | path | "(" or ")" ;
//! literal    = string | integer | decimal | "true" | "false" | "null" ;
//! list       = "[" [ or { "," or } [ "," ] ] "]" ;
//! call       = ( "len" | "contains" | "starts_with" | "ends_with" ) "(" [ or { "," or } ] ")" ;
//! path       = ident { "." ident | "[" index "]" } ;
//! index      = digit { digit } | string ;
//! ident      = ( letter | "_" ) { letter | digit | "_" | "-" } ;
//! string     = '"' { char | escape } '"' | "'" { char | escape } "'" ;
//! escape     = "\" ( '"' | "'" | "\" | "n" | "t" ) ;
//! integer    = [ "-" ] digit { digit } ;                (* fits in an i64 *)
//! decimal    = [ "-" ] digit { digit } "." digit { digit } ;
//! ```
//!
//! Identifiers may contain `-` because step ids are kebab-case
//! (`steps.preflight-schema.status`); that is why there is no subtraction. Keywords (`true`,
//! `false`, `null`, `in`) are ordinary names after a `.`, so `outputs.json.null` is a path.
//! Note that `!` binds looser than comparisons: `!a == b` means `!(a == b)`.
//!
//! # Bounds
//!
//! A condition is at most [`MAX_LEN`] bytes, checked before anything else, and nests at most
//! [`MAX_DEPTH`] levels (parentheses, lists, `!` and calls each add one), checked while
//! parsing. The parser recurses only when it enters such a level, so hostile input can
//! neither take long nor overflow the stack; `&&` and `||` chains are flat lists, not deep
//! trees, so checking and evaluation recurse no deeper than parsing did.

mod check;
mod eval;
mod lexer;
mod parser;

use std::fmt;

use parser::{Expr, Kind};

/// The longest condition accepted, in bytes.
pub const MAX_LEN: usize = 1024;
/// The deepest nesting accepted: parentheses, lists, `!` and function calls each add a level.
pub const MAX_DEPTH: usize = 32;

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    source: String,
    expr: Expr,
}

/// A byte range inside the condition's source text. Both ends are on character boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    /// The span from `start` to `end` (byte offsets).
    pub const fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The smallest span covering both `self` and `other`.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// One step of a path after its root.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// `.name` (and the root itself).
    Field(String),
    /// `[0]`: an item of a list.
    Index(i64),
    /// `["key"]`: a key of an object, for keys that are not identifiers.
    Key(String),
}

/// One path occurring in the condition, e.g. `steps.health.status`.
#[derive(Debug, Clone, PartialEq)]
pub struct PathRef {
    /// The segments as written; `segments[0]` is always `Field(root)`.
    pub segments: Vec<Segment>,
    /// Where the whole path is written.
    pub span: Span,
}

impl PathRef {
    /// The path in the form a user writes it: `outputs.rows[0]["p95"]`.
    pub fn dotted(&self) -> String {
        let mut out = String::new();
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Field(name) if i == 0 => out.push_str(name),
                Segment::Field(name) => {
                    out.push('.');
                    out.push_str(name);
                }
                Segment::Index(index) => out.push_str(&format!("[{index}]")),
                Segment::Key(key) => out.push_str(&format!("[{key:?}]")),
            }
        }
        out
    }
}

/// A problem found while parsing or type-checking a condition.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// The offending text inside the condition.
    pub span: Span,
    /// A short lower-case sentence saying what is wrong.
    pub message: String,
    /// What to write instead, when there is something useful to say.
    pub hint: Option<String>,
}

impl Error {
    fn new(span: Span, message: impl Into<String>) -> Error {
        Error {
            span,
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }
}

/// Static types for checking.
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    /// Unknown at compile time (step outputs): anything goes.
    Any,
    Bool,
    Int,
    /// An integer or a decimal.
    Number,
    String,
    /// A string known to be one of these values (e.g. a step status). Comparing it with a
    /// string literal not in the set is an error with a did-you-mean hint; comparing it with
    /// a non-string is an error.
    OneOf(Vec<String>),
    List(Box<Type>),
    Null,
}

impl fmt::Display for Type {
    /// Describes the type with an article, as messages use it: "a number", "a list of strings".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Any => f.write_str("a value"),
            Type::Bool => f.write_str("a boolean"),
            Type::Int | Type::Number => f.write_str("a number"),
            Type::String => f.write_str("a string"),
            Type::OneOf(values) => write!(f, "one of {}", list_values(values)),
            Type::List(item) => match item.plural() {
                Some(items) => write!(f, "a list of {items}"),
                None => f.write_str("a list"),
            },
            Type::Null => f.write_str("null"),
        }
    }
}

impl Type {
    /// "strings" for `List(String)`; `None` when nothing useful can be said.
    fn plural(&self) -> Option<&'static str> {
        match self {
            Type::Any => None,
            Type::Bool => Some("booleans"),
            Type::Int | Type::Number => Some("numbers"),
            Type::String | Type::OneOf(_) => Some("strings"),
            Type::List(_) => Some("lists"),
            Type::Null => Some("nulls"),
        }
    }
}

/// The values of a `OneOf`, comma-separated; long sets are cut short so that a message
/// stays one line.
fn list_values(values: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut out = values
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if values.len() > SHOWN {
        out.push_str(", …");
    }
    out
}

/// Suggests the candidate closest to `word`, if one is close enough to be a typo. Jaro-Winkler
/// rather than edit distance because the typical typo is a misspelt or shortened word
/// (`sucess` for `succeeded`, `length` for `len`), which edit distance scores as far away.
fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let score = if c.to_lowercase() == lower {
                1.0
            } else {
                strsim::jaro_winkler(&lower, &c.to_lowercase())
            };
            (score, c)
        })
        .filter(|(score, _)| *score >= 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// How [`Condition::check`] learns the static type of a path: the type, or an error
/// (message, hint) to report at the path's span. A plain alias, so `&|path| ...` closures
/// work as they are.
pub type Resolve<'a> = dyn Fn(&PathRef) -> Result<Type, (String, Option<String>)> + 'a;

/// An error found while evaluating a condition against run-time values.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    /// The part of the condition that could not be evaluated.
    pub span: Span,
    /// A short sentence naming the path or value at fault.
    pub message: String,
}

impl Condition {
    /// Parses `source`. Never panics and returns quickly on any input, however long or deep.
    pub fn parse(source: &str) -> Result<Condition, Error> {
        let expr = parser::parse(source)?;
        Ok(Condition {
            source: source.to_owned(),
            expr,
        })
    }

    /// The text the condition was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every path in the condition, in source order.
    pub fn paths(&self) -> Vec<PathRef> {
        let mut out = Vec::new();
        collect_paths(&self.expr, &mut out);
        out
    }

    /// Type-checks the condition. `resolve` gives the static type of a path, or an error
    /// (message, hint) that is reported at the path's span. Returns every error found; an
    /// empty list means the condition is well-typed and yields a boolean.
    pub fn check(&self, resolve: &Resolve<'_>) -> Vec<Error> {
        check::check(&self.source, &self.expr, resolve)
    }

    /// Evaluates the condition against `context`: the root of each path is looked up as a
    /// key of `context` (an object), then each segment walks into objects and arrays.
    pub fn eval(&self, context: &serde_json::Value) -> Result<bool, EvalError> {
        eval::eval(&self.source, &self.expr, context)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Appends the paths under `expr` in source order. Recursion is bounded by [`MAX_DEPTH`]
/// because the tree is no deeper than the parser's nesting.
fn collect_paths(expr: &Expr, out: &mut Vec<PathRef>) {
    match &expr.kind {
        Kind::Path(path) => out.push(path.to_ref(expr.span)),
        Kind::List(items) | Kind::And(items) | Kind::Or(items) | Kind::Call(_, items) => {
            for item in items {
                collect_paths(item, out);
            }
        }
        Kind::Not(inner) => collect_paths(inner, out),
        Kind::Compare { left, right, .. } => {
            collect_paths(left, out);
            collect_paths(right, out);
        }
        Kind::Null | Kind::Bool(_) | Kind::Int(_) | Kind::Float(_) | Kind::Str(_) => {}
    }
}

/// The text of `span` in `source`, cut to a readable length for messages. Falls back to an
/// empty string rather than panicking if the span were ever not on char boundaries.
fn snippet(source: &str, span: Span) -> String {
    const MAX_CHARS: usize = 40;
    let text = source.get(span.start..span.end).unwrap_or_default();
    if text.chars().count() > MAX_CHARS {
        let mut cut: String = text.chars().take(MAX_CHARS - 1).collect();
        cut.push('…');
        cut
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_catches_misspellings_and_case() {
        let statuses = ["succeeded", "failed", "warned", "skipped", "cancelled"];
        assert_eq!(did_you_mean("sucess", statuses), Some("succeeded"));
        assert_eq!(did_you_mean("Failed", statuses), Some("failed"));
        assert_eq!(did_you_mean("canceled", statuses), Some("cancelled"));
        assert_eq!(did_you_mean("banana", statuses), None);
        let functions = ["len", "contains", "starts_with", "ends_with"];
        assert_eq!(did_you_mean("length", functions), Some("len"));
        assert_eq!(did_you_mean("startswith", functions), Some("starts_with"));
        assert_eq!(did_you_mean("upper", functions), None);
        assert_eq!(did_you_mean("size", functions), None);
    }

    #[test]
    fn types_describe_themselves_with_an_article() {
        assert_eq!(Type::Int.to_string(), "a number");
        assert_eq!(
            Type::List(Box::new(Type::String)).to_string(),
            "a list of strings"
        );
        assert_eq!(Type::List(Box::new(Type::Any)).to_string(), "a list");
        assert_eq!(
            Type::OneOf(vec!["a".into(), "b".into()]).to_string(),
            "one of a, b"
        );
        let many: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(
            Type::OneOf(many).to_string(),
            "one of 0, 1, 2, 3, 4, 5, 6, 7, …"
        );
    }

    #[test]
    fn paths_are_listed_in_source_order_with_spans() {
        let c = Condition::parse(
            r#"!(steps.a-b.status == "failed") && len(outputs.rows[0]["k"]) > run.x || [p.q] == []"#,
        )
        .expect("parses");
        let paths = c.paths();
        let dotted: Vec<String> = paths.iter().map(PathRef::dotted).collect();
        assert_eq!(
            dotted,
            [
                "steps.a-b.status",
                r#"outputs.rows[0]["k"]"#,
                "run.x",
                "p.q"
            ]
        );
        assert_eq!(paths[0].span, Span::new(2, 18));
        assert_eq!(
            paths[1].segments,
            [
                Segment::Field("outputs".into()),
                Segment::Field("rows".into()),
                Segment::Index(0),
                Segment::Key("k".into()),
            ]
        );
        assert_eq!(
            &c.source()[paths[1].span.start..paths[1].span.end],
            r#"outputs.rows[0]["k"]"#
        );
    }

    #[test]
    fn snippets_are_cut_on_char_boundaries() {
        let source = "é".repeat(50);
        let cut = snippet(&source, Span::new(0, source.len()));
        assert_eq!(cut.chars().count(), 40);
        assert!(cut.ends_with('…'));
        assert_eq!(snippet("abc", Span::new(1, 9)), "");
    }
}
