//! A table's log, commit by commit: the rows each commit added, read from exactly the files it added
//! (typed actions through delta-rs' log parser, never a scan of the whole table). Silver reads bronze's
//! new commits this way: bronze is append-only, so a commit's adds are its new rows.

use deltalake::arrow::array::RecordBatch;
use deltalake::kernel::Action;
use deltalake::logstore::get_actions;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::{DeltaTable, Path};
use object_store::ObjectStoreExt;

use super::table_name;
use crate::error::{Error, Result};
use crate::storage::Location;

/// The rows each commit in `[from, to]` added, per version. A version that log cleanup removed is an
/// [`Error::LogExpired`]: the range cannot be read any more.
pub async fn commit_files(
    table: &DeltaTable,
    location: &Location,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, Vec<RecordBatch>)>> {
    let log = table.log_store();
    let store = table.object_store();
    let name = table_name(location);
    let mut out = Vec::new();
    for version in from.max(0)..=to {
        let entry = log
            .read_commit_entry(version as _)
            .await
            .map_err(|e| Error::delta(&name, "read log", e))?
            .ok_or_else(|| Error::LogExpired {
                table: name.clone(),
                version,
            })?;
        let actions = get_actions(version as _, &entry).map_err(|e| Error::LogEntry {
            table: name.clone(),
            version,
            reason: "not a valid commit".into(),
            source: Some(Box::new(e)),
        })?;
        let mut batches = Vec::new();
        for action in actions {
            let Action::Add(add) = action else { continue };
            let path = Path::from_url_path(&add.path).map_err(|e| Error::LogEntry {
                table: name.clone(),
                version,
                reason: format!("bad file path `{}`", add.path),
                source: Some(Box::new(e)),
            })?;
            let storage = |e| Error::Storage {
                what: "read data file",
                location: format!("{name}/{path}"),
                source: Box::new(e),
            };
            let bytes = store
                .get(&path)
                .await
                .map_err(storage)?
                .bytes()
                .await
                .map_err(storage)?;
            let parquet = |e| Error::Parquet {
                context: format!("reading {name}/{path} (version {version})"),
                source: e,
            };
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .and_then(|b| b.build())
                .map_err(parquet)?;
            for b in reader {
                batches.push(b.map_err(|e| Error::arrow(format!("reading {name}/{path}"), e))?);
            }
        }
        out.push((version, batches));
    }
    Ok(out)
}
