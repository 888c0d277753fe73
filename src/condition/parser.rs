//! A recursive-descent parser from tokens to the syntax tree.
//!
//! The parser recurses only through `(`, `[`, `!` and function calls, and each of those
//! counts against [`MAX_DEPTH`] before recursing, so the Rust stack holds at most a few frames
//! per allowed level whatever the input. `&&` and `||` chains are parsed in loops into flat
//! lists for the same reason: a 500-term chain must not become a 500-deep tree that checking,
//! evaluation or even `Drop` would walk recursively.

use super::lexer::{Tok, Token, lex};
use super::{Error, MAX_DEPTH, MAX_LEN, PathRef, Segment, Span, did_you_mean};

/// A node of the syntax tree with the source text it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Expr {
    pub kind: Kind,
    /// Includes the parentheses around a parenthesized expression, so messages quote the
    /// operand as written.
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Expr>),
    Path(Path),
    Call(Func, Vec<Expr>),
    Not(Box<Expr>),
    /// Two or more operands.
    And(Vec<Expr>),
    /// Two or more operands.
    Or(Vec<Expr>),
    Compare {
        op: CompareOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
}

impl Kind {
    /// Literals that messages quote bare ("with 3, a number") rather than in backticks.
    pub fn is_scalar_literal(&self) -> bool {
        matches!(
            self,
            Kind::Null | Kind::Bool(_) | Kind::Int(_) | Kind::Float(_) | Kind::Str(_)
        )
    }
}

/// A path, with the span of each segment so that evaluation can name exactly the prefix
/// that does not exist (`outputs.json.overall`, not the whole `outputs.json.overall.x`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Path {
    pub segments: Vec<(Segment, Span)>,
}

impl Path {
    pub fn to_ref(&self, span: Span) -> PathRef {
        PathRef {
            segments: self
                .segments
                .iter()
                .map(|(segment, _)| segment.clone())
                .collect(),
            span,
        }
    }
}

/// The built-in functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Func {
    Len,
    Contains,
    StartsWith,
    EndsWith,
}

impl Func {
    const ALL: [Func; 4] = [Func::Len, Func::Contains, Func::StartsWith, Func::EndsWith];

    pub fn name(self) -> &'static str {
        match self {
            Func::Len => "len",
            Func::Contains => "contains",
            Func::StartsWith => "starts_with",
            Func::EndsWith => "ends_with",
        }
    }

    /// Parameter names, for arity messages.
    fn params(self) -> &'static [&'static str] {
        match self {
            Func::Len => &["x"],
            Func::Contains => &["haystack", "needle"],
            Func::StartsWith => &["s", "prefix"],
            Func::EndsWith => &["s", "suffix"],
        }
    }

    fn from_name(name: &str) -> Option<Func> {
        Func::ALL.into_iter().find(|f| f.name() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
}

impl CompareOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
            CompareOp::In => "in",
        }
    }

    fn from_tok(tok: &Tok) -> Option<CompareOp> {
        Some(match tok {
            Tok::EqEq => CompareOp::Eq,
            Tok::NotEq => CompareOp::Ne,
            Tok::Lt => CompareOp::Lt,
            Tok::Le => CompareOp::Le,
            Tok::Gt => CompareOp::Gt,
            Tok::Ge => CompareOp::Ge,
            Tok::Ident(word) if word == "in" => CompareOp::In,
            _ => return None,
        })
    }
}

/// Parses a whole condition.
pub(super) fn parse(src: &str) -> Result<Expr, Error> {
    // Before lexing, so that a megabyte of input costs nothing.
    if src.len() > MAX_LEN {
        return Err(Error::new(
            Span::new(0, src.len()),
            format!("condition is {} bytes; the limit is {MAX_LEN}", src.len()),
        )
        .hint("split the check into simpler conditions or into a step of its own"));
    }
    let tokens = lex(src)?;
    let eof = Token {
        tok: Tok::Eof,
        span: Span::new(src.len(), src.len()),
    };
    let mut parser = Parser {
        src,
        tokens,
        pos: 0,
        depth: 0,
        eof,
    };
    if parser.peek().tok == Tok::Eof {
        return Err(
            Error::new(Span::new(0, src.len()), "the condition is empty")
                .hint("write e.g. `steps.build.status == \"succeeded\"`"),
        );
    }
    let expr = parser.or()?;
    let next = parser.peek();
    match next.tok {
        Tok::Eof => Ok(expr),
        Tok::RParen => Err(Error::new(next.span, "unmatched `)`")),
        _ => Err(parser.unexpected_after_operand("an operator or the end of the condition")),
    }
}

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    /// How many `(`, `[`, `!` and calls enclose the current position.
    depth: usize,
    /// Returned by `peek` past the end, so that no lookup needs to unwrap.
    eof: Token,
}

/// Whether `tok` can begin an operand; used to tell `not x` (a mistake) from a path `not.x`.
fn starts_operand(tok: &Tok) -> bool {
    matches!(
        tok,
        Tok::Ident(_)
            | Tok::Str(_)
            | Tok::Int(_)
            | Tok::Float(_)
            | Tok::LParen
            | Tok::LBracket
            | Tok::Bang
    )
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&self.eof)
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        self.tokens.get(self.pos + ahead).unwrap_or(&self.eof)
    }

    fn previous(&self) -> Option<&Token> {
        self.pos.checked_sub(1).and_then(|i| self.tokens.get(i))
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn text(&self, span: Span) -> &str {
        self.src.get(span.start..span.end).unwrap_or_default()
    }

    /// How a token is named in "found ..." messages.
    fn found(&self, token: &Token) -> String {
        match token.tok {
            Tok::Eof => "the end of the condition".to_owned(),
            _ => format!("`{}`", self.text(token.span)),
        }
    }

    /// Enters one nesting level opened by the token at `span`.
    fn enter(&mut self, span: Span) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::new(span, format!("nesting deeper than {MAX_DEPTH}"))
                .hint("remove parentheses or split the condition"));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// An operand was expected at the current token. At the end of the input the error points
    /// at the operator that wants the operand, since an empty span is hard to show.
    fn expected_operand(&self) -> Error {
        let next = self.peek();
        match (self.previous(), &next.tok) {
            (Some(prev), Tok::Eof) => Error::new(
                prev.span,
                format!("expected an operand after `{}`", self.text(prev.span)),
            ),
            (Some(prev), _) => Error::new(
                next.span,
                format!(
                    "expected an operand after `{}`, found {}",
                    self.text(prev.span),
                    self.found(next)
                ),
            ),
            (None, _) => Error::new(
                next.span,
                format!("expected an operand, found {}", self.found(next)),
            ),
        }
    }

    /// A complete operand was parsed and the current token cannot follow it.
    fn unexpected_after_operand(&self, expected: &str) -> Error {
        let next = self.peek();
        let word_operator = match &next.tok {
            Tok::Ident(word) => match word.as_str() {
                "and" => Some("use `&&`"),
                "or" => Some("use `||`"),
                "not" => Some("use `!`, e.g. `!(x in y)`"),
                _ => None,
            },
            _ => None,
        };
        match word_operator {
            Some(hint) => {
                let word = self.text(next.span);
                Error::new(next.span, format!("`{word}` is not an operator")).hint(hint)
            }
            None => Error::new(
                next.span,
                format!("expected {expected}, found {}", self.found(next)),
            ),
        }
    }

    fn unclosed(open: &Token, close: &str) -> Error {
        let text = match open.tok {
            Tok::LBracket => "[",
            _ => "(",
        };
        Error::new(open.span, format!("unclosed `{text}`")).hint(format!("add a `{close}`"))
    }

    fn or(&mut self) -> Result<Expr, Error> {
        let first = self.and()?;
        if self.peek().tok != Tok::OrOr {
            return Ok(first);
        }
        let mut span = first.span;
        let mut items = vec![first];
        while self.peek().tok == Tok::OrOr {
            self.advance();
            let item = self.and()?;
            span = span.to(item.span);
            items.push(item);
        }
        Ok(Expr {
            kind: Kind::Or(items),
            span,
        })
    }

    fn and(&mut self) -> Result<Expr, Error> {
        let first = self.not()?;
        if self.peek().tok != Tok::AndAnd {
            return Ok(first);
        }
        let mut span = first.span;
        let mut items = vec![first];
        while self.peek().tok == Tok::AndAnd {
            self.advance();
            let item = self.not()?;
            span = span.to(item.span);
            items.push(item);
        }
        Ok(Expr {
            kind: Kind::And(items),
            span,
        })
    }

    fn not(&mut self) -> Result<Expr, Error> {
        if self.peek().tok != Tok::Bang {
            return self.compare();
        }
        let bang = self.advance();
        self.enter(bang.span)?;
        let inner = self.not()?;
        self.leave();
        Ok(Expr {
            span: bang.span.to(inner.span),
            kind: Kind::Not(Box::new(inner)),
        })
    }

    fn compare(&mut self) -> Result<Expr, Error> {
        let left = self.operand()?;
        let Some(op) = CompareOp::from_tok(&self.peek().tok) else {
            return Ok(left);
        };
        self.advance();
        let right = self.operand()?;
        let next = self.peek();
        if let Some(second) = CompareOp::from_tok(&next.tok) {
            return Err(Error::new(
                next.span,
                format!(
                    "comparisons cannot be chained: `{}` follows `{}`",
                    second.symbol(),
                    op.symbol()
                ),
            )
            .hint("join them with `&&`, e.g. `a < b && b < c`"));
        }
        Ok(Expr {
            span: left.span.to(right.span),
            kind: Kind::Compare {
                op,
                left: Box::new(left),
                right: Box::new(right),
            },
        })
    }

    fn operand(&mut self) -> Result<Expr, Error> {
        let token = self.peek().clone();
        let kind = match token.tok {
            Tok::Str(text) => Kind::Str(text),
            Tok::Int(value) => Kind::Int(value),
            Tok::Float(value) => Kind::Float(value),
            Tok::Ident(word) => match word.as_str() {
                "true" => Kind::Bool(true),
                "false" => Kind::Bool(false),
                "null" => Kind::Null,
                "in" => return Err(self.expected_operand()),
                "not" if starts_operand(&self.peek_at(1).tok) => {
                    return Err(Error::new(token.span, "`not` is not an operator")
                        .hint("use `!`, e.g. `!(x in y)`"));
                }
                _ if self.peek_at(1).tok == Tok::LParen => return self.call(),
                _ => return self.path(),
            },
            Tok::LParen => return self.paren(),
            Tok::LBracket => return self.list(),
            // A leading `!` is taken by `not`, so this one follows a comparison operator.
            Tok::Bang => {
                let op = self
                    .previous()
                    .map(|t| self.text(t.span))
                    .unwrap_or_default();
                return Err(
                    Error::new(token.span, format!("`!` cannot follow `{op}`")).hint(
                        "`!` applies to a whole comparison: write `!(a == b)`, \
                     or `a == (!b)` to negate one side",
                    ),
                );
            }
            _ => return Err(self.expected_operand()),
        };
        self.advance();
        Ok(Expr {
            kind,
            span: token.span,
        })
    }

    fn paren(&mut self) -> Result<Expr, Error> {
        let open = self.advance();
        self.enter(open.span)?;
        let inner = self.or()?;
        let close = self.peek().clone();
        match close.tok {
            Tok::RParen => {
                self.advance();
            }
            Tok::Eof => return Err(Self::unclosed(&open, ")")),
            _ => return Err(self.unexpected_after_operand("an operator or `)`")),
        }
        self.leave();
        Ok(Expr {
            span: open.span.to(close.span),
            ..inner
        })
    }

    fn list(&mut self) -> Result<Expr, Error> {
        let open = self.advance();
        self.enter(open.span)?;
        let mut items = Vec::new();
        // A trailing comma is allowed, as in YAML flow sequences.
        let close = loop {
            match self.peek().tok {
                Tok::RBracket => break self.advance(),
                Tok::Eof => return Err(Self::unclosed(&open, "]")),
                _ => {}
            }
            items.push(self.or()?);
            match self.peek().tok {
                Tok::Comma => {
                    self.advance();
                }
                Tok::RBracket => break self.advance(),
                Tok::Eof => return Err(Self::unclosed(&open, "]")),
                _ => return Err(self.unexpected_after_operand("`,` or `]`")),
            }
        };
        self.leave();
        Ok(Expr {
            kind: Kind::List(items),
            span: open.span.to(close.span),
        })
    }

    fn call(&mut self) -> Result<Expr, Error> {
        let name = self.advance();
        let open = self.advance();
        let word = self.text(name.span);
        let Some(func) = Func::from_name(word) else {
            let names = Func::ALL.map(Func::name);
            let known = format!("the functions are {}", names.join(", "));
            let error = Error::new(name.span, format!("`{word}` is not a function"));
            return Err(match did_you_mean(word, names) {
                Some(close) => error.hint(format!("did you mean `{close}`? {known}")),
                None => error.hint(known),
            });
        };
        self.enter(open.span)?;
        let mut args = Vec::new();
        let close = if self.peek().tok == Tok::RParen {
            self.advance()
        } else {
            loop {
                if self.peek().tok == Tok::Eof {
                    return Err(Self::unclosed(&open, ")"));
                }
                args.push(self.or()?);
                match self.peek().tok {
                    Tok::Comma => {
                        self.advance();
                    }
                    Tok::RParen => break self.advance(),
                    Tok::Eof => return Err(Self::unclosed(&open, ")")),
                    _ => return Err(self.unexpected_after_operand("`,` or `)`")),
                }
            }
        };
        self.leave();
        let span = name.span.to(close.span);
        let params = func.params();
        if args.len() != params.len() {
            let plural = if params.len() == 1 { "" } else { "s" };
            return Err(Error::new(
                span,
                format!(
                    "`{}` takes {} argument{plural}, got {}",
                    func.name(),
                    params.len(),
                    args.len()
                ),
            )
            .hint(format!("write `{}({})`", func.name(), params.join(", "))));
        }
        Ok(Expr {
            kind: Kind::Call(func, args),
            span,
        })
    }

    fn path(&mut self) -> Result<Expr, Error> {
        let root = self.advance();
        let name = self.text(root.span).to_owned();
        let mut segments = vec![(Segment::Field(name), root.span)];
        let mut span = root.span;
        loop {
            let (segment, segment_span) = match self.peek().tok {
                Tok::Dot => self.field()?,
                Tok::LBracket => self.index()?,
                _ => break,
            };
            span = span.to(segment_span);
            segments.push((segment, segment_span));
        }
        Ok(Expr {
            kind: Kind::Path(Path { segments }),
            span,
        })
    }

    /// `.name`, with the current token on the dot.
    fn field(&mut self) -> Result<(Segment, Span), Error> {
        let dot = self.advance();
        let next = self.peek().clone();
        match next.tok {
            Tok::Ident(name) => {
                self.advance();
                Ok((Segment::Field(name), next.span))
            }
            Tok::Int(_) | Tok::Float(_) => Err(Error::new(
                next.span,
                format!("expected a name after `.`, found {}", self.found(&next)),
            )
            .hint("index lists with brackets, e.g. `rows[0]`")),
            Tok::Eof => Err(Error::new(dot.span, "expected a name after `.`")),
            _ => Err(Error::new(
                next.span,
                format!("expected a name after `.`, found {}", self.found(&next)),
            )),
        }
    }

    /// `[0]` or `["key"]`, with the current token on the `[`.
    fn index(&mut self) -> Result<(Segment, Span), Error> {
        let open = self.advance();
        let inside = self.advance();
        let segment = match inside.tok {
            Tok::Int(index) if index >= 0 => Segment::Index(index),
            Tok::Int(_) => {
                return Err(Error::new(inside.span, "a list index cannot be negative")
                    .hint("indexes count from 0 at the start of the list"));
            }
            Tok::Str(key) => Segment::Key(key),
            Tok::Eof => return Err(Self::unclosed(&open, "]")),
            _ => {
                return Err(Error::new(
                    inside.span,
                    format!(
                        "expected an index such as `[0]` or a key such as `[\"name\"]`, found {}",
                        self.found(&inside)
                    ),
                ));
            }
        };
        let close = self.peek().clone();
        match close.tok {
            Tok::RBracket => {
                self.advance();
                Ok((segment, open.span.to(close.span)))
            }
            Tok::Eof => Err(Self::unclosed(&open, "]")),
            _ => Err(Error::new(
                close.span,
                format!("expected `]` after the index, found {}", self.found(&close)),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tree as an s-expression, to pin precedence and grouping.
    fn sexpr(e: &Expr) -> String {
        let join = |items: &[Expr]| items.iter().map(sexpr).collect::<Vec<_>>().join(" ");
        match &e.kind {
            Kind::Null => "null".into(),
            Kind::Bool(b) => b.to_string(),
            Kind::Int(i) => i.to_string(),
            Kind::Float(f) => format!("{f:?}"),
            Kind::Str(s) => format!("{s:?}"),
            Kind::List(items) => format!("[{}]", join(items)),
            Kind::Path(path) => path.to_ref(e.span).dotted(),
            Kind::Call(func, args) => format!("({} {})", func.name(), join(args)),
            Kind::Not(inner) => format!("(! {})", sexpr(inner)),
            Kind::And(items) => format!("(&& {})", join(items)),
            Kind::Or(items) => format!("(|| {})", join(items)),
            Kind::Compare { op, left, right } => {
                format!("({} {} {})", op.symbol(), sexpr(left), sexpr(right))
            }
        }
    }

    fn tree(src: &str) -> String {
        sexpr(&parse(src).expect("parses"))
    }

    fn err(src: &str) -> (Span, String) {
        let e = parse(src).expect_err("should not parse");
        (e.span, e.message)
    }

    fn hint(src: &str) -> Option<String> {
        parse(src).expect_err("should not parse").hint
    }

    #[test]
    fn precedence_loosest_first() {
        assert_eq!(tree("a || b && c"), "(|| a (&& b c))");
        assert_eq!(tree("a && b || c && d"), "(|| (&& a b) (&& c d))");
        assert_eq!(tree("!a == b"), "(! (== a b))");
        assert_eq!(tree("!a && b"), "(&& (! a) b)");
        assert_eq!(tree("(a || b) && c"), "(&& (|| a b) c)");
        assert_eq!(tree("!!a"), "(! (! a))");
        assert_eq!(tree("a == (!b)"), "(== a (! b))");
    }

    #[test]
    fn chains_are_flat() {
        assert_eq!(tree("a && b && c && d"), "(&& a b c d)");
        assert_eq!(tree("a || b || c"), "(|| a b c)");
        let long = vec!["x"; 300].join("&&");
        let Kind::And(items) = parse(&long).expect("parses").kind else {
            panic!("not an and")
        };
        assert_eq!(items.len(), 300);
    }

    #[test]
    fn spec_examples() {
        assert_eq!(
            tree(r#"steps.health.status == "failed" && params.level >= 3"#),
            r#"(&& (== steps.health.status "failed") (>= params.level 3))"#
        );
        assert_eq!(
            tree(r#"outputs.json.overall in ["GREEN", "YELLOW"] && outputs.json.p95_ms < 500"#),
            r#"(&& (in outputs.json.overall ["GREEN" "YELLOW"]) (< outputs.json.p95_ms 500))"#
        );
        assert_eq!(
            tree(r#"outputs.rows[0].n > 1.5 || steps.health.outputs.json["p95"] != null"#),
            r#"(|| (> outputs.rows[0].n 1.5) (!= steps.health.outputs.json["p95"] null))"#
        );
    }

    #[test]
    fn literals_lists_and_calls() {
        assert_eq!(
            tree("[1, 'a', true, false, null, -2, 0.5, []]"),
            r#"[1 "a" true false null -2 0.5 []]"#
        );
        assert_eq!(tree("[1, 2,]"), "[1 2]");
        assert_eq!(tree("len(x) > 0"), "(> (len x) 0)");
        assert_eq!(
            tree("contains(a, 'b') && starts_with(c, 'd') && ends_with(e, 'f')"),
            r#"(&& (contains a "b") (starts_with c "d") (ends_with e "f"))"#
        );
        assert_eq!(tree("len([1, (2)]) == 2"), "(== (len [1 2]) 2)");
    }

    #[test]
    fn keywords_are_names_after_a_dot() {
        assert_eq!(tree("x.true.null.in.not"), "x.true.null.in.not");
        assert_eq!(tree("not.x"), "not.x");
        assert_eq!(tree("a in b"), "(in a b)");
    }

    #[test]
    fn spans() {
        let e = parse("( a == 'é' ) && !b").expect("parses");
        assert_eq!(e.span, Span::new(0, 19));
        let Kind::And(items) = &e.kind else {
            panic!("not an and")
        };
        assert_eq!(items[0].span, Span::new(0, 13));
        assert_eq!(items[1].span, Span::new(17, 19));
        let Kind::Path(path) = &parse(r#"o.rows[0]["k"]"#).expect("parses").kind else {
            panic!("not a path")
        };
        let spans: Vec<Span> = path.segments.iter().map(|s| s.1).collect();
        assert_eq!(
            spans,
            [
                Span::new(0, 1),
                Span::new(2, 6),
                Span::new(6, 9),
                Span::new(9, 14)
            ]
        );
    }

    #[test]
    fn missing_operands() {
        assert_eq!(
            err("a &&"),
            (Span::new(2, 4), "expected an operand after `&&`".into())
        );
        assert_eq!(
            err("a || "),
            (Span::new(2, 4), "expected an operand after `||`".into())
        );
        assert_eq!(
            err("a == )"),
            (
                Span::new(5, 6),
                "expected an operand after `==`, found `)`".into()
            )
        );
        assert_eq!(
            err("!"),
            (Span::new(0, 1), "expected an operand after `!`".into())
        );
        assert_eq!(
            err(") && a"),
            (Span::new(0, 1), "expected an operand, found `)`".into())
        );
        assert_eq!(
            err("a in in"),
            (
                Span::new(5, 7),
                "expected an operand after `in`, found `in`".into()
            )
        );
        assert_eq!(
            err("&& a"),
            (Span::new(0, 2), "expected an operand, found `&&`".into())
        );
    }

    #[test]
    fn empty_and_blank_conditions() {
        assert_eq!(err(""), (Span::new(0, 0), "the condition is empty".into()));
        assert_eq!(
            err("  \n"),
            (Span::new(0, 3), "the condition is empty".into())
        );
    }

    #[test]
    fn word_operators_get_hints() {
        assert_eq!(
            err("a and b"),
            (Span::new(2, 5), "`and` is not an operator".into())
        );
        assert_eq!(hint("a and b").as_deref(), Some("use `&&`"));
        assert_eq!(
            err("a or b"),
            (Span::new(2, 4), "`or` is not an operator".into())
        );
        assert_eq!(hint("a or b").as_deref(), Some("use `||`"));
        assert_eq!(
            err("not a"),
            (Span::new(0, 3), "`not` is not an operator".into())
        );
        assert_eq!(hint("not a").as_deref(), Some("use `!`, e.g. `!(x in y)`"));
        assert_eq!(err("not(a)").1, "`not` is not an operator");
        assert_eq!(
            err("x not in y"),
            (Span::new(2, 5), "`not` is not an operator".into())
        );
        assert_eq!(
            err("(a and b)"),
            (Span::new(3, 6), "`and` is not an operator".into())
        );
        assert_eq!(
            err("[a or b]"),
            (Span::new(3, 5), "`or` is not an operator".into())
        );
    }

    #[test]
    fn single_equals_is_explained() {
        let e = parse("steps.a.status = 'failed'").expect_err("should not parse");
        assert_eq!(e.span, Span::new(15, 16));
        assert_eq!(e.message, "`=` is not an operator");
        assert_eq!(e.hint.as_deref(), Some("use `==` to compare"));
    }

    #[test]
    fn comparisons_do_not_chain() {
        assert_eq!(
            err("a < b < c"),
            (
                Span::new(6, 7),
                "comparisons cannot be chained: `<` follows `<`".into()
            )
        );
        assert_eq!(
            err("a == b in c"),
            (
                Span::new(7, 9),
                "comparisons cannot be chained: `in` follows `==`".into()
            )
        );
        assert!(hint("a < b < c").is_some_and(|h| h.contains("&&")));
        assert_eq!(tree("(a < b) == c"), "(== (< a b) c)");
    }

    #[test]
    fn negation_after_a_comparison() {
        assert_eq!(
            err("a == !b"),
            (Span::new(5, 6), "`!` cannot follow `==`".into())
        );
        assert!(hint("a == !b").is_some_and(|h| h.contains("a == (!b)")));
    }

    #[test]
    fn unexpected_tokens_after_operands() {
        assert_eq!(
            err("a b"),
            (
                Span::new(2, 3),
                "expected an operator or the end of the condition, found `b`".into()
            )
        );
        assert_eq!(
            err("steps.a.status 'failed'"),
            (
                Span::new(15, 23),
                "expected an operator or the end of the condition, found `'failed'`".into()
            )
        );
        assert_eq!(err("a)"), (Span::new(1, 2), "unmatched `)`".into()));
        assert_eq!(
            err("(a b)"),
            (
                Span::new(3, 4),
                "expected an operator or `)`, found `b`".into()
            )
        );
        assert_eq!(
            err("[a b]"),
            (Span::new(3, 4), "expected `,` or `]`, found `b`".into())
        );
        assert_eq!(
            err("len(a b)"),
            (Span::new(6, 7), "expected `,` or `)`, found `b`".into())
        );
        assert_eq!(
            err("len(x)[0]"),
            (
                Span::new(6, 7),
                "expected an operator or the end of the condition, found `[`".into()
            )
        );
    }

    #[test]
    fn unclosed_brackets() {
        assert_eq!(err("(a && b"), (Span::new(0, 1), "unclosed `(`".into()));
        assert_eq!(hint("(a && b").as_deref(), Some("add a `)`"));
        assert_eq!(err("x in [1, 2"), (Span::new(5, 6), "unclosed `[`".into()));
        assert_eq!(err("x in [1,"), (Span::new(5, 6), "unclosed `[`".into()));
        assert_eq!(err("len(x"), (Span::new(3, 4), "unclosed `(`".into()));
        assert_eq!(err("len("), (Span::new(3, 4), "unclosed `(`".into()));
        assert_eq!(err("a[0"), (Span::new(1, 2), "unclosed `[`".into()));
        assert_eq!(err("a["), (Span::new(1, 2), "unclosed `[`".into()));
    }

    #[test]
    fn bad_paths() {
        assert_eq!(
            err("a."),
            (Span::new(1, 2), "expected a name after `.`".into())
        );
        assert_eq!(
            err("a.(b)"),
            (
                Span::new(2, 3),
                "expected a name after `.`, found `(`".into()
            )
        );
        assert_eq!(
            err("rows.0"),
            (
                Span::new(5, 6),
                "expected a name after `.`, found `0`".into()
            )
        );
        assert_eq!(
            hint("rows.0").as_deref(),
            Some("index lists with brackets, e.g. `rows[0]`")
        );
        assert_eq!(err("rows.0.1").1, "expected a name after `.`, found `0.1`");
        assert_eq!(err("rows.0.1").0, Span::new(5, 8));
        assert_eq!(
            err("a[-1]"),
            (Span::new(2, 4), "a list index cannot be negative".into())
        );
        assert_eq!(
            err("a[b]"),
            (
                Span::new(2, 3),
                "expected an index such as `[0]` or a key such as `[\"name\"]`, found `b`".into()
            )
        );
        assert_eq!(
            err("a[1.5]").1,
            "expected an index such as `[0]` or a key such as `[\"name\"]`, found `1.5`"
        );
        assert_eq!(
            err("a[0 1]"),
            (
                Span::new(4, 5),
                "expected `]` after the index, found `1`".into()
            )
        );
        assert_eq!(
            err("1.x"),
            (
                Span::new(1, 2),
                "expected an operator or the end of the condition, found `.`".into()
            )
        );
    }

    #[test]
    fn functions() {
        let e = parse("lenght(x) > 1").expect_err("should not parse");
        assert_eq!(e.span, Span::new(0, 6));
        assert_eq!(e.message, "`lenght` is not a function");
        assert_eq!(
            e.hint.as_deref(),
            Some("did you mean `len`? the functions are len, contains, starts_with, ends_with")
        );
        assert_eq!(
            hint("upper(x)").as_deref(),
            Some("the functions are len, contains, starts_with, ends_with")
        );
        assert_eq!(
            err("len(a, b)"),
            (Span::new(0, 9), "`len` takes 1 argument, got 2".into())
        );
        assert_eq!(hint("len()").as_deref(), Some("write `len(x)`"));
        assert_eq!(
            err("len()"),
            (Span::new(0, 5), "`len` takes 1 argument, got 0".into())
        );
        assert_eq!(
            err("contains(a)"),
            (
                Span::new(0, 11),
                "`contains` takes 2 arguments, got 1".into()
            )
        );
        assert_eq!(
            hint("contains(a)").as_deref(),
            Some("write `contains(haystack, needle)`")
        );
        assert_eq!(
            err("len(a,)"),
            (
                Span::new(6, 7),
                "expected an operand after `,`, found `)`".into()
            )
        );
        // A path with more than one segment is not a function name.
        assert_eq!(
            err("a.len(x)").1,
            "expected an operator or the end of the condition, found `(`"
        );
    }

    #[test]
    fn length_limit_is_checked_first() {
        let at_limit = format!("a == \"{}\"", "x".repeat(MAX_LEN - 7));
        assert_eq!(at_limit.len(), MAX_LEN);
        assert!(parse(&at_limit).is_ok());
        let over = format!("a == \"{}\"", "x".repeat(MAX_LEN - 6));
        assert_eq!(
            err(&over),
            (
                Span::new(0, 1025),
                "condition is 1025 bytes; the limit is 1024".into()
            )
        );
        let huge = "(".repeat(100_000);
        assert_eq!(
            err(&huge),
            (
                Span::new(0, 100_000),
                "condition is 100000 bytes; the limit is 1024".into()
            )
        );
        let nested = format!("{}a{}", "(".repeat(10_000), ")".repeat(10_000));
        assert_eq!(
            err(&nested).1,
            "condition is 20001 bytes; the limit is 1024"
        );
        let e = parse(&"x".repeat(1500)).expect_err("too long");
        assert_eq!(e.message, "condition is 1500 bytes; the limit is 1024");
    }

    #[test]
    fn depth_limit() {
        let nest = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(tree(&nest(MAX_DEPTH)), "a");
        assert_eq!(
            err(&nest(MAX_DEPTH + 1)),
            (Span::new(32, 33), "nesting deeper than 32".into())
        );
        // As deep as fits in the length limit: rejected at the 33rd level, long before the end.
        assert_eq!(
            err(&nest(500)),
            (Span::new(32, 33), "nesting deeper than 32".into())
        );
        assert_eq!(err(&"(".repeat(1000)).1, "nesting deeper than 32");
        assert_eq!(err(&"[".repeat(1000)).1, "nesting deeper than 32");
        assert_eq!(err(&"!".repeat(1000)).1, "nesting deeper than 32");
        assert_eq!(err(&"len(".repeat(200)).1, "nesting deeper than 32");
        assert_eq!(
            tree(&format!("{}a", "!".repeat(MAX_DEPTH)))
                .matches('!')
                .count(),
            32
        );
        assert_eq!(
            err(&format!("{}a", "!".repeat(MAX_DEPTH + 1))),
            (Span::new(32, 33), "nesting deeper than 32".into())
        );
        let lists = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&lists).is_ok());
        // Mixed kinds add up.
        let mixed = format!("{}a{}", "!(".repeat(16), ")".repeat(16));
        assert!(parse(&mixed).is_ok());
        let mixed = format!("!{}a{}", "!(".repeat(16), ")".repeat(16));
        assert_eq!(err(&mixed).1, "nesting deeper than 32");
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let samples = [
            "\"",
            "'",
            "\\",
            "a[",
            "a[\"",
            "a[\"é",
            "é",
            "\u{0}",
            "((((",
            "))))",
            "[[[",
            "]]]",
            "!",
            "a.",
            "..",
            ",",
            "a,b",
            "len(",
            "len(,",
            "\"\\",
            "'\\é",
            "x in",
            "in",
            "-",
            "--1",
            "1..2",
            "🙂 == 🙂",
            "a == \"🙂",
            "a[0",
            "a[0]]",
            "a[0][",
            "true(",
            "null.x",
            "a &&& b",
            "a ||| b",
            "a === b",
            "a !== b",
            "a <> b",
            "a => b",
            "a =< b",
        ];
        for sample in samples {
            let _ = parse(sample);
        }
        // Every prefix of a tricky condition, cut at every char boundary.
        let src = r#"!(steps.é-x.status == "sü\"x" && len(o.r[0]["k"]) >= -1.5) || a in [1, 'b']"#;
        for (i, _) in src.char_indices() {
            let _ = parse(&src[..i]);
        }
    }
}
