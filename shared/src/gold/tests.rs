//! Gold against an independent oracle: random order streams (inserts, updates that move an order to
//! another customer, deletes) flow file by file through bronze and silver; gold steps run in
//! between (some racing). The view must equal a per-customer count and sum computed here from the
//! latest event per order, and so must a full recompute.

use super::*;
use crate::bronze::BronzeWriter;
use crate::silver::SilverWriter;
use crate::testkit::{self, ints, Lab};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

struct Event {
    order: i64,
    customer: i64,
    amount: i64,
    seq: i64,
    deleted: bool,
}

/// `orders` (with a delete flag) and two identical views over it: one kept incrementally, one
/// recomputed in full.
fn lab() -> Lab {
    let view = |name: &str| {
        format!(
            "[[gold]]\nname = \"{name}\"\nsql = \"SELECT customer, COUNT(*) AS orders, SUM(amount) AS revenue FROM orders GROUP BY customer\"\nkeys = [\"customer\"]\nsources = [\"orders\"]\n"
        )
    };
    Lab::with_table(
        "orders",
        &format!(
            "format = \"jsonl\"\nkeys = [\"order_id\"]\nsequence_by = \"seq\"\ndelete_column = \"deleted\"\ncolumns = [\"order_id long not null\", \"customer long not null\", \"amount long\", \"seq long not null\", \"deleted boolean\"]\n{}{}",
            view("revenue"),
            view("revenue_full"),
        ),
    )
}

/// `n` events over order ids `0..orders`, each made by `make(rng, order, seq, deleted)`: only live
/// orders are deleted (with probability `p_delete`), sequence numbers mostly increase and are
/// sometimes late (out of order across files).
fn order_stream<T>(
    rng: &mut StdRng,
    n: i64,
    orders: i64,
    p_delete: f64,
    mut make: impl FnMut(&mut StdRng, i64, i64, bool) -> T,
) -> Vec<T> {
    let mut live = std::collections::BTreeSet::new();
    (0..n)
        .map(|i| {
            let order = rng.gen_range(0..orders);
            let deleted = live.contains(&order) && rng.gen_bool(p_delete);
            if deleted {
                live.remove(&order);
            } else {
                live.insert(order);
            }
            let seq = i * 10 - if rng.gen_bool(0.1) { 55 } else { 0 };
            make(rng, order, seq, deleted)
        })
        .collect()
}

/// customer → (orders, revenue) from the latest event per order.
fn oracle(events: &[Event]) -> BTreeMap<i64, (i64, i64)> {
    let mut latest: BTreeMap<i64, &Event> = BTreeMap::new();
    for e in events {
        if latest.get(&e.order).is_none_or(|l| e.seq > l.seq) {
            latest.insert(e.order, e);
        }
    }
    let mut out: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for e in latest.values().filter(|e| !e.deleted) {
        let g = out.entry(e.customer).or_default();
        g.0 += 1;
        g.1 += e.amount;
    }
    out
}

async fn gold_rows(cfg: &PipelineConfig, view: &str) -> BTreeMap<i64, (i64, i64)> {
    let mut out = BTreeMap::new();
    for b in testkit::rows(&cfg.gold_location(view)).await {
        let (c, o, r) = (
            ints(&b, "customer"),
            ints(&b, "orders"),
            ints(&b, "revenue"),
        );
        for i in 0..b.num_rows() {
            let c = c[i].unwrap();
            assert!(
                out.insert(c, (o[i].unwrap(), r[i].unwrap())).is_none(),
                "duplicate group {c}"
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_gold_equals_the_oracle_and_a_full_recompute() {
    for seed in [7u64, 8] {
        let lab = lab();
        let cfg = &lab.cfg;
        let table = lab.table("orders");
        let mut rng = StdRng::seed_from_u64(seed);
        let events = order_stream(&mut rng, 300, 25, 0.4, |rng, order, seq, deleted| Event {
            order,
            customer: rng.gen_range(0..12),
            amount: rng.gen_range(1..100),
            seq,
            deleted,
        });
        let bronze = BronzeWriter::new(cfg.clone()).unwrap();
        let silver = SilverWriter::new(cfg.clone());
        let gold = GoldWriter::new(cfg.clone());
        let view = cfg.view("revenue").unwrap();
        let (mut incremental_steps, mut start, mut n) = (0, 0, 0);
        while start < events.len() {
            let end = (start + rng.gen_range(1..30)).min(events.len());
            let body: String = events[start..end]
                .iter()
                .map(|e| {
                    format!(
                        "{{\"order_id\":{},\"customer\":{},\"amount\":{},\"seq\":{},\"deleted\":{}}}\n",
                        e.order, e.customer, e.amount, e.seq, e.deleted
                    )
                })
                .collect();
            let obj = lab.put(&format!("orders/f{n:03}.jsonl"), body.as_bytes());
            bronze.ingest(table, &[obj]).await.unwrap();
            silver.apply(table).await.unwrap();
            let steps = match n % 4 {
                0 => 2, // two racing gold steps
                3 => 0, // gold lags: the next step catches up several silver versions
                _ => 1,
            };
            let results =
                futures::future::join_all((0..steps).map(|_| gold.apply(view, false))).await;
            for r in results {
                let c = r.unwrap();
                if c.version.is_some() && !c.full {
                    incremental_steps += 1;
                    assert!(c.groups_touched <= 12, "{c:?}");
                }
            }
            start = end;
            n += 1;
        }
        gold.apply(view, false).await.unwrap();
        let again = gold.apply(view, false).await.unwrap();
        assert!(again.version.is_none(), "nothing new: {again:?}");
        assert!(
            incremental_steps > 5,
            "steps were incremental: {incremental_steps}"
        );
        let expected = oracle(&events);
        assert_eq!(
            gold_rows(cfg, "revenue").await,
            expected,
            "seed {seed}: incremental"
        );
        let full = gold
            .apply(cfg.view("revenue_full").unwrap(), true)
            .await
            .unwrap();
        assert!(full.full);
        assert_eq!(
            gold_rows(cfg, "revenue_full").await,
            expected,
            "seed {seed}: full"
        );
    }
}

#[tokio::test]
async fn a_view_with_no_group_is_an_empty_table_not_a_failing_step() {
    let lab = lab();
    lab.ingest(
        "orders",
        "a.jsonl",
        "{\"order_id\": 1, \"customer\": 7, \"amount\": 5, \"seq\": 1}\n{\"order_id\": 1, \"customer\": 7, \"amount\": 5, \"seq\": 2, \"deleted\": true}\n",
    )
    .await;
    SilverWriter::new(lab.cfg.clone())
        .apply(lab.table("orders"))
        .await
        .unwrap();
    let gold = GoldWriter::new(lab.cfg.clone());
    for full in [false, false, true] {
        let view = lab.cfg.view("revenue").unwrap();
        gold.apply(view, full).await.unwrap();
        assert!(gold_rows(&lab.cfg, "revenue").await.is_empty());
    }
}

/// One order event of the aggregate test: `amount` may be null, `cents` is a decimal price.
struct Sale {
    order: i64,
    customer: i64,
    amount: Option<i64>,
    cents: i64,
    seq: i64,
    deleted: bool,
}

const STATS_SQL: &str = "SELECT customer, COUNT(*) AS n, COUNT(amount) AS with_amount, SUM(amount) AS total, MIN(amount) AS lo, MAX(amount) AS hi, SUM(price) AS value FROM orders WHERE amount IS NULL OR amount < 90 GROUP BY customer";
const PEAKS_SQL: &str =
    "SELECT customer, SUM(amount) AS total, MAX(amount) AS hi FROM orders GROUP BY customer";

/// The view's rows from the latest event per order, computed here: customer → column texts.
fn sales_oracle(sales: &[Sale], stats: bool) -> BTreeMap<String, Vec<Option<String>>> {
    let mut latest: BTreeMap<i64, &Sale> = BTreeMap::new();
    for s in sales {
        if latest.get(&s.order).is_none_or(|l| s.seq > l.seq) {
            latest.insert(s.order, s);
        }
    }
    let mut groups: BTreeMap<i64, Vec<&Sale>> = BTreeMap::new();
    for s in latest.values().filter(|s| !s.deleted) {
        if !stats || s.amount.is_none_or(|a| a < 90) {
            groups.entry(s.customer).or_default().push(s);
        }
    }
    let text = |v: Option<i64>| v.map(|v| v.to_string());
    groups
        .into_iter()
        .map(|(c, rows)| {
            let amounts: Vec<i64> = rows.iter().filter_map(|s| s.amount).collect();
            let total = (!amounts.is_empty()).then(|| amounts.iter().sum());
            let hi = amounts.iter().max().copied();
            let cols = if stats {
                let cents: i64 = rows.iter().map(|s| s.cents).sum();
                vec![
                    text(Some(rows.len() as i64)),
                    text(Some(amounts.len() as i64)),
                    text(total),
                    text(amounts.iter().min().copied()),
                    text(hi),
                    Some(format!("{}.{:02}", cents / 100, cents % 100)),
                ]
            } else {
                vec![text(total), text(hi)]
            };
            (c.to_string(), cols)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gold_by_deltas_equals_the_oracle_for_every_aggregate() {
    let view = |name: &str, sql: &str| {
        format!("[[gold]]\nname = \"{name}\"\nsql = \"{sql}\"\nkeys = [\"customer\"]\nsources = [\"orders\"]\n")
    };
    for seed in [11u64, 12, 13] {
        let lab = Lab::with_table(
            "orders",
            &format!(
                "format = \"jsonl\"\nkeys = [\"order_id\"]\nsequence_by = \"seq\"\ndelete_column = \"deleted\"\ncolumns = [\"order_id long not null\", \"customer long not null\", \"amount long\", \"price decimal(10,2)\", \"seq long not null\", \"deleted boolean\"]\n{}{}{}{}",
                view("stats", STATS_SQL),
                view("stats_full", STATS_SQL),
                view("peaks", PEAKS_SQL),
                view("mean", "SELECT customer, AVG(amount) AS mean FROM orders GROUP BY customer"),
            ),
        );
        let cfg = &lab.cfg;
        let table = lab.table("orders");
        let mut rng = StdRng::seed_from_u64(seed);
        let sales = order_stream(&mut rng, 400, 30, 0.3, |rng, order, seq, deleted| Sale {
            order,
            customer: rng.gen_range(0..8),
            amount: rng.gen_bool(0.8).then(|| rng.gen_range(1..100)),
            cents: rng.gen_range(1..10_000),
            seq,
            deleted,
        });
        let bronze = BronzeWriter::new(cfg.clone()).unwrap();
        let silver = SilverWriter::new(cfg.clone());
        let gold = GoldWriter::new(cfg.clone());
        let (stats, peaks, mean) = (
            cfg.view("stats").unwrap(),
            cfg.view("peaks").unwrap(),
            cfg.view("mean").unwrap(),
        );
        let (mut by_deltas, mut recomputed) = (0, 0);
        let (mut start, mut n) = (0, 0);
        while start < sales.len() {
            let end = (start + rng.gen_range(1..30)).min(sales.len());
            let body: String = sales[start..end]
                .iter()
                .map(|s| {
                    format!(
                        "{{\"order_id\":{},\"customer\":{},\"amount\":{},\"price\":{}.{:02},\"seq\":{},\"deleted\":{}}}\n",
                        s.order,
                        s.customer,
                        s.amount.map_or("null".to_string(), |a| a.to_string()),
                        s.cents / 100,
                        s.cents % 100,
                        s.seq,
                        s.deleted
                    )
                })
                .collect();
            let obj = lab.put(&format!("orders/f{n:03}.jsonl"), body.as_bytes());
            bronze.ingest(table, &[obj]).await.unwrap();
            silver.apply(table).await.unwrap();
            if n % 3 != 2 {
                // Two racing steps on `stats` now and then; `peaks` and `mean` sometimes lag.
                let racing = if n % 4 == 0 { 2 } else { 1 };
                let results =
                    futures::future::join_all((0..racing).map(|_| gold.apply(stats, false))).await;
                for r in results {
                    let c = r.unwrap();
                    assert!(!c.full || n == 0, "{c:?}");
                    by_deltas += c.by_deltas;
                    recomputed += c.groups_touched - c.by_deltas;
                }
            }
            if n % 2 == 0 {
                gold.apply(peaks, false).await.unwrap();
                let m = gold.apply(mean, false).await.unwrap();
                assert_eq!(m.by_deltas, 0, "AVG is not kept by deltas: {m:?}");
            }
            start = end;
            n += 1;
        }
        for v in [stats, peaks] {
            gold.apply(v, false).await.unwrap();
        }
        assert!(by_deltas > 20, "seed {seed}: groups by deltas {by_deltas}");
        assert!(recomputed > 0, "seed {seed}: a removed extreme recomputes");
        let cols = ["n", "with_amount", "total", "lo", "hi", "value"];
        let expected = sales_oracle(&sales, true);
        assert_eq!(
            testkit::rows_as_text(&cfg.gold_location("stats"), &cols, "customer").await,
            expected,
            "seed {seed}: stats by deltas"
        );
        gold.apply(cfg.view("stats_full").unwrap(), true)
            .await
            .unwrap();
        assert_eq!(
            testkit::rows_as_text(&cfg.gold_location("stats_full"), &cols, "customer").await,
            expected,
            "seed {seed}: stats recomputed"
        );
        assert_eq!(
            testkit::rows_as_text(&cfg.gold_location("peaks"), &["total", "hi"], "customer").await,
            sales_oracle(&sales, false),
            "seed {seed}: peaks by deltas"
        );
    }
}
