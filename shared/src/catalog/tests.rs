use std::sync::Arc;

use aws_sdk_glue::types::Table;
use deltalake::arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};

use super::glue::{same, table_input};
use super::*;
use crate::testkit::{pipeline, Lab};

fn lake_entry(partition_by: &[&str]) -> Entry {
    let cfg = pipeline(
        "[[table]]\nname = \"t\"\nformat = \"jsonl\"\ncolumns = [\"id long\"]\nkeys = [\"id\"]",
    );
    Entry {
        name: "silver_t".into(),
        location: cfg.silver_location("t"),
        partition_by: partition_by.iter().map(|s| s.to_string()).collect(),
    }
}

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("amount", DataType::Decimal128(12, 2), true),
        Field::new("day", DataType::Date32, true),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
    ])
}

/// The catalog's copy of what was registered (as GetTable would return it).
fn stored(input: &aws_sdk_glue::types::TableInput) -> Table {
    Table::builder()
        .name(input.name())
        .set_storage_descriptor(input.storage_descriptor().cloned())
        .set_partition_keys(Some(input.partition_keys().to_vec()))
        .set_parameters(input.parameters().cloned())
        .build()
        .unwrap()
}

#[test]
fn delta_types_map_to_the_hive_types_athena_reads() {
    let cases = [
        (DataType::Utf8, "string"),
        (DataType::Int64, "bigint"),
        (DataType::Int32, "int"),
        (DataType::Int16, "smallint"),
        (DataType::Int8, "tinyint"),
        (DataType::Float32, "float"),
        (DataType::Float64, "double"),
        (DataType::Boolean, "boolean"),
        (DataType::Binary, "binary"),
        (DataType::Date32, "date"),
        (
            DataType::Timestamp(TimeUnit::Microsecond, None),
            "timestamp",
        ),
        (DataType::Decimal128(38, 9), "decimal(38,9)"),
        (
            DataType::List(Arc::new(Field::new("element", DataType::Utf8, true))),
            "array<string>",
        ),
        (
            DataType::Struct(Fields::from(vec![
                Field::new("a", DataType::Int64, true),
                Field::new(
                    "b",
                    DataType::List(Arc::new(Field::new("element", DataType::Float64, true))),
                    true,
                ),
            ])),
            "struct<a:bigint,b:array<double>>",
        ),
    ];
    for (arrow, hive) in cases {
        assert_eq!(hive_type(&arrow).as_deref(), Some(hive), "{arrow}");
    }
    assert_eq!(hive_type(&DataType::Null), None);
}

#[test]
fn a_registration_is_a_native_delta_table_with_partitions_as_partition_keys() {
    let input = table_input(&lake_entry(&["day"]), &schema()).unwrap();
    assert_eq!(input.name(), "silver_t");
    let params = input.parameters().unwrap();
    assert_eq!(params.get("table_type").map(String::as_str), Some("DELTA"));
    let sd = input.storage_descriptor().unwrap();
    let location = sd.location().unwrap();
    assert!(
        location.ends_with("/silver/t"),
        "{location}: the table's folder, no trailing `/`"
    );
    let names: Vec<(&str, Option<&str>)> = sd
        .columns()
        .iter()
        .map(|c| (c.name(), c.r#type()))
        .collect();
    assert_eq!(
        names,
        [
            ("id", Some("bigint")),
            ("amount", Some("decimal(12,2)")),
            ("at", Some("timestamp"))
        ]
    );
    let parts: Vec<&str> = input.partition_keys().iter().map(|c| c.name()).collect();
    assert_eq!(parts, ["day"]);

    let err = table_input(&lake_entry(&["nope"]), &schema()).unwrap_err();
    assert!(err.contains("`nope`"), "{err}");
    let odd = Schema::new(vec![Field::new("x", DataType::Null, true)]);
    let err = table_input(&lake_entry(&[]), &odd).unwrap_err();
    assert!(err.contains("column `x`"), "{err}");
}

#[test]
fn a_stored_table_is_the_same_only_with_the_same_location_columns_and_type() {
    let entry = lake_entry(&[]);
    let input = table_input(&entry, &schema()).unwrap();
    assert!(same(&stored(&input), &input));

    // Glue lower-cases names: not a difference.
    let upper = Schema::new(vec![Field::new("ID", DataType::Int64, false)]);
    let lower = Schema::new(vec![Field::new("id", DataType::Int64, false)]);
    assert!(same(
        &stored(&table_input(&entry, &upper).unwrap()),
        &table_input(&entry, &lower).unwrap()
    ));

    // A new column, a changed type, another location: different.
    let mut more = schema().fields().to_vec();
    more.push(Arc::new(Field::new("note", DataType::Utf8, true)));
    let evolved = table_input(&entry, &Schema::new(more)).unwrap();
    assert!(!same(&stored(&input), &evolved));
    let retyped = Schema::new(vec![Field::new("id", DataType::Utf8, false)]);
    assert!(!same(
        &stored(&table_input(&entry, &lower).unwrap()),
        &table_input(&entry, &retyped).unwrap()
    ));
    let mut moved = entry.clone();
    moved.location = moved.location.join(&["elsewhere"]);
    assert!(!same(
        &stored(&input),
        &table_input(&moved, &schema()).unwrap()
    ));
}

#[test]
fn entries_name_every_table_the_config_produces() {
    let cfg = pipeline(
        "[[table]]\nname = \"orders\"\nformat = \"jsonl\"\ncolumns = [\"id long\", \"day date\"]\nkeys = [\"id\"]\npartition_by = [\"day\"]\n\
         [[table]]\nname = \"logs\"\nprefix = \"logs/\"\nformat = \"jsonl\"\ncolumns = [\"line string\"]\n\
         [[gold]]\nname = \"daily\"\nsql = \"SELECT day, count(*) AS n FROM orders GROUP BY day\"\nkeys = [\"day\"]\nsources = [\"orders\"]",
    );
    let names: Vec<String> = entries(&cfg).into_iter().map(|e| e.name).collect();
    // A keys-less table is bronze-only: no silver entry.
    assert_eq!(
        names,
        [
            "bronze_orders",
            "silver_orders",
            "quarantine_orders",
            "bronze_logs",
            "quarantine_logs",
            "gold_daily"
        ]
    );
    let silver = entry(&cfg, "silver", "orders");
    assert_eq!(silver.partition_by, ["day"]);
    assert_eq!(silver.location.url, cfg.silver_location("orders").url);
}

#[tokio::test]
async fn without_a_catalog_nothing_is_registered_and_sync_says_why() {
    let lab = Lab::with_table(
        "t",
        "format = \"jsonl\"\ncolumns = [\"id long\"]\nkeys = [\"id\"]",
    );
    lab.ingest("t", "a.jsonl", "{\"id\": 1}\n").await;
    let table = lake::open(&lab.cfg.bronze_location("t"))
        .await
        .unwrap()
        .unwrap();
    let catalog = Catalog::from_config(&lab.cfg).await;
    assert!(!catalog.is_enabled());
    let entry = entry(&lab.cfg, "bronze", "t");
    assert_eq!(catalog.register(&entry, &table).await.unwrap(), None);
    let err = sync(&lab.cfg).await.unwrap_err().to_string();
    assert!(err.contains("[catalog]"), "{err}");
}

#[test]
fn the_database_name_is_checked_at_load() {
    let base = "[landing]\nuri = \"file:///l\"\n[lake]\nuri = \"file:///k\"\n[[table]]\nname = \"t\"\nformat = \"jsonl\"\ncolumns = [\"id long\"]\n";
    let ok = PipelineConfig::from_toml(
        &format!("{base}[catalog]\nglue = {{ database = \"lake_1\" }}\n"),
        "t",
    )
    .unwrap();
    assert_eq!(ok.glue.map(|g| g.database).as_deref(), Some("lake_1"));
    let err = PipelineConfig::from_toml(
        &format!("{base}[catalog]\nglue = {{ database = \"Lake-1\" }}\n"),
        "t",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("catalog.glue.database"), "{err}");
    let err = PipelineConfig::from_toml(
        &format!("{base}[catalog]\nhive = {{ database = \"x\" }}\n"),
        "t",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("hive"), "{err}");
}
