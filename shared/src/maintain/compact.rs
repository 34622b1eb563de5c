//! Compaction. Keyed, unpartitioned tables (silver, tombstones, gold) are re-clustered: the files
//! [`lake::compaction_bins`] picks are read, sorted by key and written back as disjoint files of the
//! target size, so a batch keeps touching one file per key range (the silver-at-scale layout).
//! delta-rs's OPTIMIZE would concatenate small files from anywhere in the key space into files that
//! span it. Other tables (bronze, quarantine, partitioned silver) are bin-packed by delta-rs's OPTIMIZE.

use std::collections::HashMap;
use std::num::NonZeroU64;

use deltalake::arrow::compute::concat_batches;
use deltalake::kernel::Action;
use deltalake::operations::optimize::OptimizeType;
use deltalake::protocol::DeltaOperation;

use super::consumers::Consumed;
use super::{open, Maintainer, Outcome, Target, TaskReport};
use crate::error::{Error, Result};
use crate::lake;
use crate::schema;

/// At most this many bytes are re-clustered per run (the rest waits for the next run): bounds a run's
/// time whatever the backlog.
const MAX_BYTES_PER_RUN: u64 = 2 << 30;

pub(super) async fn compact(
    m: &Maintainer,
    target: &Target,
    consumed: Consumed,
    r: TaskReport,
) -> Result<TaskReport> {
    if target.keys.is_empty() {
        bin_pack(m, target, consumed, r).await
    } else {
        recluster(m, target, r).await
    }
}

/// delta-rs OPTIMIZE (compact) to the target size. With `compact_upto_consumed`, on the table as of the
/// version every consumer has read: files added after it are left for a later run.
async fn bin_pack(
    m: &Maintainer,
    target: &Target,
    consumed: Consumed,
    mut r: TaskReport,
) -> Result<TaskReport> {
    let mut table = open(&target.location).await?;
    let latest = table.version().map_or(0, |v| v as i64);
    if target.compact_upto_consumed {
        match consumed {
            Consumed::Nothing => return Ok(r.skipped("silver has not read this table yet")),
            Consumed::Upto(v) if v < latest => {
                table
                    .load_version(v as u64)
                    .await
                    .map_err(|e| Error::delta(&target.label, "load consumed version", e))?;
            }
            _ => {}
        }
    }
    let size = NonZeroU64::new(target.target_file_size.max(1))
        .ok_or_else(|| Error::invariant("zero target file size"))?;
    let (after, metrics) = table
        .optimize()
        .with_type(OptimizeType::Compact)
        .with_target_size(size)
        .with_commit_properties(m.commit_properties(target, "compact"))
        .await
        .map_err(|e| Error::delta(&target.label, "compact", e))?;
    if metrics.num_files_removed > 0 {
        r.outcome = Outcome::Done;
        r.version = after.version().map(|v| v as i64);
        r.files_removed = metrics.num_files_removed as usize;
        r.files_added = metrics.num_files_added as usize;
    }
    Ok(r)
}

/// Re-clusters a keyed, unpartitioned table: one commit removing the binned files and adding their rows
/// sorted by key, `dataChange: false`.
async fn recluster(m: &Maintainer, target: &Target, mut r: TaskReport) -> Result<TaskReport> {
    let mut table = open(&target.location).await?;
    let spans = lake::file_spans(&table, &target.location, &target.keys[0])?;
    let bins = lake::compaction_bins(&spans, target.target_file_size);
    if bins.is_empty() {
        return Ok(r);
    }
    let snapshot = table
        .snapshot()
        .map_err(|e| Error::delta(&target.label, "compact", e))?;
    let arrow = snapshot.snapshot().arrow_schema();
    let live: HashMap<String, _> = snapshot
        .log_data()
        .iter()
        .map(|f| (f.path().into_owned(), f))
        .collect();
    let mut actions = Vec::new();
    let mut budget = MAX_BYTES_PER_RUN;
    for bin in bins {
        let bytes: i64 = bin.iter().map(|&i| spans[i].size).sum();
        if bytes as u64 > budget && !actions.is_empty() {
            break;
        }
        budget = budget.saturating_sub(bytes as u64);
        let mut parts = Vec::new();
        for &i in &bin {
            for b in lake::read_data_file(&table, &target.location, &spans[i].path, None).await? {
                parts.push(schema::as_schema(&b, &arrow, |_, _| None)?);
            }
        }
        let rows = concat_batches(&arrow, &parts).map_err(|e| Error::arrow("compaction", e))?;
        let rows = lake::sorted_by_keys(&rows, &target.keys)?;
        let estimate = lake::estimated_bytes(&rows, bytes, rows.num_rows());
        let adds = lake::write_sorted(
            &table,
            &target.location,
            &rows,
            estimate,
            target.target_file_size,
        )
        .await?;
        r.files_removed += bin.len();
        r.files_added += adds.len();
        for &i in &bin {
            let file = live.get(&spans[i].path).ok_or_else(|| {
                Error::invariant(format!("file {} not in the snapshot", spans[i].path))
            })?;
            actions.push(Action::Remove(file.remove_action(false)));
        }
        actions.extend(adds.into_iter().map(|mut a| {
            a.data_change = false;
            Action::Add(a)
        }));
    }
    let props = m.commit_properties(target, "compact");
    let operation = DeltaOperation::Optimize {
        predicate: None,
        target_size: target.target_file_size as i64,
    };
    let version = lake::commit_with(&mut table, actions, props, operation)
        .await
        .map_err(|e| Error::delta(&target.label, "compact", e))?;
    r.outcome = Outcome::Done;
    r.version = Some(version);
    Ok(r)
}
