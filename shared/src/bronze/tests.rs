//! Bronze against real Delta tables on the local filesystem (the S3 path is covered by the
//! LocalStack + MinIO integration tests in `tests/`). Expected rows are computed from the generated
//! inputs here, not by the reader under test.

use super::*;
use crate::schema::{SOURCE_KEY, SOURCE_ROW};
use crate::testkit::{self, ints, texts, Lab};
use std::collections::BTreeSet;
use std::io::Write;

/// Two tables: `orders` (JSON lines, declared columns) and `events` (CSV, inferred).
fn fixture() -> Lab {
    Lab::new(
        r#"
        [[table]]
        name = "orders"
        format = "jsonl"
        columns = ["id long not null", "amount double"]
        [[table]]
        name = "events"
        format = "csv"
        "#,
    )
}

fn writer(lab: &Lab) -> BronzeWriter {
    BronzeWriter::new(lab.cfg.clone()).unwrap()
}

/// (id, file name, row) of every bronze row of `table`.
async fn ids(lab: &Lab, table: &str) -> Vec<(i64, String, i64)> {
    let mut out = Vec::new();
    for b in testkit::rows(&lab.cfg.bronze_location(table)).await {
        let (id, key, row) = (ints(&b, "id"), texts(&b, SOURCE_KEY), ints(&b, SOURCE_ROW));
        for i in 0..b.num_rows() {
            let file = key[i].as_deref().unwrap().rsplit('/').next().unwrap();
            out.push((id[i].unwrap(), file.to_string(), row[i].unwrap()));
        }
    }
    out.sort();
    out
}

/// (row, reason) of every quarantine row of `table`.
async fn quarantine_rows(lab: &Lab, table: &str) -> Vec<(Option<i64>, String)> {
    let mut out = Vec::new();
    for b in testkit::rows(&lab.cfg.quarantine_location(table)).await {
        let (row, reason) = (ints(&b, SOURCE_ROW), texts(&b, quarantine::REASON));
        for i in 0..b.num_rows() {
            out.push((row[i], reason[i].clone().unwrap()));
        }
    }
    out.sort();
    out
}

fn jsonl(ids: std::ops::Range<i64>) -> Vec<u8> {
    ids.map(|i| format!("{{\"id\": {i}, \"amount\": {}.5}}\n", i))
        .collect::<String>()
        .into_bytes()
}

#[tokio::test]
async fn ingests_once_and_redelivery_appends_nothing() {
    let f = fixture();
    let a = f.put("orders/a.jsonl", &jsonl(0..100));
    let mut b_bytes = jsonl(100..150);
    b_bytes.extend_from_slice(b"{\"id\": \"oops\"}\n{broken\n");
    let b = f.put("orders/b.jsonl", &b_bytes);
    let w = writer(&f);
    let table = f.cfg.table("orders").unwrap();
    let first = w
        .ingest(table, &[a.clone(), b.clone(), a.clone()])
        .await
        .unwrap();
    assert_eq!(
        first.version,
        Some(1),
        "create is v0, one commit for the batch"
    );
    assert_eq!(first.rows(), 150);
    let expected: Vec<(i64, String, i64)> = (0..100)
        .map(|i| (i, "a.jsonl".to_string(), i + 1))
        .chain((100..150).map(|i| (i, "b.jsonl".to_string(), i - 99)))
        .collect();
    assert_eq!(ids(&f, "orders").await, expected);
    assert_eq!(
        quarantine_rows(&f, "orders")
            .await
            .iter()
            .map(|r| r.0)
            .collect::<Vec<_>>(),
        vec![Some(51), Some(52)]
    );

    let again = w.ingest(table, &[b.clone(), a.clone()]).await.unwrap();
    assert_eq!(again.version, None);
    assert!(again
        .objects
        .iter()
        .all(|o| o.status == ObjectStatus::AlreadyIngested));
    assert_eq!(ids(&f, "orders").await, expected);
    assert_eq!(quarantine_rows(&f, "orders").await.len(), 2);

    // A new version of the same key (new etag) is a new object.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let a2 = f.put("orders/a.jsonl", &jsonl(1000..1001));
    let third = w.ingest(table, &[a2]).await.unwrap();
    assert_eq!(third.rows(), 1);
    assert_eq!(ids(&f, "orders").await.len(), 151);
}

#[tokio::test]
async fn concurrent_invocations_ingest_each_object_once() {
    let f = fixture();
    let objs: Vec<SourceObject> = (0..4)
        .map(|i| f.put(&format!("orders/p{i}.jsonl"), &jsonl(i * 10..i * 10 + 10)))
        .collect();
    let table = f.cfg.table("orders").unwrap();
    let writers: Vec<BronzeWriter> = (0..4).map(|_| writer(&f)).collect();
    let runs = writers.iter().enumerate().map(|(i, w)| {
        let mut mine = objs.clone();
        mine.rotate_left(i);
        async move { w.ingest(table, &mine).await }
    });
    let results = futures::future::join_all(runs).await;
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    let ids: Vec<i64> = ids(&f, "orders").await.into_iter().map(|r| r.0).collect();
    assert_eq!(ids, (0..40).collect::<Vec<_>>());
    // One create (v0) and one data commit: losers neither re-create nor append.
    let version = crate::lake::version(&f.cfg.bronze_location("orders"))
        .await
        .unwrap();
    assert_eq!(version, Some(1));
}

#[tokio::test]
async fn malformed_objects_are_quarantined_whole_and_missing_ones_fail() {
    let f = fixture();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&jsonl(0..50)).unwrap();
    let gz = gz.finish().unwrap();
    let good = f.put("orders/good.jsonl.gz", &gz);
    let corrupt = f.put("orders/corrupt.jsonl.gz", &gz[..gz.len() / 2]);
    let mut missing = good.clone();
    missing.key = missing.key.replace("good", "missing");
    let table = f.cfg.table("orders").unwrap();
    let w = writer(&f);
    let out = w
        .ingest(table, &[good, corrupt.clone(), missing])
        .await
        .unwrap();
    let statuses: Vec<_> = out
        .objects
        .iter()
        .map(|o| std::mem::discriminant(&o.status))
        .collect();
    assert_eq!(
        statuses[0],
        std::mem::discriminant(&ObjectStatus::Ingested {
            rows: 0,
            quarantined: 0
        })
    );
    assert!(
        matches!(&out.objects[1].status, ObjectStatus::Quarantined { reason } if reason.contains("gzip") || reason.contains("reading")),
        "{:?}",
        out.objects[1]
    );
    assert!(matches!(out.objects[2].status, ObjectStatus::Failed { .. }));
    assert_eq!(ids(&f, "orders").await.len(), 50);
    assert_eq!(quarantine_rows(&f, "orders").await.len(), 1);
    // The corrupt object is not retried forever: its redelivery is recognised.
    let again = w
        .ingest(table, std::slice::from_ref(&corrupt))
        .await
        .unwrap();
    assert_eq!(again.objects[0].status, ObjectStatus::AlreadyIngested);
    assert!(
        std::path::Path::new(&format!("/{}", corrupt.key)).exists(),
        "landing object untouched"
    );
}

#[tokio::test]
async fn csv_schema_is_inferred_then_enforced() {
    let f = fixture();
    let a = f.put("events/a.csv", b"id,kind,score\n1,click,0.5\n2,view,1.5\n");
    let b = f.put("events/b.csv", b"id,kind,score\n3,click,2.0\nx,view,1\n");
    let table = f.cfg.table("events").unwrap();
    let w = writer(&f);
    w.ingest(table, &[a]).await.unwrap();
    let out = w.ingest(table, &[b]).await.unwrap();
    assert_eq!(out.rows(), 1);
    let ids: BTreeSet<i64> = ids(&f, "events").await.into_iter().map(|r| r.0).collect();
    assert_eq!(ids, BTreeSet::from([1, 2, 3]));
    let q = quarantine_rows(&f, "events").await;
    assert_eq!(q.len(), 1);
    assert!(q[0].1.contains("`x` is not a valid long"), "{q:?}");
}

#[tokio::test]
async fn source_key_is_the_key_under_the_landing_uri() {
    let lab = Lab::with_table("t", "format = \"jsonl\"\ncolumns = [\"id long\"]");
    lab.ingest("t", "a.jsonl", "{\"id\":1}\n{\"id\":\"x\"}\n")
        .await;
    let keys = testkit::column_texts(&lab.cfg.bronze_location("t"), SOURCE_KEY).await;
    assert_eq!(keys, [Some("t/a.jsonl".to_string())]);
    let keys = testkit::column_texts(&lab.cfg.quarantine_location("t"), SOURCE_KEY).await;
    assert_eq!(keys, [Some("t/a.jsonl".to_string())]);
}
