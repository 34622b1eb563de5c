//! Compaction: chosen files read, their rows written back as fewer files, one `dataChange: false`
//! commit. Keyed, unpartitioned tables (silver, tombstones, gold) are re-clustered: the files
//! [`lake::compaction_bins`] picks (overlapping or small) are sorted by key into disjoint files of the
//! target size, so a batch keeps touching one file per key range. Other tables (bronze, quarantine,
//! partitioned silver) have their small files bin-packed as they are.
//!
//! Why not delta-rs's OPTIMIZE: it concatenates small files from anywhere in the key space (files that
//! span it, which every later batch touches), it cannot be limited to the files bronze's consumers
//! have read, and its commit drops the commit properties' application transactions: with delta-rs
//! ignoring `dataChange: false` removes in its delete/delete conflict check, those transactions (the
//! table's watermarks, see [`super::Maintainer::commit_properties`]) are what makes a compaction and a
//! concurrent step that rewrote the same file conflict instead of both committing (duplicate rows).

use std::collections::HashMap;

use deltalake::arrow::compute::concat_batches;
use deltalake::kernel::Action;
use deltalake::protocol::DeltaOperation;

use super::consumers::Consumed;
use super::{open, Maintainer, Outcome, Target, TaskReport};
use crate::error::{Error, Result};
use crate::lake;
use crate::schema;

/// At most this many bytes are rewritten per run (the rest waits for the next run): bounds a run's
/// time whatever the backlog.
const MAX_BYTES_PER_RUN: u64 = 2 << 30;

pub(super) async fn compact(
    m: &Maintainer,
    target: &Target,
    consumed: Consumed,
    mut r: TaskReport,
) -> Result<TaskReport> {
    let mut table = open(&target.location).await?;
    let latest = table.version().map_or(0, |v| v as i64);
    let lead = target.keys.first().map(String::as_str);
    let mut spans = lake::file_spans(&table, &target.location, lead)?;
    if matches!(target.readers, super::Readers::Silver(_)) {
        // Only files every consumer has read: a pending step still reads the others by path, and
        // vacuum would delete them once removed. The unread files are those the commits after the
        // watermark added, read by name (log cleanup keeps those commits); the table as of the
        // watermark may no longer be loadable (an idle table whose log was cleaned up to a
        // maintenance commit), and need not be.
        match consumed {
            Consumed::Nothing => return Ok(r.skipped("silver has not read this table yet")),
            Consumed::Upto(v) if v < latest => {
                let unread = lake::files_added(&table, &target.location, v + 1, latest).await?;
                spans.retain(|f| !unread.contains(&lake::decoded_path(&f.path)));
            }
            _ => {}
        }
    }
    let bins = match lead {
        Some(_) => lake::compaction_bins(&spans, target.target_file_size),
        None => lake::small_file_bins(&spans, target.target_file_size),
    };
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
            &lake::unique_columns(&target.keys, None),
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
    let props = m.commit_properties(target, &table, "compact").await?;
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
