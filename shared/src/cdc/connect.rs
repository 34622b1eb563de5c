//! Debezium row values decoded by the Kafka Connect schema that travels with them (JsonConverter with
//! `schemas.enable=true`: `{"schema": {...}, "payload": {...}}`), as Debezium and Kafka Connect define
//! the wire forms:
//!
//! | logical type (schema `name`) | wire | becomes |
//! |---|---|---|
//! | `org.apache.kafka.connect.data.Decimal` | bytes (base64), `parameters.scale` | its exact decimal text |
//! | `io.debezium.data.VariableScaleDecimal` | struct `{scale, value}` | its exact decimal text |
//! | `io.debezium.time.Date`, `org.apache.kafka.connect.data.Date` | int32 days since epoch | `YYYY-MM-DD` |
//! | `io.debezium.time.Timestamp`, `org.apache.kafka.connect.data.Timestamp` | int64 ms since epoch | UTC timestamp |
//! | `io.debezium.time.MicroTimestamp` / `NanoTimestamp` | int64 µs / ns since epoch | UTC timestamp (ns only when a whole µs) |
//! | `io.debezium.time.Time`, `org.apache.kafka.connect.data.Time` / `MicroTime` / `NanoTime` | ms / µs / ns since midnight | `HH:MM:SS.ffffff` |
//! | `ZonedTimestamp`, `ZonedTime`, `Json`, `Uuid`, `Enum`, `EnumSet`, `Year`, strings, numbers | as sent | as sent |
//! | other structs, arrays, maps | JSON | their JSON text (string and json columns) |
//!
//! A column declared as a number keeps the number as sent (a `long` column for a `MicroTimestamp`
//! holds the µs); a value that does not fit the declared type is rejected by the strict cast, as any
//! other. Temporal values without a zone (`Timestamp`, `MicroTimestamp`, `NanoTimestamp`) are the
//! database's wall-clock time; they are stored as UTC, which is what Debezium's epoch numbers mean.

use std::collections::HashMap;

use base64::Engine;
use deltalake::arrow::datatypes::{DataType, TimeUnit};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::WireHints;

/// One field of a Connect struct schema.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Wire {
    #[serde(rename = "type")]
    kind: String,
    /// The logical type (`org.apache.kafka.connect.data.Decimal`, `io.debezium.time.Date`...).
    name: Option<String>,
    #[serde(default)]
    parameters: HashMap<String, String>,
    #[serde(default)]
    field: String,
    #[serde(default)]
    fields: Vec<Wire>,
}

impl Wire {
    fn logical(kind: &str, name: &str) -> Wire {
        Wire {
            kind: kind.into(),
            name: Some(name.into()),
            parameters: HashMap::new(),
            field: String::new(),
            fields: Vec::new(),
        }
    }

    /// The wire type a value without a schema implies for a column of type `to` (see
    /// [`crate::config::WireHints`]): an integer in a date column is days since the epoch, an integer
    /// in a timestamp column is in the table's `integer_timestamps` unit, a string in a decimal column
    /// is base64 unscaled bytes when the table says `binary_decimals`.
    pub(super) fn implied(to: &DataType, v: &RawValue, hints: &WireHints) -> Option<Wire> {
        let text = v.get();
        let number = text.starts_with(|c: char| c == '-' || c.is_ascii_digit());
        match to {
            DataType::Date32 if number => Some(Wire::logical("int32", "io.debezium.time.Date")),
            DataType::Timestamp(..) if number => {
                let name = match hints.integer_timestamps? {
                    TimeUnit::Millisecond => "org.apache.kafka.connect.data.Timestamp",
                    TimeUnit::Microsecond => "io.debezium.time.MicroTimestamp",
                    TimeUnit::Nanosecond => "io.debezium.time.NanoTimestamp",
                    TimeUnit::Second => return None,
                };
                Some(Wire::logical("int64", name))
            }
            DataType::Decimal128(_, scale) if hints.binary_decimals && text.starts_with('"') => {
                let mut w = Wire::logical("bytes", "org.apache.kafka.connect.data.Decimal");
                w.parameters.insert("scale".into(), scale.to_string());
                Some(w)
            }
            _ => None,
        }
    }

    /// The type the source declares for this field when the wire says it exactly: plain integers and
    /// floats, and decimals that carry their precision (`connect.decimal.precision`). What a type
    /// change at the source (`ALTER COLUMN ... TYPE`) is judged by; `None` for everything else.
    pub(super) fn source_type(&self) -> Option<DataType> {
        let logical = self.name.as_deref().unwrap_or("");
        let short = logical.rsplit('.').next().unwrap_or(logical);
        match (self.kind.as_str(), short) {
            ("bytes", "Decimal") => {
                let get = |k: &str| self.parameters.get(k)?.parse::<u8>().ok();
                let (precision, scale) = (get("connect.decimal.precision")?, get("scale")?);
                (1..=38)
                    .contains(&precision)
                    .then(|| DataType::Decimal128(precision, scale.min(precision) as i8))
            }
            (_, "") => match self.kind.as_str() {
                "int8" => Some(DataType::Int8),
                "int16" => Some(DataType::Int16),
                "int32" => Some(DataType::Int32),
                "int64" => Some(DataType::Int64),
                "float32" => Some(DataType::Float32),
                "float64" => Some(DataType::Float64),
                _ => None,
            },
            _ => None,
        }
    }

    /// The column type a field of this wire type becomes when schema evolution adds it: what its
    /// values decode to ([`decode`]); structs, arrays, maps and bytes as text.
    pub(super) fn column_type(&self) -> DataType {
        let logical = self.name.as_deref().unwrap_or("");
        let short = logical.rsplit('.').next().unwrap_or(logical);
        match (self.kind.as_str(), short) {
            ("bytes", "Decimal") => {
                let get = |k: &str| self.parameters.get(k).and_then(|v| v.parse::<u8>().ok());
                let scale = get("scale").unwrap_or(0);
                let precision = get("connect.decimal.precision")
                    .unwrap_or(38)
                    .max(scale)
                    .clamp(1, 38);
                DataType::Decimal128(precision, scale.min(precision) as i8)
            }
            ("int32", "Date") => DataType::Date32,
            ("int64", "Timestamp" | "MicroTimestamp") => crate::schema::timestamp_type(),
            ("string", "ZonedTimestamp") => crate::schema::timestamp_type(),
            ("int8" | "int16" | "int32", _) => DataType::Int32,
            ("int64", _) => DataType::Int64,
            ("float32" | "float64", _) => DataType::Float64,
            ("boolean", _) => DataType::Boolean,
            _ => DataType::Utf8,
        }
    }
}

/// The row columns of an envelope schema (`before`/`after`), by name.
#[derive(Debug, Default)]
pub(super) struct RowSchema {
    columns: HashMap<String, Wire>,
}

impl RowSchema {
    /// The row columns of a Debezium envelope's Connect schema: the fields of its `after` struct
    /// (and of `before`, for deletes).
    pub(super) fn parse(schema: &str) -> Result<RowSchema, String> {
        let envelope: Wire = serde_json::from_str(schema)
            .map_err(|e| format!("Debezium envelope `schema` is not a Connect schema: {e}"))?;
        let mut columns = HashMap::new();
        for part in envelope
            .fields
            .into_iter()
            .filter(|f| f.field == "before" || f.field == "after")
        {
            for column in part.fields {
                columns.insert(column.field.clone(), column);
            }
        }
        Ok(RowSchema { columns })
    }

    pub(super) fn get(&self, column: &str) -> Option<&Wire> {
        self.columns.get(column)
    }
}

/// Decoded text of `v` (a row value of wire type `wire`) for a column of type `to`; `None` for null.
/// `Ok(None)` from [`decode`] is a null; values it has no rule for are returned as sent.
pub(super) fn decode(
    v: &RawValue,
    wire: &Wire,
    to: &DataType,
    column: &str,
) -> Result<Option<String>, String> {
    let text = v.get();
    if text == "null" {
        return Ok(None);
    }
    let bad = |what: &str| format!("column `{column}`: `{text}` is not a valid {what}");
    let int = || text.parse::<i64>().map_err(|_| bad(&wire.kind));
    let numeric_column = matches!(
        to,
        DataType::Int32 | DataType::Int64 | DataType::Float64 | DataType::Decimal128(..)
    );
    let Some(logical) = wire.name.as_deref() else {
        return as_sent(v, to, column);
    };
    let short = logical.rsplit('.').next().unwrap_or(logical);
    let is_connect = logical.starts_with("org.apache.kafka.connect.data.");
    Ok(Some(match (short, is_connect) {
        ("Decimal", true) => {
            let scale = wire
                .parameters
                .get("scale")
                .and_then(|s| s.parse::<u32>().ok())
                .ok_or_else(|| format!("column `{column}`: Decimal schema without a scale"))?;
            let b64: String = serde_json::from_str(text).map_err(|_| bad("Decimal (base64)"))?;
            unscaled_text(&b64, scale).map_err(|e| format!("column `{column}`: {e}"))?
        }
        ("VariableScaleDecimal", false) => {
            #[derive(Deserialize)]
            struct Vsd {
                scale: u32,
                value: String,
            }
            let d: Vsd = serde_json::from_str(text)
                .map_err(|_| bad("VariableScaleDecimal {scale, value}"))?;
            unscaled_text(&d.value, d.scale).map_err(|e| format!("column `{column}`: {e}"))?
        }
        _ if numeric_column => return as_sent(v, to, column),
        ("Date", _) => {
            let days = int()?;
            let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
                .and_then(|e| e.checked_add_signed(chrono::Duration::days(days)))
                .ok_or_else(|| bad("date (days since epoch)"))?;
            match to {
                DataType::Timestamp(..) => format!("{date}T00:00:00Z"),
                _ => date.to_string(),
            }
        }
        ("Timestamp", _) => timestamp(int()?.checked_mul(1_000), &bad)?,
        ("MicroTimestamp", false) => timestamp(Some(int()?), &bad)?,
        ("NanoTimestamp", false) => {
            let ns = int()?;
            if ns % 1_000 != 0 {
                return Err(format!(
                    "column `{column}`: `{ns}` ns has nanoseconds: a timestamp (µs) would round it"
                ));
            }
            timestamp(Some(ns / 1_000), &bad)?
        }
        ("Time", _) => time_of_day(int()?.checked_mul(1_000), &bad)?,
        ("MicroTime", false) => time_of_day(Some(int()?), &bad)?,
        ("NanoTime", false) => {
            let ns = int()?;
            if ns % 1_000 != 0 {
                return Err(format!(
                    "column `{column}`: `{ns}` ns has nanoseconds: µs precision would round it"
                ));
            }
            time_of_day(Some(ns / 1_000), &bad)?
        }
        _ => return as_sent(v, to, column),
    }))
}

/// A value with no decoding rule: scalars as written (strings unescaped), structs, arrays and maps as
/// their JSON text in string columns.
fn as_sent(v: &RawValue, to: &DataType, column: &str) -> Result<Option<String>, String> {
    let field = deltalake::arrow::datatypes::Field::new(column, to.clone(), true);
    crate::read::jsonl::json_cell(v, &field)
}

/// The exact decimal text of a big-endian two's-complement unscaled integer (base64) at `scale`.
fn unscaled_text(b64: &str, scale: u32) -> Result<String, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("`{b64}` is not base64 ({e})"))?;
    if bytes.is_empty() {
        return Err(format!("`{b64}` holds no digits"));
    }
    if bytes.len() > 16 {
        return Err(format!(
            "`{b64}` is a {}-byte decimal: more than 38 digits do not fit a decimal column",
            bytes.len()
        ));
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut wide = [fill; 16];
    wide[16 - bytes.len()..].copy_from_slice(&bytes);
    let value = i128::from_be_bytes(wide);
    let digits = value.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    let sign = if value < 0 { "-" } else { "" };
    Ok(if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    })
}

fn timestamp(micros: Option<i64>, bad: &dyn Fn(&str) -> String) -> Result<String, String> {
    micros
        .and_then(chrono::DateTime::from_timestamp_micros)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .ok_or_else(|| bad("timestamp"))
}

fn time_of_day(micros: Option<i64>, bad: &dyn Fn(&str) -> String) -> Result<String, String> {
    let micros = micros
        .filter(|m| (0..86_400_000_000).contains(m))
        .ok_or_else(|| bad("time of day"))?;
    let (secs, frac) = (micros / 1_000_000, micros % 1_000_000);
    Ok(format!(
        "{:02}:{:02}:{:02}.{frac:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(kind: &str, name: Option<&str>, scale: Option<&str>) -> Wire {
        Wire {
            kind: kind.into(),
            name: name.map(str::to_string),
            parameters: scale
                .map(|s| HashMap::from([("scale".to_string(), s.to_string())]))
                .unwrap_or_default(),
            field: String::new(),
            fields: Vec::new(),
        }
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    fn dec(v: &str, w: &Wire, to: &DataType) -> Result<Option<String>, String> {
        decode(&raw(v), w, to, "c")
    }

    #[test]
    fn connect_decimals_are_exact() {
        let d = wire(
            "bytes",
            Some("org.apache.kafka.connect.data.Decimal"),
            Some("2"),
        );
        let to = DataType::Decimal128(12, 2);
        // 0x2710 = 10000 → 100.00 (Debezium's documentation example: "JxA=").
        assert_eq!(dec("\"JxA=\"", &d, &to).unwrap().as_deref(), Some("100.00"));
        // -1 (0xff) at scale 2.
        assert_eq!(dec("\"/w==\"", &d, &to).unwrap().as_deref(), Some("-0.01"));
        assert_eq!(dec("null", &d, &to).unwrap(), None);
        assert!(dec("\"not base64!\"", &d, &to)
            .unwrap_err()
            .contains("base64"));
        let v = wire(
            "struct",
            Some("io.debezium.data.VariableScaleDecimal"),
            None,
        );
        assert_eq!(
            dec(r#"{"scale":3,"value":"AeJA"}"#, &v, &to)
                .unwrap()
                .as_deref(),
            Some("123.456")
        );
    }

    #[test]
    fn debezium_times_follow_their_units() {
        let ts = DataType::Timestamp(deltalake::arrow::datatypes::TimeUnit::Microsecond, None);
        let date = wire("int32", Some("io.debezium.time.Date"), None);
        assert_eq!(
            dec("18472", &date, &DataType::Date32).unwrap().as_deref(),
            Some("2020-07-29")
        );
        let micro = wire("int64", Some("io.debezium.time.MicroTimestamp"), None);
        assert_eq!(
            dec("1683966846547000", &micro, &ts).unwrap().as_deref(),
            Some("2023-05-13T08:34:06.547000Z")
        );
        let milli = wire(
            "int64",
            Some("org.apache.kafka.connect.data.Timestamp"),
            None,
        );
        assert_eq!(
            dec("1683966846547", &milli, &ts).unwrap().as_deref(),
            Some("2023-05-13T08:34:06.547000Z")
        );
        let nano = wire("int64", Some("io.debezium.time.NanoTimestamp"), None);
        assert!(dec("1683966846547000001", &nano, &ts)
            .unwrap_err()
            .contains("round"));
        let time = wire("int64", Some("io.debezium.time.MicroTime"), None);
        assert_eq!(
            dec("45296000001", &time, &DataType::Utf8)
                .unwrap()
                .as_deref(),
            Some("12:34:56.000001")
        );
        // A long column keeps the number.
        assert_eq!(
            dec("1683966846547000", &micro, &DataType::Int64)
                .unwrap()
                .as_deref(),
            Some("1683966846547000")
        );
    }

    #[test]
    fn the_row_schema_comes_from_the_after_and_before_structs() {
        let s = r#"{"type":"struct","fields":[{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":true,"name":"a.Value","field":"before"},{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"},{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2","connect.decimal.precision":"12"},"field":"balance"}],"optional":true,"name":"a.Value","field":"after"},{"type":"string","optional":false,"field":"op"}],"optional":false,"name":"a.Envelope"}"#;
        let rs = RowSchema::parse(s).unwrap();
        assert_eq!(rs.columns.len(), 2);
        assert!(rs.get("id").is_some());
        assert_eq!(rs.get("balance").unwrap().parameters["scale"], "2");
        assert!(RowSchema::parse("[1]").is_err());
    }
}
