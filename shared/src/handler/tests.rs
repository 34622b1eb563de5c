//! Which messages of a batch fail, through the real handlers on a local lake: a batch holding a good
//! object, a missing object, a body that is not JSON, a key outside every table prefix and S3's test
//! event fails exactly the missing object's and the unparsable body's messages; the rest is committed
//! or acknowledged.

use serde_json::{json, Value};

use super::*;
use crate::events::Committed;
use crate::gold::GoldWriter;
use crate::silver::SilverWriter;
use crate::testkit::{column_ints, Lab};

fn lab() -> Lab {
    Lab::with_table(
        "orders",
        "format = \"jsonl\"\nkeys = [\"id\"]\ncolumns = [\"id long not null\"]\n[[gold]]\nname = \"ids\"\nsql = \"SELECT id, COUNT(*) AS n FROM orders GROUP BY id\"\nkeys = [\"id\"]\nsources = [\"orders\"]",
    )
}

/// An SQS record whose body is an S3 notification of `key` (no bucket: a file:// landing).
fn s3_message(id: &str, key: &str) -> Value {
    let body = json!({"Records": [{"eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": ""}, "object": {"key": key}}}]});
    json!({"messageId": id, "eventSource": "aws:sqs", "body": body.to_string()})
}

fn sqs(records: Vec<Value>) -> Value {
    json!({ "Records": records })
}

fn failed_ids(response: &Value) -> Vec<String> {
    let mut ids: Vec<String> = response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn bronze_batch_fails_only_the_messages_whose_objects_failed() {
    let lab = lab();
    let good = lab.put("orders/good.jsonl", b"{\"id\": 1}\n{\"id\": 2}\n");
    let mut missing = good.clone();
    missing.key = missing.key.replace("good", "missing");
    let stray = lab.landing("elsewhere.jsonl");
    let handler = BronzeHandler::new(crate::bronze::BronzeWriter::new(lab.cfg.clone()).unwrap());
    let payload = sqs(vec![
        s3_message("good", &good.key),
        s3_message("missing", &missing.key),
        json!({"messageId": "garbage", "eventSource": "aws:sqs", "body": "not json"}),
        s3_message("stray", stray.to_str().unwrap().trim_start_matches('/')),
        json!({"messageId": "test", "eventSource": "aws:sqs",
            "body": json!({"Service": "Amazon S3", "Event": "s3:TestEvent"}).to_string()}),
    ]);
    let response = handler.handle(&payload).await.unwrap();
    assert_eq!(failed_ids(&response), vec!["garbage", "missing"]);
    assert_eq!(
        column_ints(&lab.cfg.bronze_location("orders"), "id").await,
        vec![Some(1), Some(2)],
        "the good object is committed in the same batch"
    );

    // A direct event of the missing object is an error (Lambda retries it); of the good one, a summary.
    let direct = json!({"Records": [{"eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": ""}, "object": {"key": missing.key}}}]});
    let e = handler.handle(&direct).await.unwrap_err();
    assert!(matches!(e, crate::Error::StepFailed { .. }), "{e:?}");
}

#[tokio::test]
async fn downstream_batch_fails_unknown_tables_and_unparsable_bodies_only() {
    let lab = lab();
    lab.ingest("orders", "a.jsonl", "{\"id\": 7}\n").await;
    let committed = |id: &str, layer: &str, table: &str| {
        json!({"messageId": id, "eventSource": "aws:sqs",
            "body": serde_json::to_string(&Committed::new(layer, table, 1)).unwrap()})
    };
    let silver = SilverHandler::new(SilverWriter::new(lab.cfg.clone()));
    let response = silver
        .handle(&sqs(vec![
            committed("ok", "bronze", "orders"),
            committed("again", "bronze", "orders"),
            committed("unknown", "bronze", "nope"),
            json!({"messageId": "garbage", "eventSource": "aws:sqs", "body": "{"}),
        ]))
        .await
        .unwrap();
    assert_eq!(failed_ids(&response), vec!["garbage", "unknown"]);
    assert_eq!(
        column_ints(&lab.cfg.silver_location("orders"), "id").await,
        vec![Some(7)]
    );
    let outcome = silver
        .apply(&[crate::events::Envelope::from_message(
            Some("m".into()),
            &serde_json::to_string(&Committed::new("bronze", "orders", 1)).unwrap(),
        )])
        .await;
    assert_eq!(
        outcome.commits.len(),
        1,
        "one step per table, however many messages"
    );
    assert!(outcome.commits[0].applied.is_none(), "already up to date");

    let gold = GoldHandler::new(GoldWriter::new(lab.cfg.clone()));
    let response = gold
        .handle(&sqs(vec![committed("s", "silver", "orders")]))
        .await
        .unwrap();
    assert!(failed_ids(&response).is_empty(), "{response}");
    assert_eq!(
        column_ints(&lab.cfg.gold_location("ids"), "n").await,
        vec![Some(1)]
    );
    // A direct committed message for a table the pipeline lacks is an error, not an empty success.
    let direct = serde_json::to_value(Committed::new("silver", "nope", 1)).unwrap();
    assert!(gold.handle(&direct).await.is_err());
}

#[tokio::test]
async fn a_scheduled_event_maintains_every_table_and_a_direct_one_names_its_table() {
    let lab = lab();
    for i in 0..4 {
        lab.ingest(
            "orders",
            &format!("o{i}.jsonl"),
            &format!("{{\"id\": {i}}}\n"),
        )
        .await;
    }
    SilverWriter::new(lab.cfg.clone())
        .apply(lab.table("orders"))
        .await
        .unwrap();
    let handler = MaintainHandler::from_config(lab.cfg.clone());
    let scheduled = json!({"version": "0", "detail-type": "Scheduled Event", "source": "aws.events",
        "time": "2026-11-30T05:00:00Z", "detail": {}});
    let report = handler.handle(&scheduled).await.unwrap();
    let tables: std::collections::BTreeSet<&str> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert!(
        tables.contains("bronze/orders") && tables.contains("silver/orders"),
        "{report}"
    );
    let checkpointed = report["tasks"].as_array().unwrap().iter().any(|t| {
        t["table"] == "bronze/orders" && t["task"] == "checkpoint" && t["outcome"] == "done"
    });
    assert!(checkpointed, "{report}");
    let err = handler.handle(&json!({"table": "nope"})).await.unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert_eq!(
        column_ints(&lab.cfg.silver_location("orders"), "id")
            .await
            .len(),
        4
    );
}

/// On Lambda a scheduled view is not run by its table's silver commits, only by its schedule's input;
/// a schedule naming an unknown view, or sent to the other layer, fails; the runner (queues) runs the
/// view on commits as before.
#[tokio::test]
async fn on_lambda_long_windows_run_on_their_schedule_only() {
    let lab = Lab::new(
        "[[table]]\nname = \"orders\"\nformat = \"jsonl\"\nkeys = [\"id\"]\ncolumns = [\"id long not null\"]\nbatch_window_seconds = 86400\n[[gold]]\nname = \"ids\"\nsql = \"SELECT id, COUNT(*) AS n FROM orders GROUP BY id\"\nkeys = [\"id\"]\nsources = [\"orders\"]\n[[gold]]\nname = \"daily\"\nsql = \"SELECT id, COUNT(*) AS n FROM orders GROUP BY id\"\nkeys = [\"id\"]\nsources = [\"orders\"]\nbatch_window_seconds = 86400\n",
    );
    lab.ingest("orders", "a.jsonl", "{\"id\": 7}\n").await;
    let schedule = |step: &str, names: &[&str]| {
        serde_json::to_value(crate::events::Scheduled::new(
            step,
            names.iter().map(|n| n.to_string()).collect(),
        ))
        .unwrap()
    };
    // What the AWS template tells the functions it schedules.
    let scheduled = Windows::parse("silver:orders,gold:daily");
    let silver =
        SilverHandler::new(SilverWriter::new(lab.cfg.clone())).with_windows(scheduled.clone());
    let done = silver
        .handle(&schedule("silver", &["orders"]))
        .await
        .unwrap();
    assert_eq!(done["steps"][0]["table"], "orders", "{done}");
    assert_eq!(
        column_ints(&lab.cfg.silver_location("orders"), "id").await,
        vec![Some(7)]
    );
    assert!(silver.handle(&schedule("gold", &["daily"])).await.is_err());
    assert!(silver.handle(&schedule("silver", &["nope"])).await.is_err());

    let gold = GoldHandler::new(GoldWriter::new(lab.cfg.clone())).with_windows(scheduled.clone());
    let committed = serde_json::to_value(Committed::new("silver", "orders", 1)).unwrap();
    let steps = gold.handle(&committed).await.unwrap();
    let views: Vec<&str> = steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["view"].as_str().unwrap())
        .collect();
    assert_eq!(views, ["ids"], "the daily view waits for its schedule");
    assert!(!lab
        .cfg
        .gold_location("daily")
        .url
        .to_file_path()
        .unwrap()
        .exists());
    let steps = gold.handle(&schedule("gold", &["daily"])).await.unwrap();
    assert_eq!(steps["steps"][0]["view"], "daily", "{steps}");
    assert_eq!(
        column_ints(&lab.cfg.gold_location("daily"), "n").await,
        vec![Some(1)]
    );
    // Off AWS the runner waits every window on the queues: a commit runs both views.
    let queued = GoldHandler::new(GoldWriter::new(lab.cfg.clone()));
    let steps = queued.handle(&committed).await.unwrap();
    assert_eq!(steps["steps"].as_array().unwrap().len(), 2, "{steps}");
    assert!(
        !scheduled.announces("orders"),
        "bronze leaves orders to its schedule"
    );
    assert!(Windows::default().announces("orders"));
    assert!(scheduled.disagreements(&lab.cfg).is_empty());
}
