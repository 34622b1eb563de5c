//! The declarative pipeline file: where landing objects arrive, where the lake lives, and per table how to
//! read, type and key its data. Every function loads the same file (`LAKEHOUSE_CONFIG`: a path or `s3://` URI).
//! Invalid config fails at load with the table and field named, never later on a data path.
//!
//! This module holds the validated types and their lookups; [`parse`] turns the TOML into them (and is
//! the only place that validates), [`layout`] says where each layer's tables live in the lake,
//! [`columns`] and [`trigger`] are the column declarations and trigger windows.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::datatypes::{Schema, SchemaRef};
use serde::Deserialize;

use crate::error::{Error, Result};

mod columns;
mod layout;
mod limits;
mod parse;
mod trigger;

pub use crate::storage::Location;
pub use columns::{Column, ColumnType};
pub(crate) use layout::relative_key;
pub use layout::unaddressable;
pub use limits::Limits;
pub use trigger::{TriggerWindow, EVENT_SOURCE_MAX_WAIT};

/// Environment variable naming the pipeline file (path, `file://` or `s3://` URI).
pub const CONFIG_ENV: &str = "LAKEHOUSE_CONFIG";

/// Source file format. Compression is separate: `.gz` objects are detected by suffix (or forced).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON lines: one object per line.
    Jsonl,
    /// One JSON document per object: an array of records, one object, or the records at `json_path`.
    Json,
    /// Any file, not parsed: one row per object (key, size, content type, modified, etag, version and
    /// its bytes up to `limits.max_binary_mb`), as Auto Loader's `binaryFile`.
    Binary,
    Csv,
    Parquet,
    /// Avro object container files.
    Avro,
}

impl Format {
    /// Typed, self-describing formats read whole (their footer or header needs random access or
    /// decides every row's decoding): Parquet, Avro. The others are streamed text.
    pub fn is_typed_file(self) -> bool {
        matches!(self, Format::Parquet | Format::Avro)
    }
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
    /// Each delivery is the table's full state (a periodic full extract): silver becomes the newest
    /// complete snapshot (see `silver::snapshot`).
    Snapshot,
}

/// The object that marks a snapshot folder complete (Hadoop's and Spark's convention).
pub const SNAPSHOT_MARKER: &str = "_SUCCESS";

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

/// Debezium's default `unavailable.value.placeholder`: what an update carries for a TOASTed column it
/// did not change (PostgreSQL, REPLICA IDENTITY DEFAULT).
pub const DEBEZIUM_UNAVAILABLE: &str = "__debezium_unavailable_value";

/// How a Debezium table without Connect schemas (`schemas.enable=false`) reads values whose wire
/// form the declared type alone does not decide.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireHints {
    /// A `timestamp` column receiving an integer: its unit (`integer_timestamps = "ms" | "us" |
    /// "ns"`). Unset, such a value is rejected. (A `date` column receiving an integer is always
    /// days since the epoch: Debezium's and Kafka Connect's only integer date.)
    pub integer_timestamps: Option<deltalake::arrow::datatypes::TimeUnit>,
    /// A `decimal(p,s)` column receiving a base64 string holds the unscaled big-endian bytes at the
    /// column's scale (`binary_decimals = true`: `decimal.handling.mode=precise` without schemas; the
    /// database column's scale must be the declared one).
    pub binary_decimals: bool,
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
    /// A value meaning "unchanged, not sent" (Debezium's TOAST placeholder): the column keeps the value
    /// of the newest earlier event that carried one. Debezium tables default to
    /// [`DEBEZIUM_UNAVAILABLE`]; `unavailable_value = ""` turns it off.
    pub unavailable_value: Option<String>,
    /// How ambiguous wire forms are read when no schema says (Debezium without Connect schemas).
    pub wire: WireHints,
    /// Debezium truncate events (`t`): applied (every row older than the truncate deleted, SCD2
    /// versions closed) or skipped (`truncate = "ignore"`).
    pub apply_truncates: bool,
    pub csv_delimiter: u8,
    pub csv_header: bool,
    /// Row columns in which a null (or absent) value of an update means "unchanged, keep the value"
    /// (`ignore_null_updates`: `true` for every non-key column, or a list).
    pub ignore_null_updates: Vec<String>,
    /// What reaches silver: only these row columns (`silver_columns`), or all but these
    /// (`except_columns`); bronze keeps everything.
    pub silver_columns: Option<Vec<String>>,
    pub except_columns: Vec<String>,
    /// SCD2: only changes of these columns make a new version (`track_history_columns`), or of every
    /// column but these (`except_history_columns`); other changes update the version in place.
    pub track_history_columns: Vec<String>,
    pub except_history_columns: Vec<String>,
    /// `format = "json"`: the keys leading from the document's top to its records (empty: the top).
    pub json_path: Vec<String>,
    /// How the local runner batches this table's messages (Lambda: the event source mapping's settings).
    pub trigger: TriggerWindow,
    /// Target size in bytes of this table's silver data files (the table's `target_file_size_mb`).
    pub target_file_size: u64,
    /// Inferred tables: types that override inference for these columns (`column_types`).
    pub column_types: Vec<Column>,
    /// The pipeline's `[limits]`, for this table's readers.
    pub limits: Limits,
}

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
    /// Whether the table has a silver layer. Silver merges by key, so a table without `keys` (an upsert
    /// table: CDC and SCD2 tables must name keys) is bronze-only: raw rows kept as they arrived, no
    /// silver step, no view may read it.
    pub fn has_silver(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The declared data schema (without lineage columns), if any.
    /// SCD2 with history on selected columns only.
    pub fn folds_history(&self) -> bool {
        self.scd_type == 2
            && !(self.track_history_columns.is_empty() && self.except_history_columns.is_empty())
    }

    pub fn declared_schema(&self) -> Option<SchemaRef> {
        if self.format == Format::Binary {
            return Some(crate::schema::binary_schema());
        }
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

/// `[catalog] glue = { database = ... }`: register the lake's tables in the AWS Glue Data Catalog (as
/// native Delta tables Athena reads). Values may use `${VAR}`; endpoint, region and keys default to
/// the SDK's resolution (the function's role on AWS).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GlueConfig {
    pub database: String,
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// The whole pipeline file, validated.
/// Default of `[maintenance] every_minutes`: how often maintenance runs (the runner's timer; the SAM
/// template's schedule parameter).
pub const DEFAULT_MAINTENANCE_MINUTES: u64 = 60;
/// Default of `[maintenance] vacuum_retention_days`: removed files stay this long (time travel's reach).
pub const DEFAULT_VACUUM_RETENTION_DAYS: u32 = 7;
/// Default of `[maintenance] quarantine_retention_days`.
pub const DEFAULT_QUARANTINE_RETENTION_DAYS: u32 = 90;

/// `[maintenance]`: what the maintenance function keeps and how often it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceConfig {
    pub every: std::time::Duration,
    /// Files removed from a table are deleted after this many days (never fewer than the table's
    /// `delta.deletedFileRetentionDuration`): time travel reaches at least this far back.
    pub vacuum_retention_days: u32,
    /// Quarantine rows are deleted after this many days.
    pub quarantine_retention_days: u32,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            every: std::time::Duration::from_secs(DEFAULT_MAINTENANCE_MINUTES * 60),
            vacuum_retention_days: DEFAULT_VACUUM_RETENTION_DAYS,
            quarantine_retention_days: DEFAULT_QUARANTINE_RETENTION_DAYS,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub landing: Location,
    pub lake: Location,
    /// Next-layer queues by layer name (`silver`, `gold`): bronze announces its commits to `silver`.
    pub notify: HashMap<String, QueueConfig>,
    pub tables: Vec<TableConfig>,
    pub gold: Vec<GoldView>,
    /// Target size in bytes of bronze data files (the top-level `target_file_size_mb`).
    pub target_file_size: u64,
    pub maintenance: MaintenanceConfig,
    /// Where tables are registered when created or when their schema changes (`None`: nowhere).
    pub glue: Option<GlueConfig>,
}

impl PipelineConfig {
    /// Parse and validate TOML text. `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<PipelineConfig> {
        let raw: parse::RawConfig = toml::from_str(text).map_err(|e| Error::ConfigLoad {
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
        if bucket != self.landing.bucket() || layout::unaddressable(key).is_some() {
            return None;
        }
        let rel = layout::relative_key(&self.landing, key)?;
        self.tables.iter().find(|t| rel.starts_with(&t.prefix))
    }

    /// The key lineage (`_source_key`) records for landing object `key`: its S3 key, or for a
    /// `file://` landing its path under the landing folder (not the machine's absolute path).
    pub fn lineage_key<'a>(&self, key: &'a str) -> &'a str {
        match self.landing.url.scheme() {
            "file" => layout::relative_key(&self.landing, key).unwrap_or(key),
            _ => key,
        }
    }

    pub fn view(&self, name: &str) -> Option<&GoldView> {
        self.gold.iter().find(|v| v.name == name)
    }

    /// The gold views that read silver table `table`.
    pub fn views_on(&self, table: &str) -> impl Iterator<Item = &GoldView> {
        let table = table.to_string();
        self.gold.iter().filter(move |v| v.sources.contains(&table))
    }
}

#[cfg(test)]
mod tests;
