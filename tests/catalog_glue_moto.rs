//! The Glue Data Catalog, registered by the functions themselves: objects land in a LocalStack bucket
//! (real notifications), the bronze, silver and gold handlers write Delta tables on MinIO, and each
//! table appears in a Glue endpoint (moto's server) as Athena needs it: `table_type = DELTA`, the
//! table's location, and exactly the columns of its Delta log (read here from the log's own JSON,
//! independently of the code under test). A new field evolves bronze and its Glue columns; a table
//! deleted from Glue comes back with `lakehouse catalog sync`.

use std::collections::BTreeMap;
use std::time::Duration;

use integration_tests::*;
use lakehouse::events::Committed;
use lakehouse::handler::{BronzeHandler, GoldHandler, SilverHandler};
use lakehouse::PipelineConfig;
use serde_json::Value;

fn moto_endpoint() -> String {
    env_or("MOTO_ENDPOINT", "http://127.0.0.1:5055")
}

async fn glue_client() -> aws_sdk_glue::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto_endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_glue::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    aws_sdk_glue::Client::new(&conf)
}

/// (columns, partition keys, location, table_type) of a Glue table, names and types as stored.
type Registered = (Vec<(String, String)>, Vec<(String, String)>, String, String);

async fn glue_tables(glue: &aws_sdk_glue::Client, db: &str) -> BTreeMap<String, Registered> {
    let out = glue
        .get_tables()
        .database_name(db)
        .send()
        .await
        .expect("glue get_tables");
    let cols = |c: &[aws_sdk_glue::types::Column]| {
        c.iter()
            .map(|c| (c.name().to_string(), c.r#type().unwrap_or("").to_string()))
            .collect::<Vec<_>>()
    };
    out.table_list()
        .iter()
        .map(|t| {
            let sd = t.storage_descriptor().expect("storage descriptor");
            let kind = t
                .parameters()
                .and_then(|p| p.get("table_type"))
                .cloned()
                .unwrap_or_default();
            (
                t.name().to_string(),
                (
                    cols(sd.columns()),
                    cols(t.partition_keys()),
                    sd.location().unwrap_or("").to_string(),
                    kind,
                ),
            )
        })
        .collect()
}

/// The oracle: the table's columns from the newest `metaData` action of its Delta log, read as raw
/// JSON from MinIO, with the Delta → Hive type names Athena documents.
async fn log_columns(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    table_prefix: &str,
) -> Vec<(String, String)> {
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(format!("{table_prefix}/_delta_log/"))
        .send()
        .await
        .expect("list log");
    let mut keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .filter(|k| k.ends_with(".json"))
        .collect();
    keys.sort();
    let mut schema: Option<Value> = None;
    for key in keys {
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .expect("get commit");
        let bytes = body.body.collect().await.expect("read commit").into_bytes();
        for line in String::from_utf8_lossy(&bytes).lines() {
            let action: Value = serde_json::from_str(line).expect("commit line is JSON");
            if let Some(s) = action
                .pointer("/metaData/schemaString")
                .and_then(Value::as_str)
            {
                schema = Some(serde_json::from_str(s).expect("schemaString"));
            }
        }
    }
    let schema = schema.expect("a metaData action in the log");
    let hive = |t: &Value| -> String {
        match t.as_str() {
            Some("long") => "bigint".into(),
            Some("integer") => "int".into(),
            Some("short") => "smallint".into(),
            Some("byte") => "tinyint".into(),
            Some("timestamp_ntz") => "timestamp".into(),
            Some(other) => other.to_string(), // string, double, boolean, date, timestamp, decimal(p,s)
            None => panic!("nested type {t} not expected in this test"),
        }
    };
    schema["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| {
            (
                f["name"].as_str().expect("name").to_string(),
                hive(&f["type"]),
            )
        })
        .collect()
}

fn committed(layer: &str, table: &str, version: i64) -> Value {
    serde_json::to_value(Committed::new(layer, table, version)).expect("committed message")
}

#[tokio::test]
async fn functions_register_their_tables_in_glue_and_sync_repairs_them() {
    require_service("moto (Glue)", &moto_endpoint()).await;
    let id = run_id("glue");
    let landing = Landing::create(&id, 3, 30).await;
    let lake = lake_bucket().await;
    let lake_prefix = format!("glue-{id}");
    let db = format!("lake_{}", id.replace('-', "_"));
    let tables = format!(
        r#"
[[table]]
name = "orders"
format = "jsonl"
columns = ["id long not null", "amount decimal(12,2)", "day date"]
keys = ["id"]
partition_by = ["day"]
unknown_fields = "evolve"

[[gold]]
name = "daily"
sql = "SELECT day, sum(amount) AS total, count(*) AS n FROM orders GROUP BY day"
keys = ["day"]
sources = ["orders"]

[catalog]
glue = {{ database = "{db}", endpoint_url = "{moto}", region = "us-east-1", access_key_id = "test", secret_access_key = "test" }}
"#,
        moto = moto_endpoint()
    );
    let toml = pipeline_toml(
        &landing.bucket,
        &format!("s3://{lake}/{lake_prefix}"),
        &tables,
    );
    let config = std::sync::Arc::new(PipelineConfig::from_toml(&toml, "test").expect("config"));
    let bronze = BronzeHandler::from_config(config.clone())
        .await
        .expect("bronze handler");
    let silver = SilverHandler::from_config(config.clone()).await;
    let gold = GoldHandler::from_config(config.clone()).await;
    let minio = s3_client(&minio_endpoint(), &minio_user(), &minio_password()).await;
    let glue = glue_client().await;

    // Two objects, the second bringing a new field: bronze evolves (a new nullable column).
    landing
        .put(
            "orders/a.jsonl",
            b"{\"id\": 1, \"amount\": \"10.50\", \"day\": \"2026-11-01\"}\n{\"id\": 2, \"amount\": \"3.25\", \"day\": \"2026-11-02\"}\n".to_vec(),
        )
        .await;
    let first = landing
        .receive(&landing.queue_url, 1, Duration::from_secs(30))
        .await;
    bronze
        .handle(&landing.lambda_event(&first))
        .await
        .expect("bronze a");
    silver
        .handle(&committed("bronze", "orders", 0))
        .await
        .expect("silver 1");
    gold.handle(&committed("silver", "orders", 0))
        .await
        .expect("gold 1");

    let expect = |prefix: &str, partitions: &[&str], cols: Vec<(String, String)>| {
        let (parts, rest): (Vec<_>, Vec<_>) = cols
            .into_iter()
            .partition(|(n, _)| partitions.contains(&n.as_str()));
        (
            rest,
            parts,
            format!("s3://{lake}/{lake_prefix}/{prefix}"),
            "DELTA".to_string(),
        )
    };
    let got = glue_tables(&glue, &db).await;
    assert_eq!(
        got.keys().map(String::as_str).collect::<Vec<_>>(),
        ["bronze_orders", "gold_daily", "silver_orders"],
        "the three tables the steps wrote (no quarantine: nothing was rejected)"
    );
    for (name, prefix, parts) in [
        ("bronze_orders", "bronze/orders", &[][..]),
        ("silver_orders", "silver/orders", &["day"][..]),
        ("gold_daily", "gold/daily", &[][..]),
    ] {
        let oracle = log_columns(&minio, &lake, &format!("{lake_prefix}/{prefix}")).await;
        assert_eq!(got[name], expect(prefix, parts, oracle), "{name}");
    }
    assert!(
        got["bronze_orders"].0.iter().all(|(n, _)| n != "note"),
        "no `note` column before the object that brings it"
    );

    landing
        .put(
            "orders/b.jsonl",
            b"{\"id\": 3, \"amount\": \"1.00\", \"day\": \"2026-11-01\", \"note\": \"first\"}\n"
                .to_vec(),
        )
        .await;
    let second = landing
        .receive(&landing.queue_url, 1, Duration::from_secs(30))
        .await;
    bronze
        .handle(&landing.lambda_event(&second))
        .await
        .expect("bronze b");
    silver
        .handle(&committed("bronze", "orders", 2))
        .await
        .expect("silver 2");
    let got = glue_tables(&glue, &db).await;
    for (name, prefix, parts) in [
        ("bronze_orders", "bronze/orders", &[][..]),
        ("silver_orders", "silver/orders", &["day"][..]),
    ] {
        let oracle = log_columns(&minio, &lake, &format!("{lake_prefix}/{prefix}")).await;
        assert!(
            oracle.contains(&("note".to_string(), "string".to_string())),
            "{name} evolved: {oracle:?}"
        );
        assert_eq!(
            got[name],
            expect(prefix, parts, oracle),
            "{name} after evolution"
        );
    }

    // Someone drops a table from the catalog: `catalog sync` registers it again, leaves the rest.
    glue.delete_table()
        .database_name(&db)
        .name("silver_orders")
        .send()
        .await
        .expect("delete glue table");
    let config_file = std::env::temp_dir().join(format!("{id}.toml"));
    std::fs::write(&config_file, &toml).expect("write config");
    let out = std::process::Command::new(workspace_bin("lakehouse"))
        .args(["catalog", "sync", "--config"])
        .arg(&config_file)
        .output()
        .expect("run lakehouse catalog sync");
    assert!(
        out.status.success(),
        "catalog sync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: BTreeMap<String, Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("JSON line");
            (
                v["table"].as_str().expect("table").to_string(),
                v["registered"].clone(),
            )
        })
        .collect();
    assert_eq!(lines["silver_orders"], "created");
    assert_eq!(lines["bronze_orders"], "unchanged");
    assert_eq!(lines["gold_daily"], "unchanged");
    assert_eq!(
        lines["quarantine_orders"],
        Value::Null,
        "no quarantine table exists"
    );
    let after = glue_tables(&glue, &db).await;
    let oracle = log_columns(&minio, &lake, &format!("{lake_prefix}/silver/orders")).await;
    assert_eq!(
        after["silver_orders"],
        expect("silver/orders", &["day"], oracle)
    );
}
