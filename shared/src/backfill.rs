//! Batch mode (`lakehouse backfill`): the objects already under the landing prefixes go through bronze →
//! silver → gold with the very code the event-driven functions run, in chunks (one bronze commit per
//! chunk). Re-running it is a no-op: bronze recognises every object version it has ingested, and silver
//! and gold find their watermarks at the latest upstream versions.

use std::sync::Arc;

use futures::TryStreamExt;
use tracing::info;

use crate::bronze::{BronzeWriter, ObjectStatus};
use crate::config::{PipelineConfig, TableConfig};
use crate::error::{Error, Result};
use crate::events::{self, SourceObject};
use crate::gold::{GoldCommit, GoldWriter};
use crate::silver::{SilverCommit, SilverWriter};
use crate::storage;

/// What to backfill.
#[derive(Debug, Clone)]
pub struct BackfillOptions {
    /// Only this table (and the gold views reading it); all tables when `None`.
    pub table: Option<String>,
    /// Only objects last modified at or after this time.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Objects per bronze commit.
    pub chunk: usize,
}

/// Where a backfill reports its progress (the CLI draws a bar; the library prints nothing).
pub trait Progress {
    /// The listing is done: `objects` to go.
    fn start(&self, _objects: usize) {}
    /// Now working on `stage` (`bronze/<table>`, `silver/<table>`, `gold/<view>`).
    fn stage(&self, _stage: &str) {}
    /// `objects` more went through bronze.
    fn advance(&self, _objects: usize) {}
    fn finish(&self) {}
}

/// Reports nothing.
pub struct Quiet;

impl Progress for Quiet {}

impl Default for BackfillOptions {
    fn default() -> Self {
        BackfillOptions {
            table: None,
            since: None,
            chunk: 100,
        }
    }
}

/// What a backfill did.
#[derive(Debug, Default)]
pub struct BackfillSummary {
    pub objects: usize,
    pub ingested: usize,
    pub already_ingested: usize,
    pub quarantined: usize,
    /// Objects storage could not serve: (key, reason). The backfill is incomplete while this is not empty.
    pub failed: Vec<(String, String)>,
    pub rows: u64,
    /// Per table: what bronze did.
    pub bronze: Vec<BronzeLoad>,
    pub silver: Vec<SilverCommit>,
    pub gold: Vec<GoldCommit>,
}

/// What bronze did with one table's objects in a backfill.
#[derive(Debug, Default, Clone)]
pub struct BronzeLoad {
    pub table: String,
    pub objects: usize,
    /// Rows appended to bronze.
    pub rows: u64,
    /// Rows of ingested objects that went to quarantine.
    pub rows_quarantined: u64,
    /// Objects quarantined whole (not a valid file of their format).
    pub objects_quarantined: usize,
}

impl BackfillSummary {
    /// Rows (and whole objects) that went to quarantine in any layer.
    pub fn quarantined(&self) -> u64 {
        self.bronze
            .iter()
            .map(|b| b.rows_quarantined + b.objects_quarantined as u64)
            .chain(self.silver.iter().map(|s| s.rejected as u64))
            .sum()
    }

    /// Tables most of whose rows were rejected, in a layer: `(layer/table, rejected, of)`.
    pub fn mostly_rejected(&self) -> Vec<(String, u64, u64)> {
        let bronze = self.bronze.iter().filter_map(|b| {
            let of = b.rows + b.rows_quarantined;
            (b.rows_quarantined > 0 && b.rows_quarantined * 2 >= of)
                .then(|| (format!("bronze/{}", b.table), b.rows_quarantined, of))
        });
        let silver = self.silver.iter().filter(|s| s.mostly_rejected()).map(|s| {
            (
                format!("silver/{}", s.table),
                s.rejected as u64,
                s.read.saturating_sub(s.skipped) as u64,
            )
        });
        bronze.chain(silver).collect()
    }
}

impl std::fmt::Display for BackfillSummary {
    /// Plain words, one line per table and layer.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} objects: {} ingested ({} rows), {} already ingested, {} quarantined whole, {} failed",
            self.objects,
            self.ingested,
            self.rows,
            self.already_ingested,
            self.quarantined,
            self.failed.len()
        )?;
        for b in &self.bronze {
            writeln!(
                f,
                "bronze/{}: {} objects, {} rows in, {} rows quarantined, {} objects quarantined whole",
                b.table, b.objects, b.rows, b.rows_quarantined, b.objects_quarantined
            )?;
        }
        for s in &self.silver {
            match s.applied {
                None => writeln!(f, "silver/{}: up to date (nothing new in bronze)", s.table)?,
                Some((from, to)) => writeln!(
                    f,
                    "silver/{}: bronze versions {} to {to}: {} rows in, {} skipped, {} quarantined; {} changes applied ({} inserted, {} updated, {} deleted) → version {}",
                    s.table,
                    from.map_or(0, |v| v + 1),
                    s.read,
                    s.skipped,
                    s.rejected,
                    s.changes,
                    s.inserted,
                    s.updated,
                    s.deleted,
                    s.table_version.map_or("none".to_string(), |v| v.to_string()),
                )?,
            }
        }
        for g in &self.gold {
            writeln!(
                f,
                "gold/{}: {} groups upserted, {} deleted{} → version {}",
                g.view,
                g.upserted,
                g.deleted,
                if g.full { " (full recompute)" } else { "" },
                g.version.map_or("unchanged".to_string(), |v| v.to_string()),
            )?;
        }
        for (table, rejected, of) in self.mostly_rejected() {
            writeln!(
                f,
                "WARNING: {table} rejected {rejected} of {of} rows: most of the data went to quarantine; read the reasons in its quarantine table"
            )?;
        }
        Ok(())
    }
}

/// Lists the landing objects of `table` (modified since `since`), in key order.
pub async fn landing_objects(
    config: &PipelineConfig,
    table: &TableConfig,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Vec<SourceObject>> {
    let store = storage::bucket_store(&config.landing)?;
    let base = config.landing.prefix();
    let prefix = if base.is_empty() {
        table.prefix.clone()
    } else {
        format!("{base}/{}", table.prefix)
    };
    let path = deltalake::Path::from(prefix.trim_end_matches('/'));
    let mut objects: Vec<SourceObject> = store
        .list(Some(&path))
        .try_filter(|m| std::future::ready(since.is_none_or(|s| m.last_modified >= s)))
        .map_ok(|m| SourceObject {
            bucket: config.landing.bucket().to_string(),
            key: m.location.to_string(),
            etag: m.e_tag.as_deref().map(events::clean_etag),
            // A listing names current versions; bronze reads the version id from its HEAD.
            version_id: None,
            removed_at: None,
        })
        .try_collect()
        .await
        .map_err(|e| Error::Storage {
            what: "list landing objects under",
            location: format!("{}/{prefix}", config.landing.bucket()),
            source: Box::new(e),
        })?;
    // Only what routes to this table (a listing may hold keys under an overlapping-looking prefix).
    objects.retain(|o| {
        config
            .route(&o.bucket, &o.key)
            .is_some_and(|t| t.name == table.name)
    });
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(objects)
}

/// Runs the backfill, reporting to `progress`.
pub async fn run(
    config: Arc<PipelineConfig>,
    options: &BackfillOptions,
    progress: &dyn Progress,
) -> Result<BackfillSummary> {
    let tables: Vec<&TableConfig> = match &options.table {
        Some(name) => vec![config
            .table(name)
            .ok_or_else(|| Error::config(name, "table", "no such table in the pipeline"))?],
        None => config.tables.iter().collect(),
    };
    let mut listed = Vec::new();
    for t in &tables {
        listed.push((*t, landing_objects(&config, t, options.since).await?));
    }
    let total: usize = listed.iter().map(|(_, o)| o.len()).sum();
    progress.start(total);
    let bronze = BronzeWriter::new(config.clone())?.any_age();
    let mut summary = BackfillSummary {
        objects: total,
        ..Default::default()
    };
    for (table, objects) in &listed {
        progress.stage(&format!("bronze/{}", table.name));
        let mut load = BronzeLoad {
            table: table.name.clone(),
            objects: objects.len(),
            ..Default::default()
        };
        for chunk in objects.chunks(options.chunk.max(1)) {
            let commit = bronze.ingest(table, chunk).await?;
            for o in &commit.objects {
                match &o.status {
                    ObjectStatus::Ingested { rows, quarantined } => {
                        summary.ingested += 1;
                        summary.rows += rows;
                        load.rows += rows;
                        load.rows_quarantined += quarantined;
                    }
                    ObjectStatus::AlreadyIngested
                    | ObjectStatus::Stale { .. }
                    | ObjectStatus::Skipped { .. } => summary.already_ingested += 1,
                    ObjectStatus::Quarantined { .. } => {
                        summary.quarantined += 1;
                        load.objects_quarantined += 1;
                    }
                    ObjectStatus::Failed { reason } => {
                        summary.failed.push((o.key.clone(), reason.clone()))
                    }
                }
            }
            progress.advance(chunk.len());
        }
        summary.bronze.push(load);
    }
    let silver = SilverWriter::new(config.clone());
    for (table, _) in &listed {
        progress.stage(&format!("silver/{}", table.name));
        summary.silver.push(silver.apply(table).await?);
    }
    let gold = GoldWriter::new(config.clone());
    for view in &config.gold {
        if view
            .sources
            .iter()
            .any(|s| tables.iter().any(|t| &t.name == s))
        {
            progress.stage(&format!("gold/{}", view.name));
            summary.gold.push(gold.apply(view, false).await?);
        }
    }
    progress.finish();
    info!(
        objects = summary.objects,
        ingested = summary.ingested,
        already = summary.already_ingested,
        quarantined = summary.quarantined,
        failed = summary.failed.len(),
        "backfill done"
    );
    Ok(summary)
}
