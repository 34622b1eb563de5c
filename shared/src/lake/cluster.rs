//! Where a batch's keys live in a table clustered by key. From each file's min/max statistics of the
//! leading key column, the files whose range holds one of the batch's keys ("touched"), and a few key
//! ranges that cover every batch key but no untouched file. A MERGE or a keyed scan restricted to those
//! ranges lets delta-rs skip every other file by its statistics, however wide the batch's min..max is
//! (delta-rs's own early filter only narrows to the batch's min..max).
//!
//! The ranges are built from the batch's keys, never from file statistics alone, so a predicate on
//! them is true for every row a batch key can match, even in a file without statistics.

use std::collections::HashMap;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use deltalake::arrow::compute::{cast, sort_to_indices, take};
use deltalake::arrow::row::{OwnedRow, RowConverter, SortField};
use deltalake::datafusion::scalar::ScalarValue;
use deltalake::DeltaTable;

use super::merge::quote;
use super::table_name;
use crate::error::{Error, Result};
use crate::storage::Location;

/// At most this many ranges in a predicate; more are coalesced (a few more files scanned, never fewer).
pub const MAX_RANGES: usize = 32;

/// The files of a table a batch of keys may touch, and the key ranges that select only those.
#[derive(Debug, Clone, PartialEq)]
pub struct Touched {
    /// Files in the table.
    pub total: usize,
    /// Files whose key range holds a batch key, plus files without statistics (they may hold any key).
    pub files: usize,
    /// Files without statistics for the key column.
    pub unknown: usize,
    /// Sorted, disjoint, inclusive ranges of the key column that cover every batch key.
    pub ranges: Vec<(ScalarValue, ScalarValue)>,
    /// Per file (in the order of the snapshot's add actions), whether it may hold a batch key.
    pub holds: Vec<bool>,
    /// The paths (relative to the table) of the files that may hold a batch key.
    pub paths: Vec<String>,
    /// The touched files and new keys in groups that can each be rewritten on their own (their key
    /// ranges hold no other file): files as indices into [`Touched::paths`], keys as batch row indices.
    pub groups: Vec<Group>,
}

/// Touched files and the batch rows that belong with them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    pub files: Vec<usize>,
    pub rows: Vec<u32>,
}

/// Union-find over group nodes; a root knows whether its set holds a file.
struct Sets {
    parent: Vec<usize>,
    has_files: Vec<bool>,
}

impl Sets {
    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) -> usize {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.parent[b] = a;
            self.has_files[a] |= self.has_files[b];
        }
        a
    }
}

impl Touched {
    /// No existing row can share a key with the batch: every key is new.
    pub fn none(&self) -> bool {
        self.files == 0
    }

    /// `t."k" BETWEEN lo AND hi OR ...` (`alias.` omitted when `None`); `None` when a bound has no SQL
    /// literal form here (the caller then runs without the narrowing, which is only an optimisation).
    pub fn predicate(&self, alias: Option<&str>, column: &str) -> Option<String> {
        let col = match alias {
            Some(a) => format!("{a}.{}", quote(column)),
            None => quote(column),
        };
        let parts = self
            .ranges
            .iter()
            .map(|(lo, hi)| {
                let (l, h) = (sql_literal(lo)?, sql_literal(hi)?);
                Some(if l == h {
                    format!("{col} = {l}")
                } else {
                    format!("{col} BETWEEN {l} AND {h}")
                })
            })
            .collect::<Option<Vec<_>>>()?;
        match parts.len() {
            0 => Some("FALSE".to_string()),
            _ => Some(format!("({})", parts.join(" OR "))),
        }
    }
}

/// A scalar as an SQL literal, for the key types a table is clustered by.
fn sql_literal(v: &ScalarValue) -> Option<String> {
    use ScalarValue::*;
    match v {
        Int8(Some(x)) => Some(x.to_string()),
        Int16(Some(x)) => Some(x.to_string()),
        Int32(Some(x)) => Some(x.to_string()),
        Int64(Some(x)) => Some(x.to_string()),
        UInt8(Some(x)) => Some(x.to_string()),
        UInt16(Some(x)) => Some(x.to_string()),
        UInt32(Some(x)) => Some(x.to_string()),
        UInt64(Some(x)) => Some(x.to_string()),
        Utf8(Some(s)) | LargeUtf8(Some(s)) | Utf8View(Some(s)) => {
            Some(format!("'{}'", s.replace('\'', "''")))
        }
        Date32(Some(_)) => Some(format!("CAST('{v}' AS DATE)")),
        _ => None,
    }
}

/// The files of `table` that the (non-null) values of `keys`, a column of the table's leading key
/// `column`, may touch. `None` when the table has no files.
pub fn touched(
    table: &DeltaTable,
    location: &Location,
    column: &str,
    keys: &ArrayRef,
) -> Result<Option<Touched>> {
    let snapshot = table
        .snapshot()
        .map_err(|e| Error::delta(table_name(location), "read file statistics", e))?;
    if snapshot.log_data().num_files() == 0 {
        return Ok(None);
    }
    let files = snapshot
        .add_actions_table(true)
        .map_err(|e| Error::delta(table_name(location), "read file statistics", e))?;
    let mut touched = touched_in(&files, column, keys)?;
    let paths = files
        .column_by_name("path")
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| Error::invariant("add actions without a `path` column"))?;
    touched.paths = touched
        .holds
        .iter()
        .enumerate()
        .filter(|(_, holds)| **holds)
        .map(|(i, _)| paths.value(i).to_string())
        .collect();
    Ok(Some(touched))
}

/// The paths (relative to the table) of the files of `table` that may hold one of `keys`, values of
/// its leading key `column`.
pub fn touched_paths(
    table: &DeltaTable,
    location: &Location,
    column: &str,
    keys: &ArrayRef,
) -> Result<Vec<String>> {
    Ok(touched(table, location, column, keys)?.map_or_else(Vec::new, |t| t.paths))
}

/// [`touched`] over a flattened add-actions table (`min.<column>`, `max.<column>` per file).
pub(crate) fn touched_in(files: &RecordBatch, column: &str, keys: &ArrayRef) -> Result<Touched> {
    let arrow = |what: &'static str| move |e| Error::arrow(what, e);
    let dtype = keys.data_type().clone();
    let converter =
        RowConverter::new(vec![SortField::new(dtype.clone())]).map_err(arrow("key rows"))?;
    let rows_of = |a: &ArrayRef| -> Result<Vec<Option<OwnedRow>>> {
        let rows = converter
            .convert_columns(std::slice::from_ref(a))
            .map_err(arrow("key rows"))?;
        Ok((0..a.len())
            .map(|i| a.is_valid(i).then(|| rows.row(i).owned()))
            .collect())
    };
    // The batch's distinct keys, sorted.
    let sorted = take(
        keys,
        &sort_to_indices(keys, None, None).map_err(arrow("sorting keys"))?,
        None,
    )
    .map_err(arrow("sorting keys"))?;
    let mut points: Vec<(OwnedRow, usize)> = Vec::new();
    for (i, r) in rows_of(&sorted)?.into_iter().enumerate() {
        if let Some(r) = r {
            if points.last().is_none_or(|(p, _)| *p != r) {
                points.push((r, i));
            }
        }
    }
    let bound = |name: String| -> Result<Vec<Option<OwnedRow>>> {
        match files.column_by_name(&name) {
            Some(c) => rows_of(&cast(c, &dtype).map_err(arrow("file statistics"))?),
            None => Ok(vec![None; files.num_rows()]),
        }
    };
    let (mins, maxs) = (
        bound(format!("min.{column}"))?,
        bound(format!("max.{column}"))?,
    );
    let mut out = Touched {
        total: files.num_rows(),
        files: 0,
        unknown: 0,
        ranges: Vec::new(),
        holds: Vec::with_capacity(files.num_rows()),
        paths: Vec::new(),
        groups: Vec::new(),
    };
    // gap i (between points i and i+1) holds a whole untouched file: do not merge across it.
    let mut blocked = vec![false; points.len()];
    for (lo, hi) in mins.iter().zip(&maxs) {
        let (Some(lo), Some(hi)) = (lo, hi) else {
            out.unknown += 1;
            out.files += 1;
            out.holds.push(true);
            continue;
        };
        // First point >= lo: the file is touched when that point is also <= hi.
        let j = points.partition_point(|(p, _)| p < lo);
        let holds = points.get(j).is_some_and(|(p, _)| p <= hi);
        if holds {
            out.files += 1;
        } else if j > 0 && j < points.len() {
            blocked[j - 1] = true;
        }
        out.holds.push(holds);
    }
    out.groups = groups(&out.holds, &mins, &maxs, &points, &blocked, &rows_of(keys)?);
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for (i, (_, at)) in points.iter().enumerate() {
        match ranges.last_mut() {
            Some(last) if !blocked[i - 1] => last.1 = *at,
            _ => ranges.push((*at, *at)),
        }
    }
    if ranges.len() > MAX_RANGES {
        let per = ranges.len().div_ceil(MAX_RANGES);
        ranges = ranges
            .chunks(per)
            .map(|c| (c[0].0, c[c.len() - 1].1))
            .collect();
    }
    let scalar = |i: usize| {
        ScalarValue::try_from_array(&sorted, i).map_err(|e| Error::query("-", "key range", e))
    };
    out.ranges = ranges
        .into_iter()
        .map(|(lo, hi)| Ok((scalar(lo)?, scalar(hi)?)))
        .collect::<Result<_>>()?;
    Ok(out)
}

/// The rewrite groups of [`Touched::groups`]. A batch key joins the touched files whose range holds it
/// (files holding a common key are one group); a new key (no file holds it) joins the group of the key
/// before it when no untouched file lies between them, else starts a group of its own. Adjacent keys
/// in different files stay apart, so a batch touching every file still rewrites them one at a time.
fn groups(
    holds: &[bool],
    mins: &[Option<OwnedRow>],
    maxs: &[Option<OwnedRow>],
    points: &[(OwnedRow, usize)],
    blocked: &[bool],
    keys: &[Option<OwnedRow>],
) -> Vec<Group> {
    let held: Vec<usize> = (0..holds.len()).filter(|&f| holds[f]).collect();
    // A touched file without statistics could hold any key: one group for everything.
    if held.iter().any(|&f| mins[f].is_none() || maxs[f].is_none()) {
        return vec![Group {
            files: (0..held.len()).collect(),
            rows: (0..keys.len() as u32).collect(),
        }];
    }
    let mut sets = Sets {
        parent: (0..held.len() + points.len() + 1).collect(),
        has_files: (0..held.len() + points.len() + 1)
            .map(|n| n < held.len())
            .collect(),
    };
    let mut node_of_point = vec![0; points.len()];
    for (i, (p, _)) in points.iter().enumerate() {
        let holders: Vec<usize> = (0..held.len())
            .filter(|&h| {
                let f = held[h];
                matches!((&mins[f], &maxs[f]), (Some(lo), Some(hi)) if lo <= p && p <= hi)
            })
            .collect();
        let prev = (i > 0 && !blocked[i - 1]).then(|| sets.find(node_of_point[i - 1]));
        node_of_point[i] = match (holders.first(), prev) {
            (Some(&first), prev) => {
                for &h in &holders[1..] {
                    sets.union(first, h);
                }
                match prev {
                    // New keys just before this file's keys join it.
                    Some(pr) if !sets.has_files[pr] => sets.union(first, pr),
                    _ => sets.find(first),
                }
            }
            (None, Some(pr)) => pr,
            (None, None) => held.len() + i,
        };
    }
    let null_node = held.len() + points.len();
    let mut by_root: std::collections::BTreeMap<usize, Group> = Default::default();
    for h in 0..held.len() {
        let root = sets.find(h);
        by_root.entry(root).or_default().files.push(h);
    }
    for (r, k) in keys.iter().enumerate() {
        let node = match k {
            Some(k) => match points.binary_search_by(|(p, _)| p.cmp(k)) {
                Ok(i) => node_of_point[i],
                Err(_) => null_node,
            },
            None => null_node, // a null key matches no row
        };
        let root = sets.find(node);
        by_root.entry(root).or_default().rows.push(r as u32);
    }
    by_root.into_values().collect()
}

/// Files and bytes of `before` that are gone from `after`: what a MERGE rewrote (or deleted).
pub fn rewritten(before: &DeltaTable, after: &DeltaTable) -> (usize, u64) {
    let paths = |t: &DeltaTable| -> HashMap<String, i64> {
        t.snapshot()
            .map(|s| {
                s.log_data()
                    .iter()
                    .map(|f| (f.path().into_owned(), f.size()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let after = paths(after);
    paths(before)
        .into_iter()
        .filter(|(p, _)| !after.contains_key(p))
        .fold((0, 0), |(n, b), (_, size)| (n + 1, b + size.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{Int64Array, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn files(ranges: &[(Option<i64>, Option<i64>)]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("min.id", DataType::Int64, true),
            Field::new("max.id", DataType::Int64, true),
        ]);
        let lo: Int64Array = ranges.iter().map(|r| r.0).collect();
        let hi: Int64Array = ranges.iter().map(|r| r.1).collect();
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(lo), Arc::new(hi)]).unwrap()
    }

    /// Files that all have statistics, one per (min, max).
    fn spans(ranges: &[(i64, i64)]) -> RecordBatch {
        files(
            &ranges
                .iter()
                .map(|&(a, b)| (Some(a), Some(b)))
                .collect::<Vec<_>>(),
        )
    }

    /// Each group as (files, rows).
    fn grouped(t: &Touched) -> Vec<(Vec<usize>, Vec<u32>)> {
        t.groups
            .iter()
            .map(|g| (g.files.clone(), g.rows.clone()))
            .collect()
    }

    fn keys(k: &[i64]) -> ArrayRef {
        Arc::new(Int64Array::from(k.to_vec()))
    }

    fn bounds(t: &Touched) -> Vec<(i64, i64)> {
        t.ranges
            .iter()
            .map(|(a, b)| match (a, b) {
                (ScalarValue::Int64(Some(a)), ScalarValue::Int64(Some(b))) => (*a, *b),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn keys_in_two_of_five_files_make_two_ranges_that_skip_the_rest() {
        let f = spans(&[(0, 99), (100, 199), (200, 299), (300, 399), (400, 499)]);
        // 5 in the first file, 450 and 460 in the last, 999 beyond every file (a new key).
        let t = touched_in(&f, "id", &keys(&[460, 5, 999, 450])).unwrap();
        assert_eq!((t.total, t.files, t.unknown), (5, 2, 0));
        assert_eq!(bounds(&t), vec![(5, 5), (450, 999)]);
        assert_eq!(
            t.predicate(Some("t"), "id").unwrap(),
            "(t.\"id\" = 5 OR t.\"id\" BETWEEN 450 AND 999)"
        );
    }

    #[test]
    fn each_touched_file_is_its_own_group_and_new_keys_join_their_neighbour() {
        let f = spans(&[(0, 9), (10, 19), (20, 29), (40, 49)]);
        // 5 and 15 in adjacent files, 25 in the third, 33 new just after it, 45 in the last, 99 new
        // after everything; the fourth file is touched too.
        let k = keys(&[5, 15, 25, 33, 45, 99, 3]);
        let t = touched_in(&f, "id", &k).unwrap();
        let groups = grouped(&t);
        assert_eq!(
            groups,
            vec![
                (vec![0], vec![0, 6]),
                (vec![1], vec![1]),
                (vec![2], vec![2, 3]),
                (vec![3], vec![4, 5]),
            ]
        );
    }

    #[test]
    fn a_new_key_with_an_untouched_file_before_it_starts_its_own_group() {
        let f = spans(&[(0, 9), (10, 19)]);
        // 5 in the first file; 30 is new, and the untouched [10, 19] lies between them.
        let t = touched_in(&f, "id", &keys(&[30, 5])).unwrap();
        let groups = grouped(&t);
        assert_eq!(groups, vec![(vec![0], vec![1]), (vec![], vec![0])]);
    }

    #[test]
    fn only_new_keys_touch_nothing() {
        let f = spans(&[(0, 99), (100, 199)]);
        let t = touched_in(&f, "id", &keys(&[200, 201, 250])).unwrap();
        assert!(t.none());
        assert_eq!(bounds(&t), vec![(200, 250)]);
    }

    #[test]
    fn a_file_without_statistics_counts_as_touched_and_blocks_nothing() {
        let f = files(&[(Some(0), Some(9)), (None, None), (Some(20), Some(29))]);
        let t = touched_in(&f, "id", &keys(&[15, 40])).unwrap();
        assert_eq!((t.files, t.unknown), (1, 1));
        assert!(!t.none());
        // [20, 29] lies wholly between 15 and 40, so the two keys stay apart; the file without
        // statistics is scanned whatever the ranges (pruning keeps it).
        assert_eq!(bounds(&t), vec![(15, 15), (40, 40)]);
    }

    #[test]
    fn too_many_ranges_are_coalesced_but_still_cover_every_key() {
        let f = files(
            &(0..200)
                .map(|i| (Some(i * 10), Some(i * 10 + 1)))
                .collect::<Vec<_>>(),
        );
        let k: Vec<i64> = (0..200).map(|i| i * 10).collect();
        let t = touched_in(&f, "id", &keys(&k)).unwrap();
        assert_eq!(t.files, 200);
        assert!(t.ranges.len() <= MAX_RANGES);
        let b = bounds(&t);
        assert!(k
            .iter()
            .all(|x| b.iter().any(|(lo, hi)| lo <= x && x <= hi)));
    }

    #[test]
    fn string_keys_are_quoted() {
        let schema = Schema::new(vec![
            Field::new("min.k", DataType::Utf8, true),
            Field::new("max.k", DataType::Utf8, true),
        ]);
        let f = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec!["a"])),
                Arc::new(StringArray::from(vec!["m"])),
            ],
        )
        .unwrap();
        let k: ArrayRef = Arc::new(StringArray::from(vec!["o'neil"]));
        let t = touched_in(&f, "k", &k).unwrap();
        assert!(t.none());
        assert_eq!(t.predicate(None, "k").unwrap(), "(\"k\" = 'o''neil')");
    }
}
