//! What each step publishes as metrics (EMF, [`crate::telemetry::emf`]), namespace `Lakehouse`,
//! dimensions (Layer, Table) and (Layer):
//!
//! - every step: `StepDuration` (ms), `CommitAttempts`, `FreshnessSeconds` (now minus when the oldest
//!   change behind the step landed: the table's staleness as its readers see it after the step);
//! - bronze: `RowsIn`, `RowsQuarantined`, `ObjectsQuarantined`, `ObjectsFailed`;
//! - silver: `RowsIn` (bronze rows read), `RowsApplied` (changes merged), `RowsQuarantined`;
//! - gold: `GroupsTouched`, `RowsApplied` (rows upserted and deleted);
//! - maintenance (Layer `maintain`, Table `<layer>/<name>`): `TasksFailed`, `FilesRemoved`, `FilesAdded`.

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
        .with("CommitAttempts", f64::from(attempts), Unit::Count);
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
        .with("RowsIn", c.rows() as f64, Unit::Count)
        .with("RowsQuarantined", c.quarantined_rows() as f64, Unit::Count)
        .with(
            "ObjectsQuarantined",
            count(|s| matches!(s, ObjectStatus::Quarantined { .. })),
            Unit::Count,
        )
        .with(
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
        .with("GroupsTouched", c.groups_touched as f64, Unit::Count)
        .with("RowsApplied", (c.upserted + c.deleted) as f64, Unit::Count)
}

pub(super) fn maintenance(report: &MaintenanceReport) -> Vec<Metrics> {
    let mut tables: Vec<&str> = report.tasks.iter().map(|t| t.table.as_str()).collect();
    tables.dedup();
    tables
        .into_iter()
        .map(|table| {
            let tasks = report.tasks.iter().filter(|t| t.table == table);
            let sum = |f: fn(&crate::maintain::TaskReport) -> usize| {
                tasks.clone().map(f).sum::<usize>() as f64
            };
            Metrics::step("maintain", table)
                .with(
                    "TasksFailed",
                    sum(|t| usize::from(t.outcome == Outcome::Failed)),
                    Unit::Count,
                )
                .with("FilesRemoved", sum(|t| t.files_removed), Unit::Count)
                .with("FilesAdded", sum(|t| t.files_added), Unit::Count)
        })
        .collect()
}
