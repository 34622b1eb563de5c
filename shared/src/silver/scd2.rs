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

use super::columns::{conform_all, silver_table_schema};
use crate::cdc::{self, Normalizer, BRONZE_VERSION, OP, OP_DELETE, SEQ};
use crate::config::TableConfig;
use crate::error::{Error, Result};
use crate::lake;
use crate::schema::{self, SOURCE_ROW};

pub use crate::lake::{ACTION, ACTION_DELETE, ACTION_UPSERT};
pub use crate::schema::{FOLDED, IS_CURRENT, VALID_FROM, VALID_TO};

/// The SCD2 silver schema: the SCD1 silver columns plus the validity columns (typed like the sequence),
/// and [`FOLDED`] when history is kept on selected columns only (`folds`).
pub fn history_schema(silver: &Schema, folds: bool) -> Result<Schema> {
    let seq = silver
        .field_with_name(SEQ)
        .map_err(|e| Error::arrow("SCD2 schema", e))?
        .data_type()
        .clone();
    let mut fields: Vec<Field> = silver.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(VALID_FROM, seq.clone(), false));
    fields.push(Field::new(VALID_TO, seq, true));
    fields.push(Field::new(IS_CURRENT, DataType::Boolean, false));
    if folds {
        fields.push(Field::new(FOLDED, DataType::Utf8, true));
    }
    Ok(Schema::new(fields))
}

/// The history rows of every key in `events` (change-schema rows: upserts and deletes, possibly several
/// per key and sequence; the last by bronze version and source row wins a tie). Rows come out as
/// `target` (a [`history_schema`]), in key then `valid_from` order. With `tracked` columns, consecutive
/// events of a key that agree on them make one version: it starts at the first (`valid_from`), holds
/// the last one's values, and keeps the earlier ones in [`FOLDED`] (so a late event can split it).
pub fn history(
    events: &RecordBatch,
    keys: &[String],
    target: &SchemaRef,
    tracked: Option<&[String]>,
) -> Result<RecordBatch> {
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
    let same_key = |i: usize, j: usize| j < n && key_rows.row(i) == key_rows.row(j);
    let tracked_rows = match tracked {
        Some(cols) => Some(schema::rows_of(&columns(&events, cols)?, "SCD2 tracked columns")?.1),
        None => None,
    };
    // Runs of events that make one version (one event each unless tracking folds them).
    let mut runs: Vec<Vec<usize>> = Vec::new();
    let mut i = 0;
    while i < n {
        if ops.value(i) == OP_DELETE {
            i += 1;
            continue;
        }
        let mut run = vec![i];
        while same_key(i, i + 1)
            && ops.value(i + 1) != OP_DELETE
            && tracked_rows
                .as_ref()
                .is_some_and(|t| t.row(i) == t.row(i + 1))
        {
            i += 1;
            run.push(i);
        }
        runs.push(run);
        i += 1;
    }
    let last = |r: &Vec<usize>| r[r.len() - 1];
    let versions: Vec<u32> = runs.iter().map(|r| last(r) as u32).collect();
    let firsts: Vec<u32> = runs.iter().map(|r| r[0] as u32).collect();
    let successors: Vec<Option<u32>> = runs
        .iter()
        .map(|r| same_key(last(r), last(r) + 1).then_some(last(r) as u32 + 1))
        .collect();
    let rows = take_record_batch(&events, &UInt32Array::from(versions))
        .map_err(|e| Error::arrow("SCD2 versions", e))?;
    let seq = column(&events, SEQ)?;
    let valid_to = take(seq.as_ref(), &UInt32Array::from(successors.clone()), None)
        .map_err(|e| Error::arrow("SCD2 valid_to", e))?;
    let is_current: ArrayRef = Arc::new(BooleanArray::from(
        successors.iter().map(Option::is_none).collect::<Vec<_>>(),
    ));
    let valid_from = take(seq.as_ref(), &UInt32Array::from(firsts), None)
        .map_err(|e| Error::arrow("SCD2 valid_from", e))?;
    let folded: ArrayRef = Arc::new(StringArray::from(
        runs.iter()
            .map(|r| fold(&events, &r[..r.len() - 1]))
            .collect::<Result<Vec<_>>>()?,
    ));
    let cols = target
        .fields()
        .iter()
        .map(|f| {
            let c = match f.name().as_str() {
                VALID_FROM => valid_from.clone(),
                VALID_TO => valid_to.clone(),
                IS_CURRENT => is_current.clone(),
                FOLDED => folded.clone(),
                name => column(&rows, name)?,
            };
            cast(&c, f.data_type()).map_err(|e| Error::arrow("SCD2 history", e))
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(target.clone(), cols).map_err(|e| Error::arrow("SCD2 history", e))
}

/// The events folded into a version (`rows` of `events`, without their op) as a JSON array of objects;
/// `None` when there are none.
fn fold(events: &RecordBatch, rows: &[usize]) -> Result<Option<String>> {
    if rows.is_empty() {
        return Ok(None);
    }
    let idx = UInt32Array::from(rows.iter().map(|&i| i as u32).collect::<Vec<_>>());
    let picked =
        take_record_batch(events, &idx).map_err(|e| Error::arrow("SCD2 folded events", e))?;
    let keep: Vec<usize> = (0..picked.num_columns())
        .filter(|&c| picked.schema().field(c).name() != OP)
        .collect();
    let picked = picked
        .project(&keep)
        .map_err(|e| Error::arrow("SCD2 folded events", e))?;
    let mut writer = deltalake::arrow::json::ArrayWriter::new(Vec::new());
    writer
        .write(&picked)
        .and_then(|()| writer.finish())
        .map_err(|e| Error::arrow("SCD2 folded events", e))?;
    String::from_utf8(writer.into_inner())
        .map(Some)
        .map_err(|e| Error::invariant(format!("SCD2 folded events: {e}")))
}

/// The events a version's [`FOLDED`] holds, as rows of `schema` (the events' columns; the op filled in
/// as an upsert).
fn unfold(existing: &RecordBatch, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let Some(folded) = existing.column_by_name(FOLDED) else {
        return Ok(Vec::new());
    };
    let folded = cast(folded, &DataType::Utf8).map_err(|e| Error::arrow(FOLDED, e))?;
    let mut lines = String::new();
    for text in folded.as_string::<i32>().iter().flatten() {
        let events: Vec<&serde_json::value::RawValue> = serde_json::from_str(text)
            .map_err(|e| Error::invariant(format!("{FOLDED} is not a JSON array: {e}")))?;
        for e in events {
            lines.push_str(e.get());
            lines.push('\n');
        }
    }
    if lines.is_empty() {
        return Ok(Vec::new());
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .filter(|f| f.name() != OP)
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    let reader = deltalake::arrow::json::ReaderBuilder::new(Arc::new(Schema::new(fields)))
        .build(std::io::Cursor::new(lines.into_bytes()))
        .map_err(|e| Error::arrow(FOLDED, e))?;
    let upsert = |name: &str, n: usize| {
        (name == OP).then(|| Arc::new(StringArray::from(vec![cdc::OP_UPSERT; n])) as ArrayRef)
    };
    reader
        .map(|b| {
            let b = b.map_err(|e| Error::arrow(FOLDED, e))?;
            schema::as_schema(&b, schema, upsert)
        })
        .collect()
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
    // A folding version's values follow from its last event and what it folded.
    if wanted.column_by_name(FOLDED).is_some() {
        state_cols.extend([SEQ.to_string(), FOLDED.to_string()]);
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
    step: &super::Step<'_>,
    changes: &RecordBatch,
) -> Result<RecordBatch> {
    let (silver, silver_loc, tombs, tomb_loc) = (
        &step.silver,
        &step.silver_loc,
        step.tombs.as_ref(),
        &step.tomb_loc,
    );
    let (normalizer, table) = (&step.normalizer, step.table);
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
    // The events folded into existing versions count as events again (a late one may split them).
    parts.extend(unfold(&existing, &events_schema)?);
    for b in &stones {
        parts.push(schema::as_schema(b, &events_schema, op(OP_DELETE))?);
    }
    let events = concat_batches(&events_schema, &parts)
        .map_err(|e| Error::arrow("collecting SCD2 events", e))?;
    let tracked = table
        .folds_history()
        .then(|| tracked_columns(normalizer, table));
    let wanted = history(&events, keys, &target, tracked.as_deref())?;
    diff(&existing, &wanted, keys)
}

/// The row columns whose changes make a new version.
fn tracked_columns(normalizer: &Normalizer, table: &TableConfig) -> Vec<String> {
    normalizer
        .row_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|c| !table.keys.contains(c) && table.sequence_by.as_ref() != Some(c))
        .filter(|c| match table.track_history_columns.is_empty() {
            false => table.track_history_columns.contains(c),
            true => !table.except_history_columns.contains(c),
        })
        .collect()
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
        Arc::new(history_schema(&silver, false).unwrap())
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
        let h = history(&e, &["id".to_string()], &target(), None).unwrap();
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
            None,
        )
        .unwrap();
        // A late event at 15 splits [10, 20); a tie at 20 from a later bronze version replaces it.
        let after = history(
            &events(&[(1, 10, "U", 1), (1, 15, "U", 2), (1, 20, "U", 3)]),
            &keys,
            &target(),
            None,
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
            None,
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
