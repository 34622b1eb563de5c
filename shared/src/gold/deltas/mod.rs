//! Gold by deltas, for views whose aggregates follow their changes: one source, `GROUP BY` its keys,
//! `COUNT`, `SUM` over integers or decimals, `MIN`, `MAX`. The source's change feed rows, signed
//! (+1 inserts and post-images, -1 deletes and pre-images), are aggregated per group with the view's
//! own filters and group expressions, and added to the stored group: no silver row outside the
//! change is read, so a step costs the change, not the table.
//!
//! Exact or recomputed, never approximate: a group whose new value the deltas cannot decide (a `MIN`
//! or `MAX` whose extreme was taken away; a `SUM` that lost non-null values and now sums to 0, none
//! left or some that cancel; a group that may have emptied with no `COUNT(*)`, non-zero `COUNT(e)` or
//! non-zero `SUM` to say so; an overflow) is recomputed from silver as before, and so is every group
//! of a view of any other shape (joins, `AVG`, float sums, `DISTINCT`, `HAVING`, computed outputs,
//! subqueries, volatile functions).

use std::sync::Arc;

use deltalake::arrow::array::{Array, RecordBatch};
use deltalake::arrow::compute::{cast, concat_batches};
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::MemTable;
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::dataframe::DataFrame;
use deltalake::datafusion::logical_expr::{lit, Expr};
use deltalake::datafusion::prelude::{ident, SessionContext};

use super::sql::{df_error, read_only};
use crate::config::GoldView;
use crate::error::{Error, Result};

mod apply;
mod shape;

use shape::Shape;

/// One output column of the view, as the deltas carry it. Numbers are column positions in the
/// delta batch (the groups first, then the delta aggregates).
#[derive(Debug)]
enum Output {
    /// A group expression's value.
    Key(usize),
    /// `COUNT(*)`: the group's rows, from the row deltas every plan has.
    Rows,
    /// `COUNT(e)`: non-null values added and taken away.
    Count { plus: usize, minus: usize },
    /// `SUM(e)`: the sums added and taken away, and how many non-null values each had.
    Sum {
        plus: usize,
        minus: usize,
        count_plus: usize,
        count_minus: usize,
    },
    /// `MIN(e)` / `MAX(e)`: the extreme added, and the extreme taken away (which, if it reaches the
    /// stored extreme, leaves the new one unknown).
    Extreme {
        max: bool,
        plus: usize,
        minus: usize,
    },
}

/// Delta batch columns every plan has, after the groups: rows added and rows taken away.
const ROWS_PLUS: usize = 0;
const ROWS_MINUS: usize = 1;

/// A view's change as deltas per group.
pub(super) struct Deltas {
    groups: usize,
    outputs: Vec<Output>,
    /// One row per group: the groups, then the delta aggregates.
    delta: RecordBatch,
}

/// What the deltas decided, as MERGE input.
pub(super) struct Applied {
    /// Groups touched (each group in the deltas once).
    pub groups: usize,
    /// New rows of groups the deltas decided (the view's schema).
    pub upserts: RecordBatch,
    /// Groups the deltas emptied (keys, other columns null).
    pub deletes: RecordBatch,
    /// Keys (the view's key columns) of groups to recompute from silver.
    pub recompute: RecordBatch,
}

/// The deltas of `changes` (the source's signed change rows) per group, when `view` is kept by
/// deltas; `None` when its shape is not one deltas follow (or nothing changed).
pub(super) async fn of(
    view: &GoldView,
    schema: &SchemaRef,
    changes: &[RecordBatch],
) -> Result<Option<Deltas>> {
    let ([source], Some(first)) = (view.sources.as_slice(), changes.first()) else {
        return Ok(None);
    };
    let fail = |what: &'static str| move |e| df_error(&view.name, what, e);
    let ctx = SessionContext::new();
    let table =
        MemTable::try_new(first.schema(), vec![changes.to_vec()]).map_err(fail("change rows"))?;
    ctx.register_table(source.as_str(), Arc::new(table))
        .map_err(fail("change rows"))?;
    let plan = ctx
        .sql_with_options(&view.sql, read_only())
        .await
        .map_err(fail("view SQL"))?
        .logical_plan()
        .clone();
    let Some(shape) = Shape::of(&plan, view, schema) else {
        return Ok(None);
    };
    let df = DataFrame::new(ctx.state(), shape.input)
        .aggregate(shape.group_expr, shape.aggr)
        .map_err(fail("delta plan"))?;
    let delta_schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.map_err(fail("deltas"))?;
    let delta = concat_batches(&delta_schema, &batches)
        .map_err(|e| Error::arrow(format!("gold/{}: deltas", view.name), e))?;
    Ok(Some(Deltas {
        groups: shape.groups,
        outputs: shape.outputs,
        delta,
    }))
}

impl Deltas {
    /// The touched groups' keys, typed as gold stores them (null keys included: `apply` drops them).
    pub(super) fn keys(&self, view: &GoldView, schema: &SchemaRef) -> Result<RecordBatch> {
        let columns = view
            .keys
            .iter()
            .map(|k| {
                let f = schema
                    .index_of(k)
                    .map_err(|e| Error::arrow(format!("gold/{}: keys", view.name), e))?;
                let Output::Key(g) = self.outputs[f] else {
                    return Err(Error::invariant(format!(
                        "gold/{}: key `{k}` is not a group",
                        view.name
                    )));
                };
                cast(self.delta.column(g), schema.field(f).data_type())
                    .map_err(|e| Error::arrow(format!("gold/{}: keys", view.name), e))
            })
            .collect::<Result<Vec<_>>>()?;
        RecordBatch::try_new(key_schema(view, schema)?, columns)
            .map_err(|e| Error::arrow(format!("gold/{}: keys", view.name), e))
    }

    /// Applies the deltas to the stored groups (`old`: gold's rows for at least those groups).
    pub(super) fn apply(
        &self,
        view: &GoldView,
        schema: &SchemaRef,
        old: &RecordBatch,
    ) -> Result<Applied> {
        apply::apply(view, schema, self, old)
    }
}

/// The view's key columns, typed as gold stores them.
fn key_schema(view: &GoldView, schema: &SchemaRef) -> Result<SchemaRef> {
    schema
        .project(
            &view
                .keys
                .iter()
                .map(|k| schema.index_of(k))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::arrow(format!("gold/{}: keys", view.name), e))?,
        )
        .map(Arc::new)
        .map_err(|e| Error::arrow(format!("gold/{}: keys", view.name), e))
}

/// A filter keeping the rows whose `keys` columns take one of the values in `batch` (a superset
/// when there are several keys): pushed down to the scan, it lets file statistics skip files.
/// `None` when there are too many values for a filter to pay.
pub(super) fn key_filter(keys: &[String], batch: &RecordBatch) -> Option<Expr> {
    const MAX_VALUES: usize = 10_000;
    if batch.num_rows() == 0 || batch.num_rows() > MAX_VALUES {
        return None;
    }
    let mut filter: Option<Expr> = None;
    for k in keys {
        let c = batch.column_by_name(k)?;
        let values = (0..c.len())
            .filter(|&i| !c.is_null(i))
            .map(|i| ScalarValue::try_from_array(c, i).ok().map(lit))
            .collect::<Option<Vec<_>>>()?;
        let e = ident(k.as_str()).in_list(values, false);
        filter = Some(match filter {
            Some(f) => f.and(e),
            None => e,
        });
    }
    filter
}
