//! The embedded demo (`make demo`): nothing installed beyond Rust. It writes a small realistic landing set
//! for three tables (JSON lines, gzip CSV, Parquet; a few bad rows each) to a local folder, delivers
//! S3-shaped SQS events in-process (one batch delivered twice, a test event, a stray key), runs the same
//! handler the Lambda function runs, and prints what each table got next to what it should have got.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::arrow::array::{Int64Array, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::parquet::arrow::ArrowWriter;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::json;

use lakehouse::bronze::ObjectStatus;
use lakehouse::events::{self, Invocation};
use lakehouse::gold::GoldWriter;
use lakehouse::handler::BronzeHandler;
use lakehouse::silver::SilverWriter;
use lakehouse::{lake, PipelineConfig};

use crate::error::{io, CliError, Result};

/// What the generated data should produce per table: (objects, good rows, bad rows).
struct Expected {
    table: &'static str,
    objects: usize,
    rows: u64,
    quarantined: u64,
    /// Rows silver must hold (keys whose latest event is not a delete), computed from the generator.
    silver: usize,
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir.display()))?;
    }
    std::fs::write(path, bytes).map_err(io(path.display()))
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).map_err(io("gzip"))?;
    enc.finish().map_err(io("gzip"))
}

/// The demo's pipeline file, pointing at `dir`.
fn demo_config(dir: &Path) -> String {
    format!(
        r#"# Demo pipeline: landing and lake on the local filesystem.
[landing]
uri = "file://{landing}"

[lake]
uri = "file://{lake}"

[[table]]
name = "orders"
format = "jsonl"
columns = ["order_id long not null", "customer_id long not null", "amount decimal(12,2)", "status string", "updated_at timestamp"]
keys = ["order_id"]
sequence_by = "updated_at"

[[table]]
name = "customers"
format = "csv"
keys = ["customer_id"]

[[table]]
name = "payments"
format = "parquet"
columns = ["payment_id long not null", "order_id long not null", "amount double", "method string"]
keys = ["payment_id"]

# Debezium (PostgreSQL connector) change events; bronze keeps the envelopes, silver the rows.
[[table]]
name = "inventory"
prefix = "cdc/inventory/"
format = "jsonl"
cdc = "debezium"
keys = ["id"]
sequence_by = "source.lsn"
row_columns = ["id long not null", "name string", "quantity int", "price decimal(10,2)"]

# AWS DMS CDC files: CSV without header, Op then the commit timestamp column, then the row.
[[table]]
name = "accounts"
prefix = "dms/accounts/"
format = "csv"
csv_header = false
cdc = "dms"
keys = ["account_id"]
sequence_by = "commit_ts"
columns = ["Op string", "commit_ts timestamp", "account_id long not null", "owner string", "balance decimal(12,2)"]

# Gold: SQL over silver, kept up to date per touched group.
[[gold]]
name = "customer_revenue"
sql = "SELECT customer_id, COUNT(*) AS orders, SUM(amount) AS revenue FROM orders GROUP BY customer_id"
keys = ["customer_id"]
sources = ["orders"]

[[gold]]
name = "country_revenue"
sql = """SELECT c.country, COUNT(*) AS orders, SUM(o.amount) AS revenue
         FROM orders o JOIN customers c ON o.customer_id = c.customer_id GROUP BY c.country"""
keys = ["country"]
sources = ["orders", "customers"]
"#,
        landing = dir.join("landing").display(),
        lake = dir.join("lake").display()
    )
}

/// One Debezium PostgreSQL-connector event (unwrapped JSON converter output).
fn debezium(
    op: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    lsn: i64,
) -> String {
    json!({"before": before, "after": after, "op": op, "ts_ms": 1_764_064_800_000i64 + lsn,
        "source": {"version": "2.5.0.Final", "connector": "postgresql", "name": "shop", "ts_ms": 1_764_064_800_000i64 + lsn,
            "snapshot": if op == "r" { "true" } else { "false" }, "db": "shop", "schema": "public", "table": "inventory",
            "txId": 500 + lsn, "lsn": lsn, "xmin": null},
        "transaction": null})
    .to_string()
}

fn item(id: i64, qty: i64) -> serde_json::Value {
    json!({"id": id, "name": format!("item {id}"), "quantity": qty, "price": format!("{}.99", id % 50)})
}

/// CDC landing files: (first delivery, late delivery, expected) for `inventory` and `accounts`.
fn generate_cdc(landing: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>, Vec<Expected>)> {
    let (mut first, mut late) = (Vec::new(), Vec::new());
    // inventory: snapshot of 1..=50; then updates of 1..=20 and deletes (+ tombstones) of 41..=50;
    // then, delivered late, stale updates of 45..=50 older than their deletes, and new items 51..=60.
    let snapshot: Vec<String> = (1..=50)
        .map(|i| debezium("r", None, Some(item(i, 10)), 1000 + i))
        .collect();
    let mut changes = Vec::new();
    for i in 1..=20 {
        changes.push(debezium(
            "u",
            Some(item(i, 10)),
            Some(item(i, 10 + i)),
            2000 + i,
        ));
    }
    for i in 41..=50 {
        changes.push(debezium("d", Some(item(i, 10)), None, 3000 + i));
        changes.push("null".to_string());
    }
    let stale: Vec<String> = (45..=50)
        .map(|i| debezium("u", Some(item(i, 10)), Some(item(i, 99)), 2500 + i))
        .chain((51..=60).map(|i| debezium("c", None, Some(item(i, 1)), 4000 + i)))
        .collect();
    for (name, lines, is_late) in [
        ("snapshot", snapshot, false),
        ("changes", changes, false),
        ("late", stale, true),
    ] {
        let path = landing.join(format!("cdc/inventory/shop.public.inventory-{name}.jsonl"));
        write(&path, (lines.join("\n") + "\n").as_bytes())?;
        if is_late {
            late.push(path)
        } else {
            first.push(path)
        }
    }
    // accounts (DMS): full load + CDC inserts 1..=30, then updates of 1..=10 and deletes of 21..=30.
    let mut load = String::new();
    for i in 1..=30 {
        load.push_str(&format!(
            "I,2026-11-25 09:00:00.{i:06},{i},owner {i},{i}00.00\n"
        ));
    }
    let mut cdc = String::new();
    for i in 1..=10 {
        cdc.push_str(&format!(
            "U,2026-11-25 10:00:00.{i:06},{i},owner {i},{i}50.00\n"
        ));
    }
    for i in 21..=30 {
        cdc.push_str(&format!(
            "D,2026-11-25 11:00:00.{i:06},{i},owner {i},{i}00.00\n"
        ));
    }
    let load_path = landing.join("dms/accounts/LOAD00000001.csv");
    let cdc_path = landing.join("dms/accounts/20261125-110000000.csv");
    write(&load_path, load.as_bytes())?;
    write(&cdc_path, cdc.as_bytes())?;
    // The CDC file arrives before the full load: out of order, then delivered again.
    first.push(cdc_path.clone());
    first.push(load_path);
    late.push(cdc_path);
    let expected = vec![
        Expected {
            table: "inventory",
            objects: 3,
            rows: 50 + 30 + 16,
            quarantined: 0,
            silver: 40 + 10,
        },
        Expected {
            table: "accounts",
            objects: 2,
            rows: 50,
            quarantined: 0,
            silver: 20,
        },
    ];
    Ok((first, late, expected))
}

/// Generates the landing files; returns their keys (relative to `/`) and the expected outcome.
fn generate(dir: &Path) -> Result<(Vec<String>, Vec<Expected>)> {
    let landing = dir.join("landing");
    let mut keys = Vec::new();
    let mut add = |path: PathBuf, bytes: Vec<u8>| -> Result<()> {
        write(&path, &bytes)?;
        keys.push(
            path.display()
                .to_string()
                .trim_start_matches('/')
                .to_string(),
        );
        Ok(())
    };
    // orders: 2 JSONL files (one gzip), 3 bad rows.
    let mut day1 = String::new();
    for i in 1..=600 {
        day1.push_str(&json!({"order_id": i, "customer_id": 1 + i % 120, "amount": format!("{}.{:02}", 10 + i % 90, i % 100),
            "status": "placed", "updated_at": format!("2026-11-24T{:02}:{:02}:00Z", i % 24, i % 60)}).to_string());
        day1.push('\n');
    }
    day1.push_str("{\"order_id\": \"A-17\", \"customer_id\": 3}\n"); // not a long
    day1.push_str("{\"order_id\": 601, \"customer_id\": 3, \"amount\": 5.00\n"); // truncated JSON
    add(
        landing.join("orders/2026-11-24/orders-0001.jsonl"),
        day1.into_bytes(),
    )?;
    let mut day2 = String::new();
    for i in 601..=1000 {
        day2.push_str(
            &json!({"order_id": i, "customer_id": 1 + i % 120, "amount": (i % 500) as f64 + 0.25,
            "status": "shipped", "updated_at": format!("2026-11-25 {:02}:00:00", i % 24)})
            .to_string(),
        );
        day2.push('\n');
    }
    day2.push_str("{\"customer_id\": 9, \"amount\": 1.0}\n"); // missing required order_id
    add(
        landing.join("orders/2026-11-25/orders 0002+late.jsonl.gz"),
        gzip(day2.as_bytes())?,
    )?;

    // customers: CSV, schema inferred; 2 bad rows (wrong field count, bad number).
    let mut csv = String::from("customer_id,name,country,signup_date,score\n");
    for i in 1..=120 {
        csv.push_str(&format!(
            "{i},\"Customer {i}, Ltd\",{},2025-{:02}-{:02},{}.5\n",
            ["DE", "FR", "US", "BR"][i % 4],
            1 + i % 12,
            1 + i % 28,
            i % 10
        ));
    }
    csv.push_str("121,Broken Row,DE\n");
    add(landing.join("customers/customers.csv"), csv.into_bytes())?;
    // A later extract, checked against the schema inferred from the first one.
    let later = "customer_id,name,country,signup_date,score\n122,Late Customer,FR,2026-11-25,3.5\nx123,Bad Id,FR,2025-01-01,1.5\n";
    add(
        landing.join("customers/customers-update.csv"),
        later.as_bytes().to_vec(),
    )?;

    // payments: Parquet with amount as text, one not a number.
    let n = 800;
    let ids: Vec<i64> = (1..=n).collect();
    let orders: Vec<i64> = (1..=n).map(|i| 1 + (i * 7) % 1000).collect();
    let amounts: Vec<String> = (1..=n)
        .map(|i| {
            if i == 400 {
                "n/a".to_string()
            } else {
                format!("{}.{}", i % 300, i % 10)
            }
        })
        .collect();
    let methods: Vec<&str> = (1..=n)
        .map(|i| ["card", "sepa", "paypal"][(i % 3) as usize])
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("payment_id", DataType::Int64, false),
        Field::new("order_id", DataType::Int64, false),
        Field::new("amount", DataType::Utf8, true),
        Field::new("method", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(Int64Array::from(orders)),
            Arc::new(StringArray::from(amounts)),
            Arc::new(StringArray::from(methods)),
        ],
    )?;
    let mut buf = Vec::new();
    {
        let mut w = ArrowWriter::try_new(&mut buf, schema, None)?;
        w.write(&batch)?;
        w.close()?;
    }
    add(landing.join("payments/2026/11/25/payments.parquet"), buf)?;

    let expected = vec![
        Expected {
            table: "orders",
            objects: 2,
            rows: 1000,
            quarantined: 3,
            silver: 1000,
        },
        Expected {
            table: "customers",
            objects: 2,
            rows: 121,
            quarantined: 2,
            silver: 121,
        },
        Expected {
            table: "payments",
            objects: 1,
            rows: 799,
            quarantined: 1,
            silver: 799,
        },
    ];
    Ok((keys, expected))
}

/// An SQS record whose body is an S3 notification for `key`, shaped as S3 sends it (key URL-encoded).
fn sqs_record(id: &str, bucket: &str, key: &str) -> serde_json::Value {
    let encoded: String = key
        .split('/')
        .map(|p| {
            utf8_percent_encode(p, NON_ALPHANUMERIC)
                .to_string()
                .replace("%20", "+")
        })
        .collect::<Vec<_>>()
        .join("/");
    let body = json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "eventTime": "2026-11-25T00:00:00.000Z", "s3": {"bucket": {"name": bucket}, "object": {"key": encoded}}}]});
    json!({"messageId": id, "eventSource": "aws:sqs", "body": body.to_string()})
}

/// Runs the demo under `dir` (wiped first). Returns an error if any table differs from what was expected.
pub async fn run(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(dir.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(io(dir.display()))?;
    let dir = dir.canonicalize().map_err(io(dir.display()))?;
    let config_path = dir.join("pipeline.toml");
    write(&config_path, demo_config(&dir).as_bytes())?;
    let config = Arc::new(PipelineConfig::load(config_path.to_str().unwrap_or_default()).await?);
    let (keys, mut expected) = generate(&dir)?;
    let (cdc_first, cdc_late, cdc_expected) = generate_cdc(&dir.join("landing"))?;
    expected.extend(cdc_expected);
    let key_of = |p: &PathBuf| p.display().to_string().trim_start_matches('/').to_string();
    let bronze = BronzeHandler::from_config(config.clone()).await?;
    let silver = SilverWriter::new(config.clone());
    let gold = GoldWriter::new(config.clone());

    // Delivery 1: every object, plus S3's test event and a key outside any table (rejected, never written).
    let mut records: Vec<serde_json::Value> = keys
        .iter()
        .cloned()
        .chain(cdc_first.iter().map(key_of))
        .enumerate()
        .map(|(i, k)| sqs_record(&format!("m{i}"), "", &k))
        .collect();
    records.push(json!({"messageId": "test", "eventSource": "aws:sqs",
        "body": json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "landing"}).to_string()}));
    let stray = format!("{}/elsewhere/x.jsonl", dir.join("landing").display())
        .trim_start_matches('/')
        .to_string();
    records.push(sqs_record("stray", "", &stray));
    // Delivery 2: the first two messages again (S3 and SQS deliver at least once) and the late CDC files
    // (stale Debezium updates of deleted rows, the DMS file once more).
    let mut late: Vec<serde_json::Value> = records[..2].to_vec();
    late.extend(
        cdc_late
            .iter()
            .enumerate()
            .map(|(i, p)| sqs_record(&format!("late{i}"), "", &key_of(p))),
    );
    let mut totals: std::collections::BTreeMap<String, (usize, u64, u64)> = Default::default();
    for (n, batch) in [records, late].into_iter().enumerate() {
        let payload = json!({ "Records": batch });
        let Invocation::Sqs(envelopes) = events::parse_invocation(&payload)? else {
            return Err(CliError::Failed("demo batch is not SQS".into()));
        };
        let outcome = bronze.ingest(&envelopes).await;
        println!(
            "delivery {}: {} messages, {} failed, {} rejected",
            n + 1,
            envelopes.len(),
            outcome.failed_messages.len(),
            outcome.rejected.len()
        );
        for c in &outcome.commits {
            let e = totals.entry(c.table.clone()).or_default();
            e.0 += c
                .objects
                .iter()
                .filter(|o| matches!(o.status, ObjectStatus::Ingested { .. }))
                .count();
            e.1 += c.rows();
            e.2 += c.quarantined_rows();
            let skipped = c
                .objects
                .iter()
                .filter(|o| o.status == ObjectStatus::AlreadyIngested)
                .count();
            println!(
                "  bronze {:<10} version {:>4}  +{} rows, {} quarantined, {} already ingested",
                c.table,
                c.version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                c.rows(),
                c.quarantined_rows(),
                skipped
            );
        }
        // The committed messages bronze would send: one silver step per table.
        for t in &config.tables {
            let c = silver.apply(t).await?;
            if let Some((from, to)) = c.applied {
                println!(
                    "  silver {:<10} version {:>4}  bronze ({}, {to}]: {} changes, +{} ~{} -{} rows, {} files rewritten",
                    c.table,
                    c.version.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
                    from.map(|f| f.to_string()).unwrap_or_else(|| "-".into()),
                    c.changes,
                    c.inserted,
                    c.updated,
                    c.deleted,
                    c.files_rewritten
                );
            }
        }
        // The committed messages silver would send: one gold step per view.
        for v in &config.gold {
            let g = gold.apply(v, false).await?;
            if let Some(version) = g.version {
                println!(
                    "  gold   {:<16} version {version:>2}  {}: {} groups upserted, {} deleted",
                    g.view,
                    if g.full {
                        "full".to_string()
                    } else {
                        format!("{} groups touched", g.groups_touched)
                    },
                    g.upserted,
                    g.deleted
                );
            }
        }
    }

    println!(
        "\n{:<10} {:>7} {:>7} {:>8} {:>11} {:>7} {:>8}  lake",
        "table", "objects", "bronze", "expected", "quarantined", "silver", "expected"
    );
    let mut ok = true;
    let count =
        |batches: Vec<RecordBatch>| batches.iter().map(RecordBatch::num_rows).sum::<usize>();
    for e in &expected {
        let location = config.bronze_location(e.table);
        let rows = count(lake::read_table(&location).await?);
        let quarantined = count(lake::read_table(&config.quarantine_location(e.table)).await?);
        let silver_rows = count(lake::read_table(&config.silver_location(e.table)).await?);
        let t = totals.get(e.table).copied().unwrap_or_default();
        let good = rows as u64 == e.rows
            && quarantined as u64 == e.quarantined
            && t.0 == e.objects
            && silver_rows == e.silver;
        ok &= good;
        println!(
            "{:<10} {:>7} {:>7} {:>8} {:>11} {:>7} {:>8}  {}{}",
            e.table,
            t.0,
            rows,
            e.rows,
            format!("{quarantined}/{}", e.quarantined),
            silver_rows,
            e.silver,
            location
                .url
                .path()
                .trim_end_matches(&format!("bronze/{}", e.table)),
            if good { "" } else { "   <-- MISMATCH" }
        );
    }
    // Gold, from what the generator wrote: every order id is unique and none is deleted, orders cover
    // customers 1..=120, customers 1..=120 spread over 4 countries.
    println!(
        "\n{:<16} {:>6} {:>8} {:>12} {:>8}",
        "gold view", "groups", "expected", "orders total", "expected"
    );
    for (view, groups) in [("customer_revenue", 120usize), ("country_revenue", 4)] {
        let batches = lake::read_table(&config.gold_location(view)).await?;
        let total: i64 = batches
            .iter()
            .filter_map(|b| b.column_by_name("orders"))
            .filter_map(|c| {
                deltalake::arrow::compute::cast(c, &DataType::Int64)
                    .ok()
                    .and_then(|c| {
                        deltalake::arrow::compute::sum(c.as_any().downcast_ref::<Int64Array>()?)
                    })
            })
            .sum();
        let n = count(batches);
        let good = n == groups && total == 1000;
        ok &= good;
        println!(
            "{view:<16} {n:>6} {groups:>8} {total:>12} {:>8}{}",
            1000,
            if good { "" } else { "   <-- MISMATCH" }
        );
    }
    println!(
        "\nconfig: {}\ntables: {lake}/bronze/<table>, {lake}/silver/<table>, {lake}/gold/<view>, {lake}/quarantine/<table>",
        config_path.display(),
        lake = dir.join("lake").display()
    );
    println!("read them with any Delta reader, e.g. python -c \"import deltalake; print(deltalake.DeltaTable('{}').to_pyarrow_table().num_rows)\"", config.bronze_location("orders").url.path());
    if !ok {
        return Err(CliError::Failed(
            "demo tables differ from the expected counts".into(),
        ));
    }
    Ok(())
}
