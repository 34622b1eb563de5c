//! Which views deltas follow: the shape of the view's plan, and the delta aggregates built from it.

use deltalake::arrow::datatypes::{DataType, SchemaRef};
use deltalake::datafusion::common::tree_node::TreeNode;
use deltalake::datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use deltalake::datafusion::logical_expr::{lit, when, Expr, ExprSchemable, LogicalPlan};

use super::Output;
use crate::config::GoldView;
use crate::lake::CHANGE_SIGN;

/// The parts of a view's plan deltas are built from.
pub(super) struct Shape {
    pub(super) input: LogicalPlan,
    pub(super) group_expr: Vec<Expr>,
    pub(super) groups: usize,
    pub(super) aggr: Vec<Expr>,
    pub(super) outputs: Vec<Output>,
}

impl Shape {
    /// `Projection (plain columns) <- Aggregate <- [Filter | SubqueryAlias]* <- TableScan`, with an
    /// ORDER BY on top allowed (a table has no order).
    pub(super) fn of(plan: &LogicalPlan, view: &GoldView, schema: &SchemaRef) -> Option<Shape> {
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
