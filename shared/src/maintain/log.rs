//! A table's log and storage: a checkpoint at the current version (readers and writers then load the
//! state from one Parquet file instead of replaying commits), log cleanup below what every consumer has
//! read, and vacuum (Lite: the files removed from the table more than the retention ago).

use std::sync::Arc;

use deltalake::checkpoints::{cleanup_expired_logs_for, create_checkpoint};
use deltalake::operations::vacuum::Clock;
use deltalake::DeltaTable;

use super::consumers::Consumed;
use super::{open, Maintainer, Outcome, Target, TaskReport};
use crate::error::{Error, Result};
use crate::lake;

/// Delta's defaults for `delta.logRetentionDuration` and `delta.deletedFileRetentionDuration`.
const DEFAULT_LOG_RETENTION: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);
const DEFAULT_DELETED_FILE_RETENTION: std::time::Duration =
    std::time::Duration::from_secs(7 * 86_400);

/// Writes a checkpoint at the table's current version, unless the last one is already there.
pub(super) async fn checkpoint(target: &Target, mut r: TaskReport) -> Result<TaskReport> {
    let table = open(&target.location).await?;
    let version = table.version().map_or(0, |v| v as i64);
    let last = lake::last_checkpoint(&table).await;
    if version == 0 || last.is_some_and(|c| c >= version) {
        return Ok(r);
    }
    create_checkpoint(&table, None)
        .await
        .map_err(|e| Error::delta(&target.label, "checkpoint", e))?;
    r.outcome = Outcome::Done;
    r.version = Some(version);
    Ok(r)
}

/// Deletes log entries older than the table's log retention, below its latest checkpoint, and below
/// the first version a consumer still has to read.
pub(super) async fn clean(
    m: &Maintainer,
    target: &Target,
    consumed: Consumed,
    mut r: TaskReport,
) -> Result<TaskReport> {
    let table = open(&target.location).await?;
    let latest = table.version().map_or(0, |v| v as i64);
    let keep = consumed.keep_from(latest);
    if keep == 0 {
        return Ok(r.skipped("a consumer has not read this table yet: its whole log is kept"));
    }
    let retention = table_duration(&table, target, "delta.logRetentionDuration", |s| {
        s.table_config()
            .log_retention_duration
            .unwrap_or(DEFAULT_LOG_RETENTION)
    })?;
    let cutoff = (m.now() - retention).timestamp_millis();
    let deleted = cleanup_expired_logs_for(keep as u64, table.log_store().as_ref(), cutoff, None)
        .await
        .map_err(|e| Error::delta(&target.label, "clean log", e))?;
    if deleted > 0 {
        r.outcome = Outcome::Done;
        r.deleted = deleted;
    }
    Ok(r)
}

/// How long removed files stay: the configured days, never less than the table's
/// `delta.deletedFileRetentionDuration` (what time travel is promised for).
pub(super) fn vacuum_retention(
    m: &Maintainer,
    table: &DeltaTable,
    target: &Target,
) -> Result<chrono::Duration> {
    let promised = table_duration(table, target, "delta.deletedFileRetentionDuration", |s| {
        s.table_config()
            .deleted_file_retention_duration
            .unwrap_or(DEFAULT_DELETED_FILE_RETENTION)
    })?;
    let configured = chrono::Duration::days(i64::from(m.config.maintenance.vacuum_retention_days));
    Ok(configured.max(promised))
}

/// A duration table property (`name`, read by `get` with its default applied).
fn table_duration(
    table: &DeltaTable,
    target: &Target,
    name: &str,
    get: impl Fn(&deltalake::table::state::DeltaTableState) -> std::time::Duration,
) -> Result<chrono::Duration> {
    let state = table
        .snapshot()
        .map_err(|e| Error::delta(&target.label, "read table properties", e))?;
    chrono::Duration::from_std(get(state))
        .map_err(|e| Error::invariant(format!("{name} of {} out of range: {e}", target.label)))
}

/// Vacuum's clock: the maintainer's time.
#[derive(Debug)]
struct At(i64);

impl Clock for At {
    fn current_timestamp_millis(&self) -> i64 {
        self.0
    }
}

/// Deletes the data files removed from the table longer ago than [`vacuum_retention`].
pub(super) async fn vacuum(
    m: &Maintainer,
    target: &Target,
    mut r: TaskReport,
) -> Result<TaskReport> {
    let table = open(&target.location).await?;
    let retention = vacuum_retention(m, &table, target)?;
    let props = m.commit_properties(target, &table, "vacuum").await?;
    let (after, metrics) = table
        .vacuum()
        .with_retention_period(retention)
        .with_clock(Arc::new(At(m.now().timestamp_millis())))
        .with_commit_properties(props)
        .await
        .map_err(|e| Error::delta(&target.label, "vacuum", e))?;
    if !metrics.files_deleted.is_empty() {
        r.outcome = Outcome::Done;
        r.version = after.version().map(|v| v as i64);
        r.deleted = metrics.files_deleted.len();
    }
    Ok(r)
}
