//! How a silver step's changes reach the table, keeping silver clustered by key so a step's cost
//! follows its batch, not the table.
//!
//! - [`lake::keyed_join`] (in the step): from the files' key statistics, which files the batch's keys
//!   may touch, and the join restricted to them.
//! - [`append_new`]: SCD1 changes whose keys no file can hold are new rows: written sorted by key into
//!   new files of the table's target size and appended (no MERGE, nothing read, nothing rewritten).
//! - [`merge_into`] (SCD1) and [`merge_history`] (SCD2): one MERGE whose join is restricted to the key
//!   ranges of the touched files, so delta-rs skips every other file by its statistics and rewrites
//!   only the touched ones. SCD1 updates or deletes only when the event is newer than the row (sequence,
//!   then bronze version, then source row), so out-of-order delivery is safe; SCD2 applies the
//!   recomputed history rows ([`super::scd2`]) by key and `valid_from`.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::Transaction;
use deltalake::operations::merge::MergeMetrics;
use deltalake::DeltaTable;

use super::columns::{silver_schema, silver_table_schema};
use super::scd2;
use super::tombstones::only_upserts;
use super::Step;
use crate::cdc::{BRONZE_VERSION, OP, OP_DELETE, SEQ};
use crate::error::{Error, Result};
use crate::lake::{self, quote, Touched};
use crate::schema::{self, SOURCE_ROW};

/// `s` is newer than `t`: by sequence (nulls lowest), then bronze version, then source row.
fn newer() -> String {
    let (seq, bv, row) = (quote(SEQ), quote(BRONZE_VERSION), quote(SOURCE_ROW));
    format!(
        "(s.{seq} > t.{seq}) OR (t.{seq} IS NULL AND s.{seq} IS NOT NULL) OR \
         ((s.{seq} = t.{seq} OR (s.{seq} IS NULL AND t.{seq} IS NULL)) AND \
          (s.{bv} > t.{bv} OR (s.{bv} = t.{bv} AND s.{row} > t.{row})))"
    )
}

/// SCD1: one MERGE of the latest event per key; update or delete only when the event is newer.
pub(super) async fn merge_into(
    step: &Step<'_>,
    changes: &RecordBatch,
    join: String,
    props: CommitProperties,
) -> Result<(DeltaTable, MergeMetrics)> {
    let (silver, location, normalizer) = (step.silver.clone(), &step.silver_loc, &step.normalizer);
    let is_delete = format!("s.{} = '{OP_DELETE}'", quote(OP));
    let is_upsert = format!("s.{} <> '{OP_DELETE}'", quote(OP));
    let clauses = lake::MergeClauses {
        on: join,
        delete_when: format!("{is_delete} AND ({})", newer()),
        update_when: format!("{is_upsert} AND ({})", newer()),
        insert_when: is_upsert,
    };
    let columns = silver_schema(normalizer);
    lake::run_merge(silver, changes.clone(), &columns, clauses, props)
        .await
        .map_err(|e| Error::delta(location.url.to_string(), "merge", e))
}

/// SCD2: applies [`scd2::history_changes`] by key and `valid_from`.
pub(super) async fn merge_history(
    step: &Step<'_>,
    source: RecordBatch,
    join: String,
    props: CommitProperties,
) -> Result<(DeltaTable, MergeMetrics)> {
    let (silver, location) = (step.silver.clone(), &step.silver_loc);
    let (normalizer, table) = (&step.normalizer, step.table);
    if source.num_rows() == 0 {
        return Ok((silver, MergeMetrics::default()));
    }
    let clauses = lake::MergeClauses {
        on: format!("{join} AND t.{vf} = s.{vf}", vf = quote(scd2::VALID_FROM)),
        delete_when: lake::action_is(lake::ACTION_DELETE),
        update_when: lake::action_is(lake::ACTION_UPSERT),
        insert_when: lake::action_is(lake::ACTION_UPSERT),
    };
    let columns = silver_table_schema(normalizer, table)?;
    lake::run_merge(silver, source, &columns, clauses, props)
        .await
        .map_err(|e| Error::delta(location.url.to_string(), "merge (SCD2)", e))
}

/// Rows per write call when appending: small enough that files roll close to the target size.
fn slice_rows(batch: &RecordBatch, target_file_size: u64) -> usize {
    let row_bytes = (batch.get_array_memory_size() / batch.num_rows().max(1)).max(1) as u64;
    ((target_file_size / row_bytes / 4) as usize).clamp(16, 65_536)
}

/// SCD1 changes that no file can hold (every key new): their upserts, sorted by key, appended as new
/// files with the watermark in the same commit. Deletes of keys silver never had change nothing.
pub(super) async fn append_new(
    step: &Step<'_>,
    changes: &RecordBatch,
    txns: Vec<Transaction>,
    metadata: HashMap<String, serde_json::Value>,
) -> Result<(DeltaTable, MergeMetrics)> {
    let (mut silver, location) = (step.silver.clone(), &step.silver_loc);
    let (normalizer, table) = (&step.normalizer, step.table);
    let rows = lake::sorted_by_keys(&only_upserts(changes)?, &table.keys)?;
    let target = Arc::new(silver_table_schema(normalizer, table)?);
    let rows = schema::as_schema(&rows, &target, |_, _| None)?;
    let per = slice_rows(&rows, table.target_file_size);
    let slices = (0..rows.num_rows())
        .step_by(per)
        .map(|at| rows.slice(at, per.min(rows.num_rows() - at)));
    let adds = lake::write_batches(
        &silver,
        location,
        slices,
        Some(table.target_file_size),
        &step.unique,
    )
    .await?;
    let metrics = MergeMetrics {
        num_source_rows: changes.num_rows(),
        num_target_rows_inserted: rows.num_rows(),
        num_output_rows: rows.num_rows(),
        num_target_files_added: adds.len(),
        ..Default::default()
    };
    // The same record a MERGE commit carries, so every silver commit says what it touched.
    let mut metadata = metadata;
    if let Ok(m) = serde_json::to_value(&metrics) {
        metadata.insert("operationMetrics".to_string(), m);
    }
    lake::commit_append(&mut silver, adds, txns, metadata)
        .await
        .map_err(|e| Error::delta(location.url.to_string(), "commit", e))?;
    Ok((silver, metrics))
}

/// The plan as commit metadata and log fields.
pub(super) fn plan_json(plan: Option<&Touched>, path: &str) -> serde_json::Value {
    match plan {
        Some(p) => serde_json::json!({
            "path": path, "files": p.total, "touchedFiles": p.files, "filesWithoutStats": p.unknown,
            "keyRanges": p.ranges.len(),
        }),
        None => serde_json::json!({ "path": path, "files": 0 }),
    }
}
