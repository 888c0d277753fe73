//! Splits a condition into tokens, each with its byte span.
//!
//! The lexer works on `char`s and records only offsets reached by stepping over whole
//! characters, so every span it produces lies on character boundaries and slicing the source
//! with it cannot panic, whatever Unicode the input holds.

use super::{Error, Span};

/// What a token is. Keywords (`true`, `in`, ...) are identifiers: whether they are keywords
/// depends on where they stand, which only the parser knows.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Dot,
    Comma,
    LParen,
    RParen,
    LBracket,
    RBracket,
    OrOr,
    AndAnd,
    Bang,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub tok: Tok,
    pub span: Span,
}

/// Tokenizes `src`; the last token is always `Eof` (with an empty span at the end).
pub(super) fn lex(src: &str) -> Result<Vec<Token>, Error> {
    let mut lexer = Lexer { src, pos: 0 };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_whitespace();
        let start = lexer.pos;
        let Some(c) = lexer.bump() else {
            tokens.push(Token {
                tok: Tok::Eof,
                span: Span::new(src.len(), src.len()),
            });
            return Ok(tokens);
        };
        let tok = match c {
            '.' => Tok::Dot,
            ',' => Tok::Comma,
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            '|' if lexer.eat('|') => Tok::OrOr,
            '&' if lexer.eat('&') => Tok::AndAnd,
            '=' if lexer.eat('=') => Tok::EqEq,
            '!' if lexer.eat('=') => Tok::NotEq,
            '!' => Tok::Bang,
            '<' if lexer.eat('=') => Tok::Le,
            '<' => Tok::Lt,
            '>' if lexer.eat('=') => Tok::Ge,
            '>' => Tok::Gt,
            '|' | '&' | '=' => {
                let (fix, meaning) = match c {
                    '|' => ("||", "for or"),
                    '&' => ("&&", "for and"),
                    _ => ("==", "to compare"),
                };
                return Err(Error::new(
                    lexer.span_from(start),
                    format!("`{c}` is not an operator"),
                )
                .hint(format!("use `{fix}` {meaning}")));
            }
            '"' | '\'' => lexer.string(start, c)?,
            '0'..='9' => lexer.number(start)?,
            '-' if lexer.peek().is_some_and(|d| d.is_ascii_digit()) => lexer.number(start)?,
            '-' => {
                return Err(
                    Error::new(lexer.span_from(start), "`-` is not an operator").hint(
                        "conditions have no arithmetic; `-` belongs inside names such as \
                     `preflight-schema` and before negative numbers",
                    ),
                );
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                lexer.eat_while(is_ident_char);
                Tok::Ident(lexer.text_from(start).to_owned())
            }
            other => return Err(unexpected_char(other, lexer.span_from(start))),
        };
        tokens.push(Token {
            tok,
            span: lexer.span_from(start),
        });
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn unexpected_char(c: char, span: Span) -> Error {
    let shown: String = if c.is_control() || c.is_whitespace() {
        c.escape_unicode().collect()
    } else {
        c.to_string()
    };
    let error = Error::new(span, format!("unexpected character `{shown}`"));
    match c {
        '+' | '*' | '/' | '%' => error.hint("conditions have no arithmetic"),
        '`' => error.hint("quote text with \"...\" or '...'"),
        _ => error,
    }
}

struct Lexer<'a> {
    src: &'a str,
    /// Always on a character boundary: it only ever moves by `char::len_utf8`.
    pos: usize,
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        self.src.get(self.pos..).unwrap_or_default()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, want: char) -> bool {
        if self.peek() == Some(want) {
            self.pos += want.len_utf8();
            true
        } else {
            false
        }
    }

    fn eat_while(&mut self, f: impl Fn(char) -> bool) {
        while let Some(c) = self.peek() {
            if !f(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    fn skip_whitespace(&mut self) {
        self.eat_while(char::is_whitespace);
    }

    fn span_from(&self, start: usize) -> Span {
        Span::new(start, self.pos)
    }

    fn text_from(&self, start: usize) -> &str {
        self.src.get(start..self.pos).unwrap_or_default()
    }

    /// A string literal whose opening `quote` is at `start` (already consumed).
    fn string(&mut self, start: usize, quote: char) -> Result<Tok, Error> {
        let mut value = String::new();
        loop {
            let escape_start = self.pos;
            match self.bump() {
                None => {
                    return Err(Error::new(self.span_from(start), "unclosed string")
                        .hint(format!("add a closing {quote}")));
                }
                Some(c) if c == quote => return Ok(Tok::Str(value)),
                Some('\\') => match self.bump() {
                    Some('"') => value.push('"'),
                    Some('\'') => value.push('\''),
                    Some('\\') => value.push('\\'),
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some(_) => {
                        let span = self.span_from(escape_start);
                        let text = self.text_from(escape_start);
                        return Err(Error::new(span, format!("`{text}` is not a valid escape"))
                            .hint(
                                r#"the escapes are \" \' \\ \n and \t; write \\ for a backslash"#,
                            ));
                    }
                    None => {
                        return Err(Error::new(self.span_from(start), "unclosed string")
                            .hint(format!("add a closing {quote}")));
                    }
                },
                Some(c) => value.push(c),
            }
        }
    }

    /// A number whose first character (a digit or `-`) is at `start` (already consumed).
    fn number(&mut self, start: usize) -> Result<Tok, Error> {
        self.eat_while(|c| c.is_ascii_digit());
        let mut decimal = false;
        if self.peek() == Some('.') && self.peek_second().is_some_and(|c| c.is_ascii_digit()) {
            decimal = true;
            self.pos += 1;
            self.eat_while(|c| c.is_ascii_digit());
        }
        // `3abc`, `1e5`, `0x1f`: report the whole word rather than a confusing
        // "expected an operator" at its second half.
        if self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.eat_while(|c| is_ident_char(c) || c == '.');
            let text = self.text_from(start);
            return Err(
                Error::new(self.span_from(start), format!("`{text}` is not a number")).hint(
                    "write numbers as digits with an optional decimal part, e.g. `3` or `0.5`",
                ),
            );
        }
        let text = self.text_from(start);
        if decimal {
            match text.parse::<f64>() {
                Ok(value) if value.is_finite() => Ok(Tok::Float(value)),
                _ => Err(Error::new(
                    self.span_from(start),
                    format!("`{text}` is too large"),
                )),
            }
        } else {
            text.parse::<i64>().map(Tok::Int).map_err(|_| {
                Error::new(
                    self.span_from(start),
                    format!("`{text}` does not fit in a 64-bit integer"),
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        lex(src)
            .expect("lexes")
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    fn err(src: &str) -> (Span, String, Option<String>) {
        let e = lex(src).expect_err("should not lex");
        (e.span, e.message, e.hint)
    }

    #[test]
    fn operators_and_punctuation() {
        use Tok::*;
        assert_eq!(
            toks("|| && ! != == < <= > >= . , ( ) [ ]"),
            [
                OrOr, AndAnd, Bang, NotEq, EqEq, Lt, Le, Gt, Ge, Dot, Comma, LParen, RParen,
                LBracket, RBracket, Eof
            ]
        );
        assert_eq!(
            toks("a<=b"),
            [Ident("a".into()), Le, Ident("b".into()), Eof]
        );
        assert_eq!(toks("!!x"), [Bang, Bang, Ident("x".into()), Eof]);
    }

    #[test]
    fn identifiers_may_contain_hyphens() {
        assert_eq!(
            toks("steps.preflight-schema.status"),
            [
                Tok::Ident("steps".into()),
                Tok::Dot,
                Tok::Ident("preflight-schema".into()),
                Tok::Dot,
                Tok::Ident("status".into()),
                Tok::Eof
            ]
        );
        assert_eq!(toks("_a-1_b"), [Tok::Ident("_a-1_b".into()), Tok::Eof]);
    }

    #[test]
    fn numbers() {
        assert_eq!(
            toks("0 42 -7 1.5 -0.25"),
            [
                Tok::Int(0),
                Tok::Int(42),
                Tok::Int(-7),
                Tok::Float(1.5),
                Tok::Float(-0.25),
                Tok::Eof
            ]
        );
        assert_eq!(toks("-9223372036854775808"), [Tok::Int(i64::MIN), Tok::Eof]);
        // `1.` is the number 1 followed by a dot, which the parser rejects.
        assert_eq!(
            toks("1.x"),
            [Tok::Int(1), Tok::Dot, Tok::Ident("x".into()), Tok::Eof]
        );
        assert_eq!(
            toks("x>-1"),
            [Tok::Ident("x".into()), Tok::Gt, Tok::Int(-1), Tok::Eof]
        );
    }

    #[test]
    fn bad_numbers() {
        assert_eq!(
            err("9223372036854775808"),
            (
                Span::new(0, 19),
                "`9223372036854775808` does not fit in a 64-bit integer".into(),
                None
            )
        );
        let (span, message, hint) = err("x == 3abc");
        assert_eq!(
            (span, message.as_str()),
            (Span::new(5, 9), "`3abc` is not a number")
        );
        assert!(hint.is_some());
        assert_eq!(err("1e5").1, "`1e5` is not a number");
        let huge = format!("{}.0", "9".repeat(400));
        assert_eq!(err(&huge).0, Span::new(0, 402));
        assert!(err(&huge).1.ends_with("is too large"));
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(toks(r#""a b""#), [Tok::Str("a b".into()), Tok::Eof]);
        assert_eq!(
            toks("'it''s'"),
            [Tok::Str("it".into()), Tok::Str("s".into()), Tok::Eof]
        );
        assert_eq!(
            toks(r#""q\"\'\\\n\t" 'x\'y'"#),
            [
                Tok::Str("q\"'\\\n\t".into()),
                Tok::Str("x'y".into()),
                Tok::Eof
            ]
        );
        assert_eq!(toks(r#""héllo ✓""#), [Tok::Str("héllo ✓".into()), Tok::Eof]);
        let spans: Vec<Span> = lex(r#"x=="é""#)
            .expect("lexes")
            .iter()
            .map(|t| t.span)
            .collect();
        assert_eq!(
            spans,
            [
                Span::new(0, 1),
                Span::new(1, 3),
                Span::new(3, 7),
                Span::new(7, 7)
            ]
        );
    }

    #[test]
    fn string_errors() {
        assert_eq!(
            err(r#"a == "open"#),
            (
                Span::new(5, 10),
                "unclosed string".into(),
                Some("add a closing \"".into())
            )
        );
        assert_eq!(
            err(r"a == 'x\"),
            (
                Span::new(5, 8),
                "unclosed string".into(),
                Some("add a closing '".into())
            )
        );
        let (span, message, hint) = err(r#""a\qb""#);
        assert_eq!(
            (span, message.as_str()),
            (Span::new(2, 4), r"`\q` is not a valid escape")
        );
        assert!(hint.is_some_and(|h| h.contains(r"\\")));
        // A multi-byte character after the backslash: the span must end on its boundary.
        assert_eq!(err("\"\\é\"").0, Span::new(1, 4));
    }

    #[test]
    fn single_character_operators_are_explained() {
        assert_eq!(
            err("a = 1"),
            (
                Span::new(2, 3),
                "`=` is not an operator".into(),
                Some("use `==` to compare".into())
            )
        );
        assert_eq!(
            err("a & b"),
            (
                Span::new(2, 3),
                "`&` is not an operator".into(),
                Some("use `&&` for and".into())
            )
        );
        assert_eq!(
            err("a | b"),
            (
                Span::new(2, 3),
                "`|` is not an operator".into(),
                Some("use `||` for or".into())
            )
        );
        assert_eq!(err("a - b").1, "`-` is not an operator");
        assert_eq!(err("a - b").0, Span::new(2, 3));
    }

    #[test]
    fn unexpected_characters() {
        assert_eq!(
            err("a + 1"),
            (
                Span::new(2, 3),
                "unexpected character `+`".into(),
                Some("conditions have no arithmetic".into())
            )
        );
        assert_eq!(
            err("é"),
            (Span::new(0, 2), "unexpected character `é`".into(), None)
        );
        assert_eq!(err("a\u{7}").1, r"unexpected character `\u{7}`");
        assert_eq!(err("x == 🙂").0, Span::new(5, 9));
    }

    #[test]
    fn whitespace_of_all_kinds_is_skipped() {
        assert_eq!(toks(" \t\r\n a \u{a0}"), [Tok::Ident("a".into()), Tok::Eof]);
        assert_eq!(toks(""), [Tok::Eof]);
    }
}
