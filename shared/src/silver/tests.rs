//! Silver against an independent oracle: a plain map from key to the event with the highest
//! sequence, written here and sharing no code with the merge. Random CDC streams (inserts, updates,
//! deletes, re-inserts) are split into random files and delivered shuffled, some twice, with silver
//! steps at random points (some concurrent).

use super::*;
use crate::bronze::BronzeWriter;
use crate::testkit::{self, bools, column_ints, ints, quarantine_reasons, rows_as_text, Lab};
use deltalake::arrow::array::{ArrayRef, AsArray, RecordBatch, TimestampMicrosecondArray};
use deltalake::arrow::datatypes::Int64Type;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug)]
struct Event {
    id: i64,
    seq: i64,
    balance: i64,
    deleted: bool,
}

/// The `accounts` table: id, sequence, balance and a delete flag, SCD type `scd_type`.
fn accounts(scd_type: u8) -> Lab {
    Lab::with_table(
        "accounts",
        &format!(
            "format = \"jsonl\"\nkeys = [\"id\"]\nsequence_by = \"seq\"\ndelete_column = \"deleted\"\ncolumns = [\"id long not null\", \"seq long not null\", \"balance long\", \"deleted boolean\"]\nscd_type = {scd_type}"
        ),
    )
}

/// The oracle: latest event per key by sequence; a delete means absent.
fn oracle(events: &[Event]) -> BTreeMap<i64, (i64, i64)> {
    let mut latest: BTreeMap<i64, &Event> = BTreeMap::new();
    for e in events {
        if latest.get(&e.id).is_none_or(|l| e.seq > l.seq) {
            latest.insert(e.id, e);
        }
    }
    latest
        .into_iter()
        .filter(|(_, e)| !e.deleted)
        .map(|(k, e)| (k, (e.seq, e.balance)))
        .collect()
}

async fn silver_rows(cfg: &PipelineConfig) -> BTreeMap<i64, (i64, i64)> {
    let mut out = BTreeMap::new();
    for b in testkit::rows(&cfg.silver_location("accounts")).await {
        let (id, seq, bal) = (ints(&b, "id"), ints(&b, "seq"), ints(&b, "balance"));
        for i in 0..b.num_rows() {
            let id = id[i].unwrap();
            assert!(
                out.insert(id, (seq[i].unwrap(), bal[i].unwrap())).is_none(),
                "duplicate key {id}"
            );
        }
    }
    out
}

fn random_stream(rng: &mut StdRng, n: usize, keys: i64) -> Vec<Event> {
    let mut live = std::collections::BTreeSet::new();
    (0..n as i64)
        .map(|seq| {
            let id = rng.gen_range(0..keys);
            let deleted = live.contains(&id) && rng.gen_bool(0.3);
            if deleted {
                live.remove(&id);
            } else {
                live.insert(id);
            }
            Event {
                id,
                seq: seq * 10 + rng.gen_range(0..10),
                balance: rng.gen_range(-1000..1000),
                deleted,
            }
        })
        .collect()
}

/// Writes the stream as random files, delivers them shuffled (a quarter twice) through bronze, with
/// silver steps at random points (sometimes three racing), then a final step.
/// Events as the JSON lines a source would drop.
fn jsonl(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| {
            let deleted = if e.deleted { ", \"deleted\": true" } else { "" };
            format!(
                "{{\"id\": {}, \"seq\": {}, \"balance\": {}{deleted}}}\n",
                e.id, e.seq, e.balance
            )
        })
        .collect()
}

/// With `processes`, steps alternate between two writers (two warm processes, each with its own
/// caches, which must notice the other's commits) and maintenance runs now and then (it rewrites the
/// tombstone files the warm indexes hold).
async fn deliver_shuffled(lab: &Lab, events: &[Event], rng: &mut StdRng, processes: bool) {
    let cfg = &lab.cfg;
    let mut files = Vec::new();
    let mut rest = events;
    while !rest.is_empty() {
        let k = rng.gen_range(1..=40).min(rest.len());
        files.push(rest[..k].to_vec());
        rest = &rest[k..];
    }
    let mut deliveries: Vec<usize> = (0..files.len()).collect();
    deliveries.extend((0..files.len()).filter(|_| rng.gen_bool(0.25)));
    deliveries.shuffle(rng);
    let bronze = BronzeWriter::new(cfg.clone()).unwrap();
    let writers = [
        SilverWriter::new(cfg.clone()),
        SilverWriter::new(cfg.clone()),
    ];
    let table = cfg.table("accounts").unwrap();
    for (n, f) in deliveries.iter().enumerate() {
        let silver = &writers[usize::from(processes && n % 3 == 1)];
        if processes && n % 13 == 12 {
            crate::maintain::Maintainer::new(cfg.clone())
                .run(None)
                .await
                .unwrap();
        }
        let path = lab.landing(&format!("accounts/part-{f:03}.jsonl"));
        if !path.exists() {
            std::fs::write(&path, jsonl(&files[*f])).unwrap();
        }
        bronze
            .ingest(table, &[testkit::object(&path)])
            .await
            .unwrap();
        match n % 7 {
            0 => {
                // Three silver steps racing on the same bronze state.
                let racers =
                    futures::future::join_all((0..3).map(|i| writers[i % 2].apply(table))).await;
                for r in racers {
                    r.unwrap();
                }
            }
            1 | 3 | 4 => {
                silver.apply(table).await.unwrap();
            }
            _ => {}
        }
    }
    writers[0].apply(table).await.unwrap();
    let again = writers[1].apply(table).await.unwrap();
    assert!(
        again.applied.is_none(),
        "a step with nothing new does nothing: {again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_cdc_streams_match_an_independent_oracle() {
    for seed in [1u64, 2, 3] {
        let lab = accounts(1);
        let mut rng = StdRng::seed_from_u64(seed);
        let events = random_stream(&mut rng, 400, 30);
        deliver_shuffled(&lab, &events, &mut rng, false).await;
        assert_eq!(
            silver_rows(&lab.cfg).await,
            oracle(&events),
            "seed {seed}: silver differs from the oracle"
        );
    }
}

/// The same with two warm writers taking turns and maintenance compacting in between: each writer's
/// warm tombstones must follow the other's appends and the compactions' rewrites.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_warm_writers_and_maintenance_match_the_oracle() {
    for seed in [4u64, 5] {
        let lab = accounts(1);
        let mut rng = StdRng::seed_from_u64(seed);
        let events = random_stream(&mut rng, 400, 30);
        deliver_shuffled(&lab, &events, &mut rng, true).await;
        assert_eq!(
            silver_rows(&lab.cfg).await,
            oracle(&events),
            "seed {seed}: silver differs from the oracle"
        );
    }
}

/// SCD2 oracle: per key, its events in sequence order; every upsert is a version valid until the
/// key's next event (update or delete), current when there is none.
fn history_oracle(events: &[Event]) -> BTreeSet<(i64, i64, Option<i64>, bool, i64)> {
    let mut by_key: BTreeMap<i64, Vec<&Event>> = BTreeMap::new();
    for e in events {
        by_key.entry(e.id).or_default().push(e);
    }
    let mut out = BTreeSet::new();
    for (id, mut es) in by_key {
        es.sort_by_key(|e| e.seq);
        for (i, e) in es.iter().enumerate() {
            if !e.deleted {
                let next = es.get(i + 1).map(|n| n.seq);
                out.insert((id, e.seq, next, next.is_none(), e.balance));
            }
        }
    }
    out
}

async fn history_rows(cfg: &PipelineConfig) -> Vec<(i64, i64, Option<i64>, bool, i64)> {
    let mut out = Vec::new();
    for b in testkit::rows(&cfg.silver_location("accounts")).await {
        let (id, from, to, bal) = (
            ints(&b, "id"),
            ints(&b, "valid_from"),
            ints(&b, "valid_to"),
            ints(&b, "balance"),
        );
        let current = bools(&b, "is_current");
        for i in 0..b.num_rows() {
            out.push((
                id[i].unwrap(),
                from[i].unwrap(),
                to[i],
                current[i].unwrap(),
                bal[i].unwrap(),
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scd2_history_matches_an_independent_oracle() {
    for seed in [4u64, 5] {
        let lab = accounts(2);
        let mut rng = StdRng::seed_from_u64(seed);
        let events = random_stream(&mut rng, 300, 20);
        deliver_shuffled(&lab, &events, &mut rng, false).await;
        let rows = history_rows(&lab.cfg).await;
        let unique: BTreeSet<_> = rows.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            rows.len(),
            "seed {seed}: duplicate history rows"
        );
        assert_eq!(
            unique,
            history_oracle(&events),
            "seed {seed}: SCD2 history differs from the oracle"
        );
    }
}

#[tokio::test]
async fn new_source_columns_evolve_bronze_and_silver_and_bad_casts_are_quarantined() {
    let lab = Lab::with_table(
        "cust",
        "format = \"jsonl\"\nkeys = [\"id\"]\nsequence_by = \"seq\"\nunknown_fields = \"evolve\"\n[[gold]]\nname = \"by_seq\"\nsql = \"SELECT seq, COUNT(*) AS n FROM cust GROUP BY seq\"\nkeys = [\"seq\"]\nsources = [\"cust\"]",
    );
    let (cfg, table) = (&lab.cfg, lab.table(&lab.cfg.tables[0].name));
    let silver = SilverWriter::new(cfg.clone());
    let gold = crate::gold::GoldWriter::new(cfg.clone());
    let view = cfg.view("by_seq").unwrap();
    // The schema is inferred from the first file: id, seq, score long.
    lab.ingest(
        &table.name,
        "1.jsonl",
        "{\"id\": 1, \"seq\": 1, \"score\": 10}\n{\"id\": 2, \"seq\": 1, \"score\": 20}\n",
    )
    .await;
    silver.apply(table).await.unwrap();
    assert!(gold.apply(view, false).await.unwrap().full);
    // A new column `tier` arrives; one row changes `score`'s type to text that is no long.
    let report = lab
        .ingest(
            &table.name,
            "2.jsonl",
            "{\"id\": 1, \"seq\": 2, \"score\": 11, \"tier\": \"gold\"}\n{\"id\": 2, \"seq\": 2, \"score\": \"n/a\", \"tier\": \"silver\"}\n{\"id\": 3, \"seq\": 2, \"tier\": \"bronze\"}\n",
        )
        .await;
    assert!(report.version.is_some(), "{report:?}");
    silver.apply(table).await.unwrap();
    // Gold reads silver's change feed across the schema change.
    let step = gold.apply(view, false).await.unwrap();
    assert!(!step.full && step.groups_touched == 2, "{step:?}");
    assert_eq!(
        rows_as_text(&cfg.gold_location("by_seq"), &["n"], "seq").await,
        BTreeMap::from([
            ("1".to_string(), vec![Some("1".to_string())]),
            ("2".to_string(), vec![Some("2".to_string())]),
        ]),
        "seq 1: id 2 (its update was quarantined); seq 2: ids 1 and 3"
    );

    let some = |v: &[&str]| v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>();
    let expected: BTreeMap<String, Vec<Option<String>>> = BTreeMap::from([
        ("1".to_string(), some(&["2", "11", "gold"])),
        (
            "2".to_string(),
            some(&["1", "20"]).into_iter().chain([None]).collect(),
        ),
        (
            "3".to_string(),
            vec![Some("2".into()), None, Some("bronze".into())],
        ),
    ]);
    assert_eq!(
        rows_as_text(
            &cfg.silver_location("cust"),
            &["seq", "score", "tier"],
            "id"
        )
        .await,
        expected,
        "silver has the new column; row 2's bad score did not apply"
    );
    let bronze_rows = rows_as_text(&cfg.bronze_location("cust"), &["tier"], "id").await;
    assert_eq!(
        bronze_rows.len(),
        3,
        "ids 1..3 (the latest bronze row per id): {bronze_rows:?}"
    );
    let reasons = quarantine_reasons(cfg, "cust").await;
    assert_eq!(
        reasons,
        vec!["column `score`: `n/a` is not a valid long".to_string()]
    );
    // The schema change is its own commit in both tables' history.
    for loc in [cfg.bronze_location("cust"), cfg.silver_location("cust")] {
        let t = lake::open(&loc).await.unwrap().unwrap();
        use futures::TryStreamExt;
        let ops: Vec<String> = t
            .history(None)
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .into_iter()
            .filter_map(|c| c.operation)
            .collect();
        assert!(ops.iter().any(|o| o == "ADD COLUMN"), "{loc:?}: {ops:?}");
    }
}

#[tokio::test]
async fn expired_tombstones_no_longer_stop_late_events() {
    let lab = Lab::with_table(
        "acct",
        "format = \"jsonl\"\nkeys = [\"id\"]\nsequence_by = \"seq\"\ndelete_column = \"deleted\"\ntombstone_retention_days = 7\ncolumns = [\"id long not null\", \"seq long not null\", \"deleted boolean\"]",
    );
    let (cfg, table) = (&lab.cfg, lab.table(&lab.cfg.tables[0].name));
    let silver = SilverWriter::new(cfg.clone());
    // Keys 1 and 2 are inserted at 10 and deleted at 20.
    lab.ingest(&table.name, "a.jsonl", "{\"id\":1,\"seq\":10}\n{\"id\":2,\"seq\":10}\n{\"id\":1,\"seq\":20,\"deleted\":true}\n{\"id\":2,\"seq\":20,\"deleted\":true}\n").await;
    silver.apply(table).await.unwrap();
    // Key 2's delete was applied 8 days ago (past the 7-day retention): rewrite its tombstone so.
    let loc = cfg.tombstone_location("acct");
    let stones = testkit::rows(&loc).await;
    let all = concat_batches(&stones[0].schema(), &stones).unwrap();
    let ids = all
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>()
        .clone();
    let old = (chrono::Utc::now() - chrono::Duration::days(8)).timestamp_micros();
    let now = chrono::Utc::now().timestamp_micros();
    let at: ArrayRef = Arc::new(
        TimestampMicrosecondArray::from(
            (0..all.num_rows())
                .map(|i| if ids.value(i) == 2 { old } else { now })
                .collect::<Vec<_>>(),
        )
        .with_timezone("UTC"),
    );
    let aged = schema::as_schema(&all, all.schema_ref(), |_, _| None).unwrap();
    let idx = aged.schema().index_of(DELETED_AT).unwrap();
    let mut cols = aged.columns().to_vec();
    cols[idx] = at;
    let aged = RecordBatch::try_new(aged.schema(), cols).unwrap();
    let t = lake::open(&loc).await.unwrap().unwrap();
    t.write(vec![aged])
        .with_save_mode(deltalake::protocol::SaveMode::Overwrite)
        .await
        .unwrap();
    // Late inserts at 15, older than both deletes.
    lab.ingest(
        &table.name,
        "b.jsonl",
        "{\"id\":1,\"seq\":15}\n{\"id\":2,\"seq\":15}\n",
    )
    .await;
    silver.apply(table).await.unwrap();
    let ids = silver_ids(&lab).await;
    assert_eq!(
        ids,
        vec![2],
        "key 1's tombstone still stops the late insert; key 2's expired"
    );
}

#[tokio::test]
async fn unusable_changes_are_quarantined_once_and_the_rest_applies() {
    let lab = Lab::with_table(
        "acct",
        "format = \"csv\"\ncsv_header = false\ncdc = \"dms\"\nkeys = [\"id\"]\ncolumns = [\"Op string\", \"id long not null\", \"v long\"]",
    );
    let (cfg, table) = (&lab.cfg, lab.table(&lab.cfg.tables[0].name));
    lab.ingest(&table.name, "f.csv", "I,1,10\nX,2,20\nI,3,30\nD,1,10\n")
        .await;
    let silver = SilverWriter::new(cfg.clone());
    let first = silver.apply(table).await.unwrap();
    assert_eq!(first.rejected, 1);
    silver.apply(table).await.unwrap();
    let reasons = quarantine_reasons(cfg, "acct").await;
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].starts_with("silver: unknown DMS operation `X`"),
        "{reasons:?}"
    );
    let ids = silver_ids(&lab).await;
    assert_eq!(
        ids,
        vec![3],
        "1 was deleted later in the same file, 2 was unusable"
    );
}

/// The `id` column of the lab's table's silver rows.
async fn silver_ids(lab: &Lab) -> Vec<i64> {
    column_ints(&lab.cfg.silver_location(&lab.cfg.tables[0].name), "id")
        .await
        .into_iter()
        .map(Option::unwrap)
        .collect()
}

/// Silver's live files and the id range each holds, read from the parquet files themselves (not
/// from the log's statistics, which the code under test uses).
async fn silver_files(cfg: &PipelineConfig) -> BTreeMap<String, (i64, i64)> {
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let loc = cfg.silver_location("accounts");
    let table = crate::lake::open(&loc).await.unwrap().unwrap();
    let paths: Vec<String> = table
        .snapshot()
        .unwrap()
        .log_data()
        .iter()
        .map(|f| f.path().into_owned())
        .collect();
    let mut out = BTreeMap::new();
    for p in paths {
        let file = std::fs::File::open(format!("{}/{p}", loc.url.path())).unwrap();
        let ids: Vec<i64> = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .flat_map(|b| ints(&b.unwrap(), "id"))
            .map(Option::unwrap)
            .collect();
        let (lo, hi) = (ids.iter().min().unwrap(), ids.iter().max().unwrap());
        out.insert(p, (*lo, *hi));
    }
    out
}

fn event(id: i64, seq: i64, deleted: bool) -> Event {
    Event {
        id,
        seq,
        balance: id * 10 + seq,
        deleted,
    }
}

/// Applies `batch` as one bronze object and one silver step; checks that the files the step removed
/// are exactly the files that held one of the batch's keys, and that silver still equals the oracle.
async fn step_rewrites_only_holders(
    lab: &Lab,
    writer: &SilverWriter,
    all: &mut Vec<Event>,
    batch: Vec<Event>,
    name: &str,
) -> SilverCommit {
    let before = silver_files(&lab.cfg).await;
    lab.ingest("accounts", &format!("{name}.jsonl"), &jsonl(&batch))
        .await;
    let step = writer.apply(lab.table("accounts")).await.unwrap();
    let after = silver_files(&lab.cfg).await;
    let removed: BTreeSet<&String> = before.keys().filter(|p| !after.contains_key(*p)).collect();
    let holders: BTreeSet<&String> = before
        .iter()
        .filter(|(_, (lo, hi))| batch.iter().any(|e| (*lo..=*hi).contains(&e.id)))
        .map(|(p, _)| p)
        .collect();
    assert_eq!(removed, holders, "{name}: rewritten files");
    assert_eq!(step.files_rewritten, removed.len(), "{name}: {step:?}");
    let mut ranges: Vec<(i64, i64)> = after.values().copied().collect();
    ranges.sort();
    assert!(
        ranges.windows(2).all(|w| w[0].1 < w[1].0),
        "{name}: files still cover disjoint key ranges: {ranges:?}"
    );
    all.extend(batch);
    assert_eq!(
        silver_rows(&lab.cfg).await,
        oracle(all),
        "{name}: silver differs from the oracle"
    );
    step
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silver_stays_clustered_and_a_batch_rewrites_only_the_files_holding_its_keys() {
    let lab = accounts(1);
    let writer = SilverWriter::new(lab.cfg.clone());
    let mut all: Vec<Event> = (0..600).map(|id| event(id, 1, false)).collect();
    lab.ingest("accounts", "base.jsonl", &jsonl(&all)).await;
    let first = writer.apply(lab.table("accounts")).await.unwrap();
    assert_eq!((first.path, first.inserted), ("append", 600), "{first:?}");
    let files = silver_files(&lab.cfg).await;
    assert!(
        files.len() >= 10,
        "600 rows at the test file size make many files: {files:?}"
    );
    let mut ranges: Vec<(i64, i64)> = files.values().copied().collect();
    ranges.sort();
    assert!(
        ranges.windows(2).all(|w| w[0].1 < w[1].0),
        "files cover disjoint key ranges: {ranges:?}"
    );

    // The usual CDC shape: updates and deletes of the newest keys, inserts of new ones.
    let recent: Vec<Event> = (590..600)
        .map(|id| event(id, 2, false))
        .chain((585..590).map(|id| event(id, 2, true)))
        .chain((600..620).map(|id| event(id, 2, false)))
        .collect();
    let s = step_rewrites_only_holders(&lab, &writer, &mut all, recent, "recent").await;
    assert!(s.files_rewritten <= 2 && s.files_rewritten >= 1, "{s:?}");
    assert!(s.files_skipped + 2 >= files.len(), "{s:?}");
    // The commit says so too (delta-rs's MERGE metrics and the step's plan).
    let silver = crate::lake::open(&lab.cfg.silver_location("accounts"))
        .await
        .unwrap()
        .unwrap();
    use futures::StreamExt;
    let info = silver.history(Some(1)).next().await.unwrap().unwrap().info;
    let metrics = &info["operationMetrics"];
    assert_eq!(
        metrics["num_target_files_removed"], s.files_rewritten,
        "{info:?}"
    );
    assert_eq!(
        metrics["num_target_files_skipped_during_scan"], s.files_skipped,
        "{info:?}"
    );
    assert_eq!(
        info["lakehouse.plan"]["touchedFiles"], s.files_rewritten,
        "{info:?}"
    );

    // One old key and one recent key: delta-rs alone would scan min..max, the whole table.
    let spread = vec![event(3, 3, false), event(598, 3, false)];
    let s = step_rewrites_only_holders(&lab, &writer, &mut all, spread, "spread").await;
    assert_eq!(s.files_rewritten, 2, "{s:?}");

    // Only new keys: appended, nothing read or rewritten.
    let fresh: Vec<Event> = (1000..1040).map(|id| event(id, 4, false)).collect();
    let s = step_rewrites_only_holders(&lab, &writer, &mut all, fresh, "fresh").await;
    assert_eq!(
        (s.path, s.files_rewritten, s.inserted),
        ("append", 0, 40),
        "{s:?}"
    );

    // Every part of the key space at once, deletes included.
    let full: Vec<Event> = (0..1040)
        .step_by(13)
        .map(|id| event(id, 5, id % 2 == 0))
        .collect();
    step_rewrites_only_holders(&lab, &writer, &mut all, full, "full").await;
}

#[tokio::test]
async fn changes_without_their_key_go_to_quarantine_not_to_one_null_keyed_row() {
    // Inferred columns: nothing forces `id` to be present, so null keys reach the normaliser.
    let lab = Lab::with_table("k", "format = \"jsonl\"\nkeys = [\"id\"]");
    lab.ingest(
        "k",
        "a.jsonl",
        "{\"id\": 1, \"v\": \"a\"}\n{\"v\": \"no key\"}\n{\"id\": null, \"v\": \"null key\"}\n{\"id\": 2, \"v\": \"b\"}\n",
    )
    .await;
    let w = SilverWriter::new(lab.cfg.clone());
    let commit = w.apply(lab.table("k")).await.unwrap();
    assert_eq!((commit.changes, commit.rejected), (2, 2));
    let mut ids = column_ints(&lab.cfg.silver_location("k"), "id").await;
    ids.sort();
    assert_eq!(ids, vec![Some(1), Some(2)]);
    let reasons = quarantine_reasons(&lab.cfg, "k").await;
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .all(|r| r.contains("key column `id` is null")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn a_table_without_keys_is_bronze_only_and_a_silver_step_on_it_does_nothing() {
    let lab = Lab::with_table("raw", "format = \"jsonl\"");
    lab.ingest("raw", "a.jsonl", "{\"x\": 1}\n{\"x\": 1}\n{\"x\": 2}\n")
        .await;
    let commit = SilverWriter::new(lab.cfg.clone())
        .apply(lab.table("raw"))
        .await
        .unwrap();
    assert_eq!(
        (commit.path, commit.applied, commit.version),
        ("bronze_only", None, None)
    );
    assert!(lake::open(&lab.cfg.silver_location("raw"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        column_ints(&lab.cfg.bronze_location("raw"), "x")
            .await
            .len(),
        3,
        "bronze keeps every raw row"
    );
}

/// A step without deletes commits nothing to the tombstone table (silver's commit says how far
/// tombstones are due); a crash after a silver commit with deletes but before its tombstone commit is
/// made good by the next step, also when steps without deletes came in between; and maintenance keeps
/// the bronze commits those missed deletes are in, but no more than silver needs once they are in.
#[tokio::test]
async fn tombstones_are_owed_only_for_deletes_and_a_crash_before_them_is_made_good() {
    use crate::maintain::consumers::{of_bronze, Consumed};
    let lab = accounts(1);
    let (cfg, table) = (&lab.cfg, lab.table("accounts"));
    let tomb_loc = cfg.tombstone_location("accounts");
    let bronze_version = || async {
        lake::version(&cfg.bronze_location("accounts"))
            .await
            .unwrap()
    };
    let ev = |id: i64, seq: i64, deleted: bool| Event {
        id,
        seq,
        balance: seq,
        deleted,
    };
    let step = || async { SilverWriter::new(cfg.clone()).apply(table).await.unwrap() };
    lab.ingest(
        "accounts",
        "a.jsonl",
        &jsonl(&[ev(1, 10, false), ev(2, 10, false)]),
    )
    .await;
    step().await;
    assert!(
        lake::open(&tomb_loc).await.unwrap().is_none(),
        "no delete, no tombstone table"
    );
    assert_eq!(
        of_bronze(cfg, "accounts").await.unwrap(),
        Consumed::Upto(bronze_version().await.unwrap())
    );

    // Key 2 deleted at 20; the step's tombstone commit is lost (the crash), then a step without
    // deletes runs before anyone notices... and must record the missed delete first.
    lab.ingest("accounts", "b.jsonl", &jsonl(&[ev(2, 20, true)]))
        .await;
    let before_delete = bronze_version().await.unwrap() - 1;
    step().await;
    std::fs::remove_dir_all(tomb_loc.url.path()).unwrap();
    assert_eq!(
        of_bronze(cfg, "accounts").await.unwrap(),
        Consumed::Upto(before_delete),
        "the missed delete's bronze commit is kept"
    );
    // A late update of key 2 (older than its delete) and a new key.
    lab.ingest(
        "accounts",
        "c.jsonl",
        &jsonl(&[ev(2, 15, false), ev(3, 30, false)]),
    )
    .await;
    step().await;
    assert_eq!(
        silver_rows(cfg).await.keys().copied().collect::<Vec<_>>(),
        vec![1, 3],
        "the recovered tombstone stops the late update"
    );
    let tombs = lake::open(&tomb_loc).await.unwrap().unwrap().version();
    assert_eq!(
        of_bronze(cfg, "accounts").await.unwrap(),
        Consumed::Upto(bronze_version().await.unwrap())
    );
    // More steps without deletes leave the tombstone table as it is.
    lab.ingest("accounts", "d.jsonl", &jsonl(&[ev(4, 40, false)]))
        .await;
    step().await;
    assert_eq!(
        lake::open(&tomb_loc).await.unwrap().unwrap().version(),
        tombs
    );
}

/// Keys, sequences and lineage row numbers are written without a parquet dictionary (one would be
/// built per column chunk only to be dropped); other columns keep theirs.
#[tokio::test]
async fn unique_columns_are_written_without_a_dictionary() {
    use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
    let lab = Lab::with_table(
        "t",
        "format = \"jsonl\"\nkeys = [\"id\"]\nsequence_by = \"seq\"\ncolumns = [\"id long not null\", \"seq long not null\", \"status string\"]",
    );
    let body: String = (0..2000)
        .map(|i| {
            format!(
                "{{\"id\": {i}, \"seq\": {}, \"status\": \"s{}\"}}\n",
                i * 7,
                i % 3
            )
        })
        .collect();
    lab.ingest("t", "a.jsonl", &body).await;
    SilverWriter::new(lab.cfg.clone())
        .apply(lab.table("t"))
        .await
        .unwrap();
    let table = crate::lake::open(&lab.cfg.silver_location("t"))
        .await
        .unwrap()
        .unwrap();
    let uris: Vec<String> = table.get_file_uris().unwrap().collect();
    assert!(!uris.is_empty());
    for uri in uris {
        let path = uri.strip_prefix("file://").unwrap_or(&uri).to_string();
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let group = reader.metadata().row_group(0);
        let dictionary = |name: &str| {
            group
                .columns()
                .iter()
                .find(|c| c.column_path().string() == name)
                .unwrap_or_else(|| panic!("no column {name} in {path}"))
                .dictionary_page_offset()
                .is_some()
        };
        for unique in ["id", "seq", "_seq", "_source_row"] {
            assert!(!dictionary(unique), "{unique} has a dictionary in {path}");
        }
        assert!(dictionary("status"), "status lost its dictionary in {path}");
    }
}
