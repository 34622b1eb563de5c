//! Widening a table's column types in place (int → long, decimal precision up: [`schema::widens`]).
//!
//! delta-rs 1.1 cannot write Delta's `typeWidening` table feature (and many readers do not read it), so
//! a widening is what Delta did before that feature: every data file is rewritten with the wider type,
//! in one commit that also carries the new schema. The rewrite is `dataChange: false` (no row changes,
//! so change feed readers and streaming readers skip it) and is rare: once per type change at the
//! source. It reads one file at a time, so its memory is one file's, whatever the table's size.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::datatypes::{Field, Schema};
use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::kernel::{Action, MetadataExt, StructType, Transaction};
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};

use super::{commit_properties, read_data_file, table_name};
use crate::error::{Error, Result};
use crate::schema;
use crate::storage::Location;

/// One column whose type a widening changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Widened {
    pub column: String,
    pub from: String,
    pub to: String,
}

impl std::fmt::Display for Widened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {} → {}", self.column, self.from, self.to)
    }
}

/// Widens the columns of `table` that `wanted` gives a wider type ([`schema::widens`]; other
/// differences are left alone), rewriting every data file in one `dataChange: false` commit with the
/// new schema, `txns` (the table's watermarks at their current values: a step or a compaction racing
/// the rewrite sets them too, so one of the two conflicts and retries) and commitInfo `metadata`.
/// Returns the widened columns (none: nothing committed).
pub async fn widen_columns(
    table: &mut DeltaTable,
    location: &Location,
    wanted: &Schema,
    txns: Vec<Transaction>,
    metadata: HashMap<String, serde_json::Value>,
) -> Result<Vec<Widened>> {
    let name = table_name(location);
    let fail = |e: DeltaTableError| Error::delta(&name, "widen columns", e);
    let snapshot = table.snapshot().map_err(fail)?;
    let current = snapshot.snapshot().arrow_schema();
    let mut widened = Vec::new();
    let fields: Vec<Field> = current
        .fields()
        .iter()
        .map(|f| match wanted.field_with_name(f.name()) {
            Ok(w) if schema::widens(f.data_type(), w.data_type()) => {
                widened.push(Widened {
                    column: f.name().clone(),
                    from: f.data_type().to_string(),
                    to: w.data_type().to_string(),
                });
                f.as_ref().clone().with_data_type(w.data_type().clone())
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    if widened.is_empty() {
        return Ok(widened);
    }
    let partitions = snapshot.metadata().partition_columns().to_vec();
    let wider = Schema::new(fields);
    let delta_schema = StructType::try_from_arrow(&wider).map_err(|e| fail(e.into()))?;
    let new_metadata = snapshot
        .metadata()
        .clone()
        .with_schema(&delta_schema)
        .map_err(|e| fail(e.into()))?;
    // The files hold the table's columns less its partition columns.
    let file_schema = Arc::new(Schema::new(
        wider
            .fields()
            .iter()
            .filter(|f| !partitions.contains(f.name()))
            .map(|f| f.as_ref().clone())
            .collect::<Vec<_>>(),
    ));
    let files: Vec<_> = snapshot.log_data().iter().collect();
    let mut actions = vec![Action::Metadata(new_metadata)];
    for file in files {
        let path = file.path().into_owned();
        let mut writer = RecordBatchWriter::try_new(
            location.url.as_str(),
            file_schema.clone(),
            None,
            Some(location.storage_options.clone()),
        )
        .map_err(fail)?;
        for batch in read_data_file(table, location, &path, None).await? {
            let batch = schema::as_schema(&batch, &file_schema, |_, _| None)?;
            writer.write(batch).await.map_err(fail)?;
        }
        let partition_values = file.partition_values_map();
        for mut add in writer.flush().await.map_err(fail)? {
            add.partition_values = partition_values.clone();
            add.data_change = false;
            actions.push(Action::Add(add));
        }
        actions.push(Action::Remove(file.remove_action(false)));
    }
    let mut metadata = metadata;
    metadata.insert(
        "lakehouse.widened".to_string(),
        serde_json::json!(widened.iter().map(ToString::to_string).collect::<Vec<_>>()),
    );
    let props = commit_properties()
        .with_application_transactions(txns)
        .with_metadata(metadata);
    super::commit_with(
        table,
        actions,
        props,
        DeltaOperation::Update { predicate: None },
    )
    .await
    .map_err(fail)?;
    tracing::info!(table = %location.url, columns = ?widened.iter().map(ToString::to_string).collect::<Vec<_>>(),
        version = ?table.version(), "column types widened: every file rewritten");
    Ok(widened)
}
