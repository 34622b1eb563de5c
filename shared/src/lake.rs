//! Delta tables in the lake: open, create (safe against a concurrent creator), append-commit with
//! application transactions, and the reload-and-re-run loop for commit conflicts.

use std::collections::HashMap;
use std::time::Duration;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::Schema;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, Add, StructType, Transaction};
use deltalake::operations::merge::MergeMetrics;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError, TableProperty};
use rand::Rng;

use crate::config::Location;
use crate::error::{Error, Result};

/// How long application-transaction markers (idempotency state) are kept. Longer than SQS's maximum
/// message retention (14 days), so any redelivery still finds its marker.
pub const TXN_RETENTION: &str = "interval 30 days";

/// Bounded, jittered retry for steps that lose a commit race.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// Sleep before attempt `attempt` (1-based; attempt 1 does not sleep): full jitter on an exponential cap.
    pub async fn backoff(&self, attempt: u32) {
        if attempt <= 1 {
            return;
        }
        let cap = self
            .base_delay
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(self.max_delay);
        let ms = rand::thread_rng().gen_range(0..=cap.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

impl RetryPolicy {
    /// Runs `step` until it succeeds, re-running the whole step (after a jittered backoff) when it lost a
    /// commit race; other errors return at once. Returns the value and the attempts used. `what` names
    /// the table in logs and in the give-up error.
    pub async fn run<T, F, Fut>(&self, what: &str, mut step: F) -> Result<(T, u32)>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut last = String::new();
        for attempt in 1..=self.max_attempts {
            self.backoff(attempt).await;
            match step().await {
                Ok(v) => return Ok((v, attempt)),
                Err(Error::Delta { source, .. }) if is_conflict(&source) => {
                    tracing::warn!(table = what, attempt, error = %source, "lost a commit race; reloading and re-running");
                    last = source.to_string();
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::ConflictRetriesExhausted {
            table: what.to_string(),
            attempts: self.max_attempts,
            last,
        })
    }
}

/// True when the error means another writer committed first: reload and re-run the step.
pub fn is_conflict(e: &DeltaTableError) -> bool {
    match e {
        DeltaTableError::VersionAlreadyExists(_) => true,
        DeltaTableError::Transaction { source } => {
            matches!(
                source,
                TransactionError::CommitConflict(_)
                    | TransactionError::MaxCommitAttempts(_)
                    | TransactionError::VersionAlreadyExists(_)
            )
        }
        // Two creators racing on version 0.
        DeltaTableError::Generic(msg) => msg.contains("already exists"),
        _ => false,
    }
}

fn table_name(location: &Location) -> String {
    location.url.to_string()
}

/// Opens the table at `location`; `None` when no table exists there yet.
pub async fn open(location: &Location) -> Result<Option<DeltaTable>> {
    if location.url.scheme() == "file" {
        let path = location.url.path();
        std::fs::create_dir_all(path).map_err(|e| Error::Io {
            path: path.into(),
            source: e,
        })?;
    }
    let table = DeltaTable::try_from_url_with_storage_options(
        location.url.clone(),
        location.storage_options.clone(),
    )
    .await
    .map_err(|e| Error::delta(table_name(location), "open", e))?;
    Ok(table.version().is_some().then_some(table))
}

/// Opens the table, creating it with `schema` when absent. If another writer creates it first, theirs wins
/// and is returned (its schema is the table's schema from then on).
pub async fn open_or_create(
    location: &Location,
    name: &str,
    schema: &Schema,
    partition_by: &[String],
) -> Result<DeltaTable> {
    open_or_create_with(location, name, schema, partition_by, &[]).await
}

/// [`open_or_create`] with extra table properties set at creation.
pub async fn open_or_create_with(
    location: &Location,
    name: &str,
    schema: &Schema,
    partition_by: &[String],
    properties: &[(TableProperty, &str)],
) -> Result<DeltaTable> {
    if let Some(t) = open(location).await? {
        return Ok(t);
    }
    let fields = StructType::try_from_arrow(schema)
        .map_err(|e| Error::delta(table_name(location), "create", e.into()))?;
    let uninit = DeltaTable::try_from_url_with_storage_options(
        location.url.clone(),
        location.storage_options.clone(),
    )
    .await
    .map_err(|e| Error::delta(table_name(location), "create", e))?;
    let created = uninit
        .create()
        .with_configuration(properties.iter().map(|(p, v)| (p.as_ref(), Some(*v))))
        .with_table_name(name)
        .with_columns(fields.fields().cloned())
        .with_partition_columns(partition_by.to_vec())
        .with_configuration_property(
            TableProperty::SetTransactionRetentionDuration,
            Some(TXN_RETENTION),
        )
        .with_save_mode(SaveMode::Ignore)
        // Version 0 or nothing: a retried CREATE would land as version 1, 2... with a new table id,
        // rewriting the metadata of a table that concurrent creators already write to.
        .with_commit_properties(CommitProperties::default().with_max_retries(0))
        .await;
    match created {
        Ok(t) if t.version().is_some() => Ok(t),
        Ok(_) => open(location).await?.ok_or_else(|| {
            Error::delta(
                table_name(location),
                "create",
                DeltaTableError::Generic("table vanished after create".into()),
            )
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
        .with_commit_properties(CommitProperties::default().with_metadata(metadata))
        .await
        .map_err(fail)?;
    *table = evolved;
    tracing::info!(table = %location.url, columns = ?names, version = ?table.version(), "schema evolved: columns added");
    Ok(names)
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

/// An application transaction stamped now (so `delta.setTransactionRetentionDuration` can expire it).
pub fn txn(app_id: impl ToString, version: i64) -> Transaction {
    Transaction::new_with_last_update(app_id, version, Some(chrono::Utc::now().timestamp_millis()))
}

/// Commits `adds` as one blind append carrying `txns` and commitInfo `metadata`. A concurrent commit that
/// set one of the same `txns` makes this fail with a conflict (see [`is_conflict`]).
pub async fn commit_append(
    table: &mut DeltaTable,
    adds: Vec<Add>,
    txns: Vec<Transaction>,
    metadata: HashMap<String, serde_json::Value>,
) -> std::result::Result<i64, DeltaTableError> {
    let snapshot = table.snapshot()?;
    let partition_cols: Vec<String> = snapshot.metadata().partition_columns().to_vec();
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: (!partition_cols.is_empty()).then_some(partition_cols),
        predicate: None,
    };
    let props = CommitProperties::default()
        .with_application_transactions(txns)
        .with_metadata(metadata);
    let finalized = CommitBuilder::from(props)
        .with_actions(adds.into_iter().map(Action::Add).collect())
        .build(Some(snapshot), table.log_store(), operation)
        .await?;
    let version = finalized.version();
    table.update_state().await?;
    Ok(version as i64)
}

/// All rows of the table at `location` (current version). For tests, the CLI and the demo: small tables.
pub async fn read_table(location: &Location) -> Result<Vec<deltalake::arrow::array::RecordBatch>> {
    match open(location).await? {
        Some(table) => scan(&table, location).await,
        None => Ok(Vec::new()),
    }
}

/// All rows of an opened table (at its loaded version), strings as plain `Utf8`.
pub async fn scan(
    table: &DeltaTable,
    location: &Location,
) -> Result<Vec<deltalake::arrow::array::RecordBatch>> {
    let (_, stream) = table
        .scan_table()
        .await
        .map_err(|e| Error::delta(table_name(location), "scan", e))?;
    use futures::TryStreamExt;
    let batches: Vec<deltalake::arrow::array::RecordBatch> =
        stream.try_collect().await.map_err(|e| {
            Error::delta(
                table_name(location),
                "scan",
                DeltaTableError::Generic(e.to_string()),
            )
        })?;
    batches.iter().map(plain_strings).collect()
}

/// The rows of an opened table whose `keys` take one of the value combinations in `wanted` (a batch
/// holding at least the key columns). Each key column is pushed down as an `IN` list, so file statistics
/// prune what cannot match; the exact combination is checked by the caller when there are several keys.
pub async fn scan_keys(
    table: &DeltaTable,
    location: &Location,
    wanted: &RecordBatch,
    keys: &[String],
) -> Result<Vec<RecordBatch>> {
    use deltalake::datafusion::prelude::{ident, lit, SessionContext};
    use deltalake::datafusion::scalar::ScalarValue;
    let fail = |e: DeltaTableError| Error::delta(table_name(location), "scan keys", e);
    let ctx = SessionContext::new();
    table
        .update_datafusion_session(&ctx.state())
        .map_err(fail)?;
    let provider = table.table_provider().await.map_err(|e| fail(e.into()))?;
    let mut df = ctx.read_table(provider).map_err(|e| fail(e.into()))?;
    for k in keys {
        let values = wanted
            .column_by_name(k)
            .ok_or_else(|| Error::Task(format!("scan keys: no key column `{k}`")))?;
        let mut list = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for i in 0..values.len() {
            let v = ScalarValue::try_from_array(values, i).map_err(|e| fail(e.into()))?;
            if seen.insert(v.clone()) {
                list.push(lit(v));
            }
        }
        df = df
            .filter(ident(k).in_list(list, false))
            .map_err(|e| fail(e.into()))?;
    }
    let batches = df.collect().await.map_err(|e| fail(e.into()))?;
    batches.iter().map(plain_strings).collect()
}

/// The scan may return string views or dictionaries; callers get plain `Utf8` columns.
pub(crate) fn plain_strings(
    batch: &deltalake::arrow::array::RecordBatch,
) -> Result<deltalake::arrow::array::RecordBatch> {
    use deltalake::arrow::datatypes::{DataType, Field};
    let needs = |dt: &DataType| {
        matches!(
            dt,
            DataType::Utf8View | DataType::LargeUtf8 | DataType::Dictionary(_, _)
        )
    };
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| {
            if needs(f.data_type()) {
                f.as_ref().clone().with_data_type(DataType::Utf8)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let columns = batch
        .columns()
        .iter()
        .map(|c| {
            if needs(c.data_type()) {
                deltalake::arrow::compute::cast(c, &DataType::Utf8)
            } else {
                Ok(c.clone())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::arrow("normalising scanned strings", e))?;
    deltalake::arrow::array::RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::arrow("normalising scanned strings", e))
}

/// Current version of the table at `location`, if it exists.
pub async fn version(location: &Location) -> Result<Option<i64>> {
    Ok(open(location)
        .await?
        .and_then(|t| t.version())
        .map(|v| v as i64))
}

/// A parquet writer for new files of `table`, rolling over at `target_file_size` bytes.
pub fn new_writer(
    table: &DeltaTable,
    location: &Location,
    target_file_size: Option<u64>,
) -> Result<RecordBatchWriter> {
    let writer = RecordBatchWriter::for_table(table)
        .map_err(|e| Error::delta(location.url.to_string(), "write", e))?;
    Ok(match target_file_size {
        Some(size) => writer.with_target_file_size(size),
        None => writer,
    })
}

/// Writes `batches` as new files of `table` (not committed).
pub async fn write_batches(
    table: &DeltaTable,
    location: &Location,
    batches: impl IntoIterator<Item = RecordBatch>,
    target_file_size: Option<u64>,
) -> Result<Vec<Add>> {
    let mut writer = new_writer(table, location, target_file_size)?;
    for b in batches {
        writer
            .write(b)
            .await
            .map_err(|e| Error::delta(location.url.to_string(), "write", e))?;
    }
    writer
        .flush()
        .await
        .map_err(|e| Error::delta(location.url.to_string(), "write", e))
}

/// `name` as a quoted SQL identifier.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `t.k = s.k AND ...` over `keys`.
pub fn key_predicate(keys: &[String]) -> String {
    keys.iter()
        .map(|k| format!("t.{q} = s.{q}", q = quote(k)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The conditions of one MERGE (SQL over source `s` and target `t`).
pub struct MergeClauses {
    pub on: String,
    pub delete_when: String,
    pub update_when: String,
    pub insert_when: String,
}

/// Runs one MERGE of `source` into `silver` (any table), setting every column of `columns` on update and insert.
pub async fn run_merge(
    silver: DeltaTable,
    source: RecordBatch,
    columns: &Schema,
    clauses: MergeClauses,
    props: CommitProperties,
) -> std::result::Result<(DeltaTable, MergeMetrics), DeltaTableError> {
    let ctx = SessionContext::new();
    let df = ctx.read_batch(source)?;
    let cols: Vec<String> = columns.fields().iter().map(|f| quote(f.name())).collect();
    let MergeClauses {
        on,
        delete_when,
        update_when,
        insert_when,
    } = clauses;
    silver
        .merge(df, on)
        .with_source_alias("s")
        .with_target_alias("t")
        .with_commit_properties(props)
        .when_matched_delete(|d| d.predicate(delete_when))?
        .when_matched_update(|u| {
            cols.iter().fold(u.predicate(update_when), |u, c| {
                u.update(c, format!("s.{c}"))
            })
        })?
        .when_not_matched_insert(|i| {
            cols.iter()
                .fold(i.predicate(insert_when), |i, c| i.set(c, format!("s.{c}")))
        })?
        .await
}

/// Column of a MERGE source saying what to do with the matching target row (SCD2 history, gold).
pub const ACTION: &str = "_lakehouse_action";
pub const ACTION_UPSERT: &str = "U";
pub const ACTION_DELETE: &str = "D";

/// `s._lakehouse_action = '<action>'`.
pub fn action_is(action: &str) -> String {
    format!("s.{} = '{action}'", quote(ACTION))
}

/// `batch` with an [`ACTION`] column set to `action` (every other column made nullable, so deletes can
/// carry only their keys).
pub fn tag(batch: &RecordBatch, action: &str) -> Result<RecordBatch> {
    use deltalake::arrow::array::StringArray;
    use deltalake::arrow::datatypes::{DataType, Field};
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    fields.push(Field::new(ACTION, DataType::Utf8, false));
    let mut cols = batch.columns().to_vec();
    cols.push(std::sync::Arc::new(StringArray::from(vec![
        action;
        batch.num_rows()
    ])));
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), cols)
        .map_err(|e| Error::arrow("tagging MERGE source rows", e))
}

/// The row changes of versions `from..=to` of a table with the change data feed on: inserts, both
/// images of updates and deletes, without the feed's own columns.
pub async fn changes(
    table: &DeltaTable,
    location: &Location,
    from: i64,
    to: i64,
) -> Result<Vec<RecordBatch>> {
    let fail = |e: DeltaTableError| Error::delta(table_name(location), "read change feed", e);
    let ctx = SessionContext::new();
    table
        .update_datafusion_session(&ctx.state())
        .map_err(fail)?;
    let plan = table
        .clone()
        .scan_cdf()
        .with_starting_version(from as _)
        .with_ending_version(to as _)
        .build(&ctx.state(), None)
        .await
        .map_err(fail)?;
    let batches = deltalake::datafusion::physical_plan::collect(plan, ctx.task_ctx())
        .await
        .map_err(|e| fail(e.into()))?;
    // One schema for all rows (the table's current one, plain strings, nullable), even when the range
    // spans a schema change: rows written before an added column read it as null.
    let current = table.snapshot().map_err(fail)?.snapshot().arrow_schema();
    let target = std::sync::Arc::new(Schema::new(
        current
            .fields()
            .iter()
            .map(|f| {
                let dt = match f.data_type() {
                    deltalake::arrow::datatypes::DataType::Utf8View
                    | deltalake::arrow::datatypes::DataType::LargeUtf8 => {
                        deltalake::arrow::datatypes::DataType::Utf8
                    }
                    other => other.clone(),
                };
                f.as_ref().clone().with_data_type(dt).with_nullable(true)
            })
            .collect::<Vec<_>>(),
    ));
    batches
        .iter()
        .map(|b| {
            let keep: Vec<usize> = b
                .schema()
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| {
                    !matches!(
                        f.name().as_str(),
                        "_change_type" | "_commit_version" | "_commit_timestamp"
                    )
                })
                .map(|(i, _)| i)
                .collect();
            let b = b
                .project(&keep)
                .map_err(|e| Error::arrow("change feed columns", e))?;
            crate::schema::as_schema(&plain_strings(&b)?, &target, |_, _| None)
        })
        .collect()
}
