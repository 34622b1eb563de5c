//! Schema inference for tables declared without columns: the first rows of a text object, or a
//! Parquet file's own schema. The result becomes bronze's schema and is enforced from then on, so it
//! is checked first ([`check_inferred`]): an object whose columns cannot become a Delta table
//! is quarantined with the reason instead of failing the commit of every object beside it.

use std::io::BufRead;

use bytes::Bytes;
use deltalake::arrow::datatypes::Schema;

use super::chunk::Lines;
use super::csv::{read_header, Record, Records};
use super::jsonl::{parse_json_line, JsonLine};
use super::parquet::parquet_reader;
use super::ReadError;
use crate::config::{Format, TableConfig};
use crate::schema;

mod kinds;

pub use kinds::{check_inferred, check_names, parquet_data_fields, Sampler};

/// Infers a schema from the first rows of a text object. `None` when it has no parseable row.
pub fn infer_text(reader: impl BufRead, table: &TableConfig) -> Result<Option<Schema>, ReadError> {
    let mut sampler = Sampler::default();
    match table.format {
        Format::Jsonl => {
            let mut lines = Lines::new(reader, table.limits.max_line_bytes);
            let mut samples = 0;
            while samples < schema::INFER_SAMPLE_ROWS {
                let Some((_, line)) = lines.next_line()? else {
                    break;
                };
                let Ok(text) = line else { continue };
                if let JsonLine::Object(map) = parse_json_line(&text) {
                    sampler.json(&map);
                    samples += 1;
                    // Too wide already: stop sampling (the check below says why).
                    if sampler.width() > table.limits.max_columns {
                        break;
                    }
                }
            }
        }
        Format::Json => {
            let mut samples = 0;
            let width = table.limits.max_columns;
            // A broken document still has the records before the break to infer from.
            let _ = super::json::records(
                reader,
                &table.json_path,
                table.limits.max_line_bytes,
                &mut |_, text| {
                    if let JsonLine::Object(map) = parse_json_line(text) {
                        sampler.json(&map);
                        samples += 1;
                    }
                    samples < schema::INFER_SAMPLE_ROWS && sampler.width() <= width
                },
            );
        }
        Format::Csv => {
            let mut records = Records::new(reader, table);
            let headers = if table.csv_header {
                match read_header(&mut records, table)? {
                    Some(h) => Some(h),
                    None => return Ok(None),
                }
            } else {
                None
            };
            let mut rec = Record::default();
            let mut samples = 0;
            // Without a header the first sampled record's width names the columns `c0, c1, ...`.
            let mut names = headers.clone();
            while samples < schema::INFER_SAMPLE_ROWS && records.next(&mut rec)? {
                let width = rec.len();
                let names =
                    names.get_or_insert_with(|| (0..width).map(|i| format!("c{i}")).collect());
                if width != names.len() || width > table.limits.max_columns {
                    continue;
                }
                let cells: Vec<Option<&str>> =
                    (0..width).map(|i| rec.cell(i).ok().flatten()).collect();
                sampler.text(names, &cells);
                samples += 1;
            }
            if samples == 0 {
                return Ok(None);
            }
            if let Some(h) = &headers {
                sampler.columns(h);
            }
        }
        Format::Parquet | Format::Avro | Format::Binary => {
            return Err(ReadError::Malformed(
                "parquet, avro and binary objects are not text formats".into(),
            ))
        }
    }
    if sampler.is_empty() {
        return Ok(None);
    }
    checked(sampler.schema(&table.column_types), table).map(Some)
}

/// The schema of a Parquet file (all columns nullable, types mapped to what Delta stores).
pub fn infer_parquet(bytes: Bytes, table: &TableConfig) -> Result<Option<Schema>, ReadError> {
    let builder = parquet_reader(bytes)?;
    let fields = parquet_data_fields(builder.schema());
    if fields.is_empty() {
        return Ok(None);
    }
    checked(Schema::new(fields), table).map(Some)
}

/// The schema of an Avro file's records (Kafka Connect's logical types applied, types mapped to
/// what Delta stores).
pub fn infer_avro(bytes: Bytes, table: &TableConfig) -> Result<Option<Schema>, ReadError> {
    let fields = parquet_data_fields(&super::avro::avro_schema(bytes)?);
    if fields.is_empty() {
        return Ok(None);
    }
    checked(Schema::new(fields), table).map(Some)
}

fn checked(schema: Schema, table: &TableConfig) -> Result<Schema, ReadError> {
    check_inferred(&schema, table)
        .map_err(|e| ReadError::Malformed(format!("cannot become the table's schema: {e}")))?;
    Ok(schema)
}
