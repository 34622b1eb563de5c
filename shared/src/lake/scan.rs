//! Reading a table: all of it (small tables: tests, the CLI), or only the rows with given keys, pushed
//! down so file statistics prune what cannot match. Strings come back as plain `Utf8`.

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::{DeltaTable, DeltaTableError};

use super::{open, table_name};
use crate::error::{Error, Result};
use crate::storage::Location;

/// All rows of the table at `location` (current version). For tests, the CLI and the demo: small tables.
pub async fn read_table(location: &Location) -> Result<Vec<RecordBatch>> {
    match open(location).await? {
        Some(table) => scan(&table, location).await,
        None => Ok(Vec::new()),
    }
}

/// All rows of an opened table (at its loaded version), strings as plain `Utf8`.
pub async fn scan(table: &DeltaTable, location: &Location) -> Result<Vec<RecordBatch>> {
    let (_, stream) = table
        .scan_table()
        .await
        .map_err(|e| Error::delta(table_name(location), "scan", e))?;
    use futures::TryStreamExt;
    let batches: Vec<RecordBatch> = stream
        .try_collect()
        .await
        .map_err(|e| Error::query(table_name(location), "scan", e))?;
    batches.iter().map(plain_strings).collect()
}

/// The rows of an opened table whose `keys` take one of the value combinations in `wanted` (a batch
/// holding at least the key columns). Each key column is pushed down as an `IN` list, so file statistics
/// prune what cannot match, and the leading key by the ranges of the files that may hold it
/// ([`super::touched`]); the exact combination is checked by the caller when there are several keys.
pub async fn scan_keys(
    table: &DeltaTable,
    location: &Location,
    wanted: &RecordBatch,
    keys: &[String],
) -> Result<Vec<RecordBatch>> {
    use deltalake::datafusion::prelude::{ident, lit, SessionContext};
    use deltalake::datafusion::scalar::ScalarValue;
    let fail = |e: DeltaTableError| Error::delta(table_name(location), "scan keys", e);
    let query = |e| Error::query(table_name(location), "scan keys", e);
    let ctx = SessionContext::new();
    table
        .update_datafusion_session(&ctx.state())
        .map_err(fail)?;
    let provider = table.table_provider().await.map_err(|e| fail(e.into()))?;
    let mut df = ctx.read_table(provider).map_err(query)?;
    // The files holding the leading key's values: an IN list of more than a few values does not prune
    // by statistics, these ranges do.
    if let Some(first) = keys.first() {
        let values = wanted
            .column_by_name(first)
            .ok_or_else(|| Error::invariant(format!("scan keys: no key column `{first}`")))?;
        let ranges =
            super::touched(table, location, first, values)?.and_then(|t| t.predicate(None, first));
        if let Some(ranges) = ranges {
            let expr = df.parse_sql_expr(&ranges).map_err(query)?;
            df = df.filter(expr).map_err(query)?;
        }
    }
    for k in keys {
        let values = wanted
            .column_by_name(k)
            .ok_or_else(|| Error::invariant(format!("scan keys: no key column `{k}`")))?;
        let mut list = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for i in 0..values.len() {
            let v = ScalarValue::try_from_array(values, i).map_err(query)?;
            if seen.insert(v.clone()) {
                list.push(lit(v));
            }
        }
        df = df.filter(ident(k).in_list(list, false)).map_err(query)?;
    }
    let batches = df.collect().await.map_err(query)?;
    batches.iter().map(plain_strings).collect()
}

/// The scan may return string views or dictionaries; callers get plain `Utf8` columns.
pub(crate) fn plain_strings(batch: &RecordBatch) -> Result<RecordBatch> {
    let needs = |dt: &DataType| {
        matches!(
            dt,
            DataType::Utf8View | DataType::LargeUtf8 | DataType::Dictionary(_, _)
        )
    };
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| {
            if needs(f.data_type()) {
                f.as_ref().clone().with_data_type(DataType::Utf8)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let columns = batch
        .columns()
        .iter()
        .map(|c| {
            if needs(c.data_type()) {
                deltalake::arrow::compute::cast(c, &DataType::Utf8)
            } else {
                Ok(c.clone())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::arrow("normalising scanned strings", e))?;
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::arrow("normalising scanned strings", e))
}
