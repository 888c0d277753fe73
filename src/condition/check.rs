//! Static type checking of a parsed condition against the types the caller gives for paths.
//!
//! The checker reports every problem it finds rather than the first, and after an error it
//! carries on with `Type::Any` for the offending part, so that one mistake (an unknown path,
//! say) does not cascade into further messages about the expressions around it.

use super::parser::{CompareOp, Expr, Func, Kind};
use super::{Error, Resolve, Type, did_you_mean, list_values, snippet};

/// Checks `expr` (parsed from `src`) and returns every error found.
pub(super) fn check(src: &str, expr: &Expr, resolve: &Resolve<'_>) -> Vec<Error> {
    let mut checker = Checker {
        src,
        resolve,
        errors: Vec::new(),
    };
    let ty = checker.ty(expr);
    if !matches!(ty, Type::Bool | Type::Any) {
        let noun = match &ty {
            Type::OneOf(_) => "a string".to_owned(),
            other => other.to_string(),
        };
        let error = Error::new(
            expr.span,
            format!("a condition must be true or false, this is {noun}"),
        );
        checker.errors.push(match checker.to_bool_hint(expr, &ty) {
            Some(hint) => error.hint(hint),
            None => error,
        });
    }
    checker.errors
}

struct Checker<'a> {
    src: &'a str,
    resolve: &'a Resolve<'a>,
    errors: Vec<Error>,
}

/// Whether a value of type `a` can ever equal one of type `b`.
fn compatible(a: &Type, b: &Type) -> bool {
    match (a, b) {
        (Type::Any | Type::Null, _) | (_, Type::Any | Type::Null) => true,
        (Type::Int | Type::Number, Type::Int | Type::Number) => true,
        (Type::Bool, Type::Bool) => true,
        (Type::String | Type::OneOf(_), Type::String | Type::OneOf(_)) => true,
        (Type::List(a), Type::List(b)) => compatible(a, b),
        _ => false,
    }
}

/// The type of a list holding values of types `a` and `b`; `Any` when they have nothing in
/// common (a mixed list is allowed, it just cannot be checked).
fn join(a: Type, b: Type) -> Type {
    match (a, b) {
        (Type::Null, t) | (t, Type::Null) => t,
        (Type::Any, _) | (_, Type::Any) => Type::Any,
        (a, b) if a == b => a,
        (Type::Int | Type::Number, Type::Int | Type::Number) => Type::Number,
        (Type::String | Type::OneOf(_), Type::String | Type::OneOf(_)) => Type::String,
        (Type::List(a), Type::List(b)) => Type::List(Box::new(join(*a, *b))),
        _ => Type::Any,
    }
}

fn is_stringy(t: &Type) -> bool {
    matches!(t, Type::String | Type::OneOf(_) | Type::Any)
}

/// Which kind of ordering a type supports: `Some(true)` numeric, `Some(false)` text, `None`
/// for `Any` (either); `Err` when it cannot be ordered at all.
fn order_family(t: &Type) -> Result<Option<bool>, ()> {
    match t {
        Type::Any => Ok(None),
        Type::Int | Type::Number => Ok(Some(true)),
        Type::String | Type::OneOf(_) => Ok(Some(false)),
        Type::Bool | Type::List(_) | Type::Null => Err(()),
    }
}

impl Checker<'_> {
    fn text(&self, expr: &Expr) -> String {
        snippet(self.src, expr.span)
    }

    /// An operand as messages name it: "3, a number" for a literal,
    /// "`params.level` (a number)" for anything else.
    fn operand(&self, expr: &Expr, ty: &Type) -> String {
        match expr.kind {
            Kind::Null => "null".to_owned(),
            _ if expr.kind.is_scalar_literal() => format!("{}, {ty}", self.text(expr)),
            _ => format!("`{}` ({ty})", self.text(expr)),
        }
    }

    fn push(&mut self, error: Error) {
        self.errors.push(error);
    }

    /// How to turn a non-boolean `expr` into a condition, when there is an obvious way.
    fn to_bool_hint(&self, expr: &Expr, ty: &Type) -> Option<String> {
        let text = self.text(expr);
        match ty {
            Type::OneOf(values) => {
                let example = values.first().map_or("...", String::as_str);
                Some(format!("compare it, e.g. `{text} == {example:?}`"))
            }
            Type::String => Some(format!("compare it, e.g. `{text} == \"...\"`")),
            Type::Int | Type::Number => Some(format!("compare it, e.g. `{text} > 0`")),
            Type::List(_) => Some(format!("e.g. `len({text}) > 0`")),
            _ => None,
        }
    }

    /// Reports `expr` unless it is a boolean; `what` says who needs one ("`&&` needs ...").
    fn need_bool(&mut self, what: &str, expr: &Expr, ty: &Type) {
        if matches!(ty, Type::Bool | Type::Any) {
            return;
        }
        let error = Error::new(expr.span, format!("{what}; `{}` is {ty}", self.text(expr)));
        let hint = self.to_bool_hint(expr, ty);
        self.push(match hint {
            Some(hint) => error.hint(hint),
            None => error,
        });
    }

    /// Reports `literal` if it is a string literal that `subject` (of type `OneOf(values)`)
    /// can never equal.
    fn need_one_of(&mut self, subject: &Expr, values: &[String], literal: &Expr) {
        let Kind::Str(text) = &literal.kind else {
            return;
        };
        if values.contains(text) {
            return;
        }
        let message = format!(
            "`{}` is not a possible value of `{}`",
            self.text(literal),
            self.text(subject)
        );
        let hint = match did_you_mean(text, values.iter().map(String::as_str)) {
            Some(close) => format!("did you mean {close:?}? one of: {}", list_values(values)),
            None => format!("one of: {}", list_values(values)),
        };
        self.push(Error::new(literal.span, message).hint(hint));
    }

    /// The type of `expr`, reporting what is wrong inside it. Recursion is bounded by the
    /// parser's depth limit.
    fn ty(&mut self, expr: &Expr) -> Type {
        match &expr.kind {
            Kind::Null => Type::Null,
            Kind::Bool(_) => Type::Bool,
            Kind::Int(_) => Type::Int,
            Kind::Float(_) => Type::Number,
            Kind::Str(_) => Type::String,
            Kind::List(items) => {
                let mut item_ty: Option<Type> = None;
                for item in items {
                    let ty = self.ty(item);
                    item_ty = Some(match item_ty {
                        None => ty,
                        Some(prev) => join(prev, ty),
                    });
                }
                Type::List(Box::new(item_ty.unwrap_or(Type::Any)))
            }
            Kind::Path(path) => match (self.resolve)(&path.to_ref(expr.span)) {
                Ok(ty) => ty,
                Err((message, hint)) => {
                    self.push(Error {
                        span: expr.span,
                        message,
                        hint,
                    });
                    Type::Any
                }
            },
            Kind::Not(inner) => {
                let ty = self.ty(inner);
                self.need_bool("`!` needs true or false", inner, &ty);
                Type::Bool
            }
            Kind::And(items) | Kind::Or(items) => {
                let what = match expr.kind {
                    Kind::And(_) => "`&&` needs true or false on both sides",
                    _ => "`||` needs true or false on both sides",
                };
                for item in items {
                    let ty = self.ty(item);
                    self.need_bool(what, item, &ty);
                }
                Type::Bool
            }
            Kind::Compare { op, left, right } => {
                let left_ty = self.ty(left);
                let right_ty = self.ty(right);
                self.compare(expr, *op, (left, &left_ty), (right, &right_ty));
                Type::Bool
            }
            Kind::Call(func, args) => self.call(expr, *func, args),
        }
    }

    fn compare(
        &mut self,
        whole: &Expr,
        op: CompareOp,
        left: (&Expr, &Type),
        right: (&Expr, &Type),
    ) {
        let ((l, lt), (r, rt)) = (left, right);
        match op {
            CompareOp::Eq | CompareOp::Ne => {
                if !compatible(lt, rt) {
                    let error = self.cannot_compare(whole, left, right);
                    self.push(match quote_hint(l, lt, r, rt) {
                        Some(hint) => error.hint(hint),
                        None => error,
                    });
                    return;
                }
                if let Type::OneOf(values) = lt {
                    self.need_one_of(l, values, r);
                }
                if let Type::OneOf(values) = rt {
                    self.need_one_of(r, values, l);
                }
            }
            CompareOp::Lt | CompareOp::Le | CompareOp::Gt | CompareOp::Ge => {
                let symbol = op.symbol();
                let (lf, rf) = match (order_family(lt), order_family(rt)) {
                    (Ok(lf), Ok(rf)) => (lf, rf),
                    (Err(()), _) => return self.cannot_order(symbol, l, lt),
                    (_, Err(())) => return self.cannot_order(symbol, r, rt),
                };
                if let (Some(lf), Some(rf)) = (lf, rf)
                    && lf != rf
                {
                    let error = self.cannot_compare(whole, left, right);
                    let hint = quote_hint(l, lt, r, rt)
                        .unwrap_or_else(|| format!("`{symbol}` needs two numbers or two strings"));
                    self.push(error.hint(hint));
                }
            }
            CompareOp::In => self.membership(whole, "`in`", left, right),
        }
    }

    fn cannot_compare(
        &self,
        whole: &Expr,
        (l, lt): (&Expr, &Type),
        (r, rt): (&Expr, &Type),
    ) -> Error {
        Error::new(
            whole.span,
            format!(
                "cannot compare {} with {}",
                self.operand(l, lt),
                self.operand(r, rt)
            ),
        )
    }

    fn cannot_order(&mut self, symbol: &str, expr: &Expr, ty: &Type) {
        let error = Error::new(
            expr.span,
            format!(
                "cannot order {}; `{symbol}` needs numbers or strings",
                self.operand(expr, ty)
            ),
        );
        self.push(error);
    }

    /// `needle in haystack` or `contains(haystack, needle)`.
    fn membership(
        &mut self,
        whole: &Expr,
        what: &str,
        needle: (&Expr, &Type),
        haystack: (&Expr, &Type),
    ) {
        let ((n, nt), (h, ht)) = (needle, haystack);
        match ht {
            Type::Any => {}
            Type::List(item) => {
                if !compatible(nt, item) {
                    let message = format!(
                        "cannot look for {} in {}",
                        self.operand(n, nt),
                        self.operand(h, ht)
                    );
                    self.push(Error::new(whole.span, message));
                    return;
                }
                if let (Type::OneOf(values), Kind::List(items)) = (nt, &h.kind) {
                    for item in items {
                        self.need_one_of(n, values, item);
                    }
                }
                if let Type::OneOf(values) = item.as_ref() {
                    self.need_one_of(h, values, n);
                }
            }
            Type::String | Type::OneOf(_) => {
                if !is_stringy(nt) {
                    let message = format!(
                        "cannot look for {} in {}",
                        self.operand(n, nt),
                        self.operand(h, ht)
                    );
                    self.push(Error::new(whole.span, message).hint(format!(
                        "in a string, {what} looks for a substring, so it needs a string to look for"
                    )));
                }
            }
            Type::Bool | Type::Int | Type::Number | Type::Null => {
                let message = format!(
                    "{what} needs a list or a string to look in, not {}",
                    self.operand(h, ht)
                );
                self.push(Error::new(h.span, message));
            }
        }
    }

    fn call(&mut self, whole: &Expr, func: Func, args: &[Expr]) -> Type {
        let types: Vec<Type> = args.iter().map(|arg| self.ty(arg)).collect();
        match (func, args, types.as_slice()) {
            (Func::Len, [x], [xt]) => {
                if !matches!(
                    xt,
                    Type::String | Type::OneOf(_) | Type::List(_) | Type::Any
                ) {
                    let message =
                        format!("`len` needs a string or a list; `{}` is {xt}", self.text(x));
                    self.push(Error::new(x.span, message));
                }
                return Type::Int;
            }
            (Func::Contains, [h, n], [ht, nt]) => {
                self.membership(whole, "`contains`", (n, nt), (h, ht));
            }
            (Func::StartsWith | Func::EndsWith, _, _) => {
                for (arg, ty) in args.iter().zip(&types) {
                    if !is_stringy(ty) {
                        let message = format!(
                            "`{}` needs strings; `{}` is {ty}",
                            func.name(),
                            self.text(arg)
                        );
                        self.push(Error::new(arg.span, message));
                    }
                }
            }
            // The parser guarantees the argument counts.
            _ => {}
        }
        Type::Bool
    }
}

/// A hint for comparing text with a number or boolean written without quotes (or a number
/// written with them), the usual cause of such a mismatch.
fn quote_hint(l: &Expr, lt: &Type, r: &Expr, rt: &Type) -> Option<String> {
    let one_way = |text_side: &Type, literal: &Expr| -> Option<String> {
        if !matches!(text_side, Type::String | Type::OneOf(_)) {
            return None;
        }
        let text = match &literal.kind {
            Kind::Int(i) => i.to_string(),
            Kind::Float(f) => f.to_string(),
            Kind::Bool(b) => b.to_string(),
            _ => return None,
        };
        Some(format!("to compare as text, quote it: \"{text}\""))
    };
    let numeric = |number_side: &Type, literal: &Expr| -> Option<String> {
        if !matches!(number_side, Type::Int | Type::Number) {
            return None;
        }
        match &literal.kind {
            // Only plain digits: "inf" and "NaN" parse as floats but are not what was meant.
            Kind::Str(text)
                if text.trim().parse::<f64>().is_ok()
                    && text
                        .trim()
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '.' || c == '-') =>
            {
                Some(format!(
                    "to compare as a number, remove the quotes: {}",
                    text.trim()
                ))
            }
            _ => None,
        }
    };
    one_way(lt, r)
        .or_else(|| one_way(rt, l))
        .or_else(|| numeric(lt, r))
        .or_else(|| numeric(rt, l))
}

#[cfg(test)]
mod tests {
    use super::super::{Condition, PathRef, Span};
    use super::*;

    const STATUSES: [&str; 5] = ["succeeded", "failed", "warned", "skipped", "cancelled"];

    fn statuses() -> Type {
        Type::OneOf(STATUSES.iter().map(|s| s.to_string()).collect())
    }

    /// A scope like the compiler's: a few typed params, step statuses, untyped outputs.
    fn resolve(path: &PathRef) -> Result<Type, (String, Option<String>)> {
        let dotted = path.dotted();
        Ok(match dotted.as_str() {
            "steps.health.status" | "steps.build.status" => statuses(),
            "params.level" => Type::Int,
            "params.ratio" => Type::Number,
            "params.name" => Type::String,
            "params.flag" => Type::Bool,
            "params.tags" => Type::List(Box::new(Type::String)),
            "params.ports" => Type::List(Box::new(Type::Int)),
            "params.statuses" => Type::List(Box::new(statuses())),
            "params.nothing" => Type::Null,
            d if d == "outputs" || d.starts_with("outputs.") || d.starts_with("outputs[") => {
                Type::Any
            }
            d if d.starts_with("secrets.") => {
                return Err((
                    "secrets cannot be used in conditions".into(),
                    Some("check the secret in a step instead".into()),
                ));
            }
            other => return Err((format!("unknown path `{other}`"), None)),
        })
    }

    fn errors(src: &str) -> Vec<Error> {
        Condition::parse(src).expect("parses").check(&resolve)
    }

    /// (span, message) of every error.
    fn messages(src: &str) -> Vec<(Span, String)> {
        errors(src)
            .into_iter()
            .map(|e| (e.span, e.message))
            .collect()
    }

    fn one(src: &str) -> Error {
        let mut errors = errors(src);
        assert_eq!(errors.len(), 1, "{src}: {errors:?}");
        errors.remove(0)
    }

    fn ok(src: &str) {
        assert_eq!(errors(src), [], "{src}");
    }

    #[test]
    fn well_typed_conditions() {
        ok(r#"steps.health.status == "failed" && params.level >= 3"#);
        ok(r#"outputs.json.overall in ["GREEN", "YELLOW"] && outputs.json.p95_ms < 500"#);
        ok("params.level == 1.5 || params.ratio < 2 || params.ratio != params.level");
        ok("params.name < 'm' && steps.health.status >= params.name");
        ok("params.flag && !params.flag || (params.flag == false)");
        ok("params.name in params.tags && 'x' in params.name && params.level in [1, 2.5]");
        ok("params.level in params.ports && 3 in params.ports && !(null in params.ports)");
        ok(r#"steps.health.status in ["succeeded", "warned"] && "failed" in params.statuses"#);
        ok("steps.health.status in 'succeeded-or-warned'");
        ok(
            "params.nothing == null && params.level != null && null == params.tags && params.flag != null",
        );
        ok(
            "len(params.name) > 0 && len(params.tags) == 2 && len(outputs.x) >= 1 && len(steps.health.status) > 1",
        );
        ok("contains(params.tags, 'a') && contains(params.name, 'a') && contains(outputs, 1)");
        ok("starts_with(params.name, 'a') && ends_with(steps.health.status, 'ed')");
        ok("outputs.ok && outputs.x == 1 && outputs.y < 'a' && outputs.z in outputs.w");
        ok("outputs.rows[0]['n'] > 2");
        ok("[1, 2] == [1, 2.5] && [['a'], ['b']] != [] && [null, 'a'] == params.tags");
        ok("outputs.ok");
        ok("true");
    }

    #[test]
    fn one_of_rejects_unknown_literals_with_did_you_mean() {
        let e = one(r#"steps.health.status == "sucess""#);
        assert_eq!(e.span, Span::new(23, 31));
        assert_eq!(
            e.message,
            r#"`"sucess"` is not a possible value of `steps.health.status`"#
        );
        assert_eq!(
            e.hint.as_deref(),
            Some(
                r#"did you mean "succeeded"? one of: succeeded, failed, warned, skipped, cancelled"#
            )
        );
        let e = one("'bogus' != steps.health.status");
        assert_eq!(
            (e.span, e.message.as_str()),
            (
                Span::new(0, 7),
                "`'bogus'` is not a possible value of `steps.health.status`"
            )
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("one of: succeeded, failed, warned, skipped, cancelled")
        );
        assert_eq!(
            messages(r#"steps.health.status in ["succeeded", "Failed", "nope"]"#),
            [
                (
                    Span::new(37, 45),
                    r#"`"Failed"` is not a possible value of `steps.health.status`"#.into()
                ),
                (
                    Span::new(47, 53),
                    r#"`"nope"` is not a possible value of `steps.health.status`"#.into()
                ),
            ]
        );
        assert_eq!(
            one(r#"steps.health.status in ["succeeded", "Failed"]"#)
                .hint
                .as_deref(),
            Some(r#"did you mean "failed"? one of: succeeded, failed, warned, skipped, cancelled"#)
        );
        assert_eq!(
            messages("'bad' in params.statuses"),
            [(
                Span::new(0, 5),
                "`'bad'` is not a possible value of `params.statuses`".into()
            )]
        );
    }

    #[test]
    fn one_of_rejects_non_strings() {
        let e = one("steps.health.status == 3");
        assert_eq!(e.span, Span::new(0, 24));
        assert_eq!(
            e.message,
            "cannot compare `steps.health.status` (one of succeeded, failed, warned, skipped, cancelled) with 3, a number"
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("to compare as text, quote it: \"3\"")
        );
        assert_eq!(
            one("true != steps.build.status").message,
            "cannot compare true, a boolean with `steps.build.status` (one of succeeded, failed, warned, skipped, cancelled)"
        );
    }

    #[test]
    fn equality_needs_compatible_types() {
        let e = one("params.level == 'high'");
        assert_eq!(
            e.message,
            "cannot compare `params.level` (a number) with 'high', a string"
        );
        assert_eq!(e.hint, None);
        assert_eq!(one("params.level == 'inf'").hint, None);
        assert_eq!(
            one("params.level == '3'").hint.as_deref(),
            Some("to compare as a number, remove the quotes: 3")
        );
        assert_eq!(
            one("params.flag == 1").message,
            "cannot compare `params.flag` (a boolean) with 1, a number"
        );
        assert_eq!(
            one("params.tags == 'a'").message,
            "cannot compare `params.tags` (a list of strings) with 'a', a string"
        );
        assert_eq!(
            one("params.tags != params.ports").message,
            "cannot compare `params.tags` (a list of strings) with `params.ports` (a list of numbers)"
        );
        assert_eq!(
            one("1 == 'a'").message,
            "cannot compare 1, a number with 'a', a string"
        );
    }

    #[test]
    fn ordering_needs_two_numbers_or_two_strings() {
        let e = one("params.level < 'a'");
        assert_eq!(
            (e.span, e.message.as_str()),
            (
                Span::new(0, 18),
                "cannot compare `params.level` (a number) with 'a', a string"
            )
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("`<` needs two numbers or two strings")
        );
        let e = one("params.flag >= 1");
        assert_eq!(
            (e.span, e.message.as_str()),
            (
                Span::new(0, 11),
                "cannot order `params.flag` (a boolean); `>=` needs numbers or strings"
            )
        );
        assert_eq!(
            one("1 > null").message,
            "cannot order null; `>` needs numbers or strings"
        );
        assert_eq!(
            one("params.tags <= 'a'").message,
            "cannot order `params.tags` (a list of strings); `<=` needs numbers or strings"
        );
        assert_eq!(
            one("outputs.x < true").message,
            "cannot order true, a boolean; `<` needs numbers or strings"
        );
        assert_eq!(
            one("'10' > params.level").hint.as_deref(),
            Some("to compare as a number, remove the quotes: 10")
        );
    }

    #[test]
    fn logic_needs_booleans() {
        let e = one("params.level && true");
        assert_eq!(
            (e.span, e.message.as_str()),
            (
                Span::new(0, 12),
                "`&&` needs true or false on both sides; `params.level` is a number"
            )
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("compare it, e.g. `params.level > 0`")
        );
        assert_eq!(
            messages("true || params.name || params.tags"),
            [
                (
                    Span::new(8, 19),
                    "`||` needs true or false on both sides; `params.name` is a string".into()
                ),
                (
                    Span::new(23, 34),
                    "`||` needs true or false on both sides; `params.tags` is a list of strings"
                        .into()
                ),
            ]
        );
        let e = one("!steps.health.status");
        assert_eq!(
            (e.span, e.message.as_str()),
            (
                Span::new(1, 20),
                "`!` needs true or false; `steps.health.status` is one of succeeded, failed, warned, skipped, cancelled"
            )
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("compare it, e.g. `steps.health.status == \"succeeded\"`")
        );
        assert_eq!(
            one("!null").message,
            "`!` needs true or false; `null` is null"
        );
    }

    #[test]
    fn membership() {
        assert_eq!(
            one("params.level in params.tags").message,
            "cannot look for `params.level` (a number) in `params.tags` (a list of strings)"
        );
        assert_eq!(
            one("'a' in [1, 2]").message,
            "cannot look for 'a', a string in `[1, 2]` (a list of numbers)"
        );
        let e = one("1 in params.name");
        assert_eq!(
            e.message,
            "cannot look for 1, a number in `params.name` (a string)"
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("in a string, `in` looks for a substring, so it needs a string to look for")
        );
        let e = one("'a' in params.level");
        assert_eq!(
            (e.span, e.message.as_str()),
            (
                Span::new(7, 19),
                "`in` needs a list or a string to look in, not `params.level` (a number)"
            )
        );
        assert_eq!(
            one("'a' in null").message,
            "`in` needs a list or a string to look in, not null"
        );
    }

    #[test]
    fn functions() {
        let e = one("len(params.level) > 1");
        assert_eq!(
            (e.span, e.message.as_str()),
            (
                Span::new(4, 16),
                "`len` needs a string or a list; `params.level` is a number"
            )
        );
        assert_eq!(
            one("len(params.name) == 'a'").message,
            "cannot compare `len(params.name)` (a number) with 'a', a string"
        );
        assert_eq!(
            one("contains(params.level, 1)").message,
            "`contains` needs a list or a string to look in, not `params.level` (a number)"
        );
        assert_eq!(
            one("contains(params.tags, 1)").message,
            "cannot look for 1, a number in `params.tags` (a list of strings)"
        );
        assert_eq!(
            one("contains(steps.health.status, 1)").hint.as_deref(),
            Some("in a string, `contains` looks for a substring, so it needs a string to look for")
        );
        assert_eq!(
            messages("starts_with(params.level, 1) || ends_with('a', params.name)"),
            [
                (
                    Span::new(12, 24),
                    "`starts_with` needs strings; `params.level` is a number".into()
                ),
                (
                    Span::new(26, 27),
                    "`starts_with` needs strings; `1` is a number".into()
                ),
            ]
        );
        assert_eq!(
            messages(r#"contains(params.statuses, "nope")"#),
            [(
                Span::new(26, 32),
                r#"`"nope"` is not a possible value of `params.statuses`"#.into()
            )]
        );
    }

    #[test]
    fn the_whole_condition_must_be_a_boolean() {
        let e = one("params.level");
        assert_eq!(
            (e.span, e.message.as_str()),
            (
                Span::new(0, 12),
                "a condition must be true or false, this is a number"
            )
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("compare it, e.g. `params.level > 0`")
        );
        assert_eq!(
            one("'yes'").message,
            "a condition must be true or false, this is a string"
        );
        assert_eq!(
            one("steps.health.status").message,
            "a condition must be true or false, this is a string"
        );
        let e = one("[1]");
        assert_eq!(
            e.message,
            "a condition must be true or false, this is a list of numbers"
        );
        assert_eq!(e.hint.as_deref(), Some("e.g. `len([1]) > 0`"));
        assert_eq!(
            one("(len(params.tags))").message,
            "a condition must be true or false, this is a number"
        );
        assert_eq!(
            one("null").message,
            "a condition must be true or false, this is null"
        );
        assert_eq!(one("null").hint, None);
    }

    #[test]
    fn path_errors_are_reported_at_the_path_and_do_not_cascade() {
        let e = one("secrets.TOKEN == 'x'");
        assert_eq!(
            e,
            Error {
                span: Span::new(0, 13),
                message: "secrets cannot be used in conditions".into(),
                hint: Some("check the secret in a step instead".into()),
            }
        );
        // An unknown path is `Any` afterwards: no complaint that it is not a boolean.
        assert_eq!(
            messages("params.nope"),
            [(Span::new(0, 11), "unknown path `params.nope`".into())]
        );
        assert_eq!(
            messages("params.nope < 3 && params.level == 'x' && !params.also_nope"),
            [
                (Span::new(0, 11), "unknown path `params.nope`".into()),
                (
                    Span::new(19, 38),
                    "cannot compare `params.level` (a number) with 'x', a string".into()
                ),
                (Span::new(43, 59), "unknown path `params.also_nope`".into()),
            ]
        );
    }

    #[test]
    fn every_error_is_reported() {
        let found = messages(
            "steps.health.status == 'sucess' || params.level < 'a' || len(params.flag) > 0 || params.name",
        );
        assert_eq!(found.len(), 4, "{found:?}");
        assert_eq!(found[0].0, Span::new(23, 31));
        assert_eq!(found[1].0, Span::new(35, 53));
        assert_eq!(found[2].0, Span::new(61, 72));
        assert_eq!(found[3].0, Span::new(81, 92));
    }

    #[test]
    fn resolve_sees_every_path_with_its_span() {
        let condition = Condition::parse("a.b[0] == c['d'] && len(e) > 0").expect("parses");
        let seen = std::cell::RefCell::new(Vec::new());
        let errors = condition.check(&|path: &PathRef| {
            seen.borrow_mut().push((path.dotted(), path.span));
            Ok(Type::Any)
        });
        assert_eq!(errors, []);
        assert_eq!(
            seen.into_inner(),
            [
                ("a.b[0]".to_owned(), Span::new(0, 6)),
                (r#"c["d"]"#.to_owned(), Span::new(10, 16)),
                ("e".to_owned(), Span::new(24, 25)),
            ]
        );
    }

    #[test]
    fn list_literal_types() {
        assert_eq!(join(Type::Int, Type::Number), Type::Number);
        assert_eq!(join(Type::Null, Type::String), Type::String);
        assert_eq!(join(statuses(), Type::String), Type::String);
        assert_eq!(join(statuses(), statuses()), statuses());
        assert_eq!(join(Type::Int, Type::String), Type::Any);
        assert_eq!(
            join(
                Type::List(Box::new(Type::Int)),
                Type::List(Box::new(Type::Number))
            ),
            Type::List(Box::new(Type::Number))
        );
        // A mixed list is unchecked rather than an error.
        ok("params.level in [1, 'a'] && 'x' in [1, 'a']");
    }
}
