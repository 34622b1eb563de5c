//! Silver's columns: the row columns plus the ordering columns of the event that set each row (and the
//! validity columns for SCD type 2).

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::compute::concat_batches;
use deltalake::arrow::datatypes::{Schema, SchemaRef};

use super::scd2;
use crate::cdc::{Normalizer, OP};
use crate::config::TableConfig;
use crate::error::{Error, Result};
use crate::schema;

/// Silver's schema: the row columns and the ordering columns of the event that set the row.
pub fn silver_schema(n: &Normalizer) -> Schema {
    let change = n.change_schema();
    Schema::new(
        change
            .fields()
            .iter()
            .filter(|f| f.name() != OP)
            .map(|f| f.as_ref().clone())
            .collect::<Vec<_>>(),
    )
}

/// The silver table's schema: [`silver_schema`], plus the validity columns for SCD type 2. Every column
/// is nullable at the table level: with the change data feed on, delta-rs checks NOT NULL invariants on
/// MERGE's intermediate rows (a delete of a key silver never had fails it). The step itself still
/// rejects changes that lack a required column.
pub fn silver_table_schema(n: &Normalizer, table: &TableConfig) -> Result<Schema> {
    let schema = match table.scd_type {
        2 => scd2::history_schema(&silver_schema(n), table.folds_history())?,
        _ => silver_schema(n),
    };
    Ok(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ))
}

/// Scanned batches as one batch of `schema`.
pub(super) fn conform_all(batches: &[RecordBatch], schema: &SchemaRef) -> Result<RecordBatch> {
    let parts = batches
        .iter()
        .map(|b| schema::as_schema(b, schema, |_, _| None))
        .collect::<Result<Vec<_>>>()?;
    concat_batches(schema, &parts).map_err(|e| Error::arrow("collecting rows", e))
}
