//! Delete tombstones (`silver_tombstones/<table>`): the key and ordering columns of every applied
//! delete, so a late update cannot resurrect the key. Only ever appended (a blind append is far cheaper
//! than a MERGE and cannot conflict on data); readers take the newest tombstone per key. SCD1 drops
//! the changes a newer tombstone supersedes; tombstones past `tombstone_retention_days` stop nothing.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::arrow::datatypes::{Field, Schema, SchemaRef};
use deltalake::DeltaTable;
use serde_json::json;

use super::{watermark_app_id, SilverWriter};
use crate::cdc::{Normalizer, BRONZE_VERSION, OP, OP_DELETE, SEQ};
use crate::config::{Location, TableConfig};
use crate::error::{Error, Result};
use crate::lake;
use crate::schema::{self, SOURCE_ROW};

/// Tombstone column: when the delete was applied.
pub use crate::schema::DELETED_AT;

impl SilverWriter {
    pub(super) async fn append_tombstones(
        &self,
        table: &TableConfig,
        location: &Location,
        existing: Option<DeltaTable>,
        normalizer: &Normalizer,
        deletes: RecordBatch,
        to: i64,
    ) -> Result<()> {
        let app = watermark_app_id(&table.name);
        let tomb_schema = tombstone_schema(normalizer);
        let mut t = match existing {
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
        let adds = if deletes.num_rows() == 0 {
            Vec::new()
        } else {
            let now = chrono::Utc::now().timestamp_micros();
            let rows = schema::as_schema(&deletes, &Arc::new(tomb_schema), |name, n| {
                (name == DELETED_AT).then(|| {
                    Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC"))
                        as ArrayRef
                })
            })?;
            lake::write_batches(&t, location, std::iter::once(rows), None).await?
        };
        lake::commit_append(&mut t, adds, vec![lake::txn(&app, to)], metadata)
            .await
            .map_err(|e| Error::delta(location.url.to_string(), "commit", e))?;
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
/// replayed delete). Tombstones older than the table's retention no longer count.
pub(super) async fn drop_superseded(
    changes: &RecordBatch,
    table: &TableConfig,
    tombs: Option<&DeltaTable>,
    location: &Location,
) -> Result<RecordBatch> {
    let keys = &table.keys;
    let cutoff = table
        .tombstone_retention_days
        .map(|d| (chrono::Utc::now() - chrono::Duration::days(i64::from(d))).timestamp_micros());
    let Some(tombs) = tombs else {
        return Ok(changes.clone());
    };
    if changes.num_rows() == 0
        || tombs
            .snapshot()
            .is_ok_and(|s| s.log_data().num_files() == 0)
    {
        return Ok(changes.clone());
    }
    // Only the tombstones of the batch's keys (pruned by file statistics), not the whole table.
    let stones = lake::scan_keys(tombs, location, changes, keys).await?;
    if stones.iter().all(|b| b.num_rows() == 0) || changes.num_rows() == 0 {
        return Ok(changes.clone());
    }
    let order_cols = [SEQ, BRONZE_VERSION, SOURCE_ROW];
    let pick = |b: &RecordBatch, names: &[&str]| schema::columns(b, names, "tombstone check");
    let key_names: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (key_conv, k) = schema::rows_of(&pick(changes, &key_names)?, "change keys")?;
    let (ord_conv, o) = schema::rows_of(&pick(changes, &order_cols)?, "change order")?;
    let mut latest: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for b in &stones {
        let b = cast_like(b, changes.schema_ref())?;
        let k = key_conv
            .convert_columns(&pick(&b, &key_names)?)
            .map_err(|e| Error::arrow("tombstone keys", e))?;
        let o = ord_conv
            .convert_columns(&pick(&b, &order_cols)?)
            .map_err(|e| Error::arrow("tombstone order", e))?;
        let deleted_at = b
            .column_by_name(DELETED_AT)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>());
        for i in 0..b.num_rows() {
            if let (Some(cutoff), Some(at)) = (cutoff, deleted_at) {
                if at.is_valid(i) && at.value(i) < cutoff {
                    continue; // expired: a late event for this key is no longer recognised
                }
            }
            let entry = latest.entry(k.row(i).as_ref().to_vec()).or_default();
            if o.row(i).as_ref() > entry.as_slice() {
                *entry = o.row(i).as_ref().to_vec();
            }
        }
    }
    let keep = BooleanArray::from(
        (0..changes.num_rows())
            .map(|i| {
                latest
                    .get(k.row(i).as_ref())
                    .is_none_or(|stone| o.row(i).as_ref() > stone.as_slice())
            })
            .collect::<Vec<_>>(),
    );
    filter_record_batch(changes, &keep).map_err(|e| Error::arrow("dropping superseded changes", e))
}

/// Casts columns of `batch` that also exist in `like` to `like`'s types (scans may return views).
fn cast_like(batch: &RecordBatch, like: &SchemaRef) -> Result<RecordBatch> {
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| match like.field_with_name(f.name()) {
            Ok(l) => f.as_ref().clone().with_data_type(l.data_type().clone()),
            Err(_) => f.as_ref().clone(),
        })
        .collect();
    let cols = batch
        .columns()
        .iter()
        .zip(&fields)
        .map(|(c, f)| deltalake::arrow::compute::cast(c, f.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::arrow("aligning tombstone types", e))?;
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
        .map_err(|e| Error::arrow("aligning tombstone types", e))
}
