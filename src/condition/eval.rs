//! Evaluation of a parsed condition against a JSON context.
//!
//! Each node is visited at most once and there are no loops, so the cost is bounded by the
//! size of the tree plus the size of the values that `len`, `contains`, `in` and `==` look
//! at. Those walk JSON values iteratively, so a deeply nested step output cannot overflow the
//! stack either.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::parser::{CompareOp, Expr, Func, Kind, Path};
use super::{EvalError, Segment, Span, snippet};

/// Evaluates `expr` (parsed from `src`) against `context`.
pub(super) fn eval(src: &str, expr: &Expr, context: &Value) -> Result<bool, EvalError> {
    let evaluator = Evaluator { src, context };
    match evaluator.value(expr)?.as_ref() {
        Value::Bool(result) => Ok(*result),
        other => Err(evaluator.error(
            expr.span,
            format!(
                "a condition must be true or false, this is {}",
                describe(other)
            ),
        )),
    }
}

/// A value as messages describe it: its kind, and the value itself when it is short.
fn describe(value: &Value) -> String {
    const MAX_CHARS: usize = 40;
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) if s.chars().count() > MAX_CHARS => {
            let mut cut: String = s.chars().take(MAX_CHARS - 1).collect();
            cut.push('…');
            format!("a string ({cut:?})")
        }
        Value::String(s) => format!("a string ({s:?})"),
        Value::Array(items) if items.len() == 1 => "a list of 1 item".to_owned(),
        Value::Array(items) => format!("a list of {} items", items.len()),
        Value::Object(map) if map.len() == 1 => "an object with 1 key".to_owned(),
        Value::Object(map) => format!("an object with {} keys", map.len()),
    }
}

/// Compares two JSON numbers by value, exactly, whether they are stored as `i64`, `u64` or
/// `f64` (so `3 == 3.0` and `2^63 > 1.5`).
fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    fn integer(n: &Number) -> Option<i128> {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    }
    /// `i` against `f` without rounding `i` to a float (which would make large integers
    /// equal to their neighbours).
    fn integer_vs_float(i: i128, f: f64) -> Option<Ordering> {
        if f.is_nan() {
            return None;
        }
        // Integers from JSON lie within ±2^64; beyond ±2^100 `f` is certainly larger.
        const LIMIT: f64 = 1.0e30;
        if f >= LIMIT {
            return Some(Ordering::Less);
        }
        if f <= -LIMIT {
            return Some(Ordering::Greater);
        }
        let floor = f.floor();
        // Exact: `floor` is integral and well within the range of i128.
        let whole = floor as i128;
        Some(match i.cmp(&whole) {
            Ordering::Equal if f > floor => Ordering::Less,
            other => other,
        })
    }
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        (Some(x), None) => integer_vs_float(x, b.as_f64()?),
        (None, Some(y)) => integer_vs_float(y, a.as_f64()?).map(Ordering::reverse),
        (None, None) => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// JSON equality where numbers compare by value (`1 == 1.0`, also inside lists and
/// objects) and values of different types are simply unequal. Iterative, because step
/// outputs can nest arbitrarily deep.
fn json_eq(a: &Value, b: &Value) -> bool {
    let mut pending = vec![(a, b)];
    while let Some(pair) = pending.pop() {
        match pair {
            (Value::Null, Value::Null) => {}
            (Value::Bool(x), Value::Bool(y)) if x == y => {}
            (Value::String(x), Value::String(y)) if x == y => {}
            (Value::Number(x), Value::Number(y))
                if compare_numbers(x, y) == Some(Ordering::Equal) => {}
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                pending.extend(x.iter().zip(y));
            }
            (Value::Object(x), Value::Object(y)) if x.len() == y.len() => {
                for (key, xv) in x {
                    match y.get(key) {
                        Some(yv) => pending.push((xv, yv)),
                        None => return false,
                    }
                }
            }
            _ => return false,
        }
    }
    true
}

struct Evaluator<'a> {
    src: &'a str,
    context: &'a Value,
}

impl<'a> Evaluator<'a> {
    fn error(&self, span: Span, message: String) -> EvalError {
        EvalError { span, message }
    }

    /// The source text of `expr`, shortened for messages.
    fn text(&self, expr: &Expr) -> String {
        snippet(self.src, expr.span)
    }

    /// The value of `expr`. Paths borrow from the context, so `len` of a large output does
    /// not copy it. Recursion is bounded by the parser's depth limit.
    fn value(&self, expr: &Expr) -> Result<Cow<'a, Value>, EvalError> {
        Ok(match &expr.kind {
            Kind::Null => Cow::Owned(Value::Null),
            Kind::Bool(b) => Cow::Owned(Value::Bool(*b)),
            Kind::Int(i) => Cow::Owned(Value::from(*i)),
            // The lexer only produces finite decimals, which JSON can always hold.
            Kind::Float(f) => Cow::Owned(Number::from_f64(*f).map_or(Value::Null, Value::Number)),
            Kind::Str(s) => Cow::Owned(Value::String(s.clone())),
            // Paths inside a list literal are copied, recursively; values parsed from JSON are at
            // most 128 levels deep (serde_json's limit), which keeps that bounded in practice.
            Kind::List(items) => {
                let values = items
                    .iter()
                    .map(|item| self.value(item).map(Cow::into_owned))
                    .collect::<Result<Vec<_>, _>>()?;
                Cow::Owned(Value::Array(values))
            }
            Kind::Path(path) => Cow::Borrowed(self.path(path, expr.span)?),
            Kind::Not(inner) => Cow::Owned(Value::Bool(
                !self.boolean(inner, "`!` needs true or false")?,
            )),
            Kind::And(items) => {
                let mut result = true;
                for item in items {
                    if !self.boolean(item, "`&&` needs true or false on both sides")? {
                        result = false;
                        break;
                    }
                }
                Cow::Owned(Value::Bool(result))
            }
            Kind::Or(items) => {
                let mut result = false;
                for item in items {
                    if self.boolean(item, "`||` needs true or false on both sides")? {
                        result = true;
                        break;
                    }
                }
                Cow::Owned(Value::Bool(result))
            }
            Kind::Compare { op, left, right } => {
                Cow::Owned(Value::Bool(self.compare(expr, *op, left, right)?))
            }
            Kind::Call(func, args) => Cow::Owned(self.call(expr, *func, args)?),
        })
    }

    /// The value of `expr`, which must be a boolean; `what` says who needs one.
    fn boolean(&self, expr: &Expr, what: &str) -> Result<bool, EvalError> {
        match self.value(expr)?.as_ref() {
            Value::Bool(b) => Ok(*b),
            other => Err(self.error(
                expr.span,
                format!("{what}; `{}` is {}", self.text(expr), describe(other)),
            )),
        }
    }

    /// Walks `path` from the context. A failure names the path as written up to the segment
    /// that is missing, which is where the user has to look.
    fn path(&self, path: &Path, span: Span) -> Result<&'a Value, EvalError> {
        let written = |end: usize| self.src.get(span.start..end).unwrap_or_default();
        let mut current = self.context;
        let mut parent_end = span.start;
        for (segment, segment_span) in &path.segments {
            let here = Span::new(span.start, segment_span.end);
            let missing = |why: String| {
                self.error(here, format!("`{}` does not exist{why}", written(here.end)))
            };
            let parent = written(parent_end);
            current = match (segment, current) {
                (Segment::Field(key) | Segment::Key(key), Value::Object(map)) => {
                    map.get(key).ok_or_else(|| missing(String::new()))?
                }
                (Segment::Index(index), Value::Array(items)) => usize::try_from(*index)
                    .ok()
                    .and_then(|i| items.get(i))
                    .ok_or_else(|| {
                        let count = match items.len() {
                            1 => "1 item".to_owned(),
                            n => format!("{n} items"),
                        };
                        missing(format!("; `{parent}` has {count}"))
                    })?,
                // The root: the context itself is not an object.
                _ if parent_end == span.start => return Err(missing(String::new())),
                (Segment::Field(_) | Segment::Key(_), other) => {
                    return Err(missing(format!(
                        "; `{parent}` is {}, not an object",
                        describe(other)
                    )));
                }
                (Segment::Index(_), other) => {
                    return Err(missing(format!(
                        "; `{parent}` is {}, not a list",
                        describe(other)
                    )));
                }
            };
            parent_end = segment_span.end;
        }
        Ok(current)
    }

    fn compare(
        &self,
        whole: &Expr,
        op: CompareOp,
        left: &Expr,
        right: &Expr,
    ) -> Result<bool, EvalError> {
        let l = self.value(left)?;
        let r = self.value(right)?;
        let order = || -> Result<Ordering, EvalError> {
            let ordering = match (l.as_ref(), r.as_ref()) {
                (Value::Number(a), Value::Number(b)) => compare_numbers(a, b),
                (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                _ => None,
            };
            ordering.ok_or_else(|| {
                self.error(
                    whole.span,
                    format!(
                        "`{}` needs two numbers or two strings; `{}` is {} and `{}` is {}",
                        op.symbol(),
                        self.text(left),
                        describe(&l),
                        self.text(right),
                        describe(&r)
                    ),
                )
            })
        };
        Ok(match op {
            CompareOp::Eq => json_eq(&l, &r),
            CompareOp::Ne => !json_eq(&l, &r),
            CompareOp::Lt => order()?.is_lt(),
            CompareOp::Le => order()?.is_le(),
            CompareOp::Gt => order()?.is_gt(),
            CompareOp::Ge => order()?.is_ge(),
            CompareOp::In => self.contains("`in`", (right, &r), (left, &l))?,
        })
    }

    /// Whether `haystack` (a list, string or object) holds `needle` (an item, a substring or
    /// a key).
    fn contains(
        &self,
        what: &str,
        (h, haystack): (&Expr, &Value),
        (n, needle): (&Expr, &Value),
    ) -> Result<bool, EvalError> {
        let needs_string = |looks_for: &str| {
            self.error(
                n.span,
                format!(
                    "{what} looks for {looks_for} in `{}`, so it needs a string; `{}` is {}",
                    self.text(h),
                    self.text(n),
                    describe(needle)
                ),
            )
        };
        match (haystack, needle) {
            (Value::Array(items), _) => Ok(items.iter().any(|item| json_eq(item, needle))),
            (Value::String(text), Value::String(part)) => Ok(text.contains(part.as_str())),
            (Value::String(_), _) => Err(needs_string("a substring")),
            (Value::Object(map), Value::String(key)) => Ok(map.contains_key(key)),
            (Value::Object(_), _) => Err(needs_string("a key")),
            (other, _) => Err(self.error(
                h.span,
                format!(
                    "{what} needs a list, a string or an object to look in; `{}` is {}",
                    self.text(h),
                    describe(other)
                ),
            )),
        }
    }

    fn call(&self, whole: &Expr, func: Func, args: &[Expr]) -> Result<Value, EvalError> {
        match (func, args) {
            (Func::Len, [x]) => {
                let count = match self.value(x)?.as_ref() {
                    Value::String(s) => s.chars().count(),
                    Value::Array(items) => items.len(),
                    Value::Object(map) => map.len(),
                    other => {
                        return Err(self.error(
                            x.span,
                            format!(
                                "`len` needs a string, a list or an object; `{}` is {}",
                                self.text(x),
                                describe(other)
                            ),
                        ));
                    }
                };
                Ok(Value::from(i64::try_from(count).unwrap_or(i64::MAX)))
            }
            (Func::Contains, [h, n]) => {
                let haystack = self.value(h)?;
                let needle = self.value(n)?;
                let found = self.contains("`contains`", (h, &haystack), (n, &needle))?;
                Ok(Value::Bool(found))
            }
            (Func::StartsWith | Func::EndsWith, [s, affix]) => {
                let text = self.string_arg(func, s)?;
                let affix = self.string_arg(func, affix)?;
                Ok(Value::Bool(match func {
                    Func::StartsWith => text.starts_with(affix.as_str()),
                    _ => text.ends_with(affix.as_str()),
                }))
            }
            // The parser guarantees the argument counts; this keeps eval total regardless.
            _ => Err(self.error(
                whole.span,
                format!("`{}` got the wrong number of arguments", func.name()),
            )),
        }
    }

    fn string_arg(&self, func: Func, arg: &Expr) -> Result<String, EvalError> {
        match self.value(arg)?.as_ref() {
            Value::String(s) => Ok(s.clone()),
            other => Err(self.error(
                arg.span,
                format!(
                    "`{}` needs two strings; `{}` is {}",
                    func.name(),
                    self.text(arg),
                    describe(other)
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::Condition;
    use super::*;

    fn context() -> Value {
        json!({
            "params": { "level": 3, "ratio": 0.5, "name": "blue-green", "flag": true, "tags": ["a", "b"] },
            "steps": {
                "health": { "status": "failed", "outputs": { "json": { "p95": 420, "overall": "GREEN" } } },
                "preflight-schema": { "status": "succeeded" }
            },
            "outputs": {
                "rows": [{ "n": 2 }, { "n": 5.5 }],
                "json": { "p95_ms": 120, "ok": "yes", "weird key": 1, "empty": {} },
                "big": 18446744073709551615u64,
                "nothing": null
            }
        })
    }

    fn eval(src: &str) -> Result<bool, EvalError> {
        Condition::parse(src).expect("parses").eval(&context())
    }

    fn yes(src: &str) {
        assert_eq!(eval(src), Ok(true), "{src}");
    }

    fn no(src: &str) {
        assert_eq!(eval(src), Ok(false), "{src}");
    }

    fn fails(src: &str) -> (Span, String) {
        let e = eval(src).expect_err("should fail");
        (e.span, e.message)
    }

    #[test]
    fn spec_examples() {
        yes(r#"steps.health.status == "failed" && params.level >= 3"#);
        no(r#"steps.health.status == "failed" && params.level > 3"#);
        yes(
            r#"steps.health.outputs.json.overall in ["GREEN", "YELLOW"] && outputs.json.p95_ms < 500"#,
        );
        yes(r#"steps.health.outputs.json["p95"] == 420 && outputs.rows[0].n == 2"#);
        yes("steps.preflight-schema.status == 'succeeded'");
    }

    #[test]
    fn literals_and_logic() {
        yes("true");
        no("false");
        yes("!false && (true || false)");
        no("!(true)");
        yes("false || false || true");
        no("true && true && false");
        yes("!!true");
    }

    #[test]
    fn equality() {
        yes("params.level == 3 && params.level == 3.0 && params.ratio == 0.5 && 1 != 2");
        yes("params.name == 'blue-green' && params.name != 'blue'");
        yes("outputs.nothing == null && params.level != null && null == null");
        // Different JSON types are unequal, never an error.
        no("params.level == '3'");
        yes("params.level != '3'");
        no("params.flag == 1");
        yes("params.tags == ['a', 'b'] && params.tags != ['b', 'a']");
        yes("outputs.rows[1] != outputs.rows[0] && outputs.rows[0] == outputs.rows[0]");
        yes("[1, [2.0, null]] == [1.0, [2, null]]");
        yes("outputs.json.empty == outputs.json.empty");
        yes("outputs.big == 18446744073709551615.0 || outputs.big > 9223372036854775807");
    }

    #[test]
    fn ordering() {
        yes(
            "params.level < 3.5 && params.level > 2.99 && params.level <= 3 && params.level >= 3.0",
        );
        no("params.level < 3 || params.level > 3");
        yes("outputs.rows[1].n > 5 && outputs.rows[1].n < 6");
        yes("'apple' < 'banana' && 'b' > 'abc' && 'Z' < 'a' && 'a' <= 'a'");
        yes("outputs.big > 9223372036854775807 && -1 < outputs.big");
        yes("-9223372036854775808 < -9223372036854775807");
        yes("9007199254740993 > 9007199254740992.0");
        yes("-2 < -1.5 && -1.5 < -1");
    }

    #[test]
    fn membership_and_functions() {
        yes("'a' in params.tags && !('c' in params.tags)");
        yes("'green' in params.name && !('red' in params.name)");
        yes("'p95_ms' in outputs.json && !('nope' in outputs.json)");
        yes("3.0 in [1, 2, 3] && null in [null]");
        yes(
            "len(params.name) == 10 && len(params.tags) == 2 && len(outputs.json) == 4 && len('héé') == 3",
        );
        yes("len([]) == 0 && len(outputs.json.empty) == 0");
        yes(
            "contains(params.tags, 'b') && contains(params.name, 'e-g') && contains(outputs.json, 'ok')",
        );
        no("contains(params.tags, 'z')");
        yes("starts_with(params.name, 'blue') && ends_with(params.name, 'green')");
        no("starts_with(params.name, 'green') || ends_with(params.name, 'blue')");
        yes("outputs.json['weird key'] == 1");
    }

    #[test]
    fn short_circuit_skips_errors() {
        yes("true || outputs.missing == 1");
        no("false && outputs.missing == 1");
        no("params.level > 5 && len(params.level) > 0");
        assert!(eval("false || outputs.missing == 1").is_err());
    }

    #[test]
    fn missing_paths_are_named_as_written() {
        assert_eq!(
            fails("outputs.json.overall == 'x'"),
            (
                Span::new(0, 20),
                "`outputs.json.overall` does not exist".into()
            )
        );
        assert_eq!(
            fails("outputs.json.overall.x == 1"),
            (
                Span::new(0, 20),
                "`outputs.json.overall` does not exist".into()
            )
        );
        assert_eq!(
            fails("nope.x"),
            (Span::new(0, 4), "`nope` does not exist".into())
        );
        assert_eq!(
            fails("outputs.json['no such']"),
            (
                Span::new(0, 23),
                "`outputs.json['no such']` does not exist".into()
            )
        );
        assert_eq!(
            fails("true && outputs.rows[2].n > 1"),
            (
                Span::new(8, 23),
                "`outputs.rows[2]` does not exist; `outputs.rows` has 2 items".into()
            )
        );
        assert_eq!(
            fails("outputs.rows.n"),
            (Span::new(0, 14), "`outputs.rows.n` does not exist; `outputs.rows` is a list of 2 items, not an object".into())
        );
        assert_eq!(
            fails("params.name[0] == 'b'"),
            (Span::new(0, 14), "`params.name[0]` does not exist; `params.name` is a string (\"blue-green\"), not a list".into())
        );
        assert_eq!(
            fails("outputs.nothing.x"),
            (
                Span::new(0, 17),
                "`outputs.nothing.x` does not exist; `outputs.nothing` is null, not an object"
                    .into()
            )
        );
        assert_eq!(
            fails("outputs.json.ok[0]"),
            (Span::new(0, 18), "`outputs.json.ok[0]` does not exist; `outputs.json.ok` is a string (\"yes\"), not a list".into())
        );
        let not_an_object = Condition::parse("a == 1")
            .expect("parses")
            .eval(&json!([1]));
        assert_eq!(
            not_an_object,
            Err(EvalError {
                span: Span::new(0, 1),
                message: "`a` does not exist".into()
            })
        );
    }

    #[test]
    fn non_boolean_results_and_operands() {
        assert_eq!(
            fails("params.level"),
            (
                Span::new(0, 12),
                "a condition must be true or false, this is a number (3)".into()
            )
        );
        assert_eq!(
            fails("outputs.json"),
            (
                Span::new(0, 12),
                "a condition must be true or false, this is an object with 4 keys".into()
            )
        );
        assert_eq!(
            fails("outputs.json.ok && true"),
            (
                Span::new(0, 15),
                "`&&` needs true or false on both sides; `outputs.json.ok` is a string (\"yes\")"
                    .into()
            )
        );
        assert_eq!(
            fails("false || outputs.nothing"),
            (
                Span::new(9, 24),
                "`||` needs true or false on both sides; `outputs.nothing` is null".into()
            )
        );
        assert_eq!(
            fails("!outputs.rows"),
            (
                Span::new(1, 13),
                "`!` needs true or false; `outputs.rows` is a list of 2 items".into()
            )
        );
        assert_eq!(
            fails("len(params.tags)"),
            (
                Span::new(0, 16),
                "a condition must be true or false, this is a number (2)".into()
            )
        );
        let long = format!("'{}' && true", "x".repeat(60));
        assert!(
            fails(&long)
                .1
                .ends_with(&format!("is a string (\"{}…\")", "x".repeat(39)))
        );
    }

    #[test]
    fn type_errors_at_run_time() {
        assert_eq!(
            fails("params.name < 3"),
            (Span::new(0, 15), "`<` needs two numbers or two strings; `params.name` is a string (\"blue-green\") and `3` is a number (3)".into())
        );
        assert_eq!(
            fails("params.flag >= params.flag"),
            (Span::new(0, 26), "`>=` needs two numbers or two strings; `params.flag` is a boolean (true) and `params.flag` is a boolean (true)".into())
        );
        assert_eq!(
            fails("1 in params.name"),
            (Span::new(0, 1), "`in` looks for a substring in `params.name`, so it needs a string; `1` is a number (1)".into())
        );
        assert_eq!(
            fails("1 in outputs.json"),
            (
                Span::new(0, 1),
                "`in` looks for a key in `outputs.json`, so it needs a string; `1` is a number (1)"
                    .into()
            )
        );
        assert_eq!(
            fails("'a' in params.level"),
            (Span::new(7, 19), "`in` needs a list, a string or an object to look in; `params.level` is a number (3)".into())
        );
        assert_eq!(
            fails("contains(null, 'a')"),
            (
                Span::new(9, 13),
                "`contains` needs a list, a string or an object to look in; `null` is null".into()
            )
        );
        assert_eq!(
            fails("len(params.level) > 0"),
            (
                Span::new(4, 16),
                "`len` needs a string, a list or an object; `params.level` is a number (3)".into()
            )
        );
        assert_eq!(
            fails("starts_with(params.name, params.tags)"),
            (
                Span::new(25, 36),
                "`starts_with` needs two strings; `params.tags` is a list of 2 items".into()
            )
        );
        assert_eq!(
            fails("ends_with(1, 'a')").1,
            "`ends_with` needs two strings; `1` is a number (1)"
        );
    }

    #[test]
    fn numbers_compare_exactly() {
        let n = |v: Value| match v {
            Value::Number(n) => n,
            _ => unreachable!(),
        };
        assert_eq!(
            compare_numbers(&n(json!(3)), &n(json!(3.0))),
            Some(Ordering::Equal)
        );
        assert_eq!(
            compare_numbers(&n(json!(3)), &n(json!(3.5))),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare_numbers(&n(json!(3.5)), &n(json!(3))),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare_numbers(&n(json!(-3)), &n(json!(-2.5))),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare_numbers(&n(json!(u64::MAX)), &n(json!(i64::MIN))),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare_numbers(&n(json!(u64::MAX)), &n(json!(1e300))),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare_numbers(&n(json!(i64::MIN)), &n(json!(-1e300))),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare_numbers(&n(json!(0.1)), &n(json!(0.2))),
            Some(Ordering::Less)
        );
    }

    #[test]
    fn deep_values_do_not_overflow_the_stack() {
        let deep = || {
            // Built by hand: `json!` would serialize the inner value, recursively.
            let mut value = json!(1);
            for _ in 0..100_000 {
                value = Value::Array(vec![value]);
            }
            value
        };
        let mut map = serde_json::Map::new();
        map.insert("a".into(), deep());
        map.insert("b".into(), deep());
        map.insert("c".into(), Value::Array(vec![deep()]));
        let context = Value::Object(map);
        let condition = Condition::parse("a == b && a in c && len(a) == 1").expect("parses");
        assert_eq!(condition.eval(&context), Ok(true));
        // serde_json drops nested values recursively; leak this one rather than overflow
        // the test thread's stack while dropping it.
        std::mem::forget(context);
    }
}
