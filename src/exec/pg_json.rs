//! PostgreSQL values, as sqlx receives them (the binary wire format), turned into JSON.
//!
//! Decoding here rather than through sqlx's typed `Decode` keeps the set of types explicit
//! and needs none of sqlx's optional type features (chrono, uuid, bigdecimal), which would
//! change the dependency set the store shares.

use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat};
use serde_json::{Number, Value};
use sqlx::TypeInfo;
use sqlx::postgres::{PgTypeInfo, PgTypeKind};

/// Why a value could not be turned into JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undecodable {
    /// A type this module has no JSON form for.
    Type,
    /// The bytes are not what the type's binary form should be.
    Malformed,
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
const PG_EPOCH_US: i64 = 946_684_800_000_000;
/// Days from 0001-01-01 (chrono's day 1) to 2000-01-01.
const PG_EPOCH_DAYS_FROM_CE: i32 = 730_120;
/// Array nesting PostgreSQL allows (MAXDIM).
const MAX_DIMS: usize = 6;

/// The JSON form of one non-NULL value of type `ty`.
pub fn decode(ty: &PgTypeInfo, bytes: &[u8]) -> Result<Value, Undecodable> {
    // Domains over domains are finite: the catalog cannot hold a cycle.
    let mut ty = ty;
    while let PgTypeKind::Domain(base) = ty.kind() {
        ty = base;
    }
    match ty.kind() {
        PgTypeKind::Enum(_) => return text(bytes),
        PgTypeKind::Array(elem) => return array(elem, bytes),
        _ => {}
    }
    let Some(oid) = ty.oid() else {
        return Err(Undecodable::Type);
    };
    match oid.0 {
        16 => Ok(Value::Bool(fixed::<1>(bytes)?[0] != 0)),
        17 => Ok(Value::String(format!("\\x{}", hex(bytes)))),
        18 => Ok(Value::String(
            String::from_utf8_lossy(&fixed::<1>(bytes)?[..]).into_owned(),
        )),
        // name, text, xml, unknown, bpchar, varchar: the binary form is the text.
        19 | 25 | 142 | 705 | 1042 | 1043 => text(bytes),
        20 => Ok(i64::from_be_bytes(fixed(bytes)?).into()),
        21 => Ok(i16::from_be_bytes(fixed(bytes)?).into()),
        23 => Ok(i32::from_be_bytes(fixed(bytes)?).into()),
        26 => Ok(u32::from_be_bytes(fixed(bytes)?).into()),
        114 => json(bytes),
        700 => Ok(float(f64::from(f32::from_be_bytes(fixed(bytes)?)))),
        701 => Ok(float(f64::from_be_bytes(fixed(bytes)?))),
        1082 => date(i32::from_be_bytes(fixed(bytes)?)),
        1083 => time(i64::from_be_bytes(fixed(bytes)?)),
        1114 => timestamp(i64::from_be_bytes(fixed(bytes)?), false),
        1184 => timestamp(i64::from_be_bytes(fixed(bytes)?), true),
        1700 => numeric(bytes),
        2950 => uuid(fixed(bytes)?),
        3802 => match bytes.split_first() {
            Some((1, rest)) => json(rest),
            _ => Err(Undecodable::Malformed),
        },
        4072 => match bytes.split_first() {
            Some((1, rest)) => text(rest),
            _ => Err(Undecodable::Malformed),
        },
        _ if ty.name() == "citext" => text(bytes),
        _ => Err(Undecodable::Type),
    }
}

fn fixed<const N: usize>(bytes: &[u8]) -> Result<[u8; N], Undecodable> {
    bytes.try_into().map_err(|_| Undecodable::Malformed)
}

fn text(bytes: &[u8]) -> Result<Value, Undecodable> {
    std::str::from_utf8(bytes)
        .map(|s| Value::String(s.to_owned()))
        .map_err(|_| Undecodable::Malformed)
}

fn json(bytes: &[u8]) -> Result<Value, Undecodable> {
    serde_json::from_slice(bytes).map_err(|_| Undecodable::Malformed)
}

/// A number; NaN and the infinities, which JSON cannot hold, as PostgreSQL spells them.
fn float(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".into()),
        None if f > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn uuid(b: [u8; 16]) -> Result<Value, Undecodable> {
    let h = hex(&b);
    Ok(Value::String(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )))
}

fn date(days: i32) -> Result<Value, Undecodable> {
    match days {
        i32::MAX => Ok(Value::String("infinity".into())),
        i32::MIN => Ok(Value::String("-infinity".into())),
        _ => days
            .checked_add(PG_EPOCH_DAYS_FROM_CE)
            .and_then(NaiveDate::from_num_days_from_ce_opt)
            .map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
            .ok_or(Undecodable::Malformed),
    }
}

fn time(us: i64) -> Result<Value, Undecodable> {
    let secs = u32::try_from(us.div_euclid(1_000_000)).map_err(|_| Undecodable::Malformed)?;
    let nanos = (us.rem_euclid(1_000_000) * 1000) as u32;
    // 24:00:00 is a valid PostgreSQL time that chrono cannot hold.
    if secs == 86_400 && nanos == 0 {
        return Ok(Value::String("24:00:00".into()));
    }
    NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
        .map(|t| Value::String(t.format("%H:%M:%S%.f").to_string()))
        .ok_or(Undecodable::Malformed)
}

/// RFC 3339 in UTC (`Z`) for `timestamptz`; the same without an offset for `timestamp`.
fn timestamp(us: i64, with_zone: bool) -> Result<Value, Undecodable> {
    match us {
        i64::MAX => return Ok(Value::String("infinity".into())),
        i64::MIN => return Ok(Value::String("-infinity".into())),
        _ => {}
    }
    let at = us
        .checked_add(PG_EPOCH_US)
        .and_then(DateTime::from_timestamp_micros)
        .ok_or(Undecodable::Malformed)?;
    Ok(Value::String(if with_zone {
        at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    } else {
        at.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f").to_string()
    }))
}

/// `numeric` as a JSON number (through its decimal text, so integers up to 64 bits stay
/// exact; other values become the nearest double). NaN and the infinities become strings.
fn numeric(bytes: &[u8]) -> Result<Value, Undecodable> {
    let text = numeric_text(bytes)?;
    Ok(match text.parse::<Number>() {
        Ok(n) => Value::Number(n),
        Err(_) => Value::String(text),
    })
}

/// The decimal text of a binary `numeric`: `ndigits`, `weight`, `sign`, `dscale`, then
/// `ndigits` base-10000 digits, the first of weight `weight`.
pub(crate) fn numeric_text(bytes: &[u8]) -> Result<String, Undecodable> {
    let word = |i: usize| -> Result<u16, Undecodable> {
        bytes
            .get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or(Undecodable::Malformed)
    };
    let ndigits = usize::from(word(0)?);
    let weight = i64::from(word(1)? as i16);
    let sign = word(2)?;
    let dscale = usize::from(word(3)?);
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => return Err(Undecodable::Malformed),
    }
    if bytes.len() != 8 + ndigits * 2 {
        return Err(Undecodable::Malformed);
    }
    let digit = |k: i64| -> Result<u16, Undecodable> {
        if k < 0 || k >= ndigits as i64 {
            Ok(0)
        } else {
            word(4 + k as usize)
        }
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for k in 0..=weight {
            let d = digit(k)?;
            if k == 0 {
                out.push_str(&d.to_string());
            } else {
                out.push_str(&format!("{d:04}"));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        for j in 1..=dscale.div_ceil(4) as i64 {
            frac.push_str(&format!("{:04}", digit(weight + j)?));
        }
        frac.truncate(dscale);
        out.push('.');
        out.push_str(&frac);
    }
    Ok(out)
}

/// An array: `ndim`, a NULL flag, the element type, then `(length, lower bound)` per
/// dimension, then each element as a length (-1 for NULL) and its bytes. Lower bounds are
/// dropped: JSON arrays start at 0.
fn array(elem: &PgTypeInfo, bytes: &[u8]) -> Result<Value, Undecodable> {
    let mut r = Reader(bytes);
    let ndim = usize::try_from(r.i32()?).map_err(|_| Undecodable::Malformed)?;
    if ndim > MAX_DIMS {
        return Err(Undecodable::Malformed);
    }
    r.i32()?; // has nulls
    r.i32()?; // element oid: `elem` already says it
    let mut dims = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        dims.push(usize::try_from(r.i32()?).map_err(|_| Undecodable::Malformed)?);
        r.i32()?; // lower bound
    }
    if ndim == 0 {
        return Ok(Value::Array(Vec::new()));
    }
    let total = dims
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(*d))
        .ok_or(Undecodable::Malformed)?;
    // Each element takes at least its 4-byte length: a count beyond that is a lie.
    if total > r.0.len() / 4 {
        return Err(Undecodable::Malformed);
    }
    let mut items = Vec::with_capacity(total);
    for _ in 0..total {
        let len = r.i32()?;
        items.push(if len < 0 {
            Value::Null
        } else {
            decode(elem, r.take(len as usize)?)?
        });
    }
    // Fold the flat list into nested arrays, innermost dimension first.
    for &d in dims.iter().skip(1).rev() {
        let mut grouped = Vec::with_capacity(items.len() / d.max(1));
        let mut rest = items.into_iter();
        loop {
            let chunk: Vec<Value> = rest.by_ref().take(d).collect();
            if chunk.is_empty() {
                break;
            }
            grouped.push(Value::Array(chunk));
        }
        items = grouped;
    }
    Ok(Value::Array(items))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Undecodable> {
        if n > self.0.len() {
            return Err(Undecodable::Malformed);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn i32(&mut self) -> Result<i32, Undecodable> {
        Ok(i32::from_be_bytes(fixed(self.take(4)?)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [ndigits, weight as u16, sign, dscale] {
            b.extend(w.to_be_bytes());
        }
        for d in digits {
            b.extend(d.to_be_bytes());
        }
        b
    }

    #[test]
    fn numeric_text_matches_postgres() {
        // 12345.678: digits 1, 2345, 6780; weight 1; dscale 3.
        let b = numeric_bytes(3, 1, 0, 3, &[1, 2345, 6780]);
        assert_eq!(numeric_text(&b).unwrap(), "12345.678");
        // -0.0001: one digit 1 of weight -1, dscale 4.
        let b = numeric_bytes(1, -1, 0x4000, 4, &[1]);
        assert_eq!(numeric_text(&b).unwrap(), "-0.0001");
        // 0.00000123: digit 123 of weight -2 (0.0000|0123), dscale 8.
        let b = numeric_bytes(1, -2, 0, 8, &[123]);
        assert_eq!(numeric_text(&b).unwrap(), "0.00000123");
        // 20000 stored as one digit 2 of weight 1 (trailing zero groups dropped).
        let b = numeric_bytes(1, 1, 0, 0, &[2]);
        assert_eq!(numeric_text(&b).unwrap(), "20000");
        // 0 with dscale 2.
        let b = numeric_bytes(0, 0, 0, 2, &[]);
        assert_eq!(numeric_text(&b).unwrap(), "0.00");
        let b = numeric_bytes(0, 0, 0xC000, 0, &[]);
        assert_eq!(numeric_text(&b).unwrap(), "NaN");
        assert_eq!(
            numeric_text(&[0, 5, 0, 0]).unwrap_err(),
            Undecodable::Malformed
        );
    }

    #[test]
    fn times_before_the_epoch_and_at_midnight() {
        assert_eq!(
            timestamp(-1, true).unwrap(),
            Value::String("1999-12-31T23:59:59.999999Z".into())
        );
        assert_eq!(date(-1).unwrap(), Value::String("1999-12-31".into()));
        assert_eq!(
            time(86_400_000_000).unwrap(),
            Value::String("24:00:00".into())
        );
        assert_eq!(
            time(3_723_500_000).unwrap(),
            Value::String("01:02:03.500".into())
        );
    }
}
