//! JSON lines: one object per line (a bare `null` is a Debezium tombstone), each field's value as the
//! text of its column, unknown fields refused unless the table ignores them.

use std::io::BufRead;

use deltalake::arrow::datatypes::{DataType, Field, Schema};
use serde_json::{Map, Value};

use super::chunk::{Lines, TextChunk};
use super::{Destination, ReadError, ReadOutcome, CHUNK_ROWS};
use crate::config::{CdcFormat, TableConfig, UnknownFields};
use crate::schema::BadRow;

pub(super) enum JsonLine {
    Object(Map<String, Value>),
    /// A bare `null`: a Debezium tombstone (the Kafka compaction marker after a delete).
    Null,
    Bad(String),
}

pub(super) fn parse_json_line(text: &str) -> JsonLine {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => JsonLine::Object(map),
        Ok(Value::Null) => JsonLine::Null,
        Ok(other) => JsonLine::Bad(format!(
            "expected a JSON object, found {}",
            json_type(&other)
        )),
        Err(e) => JsonLine::Bad(format!("invalid JSON: {e}")),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Text cells of one JSON object for the target columns, or the reason it does not fit structurally.
/// The text of one JSON value for column `field` (cast to its type later). Nested values are kept as
/// JSON text in string columns and rejected elsewhere.
pub(crate) fn json_cell(v: &Value, field: &Field) -> Result<Option<String>, String> {
    Ok(match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(_) | Value::Object(_) if field.data_type() == &DataType::Utf8 => {
            Some(v.to_string())
        }
        other => {
            return Err(format!(
                "column `{}`: expected a scalar, found {}",
                field.name(),
                json_type(other)
            ))
        }
    })
}

fn json_cells(
    map: &Map<String, Value>,
    target: &Schema,
    unknown: UnknownFields,
) -> Result<Vec<Option<String>>, String> {
    let mut cells = Vec::with_capacity(target.fields().len());
    let mut matched = 0;
    for f in target.fields() {
        let cell = match map.get(f.name()) {
            None => None,
            Some(v) => {
                matched += 1;
                json_cell(v, f)?
            }
        };
        cells.push(cell);
    }
    // Evolve added the fields its sample saw; one it did not see is still not dropped silently.
    if unknown != UnknownFields::Ignore && matched < map.len() {
        if let Some(k) = map.keys().find(|k| target.field_with_name(k).is_err()) {
            return Err(format!("unknown field `{k}` (not in the table schema)"));
        }
    }
    Ok(cells)
}

pub(super) fn parse_jsonl(
    reader: impl BufRead,
    table: &TableConfig,
    mut dest: Destination,
) -> Result<ReadOutcome, ReadError> {
    let target = dest.target;
    let mut out = ReadOutcome::default();
    let mut chunk = TextChunk::new(target.fields().len());
    let mut lines = Lines::new(reader);
    while let Some((row, text)) = lines.next_line()? {
        let text = match text {
            Ok(t) => t,
            Err(raw) => {
                out.bad.push(BadRow {
                    row: Some(row),
                    raw: Some(raw),
                    reason: "line is not valid UTF-8".into(),
                });
                continue;
            }
        };
        let cells = match parse_json_line(&text) {
            JsonLine::Object(map) => json_cells(&map, target, table.unknown_fields),
            // The delete event before it carries everything; a tombstone adds nothing to keep.
            JsonLine::Null if table.cdc == CdcFormat::Debezium => continue,
            JsonLine::Null => Err("expected a JSON object, found null".to_string()),
            JsonLine::Bad(reason) => Err(reason),
        };
        match cells {
            Ok(cells) => {
                let refs: Vec<Option<&str>> = cells.iter().map(|c| c.as_deref()).collect();
                chunk.push(row, text, &refs);
            }
            Err(reason) => out.bad.push(BadRow {
                row: Some(row),
                raw: Some(text),
                reason,
            }),
        }
        if chunk.len() >= CHUNK_ROWS {
            chunk.flush(&mut dest, &mut out)?;
        }
    }
    chunk.flush(&mut dest, &mut out)?;
    Ok(out)
}
