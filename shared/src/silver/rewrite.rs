//! SCD1's key-local rewrite: the MERGE of a silver step done on the touched files only, keeping silver
//! clustered. delta-rs's MERGE writes its output in join order, so after a batch that touches many
//! files the rewritten files each span the whole key range and every later batch touches all of them
//! (measured: after five uniform batches a 1M-row table had 4 of 6 files overlapping). Here the touched
//! files are taken group by group ([`crate::lake::Group`]: a file with the batch keys it holds, and the
//! new keys next to it); each group's rows and batch rows are merged in memory, sorted by key and written
//! back as files of the target size, so file key ranges stay disjoint and memory holds one group (about
//! one file of the target size) at a time, however many files a batch touches.
//!
//! Semantics are the MERGE's ([`super::merge::merge_into`]): per key, the event updates or deletes the
//! row only when newer (sequence, then bronze version, then source row), and inserts when the key has no
//! row. The commit removes the touched files and adds the new ones, records the changed rows in change
//! data files (update pre/post images, deletes, inserts, as the change data feed requires) and the
//! watermark, atomically; a concurrent commit that removed a touched file makes it conflict and re-run.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use deltalake::arrow::compute::{concat_batches, take, take_record_batch};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::arrow::row::{RowConverter, Rows, SortField};
use deltalake::kernel::{Action, Transaction};
use deltalake::operations::merge::MergeMetrics;
use deltalake::protocol::{DeltaOperation, MergePredicate};
use deltalake::DeltaTable;

use super::Step;
use crate::cdc::{BRONZE_VERSION, OP, OP_DELETE, SEQ};
use crate::error::{Error, Result};
use crate::lake::{self, Touched};
use crate::schema::{self, SOURCE_ROW};

/// Change data feed column and its values.
const CHANGE_TYPE: &str = "_change_type";

/// Rows of `b` at `idx`.
fn pick(b: &RecordBatch, idx: &[u32]) -> Result<RecordBatch> {
    take_record_batch(b, &UInt32Array::from(idx.to_vec()))
        .map_err(|e| Error::arrow("selecting rows", e))
}

/// Row-encoded `names` columns of `b`, comparable as bytes (nulls first, as in the MERGE's ordering).
fn encode(conv: &RowConverter, b: &RecordBatch, names: &[&str], what: &str) -> Result<Rows> {
    conv.convert_columns(&schema::columns(b, names, what)?)
        .map_err(|e| Error::arrow(what.to_string(), e))
}

fn converter(schema: &Schema, names: &[&str], what: &str) -> Result<RowConverter> {
    let fields = names
        .iter()
        .map(|n| {
            schema
                .field_with_name(n)
                .map(|f| SortField::new(f.data_type().clone()))
                .map_err(|e| Error::arrow(what.to_string(), e))
        })
        .collect::<Result<Vec<_>>>()?;
    RowConverter::new(fields).map_err(|e| Error::arrow(what.to_string(), e))
}

/// What the merge of the batch into the touched rows decided, as row indices.
#[derive(Default)]
struct Plan {
    /// Touched rows kept as they are.
    keep: Vec<u32>,
    /// Touched rows deleted.
    deleted: Vec<u32>,
    /// Touched rows updated (pre-images) and the batch rows that replace them (post-images).
    before: Vec<u32>,
    after: Vec<u32>,
    /// Batch rows inserted.
    inserted: Vec<u32>,
}

fn plan(old: &RecordBatch, src: &RecordBatch, ops: &StringArray, keys: &[&str]) -> Result<Plan> {
    let schema = old.schema();
    let key_conv = converter(&schema, keys, "merge keys")?;
    let order = [SEQ, BRONZE_VERSION, SOURCE_ROW];
    let ord_conv = converter(&schema, &order, "merge order")?;
    let (old_keys, src_keys) = (
        encode(&key_conv, old, keys, "merge keys")?,
        encode(&key_conv, src, keys, "merge keys")?,
    );
    let (old_ord, src_ord) = (
        encode(&ord_conv, old, &order, "merge order")?,
        encode(&ord_conv, src, &order, "merge order")?,
    );
    let by_key: HashMap<&[u8], usize> = (0..src.num_rows())
        .map(|j| (src_keys.row(j).data(), j))
        .collect();
    let mut matched = vec![false; src.num_rows()];
    let mut p = Plan::default();
    for i in 0..old.num_rows() {
        let Some(&j) = by_key.get(old_keys.row(i).data()) else {
            p.keep.push(i as u32);
            continue;
        };
        matched[j] = true;
        if src_ord.row(j) <= old_ord.row(i) {
            p.keep.push(i as u32); // the row is newer than the event: out of order, ignored
        } else if ops.value(j) == OP_DELETE {
            p.deleted.push(i as u32);
        } else {
            p.before.push(i as u32);
            p.after.push(j as u32);
        }
    }
    p.inserted = (0..src.num_rows())
        .filter(|&j| !matched[j] && ops.is_valid(j) && ops.value(j) != OP_DELETE)
        .map(|j| j as u32)
        .collect();
    Ok(p)
}

/// The changed rows as change data (`_change_type` per row).
fn change_rows(old: &RecordBatch, src: &RecordBatch, p: &Plan) -> Result<RecordBatch> {
    let mut fields: Vec<Field> = old
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(CHANGE_TYPE, DataType::Utf8, false));
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let parts = [
        (old, &p.deleted, "delete"),
        (old, &p.before, "update_preimage"),
        (src, &p.after, "update_postimage"),
        (src, &p.inserted, "insert"),
    ]
    .into_iter()
    .filter(|(_, idx, _)| !idx.is_empty())
    .map(|(b, idx, kind)| {
        let rows = pick(b, idx)?;
        let mut cols = rows.columns().to_vec();
        cols.push(Arc::new(StringArray::from(vec![kind; idx.len()])) as ArrayRef);
        RecordBatch::try_new(schema.clone(), cols).map_err(|e| Error::arrow("change rows", e))
    })
    .collect::<Result<Vec<_>>>()?;
    concat_batches(&schema, &parts).map_err(|e| Error::arrow("change rows", e))
}

/// Applies `changes` (the latest event per key) to the files of `silver` that `touched` names, in one
/// commit with `txn` and `metadata`. Unpartitioned SCD1 tables only.
pub(super) async fn rewrite(
    step: &Step<'_>,
    changes: &RecordBatch,
    touched: &Touched,
    txns: Vec<Transaction>,
    mut metadata: HashMap<String, serde_json::Value>,
) -> Result<(DeltaTable, MergeMetrics)> {
    let (mut silver, location) = (step.silver.clone(), &step.silver_loc);
    let table = step.table;
    let fail = |what: &'static str| {
        let table = location.url.to_string();
        move |e| Error::delta(table, what, e)
    };
    let snapshot = silver.snapshot().map_err(fail("rewrite"))?;
    let target: SchemaRef = snapshot.snapshot().arrow_schema();
    let cdf = snapshot
        .table_config()
        .enable_change_data_feed
        .unwrap_or(false);
    let live: HashMap<String, _> = snapshot
        .log_data()
        .iter()
        .map(|f| (f.path().into_owned(), f))
        .collect();
    let all = schema::as_schema(changes, &target, |_, _| None)?;
    let all_ops = schema::column(changes, OP, "rewrite")?;
    let keys: Vec<&str> = table.keys.iter().map(String::as_str).collect();
    let mut metrics = MergeMetrics {
        num_source_rows: changes.num_rows(),
        num_target_files_skipped_during_scan: touched.total.saturating_sub(touched.paths.len()),
        ..Default::default()
    };
    let mut actions: Vec<Action> = Vec::new();
    let mut changed: Vec<RecordBatch> = Vec::new();
    // One group at a time (its files and the batch rows that belong with them): memory holds one
    // group's files, not every touched file.
    for group in &touched.groups {
        let at = UInt32Array::from(group.rows.clone());
        let src = pick(&all, &group.rows)?;
        let ops = take(&all_ops, &at, None).map_err(|e| Error::arrow("selecting ops", e))?;
        let ops = ops
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| Error::invariant("_op is not text"))?;
        let files = group
            .files
            .iter()
            .map(|&i| {
                touched
                    .paths
                    .get(i)
                    .and_then(|p| live.get(p))
                    .ok_or_else(|| {
                        Error::invariant(format!("touched file {i} not in the snapshot"))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut parts = Vec::new();
        for f in &files {
            for b in lake::read_data_file(&silver, location, &f.path(), None).await? {
                parts.push(schema::as_schema(&b, &target, |_, _| None)?);
            }
        }
        let old = concat_batches(&target, &parts).map_err(|e| Error::arrow("touched rows", e))?;
        metrics.num_target_files_scanned += files.len();
        let p = plan(&old, &src, ops, &keys)?;
        if p.inserted.is_empty() && p.after.is_empty() && p.deleted.is_empty() {
            metrics.num_target_rows_copied += old.num_rows();
            continue; // every event older than its row: the group's files stay as they are
        }
        metrics.num_target_rows_inserted += p.inserted.len();
        metrics.num_target_rows_updated += p.after.len();
        metrics.num_target_rows_deleted += p.deleted.len();
        metrics.num_target_rows_copied += p.keep.len();
        let out = concat_batches(
            &target,
            &[
                pick(&old, &p.keep)?,
                pick(&src, &p.after)?,
                pick(&src, &p.inserted)?,
            ],
        )
        .map_err(|e| Error::arrow("rewritten rows", e))?;
        let out = lake::sorted_by_keys(&out, &table.keys)?;
        metrics.num_output_rows += out.num_rows();
        // Size estimated from the files it replaces.
        let old_bytes: i64 = files.iter().map(|f| f.size()).sum();
        let estimate = lake::estimated_bytes(&out, old_bytes, old.num_rows());
        let adds = lake::write_sorted(
            &silver,
            location,
            &out,
            estimate,
            table.target_file_size,
            &step.unique,
        )
        .await?;
        metrics.num_target_files_added += adds.len();
        metrics.num_target_files_removed += files.len();
        actions.extend(files.iter().map(|f| Action::Remove(f.remove_action(true))));
        actions.extend(adds.into_iter().map(Action::Add));
        if cdf {
            changed.push(change_rows(&old, &src, &p)?);
        }
    }
    if actions.is_empty() {
        return Ok((silver, metrics)); // nothing changed: the caller advances the watermark
    }
    if let Some(first) = changed.first() {
        let rows = concat_batches(&first.schema(), &changed)
            .map_err(|e| Error::arrow("change rows", e))?;
        let cdc = lake::write_change_file(&silver, location, &rows).await?;
        actions.push(Action::Cdc(cdc));
    }
    if let Ok(m) = serde_json::to_value(&metrics) {
        metadata.insert("operationMetrics".to_string(), m);
    }
    let lead = keys.first().copied().unwrap_or_default();
    let operation = DeltaOperation::Merge {
        // What the step read, for conflict checks: the touched key ranges.
        predicate: touched.predicate(None, lead),
        merge_predicate: Some(lake::key_predicate(&table.keys)),
        matched_predicates: vec![
            MergePredicate {
                action_type: "update".into(),
                predicate: Some("source is newer".into()),
            },
            MergePredicate {
                action_type: "delete".into(),
                predicate: Some("source is a newer delete".into()),
            },
        ],
        not_matched_predicates: vec![MergePredicate {
            action_type: "insert".into(),
            predicate: Some("source is not a delete".into()),
        }],
        not_matched_by_source_predicates: Vec::new(),
    };
    lake::commit_actions(&mut silver, actions, txns, metadata, operation)
        .await
        .map_err(fail("commit"))?;
    Ok((silver, metrics))
}
