//! Metrics as CloudWatch Embedded Metric Format (EMF) lines: a JSON log line whose `_aws` member tells
//! CloudWatch which of its members are metrics (name, unit) and which dimensions they carry; CloudWatch
//! Logs extracts them, so a function needs no metrics API call (the convention of Lambda Powertools).
//! Specification: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
//!
//! The library prints nothing: a [`Metrics`] document is handed to the sink the process installed
//! ([`install`]; a Lambda function prints it to stdout). Without a sink (the runner, the CLI, tests)
//! metrics go nowhere.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use serde_json::{json, Map, Value};

/// The namespace of every metric the functions emit.
pub const NAMESPACE: &str = "Lakehouse";

/// CloudWatch's units (the subset used here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Seconds,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
        }
    }
}

/// One EMF document: dimensions (e.g. `Layer`, `Table`) and metric values of one step. Each metric
/// published per table is a custom metric billed per month, so the ones an operator reads per layer
/// only are published per layer only ([`Metrics::per_layer`]).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    dimensions: Vec<(&'static str, String)>,
    values: Vec<(&'static str, f64, Unit)>,
    layer_values: Vec<(&'static str, f64, Unit)>,
}

impl Metrics {
    /// A document for `table` (a table or view) in `layer`: published per (Layer, Table) and per Layer.
    pub fn step(layer: &str, table: &str) -> Metrics {
        Metrics {
            dimensions: vec![("Layer", layer.to_string()), ("Table", table.to_string())],
            values: Vec::new(),
            layer_values: Vec::new(),
        }
    }

    /// A value published per layer only (its (Layer) total), not per table.
    pub fn per_layer(mut self, name: &'static str, value: f64, unit: Unit) -> Self {
        self.layer_values.push((name, value, unit));
        self
    }

    pub fn with(mut self, name: &'static str, value: f64, unit: Unit) -> Self {
        self.values.push((name, value, unit));
        self
    }

    /// The JSON line, stamped `at_ms` (epoch ms). Dimension sets: every dimension, and the first one
    /// alone (a layer's total across its tables).
    pub fn to_line(&self, at_ms: i64) -> String {
        let mut doc = Map::new();
        let names: Vec<&str> = self.dimensions.iter().map(|(k, _)| *k).collect();
        let mut sets = vec![names.clone()];
        if names.len() > 1 {
            sets.push(names[..1].to_vec());
        }
        if !PER_TABLE.load(Ordering::Relaxed) {
            sets.remove(0);
        }
        let listed = |values: &[(&'static str, f64, Unit)]| {
            values
                .iter()
                .map(|(n, _, u)| json!({"Name": n, "Unit": u.name()}))
                .collect::<Vec<_>>()
        };
        let mut directives = vec![json!({
            "Namespace": NAMESPACE, "Dimensions": sets, "Metrics": listed(&self.values),
        })];
        if !self.layer_values.is_empty() {
            directives.push(json!({
                "Namespace": NAMESPACE, "Dimensions": [names[..1].to_vec()],
                "Metrics": listed(&self.layer_values),
            }));
        }
        doc.insert(
            "_aws".into(),
            json!({ "Timestamp": at_ms, "CloudWatchMetrics": directives }),
        );
        for (k, v) in &self.dimensions {
            doc.insert((*k).into(), Value::String(v.clone()));
        }
        for (n, v, _) in self.values.iter().chain(&self.layer_values) {
            // A value JSON cannot hold (NaN, infinite) is published as 0 rather than breaking the line.
            let v = serde_json::Number::from_f64(*v).map_or(json!(0), Value::Number);
            doc.insert((*n).into(), v);
        }
        Value::Object(doc).to_string()
    }

    /// Hands the document to the process's sink, if any.
    pub fn emit(&self) {
        if let Some(sink) = SINK.get() {
            sink(&self.to_line(chrono::Utc::now().timestamp_millis()));
        }
    }
}

/// Whether metrics are published per table too (each is a custom metric billed per month), or per
/// layer only; the functions read [`PER_TABLE_ENV`].
static PER_TABLE: AtomicBool = AtomicBool::new(true);

/// `false` in a function's environment: metrics per layer only (the template's `TableMetrics`).
pub const PER_TABLE_ENV: &str = "LAKEHOUSE_TABLE_METRICS";

/// Installs a function's metrics: lines go to `sink`, per table unless [`PER_TABLE_ENV`] is `false`.
pub fn install(sink: impl Fn(&str) + Send + Sync + 'static) {
    let on = std::env::var(PER_TABLE_ENV).map_or(true, |v| v != "false");
    PER_TABLE.store(on, Ordering::Relaxed);
    set_sink(sink);
}

type Sink = Box<dyn Fn(&str) + Send + Sync>;
static SINK: OnceLock<Sink> = OnceLock::new();

/// Where this process's metric lines go (once; later calls are ignored).
fn set_sink(sink: impl Fn(&str) + Send + Sync + 'static) {
    let _ = SINK.set(Box::new(sink));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks a line against the EMF specification's rules: `_aws.Timestamp` an integer; each
    /// directive's Namespace a non-empty string, Dimensions an array of at most 30-name sets whose
    /// names are top-level string members, Metrics at most 100, each with a Name that is a top-level
    /// number and a Unit CloudWatch knows.
    fn validate(line: &str) -> Result<(), String> {
        const UNITS: &[&str] = &[
            "Seconds",
            "Microseconds",
            "Milliseconds",
            "Bytes",
            "Kilobytes",
            "Megabytes",
            "Gigabytes",
            "Terabytes",
            "Bits",
            "Kilobits",
            "Megabits",
            "Gigabits",
            "Terabits",
            "Percent",
            "Count",
            "Bytes/Second",
            "Kilobytes/Second",
            "Megabytes/Second",
            "Gigabytes/Second",
            "Terabytes/Second",
            "Bits/Second",
            "Kilobits/Second",
            "Megabits/Second",
            "Gigabits/Second",
            "Terabits/Second",
            "Count/Second",
            "None",
        ];
        let doc: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let aws = doc.get("_aws").ok_or("no _aws")?;
        aws.get("Timestamp")
            .and_then(Value::as_i64)
            .ok_or("Timestamp is not an integer")?;
        let directives = aws["CloudWatchMetrics"]
            .as_array()
            .ok_or("no CloudWatchMetrics")?;
        for d in directives {
            if d["Namespace"].as_str().is_none_or(str::is_empty) {
                return Err("bad Namespace".into());
            }
            for set in d["Dimensions"].as_array().ok_or("no Dimensions")? {
                let set = set.as_array().ok_or("a dimension set is not an array")?;
                if set.len() > 30 {
                    return Err("more than 30 dimensions".into());
                }
                for name in set {
                    let name = name.as_str().ok_or("a dimension name is not a string")?;
                    doc.get(name)
                        .and_then(Value::as_str)
                        .ok_or(format!("dimension {name} is not a string member"))?;
                }
            }
            let metrics = d["Metrics"].as_array().ok_or("no Metrics")?;
            if metrics.len() > 100 {
                return Err("more than 100 metrics".into());
            }
            for m in metrics {
                let name = m["Name"].as_str().ok_or("a metric without Name")?;
                doc.get(name)
                    .and_then(Value::as_f64)
                    .ok_or(format!("metric {name} is not a number member"))?;
                let unit = m["Unit"].as_str().ok_or("a metric without Unit")?;
                if !UNITS.contains(&unit) {
                    return Err(format!("unknown unit {unit}"));
                }
            }
        }
        Ok(())
    }

    #[test]
    fn a_step_is_one_valid_emf_line_per_table_and_per_layer() {
        let line = Metrics::step("silver", "orders")
            .with("RowsIn", 120.0, Unit::Count)
            .with("StepDuration", 35.5, Unit::Milliseconds)
            .with("FreshnessSeconds", f64::NAN, Unit::Seconds)
            .per_layer("CommitAttempts", 2.0, Unit::Count)
            .to_line(1_796_000_000_000);
        validate(&line).unwrap();
        let doc: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Layer", "Table"], ["Layer"]])
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "Lakehouse"
        );
        assert_eq!(
            (doc["Layer"].as_str(), doc["Table"].as_str()),
            (Some("silver"), Some("orders"))
        );
        assert_eq!(doc["RowsIn"], 120.0);
        assert_eq!(doc["FreshnessSeconds"], 0, "a NaN is published as 0");
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][1],
            json!({"Namespace": "Lakehouse", "Dimensions": [["Layer"]],
                   "Metrics": [{"Name": "CommitAttempts", "Unit": "Count"}]})
        );
        assert_eq!(doc["CommitAttempts"], 2.0);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][1],
            json!({"Name": "StepDuration", "Unit": "Milliseconds"})
        );
        // The checker itself refuses what the specification refuses.
        assert!(validate(r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["Layer"]],"Metrics":[{"Name":"X","Unit":"Count"}]}]},"X":1}"#).is_err());
        assert!(validate(r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[],"Metrics":[{"Name":"X","Unit":"Rows"}]}]},"X":1}"#).is_err());
        assert!(validate(r#"{"_aws":{"Timestamp":"1","CloudWatchMetrics":[]}}"#).is_err());
    }
}
