//! Source values to the table's types, strictly: a value is stored exactly as written or its row is
//! rejected with the reason. No rounding (`1.005` does not become `1.01` in `decimal(12,2)`; a double
//! `1.5` does not become the long `1`), no guessing (`yes` is not a boolean, ` 18 ` is not a long).

use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, Decimal128Array};
use deltalake::arrow::compute::kernels::cmp::eq;
use deltalake::arrow::compute::{cast_with_options, CastOptions};
use deltalake::arrow::datatypes::{DataType, Schema};
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};

pub(super) fn cell_text(array: &dyn Array, row: usize) -> String {
    let text = ArrayFormatter::try_new(array, &FormatOptions::default())
        .map(|f| f.value(row).to_string())
        .unwrap_or_else(|_| "?".into());
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

pub(super) fn type_name(dt: &DataType) -> String {
    match dt {
        DataType::Utf8 => "string".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 => "long".into(),
        DataType::Float64 => "double".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(_, _) => "timestamp".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        other => other.to_string(),
    }
}

/// The exact value of decimal text (`-12.50`, `1e3`, `12345678901234567.89`) as a `decimal(p,s)`
/// mantissa, or why it does not fit without rounding.
pub fn parse_decimal(text: &str, precision: u8, scale: i8) -> Result<i128, String> {
    let ty = format!("decimal({precision},{scale})");
    let bad = || format!("`{text}` is not a valid {ty}");
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (number, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i32>().map_err(|_| bad())?),
        None => (rest, 0),
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    // value = digits × 10^shift, and the mantissa is value × 10^scale.
    let shift = exponent as i64 - frac.len() as i64 + scale as i64;
    if shift >= 0 {
        if shift > 76 && digits.iter().any(|d| *d != 0) {
            return Err(format!("`{text}` does not fit {ty}"));
        }
        digits.extend(std::iter::repeat_n(0, shift.min(76) as usize));
    } else {
        let drop = (-shift) as usize;
        let keep = digits.len().saturating_sub(drop);
        if digits[keep..].iter().any(|d| *d != 0) {
            return Err(format!(
                "`{text}` has more than {scale} decimal places: {ty} would round it"
            ));
        }
        digits.truncate(keep);
    }
    let first = digits.iter().position(|d| *d != 0).unwrap_or(digits.len());
    let significant = &digits[first..];
    if significant.len() > precision as usize {
        return Err(format!(
            "`{text}` does not fit {ty} (more than {} digits before the point)",
            precision as i16 - scale as i16
        ));
    }
    let magnitude = significant.iter().fold(0i128, |m, d| m * 10 + *d as i128);
    Ok(if negative { -magnitude } else { magnitude })
}

/// Why text `s` is refused for `ty` before any parsing: padding, or a boolean spelled otherwise than
/// `true`/`false` (any case).
fn strict_text(s: &str, ty: &DataType) -> Option<&'static str> {
    if s.trim() != s {
        return Some("has leading or trailing spaces");
    }
    if ty == &DataType::Boolean
        && !s.eq_ignore_ascii_case("true")
        && !s.eq_ignore_ascii_case("false")
    {
        return Some("is not a valid boolean (true or false)");
    }
    None
}

/// Casts one source column to `field`'s type; `reject(i, reason)` is called for each row whose
/// non-null value cannot be stored exactly.
fn cast_column(
    field: &deltalake::arrow::datatypes::Field,
    src: &ArrayRef,
    mut reject: impl FnMut(usize, String),
) -> ArrayRef {
    let to = field.data_type();
    let n = src.len();
    let name = field.name();
    if src.data_type() == to {
        return src.clone();
    }
    let safe = CastOptions {
        safe: true,
        ..Default::default()
    };
    if let (DataType::Utf8, DataType::Decimal128(p, s)) = (src.data_type(), to) {
        let text = src.as_string::<i32>();
        let values: Vec<Option<i128>> = (0..n)
            .map(|i| {
                if text.is_null(i) {
                    return None;
                }
                let v = text.value(i);
                match strict_text(v, to)
                    .map_or_else(|| parse_decimal(v, *p, *s), |r| Err(format!("`{v}` {r}")))
                {
                    Ok(m) => Some(m),
                    Err(reason) => {
                        reject(i, format!("column `{name}`: {reason}"));
                        None
                    }
                }
            })
            .collect();
        return match Decimal128Array::from(values).with_precision_and_scale(*p, *s) {
            Ok(a) => Arc::new(a),
            Err(e) => {
                (0..n).for_each(|i| reject(i, format!("column `{name}`: {e}")));
                deltalake::arrow::array::new_null_array(to, n)
            }
        };
    }
    if src.data_type() == &DataType::Utf8 {
        let text = src.as_string::<i32>();
        for i in 0..n {
            if text.is_valid(i) {
                if let Some(r) = strict_text(text.value(i), to) {
                    reject(
                        i,
                        format!("column `{name}`: `{}` {r}", cell_text(src.as_ref(), i)),
                    );
                }
            }
        }
    }
    let cast = match cast_with_options(src, to, &safe) {
        Ok(a) => a,
        Err(e) => {
            // The whole column has an unconvertible type (e.g. a struct where a long is declared).
            for i in (0..n).filter(|i| src.is_valid(*i)) {
                reject(
                    i,
                    format!(
                        "column `{name}`: {} cannot be converted to {}: {e}",
                        type_name(src.data_type()),
                        type_name(to)
                    ),
                );
            }
            return deltalake::arrow::array::new_null_array(to, n);
        }
    };
    for i in 0..n {
        if cast.is_null(i) && src.is_valid(i) {
            reject(
                i,
                format!(
                    "column `{name}`: `{}` is not a valid {}",
                    cell_text(src.as_ref(), i),
                    type_name(to)
                ),
            );
        }
    }
    // Typed sources (Parquet): the stored value must convert back to the one read, else the cast
    // rounded or truncated it (a double into a long or decimal, nanoseconds into microseconds).
    if src.data_type() != &DataType::Utf8 && to != &DataType::Utf8 {
        let same = cast_with_options(&cast, src.data_type(), &safe)
            .ok()
            .and_then(|back| eq(&back, src).ok());
        if let Some(same) = same {
            for i in 0..n {
                if same.is_valid(i) && !same.value(i) {
                    reject(
                        i,
                        format!(
                            "column `{name}`: {} `{}` would change when stored as {}",
                            type_name(src.data_type()),
                            cell_text(src.as_ref(), i),
                            type_name(to)
                        ),
                    );
                }
            }
        }
    }
    cast
}

/// Cast `sources` (one array per field of `target`, any type; text formats pass strings) to the target
/// types. A row is rejected when a non-null value does not convert exactly or a required column is
/// null; the first failing column is the reason. Rows with a `pre_rejected` reason keep it. Returns the
/// typed columns (all rows) and, per row, the rejection reason if any.
pub fn cast_columns(
    target: &Schema,
    sources: Vec<ArrayRef>,
    n: usize,
    pre_rejected: &[Option<String>],
) -> (Vec<ArrayRef>, Vec<Option<String>>) {
    let mut reasons: Vec<Option<String>> = pre_rejected.to_vec();
    reasons.resize(n, None);
    let mut typed = Vec::with_capacity(target.fields().len());
    for (field, src) in target.fields().iter().zip(sources) {
        let cast = cast_column(field, &src, |i, reason| {
            reasons[i].get_or_insert(reason);
        });
        if !field.is_nullable() {
            for (i, r) in reasons.iter_mut().enumerate() {
                if r.is_none() && cast.is_null(i) {
                    *r = Some(format!(
                        "column `{}` is required but is null or missing",
                        field.name()
                    ));
                }
            }
        }
        typed.push(cast);
    }
    (typed, reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_or_refused() {
        assert_eq!(parse_decimal("12.5", 12, 2), Ok(1250));
        assert_eq!(parse_decimal("-0.10", 4, 2), Ok(-10));
        assert_eq!(parse_decimal("1.2e1", 4, 2), Ok(1200));
        assert_eq!(parse_decimal("1.500", 4, 2), Ok(150));
        assert_eq!(
            parse_decimal("12345678901234567.89", 38, 2),
            Ok(1_234_567_890_123_456_789)
        );
        let refused = |t: &str, p, s| parse_decimal(t, p, s).unwrap_err();
        assert!(refused("1.005", 12, 2).contains("more than 2 decimal places"));
        assert!(refused("1.999", 4, 2).contains("more than 2 decimal places"));
        assert!(refused("100.00", 4, 2).contains("does not fit"));
        assert!(refused("1e400", 38, 2).contains("does not fit"));
        for bad in ["", "-", ".", "1.2.3", "abc", " 1", "1e", "0x10"] {
            assert!(parse_decimal(bad, 10, 2).is_err(), "{bad:?}");
        }
        assert_eq!(parse_decimal("0e400", 10, 2), Ok(0));
    }
}
