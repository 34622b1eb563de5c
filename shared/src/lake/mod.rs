//! Delta tables in the lake, the only module that talks to delta-rs: open, create (safe against a
//! concurrent creator), schema evolution, application transactions (watermarks and idempotency
//! markers); [`write`] new files and append commits, [`scan`] reads, [`merge`] MERGE building blocks,
//! [`log`] the files each commit added, [`changes`] the change data feed, [`retry`] the re-run loop
//! for lost commit races.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::datatypes::Schema;
use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{Action, MetadataExt, StructType};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, TableProperty};

use crate::error::{Error, Result};
use crate::storage::Location;

mod cache;
mod changes;
mod cluster;
mod layout;
mod listing;
mod log;
mod merge;
mod retry;
mod scan;
mod txns;
mod widen;
mod write;

pub use cache::Tables;
pub use changes::{changes, CHANGE_SIGN};
pub use cluster::{rewritten, touched, touched_paths, Touched};
pub use layout::{
    column_has_values, compaction_bins, estimated_bytes, file_spans, small_file_bins,
    sorted_by_keys, write_sorted, FileSpan, SMALL_FILE_FRACTION,
};
pub use log::{
    commit_files, commit_time, data_commits, decoded_path, files_added, last_checkpoint,
    read_data_file, retained, LogFile, Retained,
};
pub use merge::{
    action_is, key_predicate, keyed_join, quote, run_merge, tag, MergeClauses, ACTION,
    ACTION_DELETE, ACTION_UPSERT,
};
pub use retry::{is_conflict, RetryPolicy};
pub use scan::{read_table, scan, scan_keys};
pub use txns::{TableTxns, TxnIndex};
pub use widen::{widen_columns, Widened};
pub use write::{
    commit_actions, commit_append, commit_with, new_writer, txn, unique_columns, write_batches,
    write_change_file,
};

/// How long per-object markers (bronze's and quarantine's idempotency state) are kept. Longer than SQS's
/// maximum message retention (14 days), so any redelivery still finds its marker.
pub const TXN_RETENTION: &str = "interval 30 days";

/// [`TXN_RETENTION`] in days, less one day of margin: the marker horizon. Bronze does not ingest from an
/// event an object last modified before it (its marker may be gone; see `bronze`).
pub const MARKER_HORIZON_DAYS: i64 = 29;

/// What a table's application transactions are, which decides whether they may expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Markers {
    /// Per-object idempotency markers (bronze, quarantine): many, each needed only while its object
    /// can be redelivered, so they expire after [`TXN_RETENTION`].
    Expire,
    /// Progress watermarks (silver, tombstones, gold): few, and needed for as long as the table lives,
    /// however long it stays idle. Never expired.
    Keep,
}

/// Commit properties every commit of the product starts from. Log cleanup is never a side effect of a
/// commit: only maintenance cleans a log, and only below what every downstream watermark consumed.
pub fn commit_properties() -> CommitProperties {
    CommitProperties::default().with_cleanup_expired_logs(Some(false))
}

pub(crate) fn table_name(location: &Location) -> String {
    location.url.to_string()
}

/// A handle on the table at `location`, not loaded yet, whose store answers its log listings
/// without LIST once it has listed them ([`listing`]): every handle the product opens, so a
/// warm (cached) handle follows new commits by name.
fn handle(
    location: &Location,
    operation: &'static str,
    store: fn(crate::storage::StoreRef) -> listing::LogListings,
) -> Result<DeltaTable> {
    let fail = |e| Error::delta(table_name(location), operation, e);
    let builder = DeltaTableBuilder::from_url(location.url.clone())
        .map_err(fail)?
        .with_storage_options(location.storage_options.clone());
    let root = builder
        .build_storage()
        .map_err(fail)?
        .root_object_store(None);
    builder
        .with_storage_backend(Arc::new(store(root)), location.url.clone())
        .build()
        .map_err(fail)
}

/// Opens the table at `location`; `None` when no table exists there yet.
pub async fn open(location: &Location) -> Result<Option<DeltaTable>> {
    let started = std::time::Instant::now();
    // A local table that does not exist is not a folder either: opening (status, maintenance, a
    // reader) leaves nothing behind that other readers would take for a broken table.
    if location.url.scheme() == "file" && !std::path::Path::new(location.url.path()).exists() {
        return Ok(None);
    }
    let mut table = handle(location, "open", listing::LogListings::new)?;
    match table.load().await {
        Ok(()) | Err(DeltaTableError::NotATable(_)) => {}
        Err(e) => return Err(Error::delta(table_name(location), "open", e)),
    }
    // A cold open reads the log from its last checkpoint: what a cold start pays per table.
    tracing::debug!(table = %location.url, version = ?table.version(), ms = started.elapsed().as_secs_f64() * 1e3, "table opened");
    Ok(table.version().is_some().then_some(table))
}

/// Opens the table at `location` as of `version` (time travel). A version log cleanup removed is an
/// [`Error::VersionCleaned`] naming the oldest readable one; a version not reached yet an
/// [`Error::VersionAhead`].
pub async fn open_version(location: &Location, version: i64) -> Result<DeltaTable> {
    let Some(mut table) = open(location).await? else {
        return Err(Error::delta(
            table_name(location),
            "open version",
            DeltaTableError::NotATable(format!("no Delta table at {}", location.url)),
        ));
    };
    let latest = table.version().map_or(0, |v| v as i64);
    if version > latest {
        return Err(Error::VersionAhead {
            table: table_name(location),
            version,
            latest,
        });
    }
    if let Err(e) = table.load_version(version.max(0) as u64).await {
        let kept = retained(&table, location).await?;
        return Err(match kept.oldest_loadable {
            Some(oldest) if version < oldest => Error::VersionCleaned {
                table: table_name(location),
                version,
                what: "",
                oldest,
            },
            _ => Error::delta(table_name(location), "open version", e),
        });
    }
    Ok(table)
}

/// A table the caller found absent and then created (or opened, if another writer created it first)
/// must be at version 0. A later version means another writer also committed to it in between, so
/// whatever the caller decided from the table's absence (no object marker yet) may be stale: the step
/// must re-run on the table as it is, like a lost commit race. (delta-rs cannot catch this one: the
/// commit would be based on a version after the other writer's.)
pub fn fresh(table: DeltaTable, location: &Location) -> Result<DeltaTable> {
    match table.version() {
        Some(v) if v > 0 => Err(Error::Conflict {
            table: location.url.to_string(),
            operation: "create",
            source: Box::new(DeltaTableError::Generic(format!(
                "created by another writer, already at version {v}: re-run to see its markers"
            ))),
        }),
        _ => Ok(table),
    }
}

/// Opens the table, creating it with `schema` when absent. If another writer creates it first, theirs wins
/// and is returned (its schema is the table's schema from then on).
pub async fn open_or_create(
    location: &Location,
    name: &str,
    schema: &Schema,
    partition_by: &[String],
    markers: Markers,
) -> Result<DeltaTable> {
    open_or_create_with(location, name, schema, partition_by, markers, &[]).await
}

/// [`open_or_create`] with extra table properties set at creation.
pub async fn open_or_create_with(
    location: &Location,
    name: &str,
    schema: &Schema,
    partition_by: &[String],
    markers: Markers,
    properties: &[(TableProperty, &str)],
) -> Result<DeltaTable> {
    if let Some(t) = open(location).await? {
        return Ok(t);
    }
    if location.url.scheme() == "file" {
        let path = location.url.path();
        std::fs::create_dir_all(path).map_err(|e| Error::Io {
            path: path.into(),
            source: e,
        })?;
    }
    let fields = StructType::try_from_arrow(schema)
        .map_err(|e| Error::delta(table_name(location), "create", e.into()))?;
    let mut uninit = handle(location, "create", listing::LogListings::creating)?;
    match uninit.load().await {
        Ok(()) | Err(DeltaTableError::NotATable(_)) => {}
        Err(e) => return Err(Error::delta(table_name(location), "create", e)),
    }
    let mut create = uninit
        .create()
        .with_configuration(properties.iter().map(|(p, v)| (p.as_ref(), Some(*v))))
        .with_table_name(name)
        .with_columns(fields.fields().cloned())
        .with_partition_columns(partition_by.to_vec())
        // Other writers (Spark, delta-rs defaults) must not clean the log behind a lagging consumer.
        .with_configuration_property(TableProperty::EnableExpiredLogCleanup, Some("false"))
        // A checkpoint every 10 commits (Delta's own default; delta-rs' is 100): a warm snapshot's
        // update replays the commits since the last checkpoint, so a step's cost rose with them
        // between maintenance runs (measured: the soak's open phase 15 -> 60 ms over 100 commits).
        .with_configuration_property(TableProperty::CheckpointInterval, Some("10"))
        .with_save_mode(SaveMode::Ignore)
        // Version 0 or nothing: a retried CREATE would land as version 1, 2... with a new table id,
        // rewriting the metadata of a table that concurrent creators already write to.
        .with_commit_properties(commit_properties().with_max_retries(0));
    if markers == Markers::Expire {
        create = create.with_configuration_property(
            TableProperty::SetTransactionRetentionDuration,
            Some(TXN_RETENTION),
        );
    }
    let created = create.await;
    match created {
        Ok(t) if t.version().is_some() => Ok(t),
        Ok(_) => open(location).await?.ok_or_else(|| {
            Error::invariant(format!(
                "table {} vanished after create",
                table_name(location)
            ))
        }),
        Err(e) if is_conflict(&e) => open(location)
            .await?
            .ok_or_else(|| Error::delta(table_name(location), "create", e)),
        Err(e) => Err(Error::delta(table_name(location), "create", e)),
    }
}

/// Schema evolution: adds the fields of `wanted` that `table` lacks, as nullable columns, in one
/// `ADD COLUMNS` commit of their own (a racing writer that appends meanwhile conflicts and re-runs with
/// the new schema). Returns the names added; `table` is then at the new version.
pub async fn add_missing_columns(
    table: &mut DeltaTable,
    location: &Location,
    wanted: &Schema,
    metadata: HashMap<String, serde_json::Value>,
) -> Result<Vec<String>> {
    let fail = |e: DeltaTableError| Error::delta(table_name(location), "add columns", e);
    let current = table.snapshot().map_err(fail)?.snapshot().arrow_schema();
    let missing: Vec<_> = wanted
        .fields()
        .iter()
        .filter(|f| current.field_with_name(f.name()).is_err())
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let names = missing.iter().map(|f| f.name().clone()).collect();
    let fields = StructType::try_from_arrow(&Schema::new(missing)).map_err(|e| fail(e.into()))?;
    let evolved = table
        .clone()
        .add_columns()
        .with_fields(fields.fields().cloned().collect::<Vec<_>>())
        .with_commit_properties(commit_properties().with_metadata(metadata))
        .await
        .map_err(fail)?;
    *table = evolved;
    tracing::info!(table = %location.url, columns = ?names, version = ?table.version(), "schema evolved: columns added");
    Ok(names)
}

/// `table`'s columns at its loaded version.
pub fn schema_of(table: &DeltaTable, location: &Location) -> Result<Schema> {
    let snapshot = table
        .snapshot()
        .map_err(|e| Error::delta(table_name(location), "read schema", e))?;
    Ok(snapshot.snapshot().arrow_schema().as_ref().clone())
}

/// Makes `table`'s watermarks permanent: a table that carries `delta.setTransactionRetentionDuration`
/// (created by an earlier release, or set by someone) has the property removed in a metadata commit of
/// its own, before its watermark is read, so an idle month never makes a step start over. (With the
/// property gone, checkpoints keep every `txn` too.) Returns whether it committed.
pub async fn keep_watermarks(table: &mut DeltaTable, location: &Location) -> Result<bool> {
    let fail = |e: DeltaTableError| Error::delta(table_name(location), "keep watermarks", e);
    let key = TableProperty::SetTransactionRetentionDuration.as_ref();
    let metadata = table.snapshot().map_err(&fail)?.metadata().clone();
    if !metadata.configuration().contains_key(key) {
        return Ok(false);
    }
    let updated = metadata
        .remove_config_key(key)
        .map_err(|e| fail(e.into()))?;
    let operation = DeltaOperation::SetTableProperties {
        properties: HashMap::from([(key.to_string(), String::new())]),
    };
    let info = HashMap::from([(
        "lakehouse.reason".to_string(),
        serde_json::json!("watermarks never expire"),
    )]);
    match commit_actions(
        table,
        vec![Action::Metadata(updated)],
        Vec::new(),
        info,
        operation,
    )
    .await
    {
        Ok(version) => {
            tracing::info!(table = %location.url, version, "transaction retention removed: watermarks kept");
            Ok(true)
        }
        // Someone else changed the table meanwhile: reload and look again on the next open.
        Err(e) if is_conflict(&e) => {
            table.update_state().await.map_err(fail)?;
            Ok(false)
        }
        Err(e) => Err(fail(e)),
    }
}

/// Version of the application transaction `app_id` recorded in the table, if any.
pub async fn txn_version(table: &DeltaTable, app_id: &str) -> Result<Option<i64>> {
    let snapshot = table
        .snapshot()
        .map_err(|e| Error::delta(table.table_url().to_string(), "read txn", e))?;
    snapshot
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| Error::delta(table.table_url().to_string(), "read txn", e))
}

/// Current version of the table at `location`, if it exists.
pub async fn version(location: &Location) -> Result<Option<i64>> {
    Ok(open(location)
        .await?
        .and_then(|t| t.version())
        .map(|v| v as i64))
}
