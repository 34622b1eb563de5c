//! Schema inference for tables declared without columns: the first rows of a text object, or a
//! Parquet file's own schema. The result becomes bronze's schema and is enforced from then on.

use std::io::BufRead;

use bytes::Bytes;
use deltalake::arrow::datatypes::Schema;

use super::chunk::Lines;
use super::csv::{csv_headers, csv_reader};
use super::jsonl::{parse_json_line, JsonLine};
use super::parquet::parquet_reader;
use super::ReadError;
use crate::config::{Format, TableConfig};
use crate::schema;

/// Infers a schema from the first rows of a text object. `None` when it has no parseable row.
pub fn infer_text(reader: impl BufRead, table: &TableConfig) -> Result<Option<Schema>, ReadError> {
    match table.format {
        Format::Jsonl => {
            let mut lines = Lines::new(reader);
            let mut samples = Vec::new();
            while samples.len() < schema::INFER_SAMPLE_ROWS {
                let Some((_, text)) = lines.next_line()? else {
                    break;
                };
                if let Ok(text) = text {
                    if let JsonLine::Object(map) = parse_json_line(&text) {
                        samples.push(map);
                    }
                }
            }
            Ok((!samples.is_empty()).then(|| schema::infer_from_json(&samples)))
        }
        Format::Csv => {
            let mut rdr = csv_reader(reader, table);
            let mut rows: Vec<Vec<Option<String>>> = Vec::new();
            let mut headers = if table.csv_header {
                Some(csv_headers(&mut rdr, table, 0)?)
            } else {
                None
            };
            for record in rdr.records().take(schema::INFER_SAMPLE_ROWS) {
                let Ok(record) = record else { continue };
                let width = headers
                    .get_or_insert_with(|| (0..record.len()).map(|i| format!("c{i}")).collect())
                    .len();
                if record.len() == width {
                    rows.push(
                        record
                            .iter()
                            .map(|s| (!s.is_empty()).then(|| s.to_string()))
                            .collect(),
                    );
                }
            }
            Ok(headers
                .filter(|h| !h.is_empty() && !rows.is_empty())
                .map(|h| schema::infer_from_text(&h, &rows)))
        }
        Format::Parquet => Err(ReadError::Malformed("parquet is not a text format".into())),
    }
}

/// The schema of a Parquet file (all columns nullable).
pub fn infer_parquet(bytes: Bytes) -> Result<Option<Schema>, ReadError> {
    let builder = parquet_reader(bytes)?;
    let fields: Vec<_> = builder
        .schema()
        .fields()
        .iter()
        .filter(|f| !schema::is_lineage(f.name()))
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Ok((!fields.is_empty()).then(|| Schema::new(fields)))
}
