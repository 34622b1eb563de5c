//! Maintenance against an independent oracle: many small commits, then maintenance (now and as if
//! weeks later); every layer must return the rows the oracle says, before and after, time travel within
//! the vacuum floor must still work, and steps after maintenance stay incremental and correct.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use deltalake::kernel::Transaction;
use deltalake::protocol::DeltaOperation;

use super::*;
use crate::bronze::BronzeWriter;
use crate::gold::GoldWriter;
use crate::silver::{watermark_app_id, SilverWriter};
use crate::testkit::{self, ints, Lab};

/// The `orders` table and a gold view over it. Bronze files target 64 KiB and silver files 8 KiB:
/// one small commit's file is far below either, as in a table fed every minute.
fn orders() -> Lab {
    let mut lab = Lab::new(
        "[[table]]\nname = \"orders\"\nformat = \"jsonl\"\nkeys = [\"id\"]\nsequence_by = \"seq\"\ndelete_column = \"deleted\"\ntombstone_retention_days = 7\ncolumns = [\"id long not null\", \"customer long not null\", \"amount long\", \"seq long not null\", \"deleted boolean\"]\n\n[[gold]]\nname = \"by_customer\"\nsql = \"SELECT customer, COUNT(*) AS orders, SUM(amount) AS revenue FROM orders GROUP BY customer\"\nkeys = [\"customer\"]\nsources = [\"orders\"]\n",
    );
    let mut cfg = (*lab.cfg).clone();
    cfg.target_file_size = 64 << 10;
    cfg.tables[0].target_file_size = 8 << 10;
    lab.cfg = Arc::new(cfg);
    lab
}

/// One order event: (id, customer, amount, seq, deleted).
type Event = (i64, i64, i64, i64, bool);

/// Event `n` of a deterministic stream over 40 ids: inserts, updates, some deletes.
fn event(n: i64) -> Event {
    let id = (n * 7919) % 40;
    (id, id % 5, n % 97, n, n % 11 == 5)
}

fn jsonl(events: &[Event]) -> String {
    events
        .iter()
        .map(|(id, c, a, s, d)| {
            format!("{{\"id\":{id},\"customer\":{c},\"amount\":{a},\"seq\":{s},\"deleted\":{d}}}\n")
        })
        .collect()
}

/// Rows by key: id → (customer, amount) in silver, customer → (orders, revenue) in gold.
type Rows = BTreeMap<i64, (i64, i64)>;

/// The oracle: latest event per id by sequence, deletes absent; and per customer (count, sum).
fn oracle(events: &[Event]) -> (Rows, Rows) {
    let mut latest: BTreeMap<i64, Event> = BTreeMap::new();
    for e in events {
        if latest.get(&e.0).is_none_or(|l| e.3 > l.3) {
            latest.insert(e.0, *e);
        }
    }
    let rows: BTreeMap<i64, (i64, i64)> = latest
        .values()
        .filter(|e| !e.4)
        .map(|e| (e.0, (e.1, e.2)))
        .collect();
    let mut groups: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for (c, a) in rows.values() {
        let g = groups.entry(*c).or_default();
        g.0 += 1;
        g.1 += a;
    }
    (rows, groups)
}

async fn silver_rows(lab: &Lab) -> BTreeMap<i64, (i64, i64)> {
    let mut out = BTreeMap::new();
    for b in testkit::rows(&lab.cfg.silver_location("orders")).await {
        let (id, c, a) = (ints(&b, "id"), ints(&b, "customer"), ints(&b, "amount"));
        for i in 0..b.num_rows() {
            let dup = out.insert(id[i].unwrap(), (c[i].unwrap(), a[i].unwrap()));
            assert!(dup.is_none(), "duplicate key {:?}", id[i]);
        }
    }
    out
}

async fn gold_rows(lab: &Lab) -> BTreeMap<i64, (i64, i64)> {
    let mut out = BTreeMap::new();
    for b in testkit::rows(&lab.cfg.gold_location("by_customer")).await {
        let (c, n, s) = (
            ints(&b, "customer"),
            ints(&b, "orders"),
            ints(&b, "revenue"),
        );
        for i in 0..b.num_rows() {
            out.insert(c[i].unwrap(), (n[i].unwrap(), s[i].unwrap()));
        }
    }
    out
}

async fn bronze_rows(lab: &Lab) -> usize {
    testkit::rows(&lab.cfg.bronze_location("orders"))
        .await
        .iter()
        .map(|b| b.num_rows())
        .sum()
}

fn files(table: &deltalake::DeltaTable) -> usize {
    table.snapshot().unwrap().log_data().num_files()
}

fn log_entries(location: &Location) -> usize {
    std::fs::read_dir(std::path::Path::new(location.url.path()).join("_delta_log"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".json")
        })
        .count()
}

/// Feeds events `from..to` as one object per `per` events, a silver step every `silver_every`
/// objects and a gold step after each silver step.
async fn feed(lab: &Lab, from: i64, to: i64, per: i64, silver_every: i64) {
    let table = lab.table("orders");
    let view = &lab.cfg.gold[0];
    let bronze = BronzeWriter::new(lab.cfg.clone()).unwrap();
    let (silver, gold) = (
        SilverWriter::new(lab.cfg.clone()),
        GoldWriter::new(lab.cfg.clone()),
    );
    for (k, start) in (from..to).step_by(per as usize).enumerate() {
        let events: Vec<Event> = (start..(start + per).min(to)).map(event).collect();
        let obj = lab.put(
            &format!("orders/e-{start:06}.jsonl"),
            jsonl(&events).as_bytes(),
        );
        bronze.ingest(table, &[obj]).await.unwrap();
        if (k as i64 + 1) % silver_every == 0 {
            silver.apply(table).await.unwrap();
            gold.apply(view, false).await.unwrap();
        }
    }
    silver.apply(table).await.unwrap();
    gold.apply(view, false).await.unwrap();
}

/// Feeds events `from..to` into bronze only, `per` per object (commits silver has not read).
async fn ingest_only(lab: &Lab, from: i64, to: i64, per: i64) {
    let bronze = BronzeWriter::new(lab.cfg.clone()).unwrap();
    for start in (from..to).step_by(per as usize) {
        let events: Vec<Event> = (start..(start + per).min(to)).map(event).collect();
        let obj = lab.put(
            &format!("orders/e-{start:06}.jsonl"),
            jsonl(&events).as_bytes(),
        );
        bronze.ingest(lab.table("orders"), &[obj]).await.unwrap();
    }
}

async fn assert_matches_oracle(lab: &Lab, upto: i64, when: &str) {
    let events: Vec<Event> = (0..upto).map(event).collect();
    let (rows, groups) = oracle(&events);
    assert_eq!(
        silver_rows(lab).await,
        rows,
        "{when}: silver differs from the oracle"
    );
    assert_eq!(
        gold_rows(lab).await,
        groups,
        "{when}: gold differs from the oracle"
    );
    assert_eq!(bronze_rows(lab).await, upto as usize, "{when}: bronze rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_shrinks_files_and_log_and_changes_no_rows() {
    let lab = orders();
    let bronze_loc = lab.cfg.bronze_location("orders");
    let silver_loc = lab.cfg.silver_location("orders");
    // 320 bronze commits of 2 events, silver and gold every 8.
    feed(&lab, 0, 640, 2, 8).await;
    assert_matches_oracle(&lab, 640, "before maintenance").await;
    let bronze = lake::open(&bronze_loc).await.unwrap().unwrap();
    let silver = lake::open(&silver_loc).await.unwrap().unwrap();
    let (bronze_files, silver_files) = (files(&bronze), files(&silver));
    let bronze_before = bronze.version().unwrap() as i64;
    let silver_before = silver.version().unwrap() as i64;
    assert!(bronze_files >= 320, "{bronze_files} bronze files");
    let silver_sorted_before = testkit::rows(&silver_loc).await;

    // Now: compaction and checkpoints; nothing is old enough to clean or vacuum.
    let report = Maintainer::new(lab.cfg.clone()).run(None).await.unwrap();
    assert_eq!(report.failed().count(), 0, "{report:#?}");
    let done = |label: &str, task: &str| {
        report
            .tasks
            .iter()
            .any(|t| t.table == label && t.task == task && t.outcome == Outcome::Done)
    };
    assert!(done("bronze/orders", "compact"), "{report:#?}");
    assert!(done("bronze/orders", "checkpoint"), "{report:#?}");
    let bronze = lake::open(&bronze_loc).await.unwrap().unwrap();
    assert!(
        files(&bronze) * 10 < bronze_files,
        "bronze compacted: {} files from {bronze_files}",
        files(&bronze)
    );
    let silver = lake::open(&silver_loc).await.unwrap().unwrap();
    assert!(
        files(&silver) <= silver_files,
        "silver files {} (were {silver_files})",
        files(&silver)
    );
    let spans = lake::file_spans(&silver, &silver_loc, Some("id")).unwrap();
    assert!(
        lake::compaction_bins(&spans, lab.table("orders").target_file_size).is_empty(),
        "silver left clustered: nothing more to compact"
    );
    assert_matches_oracle(&lab, 640, "after compaction").await;

    // Time travel to before maintenance still reads the same rows (removed files are kept).
    let mut old = lake::open(&bronze_loc).await.unwrap().unwrap();
    old.load_version(bronze_before as u64).await.unwrap();
    let old_rows: usize = lake::scan(&old, &bronze_loc)
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(old_rows, 640, "bronze as of version {bronze_before}");
    let mut old = lake::open(&silver_loc).await.unwrap().unwrap();
    old.load_version(silver_before as u64).await.unwrap();
    let old_rows: usize = lake::scan(&old, &silver_loc)
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    let now_rows: usize = silver_sorted_before.iter().map(|b| b.num_rows()).sum();
    assert_eq!(old_rows, now_rows, "silver as of version {silver_before}");

    // Steps after compaction stay incremental: the compaction commit adds no new rows to silver.
    feed(&lab, 640, 700, 2, 5).await;
    assert_matches_oracle(&lab, 700, "steps after compaction").await;

    // Forty days later: logs are cleaned below the checkpoint and vacuum deletes the removed files.
    let log_before = log_entries(&bronze_loc);
    let later = Maintainer::new(lab.cfg.clone()).at(Utc::now() + chrono::Duration::days(40));
    let report = later.run(Some("orders")).await.unwrap();
    assert_eq!(report.failed().count(), 0, "{report:#?}");
    let log_after = log_entries(&bronze_loc);
    assert!(
        log_after * 10 < log_before,
        "bronze log {log_after} entries (was {log_before})"
    );
    let vacuumed: usize = report
        .tasks
        .iter()
        .filter(|t| t.task == "vacuum")
        .map(|t| t.deleted)
        .sum();
    assert!(vacuumed >= bronze_files, "{vacuumed} files vacuumed");
    assert_matches_oracle(&lab, 700, "after log cleanup and vacuum").await;
    // ... and the pipeline goes on from there.
    feed(&lab, 700, 760, 3, 4).await;
    assert_matches_oracle(&lab, 760, "steps after vacuum").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_cleanup_keeps_every_commit_silver_has_not_read() {
    let lab = orders();
    let bronze_loc = lab.cfg.bronze_location("orders");
    // 110 commits read by silver (delta-rs checkpoints at 100 on the way), then 40 it has not read.
    feed(&lab, 0, 220, 2, 1000).await;
    ingest_only(&lab, 220, 300, 2).await;
    // Status sees silver 40 commits behind bronze, and gold caught up with silver.
    let status = crate::status::status(&lab.cfg, Utc::now()).await.unwrap();
    let layer = |name: &str| {
        status
            .iter()
            .flat_map(|t| t.layers.iter())
            .find(|l| l.table == name)
            .unwrap()
            .clone()
    };
    let silver_lag = &layer("silver/orders").lag[0];
    assert_eq!(silver_lag.versions_behind, 40, "{silver_lag:?}");
    assert!(silver_lag.seconds_behind >= 0);
    assert_eq!(layer("gold/by_customer").lag[0].versions_behind, 0);
    assert!(layer("bronze/orders").small_file_ratio > 0.9);
    assert!(layer("bronze/orders").last_maintenance.is_none());

    let later = Maintainer::new(lab.cfg.clone()).at(Utc::now() + chrono::Duration::days(40));
    let report = later.run(None).await.unwrap();
    assert_eq!(report.failed().count(), 0, "{report:#?}");
    let status = crate::status::status(&lab.cfg, Utc::now()).await.unwrap();
    let bronze_status = status[0].layers[0].clone();
    assert!(
        bronze_status.last_maintenance.is_some(),
        "{bronze_status:?}"
    );
    assert!(bronze_status.files < 100, "{bronze_status:?}");
    let silver = lake::open(&lab.cfg.silver_location("orders"))
        .await
        .unwrap()
        .unwrap();
    let mark = lake::txn_version(&silver, &watermark_app_id("orders"))
        .await
        .unwrap()
        .unwrap();
    let bronze_t = lake::open(&bronze_loc).await.unwrap().unwrap();
    let kept = |v: i64| {
        let log = bronze_t.log_store();
        async move { log.read_commit_entry(v as u64).await.unwrap().is_some() }
    };
    assert!(
        !kept(50).await,
        "cleanup ran: version 50 is below the checkpoint at 100"
    );
    for v in mark + 1..=bronze_t.version().unwrap() as i64 {
        assert!(
            kept(v).await,
            "bronze version {v} (after silver's watermark {mark}) was cleaned"
        );
    }
    // The compaction ran only on what silver read; silver now catches up, correctly.
    SilverWriter::new(lab.cfg.clone())
        .apply(lab.table("orders"))
        .await
        .unwrap();
    GoldWriter::new(lab.cfg.clone())
        .apply(&lab.cfg.gold[0], false)
        .await
        .unwrap();
    assert_matches_oracle(&lab, 300, "silver catching up after maintenance").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silver_step_racing_a_compaction_ends_correct() {
    let lab = orders();
    feed(&lab, 0, 80, 2, 3).await;
    // A step racing a maintenance run: whoever loses re-runs (silver) or skips (maintenance).
    ingest_only(&lab, 80, 140, 3).await;
    let maintain = Maintainer::new(lab.cfg.clone());
    let silver = SilverWriter::new(lab.cfg.clone());
    let (report, step) = tokio::join!(maintain.run(None), silver.apply(lab.table("orders")));
    let report = report.unwrap();
    step.unwrap();
    assert_eq!(report.failed().count(), 0, "{report:#?}");
    GoldWriter::new(lab.cfg.clone())
        .apply(&lab.cfg.gold[0], false)
        .await
        .unwrap();
    assert_matches_oracle(&lab, 140, "silver raced compaction").await;
    // And once more with everything compacted.
    let again = Maintainer::new(lab.cfg.clone()).run(None).await.unwrap();
    assert_eq!(again.failed().count(), 0, "{again:#?}");
    assert_matches_oracle(&lab, 140, "second maintenance").await;
    feed(&lab, 140, 180, 2, 2).await;
    assert_matches_oracle(&lab, 180, "after a second maintenance").await;
}

/// Commits `app`'s watermark again with `lastUpdated` `days` ago (what an idle table looks like).
async fn age_watermark(location: &Location, app: &str, days: i64) {
    let mut t = lake::open(location).await.unwrap().unwrap();
    let mark = lake::txn_version(&t, app).await.unwrap().unwrap();
    let old = (Utc::now() - chrono::Duration::days(days)).timestamp_millis();
    let txn = Transaction::new_with_last_update(app, mark, Some(old));
    let op = DeltaOperation::Write {
        mode: deltalake::protocol::SaveMode::Append,
        partition_by: None,
        predicate: None,
    };
    lake::commit_actions(&mut t, Vec::new(), vec![txn], Default::default(), op)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermarks_older_than_any_retention_still_step_incrementally() {
    let lab = orders();
    let silver_loc = lab.cfg.silver_location("orders");
    let app = watermark_app_id("orders");
    feed(&lab, 0, 30, 3, 2).await;
    // A table made by an earlier release: silver carries a 1-day transaction retention, and its
    // watermark was last written 400 days ago. Delta now considers the watermark expired.
    let t = lake::open(&silver_loc).await.unwrap().unwrap();
    let props = std::collections::HashMap::from([(
        "delta.setTransactionRetentionDuration".to_string(),
        "interval 1 days".to_string(),
    )]);
    t.set_tbl_properties().with_properties(props).await.unwrap();
    age_watermark(&silver_loc, &app, 400).await;
    let t = lake::open(&silver_loc).await.unwrap().unwrap();
    assert_eq!(
        lake::txn_version(&t, &app).await.unwrap(),
        None,
        "premise: the aged watermark reads as expired"
    );
    // The next step keeps the watermark (drops the retention) and applies only the new commit.
    let bronze = BronzeWriter::new(lab.cfg.clone()).unwrap();
    let before = lake::open(&lab.cfg.bronze_location("orders"))
        .await
        .unwrap()
        .unwrap()
        .version()
        .unwrap() as i64;
    let obj = lab.put("orders/late.jsonl", jsonl(&[event(30)]).as_bytes());
    bronze.ingest(lab.table("orders"), &[obj]).await.unwrap();
    let step = SilverWriter::new(lab.cfg.clone())
        .apply(lab.table("orders"))
        .await
        .unwrap();
    assert_eq!(
        step.applied.map(|(from, _)| from),
        Some(Some(before)),
        "{step:?}"
    );
    assert_eq!(step.changes, 1, "only the new event is merged: {step:?}");
    GoldWriter::new(lab.cfg.clone())
        .apply(&lab.cfg.gold[0], false)
        .await
        .unwrap();
    assert_matches_oracle(&lab, 31, "after an idle year").await;

    // A table made now has no transaction retention: an old watermark is simply a watermark.
    age_watermark(&silver_loc, &app, 4000).await;
    let t = lake::open(&silver_loc).await.unwrap().unwrap();
    assert!(lake::txn_version(&t, &app).await.unwrap().is_some());
    let gold = lake::open(&lab.cfg.gold_location("by_customer"))
        .await
        .unwrap()
        .unwrap();
    assert!(!gold
        .snapshot()
        .unwrap()
        .metadata()
        .configuration()
        .contains_key("delta.setTransactionRetentionDuration"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tombstones_and_quarantine_rows_are_deleted() {
    let lab = orders();
    feed(&lab, 0, 80, 4, 3).await;
    lab.ingest("orders", "bad.jsonl", "{\"id\": \"x\"}\nnot json\n")
        .await;
    let count = |loc: Location| async move {
        testkit::rows(&loc)
            .await
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>()
    };
    let tombs = count(lab.cfg.tombstone_location("orders")).await;
    let bad = count(lab.cfg.quarantine_location("orders")).await;
    assert!(
        tombs > 0 && bad > 0,
        "premise: {tombs} tombstones, {bad} quarantined"
    );
    // A week and a day later, tombstones (7 days) are gone, quarantine rows (90 days) stay.
    let m = Maintainer::new(lab.cfg.clone()).at(Utc::now() + chrono::Duration::days(8));
    let report = m.run(None).await.unwrap();
    assert_eq!(report.failed().count(), 0, "{report:#?}");
    assert_eq!(count(lab.cfg.tombstone_location("orders")).await, 0);
    assert_eq!(count(lab.cfg.quarantine_location("orders")).await, bad);
    let m = Maintainer::new(lab.cfg.clone()).at(Utc::now() + chrono::Duration::days(91));
    m.run(None).await.unwrap();
    assert_eq!(count(lab.cfg.quarantine_location("orders")).await, 0);
    assert_matches_oracle(&lab, 80, "after expiry").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_older_than_the_marker_horizon_changes_nothing() {
    let lab = orders();
    feed(&lab, 0, 40, 4, 2).await;
    // The first object is redelivered 40 days after it landed: its marker may have expired, so an
    // event no longer ingests it (replaying its rows could put old values over newer ones).
    let first = lab.landing("orders/e-000000.jsonl");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(40 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&first)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let bronze_version = lake::version(&lab.cfg.bronze_location("orders"))
        .await
        .unwrap();
    let out = BronzeWriter::new(lab.cfg.clone())
        .unwrap()
        .ingest(lab.table("orders"), &[testkit::object(&first)])
        .await
        .unwrap();
    assert!(
        matches!(&out.objects[0].status, crate::bronze::ObjectStatus::Stale { reason } if reason.contains("horizon")),
        "{out:?}"
    );
    assert_eq!(out.failed().count(), 0, "a stale event is not retried");
    assert_eq!(
        lake::version(&lab.cfg.bronze_location("orders"))
            .await
            .unwrap(),
        bronze_version,
        "nothing committed"
    );
    feed(&lab, 40, 44, 4, 1).await;
    assert_matches_oracle(&lab, 44, "after a stale redelivery").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_whose_bronze_range_left_the_log_says_so_and_a_rebuild_recovers() {
    let lab = orders();
    feed(&lab, 0, 40, 4, 1).await;
    ingest_only(&lab, 40, 60, 4).await;
    // Something other than maintenance checkpoints bronze and deletes commits silver has not read.
    let bronze_loc = lab.cfg.bronze_location("orders");
    let t = lake::open(&bronze_loc).await.unwrap().unwrap();
    deltalake::checkpoints::create_checkpoint(&t, None)
        .await
        .unwrap();
    let latest = t.version().unwrap();
    let log = std::path::Path::new(bronze_loc.url.path()).join("_delta_log");
    std::fs::remove_file(log.join(format!("{:020}.json", latest - 2))).unwrap();
    let err = SilverWriter::new(lab.cfg.clone())
        .apply(lab.table("orders"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LogExpired { .. }), "{err}");
    assert!(err.to_string().contains("lakehouse rebuild"), "{err}");
    // Recovery: silver from bronze's current rows, then gold recomputed.
    let rebuild = SilverWriter::new(lab.cfg.clone());
    let refused = rebuild.rebuild(lab.table("orders")).await.unwrap_err();
    assert!(
        matches!(refused, Error::RebuildOverExisting { .. }),
        "{refused}"
    );
    for loc in [
        lab.cfg.silver_location("orders"),
        lab.cfg.tombstone_location("orders"),
    ] {
        std::fs::remove_dir_all(loc.url.path()).unwrap();
    }
    let out = rebuild.rebuild(lab.table("orders")).await.unwrap();
    assert_eq!(out.applied, Some((None, latest as i64)), "{out:?}");
    GoldWriter::new(lab.cfg.clone())
        .apply(&lab.cfg.gold[0], true)
        .await
        .unwrap();
    assert_matches_oracle(&lab, 60, "after a rebuild").await;
    // ... and it steps on incrementally from there.
    feed(&lab, 60, 80, 4, 2).await;
    assert_matches_oracle(&lab, 80, "steps after a rebuild").await;
}
