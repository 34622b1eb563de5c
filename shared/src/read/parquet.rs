//! Parquet: the whole file in memory (its footer needs random access), read in chunks, columns matched
//! to the table by name and cast; a rejected row is kept as JSON text.

use bytes::Bytes;
use deltalake::arrow::array::{Array, ArrayRef, RecordBatch};
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value};

use super::{Destination, ReadError, ReadOutcome, CHUNK_ROWS};
use crate::config::{TableConfig, UnknownFields};

fn row_as_json(batch: &RecordBatch, row: usize) -> String {
    let mut obj = Map::new();
    for (f, col) in batch.schema().fields().iter().zip(batch.columns()) {
        let v = if col.is_null(row) {
            Value::Null
        } else {
            let text = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default())
                .map(|fmt| fmt.value(row).to_string())
                .unwrap_or_default();
            Value::String(text)
        };
        obj.insert(f.name().clone(), v);
    }
    Value::Object(obj).to_string()
}

/// One batch of a typed format (Parquet, Avro) into the table: columns matched by name and cast, a
/// column the table lacks rejecting every row (unless ignored), rows numbered from `offset + 1`.
pub(super) fn deliver_typed(
    batch: &RecordBatch,
    offset: &mut u64,
    table: &TableConfig,
    dest: &mut Destination,
    out: &mut ReadOutcome,
) -> Result<(), ReadError> {
    let target = dest.target;
    let n = batch.num_rows();
    let rows: Vec<u64> = (*offset + 1..=*offset + n as u64).collect();
    *offset += n as u64;
    let unknown = batch
        .schema()
        .fields()
        .iter()
        .find(|f| target.field_with_name(f.name()).is_err())
        .map(|f| f.name().clone());
    let pre: Vec<Option<String>> = match (unknown, table.unknown_fields) {
        (Some(name), UnknownFields::Quarantine | UnknownFields::Evolve) => {
            vec![Some(format!("unknown column `{name}` (not in the table schema)")); n]
        }
        _ => Vec::new(),
    };
    let sources: Vec<ArrayRef> = target
        .fields()
        .iter()
        .map(|f| {
            batch
                .column_by_name(f.name())
                .cloned()
                .unwrap_or_else(|| deltalake::arrow::array::new_null_array(f.data_type(), n))
        })
        .collect();
    dest.deliver(sources, &rows, &pre, |i| row_as_json(batch, i), out)
}

pub(super) fn parquet_reader(
    bytes: Bytes,
) -> Result<ParquetRecordBatchReaderBuilder<Bytes>, ReadError> {
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| ReadError::Malformed(format!("not a readable Parquet file: {e}")))
}

/// Parses a whole Parquet file (already in memory).
pub fn parse_parquet(
    bytes: Bytes,
    table: &TableConfig,
    mut dest: Destination,
) -> Result<ReadOutcome, ReadError> {
    let mut out = ReadOutcome::new(table.limits);
    let reader = parquet_reader(bytes)?
        .with_batch_size(CHUNK_ROWS)
        .build()
        .map_err(|e| ReadError::Malformed(format!("Parquet: {e}")))?;
    let mut offset: u64 = 0;
    for batch in reader {
        let batch = batch.map_err(|e| ReadError::Malformed(format!("Parquet: {e}")))?;
        deliver_typed(&batch, &mut offset, table, &mut dest, &mut out)?;
    }
    Ok(out.finish())
}
