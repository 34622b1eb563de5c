//! Avro object container files: Kafka Connect's S3 sink `AvroFormat` (the usual way a Debezium feed
//! lands in S3), Firehose and Glue exports. Read with `arrow-avro` (the Apache Arrow project's reader, at
//! deltalake's arrow version): the whole file in memory like Parquet, its writer schema decoded to
//! Arrow types (Avro logical types: decimal, date, time, timestamp, uuid), `["null", T]` unions as
//! nullable `T`, records as structs.
//!
//! Kafka Connect's own logical types travel as plain ints and longs with a `connect.name` attribute
//! (arrow-avro keeps it in the field's metadata): Debezium's `io.debezium.time.Date` (days),
//! `Timestamp` (ms), `MicroTimestamp` (µs) and Connect's `Date` / `Timestamp` are re-typed here as
//! dates and UTC timestamps, wherever they are (a Debezium envelope's `before`/`after` structs
//! included), so bronze holds what the producer meant. Nanosecond timestamps and times of day stay
//! the numbers they are (a µs timestamp would round them).

use std::io::Cursor;
use std::sync::Arc;

use arrow_avro::reader::{Reader, ReaderBuilder};
use bytes::Bytes;
use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StructArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, TimeUnit};

mod header;

use super::parquet::deliver_typed;
use super::{Destination, ReadError, ReadOutcome, CHUNK_ROWS};
use crate::config::TableConfig;
use crate::schema::timestamp_type;

fn reader(bytes: Bytes) -> Result<Reader<Cursor<Bytes>>, ReadError> {
    let bytes = header::with_short_names(bytes);
    ReaderBuilder::new()
        .with_batch_size(CHUNK_ROWS)
        .build(Cursor::new(bytes))
        .map_err(|e| {
            ReadError::Malformed(format!("not a readable Avro object container file: {e}"))
        })
}

/// Parses a whole Avro object container file (already in memory).
pub fn parse_avro(
    bytes: Bytes,
    table: &TableConfig,
    mut dest: Destination,
) -> Result<ReadOutcome, ReadError> {
    let mut out = ReadOutcome::new(table.limits);
    let mut offset = 0;
    for batch in reader(bytes)? {
        let batch = batch.map_err(|e| ReadError::Malformed(format!("Avro: {e}")))?;
        let batch = connect_types(&batch)?;
        deliver_typed(&batch, &mut offset, table, &mut dest, &mut out)?;
    }
    Ok(out.finish())
}

/// The Arrow schema of an Avro file's records, Kafka Connect's logical types applied.
pub(super) fn avro_schema(bytes: Bytes) -> Result<Schema, ReadError> {
    let schema = reader(bytes)?.schema();
    Ok(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| connect_field(f).as_ref().clone())
            .collect::<Vec<_>>(),
    ))
}

/// What a Kafka Connect logical type (`connect.name`) becomes, if it is re-typed.
fn connect_target(field: &Field) -> Option<(DataType, DataType)> {
    // arrow-avro keeps a schema attribute as its JSON text (`"io.debezium.time.Date"`, quoted).
    let raw = field.metadata().get("connect.name")?;
    let name = serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw.clone());
    let ms = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let us = timestamp_type();
    match (name.as_str(), field.data_type()) {
        ("io.debezium.time.Date" | "org.apache.kafka.connect.data.Date", DataType::Int32) => {
            Some((DataType::Date32, DataType::Date32))
        }
        (
            "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp",
            DataType::Int64,
        ) => Some((ms, us)),
        ("io.debezium.time.MicroTimestamp", DataType::Int64) => {
            let raw = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
            Some((raw, us))
        }
        _ => None,
    }
}

/// `field` with Kafka Connect's logical types applied (through structs).
fn connect_field(field: &FieldRef) -> FieldRef {
    if let Some((_, to)) = connect_target(field) {
        return Arc::new(field.as_ref().clone().with_data_type(to));
    }
    match field.data_type() {
        DataType::Struct(children) => {
            let children: Fields = children.iter().map(connect_field).collect();
            Arc::new(
                field
                    .as_ref()
                    .clone()
                    .with_data_type(DataType::Struct(children)),
            )
        }
        _ => field.clone(),
    }
}

fn connect_array(field: &FieldRef, array: &ArrayRef) -> Result<ArrayRef, ReadError> {
    let bad = |e| ReadError::Malformed(format!("Avro field `{}`: {e}", field.name()));
    if let Some((raw, to)) = connect_target(field) {
        // Int32 days → Date32, Int64 ms/µs → the timestamp in that unit → µs.
        let typed = cast(array, &raw).map_err(bad)?;
        return cast(&typed, &to).map_err(bad);
    }
    match field.data_type() {
        DataType::Struct(children) => {
            let s = array.as_struct();
            let columns = children
                .iter()
                .zip(s.columns())
                .map(|(f, c)| connect_array(f, c))
                .collect::<Result<Vec<_>, _>>()?;
            let fields: Fields = children.iter().map(connect_field).collect();
            let rebuilt = StructArray::try_new(fields, columns, s.nulls().cloned()).map_err(bad)?;
            Ok(Arc::new(rebuilt))
        }
        _ => Ok(array.clone()),
    }
}

/// A batch with Kafka Connect's logical types applied.
fn connect_types(batch: &RecordBatch) -> Result<RecordBatch, ReadError> {
    let schema = batch.schema();
    let columns = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| connect_array(f, c))
        .collect::<Result<Vec<_>, _>>()?;
    let fields: Vec<FieldRef> = schema.fields().iter().map(connect_field).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| ReadError::Malformed(format!("Avro: {e}")))
}
