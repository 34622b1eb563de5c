//! A column type widened at the source (`ALTER TABLE items ALTER COLUMN qty TYPE bigint`, numeric
//! precision up), as Debezium's JsonConverter announces it: the envelope's Connect schema says `int64`
//! where it said `int32`, `connect.decimal.precision` grows. Under `unknown_fields = "evolve"` silver,
//! its tombstones and a gold view over it widen their columns and hold every value exactly (oracle from
//! the event history, shuffled delivery); under `quarantine` the values that fit land and the others
//! are quarantined saying how to widen; a wider declaration widens silver too.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::connector_tests::connect_decimal;
use super::*;
use crate::bronze::BronzeWriter;
use crate::gold::GoldWriter;
use crate::testkit::{self, quarantine_reasons, Lab};
use deltalake::arrow::datatypes::DataType;

const NARROW: (&str, &str) = (
    "int32",
    "\"scale\":\"2\",\"connect.decimal.precision\":\"12\"",
);
const WIDE: (&str, &str) = (
    "int64",
    "\"scale\":\"4\",\"connect.decimal.precision\":\"18\"",
);

/// One event: `(op, lsn, id, qty, price in units of 10^-scale, wide)`; a wide event carries the
/// schema after the `ALTER TABLE` (int64 ids and quantities, decimal(18,4) prices).
type Event = (&'static str, i64, i64, i64, i64, bool);

fn line(&(op, lsn, id, qty, price, wide): &Event) -> String {
    let (int, dec) = if wide { WIDE } else { NARROW };
    let fields = format!(
        r#"[{{"type":"{int}","optional":false,"field":"id"}},{{"type":"{int}","optional":true,"field":"qty"}},{{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{{{dec}}},"field":"price"}},{{"type":"string","optional":true,"field":"name"}}]"#
    );
    let schema = format!(
        r#"{{"type":"struct","fields":[{{"type":"struct","fields":{fields},"optional":true,"name":"db.public.items.Value","field":"before"}},{{"type":"struct","fields":{fields},"optional":true,"name":"db.public.items.Value","field":"after"}},{{"type":"struct","fields":[{{"type":"int64","optional":true,"field":"lsn"}}],"optional":false,"name":"io.debezium.connector.postgresql.Source","field":"source"}},{{"type":"string","optional":false,"field":"op"}},{{"type":"int64","optional":true,"field":"ts_ms"}}],"optional":false,"name":"db.public.items.Envelope","version":2}}"#
    );
    let row = format!(
        r#"{{"id":{id},"qty":{qty},"price":"{}","name":"n{lsn}"}}"#,
        connect_decimal(price)
    );
    let (before, after) = match op {
        "d" => (format!(r#"{{"id":{id}}}"#), "null".to_string()),
        _ => ("null".to_string(), row),
    };
    format!(
        r#"{{"schema":{schema},"payload":{{"before":{before},"after":{after},"source":{{"lsn":{lsn}}},"op":"{op}","ts_ms":{lsn}}}}}"#
    )
}

/// Narrow events first (ids 1..=12), then wide ones, some with ids, quantities and prices only the
/// wider types hold, deletes of such ids included.
fn history(rng: &mut StdRng) -> Vec<Event> {
    let mut out = Vec::new();
    let mut lsn = 100;
    for _ in 0..60 {
        lsn += rng.gen_range(1..9);
        let id = rng.gen_range(1..=12);
        let op = if rng.gen_bool(0.15) { "d" } else { "u" };
        out.push((
            op,
            lsn,
            id,
            rng.gen_range(-5_000..5_000),
            rng.gen_range(-99_999_999..99_999_999),
            false,
        ));
    }
    for _ in 0..60 {
        lsn += rng.gen_range(1..9);
        let id = if rng.gen_bool(0.5) {
            rng.gen_range(1..=12)
        } else {
            3_000_000_000 + rng.gen_range(0..6)
        };
        let op = if rng.gen_bool(0.15) { "d" } else { "u" };
        let qty = if rng.gen_bool(0.5) {
            rng.gen_range(-5_000..5_000)
        } else {
            9_000_000_000_000 + lsn
        };
        // Up to 14 integer digits at scale 4.
        let price = rng.gen_range(-99_999_999_999_999_999..99_999_999_999_999_999);
        out.push((op, lsn, id, qty, price, true));
    }
    out
}

/// Per id, its `(qty, price as decimal(18,4) text)` after the history, deletes applied.
fn oracle(events: &[Event]) -> BTreeMap<String, Vec<Option<String>>> {
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|e| e.1);
    let mut rows = BTreeMap::new();
    for (op, _, id, qty, price, wide) in sorted {
        if op == "d" {
            rows.remove(&id);
            continue;
        }
        let units = if wide { price } else { price * 100 };
        let sign = if units < 0 { "-" } else { "" };
        let abs = units.unsigned_abs();
        rows.insert(
            id,
            vec![
                Some(qty.to_string()),
                Some(format!("{sign}{}.{:04}", abs / 10_000, abs % 10_000)),
            ],
        );
    }
    rows.into_iter()
        .map(|(id, r)| (id.to_string(), r))
        .collect()
}

fn items(unknown_fields: &str, qty: &str) -> Lab {
    Lab::with_table(
        "items",
        &format!(
            "format = \"jsonl\"\ncdc = \"debezium\"\nkeys = [\"id\"]\nsequence_by = \"source.lsn\"\nunknown_fields = \"{unknown_fields}\"\nrow_columns = [\"id int not null\", \"qty {qty}\", \"price decimal(12,2)\", \"name string\"]\n[[gold]]\nname = \"stock\"\nsql = \"SELECT id, qty FROM items\"\nkeys = [\"id\"]\nsources = [\"items\"]\n"
        ),
    )
}

fn types(
    location: &crate::config::Location,
    columns: &[&str],
) -> impl std::future::Future<Output = Vec<DataType>> {
    let (location, columns): (_, Vec<String>) = (
        location.clone(),
        columns.iter().map(|c| c.to_string()).collect(),
    );
    async move {
        let t = lake::open(&location).await.unwrap().unwrap();
        let schema = t.snapshot().unwrap().snapshot().arrow_schema();
        columns
            .iter()
            .map(|c| schema.field_with_name(c).unwrap().data_type().clone())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widened_source_types_widen_silver_tombstones_and_gold_and_keep_every_value() {
    for seed in [3u64, 4] {
        let lab = items("evolve", "int");
        let mut rng = StdRng::seed_from_u64(seed);
        let events = history(&mut rng);
        let mut objects: Vec<Vec<String>> = events
            .chunks(9)
            .map(|c| c.iter().map(line).collect())
            .collect();
        // Redeliveries, and a shuffled order: wide events may come before narrow ones.
        let again: Vec<Vec<String>> = objects.choose_multiple(&mut rng, 4).cloned().collect();
        objects.extend(again);
        objects.shuffle(&mut rng);
        let bronze = BronzeWriter::new(lab.cfg.clone()).unwrap();
        let silver = SilverWriter::new(lab.cfg.clone());
        let gold = GoldWriter::new(lab.cfg.clone());
        let view = lab.cfg.view("stock").unwrap();
        for (n, o) in objects.iter().enumerate() {
            let path = lab.landing(&format!("items/part-{n:03}.json"));
            std::fs::write(&path, o.join("\n") + "\n").unwrap();
            bronze
                .ingest(lab.table("items"), &[testkit::object(&path)])
                .await
                .unwrap();
            if n % 2 == 0 {
                silver.apply(lab.table("items")).await.unwrap();
                gold.apply(view, false).await.unwrap();
            }
        }
        silver.apply(lab.table("items")).await.unwrap();
        gold.apply(view, false).await.unwrap();

        let reasons = quarantine_reasons(&lab.cfg, "items").await;
        assert!(reasons.is_empty(), "seed {seed}: {reasons:?}");
        let want = oracle(&events);
        let silver_loc = lab.cfg.silver_location("items");
        assert_eq!(
            testkit::rows_as_text(&silver_loc, &["qty", "price"], "id").await,
            want,
            "seed {seed}"
        );
        assert_eq!(
            types(&silver_loc, &["id", "qty", "price"]).await,
            [
                DataType::Int64,
                DataType::Int64,
                DataType::Decimal128(18, 4)
            ]
        );
        // Deletes of ids only a long holds reached the tombstones, typed alike.
        assert_eq!(
            types(&lab.cfg.tombstone_location("items"), &["id"]).await,
            [DataType::Int64]
        );
        let gold_loc = lab.cfg.gold_location("stock");
        let qty: BTreeMap<_, _> = want
            .iter()
            .map(|(k, v)| (k.clone(), vec![v[0].clone()]))
            .collect();
        assert_eq!(
            testkit::rows_as_text(&gold_loc, &["qty"], "id").await,
            qty,
            "seed {seed}: gold"
        );
        assert_eq!(
            types(&gold_loc, &["id", "qty"]).await,
            [DataType::Int64, DataType::Int64]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_evolve_values_that_fit_land_the_others_say_how_to_widen_and_a_wider_declaration_widens(
) {
    let lab = items("quarantine", "int");
    let events: Vec<Event> = vec![
        ("c", 10, 1, 5, 1_000, false),
        // After the ALTER: a value that still fits, and one that does not.
        ("u", 20, 1, 6, 12_3400, true),
        ("c", 30, 2, 9_000_000_000, 5_0000, true),
    ];
    let body: Vec<String> = events.iter().map(line).collect();
    lab.ingest("items", "a.json", &(body.join("\n") + "\n"))
        .await;
    let step = SilverWriter::new(lab.cfg.clone())
        .apply(lab.table("items"))
        .await
        .unwrap();
    assert_eq!((step.read, step.rejected), (3, 1), "{step:?}");
    let reasons = quarantine_reasons(&lab.cfg, "items").await;
    assert!(
        reasons[0].contains("`qty` as Int64, silver's column is Int32: a wider type")
            && reasons[0].contains("evolve"),
        "{reasons:?}"
    );
    let silver_loc = lab.cfg.silver_location("items");
    let rows = testkit::rows_as_text(&silver_loc, &["qty", "price"], "id").await;
    assert_eq!(
        rows["1"],
        [Some("6".to_string()), Some("12.34".to_string())]
    );
    assert_eq!(types(&silver_loc, &["qty"]).await, [DataType::Int32]);

    // The user declares the wider type: the next step widens silver, keeping its rows.
    let wider = format!(
        "target_file_size_mb = 1\n[landing]\nuri = \"file://{d}/landing\"\n[lake]\nuri = \"file://{d}/lake\"\n[[table]]\nname = \"items\"\nformat = \"jsonl\"\ncdc = \"debezium\"\nkeys = [\"id\"]\nsequence_by = \"source.lsn\"\nrow_columns = [\"id int not null\", \"qty long\", \"price decimal(12,2)\", \"name string\"]\n",
        d = lab.dir.path().display()
    );
    let cfg = Arc::new(PipelineConfig::from_toml(&wider, "test").unwrap());
    let again = line(&("c", 40, 3, 9_000_000_001, 7_0000, true));
    let path = lab.landing("items/b.json");
    std::fs::write(&path, again + "\n").unwrap();
    BronzeWriter::new(cfg.clone())
        .unwrap()
        .ingest(cfg.table("items").unwrap(), &[testkit::object(&path)])
        .await
        .unwrap();
    let step = SilverWriter::new(cfg.clone())
        .apply(cfg.table("items").unwrap())
        .await
        .unwrap();
    assert_eq!(step.rejected, 0, "{step:?}");
    assert_eq!(types(&silver_loc, &["qty"]).await, [DataType::Int64]);
    let rows = testkit::rows_as_text(&silver_loc, &["qty"], "id").await;
    assert_eq!(rows["1"], [Some("6".to_string())]);
    assert_eq!(rows["3"], [Some("9000000001".to_string())]);
}
