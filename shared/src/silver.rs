//! The silver writer: the bronze commits after silver's watermark become one CDC MERGE into
//! `silver/<table>`, exactly once and out-of-order safe.
//!
//! Watermark: the last bronze version applied, committed atomically with the data as a Delta
//! application transaction (`txn`, app id `silver/<table>`). A step reads only the files the bronze
//! commits after the watermark added, normalises them ([`crate::cdc`]), keeps the latest event per key,
//! drops events older than a delete tombstone, and MERGEs: insert new keys, update or delete only when the
//! incoming event is newer than the row (sequence, then bronze version, then source row). Deletes are then
//! recorded in `silver_tombstones/<table>` (same watermark) so a late update cannot resurrect the key.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::compute::{concat_batches, filter_record_batch};
use deltalake::arrow::datatypes::{Field, Schema, SchemaRef};
use deltalake::arrow::row::{RowConverter, SortField};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::merge::MergeMetrics;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::{DeltaTable, DeltaTableError, Path, TableProperty};
use object_store::ObjectStoreExt;
use serde_json::json;
use tracing::{info, warn};

use crate::cdc::{self, Normalizer, BRONZE_VERSION, OP, OP_DELETE, SEQ};
use crate::config::{Location, PipelineConfig, TableConfig};
use crate::error::{Error, Result};
use crate::lake::{self, key_predicate, quote, RetryPolicy};
use crate::scd2;
use crate::schema::{self, SOURCE_ROW};

/// Tombstone column: when the delete was applied.
pub const DELETED_AT: &str = "_deleted_at";

/// Application id of a silver table's watermark (in the silver and the tombstone table).
pub fn watermark_app_id(table: &str) -> String {
    format!("silver/{table}")
}

/// What one silver step did.
#[derive(Debug, Clone, Default)]
pub struct SilverCommit {
    pub table: String,
    /// Bronze versions applied: (after, up to] — `None` when silver was already up to date.
    pub applied: Option<(Option<i64>, i64)>,
    /// Silver version committed by this step.
    pub version: Option<i64>,
    /// The silver table's version after this step (committed by it or before it): what gets announced.
    pub table_version: Option<i64>,
    pub changes: usize,
    pub inserted: usize,
    pub updated: usize,
    pub deleted: usize,
    pub files_rewritten: usize,
    pub rejected: usize,
    pub attempts: u32,
}

/// Applies bronze changes to silver tables.
pub struct SilverWriter {
    config: Arc<PipelineConfig>,
    retry: RetryPolicy,
    /// Where commits are announced (the gold queue), if configured.
    notifier: Option<crate::notify::Notifier>,
}

/// Changes read from bronze, normalised, one row per key.
struct Batch {
    changes: RecordBatch,
    rejected: Vec<cdc::RejectedChange>,
}

impl SilverWriter {
    pub fn new(config: Arc<PipelineConfig>) -> Self {
        SilverWriter {
            config,
            retry: RetryPolicy::default(),
            notifier: None,
        }
    }

    /// Announce commits on the `notify.gold` queue of the config, if any.
    pub async fn with_configured_notifier(mut self) -> Self {
        if let Some(q) = self.config.notify.get("gold") {
            self.notifier = Some(crate::notify::Notifier::new(q).await);
        }
        self
    }

    pub fn notifier(&self) -> Option<&crate::notify::Notifier> {
        self.notifier.as_ref()
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Brings `silver/<table>` up to the latest bronze version. Safe to call concurrently and repeatedly:
    /// a losing commit reloads and re-runs the whole step; a step with nothing new does nothing.
    pub async fn apply(&self, table: &TableConfig) -> Result<SilverCommit> {
        let what = format!("silver/{}", table.name);
        let (mut commit, attempts) = self.retry.run(&what, || self.attempt(table)).await?;
        commit.attempts = attempts;
        Ok(commit)
    }

    async fn attempt(&self, table: &TableConfig) -> Result<SilverCommit> {
        let mut out = SilverCommit {
            table: table.name.clone(),
            ..Default::default()
        };
        // Phase timings (ms) for the step's log line: where a step's time goes.
        let clock = std::time::Instant::now();
        let mut phases: Vec<(&str, u128)> = Vec::new();
        let mark = |name: &'static str, phases: &mut Vec<(&str, u128)>| {
            phases.push((name, clock.elapsed().as_millis()));
        };
        let bronze_loc = self.config.bronze_location(&table.name);
        let Some(bronze) = lake::open(&bronze_loc).await? else {
            return Ok(out);
        };
        let latest = bronze.version().map(|v| v as i64).unwrap_or(0);
        let app = watermark_app_id(&table.name);
        let silver_loc = self.config.silver_location(&table.name);
        let tomb_loc = self.config.tombstone_location(&table.name);
        let arrow = bronze_data_schema(&bronze, &bronze_loc)?;
        let normalizer = Normalizer::new(table, &arrow)?;
        // The watermark is read from the very snapshot the MERGE will run against, so a step that
        // starts after another one committed sees its watermark and does nothing.
        // Change data feed on: gold finds the groups a silver commit touched from its row changes.
        let mut silver = lake::open_or_create_with(
            &silver_loc,
            &format!("silver_{}", table.name),
            &silver_table_schema(&normalizer, table)?,
            &table.partition_by,
            &[(TableProperty::EnableChangeDataFeed, "true")],
        )
        .await?;
        // Schema evolution: columns bronze gained since silver was created are added to silver first.
        lake::add_missing_columns(
            &mut silver,
            &silver_loc,
            &silver_table_schema(&normalizer, table)?,
            HashMap::from([
                ("lakehouse.layer".to_string(), json!("silver_schema")),
                ("lakehouse.table".to_string(), json!(table.name)),
            ]),
        )
        .await?;
        let silver_wm = lake::txn_version(&silver, &app).await?;
        let mut tombs = lake::open(&tomb_loc).await?;
        mark("open", &mut phases);
        let tomb_wm = match &tombs {
            Some(t) => lake::txn_version(t, &app).await?,
            None => None,
        };

        // A crash between the silver and the tombstone commit: record the missed deletes first.
        if tomb_wm < silver_wm {
            if let Some(to) = silver_wm {
                let batch = self
                    .read_changes(&bronze, &bronze_loc, &normalizer, table, tomb_wm, to)
                    .await?;
                let deletes = only_deletes(&batch.changes)?;
                self.append_tombstones(table, &tomb_loc, tombs.take(), &normalizer, deletes, to)
                    .await?;
                tombs = lake::open(&tomb_loc).await?;
            }
        }
        out.table_version = silver.version().map(|v| v as i64);
        if silver_wm.is_some_and(|w| w >= latest) {
            return Ok(out);
        }
        let batch = self
            .read_changes(&bronze, &bronze_loc, &normalizer, table, silver_wm, latest)
            .await?;
        out.applied = Some((silver_wm, latest));
        out.rejected = batch.rejected.len();
        mark("read", &mut phases);
        self.quarantine_rejects(table, &batch.rejected, latest)
            .await?;
        // The snapshot opened above serves both the check and the append: a tombstone committed since
        // by a racing step carries the same watermark txn, so our append would conflict and re-run.
        // SCD2 keeps late events (they are history); SCD1 drops what a newer delete superseded.
        let changes = match table.scd_type {
            2 => batch.changes.clone(),
            _ => drop_superseded(&batch.changes, table, tombs.as_ref(), &tomb_loc).await?,
        };
        out.changes = changes.num_rows();

        mark("tombstone_check", &mut phases);
        let metadata = lineage(table, silver_wm, latest, &out);
        let props = CommitProperties::default()
            .with_application_transaction(lake::txn(&app, latest))
            .with_metadata(metadata.clone());
        if changes.num_rows() == 0 {
            // Nothing survives (all superseded): still advance the watermark, atomically.
            let v = lake::commit_append(
                &mut silver,
                Vec::new(),
                vec![lake::txn(&app, latest)],
                metadata,
            )
            .await
            .map_err(|e| Error::delta(silver_loc.url.to_string(), "commit", e))?;
            out.version = Some(v);
        } else {
            let before = silver.version();
            let (mut t, metrics) = match table.scd_type {
                2 => {
                    let source = history_changes(
                        &silver,
                        &silver_loc,
                        &changes,
                        tombs.as_ref(),
                        &tomb_loc,
                        &normalizer,
                        table,
                    )
                    .await?;
                    merge_history(silver, source, &normalizer, table, props).await
                }
                _ => merge_into(silver, &changes, &normalizer, table, props).await,
            }
            .map_err(|e| Error::delta(silver_loc.url.to_string(), "merge", e))?;
            if t.version() == before {
                // delta-rs does not commit a MERGE that changes no row (every change was older than
                // its row); the watermark must still advance.
                lake::commit_append(&mut t, Vec::new(), vec![lake::txn(&app, latest)], metadata)
                    .await
                    .map_err(|e| Error::delta(silver_loc.url.to_string(), "commit", e))?;
            }
            out.version = t.version().map(|v| v as i64);
            out.inserted = metrics.num_target_rows_inserted;
            out.updated = metrics.num_target_rows_updated;
            out.deleted = metrics.num_target_rows_deleted;
            out.files_rewritten = metrics.num_target_files_removed;
        }
        out.table_version = out.version;
        mark("merge", &mut phases);
        self.append_tombstones(
            table,
            &tomb_loc,
            tombs,
            &normalizer,
            only_deletes(&changes)?,
            latest,
        )
        .await?;
        mark("tombstones", &mut phases);
        info!(table = %table.name, phases_ms = ?phases, from = ?silver_wm, to = latest, version = ?out.version, changes = out.changes,
            inserted = out.inserted, updated = out.updated, deleted = out.deleted, files_rewritten = out.files_rewritten, "silver commit");
        Ok(out)
    }

    /// Normalised, deduplicated changes of bronze versions (after, to].
    async fn read_changes(
        &self,
        bronze: &DeltaTable,
        location: &Location,
        normalizer: &Normalizer,
        table: &TableConfig,
        after: Option<i64>,
        to: i64,
    ) -> Result<Batch> {
        let schema = normalizer.change_schema();
        let mut parts = Vec::new();
        let mut rejected = Vec::new();
        for (version, batches) in
            bronze_commits(bronze, location, after.map_or(0, |a| a + 1), to).await?
        {
            for b in batches {
                let set = normalizer.normalize(&b, version)?;
                for r in &set.rejected {
                    warn!(table = %table.name, key = %r.key, row = r.row, reason = %r.reason, "silver: change rejected");
                }
                rejected.extend(set.rejected);
                parts.push(set.batch);
            }
        }
        let all =
            concat_batches(&schema, &parts).map_err(|e| Error::arrow("collecting changes", e))?;
        // SCD1 keeps the latest event per key; SCD2 one event per key and sequence (its history).
        let mut group = table.keys.clone();
        if table.scd_type == 2 {
            group.push(SEQ.to_string());
        }
        Ok(Batch {
            changes: cdc::latest_per_key(&all, &group)?,
            rejected,
        })
    }

    /// Rows silver cannot use go to `quarantine/<table>` (reason prefixed `silver:`), once per bronze
    /// range: guarded by the same watermark app id in the quarantine table.
    async fn quarantine_rejects(
        &self,
        table: &TableConfig,
        rejected: &[cdc::RejectedChange],
        to: i64,
    ) -> Result<()> {
        if rejected.is_empty() {
            return Ok(());
        }
        let location = self.config.quarantine_location(&table.name);
        let app = watermark_app_id(&table.name);
        let existing = lake::open(&location).await?;
        if let Some(t) = &existing {
            if lake::txn_version(t, &app).await?.is_some_and(|v| v >= to) {
                return Ok(());
            }
        }
        let mut by_object: Vec<crate::quarantine::QuarantinedObject> = Vec::new();
        for r in rejected {
            let bad = schema::BadRow {
                row: Some(r.row as u64),
                raw: None,
                reason: format!("silver: {}", r.reason),
            };
            match by_object
                .iter_mut()
                .find(|o| o.key == r.key && o.etag == r.etag)
            {
                Some(o) => o.rows.push(bad),
                None => by_object.push(crate::quarantine::QuarantinedObject {
                    key: r.key.clone(),
                    etag: r.etag.clone(),
                    rows: vec![bad],
                }),
            }
        }
        let batch = crate::quarantine::to_batch(&by_object, chrono::Utc::now().timestamp_micros())?;
        let metadata = HashMap::from([
            ("lakehouse.layer".to_string(), json!("silver_quarantine")),
            ("lakehouse.table".to_string(), json!(table.name)),
            ("lakehouse.bronzeVersion".to_string(), json!(to)),
        ]);
        crate::quarantine::append(
            &location,
            &table.name,
            existing,
            batch,
            vec![lake::txn(&app, to)],
            metadata,
        )
        .await
    }

    async fn append_tombstones(
        &self,
        table: &TableConfig,
        location: &Location,
        existing: Option<DeltaTable>,
        normalizer: &Normalizer,
        deletes: RecordBatch,
        to: i64,
    ) -> Result<()> {
        let app = watermark_app_id(&table.name);
        let tomb_schema = tombstone_schema(normalizer);
        let mut t = match existing {
            Some(t) => t,
            None => {
                lake::open_or_create(
                    location,
                    &format!("tombstones_{}", table.name),
                    &tomb_schema,
                    &[],
                )
                .await?
            }
        };
        let metadata = HashMap::from([
            ("lakehouse.layer".to_string(), json!("silver_tombstones")),
            ("lakehouse.table".to_string(), json!(table.name)),
            ("lakehouse.bronzeVersion".to_string(), json!(to)),
        ]);
        // Tombstones are only ever appended (a blind append is far cheaper than a MERGE and cannot
        // conflict on data); readers take the newest tombstone per key, and compaction may fold them.
        let adds = if deletes.num_rows() == 0 {
            Vec::new()
        } else {
            let now = chrono::Utc::now().timestamp_micros();
            let rows = schema::as_schema(&deletes, &Arc::new(tomb_schema), |name, n| {
                (name == DELETED_AT).then(|| {
                    Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC"))
                        as ArrayRef
                })
            })?;
            lake::write_batches(&t, location, std::iter::once(rows), None).await?
        };
        lake::commit_append(&mut t, adds, vec![lake::txn(&app, to)], metadata)
            .await
            .map_err(|e| Error::delta(location.url.to_string(), "commit", e))?;
        Ok(())
    }
}

/// `s` is newer than `t`: by sequence (nulls lowest), then bronze version, then source row.
fn newer() -> String {
    let (seq, bv, row) = (quote(SEQ), quote(BRONZE_VERSION), quote(SOURCE_ROW));
    format!(
        "(s.{seq} > t.{seq}) OR (t.{seq} IS NULL AND s.{seq} IS NOT NULL) OR \
         ((s.{seq} = t.{seq} OR (s.{seq} IS NULL AND t.{seq} IS NULL)) AND \
          (s.{bv} > t.{bv} OR (s.{bv} = t.{bv} AND s.{row} > t.{row})))"
    )
}

/// Silver's schema: the row columns and the ordering columns of the event that set the row.
pub fn silver_schema(n: &Normalizer) -> Schema {
    let change = n.change_schema();
    Schema::new(
        change
            .fields()
            .iter()
            .filter(|f| f.name() != OP)
            .map(|f| f.as_ref().clone())
            .collect::<Vec<_>>(),
    )
}

/// The silver table's schema: [`silver_schema`], plus the validity columns for SCD type 2. Every column
/// is nullable at the table level: with the change data feed on, delta-rs checks NOT NULL invariants on
/// MERGE's intermediate rows (a delete of a key silver never had fails it). The step itself still
/// rejects changes that lack a required column.
pub fn silver_table_schema(n: &Normalizer, table: &TableConfig) -> Result<Schema> {
    let schema = match table.scd_type {
        2 => scd2::history_schema(&silver_schema(n))?,
        _ => silver_schema(n),
    };
    Ok(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ))
}

/// Scanned batches as one batch of `schema`.
fn conform_all(batches: &[RecordBatch], schema: &SchemaRef) -> Result<RecordBatch> {
    let parts = batches
        .iter()
        .map(|b| schema::as_schema(b, schema, |_, _| None))
        .collect::<Result<Vec<_>>>()?;
    concat_batches(schema, &parts).map_err(|e| Error::arrow("collecting rows", e))
}

fn tombstone_schema(n: &Normalizer) -> Schema {
    let change = n.change_schema();
    let mut fields: Vec<Field> = change
        .fields()
        .iter()
        .filter(|f| {
            let name = f.name().as_str();
            n.row_schema().field_with_name(name).is_err() && name != OP
                || n.keys().iter().any(|k| k == name)
        })
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(DELETED_AT, schema::timestamp_type(), false));
    Schema::new(fields)
}

fn only_deletes(changes: &RecordBatch) -> Result<RecordBatch> {
    let ops = changes
        .column_by_name(OP)
        .ok_or_else(|| Error::Task("changes without _op".into()))?;
    let ops = ops
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| Error::Task("_op is not text".into()))?;
    let mask = BooleanArray::from(ops.iter().map(|o| o == Some(OP_DELETE)).collect::<Vec<_>>());
    filter_record_batch(changes, &mask).map_err(|e| Error::arrow("selecting deletes", e))
}

/// Drops changes not newer than the tombstone of their key (a late update of a deleted row, or a
/// replayed delete). Tombstones older than the table's retention no longer count.
async fn drop_superseded(
    changes: &RecordBatch,
    table: &TableConfig,
    tombs: Option<&DeltaTable>,
    location: &Location,
) -> Result<RecordBatch> {
    let keys = &table.keys;
    let cutoff = table
        .tombstone_retention_days
        .map(|d| (chrono::Utc::now() - chrono::Duration::days(i64::from(d))).timestamp_micros());
    let Some(tombs) = tombs else {
        return Ok(changes.clone());
    };
    if changes.num_rows() == 0
        || tombs
            .snapshot()
            .is_ok_and(|s| s.log_data().num_files() == 0)
    {
        return Ok(changes.clone());
    }
    let stones = lake::scan(tombs, location).await?;
    if stones.iter().all(|b| b.num_rows() == 0) || changes.num_rows() == 0 {
        return Ok(changes.clone());
    }
    let order_cols = [SEQ, BRONZE_VERSION, SOURCE_ROW];
    let pick = |b: &RecordBatch, names: &[&str]| -> Result<Vec<ArrayRef>> {
        names
            .iter()
            .map(|n| {
                b.column_by_name(n)
                    .cloned()
                    .ok_or_else(|| Error::Task(format!("missing column `{n}`")))
            })
            .collect()
    };
    let key_names: Vec<&str> = keys.iter().map(String::as_str).collect();
    let key_conv = RowConverter::new(
        pick(changes, &key_names)?
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )
    .map_err(|e| Error::arrow("tombstone keys", e))?;
    let ord_conv = RowConverter::new(
        pick(changes, &order_cols)?
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )
    .map_err(|e| Error::arrow("tombstone order", e))?;
    let mut latest: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for b in &stones {
        let b = cast_like(b, changes.schema_ref())?;
        let k = key_conv
            .convert_columns(&pick(&b, &key_names)?)
            .map_err(|e| Error::arrow("tombstone keys", e))?;
        let o = ord_conv
            .convert_columns(&pick(&b, &order_cols)?)
            .map_err(|e| Error::arrow("tombstone order", e))?;
        let deleted_at = b
            .column_by_name(DELETED_AT)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>());
        for i in 0..b.num_rows() {
            if let (Some(cutoff), Some(at)) = (cutoff, deleted_at) {
                if at.is_valid(i) && at.value(i) < cutoff {
                    continue; // expired: a late event for this key is no longer recognised
                }
            }
            let entry = latest.entry(k.row(i).as_ref().to_vec()).or_default();
            if o.row(i).as_ref() > entry.as_slice() {
                *entry = o.row(i).as_ref().to_vec();
            }
        }
    }
    let k = key_conv
        .convert_columns(&pick(changes, &key_names)?)
        .map_err(|e| Error::arrow("change keys", e))?;
    let o = ord_conv
        .convert_columns(&pick(changes, &order_cols)?)
        .map_err(|e| Error::arrow("change order", e))?;
    let keep = BooleanArray::from(
        (0..changes.num_rows())
            .map(|i| {
                latest
                    .get(k.row(i).as_ref())
                    .is_none_or(|stone| o.row(i).as_ref() > stone.as_slice())
            })
            .collect::<Vec<_>>(),
    );
    filter_record_batch(changes, &keep).map_err(|e| Error::arrow("dropping superseded changes", e))
}

/// Casts columns of `batch` that also exist in `like` to `like`'s types (scans may return views).
fn cast_like(batch: &RecordBatch, like: &SchemaRef) -> Result<RecordBatch> {
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| match like.field_with_name(f.name()) {
            Ok(l) => f.as_ref().clone().with_data_type(l.data_type().clone()),
            Err(_) => f.as_ref().clone(),
        })
        .collect();
    let cols = batch
        .columns()
        .iter()
        .zip(&fields)
        .map(|(c, f)| deltalake::arrow::compute::cast(c, f.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::arrow("aligning tombstone types", e))?;
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
        .map_err(|e| Error::arrow("aligning tombstone types", e))
}

/// SCD1: one MERGE of the latest event per key; update or delete only when the event is newer.
async fn merge_into(
    silver: DeltaTable,
    changes: &RecordBatch,
    normalizer: &Normalizer,
    table: &TableConfig,
    props: CommitProperties,
) -> std::result::Result<(DeltaTable, MergeMetrics), DeltaTableError> {
    let is_delete = format!("s.{} = '{OP_DELETE}'", quote(OP));
    let is_upsert = format!("s.{} <> '{OP_DELETE}'", quote(OP));
    let clauses = lake::MergeClauses {
        on: key_predicate(&table.keys),
        delete_when: format!("{is_delete} AND ({})", newer()),
        update_when: format!("{is_upsert} AND ({})", newer()),
        insert_when: is_upsert,
    };
    let columns = silver_schema(normalizer);
    lake::run_merge(silver, changes.clone(), &columns, clauses, props).await
}

/// SCD2: the rows that turn the touched keys' history in silver into their recomputed history
/// ([`scd2::history`] over the versions in silver, the tombstones and the batch), tagged upsert/delete.
async fn history_changes(
    silver: &DeltaTable,
    silver_loc: &Location,
    changes: &RecordBatch,
    tombs: Option<&DeltaTable>,
    tomb_loc: &Location,
    normalizer: &Normalizer,
    table: &TableConfig,
) -> Result<RecordBatch> {
    let keys = &table.keys;
    let target = Arc::new(silver_table_schema(normalizer, table)?);
    let loose = |schema: &Schema| {
        Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ))
    };
    let events_schema = loose(&normalizer.change_schema());
    let op = |op: &'static str| {
        move |name: &str, n: usize| {
            (name == OP).then(|| Arc::new(StringArray::from(vec![op; n])) as ArrayRef)
        }
    };
    let none = |_: &str, _: usize| None;
    // Every key's other events: its versions in silver (each an upsert at `valid_from` = `_seq`) and
    // its tombstones. Keys outside the batch that an IN-list lets through get their own history back
    // unchanged, so the diff leaves them alone.
    let existing = conform_all(
        &lake::scan_keys(silver, silver_loc, changes, keys).await?,
        &target,
    )?;
    let stones = match tombs {
        Some(t) => lake::scan_keys(t, tomb_loc, changes, keys).await?,
        None => Vec::new(),
    };
    let mut parts = vec![
        schema::as_schema(changes, &events_schema, none)?,
        schema::as_schema(&existing, &events_schema, op(cdc::OP_UPSERT))?,
    ];
    for b in &stones {
        parts.push(schema::as_schema(b, &events_schema, op(OP_DELETE))?);
    }
    let events = concat_batches(&events_schema, &parts)
        .map_err(|e| Error::arrow("collecting SCD2 events", e))?;
    let wanted = scd2::history(&events, keys, &target)?;
    scd2::diff(&existing, &wanted, keys)
}

/// SCD2: applies [`history_changes`] by key and `valid_from`.
async fn merge_history(
    silver: DeltaTable,
    source: RecordBatch,
    normalizer: &Normalizer,
    table: &TableConfig,
    props: CommitProperties,
) -> std::result::Result<(DeltaTable, MergeMetrics), DeltaTableError> {
    if source.num_rows() == 0 {
        return Ok((silver, MergeMetrics::default()));
    }
    let clauses = lake::MergeClauses {
        on: format!(
            "{} AND t.{vf} = s.{vf}",
            key_predicate(&table.keys),
            vf = quote(scd2::VALID_FROM)
        ),
        delete_when: lake::action_is(lake::ACTION_DELETE),
        update_when: lake::action_is(lake::ACTION_UPSERT),
        insert_when: lake::action_is(lake::ACTION_UPSERT),
    };
    let columns = silver_table_schema(normalizer, table)
        .map_err(|e| DeltaTableError::Generic(e.to_string()))?;
    lake::run_merge(silver, source, &columns, clauses, props).await
}

fn lineage(
    table: &TableConfig,
    from: Option<i64>,
    to: i64,
    out: &SilverCommit,
) -> HashMap<String, serde_json::Value> {
    HashMap::from([
        ("lakehouse.layer".to_string(), json!("silver")),
        ("lakehouse.table".to_string(), json!(table.name)),
        (
            "lakehouse.upstreamVersions".to_string(),
            json!({"bronze": {"after": from, "to": to}}),
        ),
        ("lakehouse.changes".to_string(), json!(out.changes)),
        ("lakehouse.rejected".to_string(), json!(out.rejected)),
        (
            "lakehouse.functionVersion".to_string(),
            json!(env!("CARGO_PKG_VERSION")),
        ),
    ])
}

fn bronze_data_schema(bronze: &DeltaTable, location: &Location) -> Result<Schema> {
    let snapshot = bronze
        .snapshot()
        .map_err(|e| Error::delta(location.url.to_string(), "read schema", e))?;
    let arrow: Schema = snapshot.snapshot().arrow_schema().as_ref().clone();
    Ok(schema::data_schema(&arrow).as_ref().clone())
}

/// The rows each bronze commit in [from, to] added, per version: only the files those commits added
/// (bronze is append-only), never a scan of the whole table.
pub async fn bronze_commits(
    bronze: &DeltaTable,
    location: &Location,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, Vec<RecordBatch>)>> {
    let log = bronze.log_store();
    let store = bronze.object_store();
    let mut out = Vec::new();
    for version in from.max(0)..=to {
        let entry = log
            .read_commit_entry(version as _)
            .await
            .map_err(|e| Error::delta(location.url.to_string(), "read log", e))?
            .ok_or_else(|| {
                Error::delta(
                    location.url.to_string(),
                    "read log",
                    DeltaTableError::Generic(format!(
                        "bronze version {version} is no longer in the log (expired): silver needs a full rebuild from bronze"
                    )),
                )
            })?;
        let mut batches = Vec::new();
        for line in entry.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let action: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
                Error::delta(
                    location.url.to_string(),
                    "read log",
                    DeltaTableError::Generic(e.to_string()),
                )
            })?;
            let Some(path) = action.pointer("/add/path").and_then(|p| p.as_str()) else {
                continue;
            };
            let path = Path::from_url_path(path).map_err(|e| {
                Error::delta(
                    location.url.to_string(),
                    "read log",
                    DeltaTableError::Generic(e.to_string()),
                )
            })?;
            let bytes = store
                .get(&path)
                .await
                .map_err(|e| Error::delta(location.url.to_string(), "read file", e.into()))?
                .bytes()
                .await
                .map_err(|e| Error::delta(location.url.to_string(), "read file", e.into()))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .and_then(|b| b.build())
                .map_err(|e| Error::delta(location.url.to_string(), "read file", e.into()))?;
            for b in reader {
                batches.push(b.map_err(|e| Error::arrow("reading bronze file", e))?);
            }
        }
        out.push((version, batches));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! Silver against an independent oracle: a plain map from key to the event with the highest
    //! sequence, written here and sharing no code with the merge. Random CDC streams (inserts, updates,
    //! deletes, re-inserts) are split into random files and delivered shuffled, some twice, with silver
    //! steps at random points (some concurrent).
    use super::*;
    use crate::bronze::BronzeWriter;
    use crate::events::SourceObject;
    use deltalake::arrow::array::AsArray;
    use deltalake::arrow::datatypes::Int64Type;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use std::collections::{BTreeMap, BTreeSet};

    #[derive(Clone, Debug)]
    struct Event {
        id: i64,
        seq: i64,
        balance: i64,
        deleted: bool,
    }

    fn config(dir: &std::path::Path, scd_type: u8) -> Arc<PipelineConfig> {
        let text = format!(
            r#"
            [landing]
            uri = "file://{}/landing"
            [lake]
            uri = "file://{}/lake"
            [[table]]
            name = "accounts"
            format = "jsonl"
            keys = ["id"]
            sequence_by = "seq"
            delete_column = "deleted"
            columns = ["id long not null", "seq long not null", "balance long", "deleted boolean"]
            scd_type = {}
            "#,
            dir.display(),
            dir.display(),
            scd_type
        );
        Arc::new(PipelineConfig::from_toml(&text, "test").unwrap())
    }

    /// The oracle: latest event per key by sequence; a delete means absent.
    fn oracle(events: &[Event]) -> BTreeMap<i64, (i64, i64)> {
        let mut latest: BTreeMap<i64, &Event> = BTreeMap::new();
        for e in events {
            if latest.get(&e.id).is_none_or(|l| e.seq > l.seq) {
                latest.insert(e.id, e);
            }
        }
        latest
            .into_iter()
            .filter(|(_, e)| !e.deleted)
            .map(|(k, e)| (k, (e.seq, e.balance)))
            .collect()
    }

    async fn silver_rows(cfg: &PipelineConfig) -> BTreeMap<i64, (i64, i64)> {
        let mut out = BTreeMap::new();
        for b in lake::read_table(&cfg.silver_location("accounts"))
            .await
            .unwrap()
        {
            let id = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
            let seq = b.column_by_name("seq").unwrap().as_primitive::<Int64Type>();
            let bal = b
                .column_by_name("balance")
                .unwrap()
                .as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                assert!(
                    out.insert(id.value(i), (seq.value(i), bal.value(i)))
                        .is_none(),
                    "duplicate key {}",
                    id.value(i)
                );
            }
        }
        out
    }

    fn random_stream(rng: &mut StdRng, n: usize, keys: i64) -> Vec<Event> {
        let mut live = std::collections::BTreeSet::new();
        (0..n as i64)
            .map(|seq| {
                let id = rng.gen_range(0..keys);
                let deleted = live.contains(&id) && rng.gen_bool(0.3);
                if deleted {
                    live.remove(&id);
                } else {
                    live.insert(id);
                }
                Event {
                    id,
                    seq: seq * 10 + rng.gen_range(0..10),
                    balance: rng.gen_range(-1000..1000),
                    deleted,
                }
            })
            .collect()
    }

    /// Writes the stream as random files, delivers them shuffled (a quarter twice) through bronze, with
    /// silver steps at random points (sometimes three racing), then a final step.
    async fn deliver_shuffled(
        cfg: &Arc<PipelineConfig>,
        dir: &std::path::Path,
        events: &[Event],
        rng: &mut StdRng,
    ) {
        let landing = dir.join("landing/accounts");
        std::fs::create_dir_all(&landing).unwrap();
        let mut files = Vec::new();
        let mut rest = events;
        while !rest.is_empty() {
            let k = rng.gen_range(1..=40).min(rest.len());
            files.push(rest[..k].to_vec());
            rest = &rest[k..];
        }
        let mut deliveries: Vec<usize> = (0..files.len()).collect();
        deliveries.extend((0..files.len()).filter(|_| rng.gen_bool(0.25)));
        deliveries.shuffle(rng);
        let bronze = BronzeWriter::new(cfg.clone()).unwrap();
        let silver = SilverWriter::new(cfg.clone());
        let table = cfg.table("accounts").unwrap();
        for (n, f) in deliveries.iter().enumerate() {
            let path = landing.join(format!("part-{f:03}.jsonl"));
            if !path.exists() {
                let body: String = files[*f]
                    .iter()
                    .map(|e| {
                        let deleted = if e.deleted { ", \"deleted\": true" } else { "" };
                        format!(
                            "{{\"id\": {}, \"seq\": {}, \"balance\": {}{deleted}}}\n",
                            e.id, e.seq, e.balance
                        )
                    })
                    .collect();
                std::fs::write(&path, body).unwrap();
            }
            let obj = SourceObject {
                bucket: String::new(),
                key: path.to_str().unwrap().trim_start_matches('/').into(),
                etag: None,
            };
            bronze.ingest(table, &[obj]).await.unwrap();
            match n % 7 {
                0 => {
                    // Three silver steps racing on the same bronze state.
                    let racers =
                        futures::future::join_all((0..3).map(|_| silver.apply(table))).await;
                    for r in racers {
                        r.unwrap();
                    }
                }
                1 | 3 | 4 => {
                    silver.apply(table).await.unwrap();
                }
                _ => {}
            }
        }
        silver.apply(table).await.unwrap();
        let again = silver.apply(table).await.unwrap();
        assert!(
            again.applied.is_none(),
            "a step with nothing new does nothing: {again:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn random_cdc_streams_match_an_independent_oracle() {
        for seed in [1u64, 2, 3] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = config(dir.path(), 1);
            let mut rng = StdRng::seed_from_u64(seed);
            let events = random_stream(&mut rng, 400, 30);
            deliver_shuffled(&cfg, dir.path(), &events, &mut rng).await;
            assert_eq!(
                silver_rows(&cfg).await,
                oracle(&events),
                "seed {seed}: silver differs from the oracle"
            );
        }
    }

    /// SCD2 oracle: per key, its events in sequence order; every upsert is a version valid until the
    /// key's next event (update or delete), current when there is none.
    fn history_oracle(events: &[Event]) -> BTreeSet<(i64, i64, Option<i64>, bool, i64)> {
        let mut by_key: BTreeMap<i64, Vec<&Event>> = BTreeMap::new();
        for e in events {
            by_key.entry(e.id).or_default().push(e);
        }
        let mut out = BTreeSet::new();
        for (id, mut es) in by_key {
            es.sort_by_key(|e| e.seq);
            for (i, e) in es.iter().enumerate() {
                if !e.deleted {
                    let next = es.get(i + 1).map(|n| n.seq);
                    out.insert((id, e.seq, next, next.is_none(), e.balance));
                }
            }
        }
        out
    }

    async fn history_rows(cfg: &PipelineConfig) -> Vec<(i64, i64, Option<i64>, bool, i64)> {
        let mut out = Vec::new();
        for b in lake::read_table(&cfg.silver_location("accounts"))
            .await
            .unwrap()
        {
            let int = |n: &str| {
                b.column_by_name(n)
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .clone()
            };
            let (id, from, to, bal) = (
                int("id"),
                int("valid_from"),
                int("valid_to"),
                int("balance"),
            );
            let current = b.column_by_name("is_current").unwrap().as_boolean().clone();
            for i in 0..b.num_rows() {
                out.push((
                    id.value(i),
                    from.value(i),
                    to.is_valid(i).then(|| to.value(i)),
                    current.value(i),
                    bal.value(i),
                ));
            }
        }
        out.sort();
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scd2_history_matches_an_independent_oracle() {
        for seed in [4u64, 5] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = config(dir.path(), 2);
            let mut rng = StdRng::seed_from_u64(seed);
            let events = random_stream(&mut rng, 300, 20);
            deliver_shuffled(&cfg, dir.path(), &events, &mut rng).await;
            let rows = history_rows(&cfg).await;
            let unique: BTreeSet<_> = rows.iter().cloned().collect();
            assert_eq!(
                unique.len(),
                rows.len(),
                "seed {seed}: duplicate history rows"
            );
            assert_eq!(
                unique,
                history_oracle(&events),
                "seed {seed}: SCD2 history differs from the oracle"
            );
        }
    }

    /// Text of every column of every row, keyed by `id` (nulls as `None`), for comparing with a
    /// hand-written expectation.
    async fn rows_as_text(
        location: &Location,
        columns: &[&str],
        key: &str,
    ) -> BTreeMap<String, Vec<Option<String>>> {
        let mut out = BTreeMap::new();
        for b in lake::read_table(location).await.unwrap() {
            let text = |n: &str| {
                deltalake::arrow::compute::cast(
                    b.column_by_name(n).unwrap(),
                    &deltalake::arrow::datatypes::DataType::Utf8,
                )
                .unwrap()
            };
            let id = text(key);
            let cols: Vec<_> = columns.iter().map(|c| text(c)).collect();
            for i in 0..b.num_rows() {
                let cell = |a: &ArrayRef| {
                    let s = a.as_string::<i32>();
                    s.is_valid(i).then(|| s.value(i).to_string())
                };
                out.insert(cell(&id).unwrap(), cols.iter().map(cell).collect());
            }
        }
        out
    }

    /// A temporary landing folder and lake with the one table `toml` declares (named `name`).
    struct Lab {
        dir: tempfile::TempDir,
        cfg: Arc<PipelineConfig>,
        name: String,
    }

    impl Lab {
        fn new(name: &str, toml: &str) -> Lab {
            let dir = tempfile::tempdir().unwrap();
            let text = format!(
                "[landing]\nuri = \"file://{d}/landing\"\n[lake]\nuri = \"file://{d}/lake\"\n[[table]]\nname = \"{name}\"\n{toml}\n",
                d = dir.path().display()
            );
            let cfg = Arc::new(PipelineConfig::from_toml(&text, "test").unwrap());
            std::fs::create_dir_all(dir.path().join("landing").join(name)).unwrap();
            Lab {
                dir,
                cfg,
                name: name.to_string(),
            }
        }

        fn table(&self) -> &TableConfig {
            self.cfg.table(&self.name).unwrap()
        }

        /// The `id` column of the table's silver rows.
        async fn silver_ids(&self) -> Vec<i64> {
            lake::read_table(&self.cfg.silver_location(&self.name))
                .await
                .unwrap()
                .iter()
                .flat_map(|b| {
                    b.column_by_name("id")
                        .unwrap()
                        .as_primitive::<Int64Type>()
                        .values()
                        .to_vec()
                })
                .collect()
        }

        /// Writes a landing file of the table and ingests it into bronze.
        async fn ingest(&self, file: &str, body: &str) -> crate::bronze::BronzeCommit {
            let path = self.dir.path().join("landing").join(&self.name).join(file);
            std::fs::write(&path, body).unwrap();
            let obj = SourceObject {
                bucket: String::new(),
                key: path.to_str().unwrap().trim_start_matches('/').into(),
                etag: None,
            };
            BronzeWriter::new(self.cfg.clone())
                .unwrap()
                .ingest(self.table(), &[obj])
                .await
                .unwrap()
        }
    }

    #[tokio::test]
    async fn new_source_columns_evolve_bronze_and_silver_and_bad_casts_are_quarantined() {
        let lab = Lab::new(
            "cust",
            "format = \"jsonl\"\nkeys = [\"id\"]\nsequence_by = \"seq\"\nunknown_fields = \"evolve\"\n[[gold]]\nname = \"by_seq\"\nsql = \"SELECT seq, COUNT(*) AS n FROM cust GROUP BY seq\"\nkeys = [\"seq\"]\nsources = [\"cust\"]",
        );
        let (cfg, table) = (&lab.cfg, lab.table());
        let silver = SilverWriter::new(cfg.clone());
        let gold = crate::gold::GoldWriter::new(cfg.clone());
        let view = cfg.view("by_seq").unwrap();
        // The schema is inferred from the first file: id, seq, score long.
        lab.ingest(
            "1.jsonl",
            "{\"id\": 1, \"seq\": 1, \"score\": 10}\n{\"id\": 2, \"seq\": 1, \"score\": 20}\n",
        )
        .await;
        silver.apply(table).await.unwrap();
        assert!(gold.apply(view, false).await.unwrap().full);
        // A new column `tier` arrives; one row changes `score`'s type to text that is no long.
        let report = lab
            .ingest(
                "2.jsonl",
                "{\"id\": 1, \"seq\": 2, \"score\": 11, \"tier\": \"gold\"}\n{\"id\": 2, \"seq\": 2, \"score\": \"n/a\", \"tier\": \"silver\"}\n{\"id\": 3, \"seq\": 2, \"tier\": \"bronze\"}\n",
            )
            .await;
        assert!(report.version.is_some(), "{report:?}");
        silver.apply(table).await.unwrap();
        // Gold reads silver's change feed across the schema change.
        let step = gold.apply(view, false).await.unwrap();
        assert!(!step.full && step.groups_touched == 2, "{step:?}");
        assert_eq!(
            rows_as_text(&cfg.gold_location("by_seq"), &["n"], "seq").await,
            BTreeMap::from([
                ("1".to_string(), vec![Some("1".to_string())]),
                ("2".to_string(), vec![Some("2".to_string())]),
            ]),
            "seq 1: id 2 (its update was quarantined); seq 2: ids 1 and 3"
        );

        let some = |v: &[&str]| v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>();
        let expected: BTreeMap<String, Vec<Option<String>>> = BTreeMap::from([
            ("1".to_string(), some(&["2", "11", "gold"])),
            (
                "2".to_string(),
                some(&["1", "20"]).into_iter().chain([None]).collect(),
            ),
            (
                "3".to_string(),
                vec![Some("2".into()), None, Some("bronze".into())],
            ),
        ]);
        assert_eq!(
            rows_as_text(
                &cfg.silver_location("cust"),
                &["seq", "score", "tier"],
                "id"
            )
            .await,
            expected,
            "silver has the new column; row 2's bad score did not apply"
        );
        let bronze_rows = rows_as_text(&cfg.bronze_location("cust"), &["tier"], "id").await;
        assert_eq!(
            bronze_rows.len(),
            3,
            "ids 1..3 (the latest bronze row per id): {bronze_rows:?}"
        );
        let q = lake::read_table(&cfg.quarantine_location("cust"))
            .await
            .unwrap();
        let reasons: Vec<String> = q
            .iter()
            .flat_map(|b| {
                let r = b.column_by_name("reason").unwrap().as_string::<i32>();
                (0..b.num_rows())
                    .map(|i| r.value(i).to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(
            reasons,
            vec!["column `score`: `n/a` is not a valid long".to_string()]
        );
        // The schema change is its own commit in both tables' history.
        for loc in [cfg.bronze_location("cust"), cfg.silver_location("cust")] {
            let t = lake::open(&loc).await.unwrap().unwrap();
            use futures::TryStreamExt;
            let ops: Vec<String> = t
                .history(None)
                .try_collect::<Vec<_>>()
                .await
                .unwrap()
                .into_iter()
                .filter_map(|c| c.operation)
                .collect();
            assert!(ops.iter().any(|o| o == "ADD COLUMN"), "{loc:?}: {ops:?}");
        }
    }

    #[tokio::test]
    async fn expired_tombstones_no_longer_stop_late_events() {
        let lab = Lab::new(
            "acct",
            "format = \"jsonl\"\nkeys = [\"id\"]\nsequence_by = \"seq\"\ndelete_column = \"deleted\"\ntombstone_retention_days = 7\ncolumns = [\"id long not null\", \"seq long not null\", \"deleted boolean\"]",
        );
        let (cfg, table) = (&lab.cfg, lab.table());
        let silver = SilverWriter::new(cfg.clone());
        // Keys 1 and 2 are inserted at 10 and deleted at 20.
        lab.ingest("a.jsonl", "{\"id\":1,\"seq\":10}\n{\"id\":2,\"seq\":10}\n{\"id\":1,\"seq\":20,\"deleted\":true}\n{\"id\":2,\"seq\":20,\"deleted\":true}\n").await;
        silver.apply(table).await.unwrap();
        // Key 2's delete was applied 8 days ago (past the 7-day retention): rewrite its tombstone so.
        let loc = cfg.tombstone_location("acct");
        let stones = lake::read_table(&loc).await.unwrap();
        let all = concat_batches(&stones[0].schema(), &stones).unwrap();
        let ids = all
            .column_by_name("id")
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone();
        let old = (chrono::Utc::now() - chrono::Duration::days(8)).timestamp_micros();
        let now = chrono::Utc::now().timestamp_micros();
        let at: ArrayRef = Arc::new(
            TimestampMicrosecondArray::from(
                (0..all.num_rows())
                    .map(|i| if ids.value(i) == 2 { old } else { now })
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        );
        let aged = schema::as_schema(&all, all.schema_ref(), |_, _| None).unwrap();
        let idx = aged.schema().index_of(DELETED_AT).unwrap();
        let mut cols = aged.columns().to_vec();
        cols[idx] = at;
        let aged = RecordBatch::try_new(aged.schema(), cols).unwrap();
        let t = lake::open(&loc).await.unwrap().unwrap();
        t.write(vec![aged])
            .with_save_mode(deltalake::protocol::SaveMode::Overwrite)
            .await
            .unwrap();
        // Late inserts at 15, older than both deletes.
        lab.ingest("b.jsonl", "{\"id\":1,\"seq\":15}\n{\"id\":2,\"seq\":15}\n")
            .await;
        silver.apply(table).await.unwrap();
        let ids = lab.silver_ids().await;
        assert_eq!(
            ids,
            vec![2],
            "key 1's tombstone still stops the late insert; key 2's expired"
        );
    }

    #[tokio::test]
    async fn unusable_changes_are_quarantined_once_and_the_rest_applies() {
        let lab = Lab::new(
            "acct",
            "format = \"csv\"\ncsv_header = false\ncdc = \"dms\"\nkeys = [\"id\"]\ncolumns = [\"Op string\", \"id long not null\", \"v long\"]",
        );
        let (cfg, table) = (&lab.cfg, lab.table());
        lab.ingest("f.csv", "I,1,10\nX,2,20\nI,3,30\nD,1,10\n")
            .await;
        let silver = SilverWriter::new(cfg.clone());
        let first = silver.apply(table).await.unwrap();
        assert_eq!(first.rejected, 1);
        silver.apply(table).await.unwrap();
        let q = lake::read_table(&cfg.quarantine_location("acct"))
            .await
            .unwrap();
        let reasons: Vec<String> = q
            .iter()
            .flat_map(|b| {
                let r = b.column_by_name("reason").unwrap().as_string::<i32>();
                (0..b.num_rows())
                    .map(|i| r.value(i).to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0].starts_with("silver: unknown DMS operation `X`"),
            "{reasons:?}"
        );
        let ids = lab.silver_ids().await;
        assert_eq!(
            ids,
            vec![3],
            "1 was deleted later in the same file, 2 was unusable"
        );
    }
}
