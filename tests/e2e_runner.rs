//! The whole flow on real local infrastructure with the local runner as a separate process:
//! JSON-lines orders (upserts, deletes, one malformed line), CSV customers, Parquet payments and a
//! Debezium stock feed are dropped into a LocalStack bucket over several rounds (one object uploaded
//! twice) → real S3 notifications → `lakehouse run` (bronze → silver → gold through real queues, lake on
//! MinIO), killed with SIGKILL mid-run and restarted, finally stopped with SIGTERM. Bronze, silver and
//! two gold views (one a join of two tables) must equal oracles computed here from the generated data.
//! Then `lakehouse backfill` over the same landing bucket into another lake must give the same tables
//! (batch equals stream), and a second backfill must change nothing. A poison message (an object that
//! does not exist) fails alone and reaches the DLQ while everything else, its own table included, flows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::*;
use lakehouse::deltalake_arrow::array::{Int64Array, RecordBatch};
use lakehouse::deltalake_arrow::datatypes::{DataType, Field, Schema};
use lakehouse::{lake, PipelineConfig};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const ROUNDS: usize = 6;

/// A row as text cells (null as `∅`), for comparing tables with oracles and with each other.
type Row = Vec<String>;

fn lakehouse_bin() -> PathBuf {
    workspace_bin("lakehouse")
}

/// The runner process; killed when dropped so a failing test leaves nothing behind.
struct Runner {
    child: Child,
    log: PathBuf,
}

impl Runner {
    fn start(config: &Path, log: &Path) -> Runner {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("runner log");
        let child = Command::new(lakehouse_bin())
            .args(["run", "--config"])
            .arg(config)
            .args(["--max-poll-seconds", "1"])
            .env("RUST_LOG", "warn,lakehouse=info")
            .stdout(Stdio::from(out.try_clone().expect("log")))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("start lakehouse run");
        Runner {
            child,
            log: log.to_path_buf(),
        }
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    /// SIGTERM, then the exit status within `timeout`.
    fn stop(mut self, timeout: Duration) -> std::process::ExitStatus {
        self.signal("-TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "runner did not stop within {timeout:?} of SIGTERM; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every row of a table as text, optionally without some columns (processing lineage that legitimately
/// differs between runs, such as ingestion time and bronze version).
async fn rows(loc: lakehouse::config::Location, skip: &[&str]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in lake::read_table(&loc).await.expect("scan") {
        let cols: Vec<_> = b
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| !skip.contains(&f.name().as_str()))
            .map(|(i, f)| {
                let c = lakehouse::deltalake_arrow::compute::cast(b.column(i), &DataType::Utf8)
                    .unwrap_or_else(|e| panic!("cast {}: {e}", f.name()));
                (f.name().clone(), c)
            })
            .collect();
        let mut names: Vec<_> = cols.iter().map(|(n, _)| n.clone()).collect();
        names.sort();
        for i in 0..b.num_rows() {
            let mut row: Vec<(String, String)> = cols
                .iter()
                .map(|(n, c)| {
                    use lakehouse::deltalake_arrow::array::{Array, AsArray};
                    let s = c.as_string::<i32>();
                    let v = if s.is_valid(i) {
                        s.value(i).to_string()
                    } else {
                        "∅".into()
                    };
                    (n.clone(), v)
                })
                .collect();
            row.sort();
            out.push(row.into_iter().map(|(_, v)| v).collect());
        }
    }
    out.sort();
    out
}

/// Selected columns of a table, as sorted rows (columns in the order given).
async fn project(loc: lakehouse::config::Location, cols: &[&str]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in lake::read_table(&loc).await.expect("scan") {
        let arrays: Vec<_> = cols
            .iter()
            .map(|c| {
                lakehouse::deltalake_arrow::compute::cast(
                    b.column_by_name(c)
                        .unwrap_or_else(|| panic!("no column {c}")),
                    &DataType::Utf8,
                )
                .expect("cast")
            })
            .collect();
        for i in 0..b.num_rows() {
            use lakehouse::deltalake_arrow::array::{Array, AsArray};
            out.push(
                arrays
                    .iter()
                    .map(|a| {
                        let s = a.as_string::<i32>();
                        if s.is_valid(i) {
                            s.value(i).to_string()
                        } else {
                            "∅".into()
                        }
                    })
                    .collect(),
            );
        }
    }
    out.sort();
    out
}

struct Order {
    id: i64,
    customer: i64,
    amount: i64,
    seq: i64,
    deleted: bool,
}

fn parquet(rows: &[(i64, i64, i64)]) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("payment_id", DataType::Int64, false),
        Field::new("order_id", DataType::Int64, false),
        Field::new("amount", DataType::Int64, true),
    ]));
    let col = |f: fn(&(i64, i64, i64)) -> i64| {
        Arc::new(Int64Array::from(rows.iter().map(f).collect::<Vec<_>>())) as _
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![col(|r| r.0), col(|r| r.1), col(|r| r.2)],
    )
    .expect("batch");
    let mut buf = Vec::new();
    let mut w = lakehouse::deltalake_parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None)
        .expect("parquet writer");
    w.write(&batch).expect("write parquet");
    w.close().expect("close parquet");
    buf
}

fn tables_toml(notify: &str) -> String {
    format!(
        r#"
{notify}
[[table]]
name = "orders"
format = "jsonl"
columns = ["order_id long not null", "customer_id long not null", "amount long", "seq long not null", "deleted boolean"]
keys = ["order_id"]
sequence_by = "seq"
delete_column = "deleted"
batch_size = 20
batch_window_seconds = 1

[[table]]
name = "customers"
format = "csv"
keys = ["customer_id"]
sequence_by = "version"
batch_window_seconds = 0.5

[[table]]
name = "payments"
format = "parquet"
columns = ["payment_id long not null", "order_id long not null", "amount long"]
keys = ["payment_id"]
batch_size = 5
batch_window_seconds = 2

[[table]]
name = "stock"
prefix = "cdc/stock/"
format = "jsonl"
cdc = "debezium"
keys = ["id"]
sequence_by = "source.lsn"
row_columns = ["id long not null", "sku string", "qty long"]
batch_size = 1
batch_window_seconds = 0

[[gold]]
name = "revenue_by_customer"
sql = "SELECT customer_id, COUNT(*) AS orders, SUM(amount) AS revenue FROM orders GROUP BY customer_id"
keys = ["customer_id"]
sources = ["orders"]

[[gold]]
name = "revenue_by_country"
sql = "SELECT c.country, COUNT(*) AS orders, SUM(o.amount) AS revenue FROM orders o JOIN customers c ON o.customer_id = c.customer_id GROUP BY c.country"
keys = ["country"]
sources = ["orders", "customers"]
batch_window_seconds = 1
"#
    )
}

fn queue_toml(layer: &str, url: &str) -> String {
    format!(
        "[notify.{layer}]\nqueue_url = \"{url}\"\nendpoint_url = \"{}\"\nregion = \"us-east-1\"\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\n",
        localstack_endpoint()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runner_streams_three_layers_exactly_once_and_backfill_matches() {
    let id = run_id("e2e");
    let landing = Landing::create(&id, 2, 10).await;
    let silver_q = landing.plain_queue(&format!("{id}-silver")).await;
    let gold_q = landing.plain_queue(&format!("{id}-gold")).await;
    for q in [&silver_q, &gold_q] {
        landing
            .sqs
            .set_queue_attributes()
            .queue_url(q)
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                "10",
            )
            .send()
            .await
            .expect("visibility timeout");
    }
    let bucket = lake_bucket().await;
    let stream_lake = format!("s3://{bucket}/{id}/stream");
    let batch_lake = format!("s3://{bucket}/{id}/batch");
    let notify = [
        queue_toml("bronze", &landing.queue_url),
        queue_toml("silver", &silver_q),
        queue_toml("gold", &gold_q),
    ]
    .join("\n");
    let dir = std::env::temp_dir().join(&id);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let stream_text = pipeline_toml(&landing.bucket, &stream_lake, &tables_toml(&notify));
    let batch_text = pipeline_toml(&landing.bucket, &batch_lake, &tables_toml(""));
    let (stream_path, batch_path) = (dir.join("stream.toml"), dir.join("batch.toml"));
    std::fs::write(&stream_path, &stream_text).expect("config");
    std::fs::write(&batch_path, &batch_text).expect("config");
    let stream = Arc::new(PipelineConfig::from_toml(&stream_text, "stream").expect("config"));
    let batch = Arc::new(PipelineConfig::from_toml(&batch_text, "batch").expect("config"));

    // ---- generated data and its oracles
    let mut rng = StdRng::seed_from_u64(2026);
    let mut seqs: Vec<i64> = (0..240).map(|i| i * 10).collect();
    seqs.shuffle(&mut rng); // orders arrive out of sequence order
    let mut live = BTreeSet::new();
    let orders: Vec<Order> = seqs
        .iter()
        .map(|&seq| {
            let id = rng.gen_range(0..60);
            let deleted = live.contains(&id) && rng.gen_bool(0.2);
            if deleted {
                live.remove(&id);
            } else {
                live.insert(id);
            }
            Order {
                id,
                customer: rng.gen_range(0..12),
                amount: rng.gen_range(1..500),
                seq,
                deleted,
            }
        })
        .collect();
    let stock: Vec<StockEvent> = (0..120)
        .map(|i| StockEvent {
            id: rng.gen_range(0..20),
            lsn: 1000 + i * 7,
            qty: rng.gen_range(0..100),
            delete: rng.gen_bool(0.2),
        })
        .collect();
    // Customers: everyone in round 0, some move country in later rounds (a new `version`).
    let countries = ["DE", "FR", "US", "BR"];
    let mut customer_rounds: Vec<Vec<(i64, String, i64)>> = vec![Vec::new(); ROUNDS];
    customer_rounds[0] = (0..12)
        .map(|c| (c, countries[(c % 4) as usize].to_string(), 1))
        .collect();
    for (r, round) in customer_rounds.iter_mut().enumerate().skip(1) {
        for c in 0..12 {
            if rng.gen_bool(0.2) {
                round.push((c, countries[rng.gen_range(0..4)].to_string(), 1 + r as i64));
            }
        }
    }
    let payments: Vec<(i64, i64, i64)> = (0..90)
        .map(|i| (i, rng.gen_range(0..60), rng.gen_range(1..300)))
        .collect();

    let latest_orders: BTreeMap<i64, &Order> = {
        let mut m: BTreeMap<i64, &Order> = BTreeMap::new();
        for o in &orders {
            if m.get(&o.id).is_none_or(|l| o.seq > l.seq) {
                m.insert(o.id, o);
            }
        }
        m.into_iter().filter(|(_, o)| !o.deleted).collect()
    };
    let latest_customers: BTreeMap<i64, (String, i64)> = {
        let mut m = BTreeMap::new();
        for round in &customer_rounds {
            for (c, country, v) in round {
                m.insert(*c, (country.clone(), *v));
            }
        }
        m
    };
    let latest_stock: BTreeMap<i64, &StockEvent> = {
        let mut m: BTreeMap<i64, &StockEvent> = BTreeMap::new();
        for e in &stock {
            if m.get(&e.id).is_none_or(|l| e.lsn > l.lsn) {
                m.insert(e.id, e);
            }
        }
        m.into_iter().filter(|(_, e)| !e.delete).collect()
    };
    let s = |v: i64| v.to_string();
    let mut expected: BTreeMap<&str, Vec<Row>> = BTreeMap::new();
    expected.insert(
        "silver.orders",
        latest_orders
            .values()
            .map(|o| vec![s(o.id), s(o.customer), s(o.amount), s(o.seq)])
            .collect(),
    );
    expected.insert(
        "silver.customers",
        latest_customers
            .iter()
            .map(|(c, (country, v))| vec![s(*c), country.clone(), s(*v)])
            .collect(),
    );
    expected.insert(
        "silver.payments",
        payments
            .iter()
            .map(|p| vec![s(p.0), s(p.1), s(p.2)])
            .collect(),
    );
    expected.insert(
        "silver.stock",
        latest_stock
            .values()
            .map(|e| vec![s(e.id), format!("sku-{}", e.id), s(e.qty)])
            .collect(),
    );
    let mut by_customer: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let mut by_country: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for o in latest_orders.values() {
        let g = by_customer.entry(o.customer).or_default();
        g.0 += 1;
        g.1 += o.amount;
        if let Some((country, _)) = latest_customers.get(&o.customer) {
            let g = by_country.entry(country.clone()).or_default();
            g.0 += 1;
            g.1 += o.amount;
        }
    }
    expected.insert(
        "gold.revenue_by_customer",
        by_customer
            .iter()
            .map(|(c, (n, r))| vec![s(*c), s(*n), s(*r)])
            .collect(),
    );
    expected.insert(
        "gold.revenue_by_country",
        by_country
            .iter()
            .map(|(c, (n, r))| vec![c.clone(), s(*n), s(*r)])
            .collect(),
    );
    for v in expected.values_mut() {
        v.sort();
    }
    let bronze_rows = [
        ("orders", orders.len()),
        (
            "customers",
            customer_rounds.iter().map(Vec::len).sum::<usize>(),
        ),
        ("payments", payments.len()),
        ("stock", stock.len()),
    ];

    // What each table and view holds now, in the oracle's shape.
    let snapshot = |config: Arc<PipelineConfig>| async move {
        let mut got: BTreeMap<&str, Vec<Row>> = BTreeMap::new();
        let c = &config;
        got.insert(
            "silver.orders",
            project(
                c.silver_location("orders"),
                &["order_id", "customer_id", "amount", "seq"],
            )
            .await,
        );
        got.insert(
            "silver.customers",
            project(
                c.silver_location("customers"),
                &["customer_id", "country", "version"],
            )
            .await,
        );
        got.insert(
            "silver.payments",
            project(
                c.silver_location("payments"),
                &["payment_id", "order_id", "amount"],
            )
            .await,
        );
        got.insert(
            "silver.stock",
            project(c.silver_location("stock"), &["id", "sku", "qty"]).await,
        );
        got.insert(
            "gold.revenue_by_customer",
            project(
                c.gold_location("revenue_by_customer"),
                &["customer_id", "orders", "revenue"],
            )
            .await,
        );
        got.insert(
            "gold.revenue_by_country",
            project(
                c.gold_location("revenue_by_country"),
                &["country", "orders", "revenue"],
            )
            .await,
        );
        got
    };

    // ---- stream: rounds of uploads while the runner runs; SIGKILL and restart in the middle
    let log = dir.join("runner.log");
    // Poison: a notification for an orders object that does not exist (storage cannot serve it).
    landing.send_missing_object("orders/ghost.jsonl").await;
    let mut runner = Some(Runner::start(&stream_path, &log));
    let per_round = |n: usize, r: usize| (n * r / ROUNDS, n * (r + 1) / ROUNDS);
    let mut first_orders_key = String::new();
    for (r, customers) in customer_rounds.iter().enumerate() {
        let (a, b) = per_round(orders.len(), r);
        let mut body: String = orders[a..b]
            .iter()
            .map(|o| {
                format!(
                    "{{\"order_id\":{},\"customer_id\":{},\"amount\":{},\"seq\":{},\"deleted\":{}}}\n",
                    o.id, o.customer, o.amount, o.seq, o.deleted
                )
            })
            .collect();
        if r == 1 {
            body.push_str("{\"order_id\": \"not a number\", \"customer_id\": 1, \"seq\": 1}\n");
        }
        let key = format!("orders/2026/11/25/orders-{r:02}.jsonl");
        if r == 0 {
            first_orders_key = key.clone();
        }
        landing.put(&key, body.into_bytes()).await;
        let mut csv = String::from("customer_id,name,country,version\n");
        for (c, country, v) in customers {
            csv.push_str(&format!("{c},Customer {c},{country},{v}\n"));
        }
        if customers.is_empty() {
            csv.push_str("0,Customer 0,DE,0\n"); // stale (version 0): never wins
        }
        landing
            .put(&format!("customers/customers-{r:02}.csv"), csv.into_bytes())
            .await;
        let (a, b) = per_round(payments.len(), r);
        landing
            .put(
                &format!("payments/payments-{r:02}.parquet"),
                parquet(&payments[a..b]),
            )
            .await;
        let (a, b) = per_round(stock.len(), r);
        let body: String = stock[a..b].iter().map(|e| e.debezium() + "\n").collect();
        landing
            .put(&format!("cdc/stock/stock-{r:02}.jsonl"), body.into_bytes())
            .await;
        if r == 2 {
            // At-least-once: the same object again (same bytes, same etag → a second notification).
            let again = landing
                .s3
                .get_object()
                .bucket(&landing.bucket)
                .key(&first_orders_key)
                .send()
                .await
                .expect("get")
                .body
                .collect()
                .await
                .expect("read")
                .into_bytes()
                .to_vec();
            landing.put(&first_orders_key, again).await;
            // Kill the runner mid-run (no chance to finish or release anything), then restart it.
            tokio::time::sleep(Duration::from_millis(700)).await;
            if let Some(old) = runner.take() {
                old.signal("-KILL");
            }
            runner = Some(Runner::start(&stream_path, &log));
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    // The customers round-0-only rows above include a stale row when a round had no change.
    let stale_rows = customer_rounds.iter().filter(|r| r.is_empty()).count();

    let deadline = Instant::now() + Duration::from_secs(180);
    let got = loop {
        let got = snapshot(stream.clone()).await;
        if got == expected || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let runner = runner.take().expect("runner");
    for (k, want) in &expected {
        assert_eq!(
            got.get(k),
            Some(want),
            "{k}: streamed table differs from the oracle; runner log tail:\n{}",
            runner.log_tail()
        );
    }
    // The poison message: received, failed twice, moved to the DLQ (maxReceiveCount 2, visibility 10 s).
    let in_dlq = landing
        .receive_matching(&landing.dlq_url, 1, Duration::from_secs(90), "ghost.jsonl")
        .await;
    assert!(!in_dlq.is_empty());
    let status = runner.stop(Duration::from_secs(30));
    assert!(status.success(), "runner exit after SIGTERM: {status:?}");

    // Bronze: every row of every object once (the re-uploaded object and redeliveries add nothing).
    for (t, n) in bronze_rows {
        let extra = if t == "customers" { stale_rows } else { 0 };
        assert_eq!(
            rows(stream.bronze_location(t), &[]).await.len(),
            n + extra,
            "bronze/{t}"
        );
    }
    let quarantined = rows(stream.quarantine_location("orders"), &[]).await;
    assert_eq!(
        quarantined.len(),
        1,
        "the malformed orders line: {quarantined:?}"
    );
    assert_eq!(
        python_row_count(&format!("{stream_lake}/gold/revenue_by_country")),
        expected["gold.revenue_by_country"].len(),
        "independent reader"
    );

    // ---- batch: backfill the same landing bucket into another lake
    let backfill = || {
        let out = Command::new(lakehouse_bin())
            .args(["backfill", "--config"])
            .arg(&batch_path)
            .args(["--chunk", "4"])
            .output()
            .expect("run lakehouse backfill");
        assert!(
            out.status.success(),
            "backfill failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let first = backfill();
    assert_eq!(
        snapshot(batch.clone()).await,
        expected,
        "backfill differs from the oracle:\n{first}"
    );
    // Row for row, lineage included, except how each run processed it (time, bronze version).
    for t in ["orders", "customers", "payments", "stock"] {
        assert_eq!(
            rows(batch.bronze_location(t), &["_ingested_at"]).await,
            rows(stream.bronze_location(t), &["_ingested_at"]).await,
            "bronze/{t}: batch != stream"
        );
        assert_eq!(
            rows(batch.silver_location(t), &["_bronze_version"]).await,
            rows(stream.silver_location(t), &["_bronze_version"]).await,
            "silver/{t}: batch != stream"
        );
    }
    for v in ["revenue_by_customer", "revenue_by_country"] {
        assert_eq!(
            rows(batch.gold_location(v), &[]).await,
            rows(stream.gold_location(v), &[]).await,
            "gold/{v}: batch != stream"
        );
    }
    let versions = |c: Arc<PipelineConfig>| async move {
        let mut v = Vec::new();
        for t in ["orders", "customers", "payments", "stock"] {
            v.push(lake::version(&c.bronze_location(t)).await.expect("version"));
            v.push(lake::version(&c.silver_location(t)).await.expect("version"));
        }
        for g in ["revenue_by_customer", "revenue_by_country"] {
            v.push(lake::version(&c.gold_location(g)).await.expect("version"));
        }
        v
    };
    let before = versions(batch.clone()).await;
    let second = backfill();
    assert!(
        second.contains(" 0 ingested"),
        "a second backfill ingests nothing: {second}"
    );
    assert_eq!(
        versions(batch.clone()).await,
        before,
        "a second backfill commits nothing"
    );
}
