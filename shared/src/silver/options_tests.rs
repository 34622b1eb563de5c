//! Per-table CDC options (Databricks AUTO CDC's): `ignore_null_updates` (a null or absent value in an
//! update means "unchanged"), and `except_columns` / `silver_columns` (what reaches silver; bronze keeps
//! everything). Partial updates delivered shuffled with silver steps in between; the oracle replays
//! the events in sequence order itself.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::*;
use crate::bronze::BronzeWriter;
use crate::testkit::{self, Lab};

/// `(seq, id, a, b, c)`: a partial update; `None` is a null (`a`) or an absent field (`b`).
type Event = (i64, i64, Option<String>, Option<i64>, Option<String>);

/// Per key, its versions `(valid_from, valid_to, a, b)`.
type Versions = BTreeMap<i64, Vec<(i64, Option<i64>, Option<String>, Option<i64>)>>;

fn events(rng: &mut StdRng) -> Vec<Event> {
    let mut seqs: Vec<i64> = (1..=160).collect();
    seqs.shuffle(rng);
    seqs.into_iter()
        .map(|seq| {
            let a = rng.gen_bool(0.5).then(|| format!("a{seq}"));
            let b = rng.gen_bool(0.4).then(|| seq * 10);
            (seq, rng.gen_range(0..12), a, b, Some(format!("c{seq}")))
        })
        .collect()
}

fn line((seq, id, a, b, c): &Event) -> String {
    let a = a
        .as_ref()
        .map_or("null".to_string(), |a| format!("\"{a}\""));
    let b = b.map_or(String::new(), |b| format!(", \"b\": {b}"));
    let c = c
        .as_ref()
        .map_or(String::new(), |c| format!(", \"c\": \"{c}\""));
    format!("{{\"id\": {id}, \"seq\": {seq}, \"a\": {a}{b}{c}}}")
}

/// Per key, each version `(valid_from, valid_to, a, b)` (SCD1: only the last, `valid_from` its seq):
/// a column's value is the newest non-null one among the key's events up to the version.
fn oracle(events: &[Event]) -> Versions {
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|e| e.0);
    let mut out = Versions::new();
    let mut state: BTreeMap<i64, (Option<String>, Option<i64>)> = BTreeMap::new();
    for (seq, id, a, b, _) in &sorted {
        let s = state.entry(*id).or_default();
        if a.is_some() {
            s.0 = a.clone();
        }
        if b.is_some() {
            s.1 = *b;
        }
        let versions = out.entry(*id).or_default();
        if let Some(last) = versions.last_mut() {
            last.1 = Some(*seq);
        }
        versions.push((*seq, None, s.0.clone(), s.1));
    }
    out
}

async fn silver_versions(
    lab: &Lab,
) -> BTreeMap<i64, Vec<(i64, Option<i64>, Option<String>, Option<i64>)>> {
    let mut rows = Vec::new();
    for b in testkit::rows(&lab.cfg.silver_location("items")).await {
        assert!(
            b.column_by_name("c").is_none(),
            "except_columns: `c` never reaches silver"
        );
        let (id, seq, a, bv) = (
            testkit::ints(&b, "id"),
            testkit::ints(&b, "seq"),
            testkit::texts(&b, "a"),
            testkit::ints(&b, "b"),
        );
        let to = b
            .column_by_name(schema::VALID_TO)
            .map(|_| testkit::ints(&b, schema::VALID_TO));
        for i in 0..b.num_rows() {
            rows.push((
                id[i].unwrap(),
                seq[i].unwrap(),
                to.as_ref().and_then(|t| t[i]),
                a[i].clone(),
                bv[i],
            ));
        }
    }
    rows.sort();
    let mut out = Versions::new();
    for (id, seq, to, a, b) in rows {
        out.entry(id).or_default().push((seq, to, a, b));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_updates_keep_the_newest_earlier_value_and_excepted_columns_stay_in_bronze() {
    for (seed, scd) in [(1u64, 1u8), (2, 1), (3, 2), (4, 2)] {
        let lab = Lab::with_table(
            "items",
            &format!("format = \"jsonl\"\nkeys = [\"id\"]\nsequence_by = \"seq\"\nscd_type = {scd}\nignore_null_updates = true\nexcept_columns = [\"c\"]\ncolumns = [\"id long not null\", \"seq long not null\", \"a string\", \"b long\", \"c string\"]"),
        );
        let mut rng = StdRng::seed_from_u64(seed);
        let events = events(&mut rng);
        let bronze = BronzeWriter::new(lab.cfg.clone()).unwrap();
        let silver = SilverWriter::new(lab.cfg.clone());
        let table = lab.table("items");
        let mut objects: Vec<String> = events
            .chunks(11)
            .map(|c| c.iter().map(line).collect::<Vec<_>>().join("\n") + "\n")
            .collect();
        let again: Vec<String> = objects.choose_multiple(&mut rng, 3).cloned().collect();
        objects.extend(again);
        for (n, body) in objects.iter().enumerate() {
            let path = lab.landing(&format!("items/part-{n:03}.jsonl"));
            std::fs::write(&path, body).unwrap();
            bronze
                .ingest(table, &[testkit::object(&path)])
                .await
                .unwrap();
            if n % 2 == 1 {
                silver.apply(table).await.unwrap();
            }
        }
        silver.apply(table).await.unwrap();
        let mut want = oracle(&events);
        if scd == 1 {
            for versions in want.values_mut() {
                let last = versions.pop().unwrap();
                *versions = vec![last];
            }
        }
        assert_eq!(silver_versions(&lab).await, want, "seed {seed}, scd {scd}");
        // Bronze keeps every column of every delivered line (redeliveries included).
        let c = testkit::column_texts(&lab.cfg.bronze_location("items"), "c").await;
        let lines: usize = objects.iter().map(|o| o.lines().count()).sum();
        assert_eq!(c.iter().flatten().count(), lines, "seed {seed}");
    }
}

/// `(seq, id, tier, seen, deleted)`: `tier` is tracked, `seen` is not.
type Visit = (i64, i64, &'static str, i64, bool);

/// Per key, its versions `(valid_from, valid_to, tier, seen)`.
type Tiers = BTreeMap<i64, Vec<(i64, Option<i64>, String, i64)>>;

/// Per key, its versions `(valid_from, valid_to, tier, seen)`: consecutive events (no delete between)
/// with the same tier are one version starting at the first and holding the last one's `seen`.
fn history_oracle(events: &[Visit]) -> Tiers {
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|e| e.0);
    let mut out = Tiers::new();
    let mut open: BTreeMap<i64, bool> = BTreeMap::new();
    for &(seq, id, tier, seen, deleted) in &sorted {
        let versions = out.entry(id).or_default();
        let is_open = open.get(&id).copied().unwrap_or(false);
        if deleted {
            if is_open {
                versions.last_mut().unwrap().1 = Some(seq);
            }
            open.insert(id, false);
            continue;
        }
        match versions.last_mut() {
            Some(last) if is_open && last.2 == tier => last.3 = seen,
            Some(last) if is_open => {
                last.1 = Some(seq);
                versions.push((seq, None, tier.to_string(), seen));
            }
            _ => versions.push((seq, None, tier.to_string(), seen)),
        }
        open.insert(id, true);
    }
    out.retain(|_, v| !v.is_empty());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_on_selected_columns_folds_other_changes_in_any_arrival_order() {
    for seed in [5u64, 6, 7] {
        let lab = Lab::with_table(
            "visits",
            "format = \"jsonl\"\nkeys = [\"id\"]\nsequence_by = \"seq\"\nscd_type = 2\ndelete_column = \"deleted\"\ntrack_history_columns = [\"tier\"]\ncolumns = [\"id long not null\", \"seq long not null\", \"tier string\", \"seen long\", \"deleted boolean\"]",
        );
        let mut rng = StdRng::seed_from_u64(seed);
        let mut seqs: Vec<i64> = (1..=150).collect();
        seqs.shuffle(&mut rng);
        let events: Vec<Visit> = seqs
            .into_iter()
            .map(|seq| {
                let tier = ["gold", "silver"][rng.gen_range(0..10) / 8];
                (
                    seq,
                    rng.gen_range(0..6),
                    tier,
                    seq * 100,
                    rng.gen_bool(0.06),
                )
            })
            .collect();
        let bronze = BronzeWriter::new(lab.cfg.clone()).unwrap();
        let silver = SilverWriter::new(lab.cfg.clone());
        let table = lab.table("visits");
        for (n, chunk) in events.chunks(7).enumerate() {
            let body: String = chunk
                .iter()
                .map(|(seq, id, tier, seen, deleted)| {
                    format!("{{\"id\": {id}, \"seq\": {seq}, \"tier\": \"{tier}\", \"seen\": {seen}, \"deleted\": {deleted}}}\n")
                })
                .collect();
            let path = lab.landing(&format!("visits/part-{n:03}.jsonl"));
            std::fs::write(&path, body).unwrap();
            bronze
                .ingest(table, &[testkit::object(&path)])
                .await
                .unwrap();
            if n % 2 == 0 {
                silver.apply(table).await.unwrap();
            }
        }
        silver.apply(table).await.unwrap();
        let mut rows = Vec::new();
        for b in testkit::rows(&lab.cfg.silver_location("visits")).await {
            let (id, from, to) = (
                testkit::ints(&b, "id"),
                testkit::ints(&b, schema::VALID_FROM),
                testkit::ints(&b, schema::VALID_TO),
            );
            let (tier, seen) = (testkit::texts(&b, "tier"), testkit::ints(&b, "seen"));
            for i in 0..b.num_rows() {
                rows.push((
                    id[i].unwrap(),
                    from[i].unwrap(),
                    to[i],
                    tier[i].clone().unwrap(),
                    seen[i].unwrap(),
                ));
            }
        }
        rows.sort();
        let mut got = Tiers::new();
        for (id, from, to, tier, seen) in rows {
            got.entry(id).or_default().push((from, to, tier, seen));
        }
        let want = history_oracle(&events);
        assert_eq!(got, want, "seed {seed}");
        // Folding happened: fewer versions than non-delete events.
        let versions: usize = want.values().map(Vec::len).sum();
        assert!(
            versions < events.iter().filter(|e| !e.4).count(),
            "seed {seed}"
        );
    }
}
