//! The declarative pipeline file: where landing objects arrive, where the lake lives, and per table how to
//! read, type and key its data. Every function loads the same file (`LAKEHOUSE_CONFIG`: a path or `s3://` URI).
//! Invalid config fails at load with the table and field named, never later on a data path.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;
use url::Url;

use crate::error::{Error, Result};

/// Environment variable naming the pipeline file (path, `file://` or `s3://` URI).
pub const CONFIG_ENV: &str = "LAKEHOUSE_CONFIG";

/// A storage location: a URI plus object_store options (endpoint, keys, allow_http...). Values may reference
/// environment variables as `${NAME}`, so one file serves LocalStack, MinIO and real AWS.
#[derive(Debug, Clone)]
pub struct Location {
    pub url: Url,
    pub storage_options: HashMap<String, String>,
}

impl Location {
    /// Bucket (s3) or empty (file).
    pub fn bucket(&self) -> &str {
        self.url.host_str().unwrap_or("")
    }

    /// Key prefix inside the bucket (s3) or absolute directory (file), without leading or trailing `/`.
    pub fn prefix(&self) -> String {
        self.url.path().trim_matches('/').to_string()
    }

    /// A child location `<self>/<a>/<b>`.
    pub fn join(&self, parts: &[&str]) -> Location {
        let mut url = self.url.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}/{}", parts.join("/")));
        Location {
            url,
            storage_options: self.storage_options.clone(),
        }
    }
}

/// Source file format. Compression is separate: `.gz` objects are detected by suffix (or forced).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jsonl,
    Csv,
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// `.gz` suffix means gzip, anything else is plain.
    #[default]
    Auto,
    None,
    Gzip,
}

/// How change records are encoded (used by the silver layer; parsed and validated now).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CdcFormat {
    #[default]
    Upsert,
    Debezium,
    Dms,
}

/// What to do with source fields that the table schema does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownFields {
    /// The row goes to quarantine with the field named: nothing is silently dropped.
    #[default]
    Quarantine,
    /// The field is dropped (the raw object stays in landing).
    Ignore,
    /// Schema evolution: a new field becomes a new nullable column of bronze (typed by inference on the
    /// object that brings it) and then of silver. Values of an existing column that do not cast to its
    /// type still go to quarantine.
    Evolve,
}

/// Column types a pipeline file can declare. `json` keeps nested values as JSON text (e.g. Debezium
/// `before`/`after`), so bronze stays raw and silver decides how to parse them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Json,
    Int,
    Long,
    Double,
    Boolean,
    Date,
    Timestamp,
    Decimal(u8, i8),
}

impl ColumnType {
    pub fn parse(s: &str) -> Option<ColumnType> {
        let s = s.trim().to_ascii_lowercase();
        Some(match s.as_str() {
            "string" | "str" | "text" | "varchar" => ColumnType::String,
            "json" => ColumnType::Json,
            "int" | "integer" | "int32" => ColumnType::Int,
            "long" | "bigint" | "int64" => ColumnType::Long,
            "double" | "float64" | "float" => ColumnType::Double,
            "boolean" | "bool" => ColumnType::Boolean,
            "date" => ColumnType::Date,
            "timestamp" => ColumnType::Timestamp,
            other => {
                let inner = other.strip_prefix("decimal(")?.strip_suffix(')')?;
                let (p, s) = inner.split_once(',')?;
                let (p, s): (u8, i8) = (p.trim().parse().ok()?, s.trim().parse().ok()?);
                if p == 0 || p > 38 || s < 0 || s as u8 > p {
                    return None;
                }
                ColumnType::Decimal(p, s)
            }
        })
    }

    pub fn arrow_type(&self) -> DataType {
        match self {
            ColumnType::String | ColumnType::Json => DataType::Utf8,
            ColumnType::Int => DataType::Int32,
            ColumnType::Long => DataType::Int64,
            ColumnType::Double => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColumnType::Decimal(p, s) => DataType::Decimal128(*p, *s),
        }
    }
}

/// One declared column: `"name type"` or `"name type not null"` in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub data_type: ColumnType,
    pub nullable: bool,
}

impl Column {
    pub fn arrow_field(&self) -> Field {
        Field::new(&self.name, self.data_type.arrow_type(), self.nullable)
    }
}

/// Everything the pipeline knows about one table.
#[derive(Debug, Clone)]
pub struct TableConfig {
    pub name: String,
    /// Key prefix under the landing location (e.g. `orders/`).
    pub prefix: String,
    pub format: Format,
    pub compression: Compression,
    /// Declared schema; `None` means inferred from the first file and then enforced (stored in bronze).
    pub columns: Option<Vec<Column>>,
    /// The row (after-image) schema of a Debezium table, whose bronze rows are envelopes.
    pub row_columns: Option<Vec<Column>>,
    pub keys: Vec<String>,
    pub sequence_by: Option<String>,
    pub cdc: CdcFormat,
    pub op_column: Option<String>,
    pub delete_column: Option<String>,
    pub partition_by: Vec<String>,
    pub scd_type: u8,
    /// SCD1: how long a delete tombstone can stop a late event (`None`: forever).
    pub tombstone_retention_days: Option<u32>,
    pub unknown_fields: UnknownFields,
    pub csv_delimiter: u8,
    pub csv_header: bool,
    /// How the local runner batches this table's messages (Lambda: the event source mapping's settings).
    pub trigger: TriggerWindow,
}

/// A trigger window: a batch is handed to the function when it holds `max_batch` messages or its
/// oldest message has waited `max_wait`, whichever comes first (Lambda's `BatchSize` and
/// `MaximumBatchingWindowInSeconds`). Per-event: 1 and 0 s; daily: large and 86,400 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerWindow {
    pub max_batch: usize,
    pub max_wait: std::time::Duration,
}

impl Default for TriggerWindow {
    fn default() -> Self {
        TriggerWindow {
            max_batch: 100,
            max_wait: std::time::Duration::from_secs(1),
        }
    }
}

impl TriggerWindow {
    fn from_raw(table: &str, batch_size: Option<usize>, window_s: Option<f64>) -> Result<Self> {
        let d = TriggerWindow::default();
        let max_batch = batch_size.unwrap_or(d.max_batch);
        if !(1..=10_000).contains(&max_batch) {
            return Err(Error::config(
                table,
                "batch_size",
                "must be between 1 and 10000",
            ));
        }
        let max_wait = match window_s {
            None => d.max_wait,
            Some(w) if (0.0..=86_400.0).contains(&w) => std::time::Duration::from_secs_f64(w),
            Some(_) => {
                return Err(Error::config(
                    table,
                    "batch_window_seconds",
                    "must be between 0 and 86400",
                ))
            }
        };
        Ok(TriggerWindow {
            max_batch,
            max_wait,
        })
    }
}

/// A gold view: DataFusion SQL over silver tables (named as in the config), grouped by `keys`. Gold
/// keeps one row per group; a step recomputes only the groups its sources' changes touch.
#[derive(Debug, Clone)]
pub struct GoldView {
    pub name: String,
    pub sql: String,
    /// The view's group-by key: output columns that identify a row.
    pub keys: Vec<String>,
    /// Silver tables the SQL reads.
    pub sources: Vec<String>,
    pub trigger: TriggerWindow,
}

impl TableConfig {
    /// The declared data schema (without lineage columns), if any.
    pub fn declared_schema(&self) -> Option<SchemaRef> {
        self.columns.as_ref().map(|cols| {
            Arc::new(Schema::new(
                cols.iter().map(Column::arrow_field).collect::<Vec<_>>(),
            ))
        })
    }
}

/// An SQS queue a layer announces its commits to (the next layer's trigger). Values may use `${VAR}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub queue_url: String,
    /// Endpoint override (LocalStack, ElasticMQ...); default: the SDK's resolution.
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// The whole pipeline file, validated.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub landing: Location,
    pub lake: Location,
    /// Next-layer queues by layer name (`silver`, `gold`): bronze announces its commits to `silver`.
    pub notify: HashMap<String, QueueConfig>,
    pub tables: Vec<TableConfig>,
    pub gold: Vec<GoldView>,
    /// Bronze ingests at most this many bytes per parquet file before rolling to a new one.
    pub target_file_size: u64,
}

impl PipelineConfig {
    /// Parse and validate TOML text. `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<PipelineConfig> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| Error::ConfigLoad {
            location: origin.to_string(),
            reason: e.to_string(),
        })?;
        raw.validate()
    }

    /// Load from a local path, `file://` URI or `s3://` URI.
    pub async fn load(location: &str) -> Result<PipelineConfig> {
        let text = if location.starts_with("s3://") {
            crate::storage::read_to_string(location).await?
        } else {
            let path = location.strip_prefix("file://").unwrap_or(location);
            std::fs::read_to_string(path).map_err(|e| Error::ConfigLoad {
                location: location.to_string(),
                reason: e.to_string(),
            })?
        };
        PipelineConfig::from_toml(&text, location)
    }

    /// Load from the `LAKEHOUSE_CONFIG` environment variable.
    pub async fn from_env() -> Result<PipelineConfig> {
        let location = std::env::var(CONFIG_ENV).map_err(|_| Error::ConfigLoad {
            location: format!("${CONFIG_ENV}"),
            reason: "environment variable is not set".into(),
        })?;
        PipelineConfig::load(&location).await
    }

    pub fn table(&self, name: &str) -> Option<&TableConfig> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Which table a landing object belongs to: the object must be in the landing bucket, under the landing
    /// prefix and under exactly one table prefix (prefixes cannot overlap, checked at load).
    pub fn route(&self, bucket: &str, key: &str) -> Option<&TableConfig> {
        if bucket != self.landing.bucket() {
            return None;
        }
        let rel = relative_key(&self.landing, key)?;
        self.tables.iter().find(|t| rel.starts_with(&t.prefix))
    }

    pub fn bronze_location(&self, table: &str) -> Location {
        self.lake.join(&["bronze", table])
    }

    pub fn quarantine_location(&self, table: &str) -> Location {
        self.lake.join(&["quarantine", table])
    }

    /// The table whose Delta log `key` (in `bucket`) belongs to, for `layer` (`bronze`, `silver`):
    /// S3 events on `<lake>/<layer>/<table>/_delta_log/...` trigger the next layer.
    pub fn table_of_log_key(&self, layer: &str, bucket: &str, key: &str) -> Option<&TableConfig> {
        if bucket != self.lake.bucket() {
            return None;
        }
        let rel = relative_key(&self.lake, key)?;
        let rest = rel.strip_prefix(layer)?.strip_prefix('/')?;
        let (table, tail) = rest.split_once('/')?;
        tail.starts_with("_delta_log/")
            .then(|| self.table(table))
            .flatten()
    }

    pub fn view(&self, name: &str) -> Option<&GoldView> {
        self.gold.iter().find(|v| v.name == name)
    }

    /// The gold views that read silver table `table`.
    pub fn views_on(&self, table: &str) -> impl Iterator<Item = &GoldView> {
        let table = table.to_string();
        self.gold.iter().filter(move |v| v.sources.contains(&table))
    }

    pub fn gold_location(&self, view: &str) -> Location {
        self.lake.join(&["gold", view])
    }

    pub fn silver_location(&self, table: &str) -> Location {
        self.lake.join(&["silver", table])
    }

    /// Delete tombstones (key, sequence) of a silver table: what stops a late update resurrecting a row.
    pub fn tombstone_location(&self, table: &str) -> Location {
        self.lake.join(&["silver_tombstones", table])
    }
}

/// The part of `key` below the landing prefix, if it is below it.
pub(crate) fn relative_key<'a>(landing: &Location, key: &'a str) -> Option<&'a str> {
    let prefix = landing.prefix();
    if prefix.is_empty() {
        return Some(key);
    }
    key.strip_prefix(prefix.as_str())?.strip_prefix('/')
}

// ---- raw (serde) form, validated into the types above ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocation {
    uri: String,
    #[serde(default)]
    storage: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    landing: RawLocation,
    lake: RawLocation,
    #[serde(default)]
    target_file_size_mb: Option<u64>,
    #[serde(default)]
    notify: HashMap<String, QueueConfig>,
    #[serde(default, rename = "table")]
    tables: Vec<RawTable>,
    #[serde(default)]
    gold: Vec<RawGold>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    name: String,
    prefix: Option<String>,
    format: Option<String>,
    #[serde(default)]
    compression: Compression,
    columns: Option<Vec<String>>,
    row_columns: Option<Vec<String>>,
    #[serde(default)]
    keys: Vec<String>,
    sequence_by: Option<String>,
    #[serde(default)]
    cdc: Option<String>,
    op_column: Option<String>,
    delete_column: Option<String>,
    #[serde(default)]
    partition_by: Vec<String>,
    scd_type: Option<u8>,
    tombstone_retention_days: Option<u32>,
    #[serde(default)]
    unknown_fields: UnknownFields,
    csv_delimiter: Option<String>,
    csv_header: Option<bool>,
    batch_size: Option<usize>,
    batch_window_seconds: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGold {
    name: String,
    sql: String,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    sources: Vec<String>,
    batch_size: Option<usize>,
    batch_window_seconds: Option<f64>,
}

/// Expand `${NAME}` references from the environment; an unset variable is a config error naming the field.
fn expand_env(value: &str, table: &str, field: &str) -> Result<String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| {
            Error::config(table, field, format!("unterminated `${{` in `{value}`"))
        })?;
        let name = &after[..end];
        let v = std::env::var(name).map_err(|_| {
            Error::config(
                table,
                field,
                format!("environment variable `{name}` is not set"),
            )
        })?;
        out.push_str(&v);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl RawLocation {
    fn validate(self, field: &str) -> Result<Location> {
        let uri = expand_env(&self.uri, "-", &format!("{field}.uri"))?;
        let url = Url::parse(&uri).map_err(|e| {
            Error::config(
                "-",
                &format!("{field}.uri"),
                format!("`{uri}` is not a URI: {e}"),
            )
        })?;
        match url.scheme() {
            "s3" | "s3a" if url.host_str().is_some_and(|h| !h.is_empty()) => {}
            "file" => {}
            _ => {
                return Err(Error::config(
                    "-",
                    &format!("{field}.uri"),
                    format!("`{uri}` must be s3://bucket[/prefix] or file:///absolute/path"),
                ))
            }
        }
        let mut storage_options = HashMap::new();
        for (k, v) in self.storage {
            let v = expand_env(&v, "-", &format!("{field}.storage.{k}"))?;
            storage_options.insert(k.to_ascii_lowercase(), v);
        }
        Ok(Location {
            url,
            storage_options,
        })
    }
}

fn parse_column(spec: &str, table: &str, field: &str) -> Result<Column> {
    let words: Vec<&str> = spec.split_whitespace().collect();
    let bad = || {
        Error::config(
            table,
            field,
            format!("`{spec}`: expected `name type` or `name type not null`"),
        )
    };
    let (name, ty, nullable) = match words.as_slice() {
        [name, ty] => (*name, *ty, true),
        [name, ty, not, null]
            if not.eq_ignore_ascii_case("not") && null.eq_ignore_ascii_case("null") =>
        {
            (*name, *ty, false)
        }
        _ => return Err(bad()),
    };
    let data_type = ColumnType::parse(ty).ok_or_else(|| {
        Error::config(
            table,
            field,
            format!(
                "`{spec}`: unknown type `{ty}` (string, json, int, long, double, boolean, date, timestamp, decimal(p,s))"
            ),
        )
    })?;
    if name.starts_with('_') {
        return Err(Error::config(
            table,
            field,
            format!("`{name}`: names starting with `_` are reserved for lineage"),
        ));
    }
    Ok(Column {
        name: name.to_string(),
        data_type,
        nullable,
    })
}

/// Parses a list of column specs (`columns` or `row_columns`); `None` when absent.
fn parse_columns(
    specs: Option<&[String]>,
    table: &str,
    field: &str,
) -> Result<Option<Vec<Column>>> {
    let Some(specs) = specs else { return Ok(None) };
    if specs.is_empty() {
        return Err(Error::config(
            table,
            field,
            "must not be empty (omit it to infer the schema)",
        ));
    }
    let cols = specs
        .iter()
        .map(|s| parse_column(s, table, field))
        .collect::<Result<Vec<_>>>()?;
    let mut seen = BTreeSet::new();
    for c in &cols {
        if !seen.insert(c.name.clone()) {
            return Err(Error::config(
                table,
                field,
                format!("column `{}` declared twice", c.name),
            ));
        }
    }
    Ok(Some(cols))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

impl RawTable {
    fn validate(self) -> Result<TableConfig> {
        let t = self.name.clone();
        if !valid_name(&t) {
            return Err(Error::config(
                &t,
                "name",
                "must be lowercase letters, digits and `_`, not starting with a digit",
            ));
        }
        let prefix = self.prefix.unwrap_or_else(|| format!("{t}/"));
        let prefix = prefix.trim_start_matches('/').to_string();
        if prefix.is_empty() {
            return Err(Error::config(&t, "prefix", "must not be empty"));
        }
        let format = match self.format.as_deref() {
            Some("jsonl") | Some("json") | Some("ndjson") => Format::Jsonl,
            Some("csv") => Format::Csv,
            Some("parquet") => Format::Parquet,
            Some(other) => {
                return Err(Error::config(
                    &t,
                    "format",
                    format!("`{other}` is not one of jsonl, csv, parquet"),
                ))
            }
            None => {
                return Err(Error::config(
                    &t,
                    "format",
                    "is required (jsonl, csv or parquet)",
                ))
            }
        };
        let columns = parse_columns(self.columns.as_deref(), &t, "columns")?;
        let row_columns = parse_columns(self.row_columns.as_deref(), &t, "row_columns")?;
        let cdc = match self.cdc.as_deref() {
            None | Some("upsert") => CdcFormat::Upsert,
            Some("debezium") => CdcFormat::Debezium,
            Some("dms") => CdcFormat::Dms,
            Some(other) => {
                return Err(Error::config(
                    &t,
                    "cdc",
                    format!("`{other}` is not one of upsert, debezium, dms"),
                ))
            }
        };
        if cdc == CdcFormat::Debezium && row_columns.is_none() {
            return Err(Error::config(
                &t,
                "row_columns",
                "a Debezium table needs the row (after-image) schema; bronze keeps the envelopes",
            ));
        }
        // Keys, sequence and partitions name row columns: `row_columns` for Debezium, else `columns`.
        let (row_field, row_schema) = match &row_columns {
            Some(cols) => ("row_columns", Some(cols)),
            None => ("columns", columns.as_ref()),
        };
        let declared = |field: &str, col: &str| -> Result<()> {
            match row_schema {
                Some(cols) if !cols.iter().any(|c| c.name == col) => Err(Error::config(
                    &t,
                    field,
                    format!("column `{col}` is not in `{row_field}`"),
                )),
                _ => Ok(()),
            }
        };
        for k in &self.keys {
            declared("keys", k)?;
        }
        if let Some(s) = &self.sequence_by {
            // Debezium may order by envelope fields: `ts_ms` or `source.<field>` (e.g. `source.lsn`).
            let envelope = cdc == CdcFormat::Debezium && (s == "ts_ms" || s.starts_with("source."));
            if !envelope {
                declared("sequence_by", s)?;
            }
        }
        for p in &self.partition_by {
            declared("partition_by", p)?;
        }
        if cdc != CdcFormat::Upsert && self.keys.is_empty() {
            return Err(Error::config(&t, "keys", "a CDC table needs key columns"));
        }
        let scd_type = self.scd_type.unwrap_or(1);
        if scd_type != 1 && scd_type != 2 {
            return Err(Error::config(
                &t,
                "scd_type",
                format!("`{scd_type}` must be 1 or 2"),
            ));
        }
        if scd_type == 2 && self.sequence_by.is_none() {
            return Err(Error::config(
                &t,
                "sequence_by",
                "SCD type 2 needs a sequence column",
            ));
        }
        match (self.tombstone_retention_days, scd_type) {
            (Some(0), _) => {
                return Err(Error::config(
                    &t,
                    "tombstone_retention_days",
                    "must be at least 1",
                ))
            }
            (Some(_), 2) => {
                return Err(Error::config(
                    &t,
                    "tombstone_retention_days",
                    "SCD type 2 history needs every tombstone; retention applies to SCD type 1",
                ))
            }
            _ => {}
        }
        if scd_type == 2 && self.keys.is_empty() {
            return Err(Error::config(&t, "keys", "SCD type 2 needs key columns"));
        }
        if scd_type == 2 {
            let reserved = row_schema
                .into_iter()
                .flatten()
                .find(|c| crate::scd2::RESERVED.contains(&c.name.as_str()));
            if let Some(c) = reserved {
                return Err(Error::config(
                    &t,
                    row_field,
                    format!("column `{}` is reserved for SCD type 2 history", c.name),
                ));
            }
        }
        if self.unknown_fields == UnknownFields::Evolve
            && format == Format::Csv
            && self.csv_header == Some(false)
        {
            return Err(Error::config(
                &t,
                "unknown_fields",
                "`evolve` needs a CSV header to name new columns",
            ));
        }
        let csv_delimiter = match self.csv_delimiter.as_deref() {
            None => b',',
            Some("\\t") | Some("\t") => b'\t',
            Some(d) if d.len() == 1 => d.as_bytes()[0],
            Some(d) => {
                return Err(Error::config(
                    &t,
                    "csv_delimiter",
                    format!("`{d}` must be one ASCII character"),
                ))
            }
        };
        let trigger = TriggerWindow::from_raw(&t, self.batch_size, self.batch_window_seconds)?;
        Ok(TableConfig {
            name: t,
            prefix,
            format,
            compression: self.compression,
            columns,
            row_columns,
            keys: self.keys,
            sequence_by: self.sequence_by,
            cdc,
            op_column: self.op_column,
            delete_column: self.delete_column,
            partition_by: self.partition_by,
            scd_type,
            tombstone_retention_days: self.tombstone_retention_days,
            unknown_fields: self.unknown_fields,
            csv_delimiter,
            csv_header: self.csv_header.unwrap_or(true),
            trigger,
        })
    }
}

impl RawGold {
    fn validate(self, tables: &[TableConfig]) -> Result<GoldView> {
        let n = self.name.clone();
        if !valid_name(&n) {
            return Err(Error::config(
                &n,
                "gold.name",
                "use lowercase letters, digits and _",
            ));
        }
        if self.sql.trim().is_empty() {
            return Err(Error::config(&n, "gold.sql", "is empty"));
        }
        // Syntax now; names and types when a step plans the query against the silver tables.
        match deltalake::datafusion::sql::parser::DFParser::parse_sql(&self.sql) {
            Ok(statements) if statements.len() == 1 => {}
            Ok(_) => {
                return Err(Error::config(
                    &n,
                    "gold.sql",
                    "must be exactly one SELECT statement",
                ))
            }
            Err(e) => return Err(Error::config(&n, "gold.sql", e.to_string())),
        }
        if self.keys.is_empty() {
            return Err(Error::config(
                &n,
                "gold.keys",
                "name the view's group-by columns",
            ));
        }
        if self.sources.is_empty() {
            return Err(Error::config(
                &n,
                "gold.sources",
                "name the silver tables the SQL reads",
            ));
        }
        if let Some(s) = self
            .sources
            .iter()
            .find(|s| !tables.iter().any(|t| &t.name == *s))
        {
            return Err(Error::config(
                &n,
                "gold.sources",
                format!("`{s}` is not a table of this pipeline"),
            ));
        }
        Ok(GoldView {
            trigger: TriggerWindow::from_raw(&n, self.batch_size, self.batch_window_seconds)?,
            name: n,
            sql: self.sql,
            keys: self.keys,
            sources: self.sources,
        })
    }
}

impl RawConfig {
    fn validate(self) -> Result<PipelineConfig> {
        let landing = self.landing.validate("landing")?;
        let lake = self.lake.validate("lake")?;
        if self.tables.is_empty() {
            return Err(Error::config("-", "table", "no tables declared"));
        }
        let tables = self
            .tables
            .into_iter()
            .map(RawTable::validate)
            .collect::<Result<Vec<_>>>()?;
        for (i, a) in tables.iter().enumerate() {
            for b in &tables[i + 1..] {
                if a.name == b.name {
                    return Err(Error::config(&a.name, "name", "declared twice"));
                }
                if a.prefix.starts_with(&b.prefix) || b.prefix.starts_with(&a.prefix) {
                    return Err(Error::config(
                        &b.name,
                        "prefix",
                        format!(
                            "`{}` overlaps `{}` of table `{}`",
                            b.prefix, a.prefix, a.name
                        ),
                    ));
                }
            }
        }
        let target_file_size = self.target_file_size_mb.unwrap_or(128) * 1024 * 1024;
        let mut notify = HashMap::new();
        for (layer, q) in self.notify {
            // `bronze` is bronze's own trigger queue (the landing bucket's notifications), polled by
            // the local runner; `silver` and `gold` are where the layer before announces its commits.
            if !["bronze", "silver", "gold"].contains(&layer.as_str()) {
                return Err(Error::config(
                    "-",
                    &format!("notify.{layer}"),
                    "layer must be bronze, silver or gold",
                ));
            }
            let field = |f: &str| format!("notify.{layer}.{f}");
            let opt =
                |v: Option<String>, f: &str| v.map(|v| expand_env(&v, "-", &field(f))).transpose();
            let q = QueueConfig {
                queue_url: expand_env(&q.queue_url, "-", &field("queue_url"))?,
                endpoint_url: opt(q.endpoint_url, "endpoint_url")?,
                region: opt(q.region, "region")?,
                access_key_id: opt(q.access_key_id, "access_key_id")?,
                secret_access_key: opt(q.secret_access_key, "secret_access_key")?,
            };
            notify.insert(layer, q);
        }
        let mut gold: Vec<GoldView> = Vec::new();
        for g in self.gold {
            let view = g.validate(&tables)?;
            if gold.iter().any(|v| v.name == view.name) {
                return Err(Error::config(&view.name, "gold.name", "declared twice"));
            }
            gold.push(view);
        }
        Ok(PipelineConfig {
            landing,
            lake,
            notify,
            tables,
            gold,
            target_file_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [landing]
        uri = "s3://landing/incoming"
        [lake]
        uri = "file:///tmp/lake"

        [[table]]
        name = "orders"
        format = "jsonl"
        columns = ["order_id long not null", "amount decimal(10,2)", "placed_at timestamp"]
        keys = ["order_id"]
        sequence_by = "placed_at"

        [[table]]
        name = "customers"
        prefix = "crm/customers/"
        format = "csv"
    "#;

    #[test]
    fn parses_a_valid_file() {
        let cfg = PipelineConfig::from_toml(GOOD, "test").unwrap();
        assert_eq!(cfg.tables.len(), 2);
        let orders = cfg.table("orders").unwrap();
        assert_eq!(orders.prefix, "orders/");
        assert_eq!(
            orders.columns.as_ref().unwrap()[1].data_type,
            ColumnType::Decimal(10, 2)
        );
        assert!(!orders.columns.as_ref().unwrap()[0].nullable);
        assert!(cfg.table("customers").unwrap().columns.is_none());
        assert_eq!(
            cfg.bronze_location("orders").url.as_str(),
            "file:///tmp/lake/bronze/orders"
        );
    }

    #[test]
    fn routes_keys_by_bucket_and_prefix() {
        let cfg = PipelineConfig::from_toml(GOOD, "test").unwrap();
        assert_eq!(
            cfg.route("landing", "incoming/orders/a.jsonl")
                .unwrap()
                .name,
            "orders"
        );
        assert_eq!(
            cfg.route("landing", "incoming/crm/customers/x.csv")
                .unwrap()
                .name,
            "customers"
        );
        assert!(cfg.route("other", "incoming/orders/a.jsonl").is_none());
        assert!(cfg.route("landing", "orders/a.jsonl").is_none());
        assert!(cfg.route("landing", "incoming/unknown/a.jsonl").is_none());
        assert!(cfg.route("landing", "incomingorders/a.jsonl").is_none());
    }

    fn err_of(text: &str) -> String {
        PipelineConfig::from_toml(text, "test")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_local_example_pipeline_is_valid() {
        for (k, v) in [
            ("LANDING_BUCKET", "landing"),
            ("LAKE_BUCKET", "lake"),
            ("LOCALSTACK_ENDPOINT", "http://127.0.0.1:4566"),
            ("MINIO_ENDPOINT", "http://127.0.0.1:9000"),
            ("MINIO_ROOT_USER", "u"),
            ("MINIO_ROOT_PASSWORD", "p"),
            ("BRONZE_QUEUE", "b"),
            ("SILVER_QUEUE", "s"),
            ("GOLD_QUEUE", "g"),
        ] {
            if std::env::var(k).is_err() {
                std::env::set_var(k, v);
            }
        }
        let cfg = PipelineConfig::from_toml(
            include_str!("../../infra/local/pipeline.toml"),
            "infra/local/pipeline.toml",
        )
        .unwrap();
        assert_eq!(cfg.notify.len(), 3);
        assert_eq!(cfg.views_on("orders").count(), 1);
    }

    #[test]
    fn errors_name_table_and_field() {
        let base = "[landing]\nuri = \"s3://l\"\n[lake]\nuri = \"s3://k\"\n";
        let e = err_of(&format!(
            "{base}[[table]]\nname = \"t1\"\nformat = \"xml\"\n"
        ));
        assert!(
            e.contains("`t1`") && e.contains("`format`") && e.contains("xml"),
            "{e}"
        );
        let e = err_of(&format!("{base}[[table]]\nname = \"t1\"\nformat = \"csv\"\ncolumns = [\"a long\"]\nkeys = [\"b\"]\n"));
        assert!(e.contains("`keys`") && e.contains("`b`"), "{e}");
        let e = err_of(&format!(
            "{base}[[table]]\nname = \"t1\"\nformat = \"csv\"\ncolumns = [\"a lng\"]\n"
        ));
        assert!(e.contains("`columns`") && e.contains("lng"), "{e}");
        let e = err_of(&format!(
            "{base}[[table]]\nname = \"a\"\nformat = \"csv\"\n[[table]]\nname = \"b\"\nprefix = \"a/x/\"\nformat = \"csv\"\n"
        ));
        assert!(e.contains("`b`") && e.contains("overlaps"), "{e}");
        let e = err_of(&format!(
            "{base}[[table]]\nname = \"t1\"\nformat = \"csv\"\nscd_type = 3\n"
        ));
        assert!(e.contains("scd_type"), "{e}");
        let e = err_of(&format!(
            "{base}[[table]]\nname = \"t1\"\nformat = \"csv\"\ncdc = \"dms\"\n"
        ));
        assert!(e.contains("`keys`"), "{e}");
        let e = err_of(&format!(
            "{base}[[table]]\nname = \"t1\"\nformat = \"jsonl\"\ncdc = \"debezium\"\nkeys = [\"id\"]\n"
        ));
        assert!(e.contains("`row_columns`"), "{e}");
        let ok = PipelineConfig::from_toml(
            &format!("{base}[[table]]\nname = \"t1\"\nformat = \"jsonl\"\ncdc = \"debezium\"\nkeys = [\"id\"]\nrow_columns = [\"id long not null\"]\nsequence_by = \"source.lsn\"\n"),
            "test",
        );
        assert!(ok.is_ok(), "{ok:?}");
        // SCD2, retention, evolution, trigger windows and gold views name their table and field too.
        let t =
            "[[table]]\nname = \"t1\"\nformat = \"csv\"\ncolumns = [\"id long\", \"seq long\"]\n";
        for (extra, field) in [
            ("scd_type = 2\nkeys = [\"id\"]\n", "`sequence_by`"),
            ("scd_type = 2\nsequence_by = \"seq\"\n", "`keys`"),
            ("tombstone_retention_days = 0\n", "`tombstone_retention_days`"),
            ("keys = [\"id\"]\nsequence_by = \"seq\"\nscd_type = 2\ntombstone_retention_days = 3\n", "`tombstone_retention_days`"),
            ("csv_header = false\nunknown_fields = \"evolve\"\n", "`unknown_fields`"),
            ("batch_size = 0\n", "`batch_size`"),
            ("batch_window_seconds = -1\n", "`batch_window_seconds`"),
        ] {
            let e = err_of(&format!("{base}{t}{extra}"));
            assert!(e.contains("`t1`") && e.contains(field), "{extra}: {e}");
        }
        let gold = |sql: &str, keys: &str, sources: &str| {
            err_of(&format!("{base}{t}[[gold]]\nname = \"v\"\nsql = \"{sql}\"\nkeys = {keys}\nsources = {sources}\n"))
        };
        let e = gold("SELEC id FROM t1", "[\"id\"]", "[\"t1\"]");
        assert!(e.contains("`v`") && e.contains("`gold.sql`"), "{e}");
        let e = gold("SELECT id FROM t1", "[]", "[\"t1\"]");
        assert!(e.contains("`gold.keys`"), "{e}");
        let e = gold("SELECT id FROM t2", "[\"id\"]", "[\"t2\"]");
        assert!(e.contains("`gold.sources`") && e.contains("`t2`"), "{e}");
        let e = err_of(&format!(
            "{base}[[table]]\nname = \"t1\"\nformat = \"csv\"\nkeyz = []\n"
        ));
        assert!(e.contains("keyz"), "{e}");
        let e = err_of("[landing]\nuri = \"http://x\"\n[lake]\nuri = \"s3://k\"\n[[table]]\nname=\"a\"\nformat=\"csv\"\n");
        assert!(e.contains("landing.uri"), "{e}");
        let e = err_of("[landing]\nuri = \"s3://${LAKEHOUSE_TEST_UNSET_VAR}\"\n[lake]\nuri = \"s3://k\"\n[[table]]\nname=\"a\"\nformat=\"csv\"\n");
        assert!(e.contains("LAKEHOUSE_TEST_UNSET_VAR"), "{e}");
    }
}
