//! Bronze end to end on real local infrastructure: objects uploaded to a LocalStack bucket raise real S3
//! notifications on a real SQS queue; the received messages, as a Lambda SQS event, go through the bronze
//! handler into Delta tables in a MinIO bucket. Tables are compared row for row with an oracle built from
//! the generated files here; redelivery and concurrent handlers must change nothing; a failing object
//! must come back as a batch item failure and reach the DLQ through the queue's redrive policy.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use integration_tests::*;
use lakehouse::bronze::BronzeWriter;
use lakehouse::deltalake_arrow as arrow;
use lakehouse::handler::BronzeHandler;
use lakehouse::{lake, PipelineConfig};
use serde_json::Value;

const TABLES: &str = r#"
[[table]]
name = "orders"
format = "jsonl"
columns = ["id long not null", "amount double"]

[[table]]
name = "customers"
format = "csv"
columns = ["customer_id long not null", "name string", "country string"]

[[table]]
name = "payments"
format = "parquet"
columns = ["payment_id long not null", "amount double"]
"#;

/// (source key, source row, key column as text) — the identity of a bronze row.
type Row = (String, i64, String);

fn column_text(batch: &arrow::array::RecordBatch, name: &str) -> Vec<String> {
    let col = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column {name} missing"));
    let fmt = arrow::util::display::ArrayFormatter::try_new(col.as_ref(), &Default::default())
        .expect("formatter");
    (0..batch.num_rows())
        .map(|i| fmt.value(i).to_string())
        .collect()
}

async fn bronze_rows(config: &PipelineConfig, table: &str, id_col: &str) -> BTreeSet<Row> {
    let batches = lake::read_table(&config.bronze_location(table))
        .await
        .expect("scan bronze");
    let mut rows = BTreeSet::new();
    for b in &batches {
        let keys = column_text(b, "_source_key");
        let nums = column_text(b, "_source_row");
        let ids = column_text(b, id_col);
        for i in 0..b.num_rows() {
            assert!(
                rows.insert((
                    keys[i].clone(),
                    nums[i].parse().expect("row number"),
                    ids[i].clone()
                )),
                "duplicate bronze row {:?}",
                (&keys[i], &nums[i])
            );
        }
    }
    rows
}

async fn quarantine_rows(config: &PipelineConfig, table: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for b in &lake::read_table(&config.quarantine_location(table))
        .await
        .expect("scan quarantine")
    {
        let (k, r, reason) = (
            column_text(b, "_source_key"),
            column_text(b, "_source_row"),
            column_text(b, "reason"),
        );
        for i in 0..b.num_rows() {
            out.push((k[i].clone(), r[i].clone(), reason[i].clone()));
        }
    }
    out.sort();
    out
}

async fn bronze_versions(config: &PipelineConfig) -> Vec<Option<i64>> {
    let mut out = Vec::new();
    for t in ["orders", "customers", "payments"] {
        out.push(
            lake::version(&config.bronze_location(t))
                .await
                .expect("version"),
        );
    }
    out
}

fn failures(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .expect("batchItemFailures")
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_notifications_to_bronze_on_minio_exactly_once() {
    lakehouse::telemetry::init(lakehouse::telemetry::FUNCTION_DEFAULT);
    let id = run_id("it");
    let landing = Landing::create(&id, 2, 1).await;
    let lake_bucket = lake_bucket().await;
    let lake_uri = format!("s3://{lake_bucket}/{id}");
    let config = Arc::new(
        PipelineConfig::from_toml(&pipeline_toml(&landing.bucket, &lake_uri, TABLES), "test")
            .expect("config"),
    );

    // ---- generate the landing files and, independently, the rows bronze must hold
    let mut oracle_orders = BTreeSet::new();
    let orders_key = "orders/2026/11/25/batch 1+a ü.jsonl";
    let mut jsonl = String::new();
    for line in 1..=502i64 {
        match line {
            100 => jsonl.push_str("{broken\n"),
            200 => jsonl.push_str("{\"id\": \"x\", \"amount\": 1}\n"),
            _ => {
                jsonl.push_str(&format!(
                    "{{\"id\": {}, \"amount\": {}}}\n",
                    line * 10,
                    line as f64 / 4.0
                ));
                oracle_orders.insert((orders_key.to_string(), line, (line * 10).to_string()));
            }
        }
    }
    let mut oracle_customers = BTreeSet::new();
    let customers_key = "customers/export.csv.gz";
    let mut csv = String::from("customer_id,name,country\n");
    for i in 1..=300i64 {
        if i == 50 {
            csv.push_str("50,only two\n");
        } else {
            csv.push_str(&format!("{i},\"Name {i}, Jr\",DE\n"));
            oracle_customers.insert((customers_key.to_string(), i + 1, i.to_string()));
        }
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(csv.as_bytes()).expect("gzip");
    let payments_key = "payments/p.parquet";
    let ids: Vec<Option<i64>> = (1..=400)
        .map(|i| if i == 7 { None } else { Some(i) })
        .collect();
    let oracle_payments: BTreeSet<Row> = ids
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (payments_key.to_string(), i as i64 + 1, v.to_string())))
        .collect();
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("payment_id", arrow::datatypes::DataType::Int64, true),
        arrow::datatypes::Field::new("amount", arrow::datatypes::DataType::Float64, true),
    ]));
    let batch = arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(arrow::array::Int64Array::from(ids)),
            Arc::new(arrow::array::Float64Array::from(
                (1..=400).map(|i| i as f64).collect::<Vec<_>>(),
            )),
        ],
    )
    .expect("batch");
    let mut parquet = Vec::new();
    let mut w =
        lakehouse::deltalake_parquet::arrow::ArrowWriter::try_new(&mut parquet, schema, None)
            .expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");

    landing.put(orders_key, jsonl.into_bytes()).await;
    landing.put(customers_key, gz.finish().expect("gzip")).await;
    landing.put(payments_key, parquet).await;
    // A notification for an object that does not exist: storage cannot serve it, so it must fail and retry.
    landing.send_missing_object("orders/ghost.jsonl").await;

    // ---- the real notifications, received from the real queue
    let messages = landing
        .receive(&landing.queue_url, 4, Duration::from_secs(30))
        .await;
    let event = landing.lambda_event(&messages);
    let ghost_id = messages
        .iter()
        .find(|m| m.body().is_some_and(|b| b.contains("ghost.jsonl")))
        .and_then(|m| m.message_id())
        .expect("ghost message")
        .to_string();
    assert!(
        messages.iter().any(|m| m
            .body()
            .is_some_and(|b| b.contains("batch%201%2Ba%20%C3%BC.jsonl"))),
        "LocalStack should percent-encode the key in the notification: {:?}",
        messages.iter().map(|m| m.body()).collect::<Vec<_>>()
    );

    let writer = BronzeHandler::new(BronzeWriter::new(config.clone()).expect("writer"));
    let response = writer.handle(&event).await.expect("handler");
    assert_eq!(
        failures(&response),
        vec![ghost_id.clone()],
        "only the missing object fails"
    );
    let ok: Vec<_> = messages
        .iter()
        .filter(|m| m.message_id() != Some(ghost_id.as_str()))
        .cloned()
        .collect();
    landing.delete(&landing.queue_url, &ok).await;

    let check = |config: Arc<PipelineConfig>| {
        let (o, c, p) = (
            oracle_orders.clone(),
            oracle_customers.clone(),
            oracle_payments.clone(),
        );
        async move {
            assert_eq!(
                bronze_rows(&config, "orders", "id").await,
                o,
                "orders differ from the oracle"
            );
            assert_eq!(
                bronze_rows(&config, "customers", "customer_id").await,
                c,
                "customers differ from the oracle"
            );
            assert_eq!(
                bronze_rows(&config, "payments", "payment_id").await,
                p,
                "payments differ from the oracle"
            );
        }
    };
    check(config.clone()).await;
    let q = quarantine_rows(&config, "orders").await;
    assert_eq!(
        q.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        vec!["100", "200"],
        "{q:?}"
    );
    assert!(
        q[0].2.contains("invalid JSON") && q[1].2.contains("`x` is not a valid long"),
        "{q:?}"
    );
    let q = quarantine_rows(&config, "customers").await;
    assert_eq!(q.len(), 1);
    assert!(
        q[0].1 == "51" && q[0].2.contains("expected 3 fields, found 2"),
        "{q:?}"
    );
    let q = quarantine_rows(&config, "payments").await;
    assert!(
        q.len() == 1 && q[0].1 == "7" && q[0].2.contains("`payment_id` is required"),
        "{q:?}"
    );
    let versions = bronze_versions(&config).await;

    // ---- redelivery, then four concurrent handlers on the same batch: nothing changes
    let again = writer.handle(&event).await.expect("redelivery");
    assert_eq!(failures(&again), vec![ghost_id.clone()]);
    let writers: Vec<BronzeHandler> = (0..4)
        .map(|_| BronzeHandler::new(BronzeWriter::new(config.clone()).expect("writer")))
        .collect();
    let responses = futures::future::join_all(writers.iter().map(|w| w.handle(&event))).await;
    for r in responses {
        assert_eq!(
            failures(&r.expect("concurrent handler")),
            vec![ghost_id.clone()]
        );
    }
    check(config.clone()).await;
    let after = bronze_versions(&config).await;
    assert_eq!(after, versions, "a redelivered batch must not commit");

    // ---- an independent reader sees the same table
    assert_eq!(
        python_row_count(&format!("{lake_uri}/bronze/orders")),
        oracle_orders.len()
    );

    // ---- the failed message returns to the queue and, after maxReceiveCount receives, reaches the DLQ
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    loop {
        let dlq = landing
            .sqs
            .receive_message()
            .queue_url(&landing.dlq_url)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive dlq");
        if dlq
            .messages
            .unwrap_or_default()
            .iter()
            .any(|m| m.body().is_some_and(|b| b.contains("ghost.jsonl")))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the failing message never reached the DLQ"
        );
        let redelivered = landing
            .sqs
            .receive_message()
            .queue_url(&landing.queue_url)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        let msgs = redelivered.messages.unwrap_or_default();
        if !msgs.is_empty() {
            let r = writer
                .handle(&landing.lambda_event(&msgs))
                .await
                .expect("handler");
            assert_eq!(
                failures(&r).len(),
                msgs.len(),
                "ghost keeps failing; it is not acknowledged"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_outside_tables_or_bucket_are_rejected_and_never_written() {
    let id = run_id("rej");
    let landing = Landing::create(&id, 3, 30).await;
    let lake_bucket = lake_bucket().await;
    let lake_uri = format!("s3://{lake_bucket}/{id}");
    let config = Arc::new(
        PipelineConfig::from_toml(&pipeline_toml(&landing.bucket, &lake_uri, TABLES), "test")
            .expect("config"),
    );
    landing
        .put("unrouted/x.jsonl", b"{\"id\": 1}\n".to_vec())
        .await;
    let messages = landing
        .receive(&landing.queue_url, 1, Duration::from_secs(30))
        .await;
    let mut event = landing.lambda_event(&messages);
    // The same object claimed from another bucket.
    let mut foreign = event["Records"][messages.len() - 1].clone();
    foreign["messageId"] = Value::from("foreign");
    foreign["body"] = Value::from(
        foreign["body"]
            .as_str()
            .unwrap_or_default()
            .replace(&landing.bucket, "someone-elses-bucket")
            .replace("unrouted/", "orders/"),
    );
    event["Records"]
        .as_array_mut()
        .expect("records")
        .push(foreign);
    let writer = BronzeHandler::new(BronzeWriter::new(config.clone()).expect("writer"));
    let response = writer.handle(&event).await.expect("handler");
    assert!(
        failures(&response).is_empty(),
        "rejected keys are acknowledged, not retried: {response}"
    );
    for t in ["orders", "customers", "payments"] {
        assert_eq!(
            lake::version(&config.bronze_location(t))
                .await
                .expect("version"),
            None,
            "{t} must not exist"
        );
        assert_eq!(
            lake::version(&config.quarantine_location(t))
                .await
                .expect("version"),
            None,
            "{t} quarantine must not exist"
        );
    }
    landing.delete(&landing.queue_url, &messages).await;
}

/// The race that matters: four invocations receive the same fresh batch at once (an SQS redelivery while
/// the first is still running) and all try to commit it first. S3 put-if-absent on MinIO plus the txn
/// markers must leave every row exactly once, and every invocation must report success.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_delivery_ingests_each_row_once() {
    let id = run_id("race");
    let landing = Landing::create(&id, 3, 30).await;
    let lake_uri = format!("s3://{}/{id}", lake_bucket().await);
    let config = Arc::new(
        PipelineConfig::from_toml(&pipeline_toml(&landing.bucket, &lake_uri, TABLES), "test")
            .expect("config"),
    );
    let mut oracle = BTreeSet::new();
    for f in 0..6i64 {
        let key = format!("orders/part-{f}.jsonl");
        let body: String = (0..200i64)
            .map(|i| {
                let id = f * 1000 + i;
                oracle.insert((key.clone(), i + 1, id.to_string()));
                format!("{{\"id\": {id}, \"amount\": {i}.5}}\n")
            })
            .collect();
        landing.put(&key, body.into_bytes()).await;
    }
    let messages = landing
        .receive(&landing.queue_url, 6, Duration::from_secs(30))
        .await;
    let event = landing.lambda_event(&messages);
    let writers: Vec<BronzeHandler> = (0..4)
        .map(|_| BronzeHandler::new(BronzeWriter::new(config.clone()).expect("writer")))
        .collect();
    let responses = futures::future::join_all(writers.iter().map(|w| w.handle(&event))).await;
    for r in responses {
        let r = r.expect("handler");
        assert!(failures(&r).is_empty(), "every racer succeeds: {r}");
    }
    assert_eq!(bronze_rows(&config, "orders", "id").await, oracle);
    // Exactly one commit carried the data: create (v0) + one append (v1).
    assert_eq!(
        lake::version(&config.bronze_location("orders"))
            .await
            .expect("version"),
        Some(1)
    );
    landing.delete(&landing.queue_url, &messages).await;
}

/// A versioned landing bucket: one key written three times (the third with the first's content), its
/// notifications delivered newest first and one twice. Each event names its version: every version is
/// ingested exactly once with its own rows, even the one whose bytes equal an earlier version's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_version_of_an_overwritten_key_is_ingested_once() {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    let id = run_id("ver");
    let landing = Landing::create(&id, 3, 30).await;
    landing
        .s3
        .put_bucket_versioning()
        .bucket(&landing.bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("enable versioning");
    let lake_bucket = lake_bucket().await;
    let lake_uri = format!("s3://{lake_bucket}/{id}");
    let config = Arc::new(
        PipelineConfig::from_toml(&pipeline_toml(&landing.bucket, &lake_uri, TABLES), "test")
            .expect("config"),
    );
    let body = |ids: &[i64]| -> Vec<u8> {
        ids.iter()
            .map(|i| format!("{{\"id\": {i}, \"amount\": 1.5}}\n"))
            .collect::<String>()
            .into_bytes()
    };
    let contents: [&[i64]; 3] = [&[1, 2, 3], &[10, 11, 12], &[1, 2, 3]];
    let mut versions = Vec::new();
    for ids in contents {
        let put = landing
            .s3
            .put_object()
            .bucket(&landing.bucket)
            .key("orders/same.jsonl")
            .body(body(ids).into())
            .send()
            .await
            .expect("upload a version");
        versions.push(
            put.version_id
                .expect("a versioned bucket names the version"),
        );
    }
    let mut messages = landing
        .receive(&landing.queue_url, 3, Duration::from_secs(30))
        .await;
    messages.reverse();
    let first = messages.last().cloned().expect("a message");
    messages.push(first);
    let writer = BronzeHandler::new(BronzeWriter::new(config.clone()).expect("writer"));
    let response = writer
        .handle(&landing.lambda_event(&messages))
        .await
        .expect("handler");
    assert!(failures(&response).is_empty(), "{response}");
    // Oracle: per version, the ids written to it.
    let mut got: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    let mut total = 0;
    for b in &lake::read_table(&config.bronze_location("orders"))
        .await
        .expect("scan bronze")
    {
        let (tags, ids) = (column_text(b, "_source_etag"), column_text(b, "id"));
        for i in 0..b.num_rows() {
            total += 1;
            let version = versions
                .iter()
                .find(|v| tags[i].ends_with(&format!("@{v}")))
                .unwrap_or_else(|| panic!("tag {} names no version written", tags[i]));
            got.entry(version.clone())
                .or_default()
                .insert(ids[i].clone());
        }
    }
    assert_eq!(total, 9, "three versions of three rows, each once");
    for (v, ids) in versions.iter().zip(contents) {
        let want: BTreeSet<String> = ids.iter().map(|i| i.to_string()).collect();
        assert_eq!(got.get(v), Some(&want), "version {v}");
    }
    // Redelivering every event changes nothing.
    let before = lake::version(&config.bronze_location("orders"))
        .await
        .expect("version");
    let again = writer
        .handle(&landing.lambda_event(&messages))
        .await
        .expect("handler");
    assert!(failures(&again).is_empty(), "{again}");
    assert_eq!(
        lake::version(&config.bronze_location("orders"))
            .await
            .expect("version"),
        before
    );
    landing.delete(&landing.queue_url, &messages[..3]).await;
}
