//! Real connectors' feeds into silver, built from the connectors' documented wire forms (not our own
//! generator's shape) and compared with an oracle computed from the event history.
//!
//! Debezium 2.7 PostgreSQL with Kafka Connect's JsonConverter and `schemas.enable=true` (each line
//! `{"schema": ..., "payload": ...}`), connector defaults: `decimal.handling.mode=precise` (a Connect
//! `Decimal`: base64 of the unscaled big-endian two's-complement integer, the scale in the schema),
//! `time.precision.mode=adaptive` (`io.debezium.time.Date` days, `MicroTimestamp` µs), `Json` and
//! `ZonedTimestamp` strings; snapshot `r` records first, then `c`/`u`/`d` ordered by `source.lsn`,
//! delivered shuffled, some objects twice, some events copied into a second object.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::*;
use crate::bronze::BronzeWriter;
use crate::testkit::{self, ints, quarantine_reasons, texts, Lab};

const COLUMNS: &str = "row_columns = [\"id int not null\", \"balance decimal(12,2)\", \"opened date\", \"last_login timestamp\", \"profile json\", \"updated_at timestamp\", \"name string\"]";

fn customers(unknown_fields: &str) -> Lab {
    Lab::with_table(
        "customers",
        &format!(
            "format = \"jsonl\"\ncdc = \"debezium\"\nkeys = [\"id\"]\nsequence_by = \"source.lsn\"\nunknown_fields = \"{unknown_fields}\"\n{COLUMNS}"
        ),
    )
}

/// One row image as the database holds it.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    id: i32,
    /// Cents.
    balance: i64,
    /// Days since epoch.
    opened: i32,
    /// µs since epoch.
    last_login: i64,
    name: String,
}

#[derive(Clone, Debug)]
struct Change {
    op: &'static str,
    lsn: i64,
    before: Option<Row>,
    after: Option<Row>,
}

const VALUE_FIELDS: &str = r#"[{"type":"int32","optional":false,"default":0,"field":"id"},{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2","connect.decimal.precision":"12"},"field":"balance"},{"type":"int32","optional":true,"name":"io.debezium.time.Date","version":1,"field":"opened"},{"type":"int64","optional":true,"name":"io.debezium.time.MicroTimestamp","version":1,"field":"last_login"},{"type":"string","optional":true,"name":"io.debezium.data.Json","version":1,"field":"profile"},{"type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp","version":1,"field":"updated_at"},{"type":"string","optional":true,"field":"name"}]"#;

/// The envelope schema as the JsonConverter writes it for `dbserver1.public.customers`.
fn envelope_schema(value_fields: &str) -> String {
    format!(
        r#"{{"type":"struct","fields":[{{"type":"struct","fields":{value_fields},"optional":true,"name":"dbserver1.public.customers.Value","field":"before"}},{{"type":"struct","fields":{value_fields},"optional":true,"name":"dbserver1.public.customers.Value","field":"after"}},{{"type":"struct","fields":[{{"type":"string","optional":false,"field":"version"}},{{"type":"string","optional":false,"field":"connector"}},{{"type":"string","optional":false,"field":"name"}},{{"type":"int64","optional":false,"field":"ts_ms"}},{{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{{"allowed":"true,last,false,incremental"}},"default":"false","field":"snapshot"}},{{"type":"string","optional":false,"field":"db"}},{{"type":"string","optional":true,"field":"sequence"}},{{"type":"string","optional":false,"field":"schema"}},{{"type":"string","optional":false,"field":"table"}},{{"type":"int64","optional":true,"field":"txId"}},{{"type":"int64","optional":true,"field":"lsn"}},{{"type":"int64","optional":true,"field":"xmin"}}],"optional":false,"name":"io.debezium.connector.postgresql.Source","field":"source"}},{{"type":"string","optional":false,"field":"op"}},{{"type":"int64","optional":true,"field":"ts_ms"}},{{"type":"struct","fields":[{{"type":"string","optional":false,"field":"id"}},{{"type":"int64","optional":false,"field":"total_order"}},{{"type":"int64","optional":false,"field":"data_collection_order"}}],"optional":true,"name":"event.block","version":1,"field":"transaction"}}],"optional":false,"name":"dbserver1.public.customers.Envelope","version":2}}"#
    )
}

/// The unscaled big-endian two's-complement bytes of `cents`, minimal length, base64.
pub(super) fn connect_decimal(cents: i64) -> String {
    let bytes = cents.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        let redundant = (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    base64::engine::general_purpose::STANDARD.encode(&bytes[start..])
}

fn image(r: &Row) -> String {
    format!(
        r#"{{"id":{},"balance":"{}","opened":{},"last_login":{},"profile":"{{\"tier\":\"gold\",\"id\":{}}}","updated_at":"2026-11-25T10:00:00.{:06}Z","name":"{}"}}"#,
        r.id,
        connect_decimal(r.balance),
        r.opened,
        r.last_login,
        r.id,
        r.id,
        r.name
    )
}

fn line(c: &Change) -> String {
    let img = |r: &Option<Row>| match (c.op, r) {
        // REPLICA IDENTITY DEFAULT: a delete's before-image holds the key only.
        ("d", Some(r)) => format!(r#"{{"id":{}}}"#, r.id),
        (_, r) => r.as_ref().map_or("null".to_string(), image),
    };
    let snapshot = if c.op == "r" { "true" } else { "false" };
    let payload = format!(
        r#"{{"before":{},"after":{},"source":{{"version":"2.7.3.Final","connector":"postgresql","name":"dbserver1","ts_ms":1764064800000,"snapshot":"{snapshot}","db":"inventory","sequence":"[null,\"{lsn}\"]","schema":"public","table":"customers","txId":{lsn},"lsn":{lsn},"xmin":null}},"op":"{}","ts_ms":1764064800123,"transaction":null}}"#,
        img(&c.before),
        img(&c.after),
        c.op,
        lsn = c.lsn
    );
    format!(
        r#"{{"schema":{},"payload":{payload}}}"#,
        envelope_schema(VALUE_FIELDS)
    )
}

/// A history: a snapshot of 12 rows, then 200 changes over 30 ids (inserts, updates, deletes with
/// REPLICA IDENTITY DEFAULT: updates without `before`, deletes with the key only).
fn history(rng: &mut StdRng) -> Vec<Change> {
    let mut live: BTreeMap<i32, Row> = BTreeMap::new();
    let mut out = Vec::new();
    let mut lsn = 1_000_000i64;
    let row = |id: i32, rng: &mut StdRng| Row {
        id,
        // Negative and large balances too: the two's complement and more than 8 digits.
        balance: rng.gen_range(-200_000_000_000_i64..999_999_999_999),
        opened: rng.gen_range(-1000..25_000),
        last_login: rng.gen_range(0..2_000_000_000_000_000),
        name: format!("n{}", rng.gen_range(0..1000)),
    };
    for id in 0..12 {
        lsn += 8;
        let r = row(id, rng);
        live.insert(id, r.clone());
        out.push(Change {
            op: "r",
            lsn,
            before: None,
            after: Some(r),
        });
    }
    for _ in 0..200 {
        lsn += rng.gen_range(1..50);
        let id = rng.gen_range(0..30);
        let change = match live.get(&id) {
            Some(_) if rng.gen_bool(0.2) => {
                live.remove(&id);
                let key = Row {
                    id,
                    balance: 0,
                    opened: 0,
                    last_login: 0,
                    name: String::new(),
                };
                Change {
                    op: "d",
                    lsn,
                    before: Some(key),
                    after: None,
                }
            }
            Some(_) => {
                let r = row(id, rng);
                live.insert(id, r.clone());
                Change {
                    op: "u",
                    lsn,
                    before: None,
                    after: Some(r),
                }
            }
            None => {
                let r = row(id, rng);
                live.insert(id, r.clone());
                Change {
                    op: "c",
                    lsn,
                    before: None,
                    after: Some(r),
                }
            }
        };
        out.push(change);
    }
    out
}

/// The oracle: replay the history in LSN order.
fn oracle(history: &[Change]) -> BTreeMap<i64, Vec<Option<String>>> {
    let mut sorted = history.to_vec();
    sorted.sort_by_key(|c| c.lsn);
    let mut rows: BTreeMap<i32, Row> = BTreeMap::new();
    for c in sorted {
        match (&c.after, &c.before) {
            (Some(a), _) => {
                rows.insert(a.id, a.clone());
            }
            (None, Some(b)) => {
                rows.remove(&b.id);
            }
            _ => {}
        }
    }
    rows.into_values()
        .map(|r| {
            let sign = if r.balance < 0 { "-" } else { "" };
            let abs = r.balance.unsigned_abs();
            (
                r.id as i64,
                vec![
                    Some(format!("{sign}{}.{:02}", abs / 100, abs % 100)),
                    Some(r.opened.to_string()),
                    Some(r.last_login.to_string()),
                    Some(format!("{{\"tier\":\"gold\",\"id\":{}}}", r.id)),
                    Some(format!("2026-11-25T10:00:00.{:06}Z", r.id)),
                    Some(r.name),
                ],
            )
        })
        .collect()
}

async fn silver_rows(lab: &Lab) -> BTreeMap<i64, Vec<Option<String>>> {
    let mut out = BTreeMap::new();
    for b in testkit::rows(&lab.cfg.silver_location("customers")).await {
        let id = ints(&b, "id");
        let (balance, opened, login) = (
            texts(&b, "balance"),
            ints(&b, "opened"),
            ints(&b, "last_login"),
        );
        let (profile, name) = (texts(&b, "profile"), texts(&b, "name"));
        let updated = ints(&b, "updated_at");
        for i in 0..b.num_rows() {
            let updated = updated[i].and_then(chrono::DateTime::from_timestamp_micros);
            let row = vec![
                balance[i].clone(),
                opened[i].map(|v| v.to_string()),
                login[i].map(|v| v.to_string()),
                profile[i].clone(),
                updated.map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
                name[i].clone(),
            ];
            assert!(out.insert(id[i].unwrap(), row).is_none(), "duplicate id");
        }
    }
    out
}

/// Splits `lines` into objects, adds duplicate deliveries and copies, ingests them shuffled with
/// silver steps in between.
async fn deliver(lab: &Lab, lines: &[String], rng: &mut StdRng) {
    let mut objects: Vec<Vec<String>> = lines.chunks(17).map(|c| c.to_vec()).collect();
    // A restarted connector writes a few events again into a new object.
    let copied: Vec<String> = lines.choose_multiple(rng, 10).cloned().collect();
    objects.push(copied);
    deliver_shuffled(lab, "customers", &objects, 0.3, 3, rng).await;
}

/// Ingests `objects` (their lines) of `table` in a shuffled order, a share `again` of them twice, with a
/// silver step after every `step_every`-th delivery and one at the end.
async fn deliver_shuffled(
    lab: &Lab,
    table: &str,
    objects: &[Vec<String>],
    again: f64,
    step_every: usize,
    rng: &mut StdRng,
) {
    let mut order: Vec<usize> = (0..objects.len()).collect();
    order.extend((0..objects.len()).filter(|_| rng.gen_bool(again)));
    order.shuffle(rng);
    let bronze = BronzeWriter::new(lab.cfg.clone()).unwrap();
    let silver = SilverWriter::new(lab.cfg.clone());
    let config = lab.table(table);
    for (n, o) in order.iter().enumerate() {
        let path = lab.landing(&format!("{table}/part-{o:03}.json"));
        if !path.exists() {
            std::fs::write(&path, objects[*o].join("\n") + "\n").unwrap();
        }
        bronze
            .ingest(config, &[testkit::object(&path)])
            .await
            .unwrap();
        if n % step_every == 0 {
            silver.apply(config).await.unwrap();
        }
    }
    silver.apply(config).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_json_with_schemas_decodes_every_type_and_matches_the_oracle() {
    for seed in [11u64, 12] {
        let lab = customers("quarantine");
        let mut rng = StdRng::seed_from_u64(seed);
        let changes = history(&mut rng);
        let lines: Vec<String> = changes.iter().map(line).collect();
        deliver(&lab, &lines, &mut rng).await;
        let reasons = quarantine_reasons(&lab.cfg, "customers").await;
        assert!(reasons.is_empty(), "seed {seed}: quarantined {reasons:?}");
        assert_eq!(silver_rows(&lab).await, oracle(&changes), "seed {seed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_added_by_alter_table_is_never_dropped_silently() {
    // After `ALTER TABLE customers ADD COLUMN phone`, images and the schema carry `phone`.
    let with_phone = VALUE_FIELDS.replace(
        r#"{"type":"string","optional":true,"field":"name"}]"#,
        r#"{"type":"string","optional":true,"field":"name"},{"type":"string","optional":true,"field":"phone"}]"#,
    );
    let row = Row {
        id: 7,
        balance: 12_345,
        opened: 18_472,
        last_login: 1_683_966_846_547_000,
        name: "x".into(),
    };
    let before = line(&Change {
        op: "c",
        lsn: 10,
        before: None,
        after: Some(row.clone()),
    });
    let after = line(&Change {
        op: "u",
        lsn: 20,
        before: None,
        after: Some(row),
    })
    .replace(
        &envelope_schema(VALUE_FIELDS),
        &envelope_schema(&with_phone),
    )
    .replace(r#""name":"x"}"#, r#""name":"x","phone":"+1 555 0100"}"#);
    for (mode, quarantined) in [("quarantine", true), ("ignore", false), ("evolve", false)] {
        let lab = customers(mode);
        lab.ingest("customers", "a.json", &format!("{before}\n{after}\n"))
            .await;
        let step = SilverWriter::new(lab.cfg.clone())
            .apply(lab.table("customers"))
            .await
            .unwrap();
        let reasons = quarantine_reasons(&lab.cfg, "customers").await;
        assert_eq!(step.read, 2, "{mode}: {step:?}");
        if quarantined {
            assert_eq!(step.rejected, 1, "{step:?}");
            assert!(reasons[0].contains("unknown field `phone`"), "{reasons:?}");
            // The rejected event is in the quarantine row itself.
            let raw = testkit::column_texts(
                &lab.cfg.quarantine_location("customers"),
                crate::quarantine::RAW,
            )
            .await;
            assert!(
                raw[0]
                    .as_deref()
                    .is_some_and(|r| r.contains("+1 555 0100") && r.contains("\"op\":\"u\"")),
                "{raw:?}"
            );
        } else {
            assert!(reasons.is_empty(), "{reasons:?}");
            assert_eq!(step.rejected, 0);
        }
        let silver = crate::lake::open(&lab.cfg.silver_location("customers"))
            .await
            .unwrap()
            .unwrap();
        let schema = silver.snapshot().unwrap().snapshot().arrow_schema();
        let phone = schema
            .field_with_name("phone")
            .ok()
            .map(|f| f.data_type().clone());
        let rows =
            testkit::rows_as_text(&lab.cfg.silver_location("customers"), &["name"], "id").await;
        if mode == "evolve" {
            // The new column, typed by the envelope's schema, holding the update's value.
            assert_eq!(
                phone,
                Some(deltalake::arrow::datatypes::DataType::Utf8),
                "{schema:?}"
            );
            let phones =
                testkit::rows_as_text(&lab.cfg.silver_location("customers"), &["phone"], "id")
                    .await;
            assert_eq!(phones["7"], [Some("+1 555 0100".to_string())]);
        } else {
            assert_eq!(phone, None, "{mode}: no column added");
        }
        assert_eq!(rows.len(), 1, "{mode}: {rows:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_a_rejected_event_are_quarantined_once_and_most_rejected_is_reported() {
    let lab = customers("quarantine");
    let row = Row {
        id: 1,
        balance: 1,
        opened: 1,
        last_login: 1,
        name: "a".into(),
    };
    // A Decimal whose scale does not fit decimal(12,2): rejected, in two objects.
    let bad = line(&Change {
        op: "c",
        lsn: 5,
        before: None,
        after: Some(row),
    })
    .replace(r#""scale":"2""#, r#""scale":"5""#);
    lab.ingest("customers", "a.json", &format!("{bad}\n")).await;
    lab.ingest("customers", "b.json", &format!("{bad}\n")).await;
    let step = SilverWriter::new(lab.cfg.clone())
        .apply(lab.table("customers"))
        .await
        .unwrap();
    assert_eq!((step.read, step.rejected), (2, 2), "{step:?}");
    assert!(step.mostly_rejected());
    let reasons = quarantine_reasons(&lab.cfg, "customers").await;
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains("would round") && reasons[0].contains("1 more copies"),
        "{reasons:?}"
    );
    // A third copy, delivered after that step (a later rebalance), is recognised by its marker.
    lab.ingest("customers", "c.json", &format!("{bad}\n")).await;
    let step = SilverWriter::new(lab.cfg.clone())
        .apply(lab.table("customers"))
        .await
        .unwrap();
    assert_eq!((step.read, step.rejected), (1, 1), "{step:?}");
    assert_eq!(quarantine_reasons(&lab.cfg, "customers").await.len(), 1);
}

/// TOAST: with REPLICA IDENTITY DEFAULT, an update that leaves a TOASTed column alone carries
/// Debezium's placeholder for it. `(op, lsn, id, bio (None: the placeholder), n)`.
type Toast = (&'static str, i64, i32, Option<String>, i64);

fn toast_history(rng: &mut StdRng) -> Vec<Toast> {
    let mut live = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let mut lsn = 100;
    for id in 0..8 {
        lsn += 3;
        live.insert(id);
        out.push(("r", lsn, id, Some(format!("bio {id} v{lsn}")), lsn));
    }
    for _ in 0..160 {
        lsn += rng.gen_range(1..9);
        let id = rng.gen_range(0..12);
        let e = if !live.contains(&id) {
            live.insert(id);
            ("c", lsn, id, Some(format!("bio {id} v{lsn}")), lsn)
        } else if rng.gen_bool(0.15) {
            live.remove(&id);
            ("d", lsn, id, None, 0)
        } else if rng.gen_bool(0.6) {
            ("u", lsn, id, None, lsn)
        } else {
            ("u", lsn, id, Some(format!("bio {id} v{lsn}")), lsn)
        };
        out.push(e);
    }
    out
}

/// Debezium without the schema wrapper (`schemas.enable=false`), as the S3 sink's JsonFormat writes.
fn toast_line((op, lsn, id, bio, n): &Toast) -> String {
    let bio = bio
        .as_deref()
        .unwrap_or(crate::config::DEBEZIUM_UNAVAILABLE);
    let row = format!(r#"{{"id":{id},"bio":"{bio}","n":{n}}}"#);
    let (before, after) = match *op {
        "d" => (format!(r#"{{"id":{id}}}"#), "null".to_string()),
        _ => ("null".to_string(), row),
    };
    format!(
        r#"{{"before":{before},"after":{after},"source":{{"connector":"postgresql","lsn":{lsn},"txId":{lsn}}},"op":"{op}","ts_ms":{lsn}}}"#
    )
}

/// The database's state after each event, replayed in LSN order: per event (non-delete) the row it
/// left, `(id, lsn, bio, n)`, and the next event's LSN of the same id.
fn toast_oracle(history: &[Toast]) -> Vec<(i64, i64, Option<i64>, String, i64)> {
    let mut sorted = history.to_vec();
    sorted.sort_by_key(|e| e.1);
    let mut bio: BTreeMap<i32, String> = BTreeMap::new();
    let mut versions = Vec::new();
    for (op, lsn, id, b, n) in &sorted {
        if *op == "d" {
            bio.remove(id);
            continue;
        }
        if let Some(b) = b {
            bio.insert(*id, b.clone());
        }
        let next = sorted
            .iter()
            .find(|e| e.2 == *id && e.1 > *lsn)
            .map(|e| e.1);
        let current = bio.get(id).cloned().expect("an update's row has a bio");
        versions.push((*id as i64, *lsn, next, current, *n));
    }
    versions
}

async fn deliver_toast(lab: &Lab, history: &[Toast], rng: &mut StdRng) {
    let lines: Vec<String> = history.iter().map(toast_line).collect();
    let objects: Vec<Vec<String>> = lines.chunks(7).map(|c| c.to_vec()).collect();
    deliver_shuffled(lab, "people", &objects, 0.2, 2, rng).await;
    assert!(quarantine_reasons(&lab.cfg, "people").await.is_empty());
}

fn people(scd_type: u8) -> Lab {
    Lab::with_table(
        "people",
        &format!("format = \"jsonl\"\ncdc = \"debezium\"\nkeys = [\"id\"]\nsequence_by = \"source.lsn\"\nscd_type = {scd_type}\nrow_columns = [\"id int not null\", \"bio string\", \"n long\"]"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toast_placeholders_keep_the_newest_earlier_value_in_any_arrival_order() {
    for seed in [21u64, 22, 23] {
        let mut rng = StdRng::seed_from_u64(seed);
        let history = toast_history(&mut rng);
        assert!(
            history.iter().any(|e| e.0 == "u" && e.3.is_none()),
            "premise"
        );
        let versions = toast_oracle(&history);

        // SCD1: the current row of each id.
        let lab = people(1);
        deliver_toast(&lab, &history, &mut rng).await;
        let expected: BTreeMap<i64, (String, i64)> = versions
            .iter()
            .filter(|v| v.2.is_none())
            .map(|v| (v.0, (v.3.clone(), v.4)))
            .collect();
        let mut got = BTreeMap::new();
        for b in testkit::rows(&lab.cfg.silver_location("people")).await {
            let (id, bio, n) = (ints(&b, "id"), texts(&b, "bio"), ints(&b, "n"));
            for i in 0..b.num_rows() {
                got.insert(
                    id[i].unwrap(),
                    (bio[i].clone().unwrap_or_default(), n[i].unwrap()),
                );
            }
        }
        assert_eq!(got, expected, "seed {seed}: SCD1");

        // SCD2: every version, with the value it had at its time.
        let lab = people(2);
        deliver_toast(&lab, &history, &mut rng).await;
        let mut got = Vec::new();
        for b in testkit::rows(&lab.cfg.silver_location("people")).await {
            let (id, from, to) = (ints(&b, "id"), ints(&b, "valid_from"), ints(&b, "valid_to"));
            let (bio, n) = (texts(&b, "bio"), ints(&b, "n"));
            for i in 0..b.num_rows() {
                got.push((
                    id[i].unwrap(),
                    from[i].unwrap(),
                    to[i],
                    bio[i].clone().unwrap_or_default(),
                    n[i].unwrap(),
                ));
            }
        }
        got.sort();
        let mut expected = versions.clone();
        expected.sort();
        assert_eq!(got, expected, "seed {seed}: SCD2");
    }
}

#[tokio::test]
async fn parquet_struct_list_and_map_columns_reach_silver_as_json() {
    use deltalake::arrow::array::{
        ArrayRef, Int64Array, ListArray, MapBuilder, StringBuilder, StructArray,
    };
    use deltalake::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use deltalake::parquet::arrow::ArrowWriter;
    use std::sync::Arc;

    let lab = Lab::with_table("docs", "format = \"parquet\"\nkeys = [\"id\"]");
    let address: ArrayRef = Arc::new(StructArray::from(vec![
        (
            Arc::new(Field::new("city", DataType::Utf8, true)),
            Arc::new(deltalake::arrow::array::StringArray::from(vec![
                Some("Oslo"),
                None,
            ])) as ArrayRef,
        ),
        (
            Arc::new(Field::new("zip", DataType::Int64, true)),
            Arc::new(Int64Array::from(vec![Some(150), Some(7)])) as ArrayRef,
        ),
    ]));
    let tags: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
        Some(vec![Some(1), Some(2)]),
        None,
    ]));
    let mut attrs = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    attrs.keys().append_value("k");
    attrs.values().append_value("v");
    attrs.append(true).unwrap();
    attrs.append(true).unwrap();
    let attrs: ArrayRef = Arc::new(attrs.finish());
    let id: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("address", address.data_type().clone(), true),
        Field::new("tags", tags.data_type().clone(), true),
        Field::new("attrs", attrs.data_type().clone(), true),
    ]));
    let batch = RecordBatch::try_new(schema.clone(), vec![id, address, tags, attrs]).unwrap();
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    let bytes = writer.into_inner().unwrap();
    let obj = lab.put("docs/a.parquet", &bytes);
    BronzeWriter::new(lab.cfg.clone())
        .unwrap()
        .ingest(lab.table("docs"), &[obj])
        .await
        .unwrap();
    let step = SilverWriter::new(lab.cfg.clone())
        .apply(lab.table("docs"))
        .await
        .unwrap();
    assert_eq!((step.read, step.rejected), (2, 0), "{step:?}");
    let rows = testkit::rows_as_text(
        &lab.cfg.silver_location("docs"),
        &["address", "tags", "attrs"],
        "id",
    )
    .await;
    assert_eq!(
        rows["1"],
        [
            Some(r#"{"city":"Oslo","zip":150}"#.to_string()),
            Some("[1,2]".to_string()),
            Some(r#"{"k":"v"}"#.to_string())
        ]
    );
    assert_eq!(
        rows["2"],
        [
            Some(r#"{"city":null,"zip":7}"#.to_string()),
            None,
            Some("{}".to_string())
        ]
    );
}

/// The Debezium Avro fixtures (`bench/gen_debezium_avro.py`: fastavro writing what Kafka Connect's
/// AvroConverter and the S3 sink's AvroFormat produce) through bronze and silver, delivered out of
/// order and twice, against an oracle replayed from the generator's event history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_avro_files_decode_logical_types_and_match_the_oracle() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/read/fixtures");
    let lab = Lab::with_table(
        "customers",
        "format = \"avro\"\ncdc = \"debezium\"\nkeys = [\"id\"]\nsequence_by = \"source.lsn\"\nrow_columns = [\"id int not null\", \"balance decimal(12,2)\", \"opened date\", \"last_login timestamp\", \"profile json\", \"bio string\"]",
    );
    let bronze = BronzeWriter::new(lab.cfg.clone()).unwrap();
    let silver = SilverWriter::new(lab.cfg.clone());
    let table = lab.table("customers");
    for n in [2, 0, 2, 1] {
        let bytes = std::fs::read(fixtures.join(format!("debezium_customers_{n}.avro"))).unwrap();
        let obj = lab.put(&format!("customers/part-{n}.avro"), &bytes);
        let out = bronze.ingest(table, &[obj]).await.unwrap();
        assert_eq!(out.failed().count(), 0, "{out:?}");
        silver.apply(table).await.unwrap();
    }
    // The first third again, as fastavro writes it (full names in the schema): the same events.
    let bytes = std::fs::read(fixtures.join("debezium_customers_fastavro.avro")).unwrap();
    let obj = lab.put("customers/fastavro.avro", &bytes);
    let out = bronze.ingest(table, &[obj]).await.unwrap();
    assert!(
        matches!(out.objects[0].status, crate::bronze::ObjectStatus::Ingested { rows, quarantined: 0 } if rows > 0),
        "{out:?}"
    );
    silver.apply(table).await.unwrap();
    let reasons = quarantine_reasons(&lab.cfg, "customers").await;
    assert!(reasons.is_empty(), "{reasons:?}");

    let history: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("debezium_customers_history.json")).unwrap(),
    )
    .unwrap();
    let mut events = history.clone();
    events.sort_by_key(|e| e["lsn"].as_i64());
    let mut rows: BTreeMap<i64, Vec<Option<String>>> = BTreeMap::new();
    for e in &events {
        let id = e["id"].as_i64().unwrap();
        if e["op"] == "d" {
            rows.remove(&id);
            continue;
        }
        let cents = e["balance"].as_i64().unwrap();
        let sign = if cents < 0 { "-" } else { "" };
        let bio = match e["bio"].as_str() {
            Some(b) => Some(b.to_string()),
            None => rows.get(&id).and_then(|r| r[4].clone()),
        };
        rows.insert(
            id,
            vec![
                Some(format!(
                    "{sign}{}.{:02}",
                    cents.unsigned_abs() / 100,
                    cents.unsigned_abs() % 100
                )),
                Some(e["opened"].to_string()),
                Some(e["last_login"].to_string()),
                Some(e["profile"].as_str().unwrap().to_string()),
                bio,
            ],
        );
    }
    let mut got = BTreeMap::new();
    for b in testkit::rows(&lab.cfg.silver_location("customers")).await {
        let id = ints(&b, "id");
        let (balance, opened, login) = (
            texts(&b, "balance"),
            ints(&b, "opened"),
            ints(&b, "last_login"),
        );
        let (profile, bio) = (texts(&b, "profile"), texts(&b, "bio"));
        for i in 0..b.num_rows() {
            got.insert(
                id[i].unwrap(),
                vec![
                    balance[i].clone(),
                    opened[i].map(|v| v.to_string()),
                    login[i].map(|v| v.to_string()),
                    profile[i].clone(),
                    bio[i].clone(),
                ],
            );
        }
    }
    assert_eq!(got, rows);
}

/// `(op, lsn, id, n)`: a Debezium event of a table `(id int, n long)`, `t` a truncate.
fn plain_line((op, lsn, id, n): (&str, i64, i32, i64)) -> String {
    let row = format!(r#"{{"id":{id},"n":{n}}}"#);
    let (before, after) = match op {
        "d" => (format!(r#"{{"id":{id}}}"#), "null".to_string()),
        "t" => ("null".to_string(), "null".to_string()),
        _ => ("null".to_string(), row),
    };
    format!(
        r#"{{"before":{before},"after":{after},"source":{{"connector":"postgresql","lsn":{lsn}}},"op":"{op}","ts_ms":{lsn}}}"#
    )
}

/// What a table holds after `events` (`(op, lsn, id, n)`; a `t` deletes every key at its LSN when
/// `apply`): per key its versions `(id, valid_from, valid_to, n)`, in LSN order.
fn truncate_oracle(
    events: &[(&str, i64, i32, i64)],
    apply: bool,
) -> Vec<(i64, i64, Option<i64>, i64)> {
    let ids: BTreeSet<i32> = events.iter().filter(|e| e.0 != "t").map(|e| e.2).collect();
    let mut out = Vec::new();
    for id in ids {
        let mut mine: Vec<(&str, i64, i64)> = events
            .iter()
            .filter(|e| e.0 != "t" && e.2 == id)
            .map(|e| (e.0, e.1, e.3))
            .collect();
        if apply {
            mine.extend(events.iter().filter(|e| e.0 == "t").map(|e| ("d", e.1, 0)));
        }
        mine.sort_by_key(|e| e.1);
        for (i, (op, lsn, n)) in mine.iter().enumerate() {
            if *op != "d" {
                out.push((id as i64, *lsn, mine.get(i + 1).map(|e| e.1), *n));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncate_removes_every_older_row_in_any_arrival_order() {
    let objects: [&[(&str, i64, i32, i64)]; 5] = [
        &[
            ("c", 10, 1, 10),
            ("c", 20, 2, 20),
            ("c", 30, 3, 30),
            ("u", 40, 1, 40),
        ],
        &[("t", 50, 0, 0)],
        &[("c", 60, 2, 60), ("u", 70, 2, 70)],
        &[("u", 45, 3, 45), ("c", 47, 5, 47)],
        &[("c", 55, 4, 55)],
    ];
    let events: Vec<(&str, i64, i32, i64)> =
        objects.iter().flat_map(|o| o.iter().copied()).collect();
    for scd in [1, 2] {
        for (mode, order) in [
            ("apply", vec![0, 1, 2, 3, 4]),
            ("apply", vec![2, 1, 0, 4, 3, 1]),
            ("ignore", vec![2, 1, 0, 4, 3]),
        ] {
            let lab = Lab::with_table(
                "t",
                &format!("format = \"jsonl\"\ncdc = \"debezium\"\nkeys = [\"id\"]\nsequence_by = \"source.lsn\"\nscd_type = {scd}\ntruncate = \"{mode}\"\nrow_columns = [\"id int not null\", \"n long\"]"),
            );
            let bronze = BronzeWriter::new(lab.cfg.clone()).unwrap();
            let silver = SilverWriter::new(lab.cfg.clone());
            for o in &order {
                let body: String = objects[*o].iter().map(|e| plain_line(*e) + "\n").collect();
                let path = lab.landing(&format!("t/part-{o}.json"));
                std::fs::write(&path, body).unwrap();
                bronze
                    .ingest(lab.table("t"), &[testkit::object(&path)])
                    .await
                    .unwrap();
                silver.apply(lab.table("t")).await.unwrap();
            }
            let versions = truncate_oracle(&events, mode == "apply");
            let mut got = Vec::new();
            for b in testkit::rows(&lab.cfg.silver_location("t")).await {
                let (id, n) = (ints(&b, "id"), ints(&b, "n"));
                let (from, to) = match scd {
                    2 => (ints(&b, "valid_from"), ints(&b, "valid_to")),
                    _ => (ints(&b, SEQ), vec![None; b.num_rows()]),
                };
                for i in 0..b.num_rows() {
                    got.push((id[i].unwrap(), from[i].unwrap(), to[i], n[i].unwrap()));
                }
            }
            got.sort();
            let expected: Vec<_> = match scd {
                // SCD1: each key's current version.
                1 => versions.into_iter().filter(|v| v.2.is_none()).collect(),
                _ => versions,
            };
            assert_eq!(got, expected, "SCD{scd} {mode} in order {order:?}");
            assert!(quarantine_reasons(&lab.cfg, "t").await.is_empty());
        }
    }
}
