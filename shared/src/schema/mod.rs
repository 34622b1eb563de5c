//! Table schemas: lineage columns every bronze row carries, schema inference for tables declared without
//! columns, and `conform`, which casts source columns to the table's types and says, per row, why a row
//! does not fit (so the row goes to quarantine and the rest of the chunk proceeds).

use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::compute::filter;
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::row::{RowConverter, Rows, SortField};

use crate::error::{Error, Result};

mod cast;
mod widen;

pub use cast::{cast_columns, parse_decimal};
pub use widen::widens;

pub const SOURCE_KEY: &str = "_source_key";
pub const SOURCE_ETAG: &str = "_source_etag";
pub const SOURCE_ROW: &str = "_source_row";
pub const INGESTED_AT: &str = "_ingested_at";

/// Silver's ordering columns (the event's sequence, the bronze version it came from) and the change
/// op, tombstones' deletion time and MERGE's action column: the product's own column names.
pub const SEQ: &str = "_seq";
pub const OP: &str = "_op";
pub const BRONZE_VERSION: &str = "_bronze_version";
pub const DELETED_AT: &str = "_deleted_at";
pub const ACTION: &str = "_lakehouse_action";
/// Silver's record of values that did not come from the row's own event (see `cdc::unavailable`).
pub const VALUE_SOURCES: &str = "_value_sources";

/// Column names the product writes itself (lineage, silver's columns, tombstones, MERGE's action,
/// Delta's change data feed): a data column by one of these names would collide downstream.
pub const RESERVED: [&str; 13] = [
    SOURCE_KEY,
    SOURCE_ETAG,
    SOURCE_ROW,
    INGESTED_AT,
    SEQ,
    OP,
    BRONZE_VERSION,
    DELETED_AT,
    ACTION,
    VALUE_SOURCES,
    "_change_type",
    "_commit_version",
    "_commit_timestamp",
];

/// SCD type 2 validity columns: the product's own, so a row column may not take these names.
pub const VALID_FROM: &str = "valid_from";
pub const VALID_TO: &str = "valid_to";
pub const IS_CURRENT: &str = "is_current";
pub const SCD2_RESERVED: [&str; 4] = [VALID_FROM, VALID_TO, IS_CURRENT, FOLDED];
/// SCD2 with history on selected columns: the events folded into a version (changes of untracked
/// columns), kept so a late event can still be placed exactly.
pub const FOLDED: &str = "_folded";

/// How many rows schema inference looks at.
pub const INFER_SAMPLE_ROWS: usize = 1000;

pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The columns of a `format = "binary"` table: one row per object (its bytes in `content`, or null and
/// `content_omitted` saying why).
pub fn binary_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("size", DataType::Int64, true),
        Field::new("content_type", DataType::Utf8, true),
        Field::new("modified", timestamp_type(), true),
        Field::new("etag", DataType::Utf8, true),
        Field::new("version", DataType::Utf8, true),
        Field::new("content", DataType::Binary, true),
        Field::new("content_omitted", DataType::Utf8, true),
        // A removal (`s3:ObjectRemoved:*`) recorded as a row: silver's delete flag.
        Field::new("deleted", DataType::Boolean, true),
    ]))
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

/// A column the product writes itself (lineage, ordering, bookkeeping, SCD2 validity).
pub fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name) || SCD2_RESERVED.contains(&name)
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

/// Each value of `array` as its JSON text (structs and maps as objects, lists as arrays, nulls inside
/// kept), a null as null: how nested source values reach columns
/// that hold text.
pub fn json_text(array: &ArrayRef) -> Result<ArrayRef> {
    use deltalake::arrow::json::writer::{make_encoder, EncoderOptions};
    let field = Arc::new(Field::new("value", array.data_type().clone(), true));
    let options = EncoderOptions::default().with_explicit_nulls(true);
    let mut encoder = make_encoder(&field, array.as_ref(), &options)
        .map_err(|e| Error::arrow("nested value as JSON", e))?;
    let mut out = deltalake::arrow::array::StringBuilder::new();
    let mut buf = Vec::new();
    for i in 0..array.len() {
        if array.is_null(i) {
            out.append_null();
            continue;
        }
        buf.clear();
        encoder.encode(i, &mut buf);
        out.append_value(String::from_utf8_lossy(&buf));
    }
    Ok(Arc::new(out.finish()))
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
}
