//! Samples shaped as the tools write them: Debezium 2.x PostgreSQL connector events (plain and with
//! the JSON-converter `schema`/`payload` wrapper, with the delete + tombstone pair) and AWS DMS CSV
//! CDC files (no header; `Op` first, then the `timestampColumnName` column). They go through the
//! real bronze reader first, so the test covers file → bronze → changes.

use super::*;
use crate::read;
use crate::testkit::{ints, table, texts};

/// File bytes → bronze batch (schema declared or inferred, as bronze would) → changes.
fn changes(t: &TableConfig, input: &str, version: i64) -> ChangeSet {
    let data = match t.declared_schema() {
        Some(s) => s,
        None => Arc::new(read::infer_text(input.as_bytes(), t).unwrap().unwrap()),
    };
    let lineage = schema::Lineage {
        key: "landing/t/f".into(),
        etag: "e".into(),
        ingested_at_us: 0,
    };
    let mut batches = Vec::new();
    let dest = read::Destination {
        target: &data,
        lineage: &lineage,
        sink: Box::new(|b| {
            batches.push(b);
            Ok(())
        }),
    };
    let out = read::parse_text(input.as_bytes(), t, dest).unwrap();
    assert!(
        out.bad.is_empty(),
        "bronze rejected sample rows: {:?}",
        out.bad
    );
    let bronze = deltalake::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    Normalizer::new(t, &data)
        .unwrap()
        .normalize(&bronze, version)
        .unwrap()
}

const SOURCE: &str = r#"{"version":"2.5.0.Final","connector":"postgresql","name":"dbserver1","ts_ms":1764064800000,"snapshot":"false","db":"inventory","sequence":"[\"24023064\",\"24023128\"]","schema":"public","table":"customers","txId":565,"lsn":LSN,"xmin":null}"#;

fn dbz(op: &str, before: &str, after: &str, lsn: i64, ts: i64) -> String {
    format!(
        r#"{{"before":{before},"after":{after},"source":{},"op":"{op}","ts_ms":{ts},"transaction":null}}"#,
        SOURCE.replace("LSN", &lsn.to_string())
    )
}

#[test]
fn debezium_events_with_delete_and_tombstone() {
    let t = table(
        "format = \"jsonl\"\ncdc = \"debezium\"\nkeys = [\"id\"]\nsequence_by = \"source.lsn\"\nrow_columns = [\"id int not null\", \"first_name string not null\", \"email string\"]",
    );
    let anne = r#"{"id":1001,"first_name":"Anne","email":"annek@noanswer.org"}"#;
    let anne2 = r#"{"id":1001,"first_name":"Anne Marie","email":"annek@noanswer.org"}"#;
    let bob = r#"{"id":1002,"first_name":"Bob","email":null}"#;
    let input = [
        dbz("r", "null", bob, 100, 1764064800100),
        dbz("c", "null", anne, 200, 1764064800200),
        dbz("u", anne, anne2, 300, 1764064800300),
        dbz("d", anne2, "null", 400, 1764064800400),
        "null".to_string(), // the tombstone that follows a delete
    ]
    .join("\n");
    let set = changes(&t, &input, 7);
    assert!(set.rejected.is_empty(), "{:?}", set.rejected);
    let b = &set.batch;
    assert_eq!(
        ints(b, "id"),
        vec![Some(1002), Some(1001), Some(1001), Some(1001)]
    );
    assert_eq!(
        texts(b, OP),
        ["U", "U", "U", "D"].map(|s| Some(s.to_string()))
    );
    assert_eq!(
        ints(b, SEQ),
        vec![Some(100), Some(200), Some(300), Some(400)]
    );
    assert_eq!(texts(b, "first_name")[2].as_deref(), Some("Anne Marie"));
    assert_eq!(ints(b, BRONZE_VERSION), vec![Some(7); 4]);
    let latest = latest_per_key(b, &t.keys).unwrap();
    assert_eq!(ints(&latest, "id"), vec![Some(1001), Some(1002)]);
    assert_eq!(texts(&latest, OP), ["D", "U"].map(|s| Some(s.to_string())));
}

#[test]
fn debezium_wrapped_payload_and_bad_events() {
    let t = table(
        "format = \"jsonl\"\ncdc = \"debezium\"\nkeys = [\"id\"]\nsequence_by = \"ts_ms\"\nrow_columns = [\"id long not null\", \"qty int\"]",
    );
    let schema = r#"{"type":"struct","fields":[{"type":"struct","fields":[{"type":"int64","optional":false,"field":"id"}],"optional":true,"name":"dbserver1.inventory.orders.Value","field":"before"}],"optional":false,"name":"dbserver1.inventory.orders.Envelope"}"#;
    let wrap = |payload: &str| format!(r#"{{"schema":{schema},"payload":{payload}}}"#);
    let input = [
        wrap(&dbz("c", "null", r#"{"id":5,"qty":2}"#, 1, 1000)),
        wrap(&dbz(
            "u",
            r#"{"id":5,"qty":2}"#,
            r#"{"id":5,"qty":"many"}"#,
            2,
            2000,
        )),
        wrap(&dbz("x", "null", r#"{"id":6,"qty":1}"#, 3, 3000)),
        wrap(&dbz("c", "null", r#"{"qty":1}"#, 4, 4000)),
        wrap("null"),
    ]
    .join("\n");
    let set = changes(&t, &input, 1);
    assert_eq!(ints(&set.batch, "id"), vec![Some(5)]);
    assert_eq!(ints(&set.batch, SEQ), vec![Some(1000)]);
    let reasons: Vec<&str> = set.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].contains("`many` is not a valid int"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("unknown Debezium op `x`"),
        "{reasons:?}"
    );
    assert!(reasons[2].contains("`id` is required"), "{reasons:?}");
    assert_eq!(
        set.rejected.iter().map(|r| r.row).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
}

#[test]
fn dms_csv_cdc_file() {
    let t = table(
        "format = \"csv\"\ncdc = \"dms\"\ncsv_header = false\nkeys = [\"id\"]\nsequence_by = \"commit_ts\"\ncolumns = [\"Op string\", \"commit_ts timestamp\", \"id long not null\", \"name string\", \"balance decimal(10,2)\"]",
    );
    let input = "I,2026-11-25 10:00:00.000001,1,Anne,10.50\n\
                 I,2026-11-25 10:00:00.000002,2,Bob,0.00\n\
                 U,2026-11-25 10:00:01.000000,1,Anne,12.00\n\
                 D,2026-11-25 10:00:02.000000,2,Bob,0.00\n\
                 X,2026-11-25 10:00:03.000000,3,Eve,1.00\n";
    let set = changes(&t, input, 3);
    assert_eq!(set.rejected.len(), 1);
    assert!(set.rejected[0].reason.contains("unknown DMS operation `X`"));
    assert!(
        set.batch.column_by_name("Op").is_none(),
        "the op column is not a row column"
    );
    let latest = latest_per_key(&set.batch, &t.keys).unwrap();
    assert_eq!(ints(&latest, "id"), vec![Some(1), Some(2)]);
    assert_eq!(texts(&latest, OP), ["U", "D"].map(|s| Some(s.to_string())));
    assert_eq!(texts(&latest, "balance")[0].as_deref(), Some("12.00"));
}

#[test]
fn upsert_delete_flag_and_ties_break_by_version_then_row() {
    let t = table("format = \"jsonl\"\nkeys = [\"k\"]\nsequence_by = \"seq\"\ndelete_column = \"deleted\"\ncolumns = [\"k string not null\", \"seq long\", \"v long\", \"deleted boolean\"]");
    let v1 = changes(&t, "{\"k\":\"a\",\"seq\":5,\"v\":1}\n{\"k\":\"a\",\"seq\":5,\"v\":2}\n{\"k\":\"b\",\"seq\":1,\"v\":1}\n", 1);
    let v2 = changes(&t, "{\"k\":\"a\",\"seq\":4,\"v\":3}\n{\"k\":\"b\",\"seq\":1,\"v\":9,\"deleted\":true}\n{\"k\":\"c\",\"v\":1}\n", 2);
    assert!(v1.batch.column_by_name("deleted").is_none());
    let all = deltalake::arrow::compute::concat_batches(&v1.batch.schema(), [&v1.batch, &v2.batch])
        .unwrap();
    let latest = latest_per_key(&all, &t.keys).unwrap();
    // a: seq 5 beats the later-arriving seq 4; between the two seq-5 rows the later row wins.
    // b: same seq, later bronze version wins (the delete). c: no sequence, kept.
    assert_eq!(
        texts(&latest, "k"),
        ["a", "b", "c"].map(|s| Some(s.to_string()))
    );
    assert_eq!(ints(&latest, "v"), vec![Some(2), Some(9), Some(1)]);
    assert_eq!(
        texts(&latest, OP),
        ["U", "D", "U"].map(|s| Some(s.to_string()))
    );
}

#[test]
fn debezium_without_schemas_reads_integers_and_base64_by_the_tables_hints() {
    // `schemas.enable=false`: a date as days, a MicroTimestamp as µs, a precise decimal as base64.
    let line = dbz(
        "c",
        "null",
        r#"{"id":1,"opened":18472,"seen":1683966846547000,"balance":"JxA="}"#,
        10,
        1000,
    );
    let columns = "row_columns = [\"id long not null\", \"opened date\", \"seen timestamp\", \"balance decimal(12,2)\"]";
    let plain = table(&format!(
        "format = \"jsonl\"\ncdc = \"debezium\"\nkeys = [\"id\"]\nsequence_by = \"source.lsn\"\n{columns}"
    ));
    let set = changes(&plain, &line, 1);
    // Without hints: the date is read (days are the only integer date), the rest is refused.
    assert_eq!(set.rejected.len(), 1, "{:?}", set.rejected);
    assert!(
        set.rejected[0].reason.contains("`seen`"),
        "{:?}",
        set.rejected
    );
    let hinted = table(&format!(
        "format = \"jsonl\"\ncdc = \"debezium\"\nkeys = [\"id\"]\nsequence_by = \"source.lsn\"\ninteger_timestamps = \"us\"\nbinary_decimals = true\n{columns}"
    ));
    let set = changes(&hinted, &line, 1);
    assert!(set.rejected.is_empty(), "{:?}", set.rejected);
    assert_eq!(ints(&set.batch, "opened"), vec![Some(18472)]);
    assert_eq!(ints(&set.batch, "seen"), vec![Some(1683966846547000)]);
    assert_eq!(
        texts(&set.batch, "balance"),
        vec![Some("100.00".to_string())]
    );
    let err = crate::config::PipelineConfig::from_toml(
        "[landing]\nuri = \"s3://l\"\n[lake]\nuri = \"s3://k\"\n[[table]]\nname = \"t\"\nformat = \"jsonl\"\ninteger_timestamps = \"days\"\n",
        "test",
    )
    .unwrap_err();
    assert!(err.to_string().contains("integer_timestamps"), "{err}");
}
