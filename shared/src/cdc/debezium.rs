//! Debezium envelopes (`{before, after, op, ts_ms, source}`, with or without the JSON converter's
//! `{schema, payload}` wrapper) as row cells, sequence and operation.

use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use serde_json::{Map, Value};

use super::{strings, Events, Normalizer, OP_DELETE, OP_UPSERT};
use crate::error::{Error, Result};
use crate::read::jsonl::json_cell;
use crate::schema;

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
        for i in 0..n {
            let envelope = envelope_at(&text, i);
            let (op, image) = match envelope
                .as_ref()
                .map(|e| (e.get("op").and_then(Value::as_str), e))
            {
                Ok((Some("c" | "r" | "u"), e)) => (OP_UPSERT, e.get("after")),
                Ok((Some("d"), e)) => (OP_DELETE, e.get("before")),
                Ok((Some(other), _)) => {
                    reasons[i] = Some(format!(
                        "unknown Debezium op `{other}` (expected c, r, u or d)"
                    ));
                    (OP_UPSERT, None)
                }
                Ok((None, _)) => {
                    // A tombstone (payload null) or a schema-change record: nothing to apply.
                    skip[i] = true;
                    (OP_UPSERT, None)
                }
                Err(reason) => {
                    reasons[i] = Some(reason.clone());
                    (OP_UPSERT, None)
                }
            };
            ops.push(op);
            let image = image.and_then(Value::as_object);
            if reasons[i].is_none() && !skip[i] && image.is_none() {
                reasons[i] = Some(format!(
                    "Debezium `{}` event without its {} image",
                    if op == OP_DELETE { "d" } else { "c/r/u" },
                    if op == OP_DELETE { "before" } else { "after" }
                ));
            }
            for (b, f) in cells.iter_mut().zip(self.row_schema.fields()) {
                let cell = match image.and_then(|m| m.get(f.name())) {
                    Some(v) => match json_cell(v, f) {
                        Ok(c) => c,
                        Err(e) => {
                            reasons[i].get_or_insert(e);
                            None
                        }
                    },
                    None => None,
                };
                b.append_option(cell);
            }
            let seq_value = match (self.table.sequence_by.as_deref(), envelope.as_ref()) {
                (Some("ts_ms"), Ok(e)) => e.get("ts_ms").cloned(),
                (Some(s), Ok(e)) if s.starts_with("source.") => e
                    .get("source")
                    .and_then(|src| src.get(&s["source.".len()..]))
                    .cloned(),
                (Some(s), Ok(_)) => image.and_then(|m| m.get(s)).cloned(),
                _ => None,
            };
            seq.append_option(seq_value.and_then(|v| match v {
                Value::Null => None,
                Value::String(s) => Some(s),
                other => Some(other.to_string()),
            }));
        }
        Ok(())
    }
}

pub(super) fn text_at(array: &ArrayRef, i: usize) -> Option<&str> {
    let s = array.as_string::<i32>();
    s.is_valid(i).then(|| s.value(i))
}

/// The Debezium envelope of row `i` as a JSON object: from the `payload` column (wrapped form) or from
/// the envelope columns themselves (`before`/`after`/`source` hold JSON text in bronze).
fn envelope_at(
    columns: &[(String, ArrayRef)],
    i: usize,
) -> std::result::Result<Map<String, Value>, String> {
    let get = |name: &str| {
        columns
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, a)| text_at(a, i))
    };
    if columns.iter().any(|(n, _)| n == "payload") {
        return match get("payload") {
            None => Ok(Map::new()),
            Some(p) => match serde_json::from_str::<Value>(p) {
                Ok(Value::Object(m)) => Ok(m),
                Ok(Value::Null) => Ok(Map::new()),
                Ok(_) | Err(_) => Err("Debezium `payload` is not a JSON object".to_string()),
            },
        };
    }
    let mut m = Map::new();
    for (name, _) in columns {
        let Some(text) = get(name) else { continue };
        let value = match name.as_str() {
            "before" | "after" | "source" | "transaction" => {
                match serde_json::from_str::<Value>(text) {
                    Ok(v) => v,
                    Err(e) => return Err(format!("Debezium `{name}` is not JSON: {e}")),
                }
            }
            "ts_ms" => text
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or(Value::String(text.to_string())),
            _ => Value::String(text.to_string()),
        };
        m.insert(name.clone(), value);
    }
    Ok(m)
}
