//! `lakehouse status`: per table and view, every layer's version, how far each consumer lags its source
//! (versions and seconds), the file layout (files, small-file ratio, bytes, rows), the last commit, the
//! last checkpoint and the last maintenance. Read-only: snapshots and a few log entries.

use chrono::{DateTime, Utc};
use deltalake::arrow::array::AsArray;
use deltalake::arrow::datatypes::Int64Type;
use deltalake::DeltaTable;
use serde::Serialize;

use crate::config::{Location, PipelineConfig};
use crate::error::{Error, Result};
use crate::lake;
use crate::maintain::MAINTAINED_APP_ID;
use crate::{gold, silver};

/// How far a consumer is behind one of its sources.
#[derive(Debug, Clone, Serialize)]
pub struct Lag {
    /// The source, as `<layer>/<name>`.
    pub source: String,
    /// The source version the consumer applied last (its watermark).
    pub applied: Option<i64>,
    pub source_version: Option<i64>,
    /// Source commits not applied yet that change data (maintenance commits are not counted).
    pub versions_behind: i64,
    /// Age of the oldest such commit (0 when caught up).
    pub seconds_behind: i64,
}

/// One Delta table of the lake.
#[derive(Debug, Clone, Serialize)]
pub struct LayerStatus {
    /// `<layer>/<name>`.
    pub table: String,
    pub exists: bool,
    pub version: Option<i64>,
    pub files: usize,
    /// Files below half the layer's target size.
    pub small_files: usize,
    pub small_file_ratio: f64,
    pub bytes: i64,
    /// Rows, from the files' statistics.
    pub rows: i64,
    pub last_commit: Option<DateTime<Utc>>,
    pub last_checkpoint: Option<i64>,
    pub last_maintenance: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lag: Vec<Lag>,
}

/// Every layer of one table, or one gold view.
#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    pub name: String,
    pub layers: Vec<LayerStatus>,
}

/// The status of every configured table and gold view, as of `now`.
pub async fn status(config: &PipelineConfig, now: DateTime<Utc>) -> Result<Vec<TableStatus>> {
    let mut out = Vec::new();
    for t in &config.tables {
        let bronze_loc = config.bronze_location(&t.name);
        let bronze = lake::open(&bronze_loc).await?;
        let app = silver::watermark_app_id(&t.name);
        let bronze_label = format!("bronze/{}", t.name);
        let silver_loc = config.silver_location(&t.name);
        let silver = lake::open(&silver_loc).await?;
        let silver_lag = match &silver {
            Some(s) => {
                vec![
                    lag(
                        bronze_label.clone(),
                        bronze.as_ref().map(|b| (b, &bronze_loc)),
                        lake::txn_version(s, &app).await?,
                        now,
                    )
                    .await?,
                ]
            }
            None => Vec::new(),
        };
        out.push(TableStatus {
            name: t.name.clone(),
            layers: vec![
                layer(
                    bronze_label,
                    bronze.as_ref(),
                    config.target_file_size,
                    Vec::new(),
                )
                .await?,
                layer(
                    format!("silver/{}", t.name),
                    silver.as_ref(),
                    t.target_file_size,
                    silver_lag,
                )
                .await?,
                open_layer(
                    format!("silver_tombstones/{}", t.name),
                    &config.tombstone_location(&t.name),
                    t.target_file_size,
                )
                .await?,
                open_layer(
                    format!("quarantine/{}", t.name),
                    &config.quarantine_location(&t.name),
                    config.target_file_size,
                )
                .await?,
            ],
        });
    }
    for v in &config.gold {
        let gold = lake::open(&config.gold_location(&v.name)).await?;
        let mut lags = Vec::new();
        if let Some(g) = &gold {
            for s in &v.sources {
                let location = config.silver_location(s);
                let source = lake::open(&location).await?;
                let mark = lake::txn_version(g, &gold::watermark_app_id(&v.name, s)).await?;
                let source = source.as_ref().map(|t| (t, &location));
                lags.push(lag(format!("silver/{s}"), source, mark, now).await?);
            }
        }
        let size = v
            .sources
            .first()
            .and_then(|s| config.table(s))
            .map_or(config.target_file_size, |t| t.target_file_size);
        out.push(TableStatus {
            name: v.name.clone(),
            layers: vec![layer(format!("gold/{}", v.name), gold.as_ref(), size, lags).await?],
        });
    }
    Ok(out)
}

/// The status of the one table at `location` (no lag), opened afresh.
pub async fn open_layer(label: String, location: &Location, target: u64) -> Result<LayerStatus> {
    let table = lake::open(location).await?;
    layer(label, table.as_ref(), target, Vec::new()).await
}

async fn layer(
    label: String,
    table: Option<&DeltaTable>,
    target: u64,
    lag: Vec<Lag>,
) -> Result<LayerStatus> {
    let mut out = LayerStatus {
        table: label,
        exists: table.is_some(),
        version: None,
        files: 0,
        small_files: 0,
        small_file_ratio: 0.0,
        bytes: 0,
        rows: 0,
        last_commit: None,
        last_checkpoint: None,
        last_maintenance: None,
        lag,
    };
    let Some(table) = table else {
        return Ok(out);
    };
    let fail = |e| Error::delta(out.table.clone(), "status", e);
    let snapshot = table.snapshot().map_err(fail)?;
    out.version = table.version().map(|v| v as i64);
    if snapshot.log_data().num_files() > 0 {
        let files = snapshot
            .add_actions_table(true)
            .map_err(|e| Error::delta(out.table.clone(), "status", e))?;
        let column = |name: &str| {
            files
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<Int64Type>().cloned())
        };
        if let Some(sizes) = column("size_bytes") {
            out.files = sizes.len();
            out.bytes = sizes.iter().flatten().sum();
            out.small_files = sizes
                .iter()
                .flatten()
                .filter(|&s| (s as f64) < target as f64 * lake::SMALL_FILE_FRACTION)
                .count();
            out.small_file_ratio = out.small_files as f64 / out.files.max(1) as f64;
        }
        if let Some(rows) = column("num_records") {
            out.rows = rows.iter().flatten().sum();
        }
    }
    if let Some(v) = out.version {
        out.last_commit = lake::commit_time(table, v).await?;
    }
    out.last_checkpoint = lake::last_checkpoint(table).await;
    out.last_maintenance = lake::txn_version(table, MAINTAINED_APP_ID)
        .await?
        .and_then(DateTime::from_timestamp_millis);
    Ok(out)
}

/// At most this many pending source commits are read to tell data commits from maintenance ones;
/// beyond that every pending commit counts (a consumer that far behind is lagging anyway).
const MAX_PENDING_READ: i64 = 1_000;

/// How far a consumer whose watermark is `applied` is behind `source`. Only commits that change data
/// count: a consumer has nothing to do for a compaction, vacuum or property change, so a quiet table
/// after maintenance shows no lag.
async fn lag(
    label: String,
    source: Option<(&DeltaTable, &Location)>,
    applied: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Lag> {
    let source_version = source.and_then(|(s, _)| s.version()).map(|v| v as i64);
    let first_pending = applied.map_or(0, |a| a + 1);
    let pending = source_version.map_or(0, |v| (v - first_pending + 1).max(0));
    let (versions_behind, oldest) = match source {
        Some((s, location)) if pending > 0 && pending <= MAX_PENDING_READ => {
            let to = first_pending + pending - 1;
            let data = lake::data_commits(s, location, first_pending, to).await?;
            let oldest = match data.first() {
                Some((_, Some(at))) => Some(*at),
                Some((v, None)) => lake::commit_time(s, *v).await?,
                None => None,
            };
            (data.len() as i64, oldest)
        }
        Some((s, _)) if pending > 0 => (pending, lake::commit_time(s, first_pending).await?),
        _ => (0, None),
    };
    Ok(Lag {
        source: label,
        applied,
        source_version,
        versions_behind,
        seconds_behind: oldest.map_or(0, |t| (now - t).num_seconds().max(0)),
    })
}
