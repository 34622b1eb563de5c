//! SCD type 2: a silver table keeps every version of a row, `valid_from` (the event's sequence),
//! `valid_to` (the next event's sequence for that key, whether an update or a delete; null while current)
//! and `is_current`.
//!
//! Out-of-order safe by construction: a step does not patch the newest version, it recomputes the whole
//! history of every key the batch touches from all that key's events (the versions already in silver,
//! the delete tombstones, and the batch), then MERGEs only the rows that differ. A late event therefore
//! lands between the versions it belongs between and shortens its predecessor's `valid_to`.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use deltalake::arrow::compute::{cast, concat_batches, take, take_record_batch};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::arrow::row::{RowConverter, Rows};

use deltalake::arrow::array::StringArray;
use deltalake::DeltaTable;

use super::columns::{conform_all, silver_table_schema};
use crate::cdc::{self, Normalizer, BRONZE_VERSION, OP, OP_DELETE, SEQ};
use crate::config::{Location, TableConfig};
use crate::error::{Error, Result};
use crate::lake;
use crate::schema::{self, SOURCE_ROW};

pub use crate::lake::{ACTION, ACTION_DELETE, ACTION_UPSERT};
pub use crate::schema::{IS_CURRENT, VALID_FROM, VALID_TO};

/// The SCD2 silver schema: the SCD1 silver columns plus the validity columns (typed like the sequence).
pub fn history_schema(silver: &Schema) -> Result<Schema> {
    let seq = silver
        .field_with_name(SEQ)
        .map_err(|e| Error::arrow("SCD2 schema", e))?
        .data_type()
        .clone();
    let mut fields: Vec<Field> = silver.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(VALID_FROM, seq.clone(), false));
    fields.push(Field::new(VALID_TO, seq, true));
    fields.push(Field::new(IS_CURRENT, DataType::Boolean, false));
    Ok(Schema::new(fields))
}

/// The history rows of every key in `events` (change-schema rows: upserts and deletes, possibly several
/// per key and sequence; the last by bronze version and source row wins a tie). Rows come out as
/// `target` (a [`history_schema`]), in key then `valid_from` order.
pub fn history(events: &RecordBatch, keys: &[String], target: &SchemaRef) -> Result<RecordBatch> {
    let mut group = keys.to_vec();
    group.push(SEQ.to_string());
    // Values an event did not send come from the version before it (recomputed, so a late event
    // that brings a value fills the versions after it).
    let events = cdc::unavailable::fill(events, keys)?;
    // One event per key and sequence, sorted by key then sequence.
    let events = cdc::latest_per_key(&events, &group)?;
    let key_rows = key_rows(&events, keys)?;
    let ops = events
        .column_by_name(OP)
        .map(|c| cast(c, &DataType::Utf8))
        .transpose()
        .map_err(|e| Error::arrow("SCD2 ops", e))?
        .ok_or_else(|| Error::invariant("SCD2 events without _op"))?;
    let ops = ops.as_string::<i32>();
    let n = events.num_rows();
    let mut versions = Vec::new();
    let mut successors = Vec::new();
    for i in (0..n).filter(|&i| ops.value(i) != OP_DELETE) {
        versions.push(i as u32);
        let same_key_next = i + 1 < n && key_rows.row(i) == key_rows.row(i + 1);
        successors.push(same_key_next.then_some(i as u32 + 1));
    }
    let rows = take_record_batch(&events, &UInt32Array::from(versions))
        .map_err(|e| Error::arrow("SCD2 versions", e))?;
    let seq = column(&events, SEQ)?;
    let valid_to = take(seq.as_ref(), &UInt32Array::from(successors.clone()), None)
        .map_err(|e| Error::arrow("SCD2 valid_to", e))?;
    let is_current: ArrayRef = Arc::new(BooleanArray::from(
        successors.iter().map(Option::is_none).collect::<Vec<_>>(),
    ));
    let valid_from = column(&rows, SEQ)?;
    let cols = target
        .fields()
        .iter()
        .map(|f| {
            let c = match f.name().as_str() {
                VALID_FROM => valid_from.clone(),
                VALID_TO => valid_to.clone(),
                IS_CURRENT => is_current.clone(),
                name => column(&rows, name)?,
            };
            cast(&c, f.data_type()).map_err(|e| Error::arrow("SCD2 history", e))
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(target.clone(), cols).map_err(|e| Error::arrow("SCD2 history", e))
}

/// What the MERGE must do to turn `existing` (the history rows of the touched keys now in silver) into
/// `wanted` (their recomputed history): rows to upsert (new or changed versions) and rows to delete
/// (versions that no longer exist), as one batch with an [`ACTION`] column. Unchanged versions are left
/// out so the MERGE touches only what moved.
pub fn diff(existing: &RecordBatch, wanted: &RecordBatch, keys: &[String]) -> Result<RecordBatch> {
    let mut id_cols = keys.to_vec();
    id_cols.push(VALID_FROM.to_string());
    let mut state_cols: Vec<String> = [VALID_TO, IS_CURRENT, BRONZE_VERSION, SOURCE_ROW]
        .map(String::from)
        .to_vec();
    // A version's values follow from its event, except those it carries from another one.
    if wanted
        .column_by_name(cdc::unavailable::VALUE_SOURCES)
        .is_some()
    {
        state_cols.push(cdc::unavailable::VALUE_SOURCES.to_string());
    }
    let existing = crate::schema::as_schema(existing, wanted.schema_ref(), |_, _| None)?;
    let (id_conv, new_ids) = schema::rows_of(&columns(wanted, &id_cols)?, "SCD2 ids")?;
    let (state_conv, new_state) = schema::rows_of(&columns(wanted, &state_cols)?, "SCD2 state")?;
    let convert = |conv: &RowConverter, b: &RecordBatch, names: &[String]| -> Result<Rows> {
        conv.convert_columns(&columns(b, names)?)
            .map_err(|e| Error::arrow("SCD2 diff", e))
    };
    let (old_ids, old_state) = (
        convert(&id_conv, &existing, &id_cols)?,
        convert(&state_conv, &existing, &state_cols)?,
    );
    let old: HashMap<&[u8], usize> = (0..existing.num_rows())
        .map(|i| (old_ids.row(i).data(), i))
        .collect();
    let upserts: Vec<u32> = (0..wanted.num_rows())
        .filter(|&i| {
            old.get(new_ids.row(i).data())
                .is_none_or(|&j| old_state.row(j) != new_state.row(i))
        })
        .map(|i| i as u32)
        .collect();
    let kept: std::collections::HashSet<&[u8]> = (0..wanted.num_rows())
        .map(|i| new_ids.row(i).data())
        .collect();
    let deletes: Vec<u32> = (0..existing.num_rows())
        .filter(|&j| !kept.contains(old_ids.row(j).data()))
        .map(|j| j as u32)
        .collect();
    let tagged = |b: &RecordBatch, idx: Vec<u32>, action: &str| -> Result<RecordBatch> {
        let rows = take_record_batch(b, &UInt32Array::from(idx))
            .map_err(|e| Error::arrow("SCD2 diff", e))?;
        crate::lake::tag(&rows, action)
    };
    let up = tagged(wanted, upserts, ACTION_UPSERT)?;
    let down = tagged(&existing, deletes, ACTION_DELETE)?;
    concat_batches(up.schema_ref(), [&up, &down]).map_err(|e| Error::arrow("SCD2 diff", e))
}

fn column(b: &RecordBatch, name: &str) -> Result<ArrayRef> {
    schema::column(b, name, "SCD2")
}

fn columns(b: &RecordBatch, names: &[String]) -> Result<Vec<ArrayRef>> {
    schema::columns(b, names, "SCD2")
}

fn key_rows(b: &RecordBatch, keys: &[String]) -> Result<Rows> {
    Ok(schema::rows_of(&columns(b, keys)?, "SCD2 keys")?.1)
}

/// SCD2: the rows that turn the touched keys' history in silver into their recomputed history
/// ([`scd2::history`] over the versions in silver, the tombstones and the batch), tagged upsert/delete.
pub(super) async fn history_changes(
    silver: &DeltaTable,
    silver_loc: &Location,
    changes: &RecordBatch,
    tombs: Option<&DeltaTable>,
    tomb_loc: &Location,
    normalizer: &Normalizer,
    table: &TableConfig,
) -> Result<RecordBatch> {
    let keys = &table.keys;
    let target = Arc::new(silver_table_schema(normalizer, table)?);
    let loose = |schema: &Schema| {
        Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ))
    };
    let events_schema = loose(&normalizer.change_schema());
    let op = |op: &'static str| {
        move |name: &str, n: usize| {
            (name == OP).then(|| Arc::new(StringArray::from(vec![op; n])) as ArrayRef)
        }
    };
    let none = |_: &str, _: usize| None;
    // Every key's other events: its versions in silver (each an upsert at `valid_from` = `_seq`) and
    // its tombstones. Keys outside the batch that an IN-list lets through get their own history back
    // unchanged, so the diff leaves them alone.
    let existing = conform_all(
        &lake::scan_keys(silver, silver_loc, changes, keys).await?,
        &target,
    )?;
    let stones = match tombs {
        Some(t) => lake::scan_keys(t, tomb_loc, changes, keys).await?,
        None => Vec::new(),
    };
    let mut parts = vec![
        schema::as_schema(changes, &events_schema, none)?,
        schema::as_schema(&existing, &events_schema, op(cdc::OP_UPSERT))?,
    ];
    for b in &stones {
        parts.push(schema::as_schema(b, &events_schema, op(OP_DELETE))?);
    }
    let events = concat_batches(&events_schema, &parts)
        .map_err(|e| Error::arrow("collecting SCD2 events", e))?;
    let wanted = history(&events, keys, &target)?;
    diff(&existing, &wanted, keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::ints;
    use deltalake::arrow::array::Int64Array;

    fn events(rows: &[(i64, i64, &str, i64)]) -> RecordBatch {
        // (id, seq, op, bronze_version)
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Int64, true),
            Field::new(SEQ, DataType::Int64, true),
            Field::new(OP, DataType::Utf8, false),
            Field::new(BRONZE_VERSION, DataType::Int64, false),
            Field::new(SOURCE_ROW, DataType::Int64, false),
        ]);
        let col = |f: fn(&(i64, i64, &str, i64)) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from(rows.iter().map(f).collect::<Vec<_>>()))
        };
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                col(|r| r.0),
                col(|r| r.1 * 100),
                col(|r| r.1),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
                col(|r| r.3),
                col(|_| 1),
            ],
        )
        .unwrap()
    }

    fn target() -> SchemaRef {
        let silver = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Int64, true),
            Field::new(SEQ, DataType::Int64, true),
            Field::new(BRONZE_VERSION, DataType::Int64, false),
            Field::new(SOURCE_ROW, DataType::Int64, false),
        ]);
        Arc::new(history_schema(&silver).unwrap())
    }

    fn actions_of(b: &RecordBatch) -> Vec<&str> {
        b.column_by_name(ACTION)
            .unwrap()
            .as_string::<i32>()
            .iter()
            .map(Option::unwrap)
            .collect()
    }

    #[test]
    fn versions_close_at_the_next_event_and_deletes_end_a_key() {
        // Key 1: 10, late 5, delete at 20, re-insert at 30. Key 2: 7 twice (later bronze version wins).
        let e = events(&[
            (1, 10, "U", 1),
            (2, 7, "U", 1),
            (1, 20, "D", 2),
            (1, 5, "U", 3),
            (1, 30, "U", 3),
            (2, 7, "U", 4),
        ]);
        let h = history(&e, &["id".to_string()], &target()).unwrap();
        assert_eq!(ints(&h, "id"), [1, 1, 1, 2].map(Some));
        assert_eq!(ints(&h, VALID_FROM), [5, 10, 30, 7].map(Some));
        assert_eq!(ints(&h, VALID_TO), vec![Some(10), Some(20), None, None]);
        assert_eq!(ints(&h, BRONZE_VERSION), [3, 1, 3, 4].map(Some));
        let current: Vec<bool> = h
            .column_by_name(IS_CURRENT)
            .unwrap()
            .as_boolean()
            .iter()
            .map(Option::unwrap)
            .collect();
        assert_eq!(current, vec![false, false, true, true]);
    }

    #[test]
    fn diff_keeps_only_what_moved() {
        let keys = ["id".to_string()];
        let before = history(
            &events(&[(1, 10, "U", 1), (1, 20, "U", 1)]),
            &keys,
            &target(),
        )
        .unwrap();
        // A late event at 15 splits [10, 20); a tie at 20 from a later bronze version replaces it.
        let after = history(
            &events(&[(1, 10, "U", 1), (1, 15, "U", 2), (1, 20, "U", 3)]),
            &keys,
            &target(),
        )
        .unwrap();
        let d = diff(&before, &after, &keys).unwrap();
        let actions = actions_of(&d);
        assert_eq!(
            ints(&d, VALID_FROM),
            [10, 15, 20].map(Some),
            "10 closes earlier, 15 is new, 20 changed source"
        );
        assert_eq!(actions, ["U", "U", "U"]);
        // A version that disappears (its event lost a tie to a delete) is deleted.
        let gone = history(
            &events(&[(1, 10, "U", 1), (1, 20, "D", 5)]),
            &keys,
            &target(),
        )
        .unwrap();
        let d = diff(&before, &gone, &keys).unwrap();
        let actions = actions_of(&d);
        assert_eq!(
            ints(&d, VALID_FROM),
            [20].map(Some),
            "[10, 20) is unchanged"
        );
        assert_eq!(actions, ["D"]);
        assert!(diff(&before, &before, &keys).unwrap().num_rows() == 0);
    }
}
