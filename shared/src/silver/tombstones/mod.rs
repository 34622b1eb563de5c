//! Delete tombstones (`silver_tombstones/<table>`): the key and ordering columns of every applied
//! delete, so a late update cannot resurrect the key. Only ever appended (a blind append is far cheaper
//! than a MERGE and cannot conflict on data); readers take the newest tombstone per key. SCD1 drops
//! the changes a newer tombstone supersedes; tombstones past `tombstone_retention_days` stop nothing.
//! [`index`] keeps them warm for the check.

mod index;

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::arrow::datatypes::{Field, Schema};
use serde_json::json;

use super::{SilverWriter, Step};
use crate::cdc::{Normalizer, OP, OP_DELETE};
use crate::error::{Error, Result};
use crate::lake;
use crate::schema::{self, SOURCE_ROW};

/// Tombstone column: when the delete was applied.
pub use crate::schema::DELETED_AT;
pub use index::StoneIndex;
use index::{StoneColumns, Stones};

impl SilverWriter {
    /// Appends the step's `deletes` to its tombstone table (created when absent) with the watermark
    /// `to`, in one commit (also when a recovered range held none: the watermark still reaches `to`).
    /// The step's tombstone table is consumed: open it again to read it.
    pub(super) async fn append_tombstones(
        &self,
        step: &mut Step<'_>,
        deletes: RecordBatch,
        to: i64,
    ) -> Result<()> {
        let (table, location) = (step.table, &step.tomb_loc);
        let tomb_schema = tombstone_schema(&step.normalizer);
        let mut t = match step.tombs.take() {
            Some(t) => t,
            None => {
                lake::open_or_create(
                    location,
                    &format!("tombstones_{}", table.name),
                    &tomb_schema,
                    &[],
                    lake::Markers::Keep,
                )
                .await?
            }
        };
        let metadata = HashMap::from([
            ("lakehouse.layer".to_string(), json!("silver_tombstones")),
            ("lakehouse.table".to_string(), json!(table.name)),
            ("lakehouse.bronzeVersion".to_string(), json!(to)),
        ]);
        // Tombstones are only ever appended (a blind append is far cheaper than a MERGE and cannot
        // conflict on data); readers take the newest tombstone per key, and compaction may fold them.
        let now = chrono::Utc::now().timestamp_micros();
        let rows = schema::as_schema(&deletes, &Arc::new(tomb_schema), |name, n| {
            (name == DELETED_AT).then(|| {
                Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC"))
                    as ArrayRef
            })
        })?;
        let adds = if rows.num_rows() == 0 {
            Vec::new()
        } else {
            lake::write_batches(&t, location, std::iter::once(rows.clone()), None, &[]).await?
        };
        let paths: Vec<String> = adds.iter().map(|a| a.path.clone()).collect();
        let txns = [lake::txn(&step.app, to)];
        let v = lake::commit_append(&mut t, adds, txns.to_vec(), metadata)
            .await
            .map_err(|e| Error::delta(location.url.to_string(), "commit", e))?;
        self.markers.record(location, v, &txns);
        self.stones.appended(location, &paths, &rows, &table.keys)?;
        self.tables().put(location, &t);
        Ok(())
    }
}

fn tombstone_schema(n: &Normalizer) -> Schema {
    let change = n.change_schema();
    let mut fields: Vec<Field> = change
        .fields()
        .iter()
        .filter(|f| {
            let name = f.name().as_str();
            n.row_schema().field_with_name(name).is_err() && name != OP
                || n.keys().iter().any(|k| k == name)
        })
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(DELETED_AT, schema::timestamp_type(), false));
    Schema::new(fields)
}

/// The delete changes of a batch (not a truncate's: see [`super::truncate::TRUNCATE_ROW`]).
pub(super) fn only_deletes(changes: &RecordBatch) -> Result<RecordBatch> {
    let deletes = by_op(changes, true)?;
    let rows = schema::column(&deletes, SOURCE_ROW, "deletes")?;
    let rows =
        deltalake::arrow::compute::cast(&rows, &deltalake::arrow::datatypes::DataType::Int64)
            .map_err(|e| Error::arrow("deletes", e))?;
    let rows = rows.as_primitive::<deltalake::arrow::datatypes::Int64Type>();
    let real = BooleanArray::from(
        (0..rows.len())
            .map(|i| rows.value(i) != super::truncate::TRUNCATE_ROW)
            .collect::<Vec<_>>(),
    );
    filter_record_batch(&deletes, &real).map_err(|e| Error::arrow("deletes", e))
}

/// The upsert (non-delete) changes of a batch.
pub(super) fn only_upserts(changes: &RecordBatch) -> Result<RecordBatch> {
    by_op(changes, false)
}

fn by_op(changes: &RecordBatch, deletes: bool) -> Result<RecordBatch> {
    let ops = changes
        .column_by_name(OP)
        .ok_or_else(|| Error::invariant("changes without _op"))?;
    let ops = ops
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| Error::invariant("_op is not text"))?;
    let mask = BooleanArray::from(
        ops.iter()
            .map(|o| (o == Some(OP_DELETE)) == deletes)
            .collect::<Vec<_>>(),
    );
    filter_record_batch(changes, &mask).map_err(|e| Error::arrow("selecting changes by op", e))
}

/// Drops changes not newer than the tombstone of their key (a late update of a deleted row, or a
/// replayed delete). Tombstones older than the table's retention no longer count. A warm process
/// answers from its [`StoneIndex`]; otherwise only the tombstone files whose key range can hold the
/// batch's keys are read.
pub(super) async fn drop_superseded(
    step: &Step<'_>,
    changes: &RecordBatch,
    index: &StoneIndex,
) -> Result<RecordBatch> {
    let (table, location) = (step.table, &step.tomb_loc);
    let cutoff = table
        .tombstone_retention_days
        .map(|d| (chrono::Utc::now() - chrono::Duration::days(i64::from(d))).timestamp_micros());
    let Some(tombs) = step.tombs.as_ref() else {
        return Ok(changes.clone());
    };
    if changes.num_rows() == 0
        || tombs
            .snapshot()
            .is_ok_and(|s| s.log_data().num_files() == 0)
    {
        return Ok(changes.clone());
    }
    let columns = StoneColumns::of(changes, &table.keys)?;
    let (warm, stones) = match index.current(tombs, location, &columns).await? {
        Some(stones) => (true, stones),
        None => {
            // Only the tombstones of the batch's keys (pruned by file statistics).
            let mut stones = Stones::new(&columns);
            for b in lake::scan_keys(tombs, location, changes, &table.keys).await? {
                stones.absorb(&columns, &b)?;
            }
            (false, stones)
        }
    };
    let (k, o) = columns.rows(changes)?;
    let keep = BooleanArray::from(
        (0..changes.num_rows())
            .map(|i| {
                stones
                    .newest(k.row(i).as_ref(), cutoff)
                    .is_none_or(|stone| o.row(i).as_ref() > stone)
            })
            .collect::<Vec<_>>(),
    );
    if warm {
        index.put(location, stones);
    }
    filter_record_batch(changes, &keep).map_err(|e| Error::arrow("dropping superseded changes", e))
}
