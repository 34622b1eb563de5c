//! Writing to a table: new Parquet files (not yet committed) and the blind-append commit that adds
//! them with application transactions (the idempotency and watermark markers) in one atomic step.

use std::collections::HashMap;

use deltalake::arrow::array::RecordBatch;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};

use crate::error::{Error, Result};
use crate::storage::Location;

/// An application transaction stamped now (so `delta.setTransactionRetentionDuration` can expire it).
pub fn txn(app_id: impl ToString, version: i64) -> Transaction {
    Transaction::new_with_last_update(app_id, version, Some(chrono::Utc::now().timestamp_millis()))
}

/// Commits `adds` as one blind append carrying `txns` and commitInfo `metadata`. A concurrent commit that
/// set one of the same `txns` makes this fail with a conflict (see [`is_conflict`]).
pub async fn commit_append(
    table: &mut DeltaTable,
    adds: Vec<Add>,
    txns: Vec<Transaction>,
    metadata: HashMap<String, serde_json::Value>,
) -> std::result::Result<i64, DeltaTableError> {
    let snapshot = table.snapshot()?;
    let partition_cols: Vec<String> = snapshot.metadata().partition_columns().to_vec();
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: (!partition_cols.is_empty()).then_some(partition_cols),
        predicate: None,
    };
    let props = CommitProperties::default()
        .with_application_transactions(txns)
        .with_metadata(metadata);
    let finalized = CommitBuilder::from(props)
        .with_actions(adds.into_iter().map(Action::Add).collect())
        .build(Some(snapshot), table.log_store(), operation)
        .await?;
    let version = finalized.version();
    table.update_state().await?;
    Ok(version as i64)
}

/// A parquet writer for new files of `table`, rolling over at `target_file_size` bytes.
pub fn new_writer(
    table: &DeltaTable,
    location: &Location,
    target_file_size: Option<u64>,
) -> Result<RecordBatchWriter> {
    let writer = RecordBatchWriter::for_table(table)
        .map_err(|e| Error::delta(location.url.to_string(), "write", e))?;
    Ok(match target_file_size {
        Some(size) => writer.with_target_file_size(size),
        None => writer,
    })
}

/// Writes `batches` as new files of `table` (not committed).
pub async fn write_batches(
    table: &DeltaTable,
    location: &Location,
    batches: impl IntoIterator<Item = RecordBatch>,
    target_file_size: Option<u64>,
) -> Result<Vec<Add>> {
    let mut writer = new_writer(table, location, target_file_size)?;
    for b in batches {
        writer
            .write(b)
            .await
            .map_err(|e| Error::delta(location.url.to_string(), "write", e))?;
    }
    writer
        .flush()
        .await
        .map_err(|e| Error::delta(location.url.to_string(), "write", e))
}
