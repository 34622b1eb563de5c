//! SCD1 and values a source did not send (see [`crate::cdc::unavailable`]): the batch's changes have
//! been resolved among themselves; here they are resolved against the rows already in silver. Read
//! from silver: the rows of the batch's keys whose change lacks a value, and, while silver holds any
//! row still waiting for one (its [`VALUE_SOURCES`] statistics say so), the rows of every key of the
//! batch, since a late event may bring the value such a row waits for.
//!
//! A change newer than its row takes the row's value for each column where the row's is newer. A
//! change older than its row still gives the row each value newer than the row's own source; the row
//! then goes to the MERGE as its own event with the step's bronze version (so it wins the tie). A row
//! that gains nothing is left out.

use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray, UInt32Array,
};
use deltalake::arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use deltalake::arrow::datatypes::{DataType, Field, Schema};

use super::Step;
use crate::cdc::unavailable::{self, VALUE_SOURCES};
use crate::cdc::{self, BRONZE_VERSION, OP, OP_UPSERT};
use crate::error::{Error, Result};
use crate::lake;
use crate::schema;

/// Marks the rows read from silver while resolving (dropped before the MERGE).
const FROM_SILVER: &str = "_lakehouse_from_silver";
/// Each row's position before resolving.
const POSITION: &str = "_lakehouse_position";

/// `changes` (one per key, SCD1) with the values they lack taken from silver where silver's are
/// newer, plus the silver rows that a late change completes.
pub(super) async fn resolve(step: &Step<'_>, changes: RecordBatch) -> Result<RecordBatch> {
    let (silver, location, table) = (&step.silver, &step.silver_loc, step.table);
    // The bronze version this step applies up to.
    let step_version = step.latest;
    let Some(sources) = changes.column_by_name(VALUE_SOURCES).cloned() else {
        return Ok(changes);
    };
    if changes.num_rows() == 0 {
        return Ok(changes);
    }
    let wanted = if lake::column_has_values(silver, location, VALUE_SOURCES)? {
        changes.clone()
    } else {
        let lacking = BooleanArray::from(
            (0..sources.len())
                .map(|i| sources.is_valid(i))
                .collect::<Vec<_>>(),
        );
        filter_record_batch(&changes, &lacking).map_err(|e| Error::arrow("lacking values", e))?
    };
    if wanted.num_rows() == 0 {
        return Ok(changes);
    }
    let rows = lake::scan_keys(silver, location, &wanted, &table.keys).await?;
    if rows.iter().all(|b| b.num_rows() == 0) {
        return Ok(changes);
    }
    // Silver rows and changes as one set of events, marked by origin and numbered.
    let mut fields: Vec<Field> = changes
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    fields.push(Field::new(FROM_SILVER, DataType::Boolean, false));
    let marked = Arc::new(Schema::new(fields));
    let mut parts = vec![schema::as_schema(&changes, &marked, |name, n| {
        (name == FROM_SILVER).then(|| Arc::new(BooleanArray::from(vec![false; n])) as ArrayRef)
    })?];
    for b in &rows {
        parts.push(schema::as_schema(b, &marked, |name, n| match name {
            FROM_SILVER => Some(Arc::new(BooleanArray::from(vec![true; n])) as ArrayRef),
            OP => Some(Arc::new(StringArray::from(vec![OP_UPSERT; n])) as ArrayRef),
            _ => None,
        })?);
    }
    let all = concat_batches(&marked, &parts).map_err(|e| Error::arrow("resolving values", e))?;
    let numbered = with_column(
        &all,
        Field::new(POSITION, DataType::Int64, false),
        Arc::new(Int64Array::from_iter_values(0..all.num_rows() as i64)),
    )?;
    let filled = unavailable::fill(&numbered, &table.keys)?;
    let last = cdc::latest_per_key(&filled, &table.keys)?;

    // Keep every resolved change; keep a silver row only if resolving changed it.
    let from_silver = schema::column(&last, FROM_SILVER, "resolving values")?;
    let from_silver = from_silver.as_boolean();
    let position = schema::column(&last, POSITION, "resolving values")?;
    let position = position.as_primitive::<deltalake::arrow::datatypes::Int64Type>();
    let compared: Vec<String> = all
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n != FROM_SILVER && n != OP)
        .collect();
    let originals = take_record_batch(
        &all,
        &UInt32Array::from(
            (0..last.num_rows())
                .map(|i| position.value(i) as u32)
                .collect::<Vec<_>>(),
        ),
    )
    .map_err(|e| Error::arrow("resolving values", e))?;
    let (_, before) = schema::rows_of(
        &schema::columns(&originals, &compared, "resolving values")?,
        "resolving values",
    )?;
    let (_, after) = schema::rows_of(
        &schema::columns(&last, &compared, "resolving values")?,
        "resolving values",
    )?;
    let keep = BooleanArray::from(
        (0..last.num_rows())
            .map(|i| !from_silver.value(i) || before.row(i) != after.row(i))
            .collect::<Vec<_>>(),
    );
    let kept =
        filter_record_batch(&last, &keep).map_err(|e| Error::arrow("resolving values", e))?;
    // A completed silver row is this step's event: the step's bronze version makes it win the tie
    // with the row it replaces.
    let completed = schema::column(&kept, FROM_SILVER, "resolving values")?;
    let completed = completed.as_boolean();
    let versions = schema::column(&kept, BRONZE_VERSION, "resolving values")?;
    let versions = versions.as_primitive::<deltalake::arrow::datatypes::Int64Type>();
    let versions: ArrayRef = Arc::new(Int64Array::from_iter_values((0..kept.num_rows()).map(
        |i| {
            if completed.value(i) {
                step_version
            } else {
                versions.value(i)
            }
        },
    )));
    let kept = with_column(
        &kept,
        Field::new(BRONZE_VERSION, DataType::Int64, false),
        versions,
    )?;
    schema::as_schema(&kept, &changes.schema(), |_, _| None)
}

/// `batch` with column `field` set to `values` (replaced, or appended).
fn with_column(batch: &RecordBatch, field: Field, values: ArrayRef) -> Result<RecordBatch> {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns = batch.columns().to_vec();
    match fields.iter().position(|f| f.name() == field.name()) {
        Some(i) => {
            fields[i] = field;
            columns[i] = values;
        }
        None => {
            fields.push(field);
            columns.push(values);
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::arrow("resolving values", e))
}
