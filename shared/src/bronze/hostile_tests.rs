//! One bad object never blocks the good ones: objects whose columns cannot become a Delta table, that
//! exceed a limit, or that a reader chokes on are quarantined whole with the reason, in the same
//! commit that ingests the others.

use std::io::Write;
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, Time64MicrosecondArray,
    TimestampNanosecondArray, UInt64Array,
};
use deltalake::arrow::datatypes::{DataType, Decimal128Type, Int64Type, TimestampMicrosecondType};

use super::*;
use crate::testkit::{self, Lab};

fn writer(lab: &Lab) -> BronzeWriter {
    BronzeWriter::new(lab.cfg.clone()).unwrap()
}

/// Each object's status: `Ok(rows)` when ingested, `Err(reason)` when quarantined whole.
fn statuses(commit: &BronzeCommit) -> Vec<Result<u64, String>> {
    commit
        .objects
        .iter()
        .map(|o| match &o.status {
            ObjectStatus::Ingested { rows, .. } => Ok(*rows),
            ObjectStatus::Quarantined { reason } => Err(reason.clone()),
            other => panic!("{}: unexpected {other:?}", o.key),
        })
        .collect()
}

#[tokio::test]
async fn objects_whose_columns_cannot_be_a_delta_table_are_quarantined_and_the_rest_commit() {
    let lab = Lab::with_table("events", "format = \"jsonl\"\nunknown_fields = \"evolve\"");
    let table = lab.table("events");
    let case_twins = lab.put("events/a.jsonl", b"{\"id\": 1, \"ID\": 2}\n");
    let product_name = lab.put("events/b.jsonl", b"{\"id\": 1, \"_seq\": 2}\n");
    let good = lab.put(
        "events/c.jsonl",
        b"{\"id\": 1, \"name\": \"x\"}\n{\"id\": 2}\n",
    );
    let commit = writer(&lab)
        .ingest(table, &[case_twins, product_name, good])
        .await
        .unwrap();
    let s = statuses(&commit);
    assert!(
        matches!(&s[0], Err(r) if r.contains("differ only in case")),
        "{s:?}"
    );
    assert!(matches!(&s[1], Err(r) if r.contains("`_seq`")), "{s:?}");
    assert_eq!(s[2], Ok(2));
    // Evolving: a new column that differs from an existing one only in case is refused too.
    let evolving = lab.put("events/d.jsonl", b"{\"id\": 3, \"NAME\": \"y\"}\n");
    let again = lab.put("events/e.jsonl", b"{\"id\": 4, \"extra\": true}\n");
    let commit = writer(&lab)
        .ingest(table, &[evolving, again])
        .await
        .unwrap();
    let s = statuses(&commit);
    assert!(
        matches!(&s[0], Err(r) if r.contains("`name` and `NAME`")),
        "{s:?}"
    );
    assert_eq!(s[1], Ok(1));
    let reasons = testkit::quarantine_reasons(&lab.cfg, "events").await;
    assert_eq!(reasons.len(), 3, "{reasons:?}");
}

#[tokio::test]
async fn parquet_types_delta_lacks_are_stored_without_loss() {
    let lab = Lab::with_table("p", "format = \"parquet\"");
    let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
    let times: ArrayRef = Arc::new(Time64MicrosecondArray::from(vec![
        0,
        3_600_000_000,
        45_296_000_001,
    ]));
    // 2024-01-01T00:00:00-05:00 = 05:00 UTC, with nanoseconds a microsecond column cannot hold in row 3.
    let at = 1_704_085_200_000_000_000i64;
    let stamps: ArrayRef = Arc::new(
        TimestampNanosecondArray::from(vec![at, at + 1_000, at + 1])
            .with_timezone("America/New_York"),
    );
    let unsigned: ArrayRef = Arc::new(UInt64Array::from(vec![u64::MAX, 0, 7]));
    let batch =
        RecordBatch::try_from_iter([("id", ids), ("t", times), ("at", stamps), ("u", unsigned)])
            .unwrap();
    let mut buf = Vec::new();
    let mut w =
        deltalake::parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let obj = lab.put("p/a.parquet", &buf);
    let commit = writer(&lab).ingest(lab.table("p"), &[obj]).await.unwrap();
    assert!(
        matches!(
            commit.objects[0].status,
            ObjectStatus::Ingested {
                rows: 2,
                quarantined: 1
            }
        ),
        "{:?}",
        commit.objects[0].status
    );
    let rows = testkit::rows(&lab.cfg.bronze_location("p")).await;
    let b = &rows[0];
    assert_eq!(b.num_rows(), 2);
    let t = b.column_by_name("t").unwrap();
    assert_eq!(t.data_type(), &DataType::Utf8);
    let t = t.as_string::<i32>();
    assert_eq!((t.value(0), t.value(1)), ("00:00:00", "01:00:00"));
    let at_col = b.column_by_name("at").unwrap();
    let at_col = at_col.as_primitive::<TimestampMicrosecondType>();
    assert_eq!(at_col.value(0), at / 1_000);
    assert_eq!(at_col.value(1), at / 1_000 + 1);
    let u = b
        .column_by_name("u")
        .unwrap()
        .as_primitive::<Decimal128Type>();
    assert_eq!(u.value(0), u64::MAX as i128);
    assert_eq!(
        b.column_by_name("id")
            .unwrap()
            .as_primitive::<Int64Type>()
            .values(),
        &[1, 2]
    );
    let reasons = testkit::quarantine_reasons(&lab.cfg, "p").await;
    assert!(
        reasons[0].contains("would change when stored"),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn a_gzip_bomb_is_stopped_at_the_object_limit() {
    // 0.000001 GB = 1,073 bytes decompressed.
    let lab = Lab::new(
        "[limits]\nmax_object_gb = 0.000001\n[[table]]\nname = \"orders\"\nformat = \"jsonl\"\n",
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    for i in 0..10_000 {
        writeln!(gz, "{{\"id\": {i}}}").unwrap();
    }
    let bomb = lab.put("orders/bomb.jsonl.gz", &gz.finish().unwrap());
    let small = lab.put("orders/small.jsonl", b"{\"id\": 1}\n");
    let commit = writer(&lab)
        .ingest(lab.table("orders"), &[bomb, small])
        .await
        .unwrap();
    let s = statuses(&commit);
    assert!(
        matches!(&s[0], Err(r) if r.contains("limits.max_object_gb")),
        "{s:?}"
    );
    assert_eq!(s[1], Ok(1));
}

#[tokio::test]
async fn two_events_for_one_overwritten_key_in_one_batch_read_it_once() {
    // Unversioned: both events (etags of two writes) resolve to the version now in storage.
    let lab = Lab::with_table("orders", "format = \"jsonl\"");
    let mut first = lab.put("orders/a.jsonl", b"{\"id\": 1}\n{\"id\": 2}\n");
    let mut second = first.clone();
    first.etag = Some("etag-of-the-first-write".into());
    second.etag = Some("etag-of-the-second-write".into());
    let commit = writer(&lab)
        .ingest(lab.table("orders"), &[first, second])
        .await
        .unwrap();
    assert_eq!(commit.objects[1].status, ObjectStatus::AlreadyIngested);
    let ids = testkit::column_ints(&lab.cfg.bronze_location("orders"), "id").await;
    assert_eq!(ids.len(), 2, "{ids:?}");
}
