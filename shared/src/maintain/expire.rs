//! Physical expiry: rows past their retention (tombstones, quarantine) deleted with delta-rs's DELETE,
//! and silver's change data files deleted once the commits that wrote them have left the log (no change
//! data feed reader can reach them any more: the feed is read through the log).

use deltalake::datafusion::prelude::{col, lit};
use deltalake::datafusion::scalar::ScalarValue;
use deltalake::Path;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use super::{open, Maintainer, Outcome, Target, TaskReport};
use crate::error::{Error, Result};
use crate::lake::LogFile;

/// A change data file is kept this long past the oldest commit still in the log: it is written just
/// before its commit, so a file slightly older than that commit may still belong to it.
const CHANGE_FILE_MARGIN: chrono::Duration = chrono::Duration::hours(1);

/// Deletes the rows whose `column` (a UTC timestamp) is before `cutoff_us`.
pub(super) async fn rows(
    m: &Maintainer,
    target: &Target,
    column: &str,
    cutoff_us: i64,
    mut r: TaskReport,
) -> Result<TaskReport> {
    let table = open(&target.location).await?;
    let props = m.commit_properties(target, &table, "expire_rows").await?;
    let before = lit(ScalarValue::TimestampMicrosecond(
        Some(cutoff_us),
        Some("UTC".into()),
    ));
    let (after, metrics) = table
        .delete()
        .with_predicate(col(column).lt(before))
        .with_commit_properties(props)
        .await
        .map_err(|e| Error::delta(&target.label, "expire rows", e))?;
    if metrics.num_removed_files > 0 {
        r.outcome = Outcome::Done;
        r.version = after.version().map(|v| v as i64);
        r.files_removed = metrics.num_removed_files;
        r.files_added = metrics.num_added_files;
        r.deleted = metrics.num_deleted_rows.unwrap_or(0);
    }
    Ok(r)
}

/// Deletes the change data files older than both the vacuum retention and the oldest commit left in
/// the log.
pub(super) async fn change_files(
    m: &Maintainer,
    target: &Target,
    mut r: TaskReport,
) -> Result<TaskReport> {
    let table = open(&target.location).await?;
    let store = table.object_store();
    let list = |prefix: &'static str| {
        let store = store.clone();
        async move {
            store
                .list(Some(&Path::from(prefix)))
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| Error::Storage {
                    what: "list for maintenance",
                    location: format!("{}/{prefix}", target.location.url),
                    source: Box::new(e),
                })
        }
    };
    // The oldest commit: in an ordered listing the first (key order is version order), so the listing
    // stops there instead of reading every page of a month-old log.
    let ordered = target.location.lists_in_order();
    let mut log = store.list(Some(&Path::from("_delta_log")));
    let mut oldest_commit = None;
    while let Some(o) = log.try_next().await.map_err(|e| Error::Storage {
        what: "list for maintenance",
        location: format!("{}/_delta_log", target.location.url),
        source: Box::new(e),
    })? {
        let commit = o.location.filename().and_then(LogFile::of);
        if matches!(commit, Some((_, LogFile::Commit))) {
            oldest_commit = Some(
                oldest_commit.map_or(o.last_modified, |t: chrono::DateTime<chrono::Utc>| {
                    t.min(o.last_modified)
                }),
            );
            if ordered {
                break;
            }
        }
    }
    let Some(oldest_commit) = oldest_commit else {
        return Ok(r);
    };
    let retention = super::log::vacuum_retention(m, &table, target)?;
    let cutoff = (oldest_commit - CHANGE_FILE_MARGIN).min(m.now() - retention);
    let old: Vec<Path> = list("_change_data")
        .await?
        .into_iter()
        .filter(|o| o.last_modified < cutoff)
        .map(|o| o.location)
        .collect();
    for path in &old {
        store.delete(path).await.map_err(|e| Error::Storage {
            what: "delete expired change file",
            location: format!("{}/{path}", target.location.url),
            source: Box::new(e),
        })?;
    }
    if !old.is_empty() {
        r.outcome = Outcome::Done;
        r.deleted = old.len();
    }
    Ok(r)
}
