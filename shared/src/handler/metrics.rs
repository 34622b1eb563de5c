//! What each step publishes as metrics (EMF, [`crate::telemetry::emf`]), namespace `Lakehouse`. Per
//! (Layer, Table) and per (Layer):
//!
//! - every step: `StepDuration` (ms), `FreshnessSeconds` (now minus when the oldest change behind the
//!   step landed, for steps an upstream commit triggered);
//! - bronze: `RowsIn` (rows read, quarantined ones included), `RowsQuarantined`;
//! - silver: `RowsIn` (bronze rows read), `RowsApplied` (changes merged), `RowsQuarantined`;
//! - gold: `RowsApplied` (rows upserted and deleted).
//!
//! Per (Layer) only (each per-table metric is billed per month): `CommitAttempts`; bronze
//! `ObjectsQuarantined`, `ObjectsFailed`; gold `GroupsTouched`; maintenance (Layer `maintain`, one
//! document per run): `TasksFailed`, `FilesRemoved`, `FilesAdded`.

use std::time::Duration;

use crate::bronze::{BronzeCommit, ObjectStatus};
use crate::gold::GoldCommit;
use crate::maintain::{MaintenanceReport, Outcome};
use crate::silver::SilverCommit;
use crate::telemetry::emf::{Metrics, Unit};

/// The metrics every step has.
fn step(layer: &str, table: &str, took: Duration, attempts: u32, since_ms: Option<i64>) -> Metrics {
    let m = Metrics::step(layer, table)
        .with("StepDuration", took.as_secs_f64() * 1e3, Unit::Milliseconds)
        .per_layer("CommitAttempts", f64::from(attempts), Unit::Count);
    match since_ms {
        Some(since) => {
            let lag = (chrono::Utc::now().timestamp_millis() - since).max(0) as f64 / 1e3;
            m.with("FreshnessSeconds", lag, Unit::Seconds)
        }
        None => m,
    }
}

pub(super) fn bronze(c: &BronzeCommit, took: Duration, since_ms: Option<i64>) -> Metrics {
    let count =
        |f: fn(&ObjectStatus) -> bool| c.objects.iter().filter(|o| f(&o.status)).count() as f64;
    step("bronze", &c.table, took, c.attempts, since_ms)
        .with(
            "RowsIn",
            (c.rows() + c.quarantined_rows()) as f64,
            Unit::Count,
        )
        .with("RowsQuarantined", c.quarantined_rows() as f64, Unit::Count)
        .per_layer(
            "ObjectsQuarantined",
            count(|s| matches!(s, ObjectStatus::Quarantined { .. })),
            Unit::Count,
        )
        .per_layer(
            "ObjectsFailed",
            count(|s| matches!(s, ObjectStatus::Failed { .. })),
            Unit::Count,
        )
}

pub(super) fn silver(c: &SilverCommit, took: Duration, since_ms: Option<i64>) -> Metrics {
    step("silver", &c.table, took, c.attempts, since_ms)
        .with("RowsIn", c.read as f64, Unit::Count)
        .with("RowsApplied", c.changes as f64, Unit::Count)
        .with("RowsQuarantined", c.rejected as f64, Unit::Count)
}

pub(super) fn gold(c: &GoldCommit, took: Duration, since_ms: Option<i64>) -> Metrics {
    step("gold", &c.view, took, c.attempts, since_ms)
        .per_layer("GroupsTouched", c.groups_touched as f64, Unit::Count)
        .with("RowsApplied", (c.upserted + c.deleted) as f64, Unit::Count)
}

/// One document per run (Table `all`, or the one table a run was asked for), per layer only.
pub(super) fn maintenance(report: &MaintenanceReport, table: Option<&str>) -> Metrics {
    let sum = |f: fn(&crate::maintain::TaskReport) -> usize| {
        report.tasks.iter().map(f).sum::<usize>() as f64
    };
    Metrics::step("maintain", table.unwrap_or("all"))
        .per_layer(
            "TasksFailed",
            sum(|t| usize::from(t.outcome == Outcome::Failed)),
            Unit::Count,
        )
        .per_layer("FilesRemoved", sum(|t| t.files_removed), Unit::Count)
        .per_layer("FilesAdded", sum(|t| t.files_added), Unit::Count)
}
