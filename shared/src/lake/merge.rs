//! MERGE building blocks shared by silver (SCD1 and SCD2) and gold: SQL quoting, the key join, one
//! MERGE with delete/update/insert clauses, and the action column that tells a MERGE what to do with
//! each source row.

use std::sync::Arc;

use deltalake::arrow::array::{RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::merge::MergeMetrics;
use deltalake::{DeltaTable, DeltaTableError};

use super::Touched;
use crate::error::{Error, Result};
use crate::storage::Location;

/// `name` as a quoted SQL identifier.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `t.k = s.k AND ...` over `keys`.
pub fn key_predicate(keys: &[String]) -> String {
    keys.iter()
        .map(|k| format!("t.{q} = s.{q}", q = quote(k)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The join of a MERGE of `source` into `target` on `keys`, restricted to the ranges of the leading key
/// where the source's keys may be found ([`super::touched`]), so delta-rs skips every other file; and
/// those files (`None` when the target has no files).
pub fn keyed_join(
    target: &DeltaTable,
    location: &Location,
    keys: &[String],
    source: &RecordBatch,
) -> Result<(String, Option<Touched>)> {
    let join = key_predicate(keys);
    let Some(lead) = keys.first() else {
        return Ok((join, None));
    };
    let values = source.column_by_name(lead).ok_or_else(|| {
        Error::invariant(format!(
            "MERGE source for {} lacks key `{lead}`",
            super::table_name(location)
        ))
    })?;
    let touched = super::touched(target, location, lead, values)?;
    let ranges = touched.as_ref().and_then(|t| t.predicate(Some("t"), lead));
    Ok(match ranges {
        Some(r) => (format!("{join} AND {r}"), touched),
        None => (join, touched),
    })
}

/// The conditions of one MERGE (SQL over source `s` and target `t`).
pub struct MergeClauses {
    pub on: String,
    pub delete_when: String,
    pub update_when: String,
    pub insert_when: String,
}

/// Runs one MERGE of `source` into `silver` (any table), setting every column of `columns` on update and insert.
pub async fn run_merge(
    silver: DeltaTable,
    source: RecordBatch,
    columns: &Schema,
    clauses: MergeClauses,
    props: CommitProperties,
) -> std::result::Result<(DeltaTable, MergeMetrics), DeltaTableError> {
    let ctx = SessionContext::new();
    let df = ctx.read_batch(source)?;
    let cols: Vec<String> = columns.fields().iter().map(|f| quote(f.name())).collect();
    let MergeClauses {
        on,
        delete_when,
        update_when,
        insert_when,
    } = clauses;
    silver
        .merge(df, on)
        .with_source_alias("s")
        .with_target_alias("t")
        .with_commit_properties(props)
        .when_matched_delete(|d| d.predicate(delete_when))?
        .when_matched_update(|u| {
            cols.iter().fold(u.predicate(update_when), |u, c| {
                u.update(c, format!("s.{c}"))
            })
        })?
        .when_not_matched_insert(|i| {
            cols.iter()
                .fold(i.predicate(insert_when), |i, c| i.set(c, format!("s.{c}")))
        })?
        .await
}

/// Column of a MERGE source saying what to do with the matching target row (SCD2 history, gold).
pub use crate::schema::ACTION;

pub const ACTION_UPSERT: &str = "U";

pub const ACTION_DELETE: &str = "D";

/// `s._lakehouse_action = '<action>'`.
pub fn action_is(action: &str) -> String {
    format!("s.{} = '{action}'", quote(ACTION))
}

/// `batch` with an [`ACTION`] column set to `action` (every other column made nullable, so deletes can
/// carry only their keys).
pub fn tag(batch: &RecordBatch, action: &str) -> Result<RecordBatch> {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    fields.push(Field::new(ACTION, DataType::Utf8, false));
    let mut cols = batch.columns().to_vec();
    cols.push(Arc::new(StringArray::from(vec![action; batch.num_rows()])));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
        .map_err(|e| Error::arrow("tagging MERGE source rows", e))
}
