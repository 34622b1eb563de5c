//! A clustered table's file layout: each file's key range (from its statistics), which files
//! compaction should merge so ranges stay disjoint and files near the target size, and the sorted,
//! equal-size writes that both a silver rewrite and a compaction produce.

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::compute::{cast, lexsort_to_indices, take_record_batch, SortColumn};
use deltalake::arrow::row::{OwnedRow, RowConverter, SortField};
use deltalake::kernel::Add;
use deltalake::DeltaTable;

use super::{table_name, write_batches};
use crate::error::{Error, Result};
use crate::schema;
use crate::storage::Location;

/// A file is small below this fraction of the target size: compaction merges it with its neighbours,
/// and `status` counts it in the small-file ratio.
pub const SMALL_FILE_FRACTION: f64 = 0.5;

/// One live file of a table and the range of its leading key column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpan {
    /// Path relative to the table, as in its log.
    pub path: String,
    pub size: i64,
    /// Key range from the file's statistics; `None` when the file has none for the column.
    pub range: Option<(OwnedRow, OwnedRow)>,
}

/// Every live file of `table` with its range of `column` (the leading key), if one is given.
pub fn file_spans(
    table: &DeltaTable,
    location: &Location,
    column: Option<&str>,
) -> Result<Vec<FileSpan>> {
    let fail = |e| Error::delta(table_name(location), "read file statistics", e);
    let snapshot = table.snapshot().map_err(fail)?;
    if snapshot.log_data().num_files() == 0 {
        return Ok(Vec::new());
    }
    let files = snapshot.add_actions_table(true).map_err(fail)?;
    let paths = files
        .column_by_name("path")
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| Error::invariant("add actions without a `path` column"))?;
    let sizes = files
        .column_by_name("size_bytes")
        .and_then(|c| {
            c.as_primitive_opt::<deltalake::arrow::datatypes::Int64Type>()
                .cloned()
        })
        .ok_or_else(|| Error::invariant("add actions without a `size_bytes` column"))?;
    let ranges = match column {
        Some(column) => key_ranges(&files, &snapshot.snapshot().arrow_schema(), column)?,
        None => vec![None; files.num_rows()],
    };
    Ok(ranges
        .into_iter()
        .enumerate()
        .map(|(i, range)| FileSpan {
            path: paths.value(i).to_string(),
            size: sizes.value(i),
            range,
        })
        .collect())
}

/// Whether any live row of `table` may hold a non-null `column`, from the files' statistics (a file
/// without statistics for it may).
pub fn column_has_values(table: &DeltaTable, location: &Location, column: &str) -> Result<bool> {
    let fail = |e| Error::delta(table_name(location), "read file statistics", e);
    let snapshot = table.snapshot().map_err(fail)?;
    if snapshot.log_data().num_files() == 0 {
        return Ok(false);
    }
    let files = snapshot.add_actions_table(true).map_err(fail)?;
    let int = |name: &str| {
        files.column_by_name(name).and_then(|c| {
            cast(c, &deltalake::arrow::datatypes::DataType::Int64)
                .ok()
                .map(|c| {
                    c.as_primitive::<deltalake::arrow::datatypes::Int64Type>()
                        .clone()
                })
        })
    };
    let (Some(nulls), Some(records)) = (int(&format!("null_count.{column}")), int("num_records"))
    else {
        return Ok(true);
    };
    Ok((0..files.num_rows())
        .any(|i| nulls.is_null(i) || records.is_null(i) || nulls.value(i) < records.value(i)))
}

/// Per file of a flattened add-actions table, the range of `column` from its statistics.
fn key_ranges(
    files: &RecordBatch,
    schema: &deltalake::arrow::datatypes::Schema,
    column: &str,
) -> Result<Vec<Option<(OwnedRow, OwnedRow)>>> {
    let dtype = schema
        .field_with_name(column)
        .map_err(|e| Error::arrow("key column", e))?
        .data_type()
        .clone();
    let converter = RowConverter::new(vec![SortField::new(dtype.clone())])
        .map_err(|e| Error::arrow("key rows", e))?;
    let bound = |name: String| -> Result<Vec<Option<OwnedRow>>> {
        let Some(c) = files.column_by_name(&name) else {
            return Ok(vec![None; files.num_rows()]);
        };
        let c = cast(c, &dtype).map_err(|e| Error::arrow("file statistics", e))?;
        let rows = converter
            .convert_columns(std::slice::from_ref(&c))
            .map_err(|e| Error::arrow("key rows", e))?;
        Ok((0..c.len())
            .map(|i| c.is_valid(i).then(|| rows.row(i).owned()))
            .collect())
    };
    let (mins, maxs) = (
        bound(format!("min.{column}"))?,
        bound(format!("max.{column}"))?,
    );
    Ok(mins
        .into_iter()
        .zip(maxs)
        .map(|(lo, hi)| lo.zip(hi))
        .collect())
}

/// Bins of small files of an unclustered table (bronze, quarantine), in the order given, each up to
/// about `target` bytes; only bins of two files or more.
pub fn small_file_bins(files: &[FileSpan], target: u64) -> Vec<Vec<usize>> {
    let mut bins = Vec::new();
    let mut run: Vec<usize> = Vec::new();
    let mut bytes = 0u64;
    for (i, f) in files.iter().enumerate() {
        if (f.size as f64) >= target as f64 * SMALL_FILE_FRACTION {
            continue;
        }
        run.push(i);
        bytes += f.size.max(0) as u64;
        if bytes >= target {
            bins.push(std::mem::take(&mut run));
            bytes = 0;
        }
    }
    if run.len() > 1 {
        bins.push(run);
    }
    bins.retain(|b| b.len() > 1);
    bins
}

/// The sets of files (indices into `files`) that compaction rewrites, each into sorted files of about
/// `target` bytes:
/// - files whose key ranges overlap (they make a batch touch several files for one key range), with
///   the small files next to them;
/// - runs of small files adjacent in key order, up to about `target` bytes each;
/// - all files without statistics together (they may hold any key).
///
/// A file that is neither small nor overlapping is left alone, so a compacted table is not rewritten.
pub fn compaction_bins(files: &[FileSpan], target: u64) -> Vec<Vec<usize>> {
    let small = |f: &FileSpan| (f.size as f64) < target as f64 * SMALL_FILE_FRACTION;
    let mut bins: Vec<Vec<usize>> = Vec::new();
    let unknown: Vec<usize> = (0..files.len())
        .filter(|&i| files[i].range.is_none())
        .collect();
    if unknown.len() > 1 || (files.len() > 1 && unknown.iter().any(|&i| small(&files[i]))) {
        bins.push(unknown);
    }
    let mut order: Vec<usize> = (0..files.len())
        .filter(|&i| files[i].range.is_some())
        .collect();
    let range = |i: usize| files[i].range.as_ref().map(|(lo, hi)| (lo, hi));
    order.sort_by(|&a, &b| range(a).cmp(&range(b)));
    // Components of overlapping ranges, in key order.
    let mut components: Vec<Vec<usize>> = Vec::new();
    let mut reach: Option<&OwnedRow> = None;
    for &i in &order {
        let Some((lo, hi)) = range(i) else { continue };
        match (components.last_mut(), reach) {
            (Some(c), Some(r)) if lo <= r => {
                c.push(i);
                if hi > r {
                    reach = Some(hi);
                }
            }
            _ => {
                components.push(vec![i]);
                reach = Some(hi);
            }
        }
    }
    let bytes = |bin: &[usize]| {
        bin.iter()
            .map(|&i| files[i].size.max(0) as u64)
            .sum::<u64>()
    };
    let mut run: Vec<usize> = Vec::new();
    let flush = |run: &mut Vec<usize>, bins: &mut Vec<Vec<usize>>| {
        if run.len() > 1 {
            bins.push(std::mem::take(run));
        } else {
            run.clear();
        }
    };
    for c in components {
        let overlapping = c.len() > 1;
        if !overlapping && !small(&files[c[0]]) {
            flush(&mut run, &mut bins);
            continue;
        }
        if overlapping && !run.is_empty() && bytes(&run) >= target {
            flush(&mut run, &mut bins);
        }
        run.extend(c);
        if bytes(&run) >= target {
            // An overlapping component always goes out as (part of) a bin, even on its own.
            if run.len() > 1 {
                bins.push(std::mem::take(&mut run));
            } else {
                run.clear();
            }
        }
    }
    flush(&mut run, &mut bins);
    bins
}

/// `batch` sorted by `keys` (nulls first), so files written from it cover narrow key ranges.
pub fn sorted_by_keys(batch: &RecordBatch, keys: &[String]) -> Result<RecordBatch> {
    if keys.is_empty() || batch.num_rows() < 2 {
        return Ok(batch.clone());
    }
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    let columns: Vec<SortColumn> = schema::columns(batch, &names, "sorting by key")?
        .into_iter()
        .map(|values| SortColumn {
            values,
            options: None,
        })
        .collect();
    let order =
        lexsort_to_indices(&columns, None).map_err(|e| Error::arrow("sorting by key", e))?;
    take_record_batch(batch, &order).map_err(|e| Error::arrow("sorting by key", e))
}

/// Writes `rows` (already sorted by key) as equal files of about `target` bytes, `bytes` being the
/// rows' estimated size on disk: no small remainder file for the next batch to touch. Not committed.
pub async fn write_sorted(
    table: &DeltaTable,
    location: &Location,
    rows: &RecordBatch,
    bytes: f64,
    target: u64,
    unique: &[String],
) -> Result<Vec<Add>> {
    let n = rows.num_rows();
    if n == 0 {
        return Ok(Vec::new());
    }
    let parts = ((bytes / target as f64).round() as usize).clamp(1, n);
    let per = n.div_ceil(parts).max(1);
    let mut adds = Vec::new();
    for at in (0..n).step_by(per) {
        let part = rows.slice(at, per.min(n - at));
        adds.extend(write_batches(table, location, [part], None, unique).await?);
    }
    Ok(adds)
}

/// A batch's estimated size on disk: `known_bytes` for `known_rows` rows scaled to its rows, or a
/// quarter of its memory size when there is nothing to scale from (Parquet compresses about 4x).
pub fn estimated_bytes(rows: &RecordBatch, known_bytes: i64, known_rows: usize) -> f64 {
    match known_rows {
        0 => rows.get_array_memory_size() as f64 / 4.0,
        n => known_bytes as f64 * rows.num_rows() as f64 / n as f64,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn row(v: i64) -> OwnedRow {
        let conv = RowConverter::new(vec![SortField::new(
            deltalake::arrow::datatypes::DataType::Int64,
        )])
        .unwrap();
        let a: deltalake::arrow::array::ArrayRef =
            Arc::new(deltalake::arrow::array::Int64Array::from(vec![v]));
        conv.convert_columns(&[a]).unwrap().row(0).owned()
    }

    fn file(lo: i64, hi: i64, size: i64) -> FileSpan {
        FileSpan {
            path: format!("{lo}-{hi}.parquet"),
            size,
            range: Some((row(lo), row(hi))),
        }
    }

    fn paths(files: &[FileSpan], bins: Vec<Vec<usize>>) -> Vec<Vec<String>> {
        bins.into_iter()
            .map(|b| {
                let mut p: Vec<String> = b.iter().map(|&i| files[i].path.clone()).collect();
                p.sort();
                p
            })
            .collect()
    }

    #[test]
    fn a_compacted_layout_is_left_alone() {
        let files = [file(0, 9, 100), file(10, 19, 100), file(20, 29, 90)];
        assert!(compaction_bins(&files, 100).is_empty());
    }

    #[test]
    fn small_neighbours_merge_up_to_the_target_and_big_files_split_runs() {
        // 30..39 is big: the small files before and after it are not merged across it.
        let files = [
            file(0, 9, 30),
            file(10, 19, 30),
            file(20, 29, 30),
            file(30, 39, 100),
            file(40, 49, 10),
            file(50, 59, 10),
            file(60, 69, 10),
        ];
        assert_eq!(
            paths(&files, compaction_bins(&files, 80)),
            vec![
                vec!["0-9.parquet", "10-19.parquet", "20-29.parquet"],
                vec!["40-49.parquet", "50-59.parquet", "60-69.parquet"],
            ]
        );
        // A lone small file has nothing to merge with.
        let lone = [file(0, 9, 100), file(10, 19, 5), file(20, 29, 100)];
        assert!(compaction_bins(&lone, 100).is_empty());
    }

    #[test]
    fn small_unclustered_files_are_packed_up_to_the_target() {
        let f = |size| FileSpan {
            path: format!("f{size}"),
            size,
            range: None,
        };
        // Bronze's files have no order to keep: a big file does not split a run.
        let files = [f(10), f(10), f(100), f(30), f(30), f(30), f(20)];
        assert_eq!(small_file_bins(&files, 100), vec![vec![0, 1, 3, 4, 5]]);
        assert!(small_file_bins(&[f(10), f(100)], 100).is_empty());
    }

    #[test]
    fn overlapping_files_are_always_rewritten_together() {
        // Two big files overlapping on 50..60, and a third overlapping the second.
        let files = [file(0, 60, 100), file(50, 120, 100), file(110, 130, 100)];
        assert_eq!(
            paths(&files, compaction_bins(&files, 100)),
            vec![vec!["0-60.parquet", "110-130.parquet", "50-120.parquet"]]
        );
    }
}
