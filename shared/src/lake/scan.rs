//! Reading a table: all of it (small tables: tests, the CLI), or only the rows with given keys, pushed
//! down so file statistics prune what cannot match. Strings come back as plain `Utf8`.

use std::collections::HashSet;

use deltalake::arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::{DeltaTable, DeltaTableError};

use super::{open, table_name};
use crate::error::{Error, Result};
use crate::schema;
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
/// holding at least the key columns), as batches of the table's schema. Only the files whose leading-key
/// statistics can hold a wanted key are read ([`super::touched_paths`]), directly, without a query
/// engine (planning a query costs more than reading a few small files); partitioned tables, whose files
/// lack the partition columns, go through a DataFusion scan pruned by the same key ranges.
pub async fn scan_keys(
    table: &DeltaTable,
    location: &Location,
    wanted: &RecordBatch,
    keys: &[String],
) -> Result<Vec<RecordBatch>> {
    let fail = |e: DeltaTableError| Error::delta(table_name(location), "scan keys", e);
    let Some(lead) = keys.first() else {
        return Ok(Vec::new());
    };
    let lead_values = schema::column(wanted, lead, "scan keys")?;
    let snapshot = table.snapshot().map_err(fail)?;
    if !snapshot.metadata().partition_columns().is_empty() {
        return scan_keys_query(table, location, wanted, keys).await;
    }
    let target: SchemaRef = snapshot.snapshot().arrow_schema();
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (converter, want) =
        schema::rows_of(&schema::columns(wanted, &names, "scan keys")?, "scan keys")?;
    let want: HashSet<Vec<u8>> = want.iter().map(|r| r.as_ref().to_vec()).collect();
    let mut out = Vec::new();
    for path in super::touched_paths(table, location, lead, &lead_values)? {
        for b in super::read_data_file(table, location, &path, None).await? {
            let b = schema::as_schema(&plain_strings(&b)?, &target, |_, _| None)?;
            let cols = schema::columns(&b, &names, "scan keys")?;
            let rows = converter
                .convert_columns(&cast_to(&cols, wanted, &names)?)
                .map_err(|e| Error::arrow("scan keys", e))?;
            let keep = BooleanArray::from(
                (0..b.num_rows())
                    .map(|i| want.contains(rows.row(i).as_ref()))
                    .collect::<Vec<_>>(),
            );
            let kept = filter_record_batch(&b, &keep).map_err(|e| Error::arrow("scan keys", e))?;
            if kept.num_rows() > 0 {
                out.push(kept);
            }
        }
    }
    Ok(out)
}

/// `cols` (key columns of a scanned batch) cast to the types of the same columns in `like`.
fn cast_to(cols: &[ArrayRef], like: &RecordBatch, names: &[&str]) -> Result<Vec<ArrayRef>> {
    cols.iter()
        .zip(names)
        .map(|(c, n)| {
            let t = schema::column(like, n, "scan keys")?.data_type().clone();
            deltalake::arrow::compute::cast(c, &t).map_err(|e| Error::arrow("scan keys", e))
        })
        .collect()
}

/// [`scan_keys`] through DataFusion: each key column pushed down as an `IN` list, and the leading key
/// restricted to the ranges of the files that may hold it; the exact combination is checked by the
/// caller when there are several keys.
async fn scan_keys_query(
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
    // An IN list of more than a few values does not prune by statistics; these ranges do.
    if let Some(first) = keys.first() {
        let values = schema::column(wanted, first, "scan keys")?;
        let ranges =
            super::touched(table, location, first, &values)?.and_then(|t| t.predicate(None, first));
        if let Some(ranges) = ranges {
            let expr = df.parse_sql_expr(&ranges).map_err(query)?;
            df = df.filter(expr).map_err(query)?;
        }
    }
    for k in keys {
        let values = schema::column(wanted, k, "scan keys")?;
        let mut list = Vec::new();
        let mut seen = HashSet::new();
        for i in 0..values.len() {
            let v = ScalarValue::try_from_array(&values, i).map_err(query)?;
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
