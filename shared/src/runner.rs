//! The local runner (`lakehouse run`): the off-AWS deployment mode and the local stand-in for Lambda's
//! event source mappings. One loop per configured layer queue (`notify.bronze` = the landing bucket's
//! notifications, `notify.silver`, `notify.gold`) long-polls SQS (AWS, LocalStack or any compatible
//! endpoint), groups messages per table (bronze, silver) or view (gold) by its trigger window, hands a
//! due batch to the very handlers the Lambda functions call, and deletes only the messages that
//! succeeded: failures become visible again after the queue's visibility timeout and reach its DLQ
//! after maxReceiveCount. One table's poison message fails only that message.
//!
//! Stopping (SIGTERM, Ctrl-C): the batches being processed finish; messages waiting for their window
//! are made visible again at once. Nothing is deleted before it is committed, so a crash at any point
//! loses nothing, and the layers' idempotency makes the redelivery harmless.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::bronze::BronzeWriter;
use crate::config::{PipelineConfig, QueueConfig, TriggerWindow};
use crate::error::{Error, Result};
use crate::events;
use crate::gold::GoldWriter;
use crate::handler::{self, Downstream};
use crate::silver::SilverWriter;

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

/// The writers every loop shares.
struct Writers {
    config: Arc<PipelineConfig>,
    bronze: BronzeWriter,
    silver: SilverWriter,
    gold: GoldWriter,
}

/// Messages of one group waiting for their trigger window.
struct Pending {
    since: Instant,
    window: TriggerWindow,
    messages: Vec<aws_sdk_sqs::types::Message>,
}

impl Pending {
    fn due(&self, now: Instant) -> bool {
        self.messages.len() >= self.window.max_batch
            || now.duration_since(self.since) >= self.window.max_wait
    }
}

/// Runs every layer whose queue is configured until `stop` turns true.
pub async fn run(
    config: Arc<PipelineConfig>,
    options: RunnerOptions,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let writers = Arc::new(Writers {
        bronze: BronzeWriter::new(config.clone())?
            .with_configured_notifier()
            .await,
        silver: SilverWriter::new(config.clone())
            .with_configured_notifier()
            .await,
        gold: GoldWriter::new(config.clone()),
        config: config.clone(),
    });
    let mut loops = Vec::new();
    for layer in [Layer::Bronze, Layer::Silver, Layer::Gold] {
        let Some(queue) = config.notify.get(layer.name()).cloned() else {
            continue;
        };
        info!(layer = layer.name(), queue = %queue.queue_url, "runner: polling");
        let (writers, options, stop) = (writers.clone(), options.clone(), stop.clone());
        loops.push(tokio::spawn(async move {
            layer_loop(layer, queue, writers, options, stop).await
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
        l.map_err(|e| Error::Task(format!("runner loop: {e}")))??;
    }
    Ok(())
}

async fn layer_loop(
    layer: Layer,
    queue: QueueConfig,
    writers: Arc<Writers>,
    options: RunnerOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let sqs = crate::notify::sqs_client(&queue).await;
    let mut pending: BTreeMap<String, Pending> = BTreeMap::new();
    while !*stop.borrow() {
        let now = Instant::now();
        let next_due = pending
            .values()
            .map(|p| (p.since + p.window.max_wait).saturating_duration_since(now))
            .min()
            .unwrap_or(options.max_poll);
        let wait = next_due.min(options.max_poll).min(Duration::from_secs(20));
        let receive = sqs
            .receive_message()
            .queue_url(&queue.queue_url)
            .max_number_of_messages(10)
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
            let (group, window) = group_of(layer, &writers.config, m.body().unwrap_or_default());
            pending
                .entry(group)
                .or_insert_with(|| Pending {
                    since: Instant::now(),
                    window,
                    messages: Vec::new(),
                })
                .messages
                .push(m);
        }
        let now = Instant::now();
        let due: Vec<(String, Pending)> = {
            let keys: Vec<String> = pending
                .iter()
                .filter(|(_, p)| p.due(now))
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| pending.remove(&k).map(|p| (k, p)))
                .collect()
        };
        futures::stream::iter(due)
            .for_each_concurrent(BATCH_CONCURRENCY, |(group, batch)| {
                let (sqs, writers, url) = (&sqs, &writers, &queue.queue_url);
                async move { process(layer, &group, batch.messages, writers, sqs, url).await }
            })
            .await;
    }
    // Stopping: what waits for its window goes back to the queue now instead of after the timeout.
    let waiting: Vec<_> = pending.into_values().flat_map(|p| p.messages).collect();
    release(&sqs, &queue.queue_url, &waiting).await;
    info!(
        layer = layer.name(),
        released = waiting.len(),
        "runner: stopped"
    );
    Ok(())
}

/// The group a message belongs to (its first table or view) and that group's trigger window. Messages
/// that name nothing known form their own group, handled at once (the handler decides their fate).
fn group_of(layer: Layer, config: &PipelineConfig, body: &str) -> (String, TriggerWindow) {
    let immediate = TriggerWindow {
        max_batch: 1,
        max_wait: Duration::ZERO,
    };
    let first = match layer {
        Layer::Bronze => events::objects_in_text(body).ok().and_then(|objects| {
            objects
                .iter()
                .find_map(|o| config.route(&o.bucket, &o.key))
                .map(|t| (t.name.clone(), t.trigger))
        }),
        Layer::Silver => Downstream::Silver
            .targets(config, body)
            .ok()
            .and_then(|ts| ts.into_iter().next())
            .and_then(|t| config.table(&t).map(|c| (t, c.trigger))),
        Layer::Gold => Downstream::Gold
            .targets(config, body)
            .ok()
            .and_then(|ts| ts.into_iter().next())
            .and_then(|v| config.view(&v).map(|c| (v, c.trigger))),
    };
    first.unwrap_or_else(|| (String::new(), immediate))
}

/// Hands one batch to the layer's handler, then deletes the messages that succeeded.
async fn process(
    layer: Layer,
    group: &str,
    messages: Vec<aws_sdk_sqs::types::Message>,
    writers: &Writers,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) {
    let started = Instant::now();
    let pairs: Vec<(Option<String>, String)> = messages
        .iter()
        .map(|m| {
            (
                m.message_id().map(str::to_string),
                m.body().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let failed: Vec<String> = match layer {
        Layer::Bronze => {
            // The same SQS-shaped payload Lambda would deliver.
            let payload = json!({"Records": pairs.iter().map(|(id, body)| json!({
                "messageId": id, "eventSource": "aws:sqs", "body": body,
            })).collect::<Vec<Value>>()});
            match events::parse_invocation(&payload) {
                Ok(events::Invocation::Sqs(envelopes)) => {
                    handler::ingest_envelopes(&writers.bronze, &envelopes)
                        .await
                        .failed_messages
                }
                _ => pairs.iter().filter_map(|(id, _)| id.clone()).collect(),
            }
        }
        Layer::Silver => {
            handler::apply_silver(&writers.silver, &writers.config, &pairs)
                .await
                .failed_messages
        }
        Layer::Gold => {
            handler::apply_gold(&writers.gold, &writers.config, &pairs)
                .await
                .failed_messages
        }
    };
    let done: Vec<_> = messages
        .iter()
        .filter(|m| {
            m.message_id()
                .is_none_or(|id| !failed.iter().any(|f| f == id))
        })
        .collect();
    delete(sqs, queue_url, &done).await;
    info!(
        layer = layer.name(),
        group,
        messages = messages.len(),
        failed = failed.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "runner: batch handled"
    );
}

async fn delete(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    messages: &[&aws_sdk_sqs::types::Message],
) {
    for chunk in messages.chunks(10) {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        if let Err(e) = sqs
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            // Not deleted: the messages come back and are handled again (idempotently).
            error!(queue = queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "delete failed");
        }
    }
}

async fn release(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    messages: &[aws_sdk_sqs::types::Message],
) {
    for chunk in messages.chunks(10) {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        let _ = sqs
            .change_message_visibility_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
    }
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
