//! Truncates (Debezium `t` under `truncate = "apply"`, the default): every row older than the truncate
//! is gone. The truncate's sequence becomes the table's horizon, kept in silver as the application
//! transaction `silver/<table>/truncated` (never expired, like the watermark): an event older than it
//! changes nothing whenever it arrives, a tombstone for every key at once, so a late update cannot
//! resurrect a truncated row.
//!
//! A new horizon is applied in a commit of its own before the step's MERGE: SCD1 deletes the rows
//! older than it; SCD2 ends every version alive at the truncate there (`valid_to` = the truncate,
//! `is_current` false). The change data feed shows it, so gold follows. The commit carries the
//! watermark at its current version, so a concurrent step conflicts and re-runs; a crash between it
//! and the MERGE re-runs the step, which finds the horizon already set.
//!
//! Events older than the horizon: SCD1 drops them (what they would change is gone); SCD2 keeps them
//! as history. An SCD2 step recomputes each touched key's history from its events, so every step after
//! a truncate adds, for each key of its batch, a delete at the truncate ([`with_deletes_at`]): the
//! versions before it end there, whatever arrives later. These deletes are the truncate's, at source
//! row [`TRUNCATE_ROW`] (real rows count from 1), and are not written as tombstones.

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray,
};
use deltalake::arrow::compute::{cast, concat_batches, filter_record_batch};
use deltalake::arrow::datatypes::{DataType, Int64Type, Schema, TimeUnit};
use deltalake::datafusion::prelude::{col, lit};
use deltalake::datafusion::scalar::ScalarValue;
use serde_json::json;

use super::Step;
use crate::cdc::{BRONZE_VERSION, OP, OP_DELETE, SEQ};
use crate::error::{Error, Result};
use crate::lake;
use crate::schema;
use crate::schema::{IS_CURRENT, SOURCE_ROW, VALID_FROM, VALID_TO};

/// Application id of a silver table's truncate horizon.
pub fn horizon_app_id(table: &str) -> String {
    format!("silver/{table}/truncated")
}

fn sequences(batch: &RecordBatch) -> Result<Vec<Option<i64>>> {
    let seq = schema::column(batch, SEQ, "truncate")?;
    let seq = cast(&seq, &DataType::Int64).map_err(|e| Error::arrow("truncate sequence", e))?;
    Ok(seq.as_primitive::<Int64Type>().iter().collect())
}

/// The source row of the deletes a truncate adds to an SCD2 batch.
pub const TRUNCATE_ROW: i64 = 0;

/// SCD2: `changes` with a delete at `horizon` for every key of the batch, so the recomputed history of
/// each ends its versions at the truncate.
pub(super) fn with_deletes_at(
    changes: &RecordBatch,
    horizon: i64,
    keys: &[String],
) -> Result<RecordBatch> {
    if changes.num_rows() == 0 {
        return Ok(changes.clone());
    }
    let keyed = crate::cdc::latest_per_key(changes, keys)?;
    let n = keyed.num_rows();
    let schema = changes.schema();
    let seq_type = schema
        .field_with_name(SEQ)
        .map_err(|e| Error::arrow("truncate", e))?
        .data_type()
        .clone();
    let at: ArrayRef = Arc::new(Int64Array::from(vec![horizon; n]));
    let at = cast(&at, &seq_type).map_err(|e| Error::arrow("truncate sequence", e))?;
    let loose = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    let keys_only = keyed
        .project(
            &keys
                .iter()
                .map(|k| keyed.schema().index_of(k))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::arrow("truncate", e))?,
        )
        .map_err(|e| Error::arrow("truncate", e))?;
    let deletes = schema::as_schema(&keys_only, &loose, |name, n| match name {
        SEQ => Some(at.clone()),
        OP => Some(Arc::new(StringArray::from(vec![OP_DELETE; n])) as ArrayRef),
        BRONZE_VERSION => Some(Arc::new(Int64Array::from(vec![0; n])) as ArrayRef),
        SOURCE_ROW => Some(Arc::new(Int64Array::from(vec![TRUNCATE_ROW; n])) as ArrayRef),
        _ => None,
    })?;
    let changes = schema::as_schema(changes, &loose, |_, _| None)?;
    concat_batches(&loose, [&changes, &deletes]).map_err(|e| Error::arrow("truncate", e))
}

/// `changes` without the events older than `horizon` (or without a sequence): the truncate removed
/// what they would have changed.
pub(super) fn drop_older(changes: &RecordBatch, horizon: i64) -> Result<RecordBatch> {
    let seqs = sequences(changes)?;
    let keep = BooleanArray::from(
        seqs.iter()
            .map(|s| s.is_some_and(|s| s >= horizon))
            .collect::<Vec<_>>(),
    );
    if keep.true_count() == keep.len() {
        return Ok(changes.clone());
    }
    filter_record_batch(changes, &keep).map_err(|e| Error::arrow("truncate", e))
}

/// The horizon as a literal of the sequence column's type.
fn literal(seq_type: &DataType, horizon: i64) -> Result<ScalarValue> {
    Ok(match seq_type {
        DataType::Int64 => ScalarValue::Int64(Some(horizon)),
        DataType::Int32 => ScalarValue::Int32(Some(i32::try_from(horizon).map_err(|_| {
            Error::invariant(format!("truncate sequence {horizon} out of the int range"))
        })?)),
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            ScalarValue::TimestampMicrosecond(Some(horizon), tz.clone())
        }
        other => {
            return Err(Error::invariant(format!(
                "a truncate needs an integer or timestamp sequence, not {other}"
            )))
        }
    })
}

/// Deletes silver's rows older than `horizon` and records the horizon, in one commit fenced by the
/// step's watermark (at its current version); the step's silver is then the table after it.
pub(super) async fn apply(step: &mut Step<'_>, horizon: i64) -> Result<()> {
    let (silver, location, table) = (step.silver.clone(), &step.silver_loc, step.table);
    let (seq_type, mark) = (step.normalizer.seq_type(), step.silver_wm);
    let mut txns = vec![lake::txn(horizon_app_id(&table.name), horizon)];
    if let Some(m) = mark {
        txns.push(lake::txn(super::watermark_app_id(&table.name), m));
    }
    let metadata = std::collections::HashMap::from([
        ("lakehouse.layer".to_string(), json!("silver_truncate")),
        ("lakehouse.table".to_string(), json!(table.name)),
        ("lakehouse.truncatedBefore".to_string(), json!(horizon)),
    ]);
    let props = lake::commit_properties()
        .with_application_transactions(txns.clone())
        .with_metadata(metadata.clone());
    let at = lit(literal(seq_type, horizon)?);
    let before = silver.version();
    let fail = |e| Error::delta(location.url.to_string(), "truncate", e);
    let (mut after, changed) = if table.scd_type == 2 {
        // Versions alive at the truncate end there.
        let alive = col(VALID_FROM)
            .lt(at.clone())
            .and(col(VALID_TO).is_null().or(col(VALID_TO).gt(at.clone())));
        let (after, metrics) = silver
            .update()
            .with_predicate(alive)
            .with_update(VALID_TO, at)
            .with_update(IS_CURRENT, lit(false))
            .with_commit_properties(props)
            .await
            .map_err(fail)?;
        (after, metrics.num_updated_rows)
    } else {
        let older = col(SEQ).lt(at).or(col(SEQ).is_null());
        let (after, metrics) = silver
            .delete()
            .with_predicate(older)
            .with_commit_properties(props)
            .await
            .map_err(fail)?;
        (after, metrics.num_deleted_rows.unwrap_or(0))
    };
    if after.version() == before {
        // Nothing was older: delta-rs commits nothing, but the horizon must still be recorded.
        lake::commit_append(&mut after, Vec::new(), txns, metadata)
            .await
            .map_err(|e| Error::delta(location.url.to_string(), "truncate", e))?;
    }
    tracing::info!(table = %table.name, horizon, rows = changed, version = ?after.version(), "silver truncated");
    step.silver = after;
    Ok(())
}
