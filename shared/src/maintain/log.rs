//! A table's log and storage: a checkpoint at the current version (readers and writers then load the
//! state from one Parquet file instead of replaying commits), log cleanup below what every consumer has
//! read, and vacuum (Lite: the files removed from the table more than the retention ago).

use std::sync::Arc;

use deltalake::checkpoints::create_checkpoint;
use deltalake::operations::vacuum::Clock;
use deltalake::{DeltaTable, Path};
use futures::{StreamExt, TryStreamExt};

use super::consumers::Consumed;
use super::{open, Maintainer, Outcome, Target, TaskReport};
use crate::error::{Error, Result};
use crate::lake::{self, LogFile};

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
    let store = table.log_store().object_store(None);
    let storage = |e| Error::Storage {
        what: "clean the log of",
        location: target.label.clone(),
        source: Box::new(e),
    };
    let ordered = target.location.lists_in_order();
    let expired = expired_log_files(store.as_ref(), keep as u64, cutoff, ordered)
        .await
        .map_err(storage)?;
    let deleted: Vec<Path> = store
        .delete_stream(futures::stream::iter(expired.into_iter().map(Ok)).boxed())
        .try_collect()
        .await
        .map_err(storage)?;
    if !deleted.is_empty() {
        r.outcome = Outcome::Done;
        r.deleted = deleted.len();
    }
    Ok(r)
}

/// The log files cleanup deletes: commits and checkpoints older than `cutoff_ms`, below the newest
/// checkpoint at or under `keep` and under the first version inside the retention. The same rules
/// as delta-rs' cleanup, but an `ordered` listing (S3: key order is version order) is read only up
/// to the first file inside the retention: one page a run on a month-old log instead of every page
/// (~90 at one commit a minute), which was most of maintenance's S3 bill.
async fn expired_log_files(
    store: &dyn deltalake::ObjectStore,
    keep: u64,
    cutoff_ms: i64,
    ordered: bool,
) -> std::result::Result<Vec<Path>, object_store::Error> {
    let mut listing = store.list(Some(&Path::from("_delta_log")));
    let mut seen = Vec::new();
    let mut retained_from: Option<u64> = None;
    while let Some(meta) = listing.try_next().await? {
        let Some((version, kind)) = meta.location.filename().and_then(LogFile::of) else {
            continue;
        };
        let ts = meta.last_modified.timestamp_millis();
        let retained = kind.deletable() && ts >= cutoff_ms;
        seen.push((version, kind, ts, meta.location));
        if retained {
            retained_from = Some(retained_from.map_or(version, |v| v.min(version)));
            if ordered {
                break;
            }
        }
    }
    let keep = keep.min(retained_from.unwrap_or(keep));
    let safe = seen
        .iter()
        .filter(|(v, kind, _, _)| matches!(kind, LogFile::Checkpoint { .. }) && *v <= keep)
        .map(|(v, ..)| *v)
        .max();
    let Some(safe) = safe else {
        return Ok(Vec::new());
    };
    Ok(seen
        .into_iter()
        .filter(|(v, kind, ts, _)| kind.deletable() && *v < safe && *ts <= cutoff_ms)
        .map(|(.., path)| path)
        .collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::ObjectStore;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};

    /// Commits 0-5 and a checkpoint at 3, the cutoff between commit 2 and commit 3: what goes is what
    /// delta-rs' rules delete (below the safe checkpoint and older than the cutoff), whether the
    /// listing stops at the retention or is read whole.
    #[tokio::test]
    async fn cleanup_deletes_the_expired_commits_below_the_safe_checkpoint() {
        let store = InMemory::new();
        let put = |name: String| {
            let path = Path::from(format!("_delta_log/{name}"));
            let store = &store;
            async move {
                store
                    .put(&path, PutPayload::from_static(b"{}"))
                    .await
                    .unwrap()
            }
        };
        for v in 0..3u64 {
            put(format!("{v:020}.json")).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let cutoff = chrono::Utc::now().timestamp_millis() - 5;
        put(format!("{:020}.checkpoint.parquet", 3)).await;
        for v in 3..6u64 {
            put(format!("{v:020}.json")).await;
        }
        let expected: Vec<Path> = (0..3u64)
            .map(|v| Path::from(format!("_delta_log/{v:020}.json")))
            .collect();
        for ordered in [true, false] {
            let mut got = expired_log_files(&store, 10, cutoff, ordered)
                .await
                .unwrap();
            got.sort();
            assert_eq!(got, expected, "ordered listing: {ordered}");
        }
        // A consumer that has not read past version 2 keeps everything below the checkpoint at 3.
        assert!(expired_log_files(&store, 2, cutoff, true)
            .await
            .unwrap()
            .is_empty());
        let all: Vec<_> = store.list(None).try_collect().await.unwrap();
        assert_eq!(all.len(), 7, "nothing deleted by looking");
    }
}
