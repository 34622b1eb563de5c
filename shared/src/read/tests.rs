//! Each format's good and bad rows, line numbers, gzip, inference and Parquet conformance.

use std::io::BufReader;
use std::sync::Arc;

use bytes::Bytes;
use deltalake::arrow::datatypes::Schema;
use flate2::read::MultiGzDecoder;

use super::*;
use crate::config::TableConfig;
use crate::schema;
use crate::testkit;
use deltalake::arrow::array::AsArray;
use deltalake::arrow::datatypes::{DataType, Field, Int64Type};

fn table(format: &str, extra: &str) -> TableConfig {
    testkit::table(&format!("format = \"{format}\"\n{extra}"))
}

fn target() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
    ]))
}

fn lineage() -> Lineage {
    Lineage {
        key: "landing/t/a".into(),
        etag: "abc".into(),
        ingested_at_us: 1,
    }
}

/// Parsed rows go to `batches`.
fn collect<'a>(
    target: &'a SchemaRef,
    lineage: &'a Lineage,
    batches: &'a mut Vec<RecordBatch>,
) -> Destination<'a> {
    Destination {
        target,
        lineage,
        sink: Box::new(move |b| {
            batches.push(b);
            Ok(())
        }),
    }
}

fn run(format: &str, extra: &str, input: &[u8]) -> (Vec<RecordBatch>, ReadOutcome) {
    let t = table(format, extra);
    let mut batches = Vec::new();
    let out = parse_text(input, &t, collect(&target(), &lineage(), &mut batches)).unwrap();
    (batches, out)
}

#[test]
fn jsonl_good_and_bad_rows_keep_line_numbers() {
    let input = b"{\"id\": 1, \"name\": \"a\", \"amount\": 1.5}\n\n{\"id\": \"x\"}\nnot json\n[1]\n{\"id\": 4, \"extra\": 1}\n{\"id\": 5, \"amount\": {\"n\": 1}}\n{\"name\": \"no id\"}\n{\"id\": 9}\r\n";
    let (batches, out) = run("jsonl", "", input);
    let ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(ids, vec![1, 9]);
    let rows: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(schema::SOURCE_ROW)
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(rows, vec![1, 9]);
    let bad: Vec<(u64, &str)> = out
        .bad
        .iter()
        .map(|b| (b.row.unwrap(), b.reason.as_str()))
        .collect();
    assert_eq!(
        bad.iter().map(|b| b.0).collect::<Vec<_>>(),
        vec![3, 4, 5, 6, 7, 8],
        "{bad:?}"
    );
    assert!(bad[0].1.contains("`x` is not a valid long"), "{bad:?}");
    assert!(bad[1].1.starts_with("invalid JSON"), "{bad:?}");
    assert!(bad[2].1.contains("expected a JSON object, found an array"));
    assert!(bad[3].1.contains("unknown field `extra`"));
    assert!(bad[4].1.contains("`amount`: expected a scalar"), "{bad:?}");
    assert!(bad[5].1.contains("`id` is required"));
    assert_eq!(
        out.bad
            .iter()
            .find(|b| b.row == Some(4))
            .unwrap()
            .raw
            .as_deref(),
        Some("not json")
    );
    assert_eq!(out.rows_ok, 2);
}

#[test]
fn jsonl_ignore_policy_drops_unknown_fields() {
    let (batches, out) = run(
        "jsonl",
        "unknown_fields = \"ignore\"",
        b"{\"id\": 4, \"extra\": 1}\n",
    );
    assert_eq!(batches[0].num_rows(), 1);
    assert!(out.bad.is_empty());
}

#[test]
fn csv_rows_quoting_and_field_counts() {
    let input = b"id,name,amount\n1,\"a, b\",2.5\n2,\"multi\nline\",\n3,x\nfoo,y,1\n";
    let (batches, out) = run("csv", "", input);
    let b = &batches[0];
    assert_eq!(b.num_rows(), 2);
    assert_eq!(b.column(1).as_string::<i32>().value(0), "a, b");
    assert_eq!(b.column(1).as_string::<i32>().value(1), "multi\nline");
    assert!(b.column(2).is_null(1));
    let rows: Vec<i64> = b
        .column_by_name(schema::SOURCE_ROW)
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    assert_eq!(rows, vec![2, 3]);
    assert_eq!(out.bad.len(), 2);
    assert_eq!(out.bad[0].row, Some(5));
    assert!(out.bad[0].reason.contains("expected 3 fields, found 2"));
    assert_eq!(out.bad[0].raw.as_deref(), Some("3,x"));
    assert!(out.bad[1].reason.contains("`foo` is not a valid long"));
}

#[test]
fn gzip_text_is_decompressed_and_corrupt_gzip_is_malformed() {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(b"{\"id\": 1}\n{\"id\": 2}\n").unwrap();
    let gz = enc.finish().unwrap();
    let t = table("jsonl", "");
    let mut got = Vec::new();
    let reader = BufReader::new(MultiGzDecoder::new(gz.as_slice()));
    let out = parse_text(reader, &t, collect(&target(), &lineage(), &mut got)).unwrap();
    let n: usize = got.iter().map(RecordBatch::num_rows).sum();
    assert_eq!((n, out.rows_ok), (2, 2));
    let corrupt = &gz[..gz.len() / 2];
    let reader = BufReader::new(MultiGzDecoder::new(corrupt));
    let err = parse_text(reader, &t, collect(&target(), &lineage(), &mut got)).unwrap_err();
    assert!(matches!(err, ReadError::Malformed(_)), "{err}");
}

#[test]
fn infers_csv_and_jsonl_schemas() {
    let t = table("csv", "");
    let s = infer_text(&b"a,b\n1,x\n2,y\n"[..], &t).unwrap().unwrap();
    assert_eq!(s.field(0).data_type(), &DataType::Int64);
    let t = table("jsonl", "");
    let s = infer_text(&b"garbage\n{\"a\": 1.5}\n"[..], &t)
        .unwrap()
        .unwrap();
    assert_eq!(s.field(0).data_type(), &DataType::Float64);
    assert!(infer_text(&b"garbage\n"[..], &t).unwrap().is_none());
}

#[test]
fn parquet_rows_are_conformed() {
    use deltalake::arrow::array::{Int64Array, StringArray};
    use deltalake::parquet::arrow::ArrowWriter;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("amount", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
            Arc::new(StringArray::from(vec![Some("1.25"), Some("2"), Some("zz")])),
        ],
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let t = table("parquet", "");
    let mut got = Vec::new();
    let out = parse_parquet(
        Bytes::from(buf),
        &t,
        collect(&target(), &lineage(), &mut got),
    )
    .unwrap();
    assert_eq!(out.rows_ok, 1);
    assert_eq!(out.bad.len(), 2);
    assert_eq!(out.bad[0].row, Some(2));
    assert!(out.bad[1].raw.as_deref().unwrap().contains("zz"));
    let err = parse_parquet(
        Bytes::from_static(b"nope"),
        &t,
        collect(&target(), &lineage(), &mut got),
    )
    .unwrap_err();
    assert!(matches!(err, ReadError::Malformed(_)));
}

/// The ids and the rejected (row, reason) of a `format = "json"` document.
fn json_doc(path: &str, doc: &str) -> (Vec<i64>, Vec<(Option<u64>, String)>) {
    let extra = match path {
        "" => String::new(),
        p => format!("json_path = \"{p}\""),
    };
    let (batches, out) = run("json", &extra, doc.as_bytes());
    let ids = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    let bad = out.bad.iter().map(|b| (b.row, b.reason.clone())).collect();
    (ids, bad)
}

#[test]
fn json_documents_arrays_objects_paths_empty_and_broken() {
    // A pretty-printed array; a bad record is rejected with its number, the rest kept.
    let (ids, bad) = json_doc(
        "",
        "[\n  {\"id\": 1, \"name\": \"a\"},\n  {\"id\": \"x\"},\n  {\"id\": 3, \"amount\": 2.5}\n]\n",
    );
    assert_eq!(ids, [1, 3]);
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].0, Some(2));
    assert!(bad[0].1.contains("not a valid long"), "{bad:?}");
    // One object: one record.
    assert_eq!(json_doc("", "{\"id\": 7, \"name\": \"one\"}").0, [7]);
    // The records at a nested path; the rest of the document ignored.
    let doc = r#"{"meta": {"page": 1}, "data": {"items": [{"id": 1}, {"id": 2}]}, "next": "x"}"#;
    assert_eq!(json_doc("data.items", doc), (vec![1, 2], vec![]));
    // An empty array: no record, nothing rejected.
    assert_eq!(json_doc("", "[]"), (vec![], vec![]));
    // Broken part-way: the records before the break are kept, the break is quarantined.
    let (ids, bad) = json_doc("", "[{\"id\": 1}, {\"id\": 2}, {\"id\": ");
    assert_eq!(ids, [1, 2]);
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].0, None);
    assert!(
        bad[0].1.contains("not valid JSON") && bad[0].1.contains("after record 2"),
        "{bad:?}"
    );
    // A path the document does not have.
    let (ids, bad) = json_doc("records", r#"{"data": []}"#);
    assert!(ids.is_empty());
    assert!(bad[0].1.contains("no `records`"), "{bad:?}");
}

#[test]
fn json_documents_infer_their_schema_from_the_records() {
    let t = table("json", "json_path = \"data\"");
    let doc = br#"{"data": [{"id": 1, "name": "a", "amount": 1.5}, {"id": 2, "name": null}]}"#;
    let schema = infer::infer_text(&doc[..], &t).unwrap().unwrap();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["id", "name", "amount"]);
    assert_eq!(schema.field(0).data_type(), &DataType::Int64);
}
