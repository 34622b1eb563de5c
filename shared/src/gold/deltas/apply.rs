//! The deltas added to the stored groups: new values where they decide them, the rest recomputed.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    make_comparator, new_null_array, Array, ArrayRef, AsArray, Decimal128Array, Int64Array,
    RecordBatch, UInt32Array,
};
use deltalake::arrow::compute::{cast, interleave, take_record_batch, SortOptions};
use deltalake::arrow::datatypes::{DataType, Decimal128Type, DecimalType, Int64Type, SchemaRef};

use super::{key_schema, Applied, Deltas, Output, ROWS_MINUS, ROWS_PLUS};
use crate::config::GoldView;
use crate::error::{Error, Result};
use crate::schema;

pub(super) fn apply(
    view: &GoldView,
    schema: &SchemaRef,
    deltas: &Deltas,
    old: &RecordBatch,
) -> Result<Applied> {
    let Deltas {
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
        /// Stored, fewer rows than before, and no `COUNT(*)`: it may have emptied, unless an
        /// output proves rows remain (a non-zero `COUNT(e)`, a non-null `SUM`).
        Unsure,
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
            (None, Some(_)) => {
                fate[i] = Fate::Unsure;
                continue;
            }
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
        if matches!(fate[i], Fate::Upsert | Fate::Unsure) {
            fate[i] = Fate::Recompute;
        }
    };
    let mut rows_remain = vec![false; n];
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
                    rows_remain[i] |= v > 0;
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
                    // count is the new count. With one, the new sum of the non-null values is
                    // exact; it is the SUM unless none is left, which a net count that did not
                    // fall or a non-zero sum rules out (an empty sum is 0).
                    let v = match old {
                        None if non_null > 0 => added.checked_sub(taken),
                        None if non_null == 0 => {
                            values.push(None);
                            continue;
                        }
                        Some(o) => o
                            .checked_add(added)
                            .and_then(|s| s.checked_sub(taken))
                            .filter(|s| non_null >= 0 || *s != 0),
                        None => None,
                    };
                    match v.filter(|v| fits(*v, dt)) {
                        Some(v) => {
                            rows_remain[i] = true;
                            values.push(Some(v))
                        }
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

    for (f, remain) in fate.iter_mut().zip(&rows_remain) {
        if *f == Fate::Unsure {
            *f = if *remain {
                Fate::Upsert
            } else {
                Fate::Recompute
            };
        }
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
