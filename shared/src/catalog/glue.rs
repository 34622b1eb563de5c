//! The Glue calls: a table registered as Athena reads a native Delta table (`table_type = DELTA`, the
//! table's location, its columns in Hive types; partition columns as partition keys), created or
//! updated, its database created when missing.

use aws_sdk_glue::error::DisplayErrorContext;
use aws_sdk_glue::types::{Column, DatabaseInput, SerDeInfo, StorageDescriptor, Table, TableInput};
use deltalake::arrow::datatypes::{DataType, Field, Schema};

use super::{Entry, Registered};
use crate::config::GlueConfig;
use crate::error::{Error, Result};
use crate::storage;

pub(super) struct Glue {
    client: aws_sdk_glue::Client,
    database: String,
}

impl Glue {
    pub(super) async fn new(config: &GlueConfig) -> Self {
        let keys = config
            .access_key_id
            .as_deref()
            .zip(config.secret_access_key.as_deref());
        let sdk = storage::sdk_config(
            config.endpoint_url.as_deref(),
            config.region.as_deref(),
            keys,
        )
        .await;
        Glue {
            client: aws_sdk_glue::Client::new(&sdk),
            database: config.database.clone(),
        }
    }

    pub(super) fn database(&self) -> &str {
        &self.database
    }

    fn fail<E>(&self, table: &str, operation: &'static str, e: E) -> Error
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Error::Catalog {
            database: self.database.clone(),
            table: table.to_string(),
            operation,
            reason: DisplayErrorContext(&e).to_string(),
            source: Some(Box::new(e)),
        }
    }

    /// Creates the table, or updates it when its location, columns or type differ.
    pub(super) async fn register(&self, entry: &Entry, schema: &Schema) -> Result<Registered> {
        let input = table_input(entry, schema).map_err(|reason| Error::Catalog {
            database: self.database.clone(),
            table: entry.name.clone(),
            operation: "describe",
            reason,
            source: None,
        })?;
        let existing = self
            .client
            .get_table()
            .database_name(&self.database)
            .name(&entry.name)
            .send()
            .await;
        match existing {
            Ok(out) => {
                if out.table().is_some_and(|t| same(t, &input)) {
                    return Ok(Registered::Unchanged);
                }
                self.update(&entry.name, input).await
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                self.ensure_database().await?;
                let created = self
                    .client
                    .create_table()
                    .database_name(&self.database)
                    .table_input(input.clone())
                    .send()
                    .await;
                match created {
                    Ok(_) => Ok(Registered::Created),
                    // Another container registered it first: make sure it is this schema.
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_already_exists_exception()) =>
                    {
                        self.update(&entry.name, input).await
                    }
                    Err(e) => Err(self.fail(&entry.name, "create table", e)),
                }
            }
            Err(e) => Err(self.fail(&entry.name, "get table", e)),
        }
    }

    async fn update(&self, name: &str, input: TableInput) -> Result<Registered> {
        self.client
            .update_table()
            .database_name(&self.database)
            .table_input(input)
            .send()
            .await
            .map_err(|e| self.fail(name, "update table", e))?;
        Ok(Registered::Updated)
    }

    async fn ensure_database(&self) -> Result<()> {
        let input = DatabaseInput::builder()
            .name(&self.database)
            .description("Delta tables of the lakehouse (bronze, silver, gold, quarantine)")
            .build()
            .map_err(|e| self.fail("-", "describe database", e))?;
        match self
            .client
            .create_database()
            .database_input(input)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.fail("-", "create database", e)),
        }
    }
}

/// The Glue definition of a Delta table: what Athena needs to read it natively.
pub(super) fn table_input(
    entry: &Entry,
    schema: &Schema,
) -> std::result::Result<TableInput, String> {
    let location = entry
        .location
        .url
        .as_str()
        .trim_end_matches('/')
        .to_string();
    let column = |f: &Field| -> std::result::Result<Column, String> {
        let hive = hive_type(f.data_type()).ok_or_else(|| {
            format!(
                "column `{}` has type {} with no Glue type",
                f.name(),
                f.data_type()
            )
        })?;
        Column::builder()
            .name(f.name())
            .r#type(hive)
            .build()
            .map_err(|e| e.to_string())
    };
    let is_partition = |f: &Field| entry.partition_by.iter().any(|p| p == f.name());
    let columns = schema
        .fields()
        .iter()
        .filter(|f| !is_partition(f))
        .map(|f| column(f))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let partitions = entry
        .partition_by
        .iter()
        .map(|p| match schema.field_with_name(p) {
            Ok(f) => column(f),
            Err(_) => Err(format!("partition column `{p}` is not in the table")),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let storage = StorageDescriptor::builder()
        .location(&location)
        .set_columns(Some(columns))
        // Spark's convention for a data source table: the path is a SerDe parameter.
        .serde_info(SerDeInfo::builder().parameters("path", &location).build())
        .build();
    TableInput::builder()
        .name(&entry.name)
        .description(
            "Delta Lake table written by the lakehouse; its _delta_log is the source of truth",
        )
        .table_type("EXTERNAL_TABLE")
        .parameters("table_type", "DELTA")
        .parameters("classification", "delta")
        .parameters("spark.sql.sources.provider", "delta")
        .parameters("EXTERNAL", "TRUE")
        .storage_descriptor(storage)
        .set_partition_keys(Some(partitions))
        .build()
        .map_err(|e| e.to_string())
}

/// The catalog already describes the table as `input` does (names compared ignoring case: Glue and
/// Athena lower-case them).
pub(super) fn same(table: &Table, input: &TableInput) -> bool {
    let cols = |c: &[Column]| -> Vec<(String, Option<String>)> {
        c.iter()
            .map(|c| {
                (
                    c.name().to_ascii_lowercase(),
                    c.r#type().map(str::to_string),
                )
            })
            .collect()
    };
    let sd = |s: Option<&StorageDescriptor>| {
        s.map(|s| (s.location().map(str::to_string), cols(s.columns())))
    };
    let kind = |p: Option<&std::collections::HashMap<String, String>>| {
        p.and_then(|p| p.get("table_type")).cloned()
    };
    sd(table.storage_descriptor()) == sd(input.storage_descriptor())
        && cols(table.partition_keys()) == cols(input.partition_keys())
        && kind(table.parameters()) == kind(input.parameters())
}

/// The Hive type Glue and Athena use for an Arrow type of a Delta table (`None`: none exists).
pub fn hive_type(t: &DataType) -> Option<String> {
    Some(match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "int".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 => "decimal(20,0)".into(),
        DataType::Float16 | DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "binary".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, _) => "timestamp".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("decimal({p},{s})"),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _) => format!("array<{}>", hive_type(f.data_type())?),
        DataType::Struct(fields) => {
            let inner = fields
                .iter()
                .map(|f| Some(format!("{}:{}", f.name(), hive_type(f.data_type())?)))
                .collect::<Option<Vec<_>>>()?;
            format!("struct<{}>", inner.join(","))
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => format!(
                "map<{},{}>",
                hive_type(kv[0].data_type())?,
                hive_type(kv[1].data_type())?
            ),
            _ => return None,
        },
        _ => return None,
    })
}
