//! Maintenance: what keeps a table as cheap to step on day 90 as on day 1. Per table, in data order,
//! each task its own commit:
//!
//! - **bronze**: small files bin-packed to the target size ([`compact`]), but only files every consumer
//!   has read (the compaction runs on bronze as of silver's watermark), so vacuum can never delete a
//!   file a pending silver step still reads; checkpoint, log cleanup, vacuum.
//! - **quarantine**: rows past `quarantine_retention_days` deleted ([`expire`]), compaction, log.
//! - **silver**: re-clustered by key (overlapping and small files merged into sorted, disjoint files of
//!   the target size; partitioned tables are bin-packed), checkpoint, log cleanup, vacuum, change data
//!   files whose commits left the log deleted.
//! - **tombstones**: rows past `tombstone_retention_days` deleted, re-clustered, log.
//! - **gold**: re-clustered by the view's keys, log.
//!
//! Log cleanup ([`log`]) never removes a commit that a downstream watermark has not consumed
//! ([`consumers`]): bronze keeps every version after silver's watermark, silver every version after the
//! slowest gold view's. Commits of the product never clean logs themselves
//! ([`crate::lake::commit_properties`]).
//!
//! Compactions commit with `dataChange: false`: silver skips them when reading bronze's new rows, and
//! change data feed readers (gold, Spark) see no change. A maintenance commit that loses a race to a
//! concurrent writer is skipped and reported (the writer's commit stands; the next run compacts again);
//! a writer that loses to maintenance re-runs its step as it does against any other commit.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::DeltaTable;
use serde::Serialize;
use tracing::{info, warn};

use crate::config::{Location, PipelineConfig};
use crate::error::{Error, Result};
use crate::lake;

mod compact;
pub mod consumers;
mod expire;
mod log;

#[cfg(test)]
mod idle_tests;
#[cfg(test)]
mod tests;

use consumers::Consumed;

/// Application id of the maintenance marker: its version is the time (ms) of the last maintenance
/// commit on the table, read by `status`.
pub const MAINTAINED_APP_ID: &str = "lakehouse/maintain";

/// What a task did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Committed (or deleted files).
    Done,
    /// Nothing to do.
    Nothing,
    /// Not done this time (lost a race, a consumer has not started...): see `detail`.
    Skipped,
    /// Failed: see `detail`. Other tasks and tables still run.
    Failed,
}

/// One task on one table.
#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    /// The table, as `<layer>/<name>`.
    pub table: String,
    pub task: &'static str,
    pub outcome: Outcome,
    /// The version the task committed, if it committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    pub files_removed: usize,
    pub files_added: usize,
    /// Rows deleted (expiry), log files deleted (log cleanup), data files deleted (vacuum).
    pub deleted: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub elapsed_ms: u128,
}

impl TaskReport {
    fn new(table: &str, task: &'static str) -> Self {
        TaskReport {
            table: table.to_string(),
            task,
            outcome: Outcome::Nothing,
            version: None,
            files_removed: 0,
            files_added: 0,
            deleted: 0,
            detail: None,
            elapsed_ms: 0,
        }
    }

    fn failed(table: &str, task: &'static str, error: &Error) -> Self {
        TaskReport {
            outcome: Outcome::Failed,
            detail: Some(error.to_string()),
            ..TaskReport::new(table, task)
        }
    }

    fn skipped(mut self, why: impl Into<String>) -> Self {
        self.outcome = Outcome::Skipped;
        self.detail = Some(why.into());
        self
    }
}

/// Everything one maintenance run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MaintenanceReport {
    pub tasks: Vec<TaskReport>,
}

impl MaintenanceReport {
    pub fn failed(&self) -> impl Iterator<Item = &TaskReport> {
        self.tasks.iter().filter(|t| t.outcome == Outcome::Failed)
    }
}

/// The incremental readers of a table's log.
#[derive(Debug, Clone, PartialEq)]
enum Readers {
    None,
    /// Bronze table `0`: its silver step (and tombstones) read its commits; compaction only takes
    /// what they have read.
    Silver(String),
    /// Silver table `0`: the gold views that read it read its change feed.
    Gold(String),
}

/// One table to maintain and how.
struct Target {
    label: String,
    location: Location,
    /// Clustering keys (re-cluster by them), or none (bin-pack).
    keys: Vec<String>,
    target_file_size: u64,
    /// Rows of this timestamp column older than the cutoff (µs) are deleted.
    expire: Option<(&'static str, i64)>,
    /// Who reads the table's log incrementally (their watermarks bound log cleanup and, for bronze,
    /// compaction).
    readers: Readers,
    /// Silver: delete change data files whose commits left the log.
    change_files: bool,
    /// Silver, tombstones, gold: their watermarks must never expire.
    watermarks: bool,
    /// Application ids the table's writers commit with (their watermarks): every maintenance commit
    /// carries them at their current versions, so it conflicts with any concurrent step.
    fences: Vec<String>,
}

/// Runs maintenance over a pipeline's tables.
pub struct Maintainer {
    config: Arc<PipelineConfig>,
    now: Option<DateTime<Utc>>,
}

impl Maintainer {
    pub fn new(config: Arc<PipelineConfig>) -> Self {
        Maintainer { config, now: None }
    }

    /// Runs as if the time were `now` (retention cutoffs, vacuum's clock): for tests and what-ifs.
    pub fn at(mut self, now: DateTime<Utc>) -> Self {
        self.now = Some(now);
        self
    }

    fn now(&self) -> DateTime<Utc> {
        self.now.unwrap_or_else(Utc::now)
    }

    /// Maintains every table and view, or only `only` (a table, with its layers, or a gold view).
    /// Task failures are reported, not returned: one table's trouble does not stop the others.
    pub async fn run(&self, only: Option<&str>) -> Result<MaintenanceReport> {
        if let Some(name) = only {
            if self.config.table(name).is_none() && !self.config.gold.iter().any(|v| v.name == name)
            {
                return Err(Error::config(
                    name,
                    "--table",
                    "is neither a configured table nor a gold view",
                ));
            }
        }
        let mut report = MaintenanceReport::default();
        for target in self.targets(only) {
            self.maintain(&target, &mut report).await;
        }
        Ok(report)
    }

    fn targets(&self, only: Option<&str>) -> Vec<Target> {
        let cfg = &self.config;
        let now = self.now();
        let cutoff = |days: u32| (now - chrono::Duration::days(i64::from(days))).timestamp_micros();
        let mut out = Vec::new();
        for t in cfg
            .tables
            .iter()
            .filter(|t| only.is_none_or(|o| o == t.name))
        {
            let base = |layer: &str, location: Location| Target {
                label: format!("{layer}/{}", t.name),
                location,
                keys: Vec::new(),
                target_file_size: t.target_file_size,
                expire: None,
                readers: Readers::None,
                change_files: false,
                watermarks: false,
                fences: Vec::new(),
            };
            out.push(Target {
                target_file_size: cfg.target_file_size,
                readers: Readers::Silver(t.name.clone()),
                ..base("bronze", cfg.bronze_location(&t.name))
            });
            out.push(Target {
                target_file_size: cfg.target_file_size,
                expire: Some((
                    crate::schema::INGESTED_AT,
                    cutoff(cfg.maintenance.quarantine_retention_days),
                )),
                ..base("quarantine", cfg.quarantine_location(&t.name))
            });
            out.push(Target {
                keys: if t.partition_by.is_empty() {
                    t.keys.clone()
                } else {
                    Vec::new()
                },
                readers: Readers::Gold(t.name.clone()),
                change_files: true,
                watermarks: true,
                fences: vec![crate::silver::watermark_app_id(&t.name)],
                ..base("silver", cfg.silver_location(&t.name))
            });
            out.push(Target {
                keys: t.keys.clone(),
                expire: t
                    .tombstone_retention_days
                    .map(|d| (crate::silver::DELETED_AT, cutoff(d))),
                watermarks: true,
                fences: vec![crate::silver::watermark_app_id(&t.name)],
                ..base("silver_tombstones", cfg.tombstone_location(&t.name))
            });
        }
        for v in cfg.gold.iter().filter(|v| only.is_none_or(|o| o == v.name)) {
            out.push(Target {
                label: format!("gold/{}", v.name),
                location: cfg.gold_location(&v.name),
                keys: v.keys.clone(),
                // Gold files are sized like its (first) source's silver files.
                target_file_size: v
                    .sources
                    .first()
                    .and_then(|s| cfg.table(s))
                    .map_or(cfg.target_file_size, |t| t.target_file_size),
                expire: None,
                readers: Readers::None,
                change_files: false,
                watermarks: true,
                fences: v
                    .sources
                    .iter()
                    .map(|s| crate::gold::watermark_app_id(&v.name, s))
                    .collect(),
            });
        }
        out
    }

    /// Every task on one table, in order; each reports on its own.
    async fn maintain(&self, target: &Target, report: &mut MaintenanceReport) {
        match lake::open(&target.location).await {
            Ok(Some(_)) => {}
            Ok(None) => return, // not created yet
            Err(e) => {
                report
                    .tasks
                    .push(TaskReport::failed(&target.label, "open", &e));
                return;
            }
        }
        let consumed = match self.consumed(target).await {
            Ok(c) => c,
            Err(e) => {
                report
                    .tasks
                    .push(TaskReport::failed(&target.label, "consumers", &e));
                return;
            }
        };
        if target.watermarks {
            self.task(target, "keep_watermarks", report, |mut r| async move {
                let mut t = open(&target.location).await?;
                if lake::keep_watermarks(&mut t, &target.location).await? {
                    r.outcome = Outcome::Done;
                    r.version = t.version().map(|v| v as i64);
                }
                Ok(r)
            })
            .await;
        }
        if let Some((column, cutoff)) = target.expire {
            self.task(target, "expire_rows", report, |r| {
                expire::rows(self, target, column, cutoff, r)
            })
            .await;
        }
        self.task(target, "compact", report, |r| {
            compact::compact(self, target, consumed, r)
        })
        .await;
        self.task(target, "checkpoint", report, |r| log::checkpoint(target, r))
            .await;
        self.task(target, "clean_log", report, |r| {
            log::clean(self, target, consumed, r)
        })
        .await;
        self.task(target, "vacuum", report, |r| log::vacuum(self, target, r))
            .await;
        if target.change_files {
            self.task(target, "expire_change_files", report, |r| {
                expire::change_files(self, target, r)
            })
            .await;
        }
    }

    /// Runs one task, timing it and turning a lost race or an error into its report.
    async fn task<'a, F, Fut>(
        &self,
        target: &'a Target,
        name: &'static str,
        report: &mut MaintenanceReport,
        run: F,
    ) where
        F: FnOnce(TaskReport) -> Fut,
        Fut: std::future::Future<Output = Result<TaskReport>> + 'a,
    {
        let clock = std::time::Instant::now();
        let mut r = match run(TaskReport::new(&target.label, name)).await {
            Ok(r) => r,
            Err(Error::Conflict { source, .. }) => {
                warn!(table = %target.label, task = name, error = %source, "maintenance lost a race to a concurrent commit; skipped");
                TaskReport::new(&target.label, name).skipped(format!(
                    "lost a race to a concurrent commit ({source}); the next run retries"
                ))
            }
            Err(e) => {
                warn!(table = %target.label, task = name, error = %e, "maintenance task failed");
                TaskReport::failed(&target.label, name, &e)
            }
        };
        r.elapsed_ms = clock.elapsed().as_millis();
        if r.outcome != Outcome::Nothing {
            info!(table = %r.table, task = r.task, outcome = ?r.outcome, version = ?r.version,
                files_removed = r.files_removed, files_added = r.files_added, deleted = r.deleted,
                detail = ?r.detail, elapsed_ms = r.elapsed_ms, "maintenance");
        }
        report.tasks.push(r);
    }

    /// How far the target's downstream readers have read it.
    async fn consumed(&self, target: &Target) -> Result<Consumed> {
        match &target.readers {
            Readers::Silver(table) => consumers::of_bronze(&self.config, table).await,
            Readers::Gold(table) => consumers::of_silver(&self.config, table).await,
            Readers::None => Ok(Consumed::Free),
        }
    }

    /// Commit properties of a maintenance commit on `table`: no log cleanup, lineage, the maintenance
    /// marker (two overlapping runs conflict on it) and the table's fences at their versions in
    /// `table` (a step that committed meanwhile makes this commit conflict; one that commits after
    /// it conflicts and re-runs).
    async fn commit_properties(
        &self,
        target: &Target,
        table: &DeltaTable,
        task: &str,
    ) -> Result<CommitProperties> {
        let mut txns = vec![lake::txn(MAINTAINED_APP_ID, self.now().timestamp_millis())];
        for app in &target.fences {
            if let Some(v) = lake::txn_version(table, app).await? {
                txns.push(lake::txn(app, v));
            }
        }
        Ok(lake::commit_properties()
            .with_application_transactions(txns)
            .with_metadata([
                ("lakehouse.layer".to_string(), serde_json::json!("maintain")),
                (
                    "lakehouse.table".to_string(),
                    serde_json::json!(target.label),
                ),
                ("lakehouse.task".to_string(), serde_json::json!(task)),
            ]))
    }
}

/// The target's table (it exists: [`Maintainer::maintain`] checked).
async fn open(location: &Location) -> Result<DeltaTable> {
    lake::open(location)
        .await?
        .ok_or_else(|| Error::invariant(format!("table {} vanished", location.url)))
}
