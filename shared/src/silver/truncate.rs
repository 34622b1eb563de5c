//! Truncates (Debezium `t` under `truncate = "apply"`, the default): every row older than the truncate
//! is gone. The truncate's sequence becomes the table's horizon, kept in silver as the application
//! transaction `silver/<table>/truncated` (never expired, like the watermark): an event older than it
//! changes nothing whenever it arrives, a tombstone for every key at once, so a late update cannot
//! resurrect a truncated row.
//!
//! A new horizon is applied in a commit of its own before the step's MERGE: the rows older than it
//! deleted (the change data feed shows their deletes, so gold follows). It carries the watermark at
//! its current version, so a concurrent step conflicts and re-runs; a crash between it and the MERGE
//! re-runs the step, which finds the horizon already set. SCD type 2 tables do not apply truncates yet
//! (closing every current version and placing late history before the truncate): their truncate
//! events go to quarantine with that reason.

use deltalake::arrow::array::{AsArray, BooleanArray, RecordBatch};
use deltalake::arrow::compute::{cast, filter_record_batch};
use deltalake::arrow::datatypes::{DataType, Int64Type, TimeUnit};
use deltalake::datafusion::prelude::{col, lit};
use deltalake::datafusion::scalar::ScalarValue;
use deltalake::DeltaTable;
use serde_json::json;

use crate::cdc::SEQ;
use crate::config::{Location, TableConfig};
use crate::error::{Error, Result};
use crate::lake;
use crate::schema;

/// Application id of a silver table's truncate horizon.
pub fn horizon_app_id(table: &str) -> String {
    format!("silver/{table}/truncated")
}

fn sequences(batch: &RecordBatch) -> Result<Vec<Option<i64>>> {
    let seq = schema::column(batch, SEQ, "truncate")?;
    let seq = cast(&seq, &DataType::Int64).map_err(|e| Error::arrow("truncate sequence", e))?;
    Ok(seq.as_primitive::<Int64Type>().iter().collect())
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
/// watermark `mark` (at its current version). Returns the table after it.
pub(super) async fn apply(
    silver: DeltaTable,
    location: &Location,
    table: &TableConfig,
    seq_type: &DataType,
    horizon: i64,
    mark: Option<i64>,
) -> Result<DeltaTable> {
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
    let older = col(SEQ)
        .lt(lit(literal(seq_type, horizon)?))
        .or(col(SEQ).is_null());
    let before = silver.version();
    let (mut after, metrics) = silver
        .delete()
        .with_predicate(older)
        .with_commit_properties(props)
        .await
        .map_err(|e| Error::delta(location.url.to_string(), "truncate", e))?;
    if after.version() == before {
        // Nothing was older: delta-rs commits nothing, but the horizon must still be recorded.
        lake::commit_append(&mut after, Vec::new(), txns, metadata)
            .await
            .map_err(|e| Error::delta(location.url.to_string(), "truncate", e))?;
    }
    tracing::info!(table = %table.name, horizon, deleted = ?metrics.num_deleted_rows, version = ?after.version(), "silver truncated");
    Ok(after)
}
