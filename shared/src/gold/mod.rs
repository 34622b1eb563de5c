//! The gold writer: a view (DataFusion SQL over silver tables, one row per group) kept up to date
//! incrementally, exactly once.
//!
//! Watermarks: one application transaction per source, `gold/<view>/<silver table>` = the silver
//! version applied, all in the same commit as the data. A step reads the silver changes after each
//! watermark from the change data feed (inserts, both images of updates, deletes), finds the groups
//! they touch by running the view's SQL with that source replaced by its changed rows, recomputes only
//! those groups over the full silver tables (at the versions the watermarks will name), and MERGEs
//! them: new groups inserted, changed groups updated, groups that no longer have rows deleted. Views
//! whose aggregates follow their changes skip the recompute ([`deltas`]): the signed change rows are
//! aggregated and added to the stored groups.
//!
//! What this asks of a view: each output row is a group named by `keys`, and a group's membership is
//! decided by its input rows alone (GROUP BY over joins and filters; not window functions or
//! `HAVING` on aggregates). Rows whose key is null are not kept (use `COALESCE` to keep them).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, RecordBatch};
use deltalake::arrow::compute::{cast, concat_batches};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::datafusion::common::JoinType;
use deltalake::datafusion::dataframe::DataFrame;
use deltalake::datafusion::prelude::{ident, SessionContext};
use deltalake::protocol::SaveMode;
use deltalake::DeltaTable;
use serde_json::json;
use tracing::{info, warn};

use crate::config::{GoldView, Location, PipelineConfig};
use crate::error::{Error, Result};
use crate::lake::{self, RetryPolicy};
use crate::schema;

mod deltas;
mod sql;
#[cfg(test)]
mod tests;

use sql::{collect_as, count_action, df_error, distinct_rows, output_schema, session, view_rows};

/// Application id of a view's watermark on one of its sources.
pub fn watermark_app_id(view: &str, source: &str) -> String {
    format!("gold/{view}/{source}")
}

/// What one gold step did.
#[derive(Debug, Clone, Default)]
pub struct GoldCommit {
    pub view: String,
    /// Gold version committed by this step; `None` when the view was already up to date.
    pub version: Option<i64>,
    /// Per source: (silver table, watermark before, silver version applied).
    pub applied: Vec<(String, Option<i64>, i64)>,
    /// Recomputed in full (first run, `--full`, or no change feed for the range).
    pub full: bool,
    pub groups_touched: usize,
    /// Of the groups touched, those decided by the change's deltas alone (no silver read).
    pub by_deltas: usize,
    pub upserted: usize,
    pub deleted: usize,
    pub attempts: u32,
}

/// Keeps gold views up to date.
pub struct GoldWriter {
    config: Arc<PipelineConfig>,
    retry: RetryPolicy,
    /// Silver and gold snapshots kept warm across steps.
    tables: lake::Tables,
    /// Gold's watermarks, read once per process and then commit by commit.
    markers: lake::TxnIndex,
}

/// The MERGE input of an incremental step.
struct Change {
    /// Upserts and deletes, tagged with [`lake::ACTION`].
    source: RecordBatch,
    groups: usize,
    by_deltas: usize,
}

/// Gold's stored rows for (at least) the groups `keys`.
async fn stored_groups(
    gold: &DeltaTable,
    view: &GoldView,
    schema: &SchemaRef,
    keys: &RecordBatch,
) -> Result<RecordBatch> {
    let fail = |e| df_error(&view.name, "stored groups", e);
    let ctx = SessionContext::new();
    gold.update_datafusion_session(&ctx.state())
        .map_err(|e| Error::delta(format!("gold/{}", view.name), "read", e))?;
    let provider = gold
        .table_provider()
        .await
        .map_err(|e| Error::delta(format!("gold/{}", view.name), "read", e.into()))?;
    let mut df = ctx.read_table(provider).map_err(fail)?;
    if let Some(f) = deltas::key_filter(&view.keys, keys) {
        df = df.filter(f).map_err(fail)?;
    }
    let rows = collect_as(df, schema, &view.name).await?;
    concat_batches(schema, &rows).map_err(|e| Error::arrow("stored groups", e))
}

/// A silver source of a view, opened at the version the step applies.
pub(crate) struct Source {
    name: String,
    table: DeltaTable,
    location: Location,
    version: i64,
}

impl GoldWriter {
    pub fn new(config: Arc<PipelineConfig>) -> Self {
        GoldWriter {
            config,
            retry: RetryPolicy::default(),
            tables: lake::Tables::new(),
            markers: lake::TxnIndex::new(),
        }
    }

    pub fn config(&self) -> &Arc<PipelineConfig> {
        &self.config
    }

    /// The snapshots this writer keeps warm.
    pub fn tables(&self) -> &lake::Tables {
        &self.tables
    }

    /// Brings `gold/<view>` up to the latest versions of its sources (all of it when `full`). Safe to
    /// call concurrently and repeatedly, like the silver step.
    pub async fn apply(&self, view: &GoldView, full: bool) -> Result<GoldCommit> {
        let what = format!("gold/{}", view.name);
        let (mut commit, attempts) = self.retry.run(&what, || self.attempt(view, full)).await?;
        commit.attempts = attempts;
        Ok(commit)
    }

    async fn attempt(&self, view: &GoldView, full: bool) -> Result<GoldCommit> {
        let mut out = GoldCommit {
            view: view.name.clone(),
            ..Default::default()
        };
        let mut sources = Vec::new();
        for name in &view.sources {
            let location = self.config.silver_location(name);
            let Some(table) = self.tables.open(&location).await? else {
                // A source silver table does not exist yet: nothing to compute from.
                return Ok(out);
            };
            let version = table.version().map_or(0, |v| v as i64);
            sources.push(Source {
                name: name.clone(),
                table,
                location,
                version,
            });
        }
        let ctx = session(&sources, None).await?;
        let all = view_rows(&ctx, view).await?;
        let schema = output_schema(all.schema().as_arrow());
        for k in &view.keys {
            if schema.field_with_name(k).is_err() {
                return Err(Error::config(
                    &view.name,
                    "gold.keys",
                    format!("`{k}` is not a column of the view's result"),
                ));
            }
        }
        let location = self.config.gold_location(&view.name);
        let mut gold = match self.tables.open(&location).await? {
            Some(t) => t,
            None => {
                lake::open_or_create(
                    &location,
                    &format!("gold_{}", view.name),
                    &schema,
                    &[],
                    lake::Markers::Keep,
                )
                .await?
            }
        };
        lake::keep_watermarks(&mut gold, &location).await?;
        let marks = self.markers.at(&location, &gold).await?;
        for s in &sources {
            let mark = marks.get(&watermark_app_id(&view.name, &s.name));
            out.applied.push((s.name.clone(), mark, s.version));
        }
        // A source column widened (silver follows the source's `ALTER COLUMN ... TYPE`): gold's
        // column widens with it, before any row of the wider type is written.
        let marks: Vec<_> = out
            .applied
            .iter()
            .filter_map(|(s, mark, _)| mark.map(|m| lake::txn(watermark_app_id(&view.name, s), m)))
            .collect();
        lake::widen_columns(
            &mut gold,
            &location,
            &schema,
            marks,
            HashMap::from([
                ("lakehouse.layer".to_string(), json!("gold_schema")),
                ("lakehouse.view".to_string(), json!(view.name)),
            ]),
        )
        .await?;
        let behind = out
            .applied
            .iter()
            .any(|(_, mark, v)| mark.is_none_or(|m| m < *v));
        if !behind && !full {
            out.applied.clear();
            return Ok(out);
        }
        let txns: Vec<_> = sources
            .iter()
            .map(|s| lake::txn(watermark_app_id(&view.name, &s.name), s.version))
            .collect();
        let metadata = HashMap::from([
            ("lakehouse.layer".to_string(), json!("gold")),
            ("lakehouse.view".to_string(), json!(view.name)),
            (
                "lakehouse.upstreamVersions".to_string(),
                json!(out
                    .applied
                    .iter()
                    .map(|(s, after, to)| (s.clone(), json!({"after": after, "to": to})))
                    .collect::<serde_json::Map<_, _>>()),
            ),
            (
                "lakehouse.functionVersion".to_string(),
                json!(env!("CARGO_PKG_VERSION")),
            ),
        ]);
        // The commit's properties, with how many gold rows it writes or deletes.
        let props = |rows: usize| {
            let mut m = metadata.clone();
            m.insert("lakehouse.rows".to_string(), json!(rows));
            lake::commit_properties()
                .with_application_transactions(txns.clone())
                .with_metadata(m)
        };
        let first = out.applied.iter().all(|(_, mark, _)| mark.is_none());
        let change = if full || first {
            None
        } else {
            self.changed(view, &ctx, &sources, &out.applied, &gold, &schema)
                .await?
        };
        let fail = |op, e| Error::delta(location.url.to_string(), op, e);
        match change {
            None => {
                let mut rows = collect_as(all, &schema, &view.name).await?;
                if rows.is_empty() {
                    // A view with no group (empty or fully deleted sources) is an empty table; delta-rs
                    // refuses a write without any batch.
                    rows.push(RecordBatch::new_empty(schema.clone()));
                }
                out.full = true;
                out.upserted = rows.iter().map(RecordBatch::num_rows).sum();
                gold = gold
                    .write(rows)
                    .with_save_mode(SaveMode::Overwrite)
                    // `--full` also rebuilds a view whose SQL (and so its schema) changed.
                    .with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite)
                    .with_commit_properties(props(out.upserted))
                    .await
                    .map_err(|e| fail("overwrite", e))?;
            }
            Some(Change {
                source,
                groups,
                by_deltas,
            }) => {
                out.groups_touched = groups;
                out.by_deltas = by_deltas;
                out.upserted = count_action(&source, lake::ACTION_UPSERT);
                out.deleted = source.num_rows() - out.upserted;
                let before = gold.version();
                let (on, _) = lake::keyed_join(&gold, &location, &view.keys, &source)?;
                let clauses = lake::MergeClauses {
                    on,
                    delete_when: lake::action_is(lake::ACTION_DELETE),
                    update_when: lake::action_is(lake::ACTION_UPSERT),
                    insert_when: lake::action_is(lake::ACTION_UPSERT),
                };
                if source.num_rows() > 0 {
                    let props = props(source.num_rows());
                    gold = lake::run_merge(gold, source, &schema, clauses, props)
                        .await
                        .map_err(|e| fail("merge", e))?
                        .0;
                }
                if gold.version() == before {
                    // No group changed (or delta-rs committed nothing): the watermarks still advance.
                    lake::commit_append(&mut gold, Vec::new(), txns.clone(), metadata)
                        .await
                        .map_err(|e| fail("commit", e))?;
                }
            }
        }
        out.version = gold.version().map(|v| v as i64);
        if let Some(v) = out.version {
            // Every commit path above carries exactly `txns`.
            self.markers.record(&location, v, &txns);
        }
        self.tables.put(&location, &gold);
        info!(view = %view.name, version = ?out.version, full = out.full, groups = out.groups_touched,
            by_deltas = out.by_deltas, upserted = out.upserted, deleted = out.deleted, applied = ?out.applied, "gold commit");
        Ok(out)
    }

    /// The MERGE input for the sources' changes since the watermarks: by deltas where the view's
    /// shape allows, the touched groups recomputed otherwise. `None` when a source has no change
    /// feed for the range (then the step recomputes in full).
    async fn changed(
        &self,
        view: &GoldView,
        ctx: &SessionContext,
        sources: &[Source],
        applied: &[(String, Option<i64>, i64)],
        gold: &DeltaTable,
        schema: &SchemaRef,
    ) -> Result<Option<Change>> {
        let mut feeds = Vec::with_capacity(sources.len());
        for (s, (_, mark, to)) in sources.iter().zip(applied) {
            let from = mark.map_or(0, |m| m + 1);
            if from > *to {
                feeds.push(Vec::new());
                continue;
            }
            match lake::changes(&s.table, &s.location, from, *to).await {
                Ok(rows) => feeds.push(rows),
                Err(e) => {
                    warn!(view = %view.name, source = %s.name, error = %e, "no change feed for the range; recomputing in full");
                    return Ok(None);
                }
            }
        }
        if let [rows] = feeds.as_slice() {
            if let Some(deltas) = deltas::of(view, schema, rows).await? {
                return self
                    .by_deltas(view, ctx, &deltas, gold, schema)
                    .await
                    .map(Some);
            }
        }
        let keys = self.touched_groups(view, sources, feeds).await?;
        let source = self.changed_groups(ctx, view, schema, &keys).await?;
        Ok(Some(Change {
            source,
            groups: keys.num_rows(),
            by_deltas: 0,
        }))
    }

    /// The MERGE input from a change's deltas: the groups they decide, the others recomputed.
    async fn by_deltas(
        &self,
        view: &GoldView,
        ctx: &SessionContext,
        deltas: &deltas::Deltas,
        gold: &DeltaTable,
        schema: &SchemaRef,
    ) -> Result<Change> {
        let stored = stored_groups(gold, view, schema, &deltas.keys(view, schema)?).await?;
        let applied = deltas.apply(view, schema, &stored)?;
        let recomputed = self
            .changed_groups(ctx, view, schema, &applied.recompute)
            .await?;
        let up = lake::tag(&applied.upserts, lake::ACTION_UPSERT)?;
        let down = lake::tag(&applied.deletes, lake::ACTION_DELETE)?;
        let source = concat_batches(up.schema_ref(), [&up, &down, &recomputed])
            .map_err(|e| Error::arrow("gold changes", e))?;
        Ok(Change {
            source,
            groups: applied.groups,
            by_deltas: applied.groups - applied.recompute.num_rows(),
        })
    }

    /// The distinct keys of the groups the sources' change rows (`feeds`, one per source) touch.
    async fn touched_groups(
        &self,
        view: &GoldView,
        sources: &[Source],
        feeds: Vec<Vec<RecordBatch>>,
    ) -> Result<RecordBatch> {
        let mut parts: Vec<RecordBatch> = Vec::new();
        for (s, changed) in sources.iter().zip(feeds) {
            if changed.iter().all(|b| b.num_rows() == 0) {
                continue;
            }
            // Both images, unsigned: the view over them names the groups they belong (or belonged) to.
            let changed = changed
                .iter()
                .map(|b| {
                    let mut b = b.clone();
                    b.remove_column(b.num_columns() - 1);
                    b
                })
                .collect();
            // The view over this source's changed rows and the other sources in full: its keys are
            // the groups those rows belong (or belonged) to.
            let ctx = session(sources, Some((&s.name, changed))).await?;
            let keys: Vec<_> = view.keys.iter().map(|k| ident(k.as_str())).collect();
            let df = view_rows(&ctx, view)
                .await?
                .select(keys)
                .and_then(DataFrame::distinct)
                .map_err(|e| df_error(&view.name, "touched groups", e))?;
            parts.extend(
                df.collect()
                    .await
                    .map_err(|e| df_error(&view.name, "touched groups", e))?,
            );
        }
        let Some(first) = parts.first() else {
            return Ok(RecordBatch::new_empty(Arc::new(Schema::empty())));
        };
        let schema = output_schema(first.schema_ref());
        let parts = parts
            .iter()
            .map(|b| schema::as_schema(b, &schema, |_, _| None))
            .collect::<Result<Vec<_>>>()?;
        let all = concat_batches(&schema, &parts).map_err(|e| Error::arrow("touched groups", e))?;
        distinct_rows(&all)
    }

    /// The MERGE source for the touched groups `keys`: their recomputed rows (upsert) and the keys that
    /// no longer produce a row (delete).
    async fn changed_groups(
        &self,
        ctx: &SessionContext,
        view: &GoldView,
        schema: &SchemaRef,
        keys: &RecordBatch,
    ) -> Result<RecordBatch> {
        if keys.num_rows() == 0 {
            return lake::tag(&RecordBatch::new_empty(schema.clone()), lake::ACTION_UPSERT);
        }
        let rows = view_rows(ctx, view).await?;
        // The touched keys as a filter the scan can use to skip files (DataFusion pushes it below
        // the view's aggregate when the keys are its groups); the semi join below stays exact.
        let rows = match deltas::key_filter(&view.keys, keys) {
            Some(f) => rows
                .filter(f)
                .map_err(|e| df_error(&view.name, "touched keys", e))?,
            None => rows,
        };
        // The touched keys, typed as the view's keys and renamed so the semi join is unambiguous.
        let renamed: Vec<String> = view.keys.iter().map(|k| format!("__touched_{k}")).collect();
        let key_fields: Vec<Field> = view
            .keys
            .iter()
            .zip(&renamed)
            .map(|(k, r)| {
                let dt = rows
                    .schema()
                    .field_with_unqualified_name(k)
                    .map(|f| f.data_type().clone())
                    .unwrap_or(DataType::Utf8);
                Field::new(r, dt, true)
            })
            .collect();
        let key_cols = view
            .keys
            .iter()
            .zip(&key_fields)
            .map(|(k, f)| {
                let c = keys
                    .column_by_name(k)
                    .ok_or_else(|| Error::invariant(format!("touched keys lack `{k}`")))?;
                cast(c, f.data_type()).map_err(|e| Error::arrow("touched keys", e))
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let touched = RecordBatch::try_new(Arc::new(Schema::new(key_fields)), key_cols)
            .map_err(|e| Error::arrow("touched keys", e))?;
        let left: Vec<&str> = view.keys.iter().map(String::as_str).collect();
        let right: Vec<&str> = renamed.iter().map(String::as_str).collect();
        let recomputed = rows
            .join(
                ctx.read_batch(touched)
                    .map_err(|e| df_error(&view.name, "touched keys", e))?,
                JoinType::LeftSemi,
                &left,
                &right,
                None,
            )
            .map_err(|e| df_error(&view.name, "recompute", e))?;
        let recomputed = collect_as(recomputed, schema, &view.name).await?;
        let recomputed = concat_batches(schema, &recomputed)
            .map_err(|e| Error::arrow("recomputed groups", e))?;
        // Touched keys with no row any more: delete their group.
        let key_of = |b: &RecordBatch| -> Result<Vec<ArrayRef>> {
            view.keys
                .iter()
                .map(|k| {
                    let c = schema::column(b, k, "gold keys")?;
                    cast(
                        &c,
                        schema
                            .field_with_name(k)
                            .map_err(|e| Error::arrow("keys", e))?
                            .data_type(),
                    )
                    .map_err(|e| Error::arrow("keys", e))
                })
                .collect()
        };
        let (have, want) = (key_of(&recomputed)?, key_of(keys)?);
        let (conv, have_rows) = schema::rows_of(&have, "keys")?;
        let want_rows = conv
            .convert_columns(&want)
            .map_err(|e| Error::arrow("keys", e))?;
        let present: HashSet<&[u8]> = (0..recomputed.num_rows())
            .map(|i| have_rows.row(i).data())
            .collect();
        let gone: Vec<u32> = (0..keys.num_rows())
            .filter(|&i| !present.contains(want_rows.row(i).data()))
            .map(|i| i as u32)
            .collect();
        let gone = deltalake::arrow::compute::take_record_batch(
            keys,
            &deltalake::arrow::array::UInt32Array::from(gone),
        )
        .map_err(|e| Error::arrow("deleted groups", e))?;
        let gone = schema::as_schema(&gone, schema, |_, _| None)?;
        let up = lake::tag(&recomputed, lake::ACTION_UPSERT)?;
        let down = lake::tag(&gone, lake::ACTION_DELETE)?;
        concat_batches(up.schema_ref(), [&up, &down]).map_err(|e| Error::arrow("gold changes", e))
    }
}
