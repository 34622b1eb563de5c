//! Quarantine: rows and objects that failed parsing or validation, kept in `quarantine/<table>` (a Delta
//! table) with the raw text, the reason, and where they came from. The landing object itself is never
//! touched, so a fixed reader can re-ingest it.

use std::sync::Arc;

use deltalake::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema};

use std::collections::HashMap;

use deltalake::kernel::Transaction;
use deltalake::DeltaTable;

use crate::config::Location;
use crate::error::{Error, Result};
use crate::lake;
use crate::schema::{self, BadRow};

pub const RAW: &str = "raw";
pub const REASON: &str = "reason";

/// The quarantine table's schema (same for every table).
pub fn quarantine_schema() -> Schema {
    Schema::new(vec![
        Field::new(schema::SOURCE_KEY, DataType::Utf8, false),
        Field::new(schema::SOURCE_ETAG, DataType::Utf8, false),
        // Null when the whole object failed (e.g. corrupt gzip).
        Field::new(schema::SOURCE_ROW, DataType::Int64, true),
        Field::new(RAW, DataType::Utf8, true),
        Field::new(REASON, DataType::Utf8, false),
        Field::new(schema::INGESTED_AT, schema::timestamp_type(), false),
    ])
}

/// Bad rows of one object, with its identity.
#[derive(Debug, Clone)]
pub struct QuarantinedObject {
    pub key: String,
    pub etag: String,
    pub rows: Vec<BadRow>,
}

/// One record batch holding the bad rows of `objects`.
pub fn to_batch(objects: &[QuarantinedObject], ingested_at_us: i64) -> Result<RecordBatch> {
    let flat: Vec<(&QuarantinedObject, &BadRow)> = objects
        .iter()
        .flat_map(|o| o.rows.iter().map(move |r| (o, r)))
        .collect();
    let rows = || flat.iter().copied();
    let n = flat.len();
    let batch = RecordBatch::try_new(
        Arc::new(quarantine_schema()),
        vec![
            Arc::new(StringArray::from_iter_values(
                rows().map(|(o, _)| o.key.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows().map(|(o, _)| o.etag.as_str()),
            )),
            Arc::new(Int64Array::from_iter(
                rows().map(|(_, r)| r.row.map(|x| x as i64)),
            )),
            Arc::new(StringArray::from_iter(
                rows().map(|(_, r)| r.raw.as_deref()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows().map(|(_, r)| r.reason.as_str()),
            )),
            Arc::new(TimestampMicrosecondArray::from(vec![ingested_at_us; n]).with_timezone("UTC")),
        ],
    )
    .map_err(|e| Error::arrow("building quarantine batch", e))?;
    Ok(batch)
}

/// Appends `batch` (see [`to_batch`]) to the quarantine table at `location` (created when absent), with
/// `txns` as its idempotency markers, in one commit; returns the version committed.
pub async fn append(
    location: &Location,
    table: &str,
    existing: Option<DeltaTable>,
    batch: RecordBatch,
    txns: Vec<Transaction>,
    metadata: HashMap<String, serde_json::Value>,
) -> Result<i64> {
    let mut q = match existing {
        Some(t) => t,
        // Absent when the caller checked its markers: another writer's markers must not be missed.
        None => lake::fresh(
            lake::open_or_create(
                location,
                &format!("quarantine_{table}"),
                &quarantine_schema(),
                &[],
                lake::Markers::Expire,
            )
            .await?,
            location,
        )?,
    };
    let rows = batch.num_rows();
    let adds = lake::write_batches(&q, location, std::iter::once(batch), None, &[]).await?;
    let v = lake::commit_append(&mut q, adds, txns, metadata)
        .await
        .map_err(|e| Error::delta(location.url.to_string(), "commit", e))?;
    tracing::info!(table, version = v, rows, "quarantine commit");
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_has_one_row_per_bad_row_and_whole_object_rows_have_null_row() {
        let objs = vec![
            QuarantinedObject {
                key: "a".into(),
                etag: "1".into(),
                rows: vec![
                    BadRow {
                        row: Some(3),
                        raw: Some("x".into()),
                        reason: "bad".into(),
                    },
                    BadRow {
                        row: Some(7),
                        raw: Some("y".into()),
                        reason: "worse".into(),
                    },
                ],
            },
            QuarantinedObject {
                key: "b".into(),
                etag: "2".into(),
                rows: vec![BadRow {
                    row: None,
                    raw: None,
                    reason: "corrupt gzip".into(),
                }],
            },
        ];
        let b = to_batch(&objs, 5).unwrap();
        assert_eq!(b.num_rows(), 3);
        let rows = b.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(
            rows.iter().collect::<Vec<_>>(),
            vec![Some(3), Some(7), None]
        );
        let keys = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(keys.value(2), "b");
    }
}
