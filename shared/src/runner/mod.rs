//! The local runner (`lakehouse run`): the off-AWS deployment mode and the local stand-in for Lambda's
//! event source mappings. One loop per configured layer queue (`notify.bronze` = the landing bucket's
//! notifications, `notify.silver`, `notify.gold`) long-polls SQS (AWS, LocalStack or any compatible
//! endpoint), groups messages per table (bronze, silver) or view (gold) by its trigger window, hands a
//! due batch to the very handlers the Lambda functions call, and deletes only the messages that
//! succeeded: failures become visible again after the queue's visibility timeout and reach its DLQ
//! after maxReceiveCount. One table's poison message fails only that message.
//!
//! Maintenance runs beside the loops on `[maintenance] every_minutes`, as the deployed maintenance
//! function does on its schedule.
//!
//! Stopping (SIGTERM, Ctrl-C): the batches being processed finish; messages waiting for their window
//! are made visible again at once. Nothing is deleted before it is committed, so a crash at any point
//! loses nothing, and the layers' idempotency makes the redelivery harmless.
//!
//! [`window`] is the batching by trigger window; [`sqs`] deletes and releases messages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use futures::StreamExt;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{PipelineConfig, QueueConfig};
use crate::error::{Error, Result};
use crate::events::Envelope;
use crate::handler::{notify, BronzeHandler, GoldHandler, MaintainHandler, SilverHandler};

mod sqs;
pub mod window;

use window::{group_of, Batcher, Parsed};

/// How many due batches of one layer run at once.
const BATCH_CONCURRENCY: usize = 4;

/// The layers the runner can serve, in data order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Bronze,
    Silver,
    Gold,
}

impl Layer {
    pub fn name(self) -> &'static str {
        match self {
            Layer::Bronze => "bronze",
            Layer::Silver => "silver",
            Layer::Gold => "gold",
        }
    }

    /// A message body parsed for this layer's handler, with when it was sent.
    fn parse(self, message: &Message) -> Parsed {
        let id = message.message_id().map(str::to_string);
        let body = message.body().unwrap_or_default();
        let sent = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
            .and_then(|s| s.parse().ok());
        match self {
            Layer::Bronze => Parsed::Objects(Envelope::from_message(id, body).sent(sent)),
            Layer::Silver | Layer::Gold => {
                Parsed::Triggers(Envelope::from_message(id, body).sent(sent))
            }
        }
    }
}

/// Runner settings beyond the pipeline file.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Longest SQS long poll (max 20 s); shorter when a batch window ends sooner.
    pub max_poll: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            max_poll: Duration::from_secs(20),
        }
    }
}

/// The handlers every loop shares: the same ones the Lambda functions run.
struct Handlers {
    config: Arc<PipelineConfig>,
    bronze: BronzeHandler,
    silver: SilverHandler,
    gold: GoldHandler,
}

/// Runs every layer whose queue is configured until `stop` turns true.
pub async fn run(
    config: Arc<PipelineConfig>,
    options: RunnerOptions,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let handlers = Arc::new(Handlers {
        bronze: BronzeHandler::from_config(config.clone()).await?,
        silver: SilverHandler::from_config(config.clone()).await,
        gold: GoldHandler::from_config(config.clone()).await,
        config: config.clone(),
    });
    info!(
        tables = %config.tables.iter().map(|t| format!("{} ({})", t.name, t.trigger)).collect::<Vec<_>>().join(", "),
        views = %config.gold.iter().map(|v| format!("{} ({})", v.name, v.trigger)).collect::<Vec<_>>().join(", "),
        maintenance_every_s = config.maintenance.every.as_secs(),
        "runner: started"
    );
    let mut loops = Vec::new();
    for layer in [Layer::Bronze, Layer::Silver, Layer::Gold] {
        let Some(queue) = config.notify.get(layer.name()).cloned() else {
            continue;
        };
        info!(layer = layer.name(), queue = %queue.queue_url, "runner: polling");
        let (handlers, options, stop) = (handlers.clone(), options.clone(), stop.clone());
        loops.push(tokio::spawn(async move {
            layer_loop(layer, queue, handlers, options, stop).await
        }));
    }
    if !loops.is_empty() {
        // The same schedule as the deployed maintenance function's, beside the queues.
        let (config, stop) = (config.clone(), stop.clone());
        loops.push(tokio::spawn(async move {
            maintenance_loop(config, stop).await;
            Ok(())
        }));
    }
    if loops.is_empty() {
        return Err(Error::config(
            "-",
            "notify",
            "the runner needs at least one queue: notify.bronze (landing notifications), notify.silver or notify.gold",
        ));
    }
    for l in futures::future::join_all(loops).await {
        l.map_err(|source| Error::Task {
            what: "runner loop".into(),
            source,
        })??;
    }
    Ok(())
}

async fn layer_loop(
    layer: Layer,
    queue: QueueConfig,
    handlers: Arc<Handlers>,
    options: RunnerOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let sqs = notify::sqs_client(&queue).await;
    let mut batcher: Batcher<(Message, Parsed)> = Batcher::default();
    while !*stop.borrow() {
        let next_due = batcher.next_due(Instant::now()).unwrap_or(options.max_poll);
        let wait = next_due.min(options.max_poll).min(Duration::from_secs(20));
        let receive = sqs
            .receive_message()
            .queue_url(&queue.queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .wait_time_seconds(wait.as_secs() as i32)
            .send();
        let received = tokio::select! {
            r = receive => r,
            _ = stop.changed() => break,
        };
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                warn!(layer = layer.name(), error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "receive failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() && wait.is_zero() {
            // A window ends within the second: poll again shortly rather than spin.
            tokio::time::sleep(next_due.min(Duration::from_millis(200))).await;
        }
        for m in messages {
            let parsed = layer.parse(&m);
            let (group, window) = group_of(layer, &handlers.config, &parsed);
            // One window end to end: a message born of an upstream batch that already waited counts
            // its window from that batch's oldest message, not from its own arrival.
            let since = window::since(Instant::now(), chrono::Utc::now(), parsed.origin_ms());
            batcher.push(group, window, since, (m, parsed));
        }
        let due = batcher.take_due(Instant::now());
        futures::stream::iter(due)
            .for_each_concurrent(BATCH_CONCURRENCY, |(group, batch)| {
                let (sqs, handlers, url) = (&sqs, &handlers, &queue.queue_url);
                async move { process(layer, &group, batch, handlers, sqs, url).await }
            })
            .await;
    }
    // Stopping: what waits for its window goes back to the queue now instead of after the timeout.
    let waiting: Vec<Message> = batcher.drain().into_iter().map(|(m, _)| m).collect();
    sqs::release(&sqs, &queue.queue_url, &waiting).await;
    info!(
        layer = layer.name(),
        released = waiting.len(),
        "runner: stopped"
    );
    Ok(())
}

/// Runs maintenance every `[maintenance] every_minutes` (first after one interval) until stopped.
async fn maintenance_loop(config: Arc<PipelineConfig>, mut stop: watch::Receiver<bool>) {
    let every = config.maintenance.every;
    let handler = MaintainHandler::from_config(config);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        match handler.handle(&serde_json::json!({})).await {
            Ok(_) => info!("runner: maintenance done"),
            Err(e) => warn!(error = %e, "runner: maintenance failed; next run retries"),
        }
    }
}

/// Hands one batch to the layer's handler, then deletes the messages that succeeded.
async fn process(
    layer: Layer,
    group: &str,
    batch: Vec<(Message, Parsed)>,
    handlers: &Handlers,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) {
    let started = Instant::now();
    let (messages, parsed): (Vec<Message>, Vec<Parsed>) = batch.into_iter().unzip();
    let mut objects = Vec::new();
    let mut triggers = Vec::new();
    for p in parsed {
        match p {
            Parsed::Objects(e) => objects.push(e),
            Parsed::Triggers(e) => triggers.push(e),
        }
    }
    // What the batch did, for its log line: commits made, rows written (bronze: rows in; silver:
    // changes merged; gold: rows upserted and deleted), and each table's quarantined rows.
    let mut quarantined: Vec<(String, u64)> = Vec::new();
    let (failed, commits, rows): (Vec<String>, usize, u64) = match layer {
        Layer::Bronze => {
            let o = handlers.bronze.ingest(&objects).await;
            quarantined.extend(
                o.commits
                    .iter()
                    .map(|c| (c.table.clone(), c.quarantined_rows())),
            );
            let committed = o.commits.iter().filter(|c| c.version.is_some()).count();
            (
                o.failed_messages,
                committed,
                o.commits.iter().map(|c| c.rows()).sum(),
            )
        }
        Layer::Silver => {
            let o = handlers.silver.apply(&triggers).await;
            quarantined.extend(
                o.commits
                    .iter()
                    .map(|c| (c.table.clone(), c.rejected as u64)),
            );
            let committed = o.commits.iter().filter(|c| c.version.is_some()).count();
            (
                o.failed_messages,
                committed,
                o.commits.iter().map(|c| c.changes as u64).sum(),
            )
        }
        Layer::Gold => {
            let o = handlers.gold.apply(&triggers).await;
            let committed = o.commits.iter().filter(|c| c.version.is_some()).count();
            let rows = o
                .commits
                .iter()
                .map(|c| (c.upserted + c.deleted) as u64)
                .sum();
            (o.failed_messages, committed, rows)
        }
    };
    for (table, rows) in quarantined.into_iter().filter(|(_, n)| *n > 0) {
        warn!(
            layer = layer.name(),
            table = %table,
            quarantined = rows,
            "runner: rows went to quarantine (`lakehouse show --layer quarantine --table {table}`)"
        );
    }
    let done: Vec<&Message> = messages
        .iter()
        .filter(|m| {
            m.message_id()
                .is_none_or(|id| !failed.iter().any(|f| f == id))
        })
        .collect();
    sqs::delete(sqs, queue_url, &done).await;
    info!(
        layer = layer.name(),
        group,
        messages = messages.len(),
        failed = failed.len(),
        commits,
        rows,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "runner: batch handled"
    );
}

/// A stop signal that turns true on SIGTERM or Ctrl-C.
pub fn stop_on_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = term => {},
            _ = tokio::signal::ctrl_c() => {},
        }
        info!("runner: stop requested; finishing the batches in flight");
        let _ = tx.send(true);
    });
    rx
}
