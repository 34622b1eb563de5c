//! Values a source did not send ("unavailable": Debezium's TOAST placeholder, sent for a large
//! PostgreSQL column an update did not touch under REPLICA IDENTITY DEFAULT) mean "unchanged": the
//! column keeps the value of the newest earlier event of the same key that carried one, whatever order
//! the events arrive in.
//!
//! Each change and each silver row records, in [`VALUE_SOURCES`], the columns whose value did not come
//! from its own event: a JSON object `{"column": [seq, bronze_version, source_row]}` naming the event
//! the value came from, or `{"column": null}` while no event has carried a value (the cell is null).
//! `NULL` (the common case) means every value is the row's own. [`fill`] resolves a key's events in
//! order, per column taking the value with the newest source: a late older event with a real value
//! therefore still lands in a row whose value for that column came from an even older event, and a
//! delete starts the key afresh.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, UInt32Array};
use deltalake::arrow::compute::{cast, take};
use deltalake::arrow::datatypes::{DataType, Int64Type};
use serde_json::Value;

use super::{BRONZE_VERSION, OP, OP_DELETE, SEQ};
use crate::error::{Error, Result};
use crate::schema::{self, SOURCE_ROW};

pub use crate::schema::VALUE_SOURCES;

/// Where a value came from: its event's `(seq, bronze_version, source_row)`, the order "latest wins"
/// uses. `seq` is a JSON number (integer, timestamp and date sequences), string, or null.
type Source = Value;

/// A row's [`VALUE_SOURCES`]: per column not its own, its source (`None`: not known yet).
type Carried = BTreeMap<String, Option<Source>>;

/// Orders two sources as events are ordered: sequence (null lowest), then bronze version, then row.
fn compare(a: &Source, b: &Source) -> Ordering {
    let part = |v: &Source, i: usize| v.get(i).cloned().unwrap_or(Value::Null);
    for i in 0..3 {
        let ord = match (part(a, i), part(b, i)) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Null, _) => Ordering::Less,
            (_, Value::Null) => Ordering::Greater,
            (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => x
                    .as_f64()
                    .partial_cmp(&y.as_f64())
                    .unwrap_or(Ordering::Equal),
            },
            (Value::String(x), Value::String(y)) => x.cmp(&y),
            (x, y) => x.to_string().cmp(&y.to_string()),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// Per row, the source of its own values.
fn own_sources(events: &RecordBatch) -> Result<Vec<Source>> {
    let seq = schema::column(events, SEQ, "unavailable values")?;
    let seq: Vec<Value> = match seq.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let s = cast(&seq, &DataType::Utf8).map_err(|e| Error::arrow("sequence", e))?;
            s.as_string::<i32>()
                .iter()
                .map(|v| v.map_or(Value::Null, |v| Value::String(v.into())))
                .collect()
        }
        DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => {
            let f = cast(&seq, &DataType::Float64).map_err(|e| Error::arrow("sequence", e))?;
            f.as_primitive::<deltalake::arrow::datatypes::Float64Type>()
                .iter()
                .map(|v| v.map_or(Value::Null, Value::from))
                .collect()
        }
        _ => {
            let i = cast(&seq, &DataType::Int64).map_err(|e| Error::arrow("sequence", e))?;
            i.as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.map_or(Value::Null, Value::from))
                .collect()
        }
    };
    let ints = |name: &str| -> Result<Vec<Option<i64>>> {
        let c = cast(
            &schema::column(events, name, "unavailable values")?,
            &DataType::Int64,
        )
        .map_err(|e| Error::arrow("ordering columns", e))?;
        Ok(c.as_primitive::<Int64Type>().iter().collect())
    };
    let (versions, rows) = (ints(BRONZE_VERSION)?, ints(SOURCE_ROW)?);
    Ok(seq
        .into_iter()
        .zip(versions.into_iter().zip(rows))
        .map(|(s, (v, r))| Value::Array(vec![s, Value::from(v), Value::from(r)]))
        .collect())
}

/// The value sources of each row: `None` when all its values are its own.
fn sources_of(events: &RecordBatch) -> Result<Vec<Option<Carried>>> {
    let c = schema::column(events, VALUE_SOURCES, "unavailable values")?;
    let c = cast(&c, &DataType::Utf8).map_err(|e| Error::arrow(VALUE_SOURCES, e))?;
    c.as_string::<i32>()
        .iter()
        .map(|v| match v {
            None => Ok(None),
            Some(text) => {
                let map: BTreeMap<String, Value> = serde_json::from_str(text).map_err(|e| {
                    Error::invariant(format!("{VALUE_SOURCES} is not a JSON object: {e}"))
                })?;
                Ok(Some(
                    map.into_iter()
                        .map(|(k, v)| (k, (!v.is_null()).then_some(v)))
                        .collect(),
                ))
            }
        })
        .collect()
}

/// Whether any row of `events` has a value that is not its own.
pub fn any(events: &RecordBatch) -> bool {
    events
        .column_by_name(VALUE_SOURCES)
        .is_some_and(|c| c.null_count() < c.len())
}

/// Resolves the values events did not carry, per key in event order (see the module doc). Returns the
/// events sorted by key, sequence, bronze version and source row, each column's cells taken from the
/// event whose value is newest, and [`VALUE_SOURCES`] rewritten. Events without the column, or where
/// every value is its own, come back unchanged (and unsorted).
pub fn fill(events: &RecordBatch, keys: &[String]) -> Result<RecordBatch> {
    if !any(events) {
        return Ok(events.clone());
    }
    let sorted = super::latest::in_event_order(events, keys)?;
    let (_, key_rows) = schema::rows_of(
        &schema::columns(&sorted, keys, "unavailable values")?,
        "comparing keys",
    )?;
    let own = own_sources(&sorted)?;
    let given = sources_of(&sorted)?;
    let ops = cast(
        &schema::column(&sorted, OP, "unavailable values")?,
        &DataType::Utf8,
    )
    .map_err(|e| Error::arrow("ops", e))?;
    let ops = ops.as_string::<i32>();
    let schema = sorted.schema();
    // The value columns: everything but the ordering and bookkeeping columns.
    let columns: Vec<(usize, String)> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            let name = f.name();
            // (`_lakehouse_*`: a caller's own bookkeeping columns.)
            !crate::schema::is_reserved(name)
                && !name.starts_with("_lakehouse")
                && !keys.contains(name)
        })
        .map(|(i, f)| (i, f.name().clone()))
        .collect();
    let n = sorted.num_rows();
    let mut pick: Vec<Vec<u32>> = vec![(0..n as u32).collect(); columns.len()];
    let mut out_sources: Vec<Option<String>> = vec![None; n];
    // Per column, the newest value so far in this key: (row holding it, its source).
    let mut best: Vec<Option<(u32, Source)>> = vec![None; columns.len()];
    for i in 0..n {
        if i == 0 || key_rows.row(i) != key_rows.row(i - 1) {
            best.iter_mut().for_each(|b| *b = None);
        }
        if ops.is_valid(i) && ops.value(i) == OP_DELETE {
            // A delete ends the key: nothing before it carries into a later insert.
            best.iter_mut().for_each(|b| *b = None);
            continue;
        }
        let mut carried: BTreeMap<&str, Value> = BTreeMap::new();
        for (c, (_, name)) in columns.iter().enumerate() {
            let candidate = match given[i].as_ref().and_then(|m| m.get(name)) {
                None => Some((i as u32, own[i].clone())),
                Some(Some(source)) => Some((i as u32, source.clone())),
                Some(None) => None,
            };
            if let Some((row, source)) = candidate {
                let newer = best[c]
                    .as_ref()
                    .is_none_or(|(_, b)| compare(&source, b) != Ordering::Less);
                if newer {
                    best[c] = Some((row, source));
                }
            }
            match &best[c] {
                Some((row, source)) => {
                    pick[c][i] = *row;
                    if compare(source, &own[i]) != Ordering::Equal {
                        carried.insert(name, source.clone());
                    }
                }
                None => {
                    carried.insert(name, Value::Null);
                }
            }
        }
        if !carried.is_empty() {
            out_sources[i] = Some(
                serde_json::to_string(&carried)
                    .map_err(|e| Error::invariant(format!("{VALUE_SOURCES}: {e}")))?,
            );
        }
    }
    let mut cols: Vec<ArrayRef> = sorted.columns().to_vec();
    for (c, (index, name)) in columns.iter().enumerate() {
        let taken = take(
            sorted.column(*index).as_ref(),
            &UInt32Array::from(std::mem::take(&mut pick[c])),
            None,
        )
        .map_err(|e| Error::arrow(format!("unavailable values of `{name}`"), e))?;
        cols[*index] = taken;
    }
    let at = schema
        .index_of(VALUE_SOURCES)
        .map_err(|e| Error::arrow(VALUE_SOURCES, e))?;
    let sources: ArrayRef = Arc::new(StringArray::from(out_sources));
    cols[at] =
        cast(&sources, schema.field(at).data_type()).map_err(|e| Error::arrow(VALUE_SOURCES, e))?;
    RecordBatch::try_new(schema, cols).map_err(|e| Error::arrow("unavailable values", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{ints, texts};
    use deltalake::arrow::array::Int64Array;
    use deltalake::arrow::datatypes::{Field, Schema};

    /// (id, seq, op, v or None when unavailable, bronze version)
    fn events(rows: &[(i64, i64, &str, Option<&str>, i64)]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("bio", DataType::Utf8, true),
            Field::new(SEQ, DataType::Int64, true),
            Field::new(OP, DataType::Utf8, false),
            Field::new(BRONZE_VERSION, DataType::Int64, false),
            Field::new(SOURCE_ROW, DataType::Int64, false),
            Field::new(VALUE_SOURCES, DataType::Utf8, true),
        ]);
        let sources: Vec<Option<&str>> = rows
            .iter()
            .map(|r| (r.3.is_none() && r.2 != "D").then_some(r#"{"bio":null}"#))
            .collect();
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.3).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.4).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(vec![1; rows.len()])),
                Arc::new(StringArray::from(sources)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn the_newest_earlier_value_fills_whatever_the_arrival_order() {
        let keys = ["id".to_string()];
        // Key 1: real at 10, unavailable at 20 and 30. Key 2: unavailable first, real value never.
        // Key 3: real at 5, delete at 6, insert at 7 unavailable (nothing carries over a delete).
        let e = events(&[
            (1, 30, "U", None, 3),
            (2, 4, "U", None, 1),
            (1, 10, "U", Some("a"), 5),
            (3, 7, "U", None, 1),
            (1, 20, "U", None, 1),
            (3, 5, "U", Some("x"), 1),
            (3, 6, "D", None, 1),
        ]);
        let f = fill(&e, &keys).unwrap();
        assert_eq!(ints(&f, SEQ), [10, 20, 30, 4, 5, 6, 7].map(Some));
        assert_eq!(
            texts(&f, "bio"),
            vec![
                Some("a".into()),
                Some("a".into()),
                Some("a".into()),
                None,
                Some("x".into()),
                None,
                None
            ]
        );
        let sources = texts(&f, VALUE_SOURCES);
        assert_eq!(sources[0], None, "its own value");
        assert_eq!(sources[1].as_deref(), Some(r#"{"bio":[10,5,1]}"#));
        assert_eq!(
            sources[3].as_deref(),
            Some(r#"{"bio":null}"#),
            "still unknown"
        );
        assert_eq!(
            sources[6].as_deref(),
            Some(r#"{"bio":null}"#),
            "a delete starts afresh"
        );
        // A row whose value came from seq 10 takes a late real value from seq 15 (newer source),
        // but not one from seq 8.
        let mut rows = f.slice(2, 1);
        let late = events(&[(1, 15, "U", Some("b"), 9), (1, 8, "U", Some("c"), 9)]);
        rows = deltalake::arrow::compute::concat_batches(&rows.schema(), [&rows, &late]).unwrap();
        let g = fill(&rows, &keys).unwrap();
        assert_eq!(ints(&g, SEQ), [8, 15, 30].map(Some));
        assert_eq!(texts(&g, "bio")[2].as_deref(), Some("b"));
        assert_eq!(
            texts(&g, VALUE_SOURCES)[2].as_deref(),
            Some(r#"{"bio":[15,9,1]}"#)
        );
    }
}
