//! One attempt of a silver step as one value: the tables it reads and writes, where they are, the
//! normaliser (the wanted schema computed once) and the watermarks read from the very snapshots the
//! commit will be checked against. The phases of [`super::SilverWriter::attempt`] take it instead of
//! the tables, locations and watermark one by one; [`Write`] names the ways a step writes silver.

use std::collections::HashMap;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::Schema;
use deltalake::kernel::Transaction;
use deltalake::operations::merge::MergeMetrics;
use deltalake::{DeltaTable, TableProperty};

use super::merge::{append_new, merge_history, merge_into};
use super::scd2::history_changes;
use super::{rewrite, schema_commit, silver_table_schema, watermark_app_id, SilverWriter};
use crate::cdc::Normalizer;
use crate::config::{Location, TableConfig};
use crate::error::{Error, Result};
use crate::lake;

/// One attempt's state: built by [`SilverWriter::open_step`], read and advanced by the phases.
pub(super) struct Step<'a> {
    pub table: &'a TableConfig,
    /// The watermark's application id (in silver and in the tombstone table).
    pub app: String,
    pub bronze: DeltaTable,
    pub bronze_loc: Location,
    /// Bronze's version this attempt applies up to.
    pub latest: i64,
    pub silver: DeltaTable,
    pub silver_loc: Location,
    pub tombs: Option<DeltaTable>,
    pub tomb_loc: Location,
    /// Reads bronze rows as changes, with the columns silver has (declared and evolved).
    pub normalizer: Normalizer,
    /// The last bronze version applied to silver, and to the tombstone table.
    pub silver_wm: Option<i64>,
    pub tomb_wm: Option<i64>,
    /// What the tombstone table owes: the deletes of bronze versions (after, up to] (see [`Owed`]).
    pub owed: Owed,
    /// Columns written without a parquet dictionary (`lake::unique_columns`).
    pub unique: Vec<String>,
}

/// The deletes the tombstone table must hold: those of bronze versions `(complete, due]`. A step
/// commits tombstones only when it has deletes, so the tombstone watermark may stay behind silver's;
/// silver's commits say how far tombstones are due (`due`: the last step with deletes, -1 for none)
/// and up to where they were complete when that step ran (`complete`). A crash between the two
/// commits leaves `due` ahead of the tombstone watermark, and the next step records the missed deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owed {
    pub complete: Option<i64>,
    pub due: i64,
}

impl Owed {
    /// Read from silver's markers (`silver_wm`: its watermark among them); a table written before these
    /// markers owed up to its watermark.
    pub fn of(markers: &lake::TableTxns, table: &str, silver_wm: Option<i64>) -> Self {
        match markers.get(&owed_app_id(table, "due")) {
            Some(due) => Owed {
                complete: markers.get(&owed_app_id(table, "complete")),
                due,
            },
            None => Owed {
                complete: None,
                due: silver_wm.unwrap_or(-1),
            },
        }
    }

    /// The bronze versions whose deletes are missing from a tombstone table at `tomb_wm`: (after, to].
    pub fn missing(&self, tomb_wm: Option<i64>) -> Option<(Option<i64>, i64)> {
        (self.due > tomb_wm.unwrap_or(-1)).then(|| (self.complete.max(tomb_wm), self.due))
    }
}

/// Application id of silver's record of what its tombstones owe (`due` or `complete`).
pub fn owed_app_id(table: &str, which: &str) -> String {
    format!("silver/{table}/tombstones-{which}")
}

impl Step<'_> {
    /// The watermark this attempt commits.
    pub fn txn(&self) -> Transaction {
        lake::txn(&self.app, self.latest)
    }

    /// Everything this attempt's silver commit records: the watermark, and what the tombstones owe
    /// after it (this step's deletes, when `deletes`).
    pub fn txns(&self, deletes: bool) -> Vec<Transaction> {
        let name = &self.table.name;
        let mut txns = vec![self.txn()];
        if deletes {
            txns.push(lake::txn(owed_app_id(name, "due"), self.latest));
            // Every earlier delete is in by now (the attempt recorded missed ones first).
            txns.push(lake::txn(
                owed_app_id(name, "complete"),
                self.silver_wm.unwrap_or(-1),
            ));
        } else {
            txns.push(lake::txn(owed_app_id(name, "due"), self.owed.due));
        }
        txns
    }

    /// Silver already holds every bronze version.
    pub fn up_to_date(&self) -> bool {
        self.silver_wm.is_some_and(|w| w >= self.latest)
    }

    /// Widens silver's columns that `wanted` types wider, fenced by its watermark.
    pub async fn widen_silver(&mut self, wanted: &Schema) -> Result<Vec<lake::Widened>> {
        widen(
            &mut self.silver,
            &self.silver_loc,
            self.table,
            wanted,
            &self.app,
            self.silver_wm,
        )
        .await
    }
}

impl SilverWriter {
    /// Opens (or creates) the tables of a step on `table`, brings silver's schema to the declared and
    /// evolved columns, and reads the watermarks; `None` when there is no bronze table yet.
    pub(super) async fn open_step<'a>(&self, table: &'a TableConfig) -> Result<Option<Step<'a>>> {
        let bronze_loc = self.config.bronze_location(&table.name);
        let Some(bronze) = self.tables.open(&bronze_loc).await? else {
            return Ok(None);
        };
        let latest = bronze.version().map(|v| v as i64).unwrap_or(0);
        let app = watermark_app_id(&table.name);
        let silver_loc = self.config.silver_location(&table.name);
        let tomb_loc = self.config.tombstone_location(&table.name);
        let arrow = super::bronze_data_schema(&bronze, &bronze_loc)?;
        let normalizer = Normalizer::new(table, &arrow)?;
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
        // The watermark is read from the very snapshot the commit will be checked against, so a step
        // that starts after another one committed sees its watermark and does nothing. Through the warm
        // marker index: one log replay per process, then only the commits made since.
        let silver_markers = self.markers.at(&silver_loc, &silver).await?;
        let silver_wm = silver_markers.get(&app);
        let owed = Owed::of(&silver_markers, &table.name, silver_wm);
        let mut tombs = self.tables.open(&tomb_loc).await?;
        if let Some(t) = tombs.as_mut() {
            lake::keep_watermarks(t, &tomb_loc).await?;
        }
        let tomb_wm = match &tombs {
            Some(t) => self.markers.at(&tomb_loc, t).await?.get(&app),
            None => None,
        };
        let mut step = Step {
            table,
            app,
            bronze,
            bronze_loc,
            latest,
            silver,
            silver_loc,
            tombs,
            tomb_loc,
            normalizer,
            silver_wm,
            tomb_wm,
            owed,
            unique: lake::unique_columns(&table.keys, table.sequence_by.as_deref()),
        };
        // Declared columns wider than silver's (a declaration changed): silver widens first.
        step.widen_silver(&wanted).await?;
        if let Some(t) = step.tombs.as_mut() {
            // Key columns silver widened (also when a crash came between the two rewrites).
            widen(
                t,
                &step.tomb_loc,
                table,
                &lake::schema_of(&step.silver, &step.silver_loc)?,
                &step.app,
                step.tomb_wm,
            )
            .await?;
        }
        Ok(Some(step))
    }

    /// Writes `changes` to silver with `txns` (the watermark and what the tombstones owe: see
    /// [`Step::txns`]), in one commit, the way `how` says; the step's silver is then the table after
    /// it. What it did goes into `out`.
    pub(super) async fn write(
        &self,
        step: &mut Step<'_>,
        how: Write<'_>,
        changes: &RecordBatch,
        txns: Vec<Transaction>,
        metadata: HashMap<String, serde_json::Value>,
        out: &mut super::SilverCommit,
    ) -> Result<()> {
        let fail = |what| {
            let table = step.silver_loc.url.to_string();
            move |e| Error::delta(table, what, e)
        };
        let props = || {
            lake::commit_properties()
                .with_application_transactions(txns.clone())
                .with_metadata(metadata.clone())
        };
        let before = step.silver.clone();
        let (mut t, metrics) = match how {
            Write::Watermark => {
                let mut t = step.silver.clone();
                lake::commit_append(&mut t, Vec::new(), txns.clone(), metadata.clone())
                    .await
                    .map_err(fail("commit"))?;
                (t, MergeMetrics::default())
            }
            Write::Append => append_new(step, changes, txns.clone(), metadata.clone()).await?,
            Write::History { join } => {
                let source = history_changes(step, changes).await?;
                merge_history(step, source, join, props()).await?
            }
            Write::Rewrite(touched) => {
                rewrite::rewrite(step, changes, touched, txns.clone(), metadata.clone()).await?
            }
            Write::Merge { join } => merge_into(step, changes, join, props()).await?,
        };
        if t.version() == before.version() {
            // delta-rs does not commit a MERGE that changes no row (every change was older than its
            // row); the watermark must still advance.
            lake::commit_append(&mut t, Vec::new(), txns.clone(), metadata)
                .await
                .map_err(fail("commit"))?;
        }
        self.tables.put(&step.silver_loc, &t);
        out.version = t.version().map(|v| v as i64);
        if let Some(v) = out.version {
            // Every write path above commits exactly `txns`.
            self.markers.record(&step.silver_loc, v, &txns);
        }
        out.inserted = metrics.num_target_rows_inserted;
        out.updated = metrics.num_target_rows_updated;
        out.deleted = metrics.num_target_rows_deleted;
        out.files_rewritten = metrics.num_target_files_removed;
        out.files_scanned = metrics.num_target_files_scanned;
        out.files_skipped = metrics.num_target_files_skipped_during_scan;
        out.files_added = metrics.num_target_files_added;
        out.bytes_rewritten = lake::rewritten(&before, &t).1;
        step.silver = t;
        Ok(())
    }
}

/// How a step writes its changes to silver.
pub(super) enum Write<'a> {
    /// Nothing survives (every change superseded): only the watermark advances.
    Watermark,
    /// SCD1 changes no file can hold (every key new): appended, no MERGE.
    Append,
    /// SCD2: the touched keys' recomputed history, MERGEd by key and `valid_from`.
    History { join: String },
    /// SCD1 on an unpartitioned table: the touched files rewritten key-locally.
    Rewrite(&'a lake::Touched),
    /// SCD1 on a partitioned table: delta-rs's MERGE (its files lack the partition columns, and it
    /// prunes by partition itself).
    Merge { join: String },
}

impl<'a> Write<'a> {
    /// The way for `changes`, given the MERGE's join and the files their keys touch (`plan`).
    pub fn choose(
        table: &TableConfig,
        changes: &RecordBatch,
        join: String,
        plan: Option<&'a lake::Touched>,
    ) -> Self {
        if changes.num_rows() == 0 {
            Write::Watermark
        } else if table.scd_type == 2 {
            Write::History { join }
        } else if plan.is_none_or(lake::Touched::none) {
            Write::Append
        } else if let Some(touched) = plan.filter(|_| table.partition_by.is_empty()) {
            Write::Rewrite(touched)
        } else {
            Write::Merge { join }
        }
    }
}

/// Widens the columns of a silver or tombstone table that `wanted` types wider
/// ([`lake::widen_columns`]), re-stamping the table's watermark so a racing step conflicts.
pub(super) async fn widen(
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
