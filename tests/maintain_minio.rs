//! Maintenance on real S3 semantics (MinIO): 170 small commits, then maintenance racing a silver
//! step; bronze, silver and gold read by Python `deltalake` (an independent reader) return the rows an
//! oracle computed here says, before and after, time travel to before maintenance still works, and a
//! second run weeks later (log cleanup, vacuum) changes no row either.

use std::collections::BTreeMap;
use std::sync::Arc;

use integration_tests::*;
use lakehouse::bronze::BronzeWriter;
use lakehouse::gold::GoldWriter;
use lakehouse::maintain::Maintainer;
use lakehouse::silver::SilverWriter;
use lakehouse::{lake, PipelineConfig};
use serde_json::{json, Value};

/// Event `n`: (id, customer, amount, seq, deleted) over 30 ids.
fn event(n: i64) -> (i64, i64, i64, i64, bool) {
    let id = (n * 7919) % 30;
    (id, id % 4, n % 89, n, n % 13 == 6)
}

/// silver rows [id, customer, amount] and gold rows [customer, orders, revenue] the events must give.
fn oracle(upto: i64) -> (Vec<Vec<Value>>, Vec<Vec<Value>>) {
    let mut latest: BTreeMap<i64, (i64, i64, i64, i64, bool)> = BTreeMap::new();
    for e in (0..upto).map(event) {
        if latest.get(&e.0).is_none_or(|l| e.3 > l.3) {
            latest.insert(e.0, e);
        }
    }
    let live: Vec<_> = latest.values().filter(|e| !e.4).collect();
    let mut groups: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for e in &live {
        let g = groups.entry(e.1).or_default();
        g.0 += 1;
        g.1 += e.2;
    }
    let sort = |mut v: Vec<Vec<Value>>| {
        v.sort_by_key(|r| serde_json::to_string(r).unwrap_or_default());
        v
    };
    (
        sort(
            live.iter()
                .map(|e| vec![json!(e.0), json!(e.1), json!(e.2)])
                .collect(),
        ),
        sort(
            groups
                .into_iter()
                .map(|(c, (n, s))| vec![json!(c), json!(n), json!(s)])
                .collect(),
        ),
    )
}

struct Pipeline {
    config: Arc<PipelineConfig>,
    landing: std::path::PathBuf,
    lake: String,
}

impl Pipeline {
    /// Feeds events `from..to`, `per` per object; silver and gold every `every` objects and at the end.
    async fn feed(&self, from: i64, to: i64, per: i64, every: usize) {
        let table = self.config.table("orders").expect("table");
        let bronze = BronzeWriter::new(self.config.clone()).expect("bronze");
        let silver = SilverWriter::new(self.config.clone());
        let gold = GoldWriter::new(self.config.clone());
        for (k, start) in (from..to).step_by(per as usize).enumerate() {
            let object = self.put(start, (start + per).min(to));
            let out = bronze.ingest(table, &[object]).await.expect("ingest");
            assert_eq!(out.failed().count(), 0, "{out:?}");
            if (k + 1) % every == 0 {
                silver.apply(table).await.expect("silver");
                gold.apply(&self.config.gold[0], false).await.expect("gold");
            }
        }
        silver.apply(table).await.expect("silver");
        gold.apply(&self.config.gold[0], false).await.expect("gold");
    }

    /// Events `from..to` as one landing object, named as an event would name it.
    fn put(&self, from: i64, to: i64) -> lakehouse::events::SourceObject {
        let body: String = (from..to)
            .map(event)
            .map(|(id, c, a, s, d)| {
                format!(
                    "{{\"id\":{id},\"customer\":{c},\"amount\":{a},\"seq\":{s},\"deleted\":{d}}}\n"
                )
            })
            .collect();
        let path = self.landing.join(format!("orders/e-{from:06}.jsonl"));
        std::fs::write(&path, body).expect("write landing object");
        lakehouse::events::SourceObject {
            bucket: String::new(),
            key: path.to_string_lossy().trim_start_matches('/').to_string(),
            etag: None,
            version_id: None,
            removed_at: None,
        }
    }

    fn uri(&self, layer: &str, name: &str) -> String {
        format!("{}/{layer}/{name}", self.lake)
    }

    /// What Python deltalake reads: bronze row count, silver rows, gold rows.
    fn python_view(&self) -> (usize, Vec<Vec<Value>>, Vec<Vec<Value>>) {
        (
            python_row_count(&self.uri("bronze", "orders")),
            python_rows(
                &self.uri("silver", "orders"),
                &["id", "customer", "amount"],
                None,
            ),
            python_rows(
                &self.uri("gold", "by_customer"),
                &["customer", "orders", "revenue"],
                None,
            ),
        )
    }

    fn assert_oracle(&self, upto: i64, when: &str) {
        let (bronze, silver, gold) = self.python_view();
        let (want_silver, want_gold) = oracle(upto);
        assert_eq!(bronze, upto as usize, "{when}: bronze rows (python)");
        assert_eq!(
            silver, want_silver,
            "{when}: silver (python) differs from the oracle"
        );
        assert_eq!(
            gold, want_gold,
            "{when}: gold (python) differs from the oracle"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn maintenance_on_minio_changes_no_row_any_reader_sees() {
    lakehouse::telemetry::init(lakehouse::telemetry::FUNCTION_DEFAULT);
    let id = run_id("maintain");
    let lake = format!("s3://{}/{id}", lake_bucket().await);
    let landing = std::env::temp_dir().join(&id).join("landing");
    std::fs::create_dir_all(landing.join("orders")).expect("landing dir");
    let text = format!(
        r#"
target_file_size_mb = 0.0625
[landing]
uri = "file://{landing}"
{lake}

[[table]]
name = "orders"
format = "jsonl"
keys = ["id"]
sequence_by = "seq"
delete_column = "deleted"
tombstone_retention_days = 7
target_file_size_mb = 0.008
columns = ["id long not null", "customer long not null", "amount long", "seq long not null", "deleted boolean"]

[[gold]]
name = "by_customer"
sql = "SELECT customer, COUNT(*) AS orders, SUM(amount) AS revenue FROM orders GROUP BY customer"
keys = ["customer"]
sources = ["orders"]
"#,
        landing = landing.display(),
        lake = minio_lake_toml(&lake),
    );
    let config = Arc::new(PipelineConfig::from_toml(&text, "test").expect("config"));
    let p = Pipeline {
        config: config.clone(),
        landing,
        lake,
    };
    // 150 small bronze commits, silver and gold every 10 (the unit tests take 320 through it locally).
    p.feed(0, 300, 2, 10).await;
    p.assert_oracle(300, "before maintenance");
    let bronze_loc = config.bronze_location("orders");
    let before = lake::open(&bronze_loc)
        .await
        .expect("open")
        .expect("bronze");
    let (bronze_version, bronze_files) = (
        before.version().expect("version") as i64,
        before.snapshot().expect("snapshot").log_data().num_files(),
    );
    assert!(bronze_files >= 150, "{bronze_files} bronze files");

    // 20 more objects, then maintenance racing the silver step that applies them.
    p.feed(300, 340, 2, 1000).await;
    let bronze = BronzeWriter::new(config.clone()).expect("bronze");
    for start in (340..380).step_by(4) {
        bronze
            .ingest(
                config.table("orders").expect("table"),
                &[p.put(start, start + 4)],
            )
            .await
            .expect("ingest");
    }
    let maintainer = Maintainer::new(config.clone());
    let silver = SilverWriter::new(config.clone());
    let (report, step) = tokio::join!(
        maintainer.run(None),
        silver.apply(config.table("orders").expect("table"))
    );
    let report = report.expect("maintain");
    step.expect("silver step racing maintenance");
    assert_eq!(report.failed().count(), 0, "{report:#?}");
    GoldWriter::new(config.clone())
        .apply(&config.gold[0], false)
        .await
        .expect("gold");
    // A second run compacts whatever the race left.
    let again = maintainer.run(None).await.expect("maintain");
    assert_eq!(again.failed().count(), 0, "{again:#?}");
    p.assert_oracle(380, "after maintenance (raced by a silver step)");
    let after = lake::open(&bronze_loc)
        .await
        .expect("open")
        .expect("bronze");
    let files_now = after.snapshot().expect("snapshot").log_data().num_files();
    assert!(
        files_now * 10 < bronze_files,
        "bronze compacted: {files_now} files from {bronze_files}"
    );
    // Time travel to before maintenance, through the Python reader.
    assert_eq!(
        python_rows(&p.uri("bronze", "orders"), &["seq"], Some(bronze_version)).len(),
        300,
        "bronze as of version {bronze_version}"
    );

    // Forty days later: log cleanup and vacuum; every reader still sees the same rows.
    let later = Maintainer::new(config.clone()).at(chrono::Utc::now() + chrono::Duration::days(40));
    let report = later.run(None).await.expect("maintain later");
    assert_eq!(report.failed().count(), 0, "{report:#?}");
    let deleted = |task: &str| {
        report
            .tasks
            .iter()
            .filter(|t| t.task == task)
            .map(|t| t.deleted)
            .sum::<usize>()
    };
    assert!(
        deleted("clean_log") > 150,
        "log entries deleted: {}",
        deleted("clean_log")
    );
    assert!(
        deleted("vacuum") >= bronze_files,
        "files vacuumed: {}",
        deleted("vacuum")
    );
    p.assert_oracle(380, "after log cleanup and vacuum");
    p.feed(380, 420, 4, 3).await;
    p.assert_oracle(420, "steps after maintenance");
}
