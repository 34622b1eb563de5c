//! The bronze table's schema: created from the declared columns or inferred from the first object,
//! and evolved (new nullable columns, their own commit) when `unknown_fields = "evolve"`.

use deltalake::arrow::datatypes::{Schema, SchemaRef};
use deltalake::DeltaTable;
use object_store::ObjectMeta;
use serde_json::json;
use tracing::info;

use super::BronzeWriter;
use crate::config::{Format, Location, TableConfig};
use crate::lake;
use crate::read::{self, ReadError};
use crate::schema::{self, Lineage};

impl BronzeWriter {
    /// The table's data schema, creating the bronze table (declared or inferred schema) when absent.
    /// `Ok(None)`: the table does not exist and this object has no row to infer a schema from.
    pub(super) async fn ensure_table(
        &self,
        table: &TableConfig,
        location: &Location,
        bronze: &mut Option<DeltaTable>,
        key: &str,
        meta: &ObjectMeta,
    ) -> Result<Option<SchemaRef>, ReadError> {
        if bronze.is_none() {
            let data = match table.declared_schema() {
                Some(s) => s.as_ref().clone(),
                None => match self.infer(table, key, meta).await? {
                    Some(s) => s,
                    None => return Ok(None),
                },
            };
            let created = lake::open_or_create(
                location,
                &format!("bronze_{}", table.name),
                &schema::bronze_schema(&data),
                &[],
                lake::Markers::Expire,
            )
            .await?;
            // The caller checked this object's marker against the table's absence.
            *bronze = Some(lake::fresh(created, location)?);
        }
        let Some(t) = bronze.as_ref() else {
            return Ok(None);
        };
        Ok(Some(schema::data_schema(&lake::schema_of(t, location)?)))
    }

    async fn infer(
        &self,
        table: &TableConfig,
        key: &str,
        meta: &ObjectMeta,
    ) -> Result<Option<Schema>, ReadError> {
        let get = read::open(&self.landing, key, meta).await?;
        let gzip = read::is_gzip(table, key);
        let max = table.limits.max_object_bytes;
        let what = format!("schema inference of {key}");
        let table = table.clone();
        if table.format.is_typed_file() {
            let bytes = read::read_all(get, gzip, max).await?;
            return read::contained(what, move || match table.format {
                Format::Avro => read::infer_avro(bytes, &table),
                _ => read::infer_parquet(bytes, &table),
            })
            .await;
        }
        read::contained(what, move || {
            read::infer_text(read::blocking_reader(get, gzip, max), &table)
        })
        .await
    }

    /// Schema evolution: fields of this object (by inference on its first rows, or its Parquet schema)
    /// that bronze lacks become new nullable columns, committed before the rows. Returns the data schema
    /// to parse the object with.
    pub(super) async fn evolve(
        &self,
        table: &TableConfig,
        location: &Location,
        bronze: &mut Option<DeltaTable>,
        meta: &ObjectMeta,
        lineage: &Lineage,
        target: SchemaRef,
    ) -> Result<SchemaRef, ReadError> {
        let Some(found) = self.infer(table, meta.location.as_ref(), meta).await? else {
            return Ok(target);
        };
        let Some(t) = bronze.as_mut() else {
            return Ok(target);
        };
        // New columns must not collide (ignoring case) with the table's, nor widen it past the limit.
        let names = target.fields().iter().map(|f| f.name().as_str()).chain(
            found
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .filter(|n| target.field_with_name(n).is_err()),
        );
        read::check_names(names, &table.limits)
            .map_err(|e| ReadError::Malformed(format!("cannot evolve the table's schema: {e}")))?;
        let mut metadata =
            self.lineage_metadata("bronze_schema", table, &[lineage.key.as_str()], 0);
        metadata.insert("lakehouse.sourceEtag".into(), json!(lineage.etag));
        let added = lake::add_missing_columns(t, location, &found, metadata).await?;
        if added.is_empty() {
            return Ok(target);
        }
        info!(table = %table.name, key = %lineage.key, columns = ?added, "bronze schema evolved");
        Ok(schema::data_schema(&lake::schema_of(t, location)?))
    }
}
