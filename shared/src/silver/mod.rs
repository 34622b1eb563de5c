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
use deltalake::DeltaTable;
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
mod step;
#[cfg(test)]
mod tests;
mod tombstones;
mod truncate;
mod unavailable;
#[cfg(test)]
mod widen_tests;

pub use columns::{silver_schema, silver_table_schema};
pub use step::{owed_app_id, Owed};
pub use tombstones::DELETED_AT;

use step::{Step, Write};
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
        let Some(mut step) = self.open_step(table).await? else {
            return Ok(out);
        };
        mark("open", &mut phases);
        // A crash between the silver and the tombstone commit: record the missed deletes first.
        if let Some((after, to)) = step.owed.missing(step.tomb_wm) {
            let batch = self.read_changes(&step, after, to).await?;
            self.append_tombstones(&mut step, only_deletes(&batch.changes)?, to)
                .await?;
            // The table as this append left it (no reload).
            step.tombs = self.tables.peek(&step.tomb_loc);
        }
        out.table_version = step.silver.version().map(|v| v as i64);
        if step.up_to_date() {
            return Ok(out);
        }
        let batch = if table.cdc == crate::config::CdcFormat::Snapshot {
            self.read_snapshot(&step).await?
        } else if rebuild && step.silver_wm.is_none() {
            self.read_all(&step).await?
        } else {
            self.read_changes(&step, step.silver_wm, step.latest)
                .await?
        };
        if !batch.discovered.is_empty() {
            // Schema changes in the events (`unknown_fields = "evolve"`): new fields become columns,
            // wider types widen theirs, in commits of their own; then the step runs again with them.
            self.evolve(&mut step, &batch.discovered).await?;
            return Box::pin(self.attempt(table, rebuild)).await;
        }
        out.applied = Some((step.silver_wm, step.latest));
        out.rejected = batch.rejected.len();
        out.read = batch.read;
        out.skipped = batch.skipped;
        if out.mostly_rejected() {
            warn!(table = %table.name, read = out.read, rejected = out.rejected, quarantine = %self.config.quarantine_location(&table.name).url,
                "silver: most rows of this batch were rejected (see the quarantine table's reasons): check the table's columns and CDC format");
        }
        mark("read", &mut phases);
        self.quarantine_rejects(table, &batch.rejected, step.latest)
            .await?;
        let changes = self.applicable(&mut step, &batch).await?;
        out.changes = changes.num_rows();
        mark("tombstone_check", &mut phases);

        let (join, plan) = lake::keyed_join(&step.silver, &step.silver_loc, &table.keys, &changes)?;
        // SCD1 changes whose keys no file can hold are all new rows: append them, no MERGE.
        let append = table.scd_type != 2 && plan.as_ref().is_none_or(lake::Touched::none);
        out.path = if append { "append" } else { "merge" };
        let mut metadata = lineage(table, step.silver_wm, step.latest, &out);
        metadata.insert(
            "lakehouse.plan".to_string(),
            merge::plan_json(plan.as_ref(), out.path),
        );
        let how = Write::choose(table, &changes, join, plan.as_ref());
        let deletes = only_deletes(&changes)?;
        let txns = step.txns(deletes.num_rows() > 0);
        self.write(&mut step, how, &changes, txns, metadata, &mut out)
            .await?;
        out.table_version = out.version;
        mark("merge", &mut phases);
        if deletes.num_rows() > 0 {
            // A step without deletes owes the tombstone table nothing: no commit there (silver's
            // commit says how far tombstones are due).
            let latest = step.latest;
            self.append_tombstones(&mut step, deletes, latest).await?;
        }
        mark("tombstones", &mut phases);
        if let Some(id) = &batch.snapshot {
            // Silver now equals this snapshot: say so (a crash before this only costs a re-diff).
            if let Some(mut t) = self.tables.open(&step.silver_loc).await? {
                snapshot::record(&mut t, &step.silver_loc, &table.name, id).await?;
                self.tables.put(&step.silver_loc, &t);
                out.table_version = t.version().map(|v| v as i64);
            }
        }
        info!(table = %table.name, phases_ms = ?phases, from = ?step.silver_wm, to = step.latest, version = ?out.version, read = out.read, rejected = out.rejected, changes = out.changes,
            inserted = out.inserted, updated = out.updated, deleted = out.deleted, path = out.path,
            files_scanned = out.files_scanned, files_skipped = out.files_skipped, files_rewritten = out.files_rewritten,
            files_added = out.files_added, bytes_rewritten = out.bytes_rewritten, "silver commit");
        Ok(out)
    }

    /// Fields the events carry that silver lacks become columns, wider types widen silver's, each in
    /// a commit of its own.
    async fn evolve(
        &self,
        step: &mut Step<'_>,
        discovered: &[deltalake::arrow::datatypes::Field],
    ) -> Result<()> {
        let current = lake::schema_of(&step.silver, &step.silver_loc)?;
        let (known, new): (Vec<_>, Vec<_>) = discovered
            .iter()
            .cloned()
            .partition(|f| current.field_with_name(f.name()).is_ok());
        let added = lake::add_missing_columns(
            &mut step.silver,
            &step.silver_loc,
            &Schema::new(new),
            schema_commit(step.table),
        )
        .await?;
        let widened = step.widen_silver(&Schema::new(known)).await?;
        if added.is_empty() && widened.is_empty() {
            let names: Vec<&String> = discovered.iter().map(|f| f.name()).collect();
            return Err(Error::invariant(format!(
                "silver/{}: columns {names:?} were discovered but silver already has them",
                step.table.name
            )));
        }
        info!(table = %step.table.name, added = ?added, widened = widened.len(), "silver schema evolved: schema changes in the events");
        self.tables.put(&step.silver_loc, &step.silver);
        Ok(())
    }

    /// The batch's changes that still apply: a truncate's horizon first (only Debezium tables have
    /// truncates), then for SCD1 the changes a newer delete superseded dropped and the values the
    /// source did not send taken from silver (SCD2 keeps late events: they are history, and resolves
    /// missing values in it).
    async fn applicable(&self, step: &mut Step<'_>, batch: &Batch) -> Result<RecordBatch> {
        let table = step.table;
        // Read through the warm marker index: one replay per process, then only the commits since.
        let mut horizon =
            if table.cdc == crate::config::CdcFormat::Debezium && table.apply_truncates {
                self.markers
                    .at(&step.silver_loc, &step.silver)
                    .await?
                    .get(&truncate::horizon_app_id(&table.name))
            } else {
                None
            };
        if let Some(t) = batch.truncate.filter(|t| horizon.is_none_or(|h| *t > h)) {
            truncate::apply(step, t).await?;
            self.tables.put(&step.silver_loc, &step.silver);
            horizon = Some(t);
        }
        let changes = match (horizon, table.scd_type) {
            (Some(h), 2) => truncate::with_deletes_at(&batch.changes, h, &table.keys)?,
            (Some(h), _) => truncate::drop_older(&batch.changes, h)?,
            (None, _) => batch.changes.clone(),
        };
        if table.scd_type == 2 {
            return Ok(changes);
        }
        // The tombstone snapshot opened with the step serves both the check and the append: a
        // tombstone committed since by a racing step carries the same watermark txn, so our append
        // would conflict and re-run.
        let changes = drop_superseded(step, &changes, &self.stones).await?;
        unavailable::resolve(step, changes).await
    }

    /// Every row of bronze's current snapshot as changes, each `_ingested_at` taken as one commit (in
    /// time order, numbered from 0): what [`SilverWriter::rebuild`] applies.
    async fn read_all(&self, step: &Step<'_>) -> Result<Batch> {
        let rows = lake::scan(&step.bronze, &step.bronze_loc).await?;
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
        self.normalize(commits, &step.normalizer, step.table)
    }

    /// The differences between the newest complete snapshot and silver, when it is newer than the one
    /// silver holds; no change otherwise.
    async fn read_snapshot(&self, step: &Step<'_>) -> Result<Batch> {
        let table = step.table;
        let markers = self.markers.at(&step.bronze_loc, &step.bronze).await?;
        let Some((id, clean)) = snapshot::pending(&markers, &step.silver) else {
            return self.normalize(Vec::new(), &step.normalizer, table);
        };
        let rows = snapshot::differences(&self.config, step, &id, clean).await?;
        if !clean {
            warn!(table = %table.name, snapshot = %id, quarantine = %self.config.quarantine_location(&table.name).url,
                "silver: some rows of this snapshot are in quarantine: its rows are applied but no key is deleted until a snapshot arrives whole");
        }
        info!(table = %table.name, snapshot = %id, differences = rows.iter().map(RecordBatch::num_rows).sum::<usize>(), "silver: applying a new snapshot");
        let mut batch = self.normalize(vec![(step.latest, rows)], &step.normalizer, table)?;
        batch.snapshot = Some(id);
        Ok(batch)
    }

    /// Normalised, deduplicated changes of bronze versions (after, to].
    async fn read_changes(&self, step: &Step<'_>, after: Option<i64>, to: i64) -> Result<Batch> {
        let commits = lake::commit_files(
            &step.bronze,
            &step.bronze_loc,
            after.map_or(0, |a| a + 1),
            to,
        )
        .await?;
        self.normalize(commits, &step.normalizer, step.table)
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
