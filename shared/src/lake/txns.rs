//! Every application transaction (`txn` marker) of a table, read in one log replay and kept warm.
//!
//! delta-rs looks one marker up by replaying the log (the checkpoint and the commits after it), and a
//! marker that is absent (a new object: the common case) is only known absent after the whole replay.
//! Bronze checks each object of its batch against bronze and quarantine, so per-id lookups cost two
//! replays per object per step (about a hundred checkpoint GETs per step on a table holding thousands
//! of markers). Here one replay per table reads them all, and a warm process then reads only the commits
//! made since: a step costs the batch, not the table's history.
//!
//! Correctness does not rest on the index being current: a commit that sets a marker another writer
//! set concurrently fails delta-rs' conflict check, and the step re-runs on the newer version.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use delta_kernel::snapshot::Snapshot as KernelSnapshot;
use deltalake::arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType as ArrowType, Int64Type};
use deltalake::kernel::engine::arrow_data::ArrowEngineData;
use deltalake::kernel::{Action, DataType, StructField, StructType, Transaction};
use deltalake::{DeltaTable, DeltaTableError};

use super::table_name;
use crate::error::{Error, Result};
use crate::storage::Location;

/// Tables whose markers an index keeps, all together, before it forgets them (bounds memory; a forgotten
/// table costs one replay on its next step).
pub const MAX_MARKERS: usize = 2_000_000;

/// One marker: the version it recorded and when it was set (epoch ms), for retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Marker {
    version: i64,
    last_updated: Option<i64>,
}

/// A table's markers as of one version.
#[derive(Clone, Debug, Default)]
pub struct TableTxns {
    version: i64,
    markers: HashMap<String, Marker>,
    /// Markers set before this instant (epoch ms) are expired (`delta.setTransactionRetentionDuration`).
    expired_before: Option<i64>,
}

impl TableTxns {
    /// The version `app_id` last recorded, unless expired: what delta-rs' `transaction_version` answers.
    pub fn get(&self, app_id: &str) -> Option<i64> {
        let m = self.markers.get(app_id)?;
        let expired = match (self.expired_before, m.last_updated) {
            (Some(before), Some(at)) => at < before,
            _ => false,
        };
        (!expired).then_some(m.version)
    }

    /// The unexpired markers whose app id starts with `prefix`, with the rest of their id.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, i64)> + 'a {
        self.markers.keys().filter_map(move |id| {
            let rest = id.strip_prefix(prefix)?;
            Some((rest, self.get(id)?))
        })
    }

    /// The table version these markers are read at.
    pub fn version(&self) -> i64 {
        self.version
    }

    pub fn len(&self) -> usize {
        self.markers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.markers.is_empty()
    }
}

/// Warm markers by table location, shared by clones.
#[derive(Clone, Default)]
pub struct TxnIndex {
    inner: Arc<Mutex<HashMap<String, Arc<TableTxns>>>>,
}

impl TxnIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// `table`'s markers at its loaded version: the cached ones brought forward by the commits made since,
    /// or one replay of the log (first use, or when those commits were cleaned up).
    pub async fn at(&self, location: &Location, table: &DeltaTable) -> Result<Arc<TableTxns>> {
        let key = table_name(location);
        let Some(target) = table.version() else {
            return Ok(Arc::new(TableTxns::default()));
        };
        let target = target as i64;
        let expired_before = expired_before(table, location)?;
        let cached = self.inner.lock().ok().and_then(|m| m.get(&key).cloned());
        let mut txns = match cached {
            Some(c) if c.version == target => c,
            Some(mut c) if c.version < target => {
                match advance(Arc::make_mut(&mut c), table, location, target).await {
                    Ok(()) => c,
                    Err(Error::LogExpired { .. }) => {
                        Arc::new(replay(table, location, target).await?)
                    }
                    Err(e) => return Err(e),
                }
            }
            _ => Arc::new(replay(table, location, target).await?),
        };
        Arc::make_mut(&mut txns).expired_before = expired_before;
        if let Ok(mut map) = self.inner.lock() {
            let held: usize = map.values().map(|t| t.len()).sum::<usize>() + txns.len();
            if held > MAX_MARKERS {
                map.clear();
            }
            if txns.len() <= MAX_MARKERS {
                map.insert(key, txns.clone());
            }
        }
        Ok(txns)
    }
}

impl TxnIndex {
    /// Tells the index that this process committed `version` of the table at `location` with exactly
    /// `txns`: an index at the version before takes them without reading the commit back (the next
    /// step's lookup then costs no GET). An index elsewhere (another writer committed in between, or
    /// none yet) is left alone and reads the log as usual.
    pub fn record(&self, location: &Location, version: i64, txns: &[Transaction]) {
        let Ok(mut map) = self.inner.lock() else {
            return;
        };
        let Some(cached) = map.get_mut(&table_name(location)) else {
            return;
        };
        if cached.version != version - 1 {
            return;
        }
        let txns_of = Arc::make_mut(cached);
        for t in txns {
            txns_of.markers.insert(
                t.app_id.clone(),
                Marker {
                    version: t.version,
                    last_updated: t.last_updated,
                },
            );
        }
        txns_of.version = version;
    }
}

fn expired_before(table: &DeltaTable, location: &Location) -> Result<Option<i64>> {
    let snapshot = table
        .snapshot()
        .map_err(|e| Error::delta(table_name(location), "read txn", e))?;
    Ok(snapshot
        .table_config()
        .set_transaction_retention_duration
        .map(|d| chrono::Utc::now().timestamp_millis() - d.as_millis() as i64))
}

/// Applies the markers of the commits in `(txns.version, target]`, oldest first (a newer marker wins).
async fn advance(
    txns: &mut TableTxns,
    table: &DeltaTable,
    location: &Location,
    target: i64,
) -> Result<()> {
    for version in txns.version + 1..=target {
        for action in super::log::commit_actions(table, location, version).await? {
            if let Action::Txn(t) = action {
                txns.markers.insert(
                    t.app_id,
                    Marker {
                        version: t.version,
                        last_updated: t.last_updated,
                    },
                );
            }
        }
        txns.version = version;
    }
    Ok(())
}

/// Every marker of `table` at `version`, in one replay of its log (checkpoint and commits), through the
/// Delta kernel delta-rs uses: the newest `txn` of each application id wins.
async fn replay(table: &DeltaTable, location: &Location, version: i64) -> Result<TableTxns> {
    let name = table_name(location);
    let fail = |e: DeltaTableError| Error::delta(&name, "read txn", e);
    let engine = table.log_store().engine(None);
    let mut root = table.log_store().config().location().clone();
    // The kernel joins paths onto the root: without the slash the last segment would be replaced.
    if !root.path().ends_with('/') {
        root.set_path(&format!("{}/", root.path()));
    }
    let batches = tokio::task::spawn_blocking(
        move || -> std::result::Result<Vec<RecordBatch>, delta_kernel::Error> {
            let snapshot = KernelSnapshot::builder_for(root)
                .at_version(version as u64)
                .build(engine.as_ref())?;
            let schema = Arc::new(StructType::try_new([StructField::nullable(
                "txn",
                StructType::try_new([
                    StructField::not_null("appId", DataType::STRING),
                    StructField::not_null("version", DataType::LONG),
                    StructField::nullable("lastUpdated", DataType::LONG),
                ])?,
            )])?);
            let mut out = Vec::new();
            for batch in snapshot
                .log_segment()
                .read_actions(engine.as_ref(), schema)?
            {
                let data = ArrowEngineData::try_from_engine_data(batch?.actions)?;
                out.push(data.record_batch().clone());
            }
            Ok(out)
        },
    )
    .await
    .map_err(|e| fail(DeltaTableError::Generic(format!("marker replay task: {e}"))))?
    .map_err(|e| fail(e.into()))?;

    let mut markers = HashMap::new();
    // Newest first (commits in reverse, then the checkpoint): the first marker seen per id wins.
    for batch in &batches {
        visit(batch, &mut markers).map_err(|reason| Error::LogEntry {
            table: name.clone(),
            version,
            reason,
            source: None,
        })?;
    }
    Ok(TableTxns {
        version,
        markers,
        expired_before: None,
    })
}

fn visit(
    batch: &RecordBatch,
    markers: &mut HashMap<String, Marker>,
) -> std::result::Result<(), String> {
    let Some(txn) = batch.column_by_name("txn").and_then(|c| c.as_struct_opt()) else {
        return Err("log batch without a `txn` struct column".into());
    };
    let column = |field: &str, to: &ArrowType| {
        let c = txn
            .column_by_name(field)
            .ok_or_else(|| format!("`txn` without `{field}`"))?;
        cast(c, to).map_err(|e| format!("`txn.{field}`: {e}"))
    };
    let ids = column("appId", &ArrowType::Utf8)?;
    let ids: &StringArray = ids.as_string::<i32>();
    let versions = column("version", &ArrowType::Int64)?;
    let versions: &Int64Array = versions.as_primitive::<Int64Type>();
    let updated = column("lastUpdated", &ArrowType::Int64)?;
    let updated: &Int64Array = updated.as_primitive::<Int64Type>();
    for row in 0..batch.num_rows() {
        // Rows of other actions: the kernel may hand them over unfiltered.
        if txn.is_null(row) || ids.is_null(row) || versions.is_null(row) {
            continue;
        }
        markers.entry(ids.value(row).to_string()).or_insert(Marker {
            version: versions.value(row),
            last_updated: (!updated.is_null(row)).then(|| updated.value(row)),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake;
    use crate::testkit::Lab;

    /// The index answers what delta-rs' per-id lookup answers, cold and after commits made elsewhere,
    /// across a checkpoint, for present, absent and re-set ids.
    #[tokio::test]
    async fn the_index_agrees_with_delta_rs_per_id_lookups() {
        let lab = Lab::with_table(
            "t",
            "format = \"jsonl\"\ncolumns = [\"id long not null\"]\nkeys = [\"id\"]",
        );
        let loc = lab.cfg.bronze_location("t");
        let index = TxnIndex::new();
        for i in 0..4 {
            lab.ingest("t", &format!("o{i}.jsonl"), &format!("{{\"id\": {i}}}\n"))
                .await;
        }
        let mut table = lake::open(&loc).await.unwrap().unwrap();
        deltalake::checkpoints::create_checkpoint(&table, None)
            .await
            .unwrap();
        for i in 4..7 {
            lab.ingest("t", &format!("o{i}.jsonl"), &format!("{{\"id\": {i}}}\n"))
                .await;
        }
        table.update_incremental(None).await.unwrap();

        let check = |txns: Arc<TableTxns>, table: DeltaTable| async move {
            let ids = markers_in_log(&table).await;
            assert!(
                ids.len() >= 7,
                "every ingested object left a marker: {ids:?}"
            );
            for id in ids.iter().map(String::as_str).chain(["absent", ""]) {
                let expected = lake::txn_version(&table, id).await.unwrap();
                assert_eq!(txns.get(id), expected, "marker {id}");
            }
            assert_eq!(txns.version(), table.version().unwrap() as i64);
        };
        let cold = index.at(&loc, &table).await.unwrap();
        check(cold, table.clone()).await;

        // Another writer commits; the warm index reads only the new commit.
        lab.ingest("t", "o7.jsonl", "{\"id\": 7}\n").await;
        table.update_incremental(None).await.unwrap();
        let warm = index.at(&loc, &table).await.unwrap();
        assert_eq!(warm.len(), 8);
        check(warm, table.clone()).await;
    }

    /// Every `txn` app id in the table's commits, read as raw JSON by the test (the oracle).
    async fn markers_in_log(table: &DeltaTable) -> Vec<String> {
        let mut ids = Vec::new();
        for v in 0..=table.version().unwrap() {
            let Some(bytes) = table.log_store().read_commit_entry(v).await.unwrap() else {
                continue;
            };
            for line in String::from_utf8(bytes.to_vec()).unwrap().lines() {
                let json: serde_json::Value = serde_json::from_str(line).unwrap();
                if let Some(id) = json["txn"]["appId"].as_str() {
                    ids.push(id.to_string());
                }
            }
        }
        ids
    }
}
