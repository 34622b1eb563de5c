//! The change data feed of a table: the row changes of a range of versions (gold's input).

use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::{DeltaTable, DeltaTableError};

use super::{scan::plain_strings, table_name};
use crate::error::{Error, Result};
use crate::storage::Location;

/// The last column of [`changes`]: +1 for a row the range added (insert, update post-image), -1 for
/// one it took away (delete, update pre-image).
pub const CHANGE_SIGN: &str = "__change_sign";

/// The row changes of versions `from..=to` of a table with the change data feed on: inserts, both
/// images of updates and deletes, without the feed's own columns, each with its [`CHANGE_SIGN`] as
/// the last column. Summed per group, the signs and the signed values are the range's exact net
/// effect on the table's rows (an update of a row is its pre-image taken away and its post-image
/// added).
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
    let mut fields = target.fields().to_vec();
    fields.push(Arc::new(Field::new(CHANGE_SIGN, DataType::Int64, false)));
    let target = Arc::new(Schema::new(fields));
    batches
        .iter()
        .map(|b| {
            let sign = sign_of(b)?;
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
            crate::schema::as_schema(&plain_strings(&b)?, &target, |name, _| {
                (name == CHANGE_SIGN).then(|| sign.clone())
            })
        })
        .collect()
}

/// The sign of each row of a change feed batch, from its `_change_type`.
fn sign_of(batch: &RecordBatch) -> Result<ArrayRef> {
    let kind = batch
        .column_by_name("_change_type")
        .ok_or_else(|| Error::invariant("change feed without `_change_type`"))?;
    let kind = cast(kind, &DataType::Utf8).map_err(|e| Error::arrow("change type", e))?;
    let signs = kind
        .as_string::<i32>()
        .iter()
        .map(|k| match k {
            Some("insert" | "update_postimage") => Ok(1),
            Some("delete" | "update_preimage") => Ok(-1),
            other => Err(Error::invariant(format!(
                "change feed row with change type {other:?}"
            ))),
        })
        .collect::<Result<Vec<i64>>>()?;
    Ok(Arc::new(Int64Array::from(signs)))
}
