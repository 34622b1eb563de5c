//! Table schemas: lineage columns every bronze row carries, schema inference for tables declared without
//! columns, and `conform`, which casts source columns to the table's types and says, per row, why a row
//! does not fit (so the row goes to quarantine and the rest of the chunk proceeds).

use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::compute::{cast_with_options, filter, CastOptions};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::row::{RowConverter, Rows, SortField};
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::{Error, Result};

pub const SOURCE_KEY: &str = "_source_key";
pub const SOURCE_ETAG: &str = "_source_etag";
pub const SOURCE_ROW: &str = "_source_row";
pub const INGESTED_AT: &str = "_ingested_at";

/// SCD type 2 validity columns: the product's own, so a row column may not take these names.
pub const VALID_FROM: &str = "valid_from";
pub const VALID_TO: &str = "valid_to";
pub const IS_CURRENT: &str = "is_current";
pub const SCD2_RESERVED: [&str; 3] = [VALID_FROM, VALID_TO, IS_CURRENT];

/// How many rows schema inference looks at.
pub const INFER_SAMPLE_ROWS: usize = 1000;

pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Lineage columns appended to every bronze row: which object, which version of it, which row, and when.
pub fn lineage_fields() -> Vec<Field> {
    vec![
        Field::new(SOURCE_KEY, DataType::Utf8, false),
        Field::new(SOURCE_ETAG, DataType::Utf8, false),
        Field::new(SOURCE_ROW, DataType::Int64, false),
        Field::new(INGESTED_AT, timestamp_type(), false),
    ]
}

pub fn is_lineage(name: &str) -> bool {
    matches!(name, SOURCE_KEY | SOURCE_ETAG | SOURCE_ROW | INGESTED_AT)
}

/// The bronze schema for a data schema: its columns (all nullable at the storage level is not assumed;
/// declared nullability is kept) followed by lineage.
pub fn bronze_schema(data: &Schema) -> Schema {
    let mut fields: Vec<Field> = data.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(lineage_fields());
    Schema::new(fields)
}

/// The data part of a bronze schema (lineage stripped).
pub fn data_schema(bronze: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        bronze
            .fields()
            .iter()
            .filter(|f| !is_lineage(f.name()))
            .map(|f| f.as_ref().clone())
            .collect::<Vec<_>>(),
    ))
}

/// Where a chunk of rows came from, attached as lineage columns.
#[derive(Debug, Clone)]
pub struct Lineage {
    pub key: String,
    pub etag: String,
    /// Microseconds since the epoch, UTC.
    pub ingested_at_us: i64,
}

/// A row that did not fit the schema: kept for quarantine with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    /// 1-based line (JSONL, CSV) or row index (Parquet); `None` for a whole-object failure.
    pub row: Option<u64>,
    pub raw: Option<String>,
    pub reason: String,
}

/// Result of conforming one chunk: the rows that fit (typed, with lineage) and, per rejected row, its
/// index in the chunk and reason.
pub struct Conformed {
    pub batch: RecordBatch,
    pub rejected: Vec<(usize, String)>,
}

fn cell_text(array: &dyn Array, row: usize) -> String {
    let text = ArrayFormatter::try_new(array, &FormatOptions::default())
        .map(|f| f.value(row).to_string())
        .unwrap_or_else(|_| "?".into());
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

fn type_name(dt: &DataType) -> String {
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

/// Cast `sources` (one array per field of `target`, any type; text formats pass strings) to the target
/// types. A row is rejected when a non-null value does not convert or a required column is null; the
/// first failing column is the reason. Rows with a `pre_rejected` reason keep it. Returns the typed
/// columns (all rows) and, per row, the rejection reason if any.
pub fn cast_columns(
    target: &Schema,
    sources: Vec<ArrayRef>,
    n: usize,
    pre_rejected: &[Option<String>],
) -> (Vec<ArrayRef>, Vec<Option<String>>) {
    let mut reasons: Vec<Option<String>> = pre_rejected.to_vec();
    reasons.resize(n, None);
    let safe = CastOptions {
        safe: true,
        ..Default::default()
    };
    let mut typed = Vec::with_capacity(target.fields().len());
    for (field, src) in target.fields().iter().zip(sources) {
        let cast = if src.data_type() == field.data_type() {
            Ok(src.clone())
        } else {
            cast_with_options(&src, field.data_type(), &safe)
        };
        let cast = match cast {
            Ok(a) => a,
            Err(e) => {
                // The whole column has an unconvertible type (e.g. a struct where a long is declared).
                for (i, r) in reasons.iter_mut().enumerate() {
                    if r.is_none() && src.is_valid(i) {
                        *r = Some(format!(
                            "column `{}`: {} cannot be converted to {}: {e}",
                            field.name(),
                            type_name(src.data_type()),
                            type_name(field.data_type())
                        ));
                    }
                }
                deltalake::arrow::array::new_null_array(field.data_type(), n)
            }
        };
        for (i, r) in reasons.iter_mut().enumerate() {
            if r.is_some() {
                continue;
            }
            if cast.is_null(i) {
                if src.is_valid(i) {
                    *r = Some(format!(
                        "column `{}`: `{}` is not a valid {}",
                        field.name(),
                        cell_text(src.as_ref(), i),
                        type_name(field.data_type())
                    ));
                } else if !field.is_nullable() {
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

/// [`cast_columns`], then keep the rows that fit and append the lineage columns. `rows` are the 1-based
/// source row numbers written to `_source_row`.
pub fn conform(
    target: &SchemaRef,
    sources: Vec<ArrayRef>,
    rows: &[u64],
    pre_rejected: &[Option<String>],
    lineage: &Lineage,
) -> Result<Conformed> {
    let (typed, reasons) = cast_columns(target, sources, rows.len(), pre_rejected);
    let keep = BooleanArray::from(reasons.iter().map(|r| r.is_none()).collect::<Vec<_>>());
    let mut columns = Vec::with_capacity(typed.len() + 4);
    for a in &typed {
        columns.push(
            filter(a.as_ref(), &keep).map_err(|e| Error::arrow("filtering conformed rows", e))?,
        );
    }
    let kept_rows: Vec<i64> = rows
        .iter()
        .zip(&reasons)
        .filter(|(_, r)| r.is_none())
        .map(|(row, _)| *row as i64)
        .collect();
    let k = kept_rows.len();
    columns.push(Arc::new(StringArray::from_iter_values(
        std::iter::repeat_n(lineage.key.as_str(), k),
    )));
    columns.push(Arc::new(StringArray::from_iter_values(
        std::iter::repeat_n(lineage.etag.as_str(), k),
    )));
    columns.push(Arc::new(Int64Array::from(kept_rows)));
    columns.push(Arc::new(
        TimestampMicrosecondArray::from(vec![lineage.ingested_at_us; k]).with_timezone("UTC"),
    ));
    let schema = Arc::new(bronze_schema(target));
    let batch = RecordBatch::try_new(schema, columns)
        .map_err(|e| Error::arrow("building bronze batch", e))?;
    let rejected = reasons
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.map(|r| (i, r)))
        .collect();
    Ok(Conformed { batch, rejected })
}

/// What a sampled value looked like, for inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Long,
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
        (Long, Double) | (Double, Long) => Double,
        (Json, _) | (_, Json) => Json,
        _ => Text,
    }
}

fn kind_type(kind: Kind) -> DataType {
    match kind {
        Kind::Long => DataType::Int64,
        Kind::Double => DataType::Float64,
        Kind::Boolean => DataType::Boolean,
        Kind::Timestamp => timestamp_type(),
        Kind::Date => DataType::Date32,
        Kind::Text | Kind::Json => DataType::Utf8,
    }
}

/// Kind of a CSV cell: numbers only when they round-trip (so `02134` stays text), booleans, ISO dates and
/// timestamps, else text.
fn text_kind(s: &str) -> Kind {
    if let Ok(v) = s.parse::<i64>() {
        if v.to_string() == s {
            return Kind::Long;
        }
        return Kind::Text;
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

/// Kind of a JSON value: JSON's own types are respected (a quoted number stays a string).
fn json_kind(v: &serde_json::Value) -> Option<Kind> {
    use serde_json::Value;
    match v {
        Value::Null => None,
        Value::Bool(_) => Some(Kind::Boolean),
        Value::Number(n) if n.is_i64() => Some(Kind::Long),
        Value::Number(_) => Some(Kind::Double),
        Value::String(_) => Some(Kind::Text),
        Value::Array(_) | Value::Object(_) => Some(Kind::Json),
    }
}

/// Infers column types from sampled JSON objects (columns in order of first appearance, all nullable).
pub fn infer_from_json<'a>(
    samples: impl IntoIterator<Item = &'a serde_json::Map<String, serde_json::Value>>,
) -> Schema {
    let mut cols: Vec<(String, Option<Kind>)> = Vec::new();
    for obj in samples {
        for (k, v) in obj {
            let kind = json_kind(v);
            match cols.iter_mut().find(|(n, _)| n == k) {
                Some((_, slot)) => *slot = merge(*slot, kind),
                None => cols.push((k.clone(), kind)),
            }
        }
    }
    to_schema(cols)
}

/// Infers column types from sampled text cells (`None` = empty cell).
pub fn infer_from_text(headers: &[String], rows: &[Vec<Option<String>>]) -> Schema {
    let mut cols: Vec<(String, Option<Kind>)> = headers.iter().map(|h| (h.clone(), None)).collect();
    for row in rows {
        for (slot, cell) in cols.iter_mut().zip(row) {
            if let Some(s) = cell {
                slot.1 = merge(slot.1, Some(text_kind(s)));
            }
        }
    }
    to_schema(cols)
}

fn merge(a: Option<Kind>, b: Option<Kind>) -> Option<Kind> {
    match (a, b) {
        (Some(a), Some(b)) => Some(widen(a, b)),
        (a, None) => a,
        (None, b) => b,
    }
}

fn to_schema(cols: Vec<(String, Option<Kind>)>) -> Schema {
    Schema::new(
        cols.into_iter()
            .filter(|(name, _)| !is_lineage(name))
            .map(|(name, kind)| Field::new(name, kind_type(kind.unwrap_or(Kind::Text)), true))
            .collect::<Vec<_>>(),
    )
}

/// `batch` as `schema`: its columns by name, cast to the schema's types; `fill(name, rows)` supplies
/// columns the batch lacks, and a missing nullable column is all nulls.
pub fn as_schema(
    batch: &RecordBatch,
    schema: &SchemaRef,
    fill: impl Fn(&str, usize) -> Option<ArrayRef>,
) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let cols: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(
            |f| match (batch.column_by_name(f.name()), fill(f.name(), n)) {
                (Some(c), _) => deltalake::arrow::compute::cast(c, f.data_type())
                    .map_err(|e| Error::arrow(format!("casting `{}`", f.name()), e)),
                (None, Some(c)) => Ok(c),
                (None, None) if f.is_nullable() => {
                    Ok(deltalake::arrow::array::new_null_array(f.data_type(), n))
                }
                (None, None) => Err(Error::invariant(format!(
                    "column `{}` is missing",
                    f.name()
                ))),
            },
        )
        .collect::<Result<_>>()?;
    RecordBatch::try_new(schema.clone(), cols).map_err(|e| Error::arrow("conforming a batch", e))
}

/// Column `name` of a batch the crate built itself: its absence is a bug, reported as an invariant
/// naming `what` was being done.
pub fn column(b: &RecordBatch, name: &str, what: &str) -> Result<ArrayRef> {
    b.column_by_name(name)
        .cloned()
        .ok_or_else(|| Error::invariant(format!("{what}: no column `{name}`")))
}

/// Columns `names` of a batch the crate built itself (see [`column`]).
pub fn columns(b: &RecordBatch, names: &[impl AsRef<str>], what: &str) -> Result<Vec<ArrayRef>> {
    names.iter().map(|n| column(b, n.as_ref(), what)).collect()
}

/// Comparable, hashable byte rows of `columns` (multi-column keys and orderings), with the converter
/// that made them, to convert other batches of the same types alike.
pub fn rows_of(columns: &[ArrayRef], what: &str) -> Result<(RowConverter, Rows)> {
    let fail = |e| Error::arrow(what.to_string(), e);
    let conv = RowConverter::new(
        columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )
    .map_err(fail)?;
    let rows = conv.convert_columns(columns).map_err(fail)?;
    Ok((conv, rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{AsArray, Int32Array};
    use deltalake::arrow::datatypes::Int64Type;

    fn lineage() -> Lineage {
        Lineage {
            key: "k".into(),
            etag: "e".into(),
            ingested_at_us: 0,
        }
    }

    #[test]
    fn conform_rejects_bad_cells_and_missing_required() {
        let target: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("amount", DataType::Float64, true),
        ]));
        let ids: ArrayRef = Arc::new(StringArray::from(vec![
            Some("1"),
            None,
            Some("3"),
            Some("x"),
        ]));
        let amounts: ArrayRef = Arc::new(StringArray::from(vec![
            Some("1.5"),
            Some("2"),
            Some("abc"),
            None,
        ]));
        let out = conform(&target, vec![ids, amounts], &[1, 2, 3, 4], &[], &lineage()).unwrap();
        assert_eq!(out.batch.num_rows(), 1);
        assert_eq!(out.batch.column(0).as_primitive::<Int64Type>().value(0), 1);
        assert_eq!(
            out.batch
                .column_by_name(SOURCE_ROW)
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(0),
            1
        );
        let reasons: Vec<_> = out.rejected.iter().map(|(i, r)| (*i, r.as_str())).collect();
        assert_eq!(reasons.len(), 3);
        assert!(reasons[0].1.contains("`id` is required"), "{reasons:?}");
        assert!(
            reasons[1].1.contains("`abc` is not a valid double"),
            "{reasons:?}"
        );
        assert!(
            reasons[2].1.contains("`x` is not a valid long"),
            "{reasons:?}"
        );
    }

    #[test]
    fn conform_casts_typed_sources_and_keeps_pre_rejected_out() {
        let target: SchemaRef = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let src: ArrayRef = Arc::new(Int32Array::from(vec![7, 8]));
        let out = conform(
            &target,
            vec![src],
            &[1, 2],
            &[None, Some("bad json".into())],
            &lineage(),
        )
        .unwrap();
        assert_eq!(out.batch.num_rows(), 1);
        assert_eq!(out.rejected, vec![(1, "bad json".to_string())]);
    }

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
        let rows: Vec<serde_json::Map<String, serde_json::Value>> = vec![
            serde_json::from_str(r#"{"id": 1, "zip": "02134", "after": {"x": 1}, "ok": true}"#)
                .unwrap(),
            serde_json::from_str(r#"{"id": 2, "price": 2.5, "ok": null}"#).unwrap(),
        ];
        let s = infer_from_json(&rows);
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
}
