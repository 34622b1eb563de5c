//! JSON lines: one object per line (a bare `null` is a Debezium tombstone), each field's value as the
//! text of its column, unknown fields refused unless the table ignores them.

use std::io::BufRead;

use deltalake::arrow::datatypes::{DataType, Field, Schema};
use indexmap::IndexMap;
use serde_json::value::RawValue;

use super::chunk::{Lines, TextChunk};
use super::{Destination, ReadError, ReadOutcome};
use crate::config::{CdcFormat, TableConfig, UnknownFields};

/// A JSON object with each value's exact text, in the object's order: numbers keep every digit (no
/// trip through `f64`), so a decimal is stored exactly or rejected, never rounded.
pub(crate) type RawObject<'a> = IndexMap<String, &'a RawValue>;

pub(crate) enum JsonLine<'a> {
    Object(RawObject<'a>),
    /// A bare `null`: a Debezium tombstone (the Kafka compaction marker after a delete).
    Null,
    Bad(String),
}

/// Parses a JSON object's text (`Ok(None)` for `null`).
pub(crate) fn raw_object(text: &str) -> Result<Option<RawObject<'_>>, String> {
    match serde_json::from_str::<Option<RawObject>>(text) {
        Ok(o) => Ok(o),
        Err(e) => Err(match serde_json::from_str::<&RawValue>(text) {
            Ok(v) => format!("expected a JSON object, found {}", json_type(v)),
            Err(_) => format!("invalid JSON: {e}"),
        }),
    }
}

pub(crate) fn parse_json_line(text: &str) -> JsonLine<'_> {
    match raw_object(text) {
        Ok(Some(map)) => JsonLine::Object(map),
        Ok(None) => JsonLine::Null,
        Err(reason) => JsonLine::Bad(reason),
    }
}

/// What a JSON value is, from its first character (its text is valid JSON).
pub(crate) fn json_type(v: &RawValue) -> &'static str {
    match v.get().as_bytes().first() {
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        Some(b'"') => "a string",
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        _ => "a number",
    }
}

/// The text of one JSON value for column `field` (cast to its type later): a string unescaped, a
/// number or boolean as written. Nested values are kept as their JSON text in string columns and
/// rejected elsewhere.
pub(crate) fn json_cell(v: &RawValue, field: &Field) -> Result<Option<String>, String> {
    let text = v.get();
    Ok(match text.as_bytes().first() {
        Some(b'n') => None,
        Some(b'"') => Some(
            serde_json::from_str::<String>(text)
                .map_err(|e| format!("column `{}`: {e}", field.name()))?,
        ),
        Some(b'[' | b'{') if field.data_type() != &DataType::Utf8 => {
            return Err(format!(
                "column `{}`: expected a scalar, found {}",
                field.name(),
                json_type(v)
            ))
        }
        _ => Some(text.to_string()),
    })
}

fn json_cells(
    map: &RawObject,
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

/// The cells of one JSON record's text for `target`, or why it cannot be a row; `None` for a Debezium
/// tombstone (`null`: the delete event before it carries everything, so there is nothing to keep).
pub(super) fn record_cells(
    text: &str,
    target: &Schema,
    table: &TableConfig,
) -> Option<Result<Vec<Option<String>>, String>> {
    Some(match parse_json_line(text) {
        JsonLine::Object(map) => json_cells(&map, target, table.unknown_fields),
        JsonLine::Null if table.cdc == CdcFormat::Debezium => return None,
        JsonLine::Null => Err("expected a JSON object, found null".to_string()),
        JsonLine::Bad(reason) => Err(reason),
    })
}

/// A record's cells into `chunk`, or the record into `out`'s rejects with why.
pub(super) fn push_record(
    chunk: &mut TextChunk,
    out: &mut ReadOutcome,
    row: u64,
    text: String,
    cells: Result<Vec<Option<String>>, String>,
) {
    match cells {
        Ok(cells) => {
            let refs: Vec<Option<&str>> = cells.iter().map(|c| c.as_deref()).collect();
            chunk.push(row, text, &refs);
        }
        Err(reason) => out.reject(Some(row), Some(text), reason),
    }
}

pub(super) fn parse_jsonl(
    reader: impl BufRead,
    table: &TableConfig,
    mut dest: Destination,
) -> Result<ReadOutcome, ReadError> {
    let target = dest.target;
    let mut out = ReadOutcome::new(table.limits);
    let mut chunk = TextChunk::new(target.fields().len());
    let mut lines = Lines::new(reader, table.limits.max_line_bytes);
    while let Some((row, text)) = lines.next_line()? {
        let text = match text {
            Ok(t) => t,
            Err((raw, reason)) => {
                out.reject(Some(row), Some(raw), reason);
                continue;
            }
        };
        let Some(cells) = record_cells(&text, target, table) else {
            continue;
        };
        push_record(&mut chunk, &mut out, row, text, cells);
        if chunk.full() {
            chunk.flush(&mut dest, &mut out)?;
        }
    }
    chunk.flush(&mut dest, &mut out)?;
    Ok(out)
}
