//! The real Lambda binary (`functions/bronze`) served by `cargo lambda watch` (the Lambda runtime API
//! emulator) and invoked with `cargo lambda invoke` on an SQS event received from LocalStack: the same
//! bytes Lambda would run, fed what the SQS event source mapping would deliver.
//!
//! The binary is the one `make test` built with the rest of the workspace (`cargo build --workspace
//! --bins`), run against `watch --only-lambda-apis`: letting watch build the function itself would
//! resolve features for `bronze` alone and compile much of the dependency tree a second time.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use integration_tests::*;
use lakehouse::{lake, PipelineConfig};

const PORT: &str = "9311";

/// Kills a process group (watch, the function) when the test ends, pass or fail.
struct Watch(u32);
impl Drop for Watch {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0)])
            .status();
    }
}

/// `cargo lambda ...` with a plain shell environment. The variables `cargo test` sets for this test
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`...) would change build-script fingerprints (ring reruns on
/// `CARGO_MANIFEST_DIR`) and make the nested build recompile half the tree.
fn cargo_lambda(args: &[&str]) -> Command {
    let mut c = Command::new("cargo");
    c.env_clear();
    for var in [
        "PATH",
        "HOME",
        "USER",
        "LANG",
        "TMPDIR",
        "CARGO_HOME",
        "CARGO_TARGET_DIR",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
    ] {
        if let Ok(v) = std::env::var(var) {
            c.env(var, v);
        }
    }
    c.arg("lambda").args(args);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bronze_lambda_binary_under_cargo_lambda_watch() {
    let probe = cargo_lambda(&["--version"]).output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "cargo lambda is not on PATH (install with infra/local/install.sh tools; make test puts it on PATH): {probe:?}"
    );
    let id = run_id("fn");
    let landing = Landing::create(&id, 3, 30).await;
    let lake_uri = format!("s3://{}/{id}", lake_bucket().await);
    let dir = std::env::temp_dir().join(&id);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config_text = pipeline_toml(
        &landing.bucket,
        &lake_uri,
        "[[table]]\nname = \"orders\"\nformat = \"jsonl\"\n",
    );
    let config_path = dir.join("pipeline.toml");
    std::fs::write(&config_path, &config_text).expect("write config");

    let key = "orders/from lambda.jsonl";
    let oracle: BTreeSet<String> = (1..=25).map(|i| (i * 3).to_string()).collect();
    let body: String = (1..=25)
        .map(|i| format!("{{\"order_id\": {}, \"sku\": \"s-{i}\"}}\n", i * 3))
        .collect();
    landing.put(key, body.into_bytes()).await;
    let messages = landing
        .receive(&landing.queue_url, 1, Duration::from_secs(30))
        .await;
    let event_path = dir.join("sqs-event.json");
    std::fs::write(&event_path, landing.lambda_event(&messages).to_string()).expect("write event");

    let log = std::fs::File::create(dir.join("watch.log")).expect("log file");
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let watch = {
        use std::os::unix::process::CommandExt;
        cargo_lambda(&["watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", PORT])
            .current_dir(workspace.join("functions/bronze"))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .process_group(0)
            .spawn()
            .expect("start cargo lambda watch")
    };
    let _watch = Watch(watch.id());
    // The function exits if the runtime API is not there yet: wait for watch to listen.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(format!("127.0.0.1:{PORT}")).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "cargo lambda watch did not listen on {PORT}; log:\n{}",
            std::fs::read_to_string(dir.join("watch.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let function_log = std::fs::File::create(dir.join("function.log")).expect("log file");
    let function = {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(workspace_bin("bronze"));
        c.env_clear();
        if let Ok(path) = std::env::var("PATH") {
            c.env("PATH", path);
        }
        c.env("AWS_LAMBDA_FUNCTION_NAME", "bronze")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{PORT}/.rt/bronze"),
            )
            .env("LAKEHOUSE_CONFIG", &config_path)
            .stdout(Stdio::from(function_log.try_clone().expect("log")))
            .stderr(Stdio::from(function_log))
            .process_group(0)
            .spawn()
            .expect("start the bronze function")
    };
    let _function = Watch(function.id());

    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let response = loop {
        let out = cargo_lambda(&[
            "invoke",
            "bronze",
            "-A",
            "127.0.0.1",
            "-P",
            PORT,
            "--output-format",
            "json",
            "--data-file",
        ])
        .arg(&event_path)
        .output()
        .expect("run cargo lambda invoke");
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "invoke kept failing: {}\nwatch log:\n{}\nfunction log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.join("watch.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("function.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let response: serde_json::Value =
        serde_json::from_str(&response).unwrap_or_else(|e| panic!("response {response:?}: {e}"));
    assert_eq!(
        response["batchItemFailures"],
        serde_json::json!([]),
        "{response}"
    );

    let config = Arc::new(PipelineConfig::from_toml(&config_text, "test").expect("config"));
    let mut got = BTreeSet::new();
    for b in lake::read_table(&config.bronze_location("orders"))
        .await
        .expect("scan")
    {
        let col = b.column_by_name("order_id").expect("order_id");
        let fmt = lakehouse::deltalake_arrow::util::display::ArrayFormatter::try_new(
            col.as_ref(),
            &Default::default(),
        )
        .expect("fmt");
        got.extend((0..b.num_rows()).map(|i| fmt.value(i).to_string()));
    }
    assert_eq!(
        got, oracle,
        "bronze written by the Lambda binary differs from the uploaded file"
    );
    // The step's metrics: one EMF line (CloudWatch extracts metrics from it) counting the rows written.
    let log = std::fs::read_to_string(dir.join("function.log")).unwrap_or_default();
    let emf: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect();
    assert_eq!(emf.len(), 1, "one EMF line for the one table:\n{log}");
    assert_eq!(
        (emf[0]["Layer"].as_str(), emf[0]["Table"].as_str()),
        (Some("bronze"), Some("orders"))
    );
    assert_eq!(
        emf[0]["RowsIn"].as_f64(),
        Some(oracle.len() as f64),
        "{}",
        emf[0]
    );
    assert_eq!(
        emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "Lakehouse"
    );
    landing.delete(&landing.queue_url, &messages).await;
}
