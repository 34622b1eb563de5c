//! One event per key: what MERGE needs (a source with duplicate keys is rejected) and what "latest
//! wins" means across out-of-order deliveries.

use deltalake::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use deltalake::arrow::compute::{lexsort_to_indices, take_record_batch, SortColumn, SortOptions};

use super::{BRONZE_VERSION, SEQ};
use crate::error::{Error, Result};
use crate::schema::{self, SOURCE_ROW};

/// `changes` sorted by key, then in event order: `_seq` (nulls first), `_bronze_version`,
/// `_source_row`.
pub(super) fn in_event_order(changes: &RecordBatch, keys: &[String]) -> Result<RecordBatch> {
    let col = |name: &str| -> Result<ArrayRef> {
        changes
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| Error::invariant(format!("change batch has no column `{name}`")))
    };
    let asc = SortOptions {
        descending: false,
        nulls_first: true,
    };
    let mut sort: Vec<SortColumn> = keys
        .iter()
        .map(|k| {
            Ok(SortColumn {
                values: col(k)?,
                options: Some(asc),
            })
        })
        .collect::<Result<_>>()?;
    for tie in [SEQ, BRONZE_VERSION, SOURCE_ROW] {
        sort.push(SortColumn {
            values: col(tie)?,
            options: Some(asc),
        });
    }
    let order = lexsort_to_indices(&sort, None).map_err(|e| Error::arrow("ordering changes", e))?;
    take_record_batch(changes, &order).map_err(|e| Error::arrow("ordering changes", e))
}

/// Keeps the latest event per key: highest `_seq` (nulls lowest), then highest `_bronze_version`, then
/// highest `_source_row`. The result has exactly one row per key, in key order.
pub fn latest_per_key(changes: &RecordBatch, keys: &[String]) -> Result<RecordBatch> {
    if changes.num_rows() == 0 {
        return Ok(changes.clone());
    }
    let sorted = in_event_order(changes, keys)?;
    let (_, rows) = schema::rows_of(
        &schema::columns(&sorted, keys, "latest per key")?,
        "comparing keys",
    )?;
    let n = sorted.num_rows();
    let last_of_group: Vec<u32> = (0..n)
        .filter(|&i| i + 1 == n || rows.row(i) != rows.row(i + 1))
        .map(|i| i as u32)
        .collect();
    take_record_batch(&sorted, &UInt32Array::from(last_of_group))
        .map_err(|e| Error::arrow("keeping latest per key", e))
}
