//! Helpers for the integration tests: clients for LocalStack (landing S3 + SQS) and MinIO (lake), isolated
//! per-test buckets and queues with real S3 → SQS notifications, and an independent Delta reader
//! (Python `deltalake`). Nothing here is skipped: a missing service is a test failure with the reason.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{json, Value};

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

pub fn localstack_endpoint() -> String {
    env_or("LOCALSTACK_ENDPOINT", "http://127.0.0.1:4566")
}
pub fn minio_endpoint() -> String {
    env_or("MINIO_ENDPOINT", "http://127.0.0.1:9000")
}
pub fn minio_user() -> String {
    env_or("MINIO_ROOT_USER", "lakehouse")
}
pub fn minio_password() -> String {
    env_or("MINIO_ROOT_PASSWORD", "lakehouse-secret")
}

/// A short unique id for bucket, queue and prefix names.
pub fn run_id(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{tag}-{:x}-{:x}", nanos % 0xffff_ffff, std::process::id())
}

/// Panics with a clear reason when a service is not answering (tests never skip).
pub async fn require_service(name: &str, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let host = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        if tokio::net::TcpStream::connect(&host).await.is_ok() {
            return;
        }
        if Instant::now() > deadline {
            panic!("{name} is not reachable at {url}: start it with `infra/local/up.sh` (make test does this)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An SQS client for LocalStack (after checking it answers).
pub async fn localstack_sqs() -> aws_sdk_sqs::Client {
    require_service("LocalStack", &localstack_endpoint()).await;
    aws_sdk_sqs::Client::new(&sdk_config(&localstack_endpoint(), "test", "test").await)
}

async fn sdk_config(endpoint: &str, key: &str, secret: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(key, secret, None, None, "tests"))
        .load()
        .await
}

pub async fn s3_client(endpoint: &str, key: &str, secret: &str) -> aws_sdk_s3::Client {
    let conf = sdk_config(endpoint, key, secret).await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    )
}

/// Isolated landing infrastructure in LocalStack: bucket, queue with DLQ + redrive, notification.
pub struct Landing {
    pub bucket: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub queue_arn: String,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl Landing {
    pub async fn create(id: &str, max_receive_count: u32, visibility_timeout_s: u32) -> Landing {
        require_service("LocalStack", &localstack_endpoint()).await;
        let conf = sdk_config(&localstack_endpoint(), "test", "test").await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(true)
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::new(&conf);
        let bucket = format!("landing-{id}");
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create landing bucket in LocalStack");
        let dlq_url = sqs
            .create_queue()
            .queue_name(format!("{id}-dlq"))
            .send()
            .await
            .expect("create DLQ")
            .queue_url
            .unwrap_or_default();
        let dlq_arn = queue_arn(&sqs, &dlq_url).await;
        let queue_url = sqs
            .create_queue()
            .queue_name(format!("{id}-bronze"))
            .attributes(QueueAttributeName::VisibilityTimeout, visibility_timeout_s.to_string())
            .attributes(
                QueueAttributeName::RedrivePolicy,
                json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count.to_string()}).to_string(),
            )
            .send()
            .await
            .expect("create queue")
            .queue_url
            .unwrap_or_default();
        let arn = queue_arn(&sqs, &queue_url).await;
        let notification = aws_sdk_s3::types::NotificationConfiguration::builder()
            .queue_configurations(
                aws_sdk_s3::types::QueueConfiguration::builder()
                    .id("bronze")
                    .queue_arn(&arn)
                    .events(aws_sdk_s3::types::Event::from("s3:ObjectCreated:*"))
                    .build()
                    .expect("queue configuration"),
            )
            .build();
        s3.put_bucket_notification_configuration()
            .bucket(&bucket)
            .notification_configuration(notification)
            .send()
            .await
            .expect("put bucket notification");
        Landing {
            bucket,
            queue_url,
            dlq_url,
            queue_arn: arn,
            s3,
            sqs,
        }
    }

    /// A plain queue (for a downstream layer) in the same LocalStack; returns its URL.
    pub async fn plain_queue(&self, name: &str) -> String {
        self.sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("create queue")
            .queue_url
            .unwrap_or_default()
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(bytes.into())
            .send()
            .await
            .expect("upload to LocalStack");
    }

    /// Receives raw SQS messages until `want` object-created messages arrived (test events are kept too).
    pub async fn receive(
        &self,
        queue_url: &str,
        want: usize,
        timeout: Duration,
    ) -> Vec<aws_sdk_sqs::types::Message> {
        self.receive_matching(queue_url, want, timeout, "\"Records\"")
            .await
    }

    /// Receives raw SQS messages until `want` of them contain `marker`.
    pub async fn receive_matching(
        &self,
        queue_url: &str,
        want: usize,
        timeout: Duration,
        marker: &str,
    ) -> Vec<aws_sdk_sqs::types::Message> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        let mut objects = 0;
        while objects < want {
            assert!(
                Instant::now() < deadline,
                "only {objects} of {want} messages with {marker} arrived on {queue_url} in {timeout:?}"
            );
            let out = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .expect("receive from LocalStack SQS");
            for m in out.messages.unwrap_or_default() {
                if m.body().is_some_and(|b| b.contains(marker)) {
                    objects += 1;
                }
                got.push(m);
            }
        }
        got
    }

    /// Sends the bronze queue an S3 notification for `key`, an object that does not exist: storage
    /// cannot serve it, so its message must fail, be retried and reach the DLQ.
    pub async fn send_missing_object(&self, key: &str) {
        let ghost = serde_json::json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": self.bucket}, "object": {"key": key, "eTag": "0"}}}]});
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(ghost.to_string())
            .send()
            .await
            .expect("send a notification of a missing object");
    }

    pub async fn delete(&self, queue_url: &str, messages: &[aws_sdk_sqs::types::Message]) {
        for m in messages {
            if let Some(h) = m.receipt_handle() {
                let _ = self
                    .sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(h)
                    .send()
                    .await;
            }
        }
    }

    /// The Lambda SQS event for `messages`, shaped as the event source mapping delivers it.
    pub fn lambda_event(&self, messages: &[aws_sdk_sqs::types::Message]) -> Value {
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let attrs: HashMap<String, String> = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": attrs,
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": "us-east-1"
                })
            })
            .collect();
        json!({ "Records": records })
    }
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("get queue arn")
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default()
}

/// The lake bucket on MinIO (created if missing) and a per-test prefix in it.
/// A binary of the workspace build the running test belongs to (target/<profile>/deps/<test>-<hash> →
/// target/<profile>/<name>), built by `cargo build --workspace --bins` as `make test` does.
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(|d| d.join(name))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build --workspace --bins`, as make test does)",
        bin.display()
    );
    bin
}

pub async fn lake_bucket() -> String {
    require_service("MinIO", &minio_endpoint()).await;
    let s3 = s3_client(&minio_endpoint(), &minio_user(), &minio_password()).await;
    let bucket = env_or("LAKE_BUCKET", "lake");
    if s3.head_bucket().bucket(&bucket).send().await.is_err() {
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create lake bucket in MinIO");
    }
    bucket
}

/// Pipeline TOML: landing in LocalStack, lake in MinIO, with `tables` appended verbatim.
pub fn pipeline_toml(landing_bucket: &str, lake_uri: &str, tables: &str) -> String {
    format!(
        r#"
[landing]
uri = "s3://{landing_bucket}"
[landing.storage]
aws_endpoint_url = "{ls}"
aws_access_key_id = "test"
aws_secret_access_key = "test"
aws_region = "us-east-1"
aws_allow_http = "true"

{lake}
{tables}
"#,
        ls = localstack_endpoint(),
        lake = minio_lake_toml(lake_uri),
    )
}

/// The `[lake]` section of a pipeline file for a lake at `lake_uri` on MinIO.
pub fn minio_lake_toml(lake_uri: &str) -> String {
    format!(
        r#"[lake]
uri = "{lake_uri}"
[lake.storage]
aws_endpoint_url = "{minio}"
aws_access_key_id = "{user}"
aws_secret_access_key = "{password}"
aws_region = "us-east-1"
aws_allow_http = "true""#,
        minio = minio_endpoint(),
        user = minio_user(),
        password = minio_password(),
    )
}

/// Runs `script` with the tools venv's Python (Python `deltalake`, independent of this crate's use of
/// delta-rs) with `table_uri`, MinIO's endpoint and credentials, then `args`; its stdout. Fails loudly when
/// the venv is missing or the script fails.
fn python_deltalake(script: &str, table_uri: &str, args: &[&str]) -> Vec<u8> {
    let python = env_or(
        "LAKEHOUSE_TOOLS_PYTHON",
        &format!(
            "{}/.cache/lakehouse/venv-tools/bin/python",
            std::env::var("HOME").unwrap_or_default()
        ),
    );
    let prelude = r#"
import json, os, sys, deltalake
uri, endpoint, key, secret = sys.argv[1:5]
opts = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
"#;
    let (endpoint, user, password) = (minio_endpoint(), minio_user(), minio_password());
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            &format!("{prelude}{script}"),
            table_uri,
            &endpoint,
            &user,
            &password,
        ])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {python} (install with infra/local/install.sh tools): {e}")
        });
    assert!(
        out.status.success(),
        "python deltalake failed on {table_uri}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Row count of a Delta table on MinIO as read by Python `deltalake`.
pub fn python_row_count(table_uri: &str) -> usize {
    let script = r#"
print(deltalake.DeltaTable(uri, storage_options=opts).to_pyarrow_table().num_rows, flush=True)
# pyarrow's S3 client can abort in its atexit teardown ("terminate called without an active exception").
os._exit(0)
"#;
    String::from_utf8_lossy(&python_deltalake(script, table_uri, &[]))
        .trim()
        .parse()
        .expect("row count from python")
}

/// One change of a `stock` row (id, sku, qty) as a Debezium PostgreSQL connector writes it: `u` with the
/// after-image, or `d` with the before-image; `lsn` orders the events.
pub struct StockEvent {
    pub id: i64,
    pub lsn: i64,
    pub qty: i64,
    pub delete: bool,
}

impl StockEvent {
    /// The event as one JSON line (unwrapped JSON converter output).
    pub fn debezium(&self) -> String {
        let row = json!({"id": self.id, "sku": format!("sku-{}", self.id), "qty": self.qty});
        let (op, before, after) = if self.delete {
            ("d", row, Value::Null)
        } else {
            ("u", Value::Null, row)
        };
        json!({"before": before, "after": after, "op": op, "ts_ms": 1_764_064_800_000i64 + self.lsn,
            "source": {"version": "2.5.0.Final", "connector": "postgresql", "name": "shop", "db": "shop",
                "schema": "public", "table": "stock", "lsn": self.lsn, "txId": self.lsn, "snapshot": "false"},
            "transaction": null})
        .to_string()
    }
}

/// Rows of a Delta table on MinIO as Python `deltalake` reads them (optionally at `version`): `columns`
/// per row as JSON values, sorted by their JSON text.
pub fn python_rows(table_uri: &str, columns: &[&str], version: Option<i64>) -> Vec<Vec<Value>> {
    let script = r#"
cols, version = sys.argv[5].split(","), sys.argv[6]
t = deltalake.DeltaTable(uri, storage_options=opts, version=int(version) if version else None)
print(json.dumps([[r[c] for c in cols] for r in t.to_pyarrow_table(columns=cols).to_pylist()]), flush=True)
os._exit(0)
"#;
    let version = version.map(|v| v.to_string()).unwrap_or_default();
    let out = python_deltalake(script, table_uri, &[&columns.join(","), &version]);
    let mut rows: Vec<Vec<Value>> = serde_json::from_slice(&out).expect("rows from python");
    rows.sort_by_key(|r| serde_json::to_string(r).unwrap_or_default());
    rows
}
