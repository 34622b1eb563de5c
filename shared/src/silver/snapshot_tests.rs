//! Periodic full extracts (`cdc = "snapshot"`): dated folders of CSV parts completed by `_SUCCESS`,
//! delivered shuffled (a marker before its parts, parts of a later snapshot first, an older snapshot
//! late, redeliveries, a snapshot that never completes), with a silver step after every delivery.
//! The oracle replays the deliveries itself: which snapshots are complete after each one, so which one
//! silver must equal, and (SCD2) the history of the snapshots applied in that order.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::*;
use crate::bronze::BronzeWriter;
use crate::testkit::{self, Lab};

type Rows = BTreeMap<i64, (String, i64)>;

fn erp(scd: u8) -> Lab {
    Lab::with_table(
        "erp",
        &format!("format = \"csv\"\ncdc = \"snapshot\"\nkeys = [\"id\"]\nscd_type = {scd}\ncolumns = [\"id long not null\", \"name string\", \"qty long\"]"),
    )
}

/// Five daily extracts of ~40 keys: rows change, vanish and come back between days.
fn extracts(rng: &mut StdRng) -> Vec<(String, Rows)> {
    let mut rows: Rows = (0..30)
        .map(|id| (id, (format!("n{id}"), id * 10)))
        .collect();
    let mut out = Vec::new();
    for day in 1..=5 {
        let mut next = rows.clone();
        for id in 0..45 {
            match rng.gen_range(0..10) {
                0 => {
                    next.remove(&id);
                }
                1 | 2 => {
                    next.insert(id, (format!("d{day}-{id}"), rng.gen_range(0..1000)));
                }
                _ => {}
            }
        }
        out.push((format!("day=2026-12-0{day}"), next.clone()));
        rows = next;
    }
    out
}

/// An object to deliver: (relative key under the landing folder, body).
fn objects(extracts: &[(String, Rows)], rng: &mut StdRng) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (day, rows) in extracts {
        let mut lines: Vec<String> = rows
            .iter()
            .map(|(id, (name, qty))| format!("{id},{name},{qty}"))
            .collect();
        lines.shuffle(rng);
        for (p, chunk) in lines.chunks(lines.len().div_ceil(3).max(1)).enumerate() {
            out.push((
                format!("erp/{day}/part-{p}.csv"),
                format!("id,name,qty\n{}\n", chunk.join("\n")),
            ));
        }
        out.push((format!("erp/{day}/_SUCCESS"), String::new()));
    }
    out
}

async fn silver_rows(lab: &Lab) -> Rows {
    let mut out = Rows::new();
    for b in testkit::rows(&lab.cfg.silver_location("erp")).await {
        let (id, name, qty) = (
            testkit::ints(&b, "id"),
            testkit::texts(&b, "name"),
            testkit::ints(&b, "qty"),
        );
        let current = b
            .column_by_name(schema::IS_CURRENT)
            .map(|_| testkit::bools(&b, schema::IS_CURRENT));
        for i in 0..b.num_rows() {
            if current.as_ref().is_some_and(|c| c[i] != Some(true)) {
                continue;
            }
            let row = (name[i].clone().unwrap(), qty[i].unwrap());
            assert!(out.insert(id[i].unwrap(), row).is_none(), "duplicate key");
        }
    }
    out
}

/// SCD2: per key, its versions `(name, qty, is_current)` in `valid_from` order.
async fn history(lab: &Lab) -> BTreeMap<i64, Vec<(String, i64, bool)>> {
    let mut all = Vec::new();
    for b in testkit::rows(&lab.cfg.silver_location("erp")).await {
        let (id, name, qty, from, cur) = (
            testkit::ints(&b, "id"),
            testkit::texts(&b, "name"),
            testkit::ints(&b, "qty"),
            testkit::ints(&b, schema::VALID_FROM),
            testkit::bools(&b, schema::IS_CURRENT),
        );
        for i in 0..b.num_rows() {
            all.push((
                id[i].unwrap(),
                from[i].unwrap(),
                name[i].clone().unwrap(),
                qty[i].unwrap(),
                cur[i].unwrap(),
            ));
        }
    }
    all.sort();
    let mut out: BTreeMap<i64, Vec<(String, i64, bool)>> = BTreeMap::new();
    for (id, _, name, qty, cur) in all {
        out.entry(id).or_default().push((name, qty, cur));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silver_becomes_the_newest_complete_snapshot_in_any_delivery_order() {
    for (seed, scd) in [(1u64, 1u8), (2, 1), (3, 2), (4, 2)] {
        let lab = erp(scd);
        let mut rng = StdRng::seed_from_u64(seed);
        let days = extracts(&mut rng);
        let mut objs = objects(&days, &mut rng);
        // Day 5 never completes: its marker is not delivered (and not written).
        objs.retain(|(k, _)| !k.ends_with("day=2026-12-05/_SUCCESS"));
        let mut order: Vec<usize> = (0..objs.len()).collect();
        order.extend((0..objs.len()).filter(|_| rng.gen_bool(0.2)));
        order.shuffle(&mut rng);
        let bronze = BronzeWriter::new(lab.cfg.clone()).unwrap();
        let silver = SilverWriter::new(lab.cfg.clone());
        let table = lab.table("erp");
        // The oracle: objects written so far, snapshots complete, the one applied, SCD2 history.
        let mut complete = BTreeSet::new();
        let mut applied: Option<usize> = None;
        let mut want_history: BTreeMap<i64, Vec<(String, i64, bool)>> = BTreeMap::new();
        // The producer writes every part before its marker; only the events come in any order.
        for (key, body) in &objs {
            let path = lab.landing(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, body).unwrap();
        }
        for &o in &order {
            let (key, _) = &objs[o];
            let path = lab.landing(key);
            bronze
                .ingest(table, &[testkit::object(&path)])
                .await
                .unwrap();
            if key.ends_with("/_SUCCESS") {
                complete.insert(
                    days.iter()
                        .position(|(d, _)| key.contains(d.as_str()))
                        .unwrap(),
                );
            }
            let newest = complete.iter().max().copied();
            let step = silver.apply(table).await.unwrap();
            if newest > applied {
                let before = applied.map(|a| days[a].1.clone()).unwrap_or_default();
                let after = &days[newest.unwrap()].1;
                let differ = after
                    .iter()
                    .filter(|(k, v)| before.get(k) != Some(v))
                    .count()
                    + before.keys().filter(|k| !after.contains_key(k)).count();
                assert_eq!(
                    step.changes, differ,
                    "seed {seed}: only the differences are applied"
                );
                for (id, row) in after {
                    let versions = want_history.entry(*id).or_default();
                    if versions
                        .last()
                        .is_none_or(|(n, q, cur)| !cur || (n, q) != (&row.0, &row.1))
                    {
                        if let Some(last) = versions.last_mut() {
                            last.2 = false;
                        }
                        versions.push((row.0.clone(), row.1, true));
                    }
                }
                for (id, versions) in want_history.iter_mut() {
                    if !after.contains_key(id) {
                        if let Some(last) = versions.last_mut() {
                            last.2 = false;
                        }
                    }
                }
                applied = newest;
            } else {
                assert_eq!(step.changes, 0, "seed {seed}: {key} changes nothing");
            }
            let want = applied.map(|a| days[a].1.clone()).unwrap_or_default();
            assert_eq!(
                silver_rows(&lab).await,
                want,
                "seed {seed}, scd {scd}, after {key}"
            );
        }
        assert_eq!(
            applied,
            Some(3),
            "seed {seed}: day 4 is the newest complete"
        );
        if scd == 2 {
            assert_eq!(history(&lab).await, want_history, "seed {seed}: history");
        }
        let silver_t = lake::open(&lab.cfg.silver_location("erp"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            snapshot::applied(&silver_t).as_deref(),
            Some("day=2026-12-04")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_object_snapshots_and_a_snapshot_with_rejected_rows_deletes_nothing() {
    let lab = Lab::with_table(
        "erp",
        "format = \"jsonl\"\ncdc = \"snapshot\"\nkeys = [\"id\"]\ncolumns = [\"id long not null\", \"name string\", \"qty long\"]",
    );
    let table = lab.table("erp");
    let bronze = BronzeWriter::new(lab.cfg.clone()).unwrap();
    let silver = SilverWriter::new(lab.cfg.clone());
    let deliver = |key: &str, body: &str| {
        let path = lab.landing(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, body).unwrap();
        testkit::object(&path)
    };
    // Single objects directly under the prefix: each a complete snapshot, ordered by key.
    let b = deliver(
        "erp/2026-12-02.jsonl",
        "{\"id\":1,\"name\":\"b\",\"qty\":2}\n{\"id\":3,\"name\":\"c\",\"qty\":3}\n",
    );
    bronze.ingest(table, &[b]).await.unwrap();
    silver.apply(table).await.unwrap();
    let a = deliver(
        "erp/2026-12-01.jsonl",
        "{\"id\":1,\"name\":\"a\",\"qty\":1}\n{\"id\":2,\"name\":\"x\",\"qty\":9}\n",
    );
    bronze.ingest(table, &[a]).await.unwrap();
    let late = silver.apply(table).await.unwrap();
    assert_eq!(
        late.changes, 0,
        "an older snapshot arriving late changes nothing"
    );
    let want: Rows = [(1, ("b".to_string(), 2)), (3, ("c".to_string(), 3))].into();
    assert_eq!(silver_rows(&lab).await, want);

    // A folder snapshot with a part whose line is not JSON: that row is quarantined, the others
    // applied, and no key is deleted (the rejected row's key may be one of them).
    deliver(
        "erp/2026-12-03/part-0.jsonl",
        "{\"id\":1,\"name\":\"z\",\"qty\":0}\n",
    );
    deliver(
        "erp/2026-12-03/part-1.jsonl",
        "{\"id\":3,\"name\":\"c\",\"qty\":3\n",
    );
    let marker = deliver("erp/2026-12-03/_SUCCESS", "");
    let commit = bronze.ingest(table, &[marker]).await.unwrap();
    assert!(
        commit.objects.iter().any(|o| matches!(&o.status, crate::bronze::ObjectStatus::Skipped { reason } if reason.contains("marker"))),
        "{commit:?}"
    );
    let step = silver.apply(table).await.unwrap();
    assert_eq!(step.changes, 1, "{step:?}");
    let want: Rows = [(1, ("z".to_string(), 0)), (3, ("c".to_string(), 3))].into();
    assert_eq!(silver_rows(&lab).await, want, "nothing deleted");
    assert_eq!(testkit::quarantine_reasons(&lab.cfg, "erp").await.len(), 1);

    // The next whole snapshot applies its deletes again.
    let marker = {
        deliver(
            "erp/2026-12-04/part-0.jsonl",
            "{\"id\":1,\"name\":\"z\",\"qty\":0}\n",
        );
        deliver("erp/2026-12-04/_SUCCESS", "")
    };
    bronze.ingest(table, &[marker]).await.unwrap();
    silver.apply(table).await.unwrap();
    let want: Rows = [(1, ("z".to_string(), 0))].into();
    assert_eq!(silver_rows(&lab).await, want);
}
