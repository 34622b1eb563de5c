//! A table's log, commit by commit: the rows each commit added, read from exactly the files it added
//! (typed actions through delta-rs' log parser, never a scan of the whole table). Silver reads bronze's
//! new commits this way: bronze is append-only, so a commit's adds are its new rows.

use std::collections::HashSet;

use deltalake::arrow::array::RecordBatch;
use deltalake::kernel::Action;
use deltalake::logstore::get_actions;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::{DeltaTable, Path};
use object_store::ObjectStoreExt;

use super::table_name;
use crate::error::{Error, Result};
use crate::storage::Location;

/// The actions of commit `version`. A version that log cleanup removed is an [`Error::LogExpired`].
pub(crate) async fn commit_actions(
    table: &DeltaTable,
    location: &Location,
    version: i64,
) -> Result<Vec<Action>> {
    let name = table_name(location);
    let entry = table
        .log_store()
        .read_commit_entry(version as _)
        .await
        .map_err(|e| Error::delta(&name, "read log", e))?
        .ok_or_else(|| Error::LogExpired {
            table: name.clone(),
            version,
        })?;
    get_actions(version as _, &entry).map_err(|e| Error::LogEntry {
        table: name,
        version,
        reason: "not a valid commit".into(),
        source: Some(Box::new(e)),
    })
}

/// Whether a commit's actions change the table's data: an add, remove or change data file with
/// `dataChange: true`. Maintenance commits (compaction, vacuum, property changes) and watermark-only
/// commits do not: a consumer has nothing to read in them.
pub(crate) fn changes_data(actions: &[Action]) -> bool {
    actions.iter().any(|a| match a {
        Action::Add(add) => add.data_change,
        Action::Remove(remove) => remove.data_change,
        Action::Cdc(_) => true,
        _ => false,
    })
}

/// The data commits among `[from, to]` with their commit times (commitInfo), oldest first: what a
/// consumer whose watermark is `from - 1` still has to apply. A version the log no longer holds counts
/// as a data commit of unknown time (the consumer cannot skip what it cannot read).
pub async fn data_commits(
    table: &DeltaTable,
    location: &Location,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, Option<chrono::DateTime<chrono::Utc>>)>> {
    let mut out = Vec::new();
    for version in from.max(0)..=to {
        match commit_actions(table, location, version).await {
            Ok(actions) if changes_data(&actions) => {
                out.push((version, commit_info_time(&actions)))
            }
            Ok(_) => {}
            Err(Error::LogExpired { .. }) => out.push((version, None)),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The data files the commits in `[from, to]` added as new data (`dataChange: true`; a compaction's
/// files hold rows that were already there), as percent-decoded paths relative to the table. Read
/// from those commits by name: no older version of the table is loaded, so it works however much of
/// the log before `from` was cleaned.
pub async fn files_added(
    table: &DeltaTable,
    location: &Location,
    from: i64,
    to: i64,
) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    for version in from.max(0)..=to {
        for action in commit_actions(table, location, version).await? {
            if let Action::Add(add) = action {
                if add.data_change {
                    out.insert(decoded_path(&add.path));
                }
            }
        }
    }
    Ok(out)
}

/// A data file's path as the log spells it, percent-decoded (snapshots and commits may differ in
/// encoding; compare decoded).
pub fn decoded_path(path: &str) -> String {
    percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned()
}

/// The rows each commit in `[from, to]` added, per version (compaction commits add none). A version that
/// log cleanup removed is an [`Error::LogExpired`]: the range cannot be read any more.
pub async fn commit_files(
    table: &DeltaTable,
    location: &Location,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, Vec<RecordBatch>)>> {
    let mut out = Vec::new();
    for version in from.max(0)..=to {
        let actions = commit_actions(table, location, version).await?;
        let mut batches = Vec::new();
        for action in actions {
            // Compaction re-adds rows it already had (`dataChange: false`): not new rows.
            let Action::Add(add) = action else { continue };
            if !add.data_change {
                continue;
            }
            batches.extend(read_data_file(table, location, &add.path, Some(version)).await?);
        }
        out.push((version, batches));
    }
    Ok(out)
}

/// The rows of one data file of `table` (`path` relative to the table, as in its log), read directly
/// (no query engine). `version` names the commit that added it, for errors.
pub async fn read_data_file(
    table: &DeltaTable,
    location: &Location,
    path: &str,
    version: Option<i64>,
) -> Result<Vec<RecordBatch>> {
    let name = table_name(location);
    let at = version.map_or(String::new(), |v| format!(" (version {v})"));
    let path = Path::from_url_path(path).map_err(|e| Error::LogEntry {
        table: name.clone(),
        version: version.unwrap_or(-1),
        reason: format!("bad file path `{path}`"),
        source: Some(Box::new(e)),
    })?;
    let storage = |e| Error::Storage {
        what: "read data file",
        location: format!("{name}/{path}"),
        source: Box::new(e),
    };
    let bytes = table
        .object_store()
        .get(&path)
        .await
        .map_err(storage)?
        .bytes()
        .await
        .map_err(storage)?;
    let parquet = |e| Error::Parquet {
        context: format!("reading {name}/{path}{at}"),
        source: e,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(parquet)?;
    reader
        .map(|b| b.map_err(|e| Error::arrow(format!("reading {name}/{path}{at}"), e)))
        .collect()
}

/// A file of a table's log told by its name (`<20 digits>.json`, `<20 digits>.checkpoint…`), as
/// listings, log cleanup and [`retained`] see it. Cleanup follows delta-rs' `cleanup_expired_logs_for`:
/// commits and single-file checkpoints may be deleted; any checkpoint makes the versions below it safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFile {
    Commit,
    Checkpoint { deletable: bool },
}

impl LogFile {
    /// The version and kind of the log file named `name` (a file name, not a path).
    pub fn of(name: &str) -> Option<(u64, LogFile)> {
        let (digits, rest) = name.split_at_checked(20)?;
        let version = digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())??;
        let kind = match rest.strip_prefix('.')? {
            "json" => LogFile::Commit,
            r if r.starts_with("checkpoint") => {
                let middle = r
                    .strip_prefix("checkpoint")
                    .and_then(|m| m.strip_suffix(".parquet"));
                let single = middle.is_some_and(|m| {
                    m.is_empty()
                        || m.strip_prefix('.')
                            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                });
                LogFile::Checkpoint { deletable: single }
            }
            _ => return None,
        };
        Some((version, kind))
    }

    pub fn deletable(self) -> bool {
        matches!(
            self,
            LogFile::Commit | LogFile::Checkpoint { deletable: true }
        )
    }
}

/// The versions a table's log still holds, from one listing of `_delta_log/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retained {
    /// The oldest version a reader can load (time travel): the oldest checkpoint, or 0 while the
    /// first commit is still there.
    pub oldest_loadable: Option<i64>,
    /// The oldest commit entry (a change feed can start there).
    pub oldest_commit: Option<i64>,
}

/// What `table`'s log still holds. One LIST: for error messages and `status`, not for steps.
pub async fn retained(table: &DeltaTable, location: &Location) -> Result<Retained> {
    use futures::TryStreamExt;
    let listed: Vec<_> = table
        .object_store()
        .list(Some(&Path::from("_delta_log")))
        .try_collect()
        .await
        .map_err(|e| Error::Storage {
            what: "list the log of",
            location: table_name(location),
            source: Box::new(e),
        })?;
    let mut commits = Vec::new();
    let mut checkpoints = Vec::new();
    for meta in listed {
        let Some(name) = meta.location.filename() else {
            continue;
        };
        match LogFile::of(name) {
            Some((version, LogFile::Commit)) => commits.push(version as i64),
            Some((version, LogFile::Checkpoint { .. })) if name.ends_with(".parquet") => {
                checkpoints.push(version as i64)
            }
            _ => {}
        }
    }
    let oldest_commit = commits.iter().min().copied();
    let oldest_checkpoint = checkpoints.iter().min().copied();
    let oldest_loadable = match oldest_commit {
        Some(0) => Some(0),
        _ => oldest_checkpoint,
    };
    Ok(Retained {
        oldest_loadable,
        oldest_commit,
    })
}

/// The version of the table's latest checkpoint (from `_delta_log/_last_checkpoint`), if any.
pub async fn last_checkpoint(table: &DeltaTable) -> Option<i64> {
    let hint = table
        .object_store()
        .get(&Path::from("_delta_log/_last_checkpoint"))
        .await
        .ok()?
        .bytes()
        .await
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&hint)
        .ok()?
        .get("version")?
        .as_i64()
}

/// When commit `version` of `table` was made (its commitInfo's timestamp), if it is still in the log.
pub async fn commit_time(
    table: &DeltaTable,
    version: i64,
) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
    let name = table.table_url().to_string();
    let Some(entry) = table
        .log_store()
        .read_commit_entry(version.max(0) as _)
        .await
        .map_err(|e| Error::delta(&name, "read log", e))?
    else {
        return Ok(None);
    };
    let actions = get_actions(version.max(0) as _, &entry).map_err(|e| Error::LogEntry {
        table: name.clone(),
        version,
        reason: "not a valid commit".into(),
        source: Some(Box::new(e)),
    })?;
    Ok(commit_info_time(&actions))
}

fn commit_info_time(actions: &[Action]) -> Option<chrono::DateTime<chrono::Utc>> {
    actions.iter().find_map(|a| match a {
        Action::CommitInfo(info) => info
            .timestamp
            .and_then(chrono::DateTime::from_timestamp_millis),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_files_are_told_apart_as_delta_rs_cleanup_does() {
        let v = "00000000000000000007";
        let of = |rest: &str| LogFile::of(&format!("{v}{rest}"));
        assert_eq!(of(".json"), Some((7, LogFile::Commit)));
        let single = LogFile::Checkpoint { deletable: true };
        assert_eq!(of(".checkpoint.parquet"), Some((7, single)));
        assert_eq!(of(".checkpoint.0000000001.parquet"), Some((7, single)));
        let kept = Some((7, LogFile::Checkpoint { deletable: false }));
        assert_eq!(of(".checkpoint.0000000001.0000000002.parquet"), kept);
        assert_eq!(
            of(".checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.parquet"),
            kept
        );
        assert_eq!(of(".crc"), None);
        assert_eq!(LogFile::of("_last_checkpoint"), None);
        assert_eq!(LogFile::of("0000000000000000007.json"), None);
    }
}
