//! `lakehouse`: the command-line face of the shared crate (demo, one-off ingest, audit).

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use deltalake::arrow::util::pretty::pretty_format_batches;
use futures::StreamExt;
use lakehouse::bronze::BronzeWriter;
use lakehouse::{handler, lake, telemetry, PipelineConfig};

#[derive(Parser)]
#[command(
    name = "lakehouse",
    version,
    about = "Serverless delta-architecture lakehouse: demo, ingest and audit"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Layer {
    Bronze,
    Quarantine,
}

/// Which table: the pipeline file, the table name and the layer.
#[derive(clap::Args)]
struct TableArgs {
    #[arg(long, env = "LAKEHOUSE_CONFIG")]
    config: String,
    #[arg(long)]
    table: String,
    #[arg(long, value_enum, default_value = "bronze")]
    layer: Layer,
}

impl TableArgs {
    async fn open(&self) -> Result<deltalake::DeltaTable, Box<dyn std::error::Error>> {
        let cfg = PipelineConfig::load(&self.config).await?;
        let loc = match self.layer {
            Layer::Bronze => cfg.bronze_location(&self.table),
            Layer::Quarantine => cfg.quarantine_location(&self.table),
        };
        Ok(lake::open(&loc)
            .await?
            .ok_or_else(|| format!("no table at {}", loc.url))?)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the embedded demo: local files, in-process events, Delta tables under DIR.
    Demo {
        #[arg(long, default_value = ".state/demo")]
        dir: PathBuf,
    },
    /// Run the bronze handler once on an event file (S3, SQS, SNS or EventBridge JSON) and print the response.
    Ingest {
        #[arg(long, env = "LAKEHOUSE_CONFIG")]
        config: String,
        event: PathBuf,
    },
    /// Run one silver step for a table (what the silver function does on a "bronze committed" message)
    /// and print what it did, with the step's elapsed milliseconds.
    Silver {
        #[arg(long, env = "LAKEHOUSE_CONFIG")]
        config: String,
        #[arg(long)]
        table: String,
    },
    /// Print a table's rows (optionally at an older version: time travel).
    Show {
        #[command(flatten)]
        target: TableArgs,
        #[arg(long)]
        version: Option<u64>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Print a table's commit history with lineage (source keys, rows, function version).
    History {
        #[command(flatten)]
        target: TableArgs,
    },
}

async fn main_inner() -> Result<(), Box<dyn std::error::Error>> {
    telemetry::init();
    match Cli::parse().command {
        Command::Demo { dir } => lakehouse::demo::run(&dir).await?,
        Command::Ingest { config, event } => {
            let cfg = Arc::new(PipelineConfig::load(&config).await?);
            let payload: serde_json::Value = serde_json::from_slice(&std::fs::read(&event)?)?;
            let writer = BronzeWriter::new(cfg)?.with_configured_notifier().await;
            let response = handler::handle_payload(&writer, &payload).await?;
            println!("{}", serde_json::to_string_pretty(&response)?);
        }
        Command::Silver { config, table } => {
            let cfg = Arc::new(PipelineConfig::load(&config).await?);
            let t = cfg
                .table(&table)
                .ok_or_else(|| format!("no table `{table}` in {config}"))?
                .clone();
            let writer = lakehouse::silver::SilverWriter::new(cfg.clone());
            let start = std::time::Instant::now();
            let c = writer.apply(&t).await?;
            println!(
                "{}",
                serde_json::json!({"table": c.table, "applied": c.applied, "version": c.version, "changes": c.changes,
                    "inserted": c.inserted, "updated": c.updated, "deleted": c.deleted,
                    "files_rewritten": c.files_rewritten, "rejected": c.rejected, "attempts": c.attempts,
                    "elapsed_ms": start.elapsed().as_secs_f64() * 1000.0})
            );
        }
        Command::Show {
            target,
            version,
            limit,
        } => {
            let mut t = target.open().await?;
            if let Some(v) = version {
                t.load_version(v as _).await?;
            }
            let (_, stream) = t.scan_table().await?;
            let batches: Vec<_> = stream.filter_map(|b| async move { b.ok() }).collect().await;
            let total: usize = batches.iter().map(|b| b.num_rows()).sum();
            let shown: Vec<_> = batches
                .iter()
                .map(|b| b.slice(0, b.num_rows().min(limit)))
                .take(1)
                .collect();
            println!(
                "{}\n{total} rows at version {:?}",
                pretty_format_batches(&shown)?,
                t.version()
            );
        }
        Command::History { target } => {
            let t = target.open().await?;
            let mut history: Vec<_> = t.history(None).collect().await;
            history.reverse();
            let latest = t.version().unwrap_or(0) as i64;
            let first = latest + 1 - history.len() as i64;
            for (i, commit) in history.into_iter().enumerate() {
                let commit = commit?;
                let info = &commit.info;
                println!(
                    "version {:>4}  {}  {:<8}  rows {:<8}  fn {}  keys {}",
                    first + i as i64,
                    commit
                        .timestamp
                        .map(|ms| chrono::DateTime::from_timestamp_millis(ms)
                            .map(|d| d.to_rfc3339())
                            .unwrap_or_default())
                        .unwrap_or_default(),
                    commit.operation.clone().unwrap_or_default(),
                    info.get("lakehouse.rows")
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                    info.get("lakehouse.functionVersion")
                        .and_then(|v| v.as_str())
                        .unwrap_or("-"),
                    info.get("lakehouse.sourceKeys")
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                );
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(e) = main_inner().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
