//! Idle tables through months of maintenance: a lake fed for a while, then left alone while the
//! maintenance schedule keeps running (day 0, 31, 62, 93 on the maintainer's clock: every log entry
//! written before is then older than the 30-day log retention, as on an object store after a quiet
//! month), then fed again. Every run must succeed and change no row; every table must stay readable;
//! afterwards the tables must equal oracles computed here from the events.
//!
//! The lake: `orders` (SCD1, deletes), `customers` (SCD1, idle after its first load) and a gold view
//! joining both; `accounts` (SCD2); `events`, whose silver step stops running while bronze keeps
//! receiving data (a consumer idle with commits pending).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::Utc;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::*;
use crate::bronze::BronzeWriter;
use crate::gold::GoldWriter;
use crate::silver::SilverWriter;
use crate::testkit::{self, bools, ints, Lab};

const TABLES: [&str; 4] = ["orders", "customers", "accounts", "events"];

fn lab() -> Lab {
    let mut lab = Lab::new(concat!(
        "[[table]]\nname = \"orders\"\nformat = \"jsonl\"\nkeys = [\"id\"]\nsequence_by = \"seq\"\n",
        "delete_column = \"deleted\"\ncolumns = [\"id long not null\", \"customer long not null\", ",
        "\"amount long\", \"seq long not null\", \"deleted boolean\"]\n\n",
        "[[table]]\nname = \"customers\"\nformat = \"jsonl\"\nkeys = [\"id\"]\nsequence_by = \"seq\"\n",
        "columns = [\"id long not null\", \"region long not null\", \"seq long not null\"]\n\n",
        "[[table]]\nname = \"accounts\"\nformat = \"jsonl\"\nkeys = [\"id\"]\nsequence_by = \"seq\"\n",
        "delete_column = \"deleted\"\nscd_type = 2\ncolumns = [\"id long not null\", ",
        "\"seq long not null\", \"balance long\", \"deleted boolean\"]\n\n",
        "[[table]]\nname = \"events\"\nformat = \"jsonl\"\nkeys = [\"id\"]\nsequence_by = \"seq\"\n",
        "columns = [\"id long not null\", \"v long\", \"seq long not null\"]\n\n",
        "[[gold]]\nname = \"by_region\"\n",
        "sql = \"SELECT c.region, COUNT(*) AS orders, SUM(o.amount) AS revenue FROM orders o ",
        "JOIN customers c ON o.customer = c.id GROUP BY c.region\"\n",
        "keys = [\"region\"]\nsources = [\"orders\", \"customers\"]\n",
    ));
    // Bronze files far below the target: the first maintenance run compacts bronze, so its latest
    // commit is a maintenance commit that silver never reads (the case that broke).
    let mut cfg = (*lab.cfg).clone();
    cfg.target_file_size = 64 << 10;
    for t in &mut cfg.tables {
        t.target_file_size = 8 << 10;
    }
    lab.cfg = Arc::new(cfg);
    lab
}

/// One keyed event: (id, a, b, seq, deleted); `a`, `b` are the table's value columns.
type Event = (i64, i64, i64, i64, bool);

fn order(n: i64) -> Event {
    let id = (n * 7919) % 40;
    (id, id % 6, n % 97, n, n % 11 == 5)
}

fn account(n: i64) -> Event {
    let id = (n * 31) % 12;
    (id, 0, n * 10, n, n % 9 == 4)
}

fn event(n: i64) -> Event {
    ((n * 13) % 25, n % 7, 0, n, false)
}

fn line(table: &str, (id, a, b, seq, deleted): Event) -> String {
    match table {
        "orders" => format!(
            "{{\"id\":{id},\"customer\":{a},\"amount\":{b},\"seq\":{seq},\"deleted\":{deleted}}}\n"
        ),
        "customers" => format!("{{\"id\":{id},\"region\":{a},\"seq\":{seq}}}\n"),
        "accounts" => {
            format!("{{\"id\":{id},\"seq\":{seq},\"balance\":{b},\"deleted\":{deleted}}}\n")
        }
        _ => format!("{{\"id\":{id},\"v\":{a},\"seq\":{seq}}}\n"),
    }
}

/// Lands `events` as one object of `table` and ingests it into bronze.
async fn land(lab: &Lab, table: &str, name: &str, events: &[Event]) {
    let body: String = events.iter().map(|e| line(table, *e)).collect();
    let obj = lab.put(&format!("{table}/{name}.jsonl"), body.as_bytes());
    BronzeWriter::new(lab.cfg.clone())
        .unwrap()
        .ingest(lab.table(table), &[obj])
        .await
        .unwrap();
}

async fn silver_step(lab: &Lab, table: &str) {
    SilverWriter::new(lab.cfg.clone())
        .apply(lab.table(table))
        .await
        .unwrap();
}

async fn gold_step(lab: &Lab) {
    GoldWriter::new(lab.cfg.clone())
        .apply(&lab.cfg.gold[0], false)
        .await
        .unwrap();
}

/// Feeds `gen(from..to)` into `table`, `per` events an object, silver (and gold) after each.
async fn feed(lab: &Lab, table: &str, gen: fn(i64) -> Event, from: i64, to: i64, per: i64) {
    for start in (from..to).step_by(per as usize) {
        let events: Vec<Event> = (start..(start + per).min(to)).map(gen).collect();
        land(lab, table, &format!("{start:06}"), &events).await;
        silver_step(lab, table).await;
        gold_step(lab).await;
    }
}

/// Every table location of the lake, labelled.
fn locations(lab: &Lab) -> Vec<(String, Location)> {
    let cfg = &lab.cfg;
    let mut out = Vec::new();
    for t in TABLES {
        out.push((format!("bronze/{t}"), cfg.bronze_location(t)));
        out.push((format!("quarantine/{t}"), cfg.quarantine_location(t)));
        out.push((format!("silver/{t}"), cfg.silver_location(t)));
        out.push((format!("silver_tombstones/{t}"), cfg.tombstone_location(t)));
    }
    out.push(("gold/by_region".into(), cfg.gold_location("by_region")));
    out
}

/// Every row of every table, as text (a multiset per table): what maintenance must not change.
async fn dump(lab: &Lab) -> BTreeMap<String, Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = BTreeMap::new();
    for (label, location) in locations(lab) {
        let mut rows = Vec::new();
        for b in testkit::rows(&location).await {
            let columns: Vec<_> = b
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
                .collect();
            let names: Vec<_> = b
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            for i in 0..b.num_rows() {
                let mut cells: Vec<String> = names
                    .iter()
                    .zip(&columns)
                    .map(|(n, c)| format!("{n}={}", c.value(i)))
                    .collect();
                // Files may come back with columns in any order after a schema change.
                cells.sort();
                rows.push(cells.join(","));
            }
        }
        rows.sort();
        out.insert(label, rows);
    }
    out
}

/// Latest event per id by sequence, deletes absent: id → (a, b).
fn latest(events: &[Event]) -> BTreeMap<i64, (i64, i64)> {
    let mut last: BTreeMap<i64, Event> = BTreeMap::new();
    for e in events {
        if last.get(&e.0).is_none_or(|l| e.3 > l.3) {
            last.insert(e.0, *e);
        }
    }
    last.into_values()
        .filter(|e| !e.4)
        .map(|e| (e.0, (e.1, e.2)))
        .collect()
}

/// SCD2: per id, each non-delete event is a version valid until the id's next event.
fn history(events: &[Event]) -> BTreeSet<(i64, i64, Option<i64>, bool, i64)> {
    let mut by_id: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
    for e in events {
        by_id.entry(e.0).or_default().push(*e);
    }
    let mut out = BTreeSet::new();
    for (id, mut es) in by_id {
        es.sort_by_key(|e| e.3);
        for (i, e) in es.iter().enumerate() {
            if !e.4 {
                let next = es.get(i + 1).map(|n| n.3);
                out.insert((id, e.3, next, next.is_none(), e.2));
            }
        }
    }
    out
}

async fn silver_latest(
    lab: &Lab,
    table: &str,
    a: &str,
    b: Option<&str>,
) -> BTreeMap<i64, (i64, i64)> {
    let mut out = BTreeMap::new();
    for batch in testkit::rows(&lab.cfg.silver_location(table)).await {
        let (id, x) = (ints(&batch, "id"), ints(&batch, a));
        let y = b.map(|b| ints(&batch, b));
        for i in 0..batch.num_rows() {
            let v = (x[i].unwrap(), y.as_ref().map_or(0, |y| y[i].unwrap()));
            assert!(
                out.insert(id[i].unwrap(), v).is_none(),
                "{table}: duplicate id"
            );
        }
    }
    out
}

async fn silver_history(lab: &Lab) -> BTreeSet<(i64, i64, Option<i64>, bool, i64)> {
    let mut out = BTreeSet::new();
    for b in testkit::rows(&lab.cfg.silver_location("accounts")).await {
        let (id, from, to, bal) = (
            ints(&b, "id"),
            ints(&b, "valid_from"),
            ints(&b, "valid_to"),
            ints(&b, "balance"),
        );
        let current = bools(&b, "is_current");
        for i in 0..b.num_rows() {
            let row = (
                id[i].unwrap(),
                from[i].unwrap(),
                to[i],
                current[i].unwrap(),
                bal[i].unwrap(),
            );
            assert!(out.insert(row), "accounts: duplicate version {row:?}");
        }
    }
    out
}

async fn gold_rows(lab: &Lab) -> BTreeMap<i64, (i64, i64)> {
    let mut out = BTreeMap::new();
    for b in testkit::rows(&lab.cfg.gold_location("by_region")).await {
        let (r, n, s) = (ints(&b, "region"), ints(&b, "orders"), ints(&b, "revenue"));
        for i in 0..b.num_rows() {
            out.insert(r[i].unwrap(), (n[i].unwrap(), s[i].unwrap()));
        }
    }
    out
}

/// The lake against the oracles of everything fed so far.
async fn assert_oracles(lab: &Lab, fed: &Fed, when: &str) {
    let orders = latest(&fed.orders);
    let customers = latest(&fed.customers);
    assert_eq!(
        silver_latest(lab, "orders", "customer", Some("amount")).await,
        orders,
        "{when}: silver/orders"
    );
    assert_eq!(
        silver_latest(lab, "customers", "region", None).await,
        customers,
        "{when}: silver/customers"
    );
    assert_eq!(
        silver_history(lab).await,
        history(&fed.accounts),
        "{when}: silver/accounts"
    );
    assert_eq!(
        silver_latest(lab, "events", "v", None).await,
        latest(&fed.events_read),
        "{when}: silver/events"
    );
    let mut groups: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for (customer, amount) in orders.values() {
        if let Some((region, _)) = customers.get(customer) {
            let g = groups.entry(*region).or_default();
            g.0 += 1;
            g.1 += amount;
        }
    }
    assert_eq!(gold_rows(lab).await, groups, "{when}: gold/by_region");
}

/// The events fed so far (`events_read`: the ones silver has applied).
#[derive(Default)]
struct Fed {
    orders: Vec<Event>,
    customers: Vec<Event>,
    accounts: Vec<Event>,
    events_read: Vec<Event>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tables_stay_maintainable_and_readable_for_months() {
    let lab = lab();
    let mut fed = Fed::default();
    // Customers once, then never again; orders, accounts and events for a while.
    let customers: Vec<Event> = (0..6).map(|id| (id, id % 3, 0, id, false)).collect();
    land(&lab, "customers", "all", &customers).await;
    silver_step(&lab, "customers").await;
    fed.customers = customers;
    feed(&lab, "orders", order, 0, 120, 3).await;
    fed.orders = (0..120).map(order).collect();
    feed(&lab, "accounts", account, 0, 60, 4).await;
    fed.accounts = (0..60).map(account).collect();
    feed(&lab, "events", event, 0, 20, 4).await;
    fed.events_read = (0..20).map(event).collect();
    // `events`: bronze receives three more objects; its silver step stops running.
    for start in [20, 24, 28] {
        let events: Vec<Event> = (start..start + 4).map(event).collect();
        land(&lab, "events", &format!("{start:06}"), &events).await;
    }
    assert_oracles(&lab, &fed, "before maintenance").await;
    let before = dump(&lab).await;
    let events_bronze = lab.cfg.bronze_location("events");
    let pending_from = lake::txn_version(
        &lake::open(&lab.cfg.silver_location("events"))
            .await
            .unwrap()
            .unwrap(),
        &crate::silver::watermark_app_id("events"),
    )
    .await
    .unwrap()
    .unwrap()
        + 1;

    let start = Utc::now();
    for day in [0, 31, 62, 93] {
        let when = format!("maintenance on day {day}");
        let m = Maintainer::new(lab.cfg.clone()).at(start + chrono::Duration::days(day));
        let report = m.run(None).await.unwrap();
        assert_eq!(report.failed().count(), 0, "{when}: {report:#?}");
        if day == 0 {
            let compacted = report.tasks.iter().any(|t| {
                t.table == "bronze/orders" && t.task == "compact" && t.outcome == Outcome::Done
            });
            assert!(compacted, "premise: day 0 compacts bronze: {report:#?}");
        }
        // No row of any table changed, and every table still opens and reads.
        assert_eq!(dump(&lab).await, before, "{when}: rows changed");
        assert_oracles(&lab, &fed, &when).await;
        // Only maintenance commits since the watermarks: no lag; `events` still lags by its three
        // data commits, which its log still holds.
        let status = crate::status::status(&lab.cfg, start + chrono::Duration::days(day))
            .await
            .unwrap();
        for t in &status {
            for l in t
                .layers
                .iter()
                .flat_map(|l| l.lag.iter().map(move |g| (l, g)))
            {
                let (layer, lag) = l;
                let expect = if layer.table == "silver/events" { 3 } else { 0 };
                assert_eq!(
                    lag.versions_behind, expect,
                    "{when}: {} lag {lag:?}",
                    layer.table
                );
            }
        }
        let bronze = lake::open(&events_bronze).await.unwrap().unwrap();
        let kept = lake::retained(&bronze, &events_bronze).await.unwrap();
        assert!(
            kept.oldest_commit.is_some_and(|o| o <= pending_from),
            "{when}: bronze/events kept {kept:?}, silver still has to read from {pending_from}"
        );
        // No table location is a folder without a Delta log (quarantine tables never written).
        for (label, location) in locations(&lab) {
            let path = std::path::Path::new(location.url.path());
            assert!(
                !path.exists() || path.join("_delta_log").exists(),
                "{when}: {label} is a folder without a table"
            );
        }
    }

    // The log was cleaned (the premise of this test): old versions are gone, and asking for one
    // names the oldest readable version.
    let orders_bronze = lab.cfg.bronze_location("orders");
    let bronze = lake::open(&orders_bronze).await.unwrap().unwrap();
    let kept = lake::retained(&bronze, &orders_bronze).await.unwrap();
    let oldest = kept.oldest_loadable.unwrap();
    assert!(
        oldest > 1,
        "premise: bronze/orders' log was cleaned: {kept:?}"
    );
    let err = lake::open_version(&orders_bronze, 1).await.unwrap_err();
    assert!(
        matches!(err, Error::VersionCleaned { version: 1, oldest: o, .. } if o == oldest),
        "{err}"
    );
    assert!(err.to_string().contains("logRetentionDuration"), "{err}");
    lake::open_version(&orders_bronze, oldest).await.unwrap();
    let latest = bronze.version().unwrap() as i64;
    assert!(matches!(
        lake::open_version(&orders_bronze, latest + 1)
            .await
            .unwrap_err(),
        Error::VersionAhead { .. }
    ));
    let silver_loc = lab.cfg.silver_location("orders");
    let silver = lake::open(&silver_loc).await.unwrap().unwrap();
    let to = silver.version().unwrap() as i64;
    let err = lake::changes(&silver, &silver_loc, 0, to)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::VersionCleaned { version: 0, .. }),
        "change feed from 0: {err}"
    );

    // New data flows through every layer again; customers stays idle (one idle gold source).
    feed(&lab, "orders", order, 120, 160, 4).await;
    fed.orders.extend((120..160).map(order));
    feed(&lab, "accounts", account, 60, 80, 5).await;
    fed.accounts.extend((60..80).map(account));
    feed(&lab, "events", event, 32, 40, 4).await;
    fed.events_read.extend((20..40).map(event));
    assert_oracles(&lab, &fed, "new data after 93 idle days").await;
    // ... and maintenance goes on.
    let m = Maintainer::new(lab.cfg.clone()).at(start + chrono::Duration::days(124));
    let report = m.run(None).await.unwrap();
    assert_eq!(report.failed().count(), 0, "day 124: {report:#?}");
    assert_oracles(&lab, &fed, "maintenance on day 124").await;
}
