//! Hostile and ambiguous input: each case is rejected with its reason (the rest of the object
//! proceeds), stored exactly, or bounded by a `[limits]` value. Expected values are written out here
//! from the inputs, not taken from the reader under test.

use std::sync::Arc;

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Decimal128Type, Field, Int64Type, Schema, SchemaRef};

use super::*;
use crate::config::TableConfig;
use crate::testkit;

fn table(format: &str, extra: &str) -> TableConfig {
    testkit::table(&format!("format = \"{format}\"\n{extra}"))
}

fn lineage() -> Lineage {
    Lineage {
        key: "landing/t/a".into(),
        etag: "abc".into(),
        ingested_at_us: 1,
    }
}

fn target(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

/// Parses `input` into `target`: the rows kept, and the outcome (or the whole-object error).
fn parse(
    t: &TableConfig,
    target: &SchemaRef,
    input: &[u8],
) -> Result<(Vec<RecordBatch>, ReadOutcome), ReadError> {
    let mut batches = Vec::new();
    let lineage = lineage();
    let dest = Destination {
        target,
        lineage: &lineage,
        sink: Box::new(|b| {
            batches.push(b);
            Ok(())
        }),
    };
    let out = parse_text(input, t, dest)?;
    Ok((batches, out))
}

fn texts(batches: &[RecordBatch], col: &str) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name(col).unwrap().as_string::<i32>().clone();
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("id")
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

fn reasons(out: &ReadOutcome) -> Vec<(Option<u64>, String)> {
    out.bad.iter().map(|b| (b.row, b.reason.clone())).collect()
}

fn id_name() -> SchemaRef {
    target(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
    ])
}

#[test]
fn csv_empty_unquoted_is_null_and_quoted_empty_is_the_empty_string() {
    let (batches, out) = parse(
        &table("csv", ""),
        &id_name(),
        b"id,name,amount\n1,,\n2,\"\",\"\"\n3,\"x\"\"y\",2.5\n",
    )
    .unwrap();
    assert!(out.bad.is_empty(), "{:?}", out.bad);
    assert_eq!(ids(&batches), vec![1, 2, 3]);
    assert_eq!(
        texts(&batches, "name"),
        vec![None, Some(String::new()), Some("x\"y".into())]
    );
    let amounts = batches[0].column_by_name("amount").unwrap();
    // `""` in a double column means no value: NULL, as an unquoted empty field.
    assert!(amounts.is_null(0) && amounts.is_null(1) && amounts.is_valid(2));
}

#[test]
fn csv_unterminated_quote_is_one_rejected_record_not_a_swallowed_file() {
    let input = b"id,name,amount\n1,a,1\n2,\"open,2\n3,c,3\r\n4,\"d\",4\n";
    let (batches, out) = parse(&table("csv", ""), &id_name(), input).unwrap();
    // The lines after the broken one are read again, one record per line.
    assert_eq!(ids(&batches), vec![1, 3, 4]);
    let bad = reasons(&out);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].0, Some(3));
    assert!(bad[0].1.contains("opened on line 3 runs over"), "{bad:?}");
    assert_eq!(out.bad[0].raw.as_deref(), Some("2,\"open,2"));
}

#[test]
fn one_unterminated_quote_in_a_200k_row_csv_costs_one_row() {
    let mut input = b"id,name,amount\n1,\"broken,1\n".to_vec();
    for i in 2..=200_000 {
        input.extend_from_slice(format!("{i},\"n{i}\",{i}\n").as_bytes());
    }
    // A second stray quote later: in line mode it costs its own line only.
    input.extend_from_slice(b"200001,\"again,1\n200002,x,2\n");
    let (batches, out) = parse(&table("csv", ""), &id_name(), &input).unwrap();
    let got = ids(&batches);
    assert_eq!(got.len(), 200_000, "every good row is ingested");
    assert_eq!((got[0], got[got.len() - 1]), (2, 200_002));
    let bad = reasons(&out);
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert_eq!((bad[0].0, bad[1].0), (Some(2), Some(200_002)));
}

#[test]
fn csv_text_after_a_closing_quote_and_quoted_newlines() {
    let input = b"id,name,amount\n1,\"a\"b,1\n2,\"two\nlines\",2\n3,c,3\r\n";
    let (batches, out) = parse(&table("csv", ""), &id_name(), input).unwrap();
    assert_eq!(ids(&batches), vec![2, 3]);
    assert_eq!(
        texts(&batches, "name"),
        vec![Some("two\nlines".into()), Some("c".into())]
    );
    let bad = reasons(&out);
    assert_eq!(bad.len(), 1);
    assert!(bad[0].1.contains("after the closing quote"), "{bad:?}");
    // Row numbers are the line a record starts on.
    let rows: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(crate::schema::SOURCE_ROW)
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(rows, vec![3, 5]);
}

#[test]
fn csv_headers_that_cannot_name_columns_quarantine_the_object() {
    let t = table("csv", "");
    for (input, why) in [
        (&b"id,name,id\n1,a,2\n"[..], "appears twice"),
        (&b"id,name,ID\n1,a,2\n"[..], "differ only in case"),
        (&b"id,,amount\n1,a,2\n"[..], "has no name"),
    ] {
        match parse(&t, &id_name(), input) {
            Err(ReadError::Malformed(reason)) => assert!(reason.contains(why), "{reason}"),
            other => panic!("expected a malformed object for {why}, got {other:?}"),
        }
    }
    // The same headers in an inferred table do not become a schema either.
    match infer_text(&b"a,b,A\n1,2,3\n"[..], &t) {
        Err(ReadError::Malformed(reason)) => assert!(reason.contains("differ only in case")),
        other => panic!("expected malformed, got {other:?}"),
    }
}

#[test]
fn jsonl_byte_order_mark_does_not_cost_line_one() {
    let (batches, out) = parse(
        &table("jsonl", ""),
        &id_name(),
        "\u{FEFF}{\"id\": 1}\n{\"id\": 2}\n".as_bytes(),
    )
    .unwrap();
    assert!(out.bad.is_empty(), "{:?}", out.bad);
    assert_eq!(ids(&batches), vec![1, 2]);
}

#[test]
fn a_line_over_the_limit_is_rejected_with_its_first_bytes_and_the_rest_proceeds() {
    // 0.001 MB = 1,048 bytes.
    let limits = "\n[limits]\nmax_line_mb = 0.001\n";
    let long = format!("{{\"id\": 2, \"name\": \"{}\"}}", "x".repeat(5000));
    let input = format!("{{\"id\": 1}}\n{long}\n{{\"id\": 3}}\n");
    let (batches, out) = parse(&table("jsonl", limits), &id_name(), input.as_bytes()).unwrap();
    assert_eq!(ids(&batches), vec![1, 3]);
    let bad = reasons(&out);
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].0, Some(2));
    assert!(bad[0].1.contains("over the limit of 1048"), "{bad:?}");
    assert_eq!(out.bad[0].raw.as_ref().unwrap().len(), 1048);

    let csv_long = format!(
        "id,name,amount\n1,a,1\n2,\"{}\",2\n3,c,3\n",
        "y".repeat(5000)
    );
    let (batches, out) = parse(&table("csv", limits), &id_name(), csv_long.as_bytes()).unwrap();
    assert_eq!(ids(&batches), vec![1, 3]);
    assert!(reasons(&out)[0].1.contains("over the limit of 1048"));
}

#[test]
fn rejected_rows_past_the_limit_are_counted_not_held() {
    let limits = "\n[limits]\nmax_rejected_rows = 3\nmax_raw_kb = 0.01\n";
    let mut input = String::from("{\"id\": 0}\n");
    for i in 1..=10 {
        input.push_str(&format!("{{\"id\": \"bad-{i}-{}\"}}\n", "z".repeat(40)));
    }
    let (batches, out) = parse(&table("jsonl", limits), &id_name(), input.as_bytes()).unwrap();
    assert_eq!(ids(&batches), vec![0]);
    assert_eq!(out.rejected(), 10);
    assert_eq!(out.bad.len(), 4, "3 kept, 1 summary");
    for kept in &out.bad[..3] {
        assert!(kept.raw.as_ref().unwrap().len() <= 10);
        assert!(kept.reason.contains("raw text cut"), "{}", kept.reason);
    }
    let summary = &out.bad[3];
    assert_eq!(summary.row, None);
    assert!(
        summary
            .reason
            .contains("7 more rejected rows (rows 5..=11)"),
        "{}",
        summary.reason
    );
}

#[test]
fn casts_are_strict_and_decimals_exact() {
    let t = target(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("ok", DataType::Boolean, true),
        Field::new("price", DataType::Decimal128(12, 2), true),
        Field::new("big", DataType::Decimal128(38, 2), true),
    ]);
    let input = br#"{"id": 1, "ok": true, "price": 1.5, "big": 12345678901234567.89}
{"id": 2, "ok": "yes"}
{"id": " 18 "}
{"id": 4, "price": 1.005}
{"id": 5, "price": "1.999"}
{"id": 6, "ok": "FALSE", "price": "-0.10", "big": 9999999999999999999999999999999999.99}
{"id": 7, "price": 10000000000.00}
"#;
    let (batches, out) = parse(&table("jsonl", ""), &t, input).unwrap();
    assert_eq!(ids(&batches), vec![1, 6]);
    let bad = reasons(&out);
    let expect = [
        (2, "`yes` is not a valid boolean"),
        (3, "` 18 ` has leading or trailing spaces"),
        (4, "`1.005` has more than 2 decimal places"),
        (5, "`1.999` has more than 2 decimal places"),
        (7, "does not fit decimal(12,2)"),
    ];
    assert_eq!(bad.len(), expect.len(), "{bad:?}");
    for ((row, reason), (want_row, want)) in bad.iter().zip(expect) {
        assert_eq!(*row, Some(want_row));
        assert!(reason.contains(want), "row {want_row}: {reason}");
    }
    let b = &batches[0];
    let price = b
        .column_by_name("price")
        .unwrap()
        .as_primitive::<Decimal128Type>();
    let big = b
        .column_by_name("big")
        .unwrap()
        .as_primitive::<Decimal128Type>();
    assert_eq!((price.value(0), price.value(1)), (150, -10));
    assert_eq!(big.value(0), 1_234_567_890_123_456_789);
    assert_eq!(
        big.value(1),
        999_999_999_999_999_999_999_999_999_999_999_999
    );
    assert!(!b.column_by_name("ok").unwrap().as_boolean().value(1));
}

#[test]
fn integers_keep_every_digit_from_json_to_a_long_column() {
    let t = target(vec![Field::new("id", DataType::Int64, false)]);
    let input = b"{\"id\": 9007199254740993}\n{\"id\": 1.5}\n{\"id\": 1e2}\n";
    let (batches, out) = parse(&table("jsonl", ""), &t, input).unwrap();
    assert_eq!(ids(&batches), vec![9_007_199_254_740_993]);
    assert_eq!(out.bad.len(), 2, "{:?}", out.bad);
}

#[tokio::test]
async fn a_panicking_reader_becomes_its_objects_quarantine_reason() {
    let r = contained("parquet decoder".into(), || -> Result<(), ReadError> {
        panic!("byte array offset overflow")
    })
    .await;
    match r {
        Err(ReadError::Malformed(reason)) => {
            assert!(reason.contains("parquet decoder failed"), "{reason}");
            assert!(reason.contains("byte array offset overflow"), "{reason}");
        }
        other => panic!("expected a malformed object, got {other:?}"),
    }
}

#[test]
fn type_hints_make_inference_independent_of_arrival_order() {
    let t = table(
        "jsonl",
        "column_types = [\"customer_id long\", \"note string\"]",
    );
    // The update arrives first and its key looks like text; the hint decides, not the sample.
    let s = infer_text(&b"{\"customer_id\": \"x123\", \"amount\": 1}\n"[..], &t)
        .unwrap()
        .unwrap();
    let types: Vec<(&str, &DataType)> = s
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    assert_eq!(
        types,
        vec![
            ("customer_id", &DataType::Int64),
            ("amount", &DataType::Int64),
            ("note", &DataType::Utf8)
        ]
    );
}
