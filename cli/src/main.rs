//! `lakehouse`: the command-line face of the shared crate (demo, one-off steps, the local runner,
//! backfill, audit). Everything it runs lives in the library; this crate parses arguments, prints, and
//! draws the backfill's progress bar.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use deltalake::arrow::util::pretty::pretty_format_batches;
use futures::StreamExt;
use lakehouse::handler::BronzeHandler;
use lakehouse::{lake, telemetry, PipelineConfig};

mod demo;
mod error;
mod progress;

use error::{io, CliError, Result};

/// What a command logs on stderr by default: warnings of our own, nothing of delta-rs' (its warnings
/// are expected retries of lost commit races), so a terminal shows the command's output.
const QUIET_LOG: &str = "warn,deltalake_core=error,deltalake=error,buoyant_kernel=off";
/// The demo's default: errors only.
const DEMO_LOG: &str = "error,buoyant_kernel=off";
/// `--verbose`: every step's log line.
const VERBOSE_LOG: &str = "warn,buoyant_kernel=off,lakehouse=info";
/// The runner's default: its start, queues and one line per batch handled, beside the warnings.
const RUN_LOG: &str =
    "warn,deltalake_core=error,deltalake=error,buoyant_kernel=off,lakehouse::runner=info";

#[derive(Parser)]
#[command(
    name = "lakehouse",
    version,
    about = "Serverless delta-architecture lakehouse: demo, ingest, silver and gold steps, the local runner, backfill and audit"
)]
struct Cli {
    /// Log every step (info level) on stderr; `RUST_LOG` overrides either way.
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Layer {
    Bronze,
    Quarantine,
    Silver,
    /// Silver's delete tombstones.
    Tombstones,
    /// `--table` names a gold view.
    Gold,
}

/// Which table: the pipeline file, the table (or gold view) name and the layer.
#[derive(clap::Args)]
struct TableArgs {
    /// Pipeline file: a path, file:// or s3:// URI.
    #[arg(long, env = "LAKEHOUSE_CONFIG")]
    config: String,
    /// Table name (a gold view's name with --layer gold).
    #[arg(long)]
    table: String,
    #[arg(long, value_enum, default_value = "bronze")]
    layer: Layer,
}

impl TableArgs {
    async fn location(&self) -> Result<lakehouse::config::Location> {
        let cfg = PipelineConfig::load(&self.config).await?;
        self.check_name(&cfg)?;
        Ok(match self.layer {
            Layer::Bronze => cfg.bronze_location(&self.table),
            Layer::Quarantine => cfg.quarantine_location(&self.table),
            Layer::Silver => cfg.silver_location(&self.table),
            Layer::Tombstones => cfg.tombstone_location(&self.table),
            Layer::Gold => cfg.gold_location(&self.table),
        })
    }

    /// The name must be one the pipeline file has, in the layer asked (a view is `--layer gold`).
    fn check_name(&self, cfg: &PipelineConfig) -> Result<()> {
        let gold = matches!(self.layer, Layer::Gold);
        let known = if gold {
            cfg.view(&self.table).is_some()
        } else {
            cfg.table(&self.table).is_some()
        };
        if known {
            return Ok(());
        }
        let hint = match (
            gold,
            cfg.table(&self.table).is_some(),
            cfg.view(&self.table).is_some(),
        ) {
            (true, true, _) => " (it is a table: drop --layer gold)".to_string(),
            (false, _, true) => " (it is a gold view: add --layer gold)".to_string(),
            _ if gold => format!(
                "; views: {}",
                cfg.gold
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => format!(
                "; tables: {}",
                cfg.tables
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Err(CliError::Usage(format!(
            "no {} `{}` in {}{hint}",
            if gold { "gold view" } else { "table" },
            self.table,
            self.config
        )))
    }

    async fn open(&self) -> Result<deltalake::DeltaTable> {
        let loc = self.location().await?;
        lake::open(&loc).await?.ok_or_else(|| {
            CliError::Usage(format!(
                "`{}` has no table in this layer yet (nothing written there): {}",
                self.table, loc.url
            ))
        })
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
    /// Apply landing objects one at a time, as events arriving apart would: for each key (as an S3 event
    /// names it; for a file:// landing, the file's path without its leading `/`), the bronze step, then
    /// the table's silver step, all in
    /// one process, so snapshots stay warm as in a warm Lambda container. Prints one JSON line per step
    /// (the silver summary with the silver step's and the bronze step's milliseconds).
    Replay {
        #[arg(long, env = "LAKEHOUSE_CONFIG")]
        config: String,
        #[arg(long)]
        table: String,
        /// Run the table's maintenance after every N steps (the schedule, time compressed), printing a
        /// `{"maintain": ...}` line.
        #[arg(long)]
        maintain_every: Option<usize>,
        /// After every N steps, open bronze and silver afresh and print a `{"status": ...}` line: the
        /// cold open's milliseconds, files, bytes, commits since the last checkpoint.
        #[arg(long)]
        status_every: Option<usize>,
        keys: Vec<String>,
    },
    /// Bring a gold view up to date (what the gold function does on a "silver committed" message):
    /// only the groups touched since its watermarks, or everything with --full.
    Gold {
        #[arg(long, env = "LAKEHOUSE_CONFIG")]
        config: String,
        #[arg(long)]
        view: String,
        /// Recompute the whole view (also rebuilds a view whose SQL changed).
        #[arg(long)]
        full: bool,
    },
    /// The local runner: long-poll the configured queues (notify.bronze = landing notifications,
    /// notify.silver, notify.gold), batch messages per table by its trigger window (batch_size,
    /// batch_window_seconds), run the Lambda handlers, delete what succeeded. Stops cleanly on SIGTERM.
    Run {
        #[arg(long, env = "LAKEHOUSE_CONFIG")]
        config: String,
        /// Longest SQS long poll in seconds (1-20).
        #[arg(long, default_value_t = 20)]
        max_poll_seconds: u64,
    },
    /// Batch mode: push the objects already in the landing prefixes through bronze → silver → gold,
    /// in chunks, with the same code as the functions. Re-running it is a no-op.
    Backfill {
        #[arg(long, env = "LAKEHOUSE_CONFIG")]
        config: String,
        /// Only this table (and the gold views that read it).
        #[arg(long)]
        table: Option<String>,
        /// Only objects modified at or after this time (RFC 3339, e.g. 2026-11-01T00:00:00Z).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Objects per bronze commit.
        #[arg(long, default_value_t = 100)]
        chunk: usize,
        /// Exit non-zero when any row or object went to quarantine (CI-style loads); the load itself
        /// still completes.
        #[arg(long)]
        fail_on_quarantine: bool,
    },
    /// Maintenance, as the maintenance function runs it on its schedule: compaction (silver re-clustered
    /// by key), checkpoints, log cleanup below every consumer's watermark, vacuum, expiry of tombstones
    /// and quarantine rows. Prints one JSON line per task that did something; fails if a task failed.
    Maintain {
        #[arg(long, env = "LAKEHOUSE_CONFIG")]
        config: String,
        /// Only this table (all its layers) or gold view.
        #[arg(long)]
        table: Option<String>,
        /// Run as if the time were this (RFC 3339): retention cutoffs, log cleanup and vacuum's clock.
        /// For what-ifs and for aging a test lake; never needed in production.
        #[arg(long)]
        as_of: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Recovery: build a silver table from bronze's current rows instead of its log, when bronze commits
    /// it had not applied left the log. Delete the table's silver and silver_tombstones tables first;
    /// afterwards run `gold --full` for the views that read it.
    Rebuild {
        #[arg(long, env = "LAKEHOUSE_CONFIG")]
        config: String,
        #[arg(long)]
        table: String,
    },
    /// Per table and view: versions, watermark lag (versions and seconds), files and small-file ratio,
    /// rows, last commit, last checkpoint, last maintenance.
    Status {
        #[arg(long, env = "LAKEHOUSE_CONFIG")]
        config: String,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write the AWS SAM template for a pipeline file: per trigger window class a bronze queue, DLQ,
    /// event source mapping and EventBridge rules routing its tables' landing prefixes; EventBridge
    /// Scheduler schedules for windows above 300 s. Variables the stack sets (SILVER_QUEUE_URL,
    /// GOLD_QUEUE_URL, GLUE_DATABASE) need not be set.
    AwsTemplate {
        /// The pipeline file (a local path).
        #[arg(long, env = "LAKEHOUSE_CONFIG")]
        config: String,
        /// Where to write it (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Compare with --out instead of writing it, and fail when they differ.
        #[arg(long, requires = "out")]
        check: bool,
    },
    /// The Glue Data Catalog (`[catalog] glue = { database = ... }` in the pipeline file).
    Catalog {
        #[command(subcommand)]
        action: CatalogAction,
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

#[derive(Subcommand)]
enum CatalogAction {
    /// Register every existing table of the lake (bronze_, silver_, gold_, quarantine_<name>) as a
    /// native Delta table, creating or updating it; prints one JSON line per table.
    Sync {
        #[arg(long, env = "LAKEHOUSE_CONFIG")]
        config: String,
    },
}

async fn main_inner() -> Result<()> {
    let cli = Cli::parse();
    telemetry::init(match (&cli.command, cli.verbose) {
        (_, true) => VERBOSE_LOG,
        // The demo reports everything it does itself (rejected keys included).
        (Command::Demo { .. }, false) => DEMO_LOG,
        (Command::Run { .. }, false) => RUN_LOG,
        (_, false) => QUIET_LOG,
    });
    match cli.command {
        Command::Demo { dir } => demo::run(&dir).await?,
        Command::Ingest { config, event } => {
            let cfg = Arc::new(PipelineConfig::load(&config).await?);
            let bytes = std::fs::read(&event).map_err(io(event.display()))?;
            let payload: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|source| CliError::Json {
                    what: format!("event file {}", event.display()),
                    source,
                })?;
            let handler = BronzeHandler::from_config(cfg).await?;
            let response = handler.handle(&payload).await?;
            println!("{}", pretty(&response));
        }
        Command::Silver { config, table } => {
            let cfg = Arc::new(PipelineConfig::load(&config).await?);
            let t = cfg
                .table(&table)
                .ok_or_else(|| CliError::Usage(format!("no table `{table}` in {config}")))?
                .clone();
            let writer = lakehouse::silver::SilverWriter::new(cfg.clone());
            let start = std::time::Instant::now();
            println!("{}", step_json(&writer.apply(&t).await?, start)?);
        }
        Command::Replay {
            config,
            table,
            maintain_every,
            status_every,
            keys,
        } => {
            let cfg = Arc::new(PipelineConfig::load(&config).await?);
            let t = cfg
                .table(&table)
                .ok_or_else(|| CliError::Usage(format!("no table `{table}` in {config}")))?
                .clone();
            let bronze = BronzeHandler::from_config(cfg.clone()).await?;
            let silver = lakehouse::silver::SilverWriter::new(cfg.clone());
            for (n, key) in keys.into_iter().enumerate() {
                let event = serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": ""}, "object": {"key": key}}}]});
                let start = std::time::Instant::now();
                bronze.handle(&event).await?;
                let bronze_ms = start.elapsed().as_secs_f64() * 1000.0;
                let start = std::time::Instant::now();
                let mut out = step_json(&silver.apply(&t).await?, start)?;
                out["bronze_ms"] = serde_json::json!(bronze_ms);
                println!("{out}");
                let step = n + 1;
                if maintain_every.is_some_and(|every| every > 0 && step % every == 0) {
                    let start = std::time::Instant::now();
                    let report = lakehouse::maintain::Maintainer::new(cfg.clone())
                        .run(Some(&table))
                        .await?;
                    let done: Vec<String> = report
                        .tasks
                        .iter()
                        .filter(|t| t.outcome != lakehouse::maintain::Outcome::Nothing)
                        .map(|t| format!("{} {} {:?}", t.table, t.task, t.outcome))
                        .collect();
                    println!(
                        "{}",
                        serde_json::json!({"maintain": step, "tasks": done, "failed": report.failed().count(),
                            "elapsed_ms": start.elapsed().as_secs_f64() * 1000.0})
                    );
                }
                if status_every.is_some_and(|every| every > 0 && step % every == 0) {
                    println!("{}", replay_status(&cfg, &t, step).await?);
                }
            }
        }
        Command::Gold { config, view, full } => {
            let cfg = Arc::new(PipelineConfig::load(&config).await?);
            let v = cfg
                .view(&view)
                .ok_or_else(|| CliError::Usage(format!("no gold view `{view}` in {config}")))?
                .clone();
            let start = std::time::Instant::now();
            let c = lakehouse::gold::GoldWriter::new(cfg.clone())
                .apply(&v, full)
                .await?;
            println!(
                "{}",
                serde_json::json!({"view": c.view, "version": c.version, "full": c.full,
                    "applied": c.applied, "groups_touched": c.groups_touched, "by_deltas": c.by_deltas,
                    "upserted": c.upserted,
                    "deleted": c.deleted, "attempts": c.attempts,
                    "elapsed_ms": start.elapsed().as_secs_f64() * 1000.0})
            );
        }
        Command::Run {
            config,
            max_poll_seconds,
        } => {
            let cfg = Arc::new(PipelineConfig::load(&config).await?);
            let options = lakehouse::runner::RunnerOptions {
                max_poll: std::time::Duration::from_secs(max_poll_seconds.clamp(1, 20)),
            };
            lakehouse::runner::run(cfg, options, lakehouse::runner::stop_on_signals()).await?;
        }
        Command::Backfill {
            config,
            table,
            since,
            chunk,
            fail_on_quarantine,
        } => {
            let cfg = Arc::new(PipelineConfig::load(&config).await?);
            let options = lakehouse::backfill::BackfillOptions {
                table,
                since,
                chunk,
            };
            let bar = progress::Bar::new(std::io::IsTerminal::is_terminal(&std::io::stderr()));
            let s = lakehouse::backfill::run(cfg, &options, &bar).await?;
            print!("{s}");
            for (key, reason) in &s.failed {
                eprintln!("failed: {key}: {reason}");
            }
            if !s.failed.is_empty() {
                return Err(CliError::Failed(format!(
                    "{} objects could not be read; re-run to retry them",
                    s.failed.len()
                )));
            }
            if fail_on_quarantine && s.quarantined() > 0 {
                return Err(CliError::Failed(format!(
                    "{} rows or objects went to quarantine (--fail-on-quarantine)",
                    s.quarantined()
                )));
            }
        }
        Command::Show {
            target,
            version,
            limit,
        } => {
            let latest = target.open().await?;
            let t = match version {
                Some(v) if latest.version().is_none_or(|l| v > l) => {
                    return Err(CliError::Usage(format!(
                        "`{}` has no version {v}: its latest is {}",
                        target.table,
                        latest.version().unwrap_or_default()
                    )))
                }
                // A version log cleanup removed says which versions remain.
                Some(v) => lake::open_version(&target.location().await?, v as i64).await?,
                None => latest,
            };
            // Every batch is counted; rows are kept only up to --limit (memory bounded).
            let (_, mut stream) = t.scan_table().await?;
            let (mut shown, mut kept, mut total) = (Vec::new(), 0usize, 0usize);
            while let Some(batch) = stream.next().await {
                let batch = batch
                    .map_err(|e| CliError::Usage(format!("reading `{}`: {e}", target.table)))?;
                total += batch.num_rows();
                if kept < limit {
                    let take = batch.num_rows().min(limit - kept);
                    shown.push(batch.slice(0, take));
                    kept += take;
                }
            }
            let more = if total > kept {
                format!(" ({kept} shown; --limit for more)")
            } else {
                String::new()
            };
            println!(
                "{}\n{total} rows at version {}{more}",
                pretty_format_batches(&shown)?,
                t.version().unwrap_or_default()
            );
        }
        Command::Maintain {
            config,
            table,
            as_of,
        } => {
            let cfg = Arc::new(PipelineConfig::load(&config).await?);
            let mut maintainer = lakehouse::maintain::Maintainer::new(cfg);
            if let Some(at) = as_of {
                maintainer = maintainer.at(at);
            }
            let report = maintainer.run(table.as_deref()).await?;
            for task in report
                .tasks
                .iter()
                .filter(|t| t.outcome != lakehouse::maintain::Outcome::Nothing)
            {
                println!("{}", serde_json::to_value(task).unwrap_or_default());
            }
            let failed = report.failed().count();
            if failed > 0 {
                return Err(lakehouse::Error::StepFailed {
                    summary: format!("{failed} maintenance task(s) failed (see above)"),
                }
                .into());
            }
        }
        Command::Rebuild { config, table } => {
            let cfg = Arc::new(PipelineConfig::load(&config).await?);
            let t = cfg
                .table(&table)
                .ok_or_else(|| CliError::Usage(format!("no table `{table}` in {config}")))?
                .clone();
            let start = std::time::Instant::now();
            let writer = lakehouse::silver::SilverWriter::new(cfg.clone());
            println!("{}", step_json(&writer.rebuild(&t).await?, start)?);
        }
        Command::AwsTemplate { config, out, check } => {
            // The stack gives the functions these variables; the template does not depend on their
            // values, so unset ones stand in as valid names (a Glue database name is checked).
            let raw = std::fs::read_to_string(&config).map_err(io(&config))?;
            let text = ["SILVER_QUEUE_URL", "GOLD_QUEUE_URL", "GLUE_DATABASE"]
                .iter()
                .filter(|v| std::env::var_os(v).is_none())
                .fold(raw, |t, v| {
                    t.replace(&format!("${{{v}}}"), "stack_provided")
                });
            let origin = config.trim_start_matches("./");
            let cfg = PipelineConfig::from_toml(&text, origin)?;
            let text = lakehouse::deploy::template::render(
                &cfg,
                origin,
                lakehouse::deploy::template::BASE,
            )?;
            match (out, check) {
                (Some(path), true) => {
                    let committed = std::fs::read_to_string(&path).map_err(io(path.display()))?;
                    if committed != text {
                        return Err(CliError::Usage(format!(
                            "{} is not the template of {config}: run `lakehouse aws-template --config {config} --out {}`",
                            path.display(),
                            path.display()
                        )));
                    }
                    println!("{}: up to date with {config}", path.display());
                }
                (Some(path), false) => std::fs::write(&path, text).map_err(io(path.display()))?,
                (None, _) => print!("{text}"),
            }
        }
        Command::Status { config, json } => {
            let cfg = PipelineConfig::load(&config).await?;
            let status = lakehouse::status::status(&cfg, chrono::Utc::now()).await?;
            if json {
                let v = serde_json::to_value(&status).map_err(|source| CliError::Json {
                    what: "status".into(),
                    source,
                })?;
                println!("{}", pretty(&v));
            } else {
                print_status(&status);
            }
        }
        Command::Catalog {
            action: CatalogAction::Sync { config },
        } => {
            let cfg = PipelineConfig::load(&config).await?;
            for synced in lakehouse::catalog::sync(&cfg).await? {
                let v = serde_json::to_value(&synced).map_err(|source| CliError::Json {
                    what: "catalog sync".into(),
                    source,
                })?;
                println!("{v}");
            }
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
                let upstream = info
                    .get("lakehouse.upstreamVersions")
                    .map(|v| format!("  upstream {v}"))
                    .unwrap_or_default();
                println!(
                    "version {:>4}  {}  {:<12}  rows {:<8}  fn {}  keys {}{upstream}",
                    first + i as i64,
                    commit
                        .timestamp
                        .map(|ms| chrono::DateTime::from_timestamp_millis(ms)
                            .map(|d| d.to_rfc3339())
                            .unwrap_or_default())
                        .unwrap_or_default(),
                    commit.operation.clone().unwrap_or_default(),
                    info.get("lakehouse.rows")
                        .or_else(|| info.get("lakehouse.changes"))
                        .or_else(|| {
                            info.get("operationMetrics")
                                .and_then(|m| m.get("num_output_rows"))
                        })
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

/// `status` as a table: one line per layer.
fn print_status(status: &[lakehouse::status::TableStatus]) {
    println!(
        "{:<28} {:>8} {:>7} {:>6} {:>10} {:>12}  {:<20} {:<20} lag",
        "table", "version", "files", "small", "rows", "bytes", "last commit", "last maintenance"
    );
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or("-".to_string(), |t| {
            t.format("%Y-%m-%d %H:%M:%S").to_string()
        })
    };
    for l in status.iter().flat_map(|t| t.layers.iter()) {
        if !l.exists {
            println!("{:<28} {:>8}", l.table, "-");
            continue;
        }
        let lag: Vec<String> = l
            .lag
            .iter()
            .map(|g| {
                format!(
                    "{}: {} versions, {} s",
                    g.source, g.versions_behind, g.seconds_behind
                )
            })
            .collect();
        println!(
            "{:<28} {:>8} {:>7} {:>5.0}% {:>10} {:>12}  {:<20} {:<20} {}",
            l.table,
            l.version.map_or("-".into(), |v| v.to_string()),
            l.files,
            l.small_file_ratio * 100.0,
            l.rows,
            l.bytes,
            time(l.last_commit),
            time(l.last_maintenance),
            lag.join("; ")
        );
    }
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

#[tokio::main]
async fn main() {
    if let Err(e) = main_inner().await {
        // The whole chain: the library keeps every underlying error as a source.
        let mut text = format!("error: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(&format!("\n  caused by: {s}"));
            source = s.source();
        }
        eprintln!("{text}");
        std::process::exit(1);
    }
}

/// `replay --status-every`: bronze and silver opened afresh (the cold open's milliseconds) and their
/// layout.
async fn replay_status(
    cfg: &PipelineConfig,
    t: &lakehouse::config::TableConfig,
    step: usize,
) -> Result<serde_json::Value> {
    let start = std::time::Instant::now();
    let mut layers = Vec::new();
    for (label, location, size) in [
        ("bronze", cfg.bronze_location(&t.name), cfg.target_file_size),
        ("silver", cfg.silver_location(&t.name), t.target_file_size),
    ] {
        let l = lakehouse::status::open_layer(label.to_string(), &location, size).await?;
        layers.push((label, l));
    }
    let mut out = serde_json::json!({"status": true, "step": step,
        "open_ms": start.elapsed().as_secs_f64() * 1000.0});
    for (label, l) in layers {
        out[label] = serde_json::json!({"version": l.version, "files": l.files, "bytes": l.bytes,
            "small_file_ratio": l.small_file_ratio,
            "last_checkpoint": l.last_checkpoint,
            // Commits a cold open replays on top of the last checkpoint.
            "since_checkpoint": l.version.unwrap_or(0) - l.last_checkpoint.unwrap_or(-1)});
    }
    Ok(out)
}

/// A silver step's summary with its elapsed milliseconds since `start`.
fn step_json(
    c: &lakehouse::silver::SilverCommit,
    start: std::time::Instant,
) -> Result<serde_json::Value> {
    let mut out = serde_json::to_value(c).map_err(|source| CliError::Json {
        what: "silver step summary".into(),
        source,
    })?;
    out["elapsed_ms"] = serde_json::json!(start.elapsed().as_secs_f64() * 1000.0);
    Ok(out)
}
