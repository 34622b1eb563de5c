//! Silver end to end on real local infrastructure: Debezium change files uploaded (shuffled) to a
//! LocalStack bucket → real S3 notifications → bronze handler (in several batches, one delivered twice)
//! → "bronze committed" messages on a real silver queue → four silver invocations racing on the same
//! batch of those messages → `silver/<table>` on MinIO equals an oracle computed here from the events.
//! The same feed also lands under a second prefix configured as SCD type 2 (`stock_history`), whose
//! history must equal its own oracle. Last, the announcements on a FIFO queue (what the AWS template
//! deploys between layers): grouped by table, a version announced twice delivered once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use integration_tests::*;
use lakehouse::handler::{BronzeHandler, SilverHandler};
use lakehouse::silver::SilverWriter;
use lakehouse::{lake, PipelineConfig};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;

fn failures(response: &Value) -> usize {
    response["batchItemFailures"]
        .as_array()
        .map_or(usize::MAX, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn debezium_feed_through_real_queues_with_racing_silver_invocations() {
    lakehouse::telemetry::init(lakehouse::telemetry::FUNCTION_DEFAULT);
    let id = run_id("silver");
    let landing = Landing::create(&id, 3, 30).await;
    let silver_queue = landing.plain_queue(&format!("{id}-silver")).await;
    let lake_uri = format!("s3://{}/{id}", lake_bucket().await);
    let tables = format!(
        r#"
[notify.silver]
queue_url = "{silver_queue}"
endpoint_url = "{endpoint}"
region = "us-east-1"
access_key_id = "test"
secret_access_key = "test"

[[table]]
name = "stock"
prefix = "cdc/stock/"
format = "jsonl"
cdc = "debezium"
keys = ["id"]
sequence_by = "source.lsn"
row_columns = ["id long not null", "sku string", "qty long"]

[[table]]
name = "stock_history"
prefix = "cdc/stock_history/"
format = "jsonl"
cdc = "debezium"
keys = ["id"]
sequence_by = "source.lsn"
row_columns = ["id long not null", "sku string", "qty long"]
scd_type = 2
"#,
        endpoint = localstack_endpoint()
    );
    let config = Arc::new(
        PipelineConfig::from_toml(&pipeline_toml(&landing.bucket, &lake_uri, &tables), "test")
            .expect("config"),
    );

    // Random change stream: updates/creates and deletes over 40 keys, unique increasing LSNs.
    let mut rng = StdRng::seed_from_u64(42);
    let events: Vec<StockEvent> = (0..600)
        .map(|i| StockEvent {
            id: rng.gen_range(0..40),
            lsn: 1000 + i * 7,
            qty: rng.gen_range(0..500),
            delete: rng.gen_bool(0.25),
        })
        .collect();
    let mut oracle: BTreeMap<i64, &StockEvent> = BTreeMap::new();
    for e in &events {
        if oracle.get(&e.id).is_none_or(|o| e.lsn > o.lsn) {
            oracle.insert(e.id, e);
        }
    }
    let oracle: BTreeMap<i64, (String, i64)> = oracle
        .into_iter()
        .filter(|(_, e)| !e.delete)
        .map(|(k, e)| (k, (format!("sku-{k}"), e.qty)))
        .collect();
    // SCD2 oracle: per key in LSN order, each upsert is a version valid until the key's next event.
    let mut by_key: BTreeMap<i64, Vec<&StockEvent>> = BTreeMap::new();
    for e in &events {
        by_key.entry(e.id).or_default().push(e);
    }
    let mut history_oracle = BTreeSet::new();
    for (id, mut es) in by_key {
        es.sort_by_key(|e| e.lsn);
        for (i, e) in es.iter().enumerate().filter(|(_, e)| !e.delete) {
            let next = es.get(i + 1).map(|n| n.lsn);
            history_oracle.insert((id, e.lsn, next, next.is_none(), e.qty));
        }
    }

    // Files of 30 events, uploaded shuffled.
    let mut files: Vec<(String, String)> = events
        .chunks(30)
        .enumerate()
        .flat_map(|(i, c)| {
            let body: String = c.iter().map(|e| e.debezium() + "\n").collect();
            ["stock", "stock_history"].map(|t| (format!("cdc/{t}/part-{i:03}.jsonl"), body.clone()))
        })
        .collect();
    files.shuffle(&mut rng);
    for (key, body) in &files {
        landing.put(key, body.clone().into_bytes()).await;
    }
    let messages = landing
        .receive(&landing.queue_url, files.len(), Duration::from_secs(60))
        .await;

    // Bronze in three batches, the second delivered twice; each announces its commit on the silver queue.
    let bronze = BronzeHandler::from_config(config.clone())
        .await
        .expect("bronze");
    let batches: Vec<&[aws_sdk_sqs::types::Message]> =
        messages.chunks(messages.len().div_ceil(3)).collect();
    let mut announcements = 0;
    for (i, batch) in batches.iter().enumerate() {
        let deliveries = if i == 1 { 2 } else { 1 };
        for _ in 0..deliveries {
            let r = bronze
                .handle(&landing.lambda_event(batch))
                .await
                .expect("bronze");
            assert_eq!(failures(&r), 0, "{r}");
            // One announcement per table the batch holds.
            let history = batch
                .iter()
                .filter(|m| m.body().is_some_and(|b| b.contains("stock_history")))
                .count();
            announcements += usize::from(history > 0) + usize::from(history < batch.len());
        }
    }
    landing.delete(&landing.queue_url, &messages).await;

    // The committed messages, from the real queue, to four racing silver invocations.
    let silver_msgs = landing
        .receive_matching(
            &silver_queue,
            announcements,
            Duration::from_secs(30),
            "lakehouse.committed",
        )
        .await;
    let tables: BTreeSet<(String, String)> = silver_msgs
        .iter()
        .map(|m| {
            let body: Value = serde_json::from_str(m.body().unwrap_or_default()).expect("json");
            let text = |f: &str| body[f].as_str().unwrap_or_default().to_string();
            (text("layer"), text("table"))
        })
        .collect();
    assert_eq!(
        tables,
        BTreeSet::from([
            ("bronze".to_string(), "stock".to_string()),
            ("bronze".to_string(), "stock_history".to_string())
        ])
    );
    let event = landing.lambda_event(&silver_msgs);
    let writers: Vec<SilverHandler> = (0..4)
        .map(|_| SilverHandler::new(SilverWriter::new(config.clone())))
        .collect();
    let responses = futures::future::join_all(writers.iter().map(|w| w.handle(&event))).await;
    for r in responses {
        let r = r.expect("silver handler");
        assert_eq!(failures(&r), 0, "every racer succeeds: {r}");
    }

    let mut got: BTreeMap<i64, (String, i64)> = BTreeMap::new();
    for b in lake::read_table(&config.silver_location("stock"))
        .await
        .expect("scan silver")
    {
        let id = lakehouse::deltalake_arrow::compute::cast(
            b.column_by_name("id").expect("id"),
            &lakehouse::deltalake_arrow::datatypes::DataType::Int64,
        )
        .expect("cast");
        let qty = lakehouse::deltalake_arrow::compute::cast(
            b.column_by_name("qty").expect("qty"),
            &lakehouse::deltalake_arrow::datatypes::DataType::Int64,
        )
        .expect("cast");
        let sku = lakehouse::deltalake_arrow::compute::cast(
            b.column_by_name("sku").expect("sku"),
            &lakehouse::deltalake_arrow::datatypes::DataType::Utf8,
        )
        .expect("cast");
        use lakehouse::deltalake_arrow::array::AsArray;
        use lakehouse::deltalake_arrow::datatypes::Int64Type;
        for i in 0..b.num_rows() {
            let prev = got.insert(
                id.as_primitive::<Int64Type>().value(i),
                (
                    sku.as_string::<i32>().value(i).to_string(),
                    qty.as_primitive::<Int64Type>().value(i),
                ),
            );
            assert!(prev.is_none(), "duplicate key in silver");
        }
    }
    assert_eq!(got, oracle, "silver differs from the oracle");
    let mut history = Vec::new();
    for b in lake::read_table(&config.silver_location("stock_history"))
        .await
        .expect("scan silver history")
    {
        use lakehouse::deltalake_arrow::array::{Array, AsArray};
        use lakehouse::deltalake_arrow::datatypes::{DataType, Int64Type};
        let int = |n: &str| {
            lakehouse::deltalake_arrow::compute::cast(
                b.column_by_name(n).expect(n),
                &DataType::Int64,
            )
            .expect("cast")
        };
        let (id, from, to, qty) = (int("id"), int("valid_from"), int("valid_to"), int("qty"));
        let (id, from, to, qty) = (
            id.as_primitive::<Int64Type>(),
            from.as_primitive::<Int64Type>(),
            to.as_primitive::<Int64Type>(),
            qty.as_primitive::<Int64Type>(),
        );
        let current = b
            .column_by_name("is_current")
            .expect("is_current")
            .as_boolean();
        for i in 0..b.num_rows() {
            history.push((
                id.value(i),
                from.value(i),
                to.is_valid(i).then(|| to.value(i)),
                current.value(i),
                qty.value(i),
            ));
        }
    }
    let history_set: BTreeSet<_> = history.iter().cloned().collect();
    assert_eq!(history_set.len(), history.len(), "duplicate history rows");
    assert_eq!(
        history_set, history_oracle,
        "SCD2 history differs from the oracle"
    );
    for table in ["stock", "stock_history"] {
        // Everything the racers saw is applied: one more step has nothing to do.
        let again = SilverWriter::new(config.clone())
            .apply(config.table(table).expect("table"))
            .await
            .expect("apply");
        assert!(again.applied.is_none(), "{again:?}");
        // One data commit for all racers: create (v0) + one MERGE (v1).
        assert_eq!(
            lake::version(&config.silver_location(table))
                .await
                .expect("version"),
            Some(1),
            "{table}"
        );
    }
    assert_eq!(
        python_row_count(&format!("{lake_uri}/silver/stock")),
        oracle.len()
    );
    landing.delete(&silver_queue, &silver_msgs).await;
}

/// The notifier on a real FIFO queue: one message group per table, so while one table's message is
/// in flight (its step running) SQS hands out no other message of that table but does hand out other
/// tables'; a version announced twice (a redelivered bronze batch) arrives once.
#[tokio::test]
async fn announcements_on_a_fifo_queue_are_grouped_by_table_and_deduplicated() {
    use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
    use lakehouse::config::QueueConfig;
    use lakehouse::events::Committed;
    use lakehouse::handler::Notifier;

    let sqs = localstack_sqs().await;
    let url = sqs
        .create_queue()
        .queue_name(format!("{}.fifo", run_id("silver")))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .expect("create FIFO queue")
        .queue_url
        .unwrap_or_default();
    let notifier = Notifier::new(&QueueConfig {
        queue_url: url.clone(),
        endpoint_url: Some(localstack_endpoint()),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
    })
    .await;
    for (table, version) in [("orders", 1), ("orders", 1), ("orders", 2), ("payments", 1)] {
        notifier
            .send(&Committed::new("bronze", table, version))
            .await
            .expect("announce");
    }
    let receive = || async {
        sqs.receive_message()
            .queue_url(&url)
            .max_number_of_messages(1)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .visibility_timeout(30)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default()
    };
    let body = |m: &aws_sdk_sqs::types::Message| -> Committed {
        serde_json::from_str(m.body().unwrap_or_default()).expect("a committed message")
    };
    // orders v1 in flight: the next message handed out is payments', not orders v2.
    let first = receive().await;
    assert_eq!(first.len(), 1);
    assert_eq!(
        (body(&first[0]).table.as_str(), body(&first[0]).version),
        ("orders", 1)
    );
    let group = first[0]
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
        .cloned();
    assert_eq!(group.as_deref(), Some("orders"));
    let second = receive().await;
    assert_eq!(second.len(), 1);
    assert_eq!(
        body(&second[0]).table,
        "payments",
        "orders is in flight: its group waits"
    );
    assert!(receive().await.is_empty(), "orders v2 waits for orders v1");
    // orders v1 done: v2 comes next, and the duplicate of v1 never does.
    sqs.delete_message()
        .queue_url(&url)
        .receipt_handle(first[0].receipt_handle().unwrap_or_default())
        .send()
        .await
        .expect("delete");
    let third = receive().await;
    assert_eq!(third.len(), 1);
    assert_eq!(
        (body(&third[0]).table.as_str(), body(&third[0]).version),
        ("orders", 2)
    );
    sqs.delete_message()
        .queue_url(&url)
        .receipt_handle(third[0].receipt_handle().unwrap_or_default())
        .send()
        .await
        .expect("delete");
    assert!(
        receive().await.is_empty(),
        "the duplicate announcement of orders v1 was dropped"
    );
}
