//! The silver writer: the bronze commits after silver's watermark become one CDC MERGE into
//! `silver/<table>`, exactly once and out-of-order safe.
//!
//! Watermark: the last bronze version applied, committed atomically with the data as a Delta
//! application transaction (`txn`, app id `silver/<table>`). A step reads only the files the bronze
//! commits after the watermark added, normalises them ([`crate::cdc`]), keeps the latest event per key,
//! drops events older than a delete tombstone, and MERGEs: insert new keys, update or delete only when the
//! incoming event is newer than the row (sequence, then bronze version, then source row). Deletes are then
//! recorded in `silver_tombstones/<table>` (same watermark) so a late update cannot resurrect the key.
//!
//! [`merge`] is the MERGE itself (SCD1, and SCD2 through [`scd2`]), [`tombstones`] the delete records,
//! [`columns`] silver's columns, [`rejects`] the changes silver cannot use.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::array::TimestampMicrosecondArray;
use deltalake::arrow::compute::{concat_batches, sort_to_indices, take_record_batch};
use deltalake::arrow::datatypes::Schema;
use deltalake::{DeltaTable, TableProperty};
use serde_json::json;
use tracing::{info, warn};

use crate::cdc::{self, Normalizer, SEQ};
use crate::config::{Location, PipelineConfig, TableConfig};
use crate::error::{Error, Result};
use crate::lake::{self, RetryPolicy};
use crate::schema;

mod columns;
#[cfg(test)]
mod connector_tests;
mod merge;
#[cfg(test)]
mod options_tests;
mod rejects;
mod rewrite;
pub mod scd2;
pub mod snapshot;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod tests;
mod tombstones;
mod truncate;
mod unavailable;
#[cfg(test)]
mod widen_tests;

pub use columns::{silver_schema, silver_table_schema};
pub use tombstones::DELETED_AT;

use merge::{append_new, merge_history, merge_into};
use scd2::history_changes;
use tombstones::{drop_superseded, only_deletes};

/// Application id of a silver table's watermark (in the silver and the tombstone table).
pub fn watermark_app_id(table: &str) -> String {
    format!("silver/{table}")
}

/// What one silver step did (also the step's summary in the function's answer and the CLI's output).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SilverCommit {
    pub table: String,
    /// Bronze versions applied: (after, up to] — `None` when silver was already up to date.
    pub applied: Option<(Option<i64>, i64)>,
    /// Silver version committed by this step.
    pub version: Option<i64>,
    /// The silver table's version after this step (committed by it or before it): what gets announced.
    pub table_version: Option<i64>,
    /// Bronze rows the step read (every event of the applied range, before keeping the latest per key).
    pub read: usize,
    /// Events skipped on purpose (Debezium tombstones and schema-change records).
    pub skipped: usize,
    /// Changes merged (the latest per key, or per key and sequence for SCD2).
    pub changes: usize,
    pub inserted: usize,
    pub updated: usize,
    pub deleted: usize,
    pub files_rewritten: usize,
    /// Files the step read from silver (the MERGE's target scan) and files it skipped by statistics.
    pub files_scanned: usize,
    pub files_skipped: usize,
    pub files_added: usize,
    /// Bytes of the files the step rewrote (removed and wrote anew).
    pub bytes_rewritten: u64,
    /// `append` (every key new: no MERGE) or `merge`.
    pub path: &'static str,
    /// Bronze rows that went to quarantine (`silver:` reasons).
    pub rejected: usize,
    pub attempts: u32,
}

impl SilverCommit {
    /// Most rows of the step were rejected: a decoding or configuration problem, not bad luck (a
    /// connector's types not decoded, a wrong column type).
    pub fn mostly_rejected(&self) -> bool {
        self.rejected > 0 && self.rejected * 2 >= self.read.saturating_sub(self.skipped)
    }

    /// A table without keys has no silver: a step on it (a stray message) is acknowledged, not an error.
    fn bronze_only(table: &TableConfig) -> SilverCommit {
        tracing::info!(table = %table.name, "no keys: bronze-only table, no silver step");
        SilverCommit {
            table: table.name.clone(),
            path: "bronze_only",
            ..Default::default()
        }
    }
}

/// Applies bronze changes to silver tables.
pub struct SilverWriter {
    config: Arc<PipelineConfig>,
    retry: RetryPolicy,
    /// Bronze, silver and tombstone snapshots kept warm across steps.
    tables: lake::Tables,
    /// Application transactions kept warm: the quarantine table's markers (rejected events already
    /// quarantined) and silver's truncate horizon.
    markers: lake::TxnIndex,
    /// Tombstones kept warm for the check of each batch.
    stones: tombstones::StoneIndex,
}

/// Changes read from bronze, normalised, one row per key.
struct Batch {
    changes: RecordBatch,
    rejected: Vec<cdc::RejectedChange>,
    read: usize,
    skipped: usize,
    /// New fields to add as columns first (`unknown_fields = "evolve"`).
    discovered: Vec<deltalake::arrow::datatypes::Field>,
    /// The newest truncate among the events (its sequence), if any.
    truncate: Option<i64>,
    /// The snapshot these changes make silver equal to (`cdc = "snapshot"`).
    snapshot: Option<String>,
}

impl SilverWriter {
    pub fn new(config: Arc<PipelineConfig>) -> Self {
        SilverWriter {
            config,
            retry: RetryPolicy::default(),
            tables: lake::Tables::new(),
            markers: lake::TxnIndex::new(),
            stones: tombstones::StoneIndex::default(),
        }
    }

    pub fn config(&self) -> &Arc<PipelineConfig> {
        &self.config
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The snapshots this writer keeps warm.
    pub fn tables(&self) -> &lake::Tables {
        &self.tables
    }

    /// Brings `silver/<table>` up to the latest bronze version. Safe to call concurrently and repeatedly:
    /// a losing commit reloads and re-runs the whole step; a step with nothing new does nothing.
    pub async fn apply(&self, table: &TableConfig) -> Result<SilverCommit> {
        if !table.has_silver() {
            return Ok(SilverCommit::bronze_only(table));
        }
        let what = format!("silver/{}", table.name);
        let (mut commit, attempts) = self.retry.run(&what, || self.attempt(table, false)).await?;
        commit.attempts = attempts;
        Ok(commit)
    }

    /// Recovery when bronze commits that silver had not applied left bronze's log (cleaned by something
    /// other than maintenance, which keeps them): builds `silver/<table>` from bronze's current rows
    /// instead of its log, up to bronze's latest version. Silver and its tombstones must have been
    /// deleted first (the rebuild starts from nothing). Commit order is recovered from each row's
    /// `_ingested_at` (ingest attempts in time order; objects ingested concurrently may tie-break
    /// differently from their commit order, as their arrival order is arbitrary anyway); sequenced
    /// tables order by their sequence first, so they come out exactly as an incremental build. Holds
    /// bronze's rows in memory.
    pub async fn rebuild(&self, table: &TableConfig) -> Result<SilverCommit> {
        if !table.has_silver() {
            return Ok(SilverCommit::bronze_only(table));
        }
        for location in [
            self.config.silver_location(&table.name),
            self.config.tombstone_location(&table.name),
        ] {
            if lake::open(&location).await?.is_some() {
                return Err(Error::RebuildOverExisting {
                    table: table.name.clone(),
                    location: location.url.to_string(),
                });
            }
        }
        let what = format!("silver/{} (rebuild)", table.name);
        let (mut commit, attempts) = self.retry.run(&what, || self.attempt(table, true)).await?;
        commit.attempts = attempts;
        Ok(commit)
    }

    async fn attempt(&self, table: &TableConfig, rebuild: bool) -> Result<SilverCommit> {
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
        let Some(bronze) = self.tables.open(&bronze_loc).await? else {
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
        // The MERGE writes files of the table's target size (`delta.targetFileSize`).
        let mut silver = match self.tables.open(&silver_loc).await? {
            Some(t) => t,
            None => {
                lake::open_or_create_with(
                    &silver_loc,
                    &format!("silver_{}", table.name),
                    &silver_table_schema(&normalizer, table)?,
                    &table.partition_by,
                    lake::Markers::Keep,
                    &[
                        (TableProperty::EnableChangeDataFeed, "true"),
                        (
                            TableProperty::TargetFileSize,
                            &table.target_file_size.to_string(),
                        ),
                    ],
                )
                .await?
            }
        };
        // Columns schema evolution added to silver beyond the declared ones are read too.
        let normalizer = normalizer.with_evolved(&lake::schema_of(&silver, &silver_loc)?);
        // Schema evolution: columns bronze gained since silver was created are added to silver first.
        let wanted = silver_table_schema(&normalizer, table)?;
        lake::add_missing_columns(&mut silver, &silver_loc, &wanted, schema_commit(table)).await?;
        lake::keep_watermarks(&mut silver, &silver_loc).await?;
        // Watermarks through the warm marker index: one log replay per process, then only the commits
        // made since (a delta-rs lookup replays the log from its checkpoint on every call).
        let silver_wm = self.markers.at(&silver_loc, &silver).await?.get(&app);
        // Declared columns wider than silver's (a declaration changed): silver widens first.
        widen(&mut silver, &silver_loc, table, &wanted, &app, silver_wm).await?;
        let mut tombs = self.tables.open(&tomb_loc).await?;
        if let Some(t) = tombs.as_mut() {
            lake::keep_watermarks(t, &tomb_loc).await?;
        }
        mark("open", &mut phases);
        let tomb_wm = match &tombs {
            Some(t) => self.markers.at(&tomb_loc, t).await?.get(&app),
            None => None,
        };
        if let Some(t) = tombs.as_mut() {
            // Key columns silver widened (also when a crash came between the two rewrites).
            widen(
                t,
                &tomb_loc,
                table,
                &lake::schema_of(&silver, &silver_loc)?,
                &app,
                tomb_wm,
            )
            .await?;
        }

        // A crash between the silver and the tombstone commit: record the missed deletes first.
        if tomb_wm < silver_wm {
            if let Some(to) = silver_wm {
                let batch = self
                    .read_changes(&bronze, &bronze_loc, &normalizer, table, tomb_wm, to)
                    .await?;
                let deletes = only_deletes(&batch.changes)?;
                self.append_tombstones(table, &tomb_loc, tombs.take(), &normalizer, deletes, to)
                    .await?;
                tombs = self.tables.open(&tomb_loc).await?;
            }
        }
        out.table_version = silver.version().map(|v| v as i64);
        if silver_wm.is_some_and(|w| w >= latest) {
            return Ok(out);
        }
        let batch = if table.cdc == crate::config::CdcFormat::Snapshot {
            self.read_snapshot(
                &bronze,
                &bronze_loc,
                &silver,
                &silver_loc,
                &normalizer,
                table,
                latest,
            )
            .await?
        } else if rebuild && silver_wm.is_none() {
            self.read_all(&bronze, &bronze_loc, &normalizer, table)
                .await?
        } else {
            self.read_changes(&bronze, &bronze_loc, &normalizer, table, silver_wm, latest)
                .await?
        };
        if !batch.discovered.is_empty() {
            // Schema changes in the events (`unknown_fields = "evolve"`): new fields become columns,
            // wider types widen theirs, in commits of their own; then the step runs again with them.
            let current = lake::schema_of(&silver, &silver_loc)?;
            let (known, new): (Vec<_>, Vec<_>) = batch
                .discovered
                .iter()
                .cloned()
                .partition(|f| current.field_with_name(f.name()).is_ok());
            let added = lake::add_missing_columns(
                &mut silver,
                &silver_loc,
                &Schema::new(new),
                schema_commit(table),
            )
            .await?;
            let widened = widen(
                &mut silver,
                &silver_loc,
                table,
                &Schema::new(known),
                &app,
                silver_wm,
            )
            .await?;
            if added.is_empty() && widened.is_empty() {
                let names: Vec<&String> = batch.discovered.iter().map(|f| f.name()).collect();
                return Err(Error::invariant(format!(
                    "silver/{}: columns {names:?} were discovered but silver already has them",
                    table.name
                )));
            }
            info!(table = %table.name, added = ?added, widened = widened.len(), "silver schema evolved: schema changes in the events");
            self.tables.put(&silver_loc, &silver);
            return Box::pin(self.attempt(table, rebuild)).await;
        }
        out.applied = Some((silver_wm, latest));
        out.rejected = batch.rejected.len();
        out.read = batch.read;
        out.skipped = batch.skipped;
        if out.mostly_rejected() {
            warn!(table = %table.name, read = out.read, rejected = out.rejected, quarantine = %self.config.quarantine_location(&table.name).url,
                "silver: most rows of this batch were rejected (see the quarantine table's reasons): check the table's columns and CDC format");
        }
        mark("read", &mut phases);
        self.quarantine_rejects(table, &batch.rejected, latest)
            .await?;
        // A truncate removes every older row, and every older event from now on (only Debezium
        // tables have truncates: others skip the lookup). Read through the warm marker index: one
        // replay per process, then only the commits made since, not a second log replay per step.
        let mut horizon =
            if table.cdc == crate::config::CdcFormat::Debezium && table.apply_truncates {
                self.markers
                    .at(&silver_loc, &silver)
                    .await?
                    .get(&truncate::horizon_app_id(&table.name))
            } else {
                None
            };
        if let Some(t) = batch.truncate.filter(|t| horizon.is_none_or(|h| *t > h)) {
            silver = truncate::apply(
                silver,
                &silver_loc,
                table,
                normalizer.seq_type(),
                t,
                silver_wm,
            )
            .await?;
            self.tables.put(&silver_loc, &silver);
            horizon = Some(t);
        }
        let batch_changes = match (horizon, table.scd_type) {
            (Some(h), 2) => truncate::with_deletes_at(&batch.changes, h, &table.keys)?,
            (Some(h), _) => truncate::drop_older(&batch.changes, h)?,
            (None, _) => batch.changes.clone(),
        };
        // The snapshot opened above serves both the check and the append: a tombstone committed since
        // by a racing step carries the same watermark txn, so our append would conflict and re-run.
        // SCD2 keeps late events (they are history); SCD1 drops what a newer delete superseded.
        let changes = match table.scd_type {
            2 => batch_changes,
            _ => {
                let changes = drop_superseded(
                    &batch_changes,
                    table,
                    tombs.as_ref(),
                    &tomb_loc,
                    &self.stones,
                )
                .await?;
                // Values the source did not send, from the rows already in silver (SCD2 resolves
                // them in its history).
                unavailable::resolve(&silver, &silver_loc, changes, table, latest).await?
            }
        };
        out.changes = changes.num_rows();

        mark("tombstone_check", &mut phases);
        let (join, plan) = lake::keyed_join(&silver, &silver_loc, &table.keys, &changes)?;
        // SCD1 changes whose keys no file can hold are all new rows: append them, no MERGE.
        let append = table.scd_type != 2 && plan.as_ref().is_none_or(lake::Touched::none);
        out.path = if append { "append" } else { "merge" };
        let mut metadata = lineage(table, silver_wm, latest, &out);
        metadata.insert(
            "lakehouse.plan".to_string(),
            merge::plan_json(plan.as_ref(), out.path),
        );
        let props = lake::commit_properties()
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
            self.tables.put(&silver_loc, &silver);
        } else {
            let before = silver.clone();
            let (mut t, metrics) = if append {
                append_new(
                    silver,
                    &silver_loc,
                    &changes,
                    &normalizer,
                    table,
                    lake::txn(&app, latest),
                    metadata.clone(),
                )
                .await?
            } else if table.scd_type == 2 {
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
                merge_history(silver, &silver_loc, source, &normalizer, table, join, props).await?
            } else if let Some(touched) = plan.as_ref().filter(|_| table.partition_by.is_empty()) {
                rewrite::rewrite(
                    silver,
                    &silver_loc,
                    &changes,
                    table,
                    touched,
                    lake::txn(&app, latest),
                    metadata.clone(),
                )
                .await?
            } else {
                // Partitioned tables: delta-rs's MERGE (their files lack the partition columns, and it
                // prunes by partition itself).
                merge_into(silver, &silver_loc, &changes, &normalizer, join, props).await?
            };
            if t.version() == before.version() {
                // delta-rs does not commit a MERGE that changes no row (every change was older than
                // its row); the watermark must still advance.
                lake::commit_append(&mut t, Vec::new(), vec![lake::txn(&app, latest)], metadata)
                    .await
                    .map_err(|e| Error::delta(silver_loc.url.to_string(), "commit", e))?;
            }
            self.tables.put(&silver_loc, &t);
            out.version = t.version().map(|v| v as i64);
            out.inserted = metrics.num_target_rows_inserted;
            out.updated = metrics.num_target_rows_updated;
            out.deleted = metrics.num_target_rows_deleted;
            out.files_rewritten = metrics.num_target_files_removed;
            out.files_scanned = metrics.num_target_files_scanned;
            out.files_skipped = metrics.num_target_files_skipped_during_scan;
            out.files_added = metrics.num_target_files_added;
            out.bytes_rewritten = lake::rewritten(&before, &t).1;
        }
        out.table_version = out.version;
        if let Some(v) = out.version {
            // Every write path above commits exactly the watermark.
            self.markers
                .record(&silver_loc, v, &[lake::txn(&app, latest)]);
        }
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
        if let Some(id) = &batch.snapshot {
            // Silver now equals this snapshot: say so (a crash before this only costs a re-diff).
            if let Some(mut t) = self.tables.open(&silver_loc).await? {
                snapshot::record(&mut t, &silver_loc, &table.name, id).await?;
                self.tables.put(&silver_loc, &t);
                out.table_version = t.version().map(|v| v as i64);
            }
        }
        info!(table = %table.name, phases_ms = ?phases, from = ?silver_wm, to = latest, version = ?out.version, read = out.read, rejected = out.rejected, changes = out.changes,
            inserted = out.inserted, updated = out.updated, deleted = out.deleted, path = out.path,
            files_scanned = out.files_scanned, files_skipped = out.files_skipped, files_rewritten = out.files_rewritten,
            files_added = out.files_added, bytes_rewritten = out.bytes_rewritten, "silver commit");
        Ok(out)
    }

    /// Normalised, deduplicated changes of bronze versions (after, to].
    /// Every row of bronze's current snapshot as changes, each `_ingested_at` taken as one commit (in
    /// time order, numbered from 0): what [`SilverWriter::rebuild`] applies.
    async fn read_all(
        &self,
        bronze: &DeltaTable,
        location: &Location,
        normalizer: &Normalizer,
        table: &TableConfig,
    ) -> Result<Batch> {
        let rows = lake::scan(bronze, location).await?;
        let at = |b: &RecordBatch| -> Result<TimestampMicrosecondArray> {
            let c = schema::column(b, schema::INGESTED_AT, "rebuild")?;
            c.as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .cloned()
                .ok_or_else(|| Error::invariant("_ingested_at is not a timestamp"))
        };
        let mut times = std::collections::BTreeSet::new();
        for b in &rows {
            times.extend(at(b)?.iter().flatten());
        }
        let rank: HashMap<i64, i64> = times.into_iter().zip(0..).collect();
        let mut commits: Vec<(i64, Vec<RecordBatch>)> = Vec::new();
        for b in &rows {
            let order = sort_to_indices(&at(b)?, None, None)
                .map_err(|e| Error::arrow("rebuild order", e))?;
            let b = take_record_batch(b, &order).map_err(|e| Error::arrow("rebuild order", e))?;
            let times = at(&b)?;
            let mut start = 0;
            for i in 1..=b.num_rows() {
                if i == b.num_rows() || times.value(i) != times.value(start) {
                    let version = rank.get(&times.value(start)).copied().unwrap_or(0);
                    commits.push((version, vec![b.slice(start, i - start)]));
                    start = i;
                }
            }
        }
        self.normalize(commits, normalizer, table)
    }

    /// The differences between the newest complete snapshot and silver, when it is newer than the one
    /// silver holds; no change otherwise.
    #[allow(clippy::too_many_arguments)]
    async fn read_snapshot(
        &self,
        bronze: &DeltaTable,
        bronze_loc: &Location,
        silver: &DeltaTable,
        silver_loc: &Location,
        normalizer: &Normalizer,
        table: &TableConfig,
        latest: i64,
    ) -> Result<Batch> {
        let markers = self.markers.at(bronze_loc, bronze).await?;
        let Some((id, clean)) = snapshot::pending(&markers, silver) else {
            return self.normalize(Vec::new(), normalizer, table);
        };
        let rows = snapshot::differences(
            &self.config,
            table,
            normalizer,
            bronze,
            silver,
            silver_loc,
            &id,
            latest,
            clean,
        )
        .await?;
        if !clean {
            warn!(table = %table.name, snapshot = %id, quarantine = %self.config.quarantine_location(&table.name).url,
                "silver: some rows of this snapshot are in quarantine: its rows are applied but no key is deleted until a snapshot arrives whole");
        }
        info!(table = %table.name, snapshot = %id, differences = rows.iter().map(RecordBatch::num_rows).sum::<usize>(), "silver: applying a new snapshot");
        let mut batch = self.normalize(vec![(latest, rows)], normalizer, table)?;
        batch.snapshot = Some(id);
        Ok(batch)
    }

    async fn read_changes(
        &self,
        bronze: &DeltaTable,
        location: &Location,
        normalizer: &Normalizer,
        table: &TableConfig,
        after: Option<i64>,
        to: i64,
    ) -> Result<Batch> {
        let commits = lake::commit_files(bronze, location, after.map_or(0, |a| a + 1), to).await?;
        self.normalize(commits, normalizer, table)
    }

    /// Bronze rows per commit version → one change per key (SCD1) or per key and sequence (SCD2).
    fn normalize(
        &self,
        commits: Vec<(i64, Vec<RecordBatch>)>,
        normalizer: &Normalizer,
        table: &TableConfig,
    ) -> Result<Batch> {
        let schema = normalizer.change_schema();
        let mut parts = Vec::new();
        let mut rejected = Vec::new();
        let (mut read, mut skipped) = (0, 0);
        let mut truncate: Option<i64> = None;
        let mut discovered: Vec<deltalake::arrow::datatypes::Field> = Vec::new();
        for (version, batches) in commits {
            for b in batches {
                read += b.num_rows();
                let set = normalizer.normalize(&b, version)?;
                skipped += set.skipped;
                truncate = truncate.max(set.truncate);
                for f in set.discovered {
                    if discovered.iter().all(|d| d.name() != f.name()) {
                        discovered.push(f);
                    }
                }
                for r in &set.rejected {
                    warn!(table = %table.name, key = %r.key, row = r.row, reason = %r.reason, "silver: change rejected");
                }
                rejected.extend(set.rejected);
                parts.push(set.batch);
            }
        }
        let all =
            concat_batches(&schema, &parts).map_err(|e| Error::arrow("collecting changes", e))?;
        // Values an event did not send come from the key's newest earlier event that did.
        let all = cdc::unavailable::fill(&all, &table.keys)?;
        // SCD1 keeps the latest event per key; SCD2 one event per key and sequence (its history).
        let mut group = table.keys.clone();
        if table.scd_type == 2 {
            group.push(SEQ.to_string());
        }
        Ok(Batch {
            changes: cdc::latest_per_key(&all, &group)?,
            rejected,
            read,
            skipped,
            discovered,
            truncate,
            snapshot: None,
        })
    }
}

/// The commitInfo of a silver (or tombstone) schema change.
fn schema_commit(table: &TableConfig) -> HashMap<String, serde_json::Value> {
    HashMap::from([
        ("lakehouse.layer".to_string(), json!("silver_schema")),
        ("lakehouse.table".to_string(), json!(table.name)),
    ])
}

/// Widens the columns of a silver or tombstone table that `wanted` types wider
/// ([`lake::widen_columns`]), re-stamping the table's watermark so a racing step conflicts.
async fn widen(
    t: &mut DeltaTable,
    location: &Location,
    table: &TableConfig,
    wanted: &Schema,
    app: &str,
    watermark: Option<i64>,
) -> Result<Vec<lake::Widened>> {
    let txns = watermark.map(|w| lake::txn(app, w)).into_iter().collect();
    lake::widen_columns(t, location, wanted, txns, schema_commit(table)).await
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
    let arrow = lake::schema_of(bronze, location)?;
    Ok(schema::data_schema(&arrow).as_ref().clone())
}
