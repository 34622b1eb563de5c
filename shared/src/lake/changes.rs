//! The change data feed of a table: the row changes of a range of versions (gold's input).

use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::{DataType, Schema};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::{DeltaTable, DeltaTableError};

use super::{scan::plain_strings, table_name};
use crate::error::{Error, Result};
use crate::storage::Location;

/// The row changes of versions `from..=to` of a table with the change data feed on: inserts, both
/// images of updates and deletes, without the feed's own columns.
pub async fn changes(
    table: &DeltaTable,
    location: &Location,
    from: i64,
    to: i64,
) -> Result<Vec<RecordBatch>> {
    let fail = |e: DeltaTableError| Error::delta(table_name(location), "read change feed", e);
    let ctx = SessionContext::new();
    table
        .update_datafusion_session(&ctx.state())
        .map_err(fail)?;
    let plan = table
        .clone()
        .scan_cdf()
        .with_starting_version(from as _)
        .with_ending_version(to as _)
        .build(&ctx.state(), None)
        .await;
    let batches = match plan {
        Ok(plan) => deltalake::datafusion::physical_plan::collect(plan, ctx.task_ctx())
            .await
            .map_err(|e| Error::query(table_name(location), "read change feed", e)),
        Err(e) => Err(fail(e)),
    };
    // A start that log cleanup removed says so, with the oldest version the feed can start from.
    let batches = match batches {
        Ok(b) => b,
        Err(e) => {
            let kept = super::retained(table, location).await?;
            return Err(match kept.oldest_commit {
                Some(oldest) if from < oldest => Error::VersionCleaned {
                    table: table_name(location),
                    version: from,
                    what: " as a change feed",
                    oldest,
                },
                _ => e,
            });
        }
    };
    // One schema for all rows (the table's current one, plain strings, nullable), even when the range
    // spans a schema change: rows written before an added column read it as null.
    let current = table.snapshot().map_err(fail)?.snapshot().arrow_schema();
    let target = Arc::new(Schema::new(
        current
            .fields()
            .iter()
            .map(|f| {
                let dt = match f.data_type() {
                    DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
                    other => other.clone(),
                };
                f.as_ref().clone().with_data_type(dt).with_nullable(true)
            })
            .collect::<Vec<_>>(),
    ));
    batches
        .iter()
        .map(|b| {
            let keep: Vec<usize> = b
                .schema()
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| {
                    !matches!(
                        f.name().as_str(),
                        "_change_type" | "_commit_version" | "_commit_timestamp"
                    )
                })
                .map(|(i, _)| i)
                .collect();
            let b = b
                .project(&keep)
                .map_err(|e| Error::arrow("change feed columns", e))?;
            crate::schema::as_schema(&plain_strings(&b)?, &target, |_, _| None)
        })
        .collect()
}
