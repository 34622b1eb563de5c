//! The raw (serde) form of the pipeline file and its validation into the types of [`super`]: every
//! check that can fail at load does so here, naming the table and field.

use std::collections::HashMap;

use deltalake::arrow::datatypes::TimeUnit;
use serde::Deserialize;
use url::Url;

use super::columns::parse_columns;
use super::limits::RawLimits;
use super::{
    CdcFormat, Compression, Format, GlueConfig, GoldView, Location, MaintenanceConfig,
    PipelineConfig, QueueConfig, TableConfig, TriggerWindow, UnknownFields, WireHints,
    DEBEZIUM_UNAVAILABLE, DEFAULT_MAINTENANCE_MINUTES, DEFAULT_QUARANTINE_RETENTION_DAYS,
    DEFAULT_VACUUM_RETENTION_DAYS,
};
use crate::error::{Error, Result};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocation {
    uri: String,
    #[serde(default)]
    storage: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    landing: RawLocation,
    lake: RawLocation,
    #[serde(default)]
    target_file_size_mb: Option<f64>,
    #[serde(default)]
    notify: HashMap<String, QueueConfig>,
    #[serde(default, rename = "table")]
    tables: Vec<RawTable>,
    #[serde(default)]
    gold: Vec<RawGold>,
    #[serde(default)]
    maintenance: RawMaintenance,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    catalog: RawCatalog,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    glue: Option<GlueConfig>,
}

impl RawCatalog {
    fn validate(self) -> Result<Option<GlueConfig>> {
        let Some(g) = self.glue else { return Ok(None) };
        let field = |f: &str| format!("catalog.glue.{f}");
        let opt =
            |v: Option<String>, f: &str| v.map(|v| expand_env(&v, "-", &field(f))).transpose();
        let database = expand_env(&g.database, "-", &field("database"))?;
        // Glue names: lowercase letters, digits and `_` (Athena reads nothing else unquoted).
        if !valid_name(&database) {
            return Err(Error::config(
                "-",
                &field("database"),
                format!("`{database}`: use lowercase letters, digits and `_` (at most 128)"),
            ));
        }
        Ok(Some(GlueConfig {
            database,
            endpoint_url: opt(g.endpoint_url, "endpoint_url")?,
            region: opt(g.region, "region")?,
            access_key_id: opt(g.access_key_id, "access_key_id")?,
            secret_access_key: opt(g.secret_access_key, "secret_access_key")?,
        }))
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMaintenance {
    every_minutes: Option<u64>,
    vacuum_retention_days: Option<u32>,
    quarantine_retention_days: Option<u32>,
}

/// Longest retention accepted anywhere (a century): bounds the date arithmetic done with it.
pub(super) const MAX_RETENTION_DAYS: u32 = 36_500;

impl RawMaintenance {
    fn validate(self) -> Result<MaintenanceConfig> {
        let days = |v: Option<u32>, default: u32, field: &str| -> Result<u32> {
            let d = v.unwrap_or(default);
            if !(1..=MAX_RETENTION_DAYS).contains(&d) {
                return Err(Error::config(
                    "-",
                    &format!("maintenance.{field}"),
                    format!("must be 1..={MAX_RETENTION_DAYS} days, not {d}"),
                ));
            }
            Ok(d)
        };
        let every = self.every_minutes.unwrap_or(DEFAULT_MAINTENANCE_MINUTES);
        if !(1..=10_080).contains(&every) {
            return Err(Error::config(
                "-",
                "maintenance.every_minutes",
                format!("must be 1..=10080 (a week), not {every}"),
            ));
        }
        Ok(MaintenanceConfig {
            every: std::time::Duration::from_secs(every * 60),
            vacuum_retention_days: days(
                self.vacuum_retention_days,
                DEFAULT_VACUUM_RETENTION_DAYS,
                "vacuum_retention_days",
            )?,
            quarantine_retention_days: days(
                self.quarantine_retention_days,
                DEFAULT_QUARANTINE_RETENTION_DAYS,
                "quarantine_retention_days",
            )?,
        })
    }
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
    column_types: Option<Vec<String>>,
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
    target_file_size_mb: Option<f64>,
    #[serde(default)]
    unknown_fields: UnknownFields,
    unavailable_value: Option<String>,
    integer_timestamps: Option<String>,
    truncate: Option<String>,
    binary_decimals: Option<bool>,
    csv_delimiter: Option<String>,
    csv_header: Option<bool>,
    json_path: Option<String>,
    ignore_null_updates: Option<ColumnsOrAll>,
    silver_columns: Option<Vec<String>>,
    #[serde(default)]
    except_columns: Vec<String>,
    #[serde(default)]
    track_history_columns: Vec<String>,
    #[serde(default)]
    except_history_columns: Vec<String>,
    batch_size: Option<usize>,
    batch_window_seconds: Option<f64>,
}

/// `true` (every column) or a list of columns.
#[derive(Deserialize)]
#[serde(untagged)]
enum ColumnsOrAll {
    All(bool),
    Columns(Vec<String>),
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

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Default size of a bronze data file (`target_file_size_mb` at the top of the file).
pub const DEFAULT_BRONZE_FILE_SIZE_MB: f64 = 128.0;

/// Default size of a silver data file (`target_file_size_mb` of a table): the unit a MERGE rewrites, so
/// small enough that rewriting one or two takes a fraction of a second and fits a small Lambda, large
/// enough that a 10M-row table is a few dozen files.
pub const DEFAULT_SILVER_FILE_SIZE_MB: f64 = 4.0;

/// Bounds of `target_file_size_mb` (the lower one lets tests make many-file tables).
const FILE_SIZE_MB_RANGE: (f64, f64) = (0.001, 4096.0);

/// `target_file_size_mb` in bytes, within [`FILE_SIZE_MB_RANGE`].
fn file_size_bytes(table: &str, mb: f64) -> Result<u64> {
    let (lo, hi) = FILE_SIZE_MB_RANGE;
    if !(lo..=hi).contains(&mb) {
        return Err(Error::config(
            table,
            "target_file_size_mb",
            format!("{mb} is outside {lo}..={hi}"),
        ));
    }
    Ok((mb * 1024.0 * 1024.0) as u64)
}

impl RawTable {
    /// `format = "binary"`: the schema is the product's (one row per object), the key is the object's
    /// `path`, its versions are ordered by `modified`, and silver catalogues the objects without their
    /// bytes (they stay in bronze) unless `silver_columns` says otherwise.
    fn binary_defaults(&mut self) -> Result<()> {
        let t = self.name.clone();
        let refused = [
            ("columns", self.columns.is_some()),
            ("column_types", self.column_types.is_some()),
            ("row_columns", self.row_columns.is_some()),
            ("json_path", self.json_path.is_some()),
            ("csv_delimiter", self.csv_delimiter.is_some()),
            ("cdc", self.cdc.as_deref().is_some_and(|c| c != "upsert")),
        ];
        if let Some((field, _)) = refused.iter().find(|(_, set)| *set) {
            return Err(Error::config(
                &t,
                field,
                "a binary table's rows are the objects themselves (path, size, content_type, modified, etag, version, content)",
            ));
        }
        if !self.keys.is_empty() && self.keys != ["path"] {
            return Err(Error::config(
                &t,
                "keys",
                "a binary table is keyed by `path` (silver: the latest version of each object) or has no keys (bronze only)",
            ));
        }
        if !self.keys.is_empty() {
            self.sequence_by
                .get_or_insert_with(|| "modified".to_string());
            self.delete_column
                .get_or_insert_with(|| "deleted".to_string());
            if self.silver_columns.is_none() && self.except_columns.is_empty() {
                self.except_columns = vec!["content".to_string()];
            }
        }
        Ok(())
    }

    fn validate(mut self) -> Result<TableConfig> {
        let t = self.name.clone();
        if self.format.as_deref() == Some("binary") {
            self.binary_defaults()?;
        }
        let target_file_size = file_size_bytes(
            &t,
            self.target_file_size_mb
                .unwrap_or(DEFAULT_SILVER_FILE_SIZE_MB),
        )?;
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
            Some("jsonl") | Some("ndjson") => Format::Jsonl,
            Some("json") => Format::Json,
            Some("binary") => Format::Binary,
            Some("csv") => Format::Csv,
            Some("parquet") => Format::Parquet,
            Some("avro") => Format::Avro,
            Some(other) => {
                return Err(Error::config(
                    &t,
                    "format",
                    format!("`{other}` is not one of jsonl, json, csv, parquet, avro, binary"),
                ))
            }
            None => {
                return Err(Error::config(
                    &t,
                    "format",
                    "is required (jsonl, csv, parquet or avro)",
                ))
            }
        };
        let columns = parse_columns(self.columns.as_deref(), &t, "columns")?;
        let column_types =
            parse_columns(self.column_types.as_deref(), &t, "column_types")?.unwrap_or_default();
        if !column_types.is_empty() && (columns.is_some() || format.is_typed_file()) {
            return Err(Error::config(
                &t,
                "column_types",
                "overrides inferred types of a text table; this table declares its columns or is Parquet or Avro (typed)",
            ));
        }
        let row_columns = parse_columns(self.row_columns.as_deref(), &t, "row_columns")?;
        let cdc = match self.cdc.as_deref() {
            None | Some("upsert") => CdcFormat::Upsert,
            Some("debezium") => CdcFormat::Debezium,
            Some("dms") => CdcFormat::Dms,
            Some("snapshot") => CdcFormat::Snapshot,
            Some(other) => {
                return Err(Error::config(
                    &t,
                    "cdc",
                    format!("`{other}` is not one of upsert, debezium, dms, snapshot"),
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
        if cdc == CdcFormat::Snapshot {
            // A snapshot is the whole table at one instant: its order is its folder's name.
            let refused = [
                ("sequence_by", self.sequence_by.is_some()),
                ("delete_column", self.delete_column.is_some()),
                ("op_column", self.op_column.is_some()),
                ("row_columns", row_columns.is_some()),
            ];
            if let Some((field, _)) = refused.iter().find(|(_, set)| *set) {
                return Err(Error::config(
                    &t,
                    field,
                    "a snapshot table takes its order from its snapshots' folder names and its deletes from the keys a snapshot lacks",
                ));
            }
            if self.keys.is_empty() {
                return Err(Error::config(
                    &t,
                    "keys",
                    "a snapshot table needs key columns (what tells a changed row from a new one)",
                ));
            }
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
        if scd_type == 2 && self.sequence_by.is_none() && cdc != CdcFormat::Snapshot {
            return Err(Error::config(
                &t,
                "sequence_by",
                "SCD type 2 needs a sequence column",
            ));
        }
        match (self.tombstone_retention_days, scd_type) {
            (Some(d), _) if !(1..=MAX_RETENTION_DAYS).contains(&d) => {
                return Err(Error::config(
                    &t,
                    "tombstone_retention_days",
                    format!("must be 1..={MAX_RETENTION_DAYS} days, not {d}"),
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
                .find(|c| crate::schema::SCD2_RESERVED.contains(&c.name.as_str()));
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
        let apply_truncates = match self.truncate.as_deref() {
            None | Some("apply") => true,
            Some("ignore") => false,
            Some(other) => {
                return Err(Error::config(
                    &t,
                    "truncate",
                    format!("`{other}` is not one of apply, ignore"),
                ))
            }
        };
        let wire = WireHints {
            integer_timestamps: match self.integer_timestamps.as_deref() {
                None => None,
                Some("ms") => Some(TimeUnit::Millisecond),
                Some("us") => Some(TimeUnit::Microsecond),
                Some("ns") => Some(TimeUnit::Nanosecond),
                Some(other) => {
                    return Err(Error::config(
                        &t,
                        "integer_timestamps",
                        format!("`{other}` is not one of ms, us, ns"),
                    ))
                }
            },
            binary_decimals: self.binary_decimals.unwrap_or(false),
        };
        // What reaches silver. Keys and the sequence always do; a selection names row columns.
        if self.silver_columns.is_some() && !self.except_columns.is_empty() {
            return Err(Error::config(
                &t,
                "except_columns",
                "give silver_columns (what reaches silver) or except_columns (what does not), not both",
            ));
        }
        let essential: Vec<&String> = self.keys.iter().chain(self.sequence_by.iter()).collect();
        for (field, list) in [
            (
                "silver_columns",
                self.silver_columns.as_deref().unwrap_or(&[]),
            ),
            ("except_columns", &self.except_columns[..]),
        ] {
            for c in list {
                declared(field, c)?;
            }
        }
        if let Some(c) = self.except_columns.iter().find(|c| essential.contains(c)) {
            return Err(Error::config(
                &t,
                "except_columns",
                format!("`{c}` is a key or the sequence: silver needs it"),
            ));
        }
        if let Some(cols) = &self.silver_columns {
            if let Some(c) = essential.iter().find(|c| !cols.contains(c)) {
                return Err(Error::config(
                    &t,
                    "silver_columns",
                    format!("must include the keys and the sequence (`{c}` is missing)"),
                ));
            }
        }
        if !self.track_history_columns.is_empty() || !self.except_history_columns.is_empty() {
            let field = match self.track_history_columns.is_empty() {
                true => "except_history_columns",
                false => "track_history_columns",
            };
            if scd_type != 2 {
                return Err(Error::config(
                    &t,
                    field,
                    "only an SCD type 2 table keeps history",
                ));
            }
            if !self.track_history_columns.is_empty() && !self.except_history_columns.is_empty() {
                return Err(Error::config(
                    &t,
                    "except_history_columns",
                    "give track_history_columns or except_history_columns, not both",
                ));
            }
            for c in self
                .track_history_columns
                .iter()
                .chain(&self.except_history_columns)
            {
                declared(field, c)?;
                if essential.contains(&c) {
                    return Err(Error::config(
                        &t,
                        field,
                        format!("`{c}` is a key or the sequence, not a tracked value"),
                    ));
                }
            }
        }
        let ignore_null_updates = match self.ignore_null_updates {
            None | Some(ColumnsOrAll::All(false)) => Vec::new(),
            // Every row column but the keys and the sequence (resolved by the normaliser).
            Some(ColumnsOrAll::All(true)) => vec!["*".to_string()],
            Some(ColumnsOrAll::Columns(cols)) => {
                for c in &cols {
                    declared("ignore_null_updates", c)?;
                    if essential.contains(&c) {
                        return Err(Error::config(
                            &t,
                            "ignore_null_updates",
                            format!("`{c}` is a key or the sequence: a null there is never \"unchanged\""),
                        ));
                    }
                }
                cols
            }
        };
        let json_path: Vec<String> = match (&self.json_path, format) {
            (None, _) => Vec::new(),
            (Some(p), Format::Json) if !p.split('.').any(str::is_empty) => {
                p.split('.').map(str::to_string).collect()
            }
            (Some(p), Format::Json) => {
                return Err(Error::config(
                    &t,
                    "json_path",
                    format!("`{p}` must be keys separated by `.` (e.g. `data.items`)"),
                ))
            }
            (Some(_), _) => {
                return Err(Error::config(
                    &t,
                    "json_path",
                    "only a `format = \"json\"` table (one document per object) has a path to its records",
                ))
            }
        };
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
            // Debezium's `unavailable.value.placeholder` default; "" turns it off.
            unavailable_value: match (self.unavailable_value, cdc) {
                (Some(v), _) if v.is_empty() => None,
                (Some(v), _) => Some(v),
                (None, CdcFormat::Debezium) => Some(DEBEZIUM_UNAVAILABLE.to_string()),
                (None, _) => None,
            },
            wire,
            apply_truncates,
            csv_delimiter,
            csv_header: self.csv_header.unwrap_or(true),
            json_path,
            ignore_null_updates,
            silver_columns: self.silver_columns,
            except_columns: self.except_columns,
            track_history_columns: self.track_history_columns,
            except_history_columns: self.except_history_columns,
            trigger,
            target_file_size,
            column_types,
            limits: Default::default(),
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
        // A view is one read-only query: `COPY ... TO` would write files, `INSERT` would change silver.
        use deltalake::datafusion::sql::parser::{DFParser, Statement};
        use deltalake::datafusion::sql::sqlparser::ast::Statement as Sql;
        match DFParser::parse_sql(&self.sql) {
            Ok(statements)
                if statements.len() == 1
                    && matches!(&statements[0], Statement::Statement(s) if matches!(**s, Sql::Query(_))) =>
                {}
            Ok(_) => {
                return Err(Error::config(
                    &n,
                    "gold.sql",
                    "must be exactly one read-only query (SELECT or WITH ... SELECT)",
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
        for s in &self.sources {
            match tables.iter().find(|t| &t.name == s) {
                None => {
                    return Err(Error::config(
                        &n,
                        "gold.sources",
                        format!("`{s}` is not a table of this pipeline"),
                    ))
                }
                Some(t) if !t.has_silver() => {
                    return Err(Error::config(
                        &n,
                        "gold.sources",
                        format!("`{s}` has no keys: it is bronze-only and has no silver to read"),
                    ))
                }
                Some(_) => {}
            }
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
    pub(super) fn validate(self) -> Result<PipelineConfig> {
        let landing = self.landing.validate("landing")?;
        let lake = self.lake.validate("lake")?;
        if self.tables.is_empty() {
            return Err(Error::config("-", "table", "no tables declared"));
        }
        let target_file_size = file_size_bytes(
            "-",
            self.target_file_size_mb
                .unwrap_or(DEFAULT_BRONZE_FILE_SIZE_MB),
        )?;
        let limits = self.limits.validate()?;
        let tables = self
            .tables
            .into_iter()
            .map(|t| t.validate().map(|t| TableConfig { limits, ..t }))
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
            maintenance: self.maintenance.validate()?,
            glue: self.catalog.validate()?,
        })
    }
}
