//! Gold by deltas, for views whose aggregates follow their changes: one source, `GROUP BY` its keys,
//! `COUNT`, `SUM` over integers or decimals, `MIN`, `MAX`. The source's change feed rows, signed
//! (+1 inserts and post-images, -1 deletes and pre-images), are aggregated per group with the view's
//! own filters and group expressions, and added to the stored group: no silver row outside the
//! change is read, so a step costs the change, not the table.
//!
//! Exact or recomputed, never approximate: a group whose new value the deltas cannot decide (a `MIN`
//! or `MAX` whose extreme was taken away, a `SUM` whose last non-null value may be gone, a group that
//! may have emptied with no `COUNT(*)` to say so, an overflow) is recomputed from silver as before,
//! and so is every group of a view of any other shape (joins, `AVG`, float sums, `DISTINCT`,
//! `HAVING`, computed outputs, subqueries, volatile functions).

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    make_comparator, new_null_array, Array, ArrayRef, AsArray, Decimal128Array, Int64Array,
    RecordBatch, UInt32Array,
};
use deltalake::arrow::compute::{cast, concat_batches, interleave, take_record_batch, SortOptions};
use deltalake::arrow::datatypes::{DataType, Decimal128Type, DecimalType, Int64Type, SchemaRef};
use deltalake::datafusion::catalog::MemTable;
use deltalake::datafusion::common::tree_node::TreeNode;
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::dataframe::DataFrame;
use deltalake::datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use deltalake::datafusion::logical_expr::{lit, when, Expr, ExprSchemable, LogicalPlan};
use deltalake::datafusion::prelude::{ident, SessionContext};

use super::sql::{df_error, read_only};
use crate::config::GoldView;
use crate::error::{Error, Result};
use crate::lake::CHANGE_SIGN;
use crate::schema;

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

/// A view's delta plan, built over a session where its source is the signed change rows.
pub(super) struct Deltas {
    df: DataFrame,
    groups: usize,
    /// Per output column of the view, in its order.
    outputs: Vec<Output>,
}

/// The deltas per group, computed.
pub(super) struct Collected {
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

/// Decides whether `view` is kept by deltas and, if so, plans them over `changes` (the source's
/// signed change rows, `changes_schema`). `None`: the view's shape is not one deltas follow.
pub(super) async fn plan(
    view: &GoldView,
    schema: &SchemaRef,
    changes_schema: SchemaRef,
    changes: Vec<RecordBatch>,
) -> Result<Option<Deltas>> {
    let [source] = view.sources.as_slice() else {
        return Ok(None);
    };
    let ctx = SessionContext::new();
    let table = MemTable::try_new(changes_schema, vec![changes])
        .map_err(|e| df_error(&view.name, "change rows", e))?;
    ctx.register_table(source.as_str(), Arc::new(table))
        .map_err(|e| df_error(&view.name, "change rows", e))?;
    let plan = ctx
        .sql_with_options(&view.sql, read_only())
        .await
        .map_err(|e| df_error(&view.name, "view SQL", e))?
        .logical_plan()
        .clone();
    let Some(shape) = Shape::of(&plan, view, schema) else {
        return Ok(None);
    };
    let df = DataFrame::new(ctx.state(), shape.input)
        .aggregate(shape.group_expr, shape.aggr)
        .map_err(|e| df_error(&view.name, "delta plan", e))?;
    Ok(Some(Deltas {
        df,
        groups: shape.groups,
        outputs: shape.outputs,
    }))
}

/// The parts of a view's plan deltas are built from.
struct Shape {
    input: LogicalPlan,
    group_expr: Vec<Expr>,
    groups: usize,
    aggr: Vec<Expr>,
    outputs: Vec<Output>,
}

impl Shape {
    /// `Projection (plain columns) <- Aggregate <- [Filter | SubqueryAlias]* <- TableScan`, with an
    /// ORDER BY on top allowed (a table has no order).
    fn of(plan: &LogicalPlan, view: &GoldView, schema: &SchemaRef) -> Option<Shape> {
        let mut top = plan;
        while let LogicalPlan::Sort(s) = top {
            top = s.input.as_ref();
        }
        let LogicalPlan::Projection(projection) = top else {
            return None;
        };
        let LogicalPlan::Aggregate(agg) = projection.input.as_ref() else {
            return None;
        };
        if !row_wise(agg.input.as_ref()) {
            return None;
        }
        if agg
            .group_expr
            .iter()
            .any(|g| matches!(g, Expr::GroupingSet(_)))
            || agg
                .group_expr
                .iter()
                .any(|g| g.is_volatile() || has_subquery(g))
        {
            return None;
        }
        let (qualifier, _) = agg
            .input
            .schema()
            .qualified_field_with_unqualified_name(CHANGE_SIGN)
            .ok()?;
        let sign = Expr::Column(deltalake::datafusion::common::Column::new(
            qualifier.cloned(),
            CHANGE_SIGN,
        ));
        let added = |e: Expr| when(sign.clone().gt(lit(0i64)), e).end().ok();
        let taken = |e: Expr| when(sign.clone().lt(lit(0i64)), e).end().ok();
        let groups = agg.group_expr.len();
        let mut aggr = vec![count(added(lit(1i64))?), count(taken(lit(1i64))?)];
        // Per aggregate of the view: its output, or `None` when deltas cannot follow it.
        let mut per_aggregate = Vec::new();
        for e in &agg.aggr_expr {
            let e = bare(e);
            let Expr::AggregateFunction(f) = e else {
                return None;
            };
            let p = &f.params;
            if p.distinct || p.filter.is_some() || !p.order_by.is_empty() || p.args.len() != 1 {
                return None;
            }
            let arg = p.args[0].clone();
            if arg.is_volatile() || has_subquery(&arg) {
                return None;
            }
            let at = groups + aggr.len();
            let out = match f.func.name() {
                "count" if matches!(&arg, Expr::Literal(v, _) if !v.is_null()) => Output::Rows,
                "count" => {
                    aggr.push(count(added(arg.clone())?));
                    aggr.push(count(taken(arg)?));
                    Output::Count {
                        plus: at,
                        minus: at + 1,
                    }
                }
                "sum" => {
                    let t = arg.get_type(agg.input.schema()).ok()?;
                    let exact = matches!(
                        t,
                        DataType::Int8
                            | DataType::Int16
                            | DataType::Int32
                            | DataType::Int64
                            | DataType::Decimal128(_, _)
                    );
                    if !exact {
                        return None;
                    }
                    aggr.push(sum(added(arg.clone())?));
                    aggr.push(sum(taken(arg.clone())?));
                    aggr.push(count(added(arg.clone())?));
                    aggr.push(count(taken(arg)?));
                    Output::Sum {
                        plus: at,
                        minus: at + 1,
                        count_plus: at + 2,
                        count_minus: at + 3,
                    }
                }
                name @ ("min" | "max") => {
                    let pick = if name == "min" { min } else { max };
                    aggr.push(pick(added(arg.clone())?));
                    aggr.push(pick(taken(arg)?));
                    Output::Extreme {
                        max: name == "max",
                        plus: at,
                        minus: at + 1,
                    }
                }
                _ => return None,
            };
            per_aggregate.push(out);
        }
        let aggr: Vec<Expr> = aggr
            .into_iter()
            .enumerate()
            .map(|(i, e)| e.alias(format!("__delta_{i}")))
            .collect();
        // The view's outputs: each a group or an aggregate, as is (a computed output such as
        // `SUM(a) / COUNT(*)` cannot be added to).
        let mut per_aggregate: Vec<Option<Output>> = per_aggregate.into_iter().map(Some).collect();
        let mut outputs = Vec::new();
        let mut keyed = vec![false; groups];
        for (i, e) in projection.expr.iter().enumerate() {
            let Expr::Column(c) = bare(e) else {
                return None;
            };
            let name = projection.schema.field(i).name();
            let at = agg.schema.index_of_column(c).ok()?;
            let out = if at < groups {
                if view.keys.iter().any(|k| k == name) {
                    keyed[at] = true;
                }
                Output::Key(at)
            } else {
                per_aggregate.get_mut(at - groups)?.take()?
            };
            let numeric = match out {
                Output::Rows | Output::Count { .. } => Some(false),
                Output::Sum { .. } => Some(true),
                _ => None,
            };
            let field = schema.field_with_name(name).ok()?;
            match (numeric, field.data_type()) {
                (None, _) | (Some(_), DataType::Int64) | (Some(true), DataType::Decimal128(..)) => {
                }
                _ => return None,
            }
            outputs.push(out);
        }
        // Each group must be named by the view's keys, and each key must be a group: then one
        // delta row is one gold row.
        let keys_are_groups = view.keys.iter().all(|k| {
            projection
                .schema
                .fields()
                .iter()
                .zip(&outputs)
                .any(|(f, o)| f.name() == k && matches!(o, Output::Key(_)))
        });
        if !keyed.iter().all(|k| *k) || !keys_are_groups || outputs.len() != schema.fields().len() {
            return None;
        }
        Some(Shape {
            input: agg.input.as_ref().clone(),
            group_expr: agg.group_expr.clone(),
            groups,
            aggr,
            outputs,
        })
    }
}

/// An expression without its aliases (SQL names `COUNT(*) AS n` twice).
fn bare(mut e: &Expr) -> &Expr {
    while let Expr::Alias(a) = e {
        e = a.expr.as_ref();
    }
    e
}

/// Whether a plan maps each source row to itself or drops it (filters, aliases, one scan): then
/// its signed rows aggregate to the view's change.
fn row_wise(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(_) => true,
        LogicalPlan::SubqueryAlias(a) => row_wise(a.input.as_ref()),
        LogicalPlan::Filter(f) => {
            !f.predicate.is_volatile() && !has_subquery(&f.predicate) && row_wise(f.input.as_ref())
        }
        _ => false,
    }
}

fn has_subquery(e: &Expr) -> bool {
    e.exists(|e| {
        Ok(matches!(
            e,
            Expr::ScalarSubquery(_)
                | Expr::InSubquery(_)
                | Expr::Exists(_)
                | Expr::OuterReferenceColumn(..)
        ))
    })
    .unwrap_or(true)
}

impl Deltas {
    /// Runs the delta plan: one row per group the change touches.
    pub(super) async fn collect(self, view: &GoldView) -> Result<Collected> {
        let schema = self.df.schema().as_arrow().clone();
        let batches = self
            .df
            .collect()
            .await
            .map_err(|e| df_error(&view.name, "deltas", e))?;
        let delta = concat_batches(&Arc::new(schema), &batches)
            .map_err(|e| Error::arrow(format!("gold/{}: deltas", view.name), e))?;
        Ok(Collected {
            groups: self.groups,
            outputs: self.outputs,
            delta,
        })
    }
}

impl Collected {
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
        apply(view, schema, self, old)
    }
}

fn apply(
    view: &GoldView,
    schema: &SchemaRef,
    deltas: &Collected,
    old: &RecordBatch,
) -> Result<Applied> {
    let Collected {
        outputs,
        groups,
        delta,
    } = deltas;
    let (outputs, groups) = (outputs.as_slice(), *groups);
    let fail = |what: &'static str| move |e| Error::arrow(format!("gold/{}: {what}", view.name), e);
    // Each output's delta columns and the old column, cast to the gold column's type.
    let typed = |at: usize, field: usize| {
        cast(delta.column(at), schema.field(field).data_type()).map_err(fail("delta types"))
    };
    let counts = |at: usize| -> Result<Int64Array> {
        let c = cast(delta.column(at), &DataType::Int64).map_err(fail("delta counts"))?;
        Ok(c.as_primitive::<Int64Type>().clone())
    };
    let (rows_plus, rows_minus) = (counts(groups + ROWS_PLUS)?, counts(groups + ROWS_MINUS)?);
    let old = schema::as_schema(old, schema, |_, _| None)?;

    // Which stored row each delta row's group has.
    let key_fields: Vec<usize> = view
        .keys
        .iter()
        .map(|k| schema.index_of(k).map_err(fail("keys")))
        .collect::<Result<_>>()?;
    let new_keys = deltas.keys(view, schema)?.columns().to_vec();
    let old_keys: Vec<ArrayRef> = key_fields.iter().map(|&f| old.column(f).clone()).collect();
    let (conv, old_rows) = schema::rows_of(&old_keys, "stored groups")?;
    let new_rows = conv.convert_columns(&new_keys).map_err(fail("keys"))?;
    let stored: HashMap<&[u8], usize> = (0..old.num_rows())
        .map(|r| (old_rows.row(r).data(), r))
        .collect();

    let n = delta.num_rows();
    #[derive(Clone, Copy, PartialEq)]
    enum Fate {
        Skip,
        Upsert,
        Delete,
        Recompute,
    }
    let mut fate = vec![Fate::Upsert; n];
    let mut matched: Vec<Option<usize>> = vec![None; n];
    for i in 0..n {
        if new_keys.iter().any(|k| k.is_null(i)) {
            fate[i] = Fate::Skip;
            continue;
        }
        matched[i] = stored.get(new_rows.row(i).data()).copied();
    }
    let net = |i: usize| rows_plus.value(i) - rows_minus.value(i);
    // Whether the group still has rows: known from a COUNT(*), or from the net row change.
    let rows_out = outputs.iter().position(|o| matches!(o, Output::Rows));
    let old_count = |f: usize, r: usize| -> Option<i64> {
        let c = old.column(f);
        (!c.is_null(r)).then(|| c.as_primitive::<Int64Type>().value(r))
    };
    for i in 0..n {
        if fate[i] != Fate::Upsert {
            continue;
        }
        let after = match (rows_out, matched[i]) {
            (Some(f), Some(r)) => old_count(f, r).map(|c| c + net(i)),
            (_, None) => Some(net(i)),
            (None, Some(_)) if net(i) >= 0 => Some(1),
            (None, Some(_)) => None,
        };
        fate[i] = match after {
            Some(0) => Fate::Delete,
            Some(a) if a > 0 => Fate::Upsert,
            _ => Fate::Recompute,
        };
    }

    // Each output's new values for the upserted rows; a value the deltas cannot decide sends its
    // group to recompute.
    let undecided = |fate: &mut Vec<Fate>, i: usize| {
        if fate[i] == Fate::Upsert {
            fate[i] = Fate::Recompute;
        }
    };
    let mut columns: Vec<Column> = Vec::with_capacity(outputs.len());
    for (f, out) in outputs.iter().enumerate() {
        let dt = schema.field(f).data_type();
        let column = match *out {
            Output::Key(g) => Column::Pick(vec![typed(g, f)?], (0..n).map(|i| (0, i)).collect()),
            Output::Rows => Column::Numbers(
                (0..n)
                    .map(|i| {
                        let old = matched[i].and_then(|r| old_count(f, r)).unwrap_or(0);
                        Some(i128::from(old + net(i)))
                    })
                    .collect(),
            ),
            Output::Count { plus, minus } => {
                let (p, m) = (counts(plus)?, counts(minus)?);
                let mut values = Vec::with_capacity(n);
                for (i, stored) in matched.iter().enumerate() {
                    let old = stored.and_then(|r| old_count(f, r)).unwrap_or(0);
                    let v = old + p.value(i) - m.value(i);
                    if v < 0 {
                        undecided(&mut fate, i);
                    }
                    values.push(Some(i128::from(v)));
                }
                Column::Numbers(values)
            }
            Output::Sum {
                plus,
                minus,
                count_plus,
                count_minus,
            } => {
                let (p, m) = (typed(plus, f)?, typed(minus, f)?);
                let (cp, cm) = (counts(count_plus)?, counts(count_minus)?);
                let old_col = old.column(f);
                let mut values = Vec::with_capacity(n);
                for (i, stored) in matched.iter().enumerate() {
                    let old = stored.and_then(|r| number(old_col, r));
                    let added = number(&p, i).unwrap_or(0);
                    let taken = number(&m, i).unwrap_or(0);
                    let non_null = cp.value(i) - cm.value(i);
                    // With no stored value the group had no non-null value, so the change's net
                    // count is the new count; with one, a negative net count may have taken the last.
                    let v = match old {
                        None if non_null > 0 => added.checked_sub(taken),
                        None if non_null == 0 => {
                            values.push(None);
                            continue;
                        }
                        Some(o) if non_null >= 0 => {
                            o.checked_add(added).and_then(|s| s.checked_sub(taken))
                        }
                        _ => None,
                    };
                    match v.filter(|v| fits(*v, dt)) {
                        Some(v) => values.push(Some(v)),
                        None => {
                            undecided(&mut fate, i);
                            values.push(None);
                        }
                    }
                }
                Column::Numbers(values)
            }
            Output::Extreme { max, plus, minus } => {
                let (p, m) = (typed(plus, f)?, typed(minus, f)?);
                let old_col = old.column(f).clone();
                let opts = SortOptions::default();
                let taken_vs_old =
                    make_comparator(m.as_ref(), old_col.as_ref(), opts).map_err(fail("compare"))?;
                let added_vs_old =
                    make_comparator(p.as_ref(), old_col.as_ref(), opts).map_err(fail("compare"))?;
                // The side of the stored extreme where a value replaces it.
                let beyond = if max {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Less
                };
                let mut picks = Vec::with_capacity(n);
                for (i, stored) in matched.iter().enumerate() {
                    let old = stored.filter(|&r| !old_col.is_null(r));
                    // A value taken away that reaches the stored extreme (or any, with none
                    // stored) may have been it.
                    if !m.is_null(i) && old.is_none_or(|r| taken_vs_old(i, r) != beyond.reverse()) {
                        undecided(&mut fate, i);
                    }
                    picks.push(match old {
                        Some(r) if p.is_null(i) || added_vs_old(i, r) != beyond => (0, r),
                        _ if !p.is_null(i) => (1, i),
                        _ => (2, 0),
                    });
                }
                Column::Pick(vec![old_col, p, new_null_array(dt, 1)], picks)
            }
        };
        columns.push(column);
    }

    let pick = |f: Fate| -> Vec<usize> { (0..n).filter(|&i| fate[i] == f).collect() };
    let (up, down, again) = (
        pick(Fate::Upsert),
        pick(Fate::Delete),
        pick(Fate::Recompute),
    );
    let arrays = columns
        .iter()
        .enumerate()
        .map(|(f, c)| c.rows(&up, schema.field(f).data_type()))
        .collect::<Result<Vec<_>>>()?;
    let upserts = RecordBatch::try_new(schema.clone(), arrays).map_err(fail("new groups"))?;
    let keys = RecordBatch::try_new(key_schema(view, schema)?, new_keys).map_err(fail("keys"))?;
    let keys_of = |rows: &[usize]| -> Result<RecordBatch> {
        let idx = UInt32Array::from(rows.iter().map(|&i| i as u32).collect::<Vec<_>>());
        take_record_batch(&keys, &idx).map_err(fail("keys"))
    };
    let deletes = schema::as_schema(&keys_of(&down)?, schema, |_, _| None)?;
    Ok(Applied {
        groups: n - pick(Fate::Skip).len(),
        upserts,
        deletes,
        recompute: keys_of(&again)?,
    })
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

/// An output column being built: computed numbers, or values picked from arrays.
enum Column {
    Numbers(Vec<Option<i128>>),
    Pick(Vec<ArrayRef>, Vec<(usize, usize)>),
}

impl Column {
    fn rows(&self, rows: &[usize], dt: &DataType) -> Result<ArrayRef> {
        let fail = |e| Error::arrow("gold deltas", e);
        Ok(match self {
            Column::Numbers(v) => {
                let picked = rows.iter().map(|&i| v[i]);
                match dt {
                    DataType::Decimal128(p, s) => Arc::new(
                        Decimal128Array::from_iter(picked)
                            .with_precision_and_scale(*p, *s)
                            .map_err(fail)?,
                    ),
                    _ => Arc::new(Int64Array::from_iter(
                        picked.map(|v| v.and_then(|v| i64::try_from(v).ok())),
                    )),
                }
            }
            Column::Pick(arrays, picks) => {
                let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
                let idx: Vec<(usize, usize)> = rows.iter().map(|&i| picks[i]).collect();
                interleave(&refs, &idx).map_err(fail)?
            }
        })
    }
}

/// A SUM or COUNT value as an integer (gold stores them as Int64 or Decimal128).
fn number(a: &ArrayRef, i: usize) -> Option<i128> {
    if a.is_null(i) {
        return None;
    }
    match a.data_type() {
        DataType::Int64 => Some(i128::from(a.as_primitive::<Int64Type>().value(i))),
        DataType::Decimal128(..) => Some(a.as_primitive::<Decimal128Type>().value(i)),
        _ => None,
    }
}

/// Whether `v` is a value of the gold column's type.
fn fits(v: i128, dt: &DataType) -> bool {
    match dt {
        DataType::Decimal128(p, _) => Decimal128Type::is_valid_decimal_precision(v, *p),
        _ => i64::try_from(v).is_ok(),
    }
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
