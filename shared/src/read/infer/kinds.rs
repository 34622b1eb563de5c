//! The kinds of sampled values (exact: an
//! integer a double would round is never inferred as a double), type hints that override them, the
//! Arrow types of a Parquet file mapped to what Delta stores, and the checks an inferred schema must
//! pass before it becomes a table (names distinct case-insensitively, none of the product's own, not
//! too many).

use std::collections::HashMap;

use deltalake::arrow::array::{Array, StringArray};
use deltalake::arrow::compute::{cast_with_options, CastOptions};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use serde_json::value::RawValue;

use crate::config::{Column, Limits, TableConfig};
use crate::schema::{is_lineage, timestamp_type, RESERVED, SCD2_RESERVED};

/// Column names must be present, distinct ignoring case (Delta compares them so), and at most
/// `limits.max_columns`.
pub fn check_names<'a>(
    names: impl IntoIterator<Item = &'a str>,
    limits: &Limits,
) -> Result<(), String> {
    let mut seen: HashMap<String, &str> = HashMap::new();
    for (i, name) in names.into_iter().enumerate() {
        if seen.len() >= limits.max_columns {
            return Err(format!(
                "more than {} columns (limits.max_columns)",
                limits.max_columns
            ));
        }
        if name.is_empty() {
            return Err(format!("column {} has no name", i + 1));
        }
        if let Some(other) = seen.insert(name.to_lowercase(), name) {
            return Err(if other == name {
                format!("column `{name}` appears twice")
            } else {
                format!("columns `{other}` and `{name}` differ only in case (Delta column names are case-insensitive)")
            });
        }
    }
    Ok(())
}

/// An inferred (or evolving) schema can become the table's: [`check_names`], and no column named like
/// one of the product's ([`RESERVED`], and SCD type 2's validity columns for such a table).
pub fn check_inferred(schema: &Schema, table: &TableConfig) -> Result<(), String> {
    check_names(
        schema.fields().iter().map(|f| f.name().as_str()),
        &table.limits,
    )?;
    let reserved =
        |n: &str| RESERVED.contains(&n) || table.scd_type == 2 && SCD2_RESERVED.contains(&n);
    if let Some(f) = schema.fields().iter().find(|f| reserved(f.name())) {
        return Err(format!(
            "column `{}` has the name of a column the lakehouse writes itself",
            f.name()
        ));
    }
    Ok(())
}

/// What a sampled value looked like, for inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An integer a double holds exactly (|v| ≤ 2^53).
    Long,
    /// An integer beyond 2^53 that fits a long.
    WideLong,
    /// An integer beyond a long (up to 38 digits): decimal(38,0).
    HugeInt,
    Double,
    Boolean,
    Timestamp,
    Date,
    Text,
    Json,
}

fn widen(a: Kind, b: Kind) -> Kind {
    use Kind::*;
    match (a, b) {
        (x, y) if x == y => x,
        (Long, WideLong) | (WideLong, Long) => WideLong,
        (Long | WideLong, HugeInt) | (HugeInt, Long | WideLong) => HugeInt,
        (Long, Double) | (Double, Long) => Double,
        (Json, _) | (_, Json) => Json,
        // Wide integers and doubles together: a double would round the integers; text keeps both.
        _ => Text,
    }
}

fn kind_type(kind: Kind) -> DataType {
    match kind {
        Kind::Long | Kind::WideLong => DataType::Int64,
        Kind::HugeInt => DataType::Decimal128(38, 0),
        Kind::Double => DataType::Float64,
        Kind::Boolean => DataType::Boolean,
        Kind::Timestamp => timestamp_type(),
        Kind::Date => DataType::Date32,
        Kind::Text | Kind::Json => DataType::Utf8,
    }
}

/// Kind of an integer literal (`None`: not one).
fn integer_kind(s: &str) -> Option<Kind> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match s.parse::<i64>() {
        Ok(v) if v.unsigned_abs() <= 1 << 53 => Kind::Long,
        Ok(_) => Kind::WideLong,
        Err(_) if digits.len() <= 38 => Kind::HugeInt,
        Err(_) => Kind::Text,
    })
}

/// Kind of a CSV cell: numbers only when they round-trip (so `02134` stays text), booleans, ISO dates and
/// timestamps, else text.
fn text_kind(s: &str) -> Kind {
    if let Some(kind) = integer_kind(s) {
        let canonical = s.strip_prefix('-').unwrap_or(s);
        let leading_zero = canonical.len() > 1 && canonical.starts_with('0');
        return if leading_zero || s == "-0" {
            Kind::Text
        } else {
            kind
        };
    }
    if s.parse::<f64>().is_ok_and(|v| v.is_finite()) && s.contains('.') && !s.starts_with('.') {
        return Kind::Double;
    }
    if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") {
        return Kind::Boolean;
    }
    let one = StringArray::from(vec![s]);
    let safe = CastOptions {
        safe: true,
        ..Default::default()
    };
    if s.len() == 10
        && cast_with_options(&one, &DataType::Date32, &safe).is_ok_and(|a| a.is_valid(0))
    {
        return Kind::Date;
    }
    if s.len() > 10
        && cast_with_options(&one, &timestamp_type(), &safe).is_ok_and(|a| a.is_valid(0))
    {
        return Kind::Timestamp;
    }
    Kind::Text
}

/// Kind of a JSON value from its exact text: JSON's own types are respected (a quoted number stays a
/// string).
fn json_kind(v: &RawValue) -> Option<Kind> {
    let text = v.get();
    match text.as_bytes().first() {
        None | Some(b'n') => None,
        Some(b't' | b'f') => Some(Kind::Boolean),
        Some(b'"') => Some(Kind::Text),
        Some(b'[' | b'{') => Some(Kind::Json),
        _ => Some(integer_kind(text).unwrap_or(Kind::Double)),
    }
}

fn merge(a: Option<Kind>, b: Option<Kind>) -> Option<Kind> {
    match (a, b) {
        (Some(a), Some(b)) => Some(widen(a, b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Accumulates the kinds of sampled values, column by column in order of first appearance.
#[derive(Default)]
pub struct Sampler {
    cols: Vec<(String, Option<Kind>)>,
    at: HashMap<String, usize>,
}

impl Sampler {
    fn add(&mut self, name: &str, kind: Option<Kind>) {
        match self.at.get(name) {
            Some(i) => self.cols[*i].1 = merge(self.cols[*i].1, kind),
            None => {
                self.at.insert(name.to_string(), self.cols.len());
                self.cols.push((name.to_string(), kind));
            }
        }
    }

    /// One JSON object's values.
    pub(crate) fn json(&mut self, obj: &crate::read::jsonl::RawObject) {
        for (k, v) in obj {
            self.add(k, json_kind(v));
        }
    }

    /// One text row (`None` = empty cell) under `headers`.
    pub fn text(&mut self, headers: &[String], row: &[Option<&str>]) {
        for (h, cell) in headers.iter().zip(row) {
            self.add(h, cell.map(text_kind));
        }
    }

    /// Columns seen (a header declares its columns before any row).
    pub fn columns(&mut self, headers: &[String]) {
        for h in headers {
            self.add(h, None);
        }
    }

    pub fn width(&self) -> usize {
        self.cols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cols.is_empty()
    }

    /// The inferred schema (all nullable; a column never seen with a value is a string), with the
    /// table's `column_types` overriding inference (and adding columns the sample did not show).
    pub fn schema(self, hints: &[Column]) -> Schema {
        let mut fields: Vec<Field> = self
            .cols
            .into_iter()
            .map(|(name, kind)| Field::new(name, kind_type(kind.unwrap_or(Kind::Text)), true))
            .collect();
        for h in hints {
            match fields.iter_mut().find(|f| f.name() == &h.name) {
                Some(f) => *f = h.arrow_field(),
                None => fields.push(h.arrow_field()),
            }
        }
        Schema::new(fields)
    }
}

/// Infers column types from sampled text cells (`None` = empty cell).
#[cfg(test)]
fn infer_from_text(headers: &[String], rows: &[Vec<Option<String>>]) -> Schema {
    let mut s = Sampler::default();
    s.columns(headers);
    for row in rows {
        let cells: Vec<Option<&str>> = row.iter().map(|c| c.as_deref()).collect();
        s.text(headers, &cells);
    }
    s.schema(&[])
}

/// Infers column types from JSON objects' text.
#[cfg(test)]
fn infer_from_json(lines: &[&str]) -> Schema {
    let mut s = Sampler::default();
    for line in lines {
        if let Ok(Some(obj)) = crate::read::jsonl::raw_object(line) {
            s.json(&obj);
        }
    }
    s.schema(&[])
}

/// The type Delta stores for a Parquet column's type: unsigned integers widen, other string and binary
/// encodings become strings and binaries, every timestamp becomes a UTC microsecond timestamp (a
/// timestamp without zone is read as UTC), and what Delta has no type for (times of day, durations,
/// intervals, decimals over 38 digits) is kept as its text.
fn storable(dt: &DataType) -> DataType {
    use DataType::*;
    match dt {
        Null => Utf8,
        UInt8 => Int16,
        UInt16 => Int32,
        UInt32 => Int64,
        UInt64 => Decimal128(20, 0),
        Float16 => Float32,
        LargeUtf8 | Utf8View => Utf8,
        LargeBinary | BinaryView | FixedSizeBinary(_) => Binary,
        Date64 => Date32,
        Timestamp(_, _) => timestamp_type(),
        Decimal32(p, s) | Decimal64(p, s) => Decimal128(*p, *s),
        Decimal256(p, s) if *p <= 38 => Decimal128(*p, *s),
        Dictionary(_, value) => storable(value),
        Time32(_) | Time64(_) | Duration(_) | Interval(_) | Decimal256(_, _) => Utf8,
        other => other.clone(),
    }
}

/// Lineage names in a Parquet file's schema (a file exported from bronze) are not data columns.
pub fn parquet_data_fields(schema: &Schema) -> Vec<Field> {
    schema
        .fields()
        .iter()
        .filter(|f| !is_lineage(f.name()))
        .map(|f| Field::new(f.name(), storable(f.data_type()), true))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_text_and_json_types() {
        let s = infer_from_text(
            &["a".into(), "b".into(), "c".into(), "d".into(), "e".into()],
            &[
                vec![
                    Some("1".into()),
                    Some("1.5".into()),
                    Some("02134".into()),
                    Some("2024-01-02T03:04:05Z".into()),
                    None,
                ],
                vec![
                    Some("2".into()),
                    Some("3".into()),
                    Some("10".into()),
                    Some("2024-01-03 00:00:00".into()),
                    Some("true".into()),
                ],
            ],
        );
        let types: Vec<_> = s.fields().iter().map(|f| f.data_type().clone()).collect();
        assert_eq!(
            types,
            vec![
                DataType::Int64,
                DataType::Float64,
                DataType::Utf8,
                timestamp_type(),
                DataType::Boolean
            ]
        );
        let s = infer_from_json(&[
            r#"{"id": 1, "zip": "02134", "after": {"x": 1}, "ok": true}"#,
            r#"{"id": 2, "price": 2.5, "ok": null}"#,
        ]);
        let names: Vec<_> = s
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type().clone()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("id", DataType::Int64),
                ("zip", DataType::Utf8),
                ("after", DataType::Utf8),
                ("ok", DataType::Boolean),
                ("price", DataType::Float64)
            ]
        );
    }

    #[test]
    fn integers_a_double_would_round_are_not_inferred_as_doubles() {
        let types = |lines: &[&str]| -> Vec<DataType> {
            infer_from_json(lines)
                .fields()
                .iter()
                .map(|f| f.data_type().clone())
                .collect()
        };
        // 2^53 + 1 fits a long; with a double in the same column, text keeps both exactly.
        assert_eq!(
            types(&[r#"{"a": 9007199254740993}"#]),
            vec![DataType::Int64]
        );
        assert_eq!(
            types(&[r#"{"a": 9007199254740993}"#, r#"{"a": 1.5}"#]),
            vec![DataType::Utf8]
        );
        assert_eq!(
            types(&[r#"{"a": 1}"#, r#"{"a": 1.5}"#]),
            vec![DataType::Float64]
        );
        assert_eq!(
            types(&[r#"{"a": 123456789012345678901234567890}"#, r#"{"a": 2}"#]),
            vec![DataType::Decimal128(38, 0)]
        );
    }

    #[test]
    fn names_must_be_distinct_ignoring_case_and_not_the_products() {
        let limits = Limits::default();
        assert!(check_names(["id", "ID"], &limits)
            .unwrap_err()
            .contains("differ only in case"));
        assert!(check_names(["a", ""], &limits)
            .unwrap_err()
            .contains("no name"));
        let few = Limits {
            max_columns: 2,
            ..Limits::default()
        };
        assert!(check_names(["a", "b", "c"], &few)
            .unwrap_err()
            .contains("max_columns"));
        let table = crate::testkit::table("format = \"jsonl\"\nkeys = [\"id\"]");
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("_seq", DataType::Int64, true),
        ]);
        assert!(check_inferred(&schema, &table)
            .unwrap_err()
            .contains("`_seq`"));
    }
}
