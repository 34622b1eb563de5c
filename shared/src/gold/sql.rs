//! The view's SQL in DataFusion: a session over the sources (one of them replaced by its changed
//! rows when finding touched groups), the view's keyed rows, and the helpers that shape its output.

use std::collections::HashSet;
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::datafusion::catalog::MemTable;
use deltalake::datafusion::dataframe::DataFrame;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::prelude::{ident, SessionContext};
use deltalake::DeltaTableError;

use super::Source;
use crate::config::GoldView;
use crate::error::{Error, Result};
use crate::lake;
use crate::schema;

pub(super) fn df_error(view: &str, what: &str, e: DataFusionError) -> Error {
    Error::query(format!("gold/{view}"), what, e)
}

/// A session with every source registered under its name (its Delta table at the loaded version),
/// except `replace`, registered as the given rows.
pub(super) async fn session(
    sources: &[Source],
    replace: Option<(&str, Vec<RecordBatch>)>,
) -> Result<SessionContext> {
    let ctx = SessionContext::new();
    for s in sources {
        let fail = |e: DeltaTableError| Error::delta(s.location.url.to_string(), "register", e);
        let query = |e| Error::query(s.location.url.to_string(), "register", e);
        let provider: Arc<dyn deltalake::datafusion::catalog::TableProvider> = match &replace {
            Some((name, rows)) if *name == s.name => {
                let schema = rows
                    .first()
                    .map(|b| b.schema())
                    .unwrap_or_else(|| Arc::new(Schema::empty()));
                Arc::new(MemTable::try_new(schema, vec![rows.clone()]).map_err(query)?)
            }
            _ => {
                s.table
                    .update_datafusion_session(&ctx.state())
                    .map_err(fail)?;
                s.table.table_provider().await.map_err(|e| fail(e.into()))?
            }
        };
        ctx.register_table(s.name.as_str(), provider)
            .map_err(query)?;
    }
    Ok(ctx)
}

/// A view's SQL runs read-only, even if a config bypassed load-time validation.
pub(super) fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// The view's rows with a key (rows whose key is null are not kept).
pub(super) async fn view_rows(ctx: &SessionContext, view: &GoldView) -> Result<DataFrame> {
    let df = ctx
        .sql_with_options(&view.sql, read_only())
        .await
        .map_err(|e| df_error(&view.name, "view SQL", e))?;
    view.keys.iter().try_fold(df, |df, k| {
        df.filter(ident(k.as_str()).is_not_null())
            .map_err(|e| df_error(&view.name, "view keys", e))
    })
}

/// The gold table schema for a query result: plain strings, every column nullable.
pub(super) fn output_schema(result: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        result
            .fields()
            .iter()
            .map(|f| {
                let dt = match f.data_type() {
                    DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
                    DataType::Dictionary(_, v) if v.is_string() => DataType::Utf8,
                    other => other.clone(),
                };
                Field::new(f.name(), dt, true)
            })
            .collect::<Vec<_>>(),
    ))
}

pub(super) async fn collect_as(
    df: DataFrame,
    schema: &SchemaRef,
    view: &str,
) -> Result<Vec<RecordBatch>> {
    df.collect()
        .await
        .map_err(|e| df_error(view, "compute", e))?
        .iter()
        .map(|b| schema::as_schema(b, schema, |_, _| None))
        .collect()
}

pub(super) fn distinct_rows(batch: &RecordBatch) -> Result<RecordBatch> {
    let (_, rows) = schema::rows_of(batch.columns(), "distinct keys")?;
    let mut seen = HashSet::new();
    let keep: Vec<u32> = (0..batch.num_rows())
        .filter(|&i| seen.insert(rows.row(i).data()))
        .map(|i| i as u32)
        .collect();
    deltalake::arrow::compute::take_record_batch(
        batch,
        &deltalake::arrow::array::UInt32Array::from(keep),
    )
    .map_err(|e| Error::arrow("distinct keys", e))
}

pub(super) fn count_action(batch: &RecordBatch, action: &str) -> usize {
    use deltalake::arrow::array::AsArray;
    batch
        .column_by_name(lake::ACTION)
        .map(|c| {
            c.as_string::<i32>()
                .iter()
                .filter(|a| *a == Some(action))
                .count()
        })
        .unwrap_or(0)
}
