//! Batch mode (`lakehouse backfill`): the objects already under the landing prefixes go through bronze →
//! silver → gold with the very code the event-driven functions run, in chunks (one bronze commit per
//! chunk). Re-running it is a no-op: bronze recognises every object version it has ingested, and silver
//! and gold find their watermarks at the latest upstream versions.

use std::sync::Arc;

use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tracing::info;

use crate::bronze::{BronzeWriter, ObjectStatus};
use crate::config::{PipelineConfig, TableConfig};
use crate::error::{Error, Result};
use crate::events::SourceObject;
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
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        BackfillOptions {
            table: None,
            since: None,
            chunk: 100,
            progress: false,
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
    pub silver: Vec<SilverCommit>,
    pub gold: Vec<GoldCommit>,
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
            etag: m.e_tag.as_deref().map(crate::events::clean_etag),
        })
        .try_collect()
        .await
        .map_err(|e| Error::Event(format!("cannot list landing objects under {prefix}: {e}")))?;
    // Only what routes to this table (a listing may hold keys under an overlapping-looking prefix).
    objects.retain(|o| {
        config
            .route(&o.bucket, &o.key)
            .is_some_and(|t| t.name == table.name)
    });
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(objects)
}

/// Runs the backfill.
pub async fn run(
    config: Arc<PipelineConfig>,
    options: &BackfillOptions,
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
    let bar = if options.progress {
        ProgressBar::new(total as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} objects ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let bronze = BronzeWriter::new(config.clone())?;
    let mut summary = BackfillSummary {
        objects: total,
        ..Default::default()
    };
    for (table, objects) in &listed {
        bar.set_message(format!("bronze/{}", table.name));
        for chunk in objects.chunks(options.chunk.max(1)) {
            let commit = bronze.ingest(table, chunk).await?;
            for o in &commit.objects {
                match &o.status {
                    ObjectStatus::Ingested { rows, .. } => {
                        summary.ingested += 1;
                        summary.rows += rows;
                    }
                    ObjectStatus::AlreadyIngested => summary.already_ingested += 1,
                    ObjectStatus::Quarantined { .. } => summary.quarantined += 1,
                    ObjectStatus::Failed { reason } => {
                        summary.failed.push((o.key.clone(), reason.clone()))
                    }
                }
            }
            bar.inc(chunk.len() as u64);
        }
    }
    let silver = SilverWriter::new(config.clone());
    for (table, _) in &listed {
        bar.set_message(format!("silver/{}", table.name));
        summary.silver.push(silver.apply(table).await?);
    }
    let gold = GoldWriter::new(config.clone());
    for view in &config.gold {
        if view
            .sources
            .iter()
            .any(|s| tables.iter().any(|t| &t.name == s))
        {
            bar.set_message(format!("gold/{}", view.name));
            summary.gold.push(gold.apply(view, false).await?);
        }
    }
    bar.finish_and_clear();
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
