//! Debezium envelopes (`{before, after, op, ts_ms, source}`, with or without the JSON converter's
//! `{schema, payload}` wrapper) as row cells, sequence and operation.

use std::collections::HashMap;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use serde_json::value::RawValue;

use super::connect::{self, RowSchema, Wire};
use super::{strings, Events, Normalizer, OP_DELETE, OP_TRUNCATE, OP_UPSERT};
use crate::config::UnknownFields;
use crate::error::{Error, Result};
use crate::read::jsonl::{json_cell, raw_object, RawObject};
use crate::schema;
use deltalake::arrow::datatypes::{DataType, Field};

impl Normalizer {
    /// Debezium envelopes: `{before, after, op, ts_ms, source}`, with or without the outer
    /// `{schema, payload}` wrapper. Creates, reads (snapshots) and updates take the after-image; deletes
    /// take the keys from `before`.
    pub(super) fn debezium(&self, bronze: &RecordBatch, events: &mut Events) -> Result<()> {
        let Events {
            cells,
            seq,
            ops,
            reasons,
            skip,
            unavailable,
            discovered,
        } = events;
        let n = bronze.num_rows();
        let text: Vec<(String, ArrayRef)> = bronze
            .schema()
            .fields()
            .iter()
            .filter(|f| !schema::is_lineage(f.name()))
            .map(|f| {
                Ok((
                    f.name().clone(),
                    strings(
                        bronze
                            .column_by_name(f.name())
                            .ok_or_else(|| Error::invariant("column vanished"))?,
                    )?,
                ))
            })
            .collect::<Result<_>>()?;
        // Envelopes of one connector carry the same schema text: parsed once per distinct text.
        let mut schemas: HashMap<&str, std::result::Result<RowSchema, String>> = HashMap::new();
        let schema_column = text.iter().find(|(n, _)| n == "schema").map(|(_, a)| a);
        for i in 0..n {
            let envelope = envelope_at(&text, i);
            let wires = match schema_column.and_then(|a| text_at(a, i)) {
                Some(s) => match schemas.entry(s).or_insert_with(|| RowSchema::parse(s)) {
                    Ok(w) => Some(&*w),
                    Err(reason) => {
                        reasons[i] = Some(reason.clone());
                        None
                    }
                },
                None => None,
            };
            let (op, image) = match &envelope {
                Ok(e) => match e.op.as_deref() {
                    Some("c" | "r" | "u") => (OP_UPSERT, Ok(e.after.as_ref())),
                    Some("d") => (OP_DELETE, Ok(e.before.as_ref())),
                    // A logical decoding message (`pg_logical_emit_message`): not a row change.
                    Some("m") => {
                        skip[i] = true;
                        (OP_UPSERT, Ok(None))
                    }
                    // A truncate: every row older than it goes (or, `truncate = "ignore"`, nothing).
                    Some("t") if self.table.apply_truncates => (OP_TRUNCATE, Ok(None)),
                    Some("t") => {
                        skip[i] = true;
                        (OP_UPSERT, Ok(None))
                    }
                    Some(other) => {
                        reasons[i] = Some(format!(
                            "unknown Debezium op `{other}` (expected c, r, u or d)"
                        ));
                        (OP_UPSERT, Ok(None))
                    }
                    None => {
                        // A tombstone (payload null) or a schema-change record: nothing to apply.
                        skip[i] = true;
                        (OP_UPSERT, Ok(None))
                    }
                },
                Err(reason) => {
                    reasons[i] = Some(reason.clone());
                    (OP_UPSERT, Err(()))
                }
            };
            ops.push(op);
            let image = image.ok().flatten();
            if reasons[i].is_none() && !skip[i] && image.is_none() && op != OP_TRUNCATE {
                reasons[i] = Some(format!(
                    "Debezium `{}` event without its {} image",
                    if op == OP_DELETE { "d" } else { "c/r/u" },
                    if op == OP_DELETE { "before" } else { "after" }
                ));
            }
            for (c, (b, f)) in cells.iter_mut().zip(self.row_schema.fields()).enumerate() {
                let cell = match image.and_then(|m| m.get(f.name())) {
                    // TOAST: "unchanged, not sent" (a string, or base64 in a bytes column).
                    Some(v) if self.is_unavailable_json(v) => {
                        unavailable[i].push(c);
                        None
                    }
                    Some(v) => {
                        let hinted;
                        let wire = match wires.and_then(|w| w.get(f.name())) {
                            Some(wire) => Some(wire),
                            None => {
                                hinted = Wire::implied(f.data_type(), v, &self.table.wire);
                                hinted.as_ref()
                            }
                        };
                        // A type the source declares wider than silver's column (an `ALTER COLUMN
                        // ... TYPE` at the source): evolve widens the column, the other modes keep
                        // the values that fit and quarantine the others saying why.
                        let source = wire
                            .and_then(Wire::source_type)
                            .filter(|s| s != f.data_type());
                        let widening = source.as_ref().filter(|s| schema::widens(f.data_type(), s));
                        if let (Some(s), UnknownFields::Evolve) =
                            (widening, self.table.unknown_fields)
                        {
                            widen(discovered, f.name(), s);
                        }
                        let decoded = match wire {
                            Some(wire) => connect::decode(v, wire, f.data_type(), f.name()),
                            None => json_cell(v, f),
                        }
                        .map_err(|e| match &source {
                            Some(s) => type_change_reason(e, f, s),
                            None => e,
                        });
                        // Without evolve, a value of the wider type that silver's column cannot
                        // hold is quarantined here, saying so (the cast would only say "not valid").
                        let decoded = match (decoded, widening) {
                            (Ok(Some(text)), Some(s)) if !fits(&text, f.data_type()) => {
                                Err(type_change_reason(
                                    format!(
                                        "column `{}`: `{text}` does not fit {}",
                                        f.name(),
                                        f.data_type()
                                    ),
                                    f,
                                    s,
                                ))
                            }
                            (d, _) => d,
                        };
                        match decoded {
                            Ok(c) => c,
                            Err(e) => {
                                reasons[i].get_or_insert(e);
                                None
                            }
                        }
                    }
                    None => None,
                };
                b.append_option(cell);
            }
            // A column the table does not declare (a column added by `ALTER TABLE`) is never
            // dropped silently: the event goes to quarantine naming it, unless the table ignores
            // unknown fields.
            // (A delete needs only its keys: its before-image is not checked.)
            let unknown = |m: &RawObject<'_>| -> Vec<String> {
                m.keys()
                    .filter(|k| self.row_schema.field_with_name(k).is_err())
                    .cloned()
                    .collect()
            };
            if reasons[i].is_none()
                && op == OP_UPSERT
                && self.table.unknown_fields == UnknownFields::Evolve
            {
                // Evolve: the step adds the column (typed by the Connect schema, or text) and reads
                // the events again.
                for name in image.map(unknown).unwrap_or_default() {
                    if discovered.iter().all(|f| f.name() != &name) {
                        // Typed by the Connect schema, or by bronze's `after` struct (Avro).
                        let dt = match wires.and_then(|w| w.get(&name)) {
                            Some(wire) => wire.column_type(),
                            None => after_child_type(bronze, &name).unwrap_or(DataType::Utf8),
                        };
                        discovered.push(Field::new(name, dt, true));
                    }
                }
            }
            if reasons[i].is_none()
                && op == OP_UPSERT
                && self.table.unknown_fields == UnknownFields::Quarantine
            {
                if let Some(field) = image.and_then(|m| unknown(m).into_iter().next()) {
                    reasons[i] = Some(format!(
                        "unknown field `{field}` in the Debezium after-image (not in row_columns): add it to row_columns, or set unknown_fields = \"evolve\" to add such columns as they appear (or \"ignore\" to drop them)"
                    ));
                }
            }
            let seq_value = match (self.table.sequence_by.as_deref(), envelope.as_ref()) {
                (Some("ts_ms"), Ok(e)) => e.ts_ms.clone(),
                (Some(s), Ok(e)) if s.starts_with("source.") => e
                    .source
                    .as_ref()
                    .and_then(|src| src.get(&s["source.".len()..]))
                    .and_then(|v| scalar_text(v)),
                (Some(s), Ok(_)) => image.and_then(|m| m.get(s)).and_then(|v| scalar_text(v)),
                _ => None,
            };
            seq.append_option(seq_value);
        }
        Ok(())
    }
}

/// Records that column `name` must become `to` (the widest type seen wins).
fn widen(discovered: &mut Vec<Field>, name: &str, to: &DataType) {
    match discovered.iter_mut().find(|f| f.name() == name) {
        Some(f) if schema::widens(f.data_type(), to) => *f = Field::new(name, to.clone(), true),
        Some(_) => {}
        None => discovered.push(Field::new(name, to.clone(), true)),
    }
}

/// Whether decoded number text fits a column of type `to` exactly (other types: the cast decides).
fn fits(text: &str, to: &DataType) -> bool {
    match to {
        DataType::Int8 => text.parse::<i8>().is_ok(),
        DataType::Int16 => text.parse::<i16>().is_ok(),
        DataType::Int32 => text.parse::<i32>().is_ok(),
        DataType::Int64 => text.parse::<i64>().is_ok(),
        DataType::Decimal128(p, s) => schema::parse_decimal(text, *p, *s).is_ok(),
        _ => true,
    }
}

/// Why a value did not fit, when the source declares its column with another type than silver's.
fn type_change_reason(reason: String, column: &Field, source: &DataType) -> String {
    let what = if schema::widens(column.data_type(), source) {
        "a wider type: set unknown_fields = \"evolve\" to widen silver's column as the source widens, or declare the wider type in row_columns"
    } else {
        "not a widening of it, so silver keeps its type and quarantines what does not fit"
    };
    format!(
        "{reason} (the source declares `{}` as {source}, silver's column is {}: {what})",
        column.name(),
        column.data_type()
    )
}

/// The type of `name` in bronze's `after` struct column (an Avro envelope), if bronze has one.
fn after_child_type(bronze: &RecordBatch, name: &str) -> Option<DataType> {
    match bronze.schema().field_with_name("after").ok()?.data_type() {
        DataType::Struct(children) => children
            .iter()
            .find(|c| c.name() == name)
            .map(|c| c.data_type().clone()),
        _ => None,
    }
}

/// A JSON value as sequence text: a string unescaped, a number as written; `None` for null.
fn scalar_text(v: &RawValue) -> Option<String> {
    match v.get().as_bytes().first() {
        None | Some(b'n') => None,
        Some(b'"') => serde_json::from_str::<String>(v.get()).ok(),
        _ => Some(v.get().to_string()),
    }
}

/// The parts of a Debezium envelope the normaliser uses, with every value's exact JSON text.
#[derive(Default)]
struct Envelope<'a> {
    op: Option<String>,
    before: Option<RawObject<'a>>,
    after: Option<RawObject<'a>>,
    source: Option<RawObject<'a>>,
    ts_ms: Option<String>,
}

pub(super) fn text_at(array: &ArrayRef, i: usize) -> Option<&str> {
    let s = array.as_string::<i32>();
    s.is_valid(i).then(|| s.value(i))
}

/// The Debezium envelope of row `i`: from the `payload` column (wrapped form) or from the envelope
/// columns themselves (`before`/`after`/`source` hold JSON text in bronze).
fn envelope_at(
    columns: &[(String, ArrayRef)],
    i: usize,
) -> std::result::Result<Envelope<'_>, String> {
    let get = |name: &str| {
        columns
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, a)| text_at(a, i))
    };

    if columns.iter().any(|(n, _)| n == "payload") {
        let Some(payload) = get("payload") else {
            return Ok(Envelope::default());
        };
        let Some(p) = raw_object(payload)
            .map_err(|_| "Debezium `payload` is not a JSON object".to_string())?
        else {
            return Ok(Envelope::default());
        };
        let part = |name: &str| -> std::result::Result<Option<RawObject<'_>>, String> {
            match p.get(name).copied() {
                Some(v) => object(name, v.get()),
                None => Ok(None),
            }
        };
        return Ok(Envelope {
            op: p.get("op").and_then(|v| scalar_text(v)),
            before: part("before")?,
            after: part("after")?,
            source: part("source")?,
            ts_ms: p.get("ts_ms").and_then(|v| scalar_text(v)),
        });
    }
    let part = |name: &str| match get(name) {
        Some(text) => object(name, text),
        None => Ok(None),
    };
    Ok(Envelope {
        op: get("op").map(str::to_string),
        before: part("before")?,
        after: part("after")?,
        source: part("source")?,
        ts_ms: get("ts_ms").map(str::to_string),
    })
}

/// A Debezium envelope part (`before`, `after`, `source`) as a raw JSON object.
fn object<'a>(name: &str, text: &'a str) -> std::result::Result<Option<RawObject<'a>>, String> {
    raw_object(text).map_err(|e| format!("Debezium `{name}`: {e}"))
}
