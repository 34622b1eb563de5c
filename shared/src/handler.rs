//! What a bronze invocation does with a payload: classify it, route objects to tables, ingest each table
//! in one commit, and say which SQS messages failed (partial batch failures) so only those are retried.

use std::collections::{BTreeMap, HashSet};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use futures::StreamExt;
use serde_json::Value;
use tracing::{error, warn};

use crate::bronze::{BronzeCommit, BronzeWriter};
use crate::config::PipelineConfig;
use crate::error::{Error, Result};
use crate::events::{self, Envelope, Invocation, LayerTrigger, SourceObject};
use crate::gold::{GoldCommit, GoldWriter};
use crate::notify::Committed;
use crate::silver::{SilverCommit, SilverWriter};

/// How many tables of one batch are ingested at once.
const TABLE_CONCURRENCY: usize = 4;

/// Everything one invocation did, for logs, the CLI and tests.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub commits: Vec<BronzeCommit>,
    /// SQS message ids to report as `batchItemFailures`.
    pub failed_messages: Vec<String>,
    /// Objects outside the landing bucket or any table prefix: logged, never written.
    pub rejected: Vec<SourceObject>,
    /// Tables whose ingest failed as a whole, with the error.
    pub table_errors: Vec<(String, String)>,
}

impl BatchOutcome {
    /// The SQS partial-batch response.
    pub fn sqs_response(&self) -> SqsBatchResponse {
        let mut r = SqsBatchResponse::default();
        r.batch_item_failures = self
            .failed_messages
            .iter()
            .map(|id| {
                let mut f = BatchItemFailure::default();
                f.item_identifier = id.clone();
                f
            })
            .collect();
        r
    }
}

/// Ingests the objects named by `envelopes`. A message fails when its body is not an object event (it
/// then reaches the DLQ after the queue's maxReceiveCount), when one of its objects could not be read, or
/// when its table's commit failed.
pub async fn ingest_envelopes(writer: &BronzeWriter, envelopes: &[Envelope]) -> BatchOutcome {
    let mut outcome = BatchOutcome::default();
    let mut by_table: BTreeMap<String, Vec<SourceObject>> = BTreeMap::new();
    for env in envelopes {
        match &env.objects {
            Err(reason) => {
                error!(message_id = ?env.message_id, %reason, "unusable message");
                outcome.failed_messages.extend(env.message_id.clone());
            }
            Ok(objects) => {
                for obj in objects {
                    match writer.config().route(&obj.bucket, &obj.key) {
                        Some(t) => by_table
                            .entry(t.name.clone())
                            .or_default()
                            .push(obj.clone()),
                        None => {
                            warn!(bucket = %obj.bucket, key = %obj.key, "rejected: not under the landing location or any table prefix; nothing written");
                            outcome.rejected.push(obj.clone());
                        }
                    }
                }
            }
        }
    }
    let results: Vec<(String, Result<BronzeCommit>)> = futures::stream::iter(by_table)
        .map(|(name, objects)| async move {
            let result = match writer.config().table(&name) {
                Some(table) => writer.ingest(table, &objects).await,
                None => Err(Error::Event(format!("table {name} vanished from config"))),
            };
            (name, result)
        })
        .buffer_unordered(TABLE_CONCURRENCY)
        .collect()
        .await;

    let mut failed_keys: HashSet<String> = HashSet::new();
    let mut failed_tables: HashSet<String> = HashSet::new();
    for (name, result) in results {
        match result {
            Ok(commit) => {
                failed_keys.extend(commit.failed().map(|o| o.key.clone()));
                // Announce the table's version even when this batch was a redelivery: the announcement
                // of the first delivery may be what failed.
                if let (Some(n), Some(v)) = (writer.notifier(), commit.table_version) {
                    if let Err(e) = n.send(&Committed::new("bronze", &name, v)).await {
                        error!(table = %name, error = %e, "commit not announced; the batch will be retried");
                        failed_tables.insert(name.clone());
                        outcome.table_errors.push((name.clone(), e.to_string()));
                    }
                }
                outcome.commits.push(commit);
            }
            Err(e) => {
                error!(table = %name, error = %e, "bronze ingest failed");
                failed_tables.insert(name.clone());
                outcome.table_errors.push((name, e.to_string()));
            }
        }
    }
    for env in envelopes {
        let Ok(objects) = &env.objects else { continue };
        let failed = objects.iter().any(|o| {
            failed_keys.contains(&o.key)
                || writer
                    .config()
                    .route(&o.bucket, &o.key)
                    .is_some_and(|t| failed_tables.contains(&t.name))
        });
        if failed {
            outcome.failed_messages.extend(env.message_id.clone());
        }
    }
    outcome.commits.sort_by(|a, b| a.table.cmp(&b.table));
    outcome
}

/// The Lambda entry point's logic: returns the JSON response (an `SqsBatchResponse` for SQS batches, a
/// summary for direct events) or an error for a direct event that must be retried.
pub async fn handle_payload(writer: &BronzeWriter, payload: &Value) -> Result<Value> {
    match events::parse_invocation(payload)? {
        Invocation::Sqs(envelopes) => {
            let outcome = ingest_envelopes(writer, &envelopes).await;
            serde_json::to_value(outcome.sqs_response()).map_err(|e| Error::Event(e.to_string()))
        }
        Invocation::Direct(envelope) => {
            let outcome = ingest_envelopes(writer, std::slice::from_ref(&envelope)).await;
            let failed: Vec<String> = outcome
                .commits
                .iter()
                .flat_map(|c| c.failed().map(|o| o.key.clone()))
                .chain(
                    outcome
                        .table_errors
                        .iter()
                        .map(|(t, e)| format!("{t}: {e}")),
                )
                .collect();
            if !failed.is_empty() {
                return Err(Error::Event(format!(
                    "bronze ingest failed for: {}",
                    failed.join(", ")
                )));
            }
            Ok(serde_json::json!({
                "tables": outcome.commits.iter().map(|c| serde_json::json!({
                    "table": c.table, "version": c.version, "rows": c.rows(), "quarantined": c.quarantined_rows()
                })).collect::<Vec<_>>(),
                "rejected": outcome.rejected.iter().map(|o| format!("s3://{}/{}", o.bucket, o.key)).collect::<Vec<_>>(),
            }))
        }
    }
}

/// What a silver or gold invocation did.
#[derive(Debug)]
pub struct LayerOutcome<C> {
    pub commits: Vec<C>,
    pub failed_messages: Vec<String>,
    /// Tables (silver) or views (gold) whose step failed, with the error.
    pub table_errors: Vec<(String, String)>,
}

impl<C> Default for LayerOutcome<C> {
    fn default() -> Self {
        LayerOutcome {
            commits: Vec::new(),
            failed_messages: Vec::new(),
            table_errors: Vec::new(),
        }
    }
}

pub type SilverOutcome = LayerOutcome<SilverCommit>;
pub type GoldOutcome = LayerOutcome<GoldCommit>;

/// A layer fed by the one before it: which layer feeds it, and what a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downstream {
    /// Silver tables, fed by bronze commits.
    Silver,
    /// Gold views, fed by silver commits.
    Gold,
}

impl Downstream {
    fn upstream(self) -> &'static str {
        match self {
            Downstream::Silver => "bronze",
            Downstream::Gold => "silver",
        }
    }

    /// What to bring up to date for a change of upstream table `table`: the silver table itself, or
    /// the gold views that read it.
    fn targets_of(self, config: &PipelineConfig, table: &str) -> Vec<String> {
        match self {
            Downstream::Silver => config
                .table(table)
                .map(|t| vec![t.name.clone()])
                .unwrap_or_default(),
            Downstream::Gold => config.views_on(table).map(|v| v.name.clone()).collect(),
        }
    }

    /// The targets a message asks for: an upstream "committed" message, or an S3 event on an upstream
    /// `_delta_log/` key of the lake. Anything else is an error for that message.
    pub fn targets(
        self,
        config: &PipelineConfig,
        body: &str,
    ) -> std::result::Result<Vec<String>, String> {
        let upstream = self.upstream();
        let mut targets = Vec::new();
        for t in events::layer_triggers(body).map_err(|e| e.to_string())? {
            match t {
                LayerTrigger::Committed(c)
                    if c.layer == upstream && config.table(&c.table).is_some() =>
                {
                    targets.extend(self.targets_of(config, &c.table))
                }
                LayerTrigger::Committed(c) => {
                    return Err(format!(
                        "committed message for unknown {} table `{}`",
                        c.layer, c.table
                    ))
                }
                LayerTrigger::Object(o) => {
                    match config.table_of_log_key(upstream, &o.bucket, &o.key) {
                        Some(t) => targets.extend(self.targets_of(config, &t.name)),
                        None => {
                            warn!(bucket = %o.bucket, key = %o.key, "not a {upstream} log object; ignored")
                        }
                    }
                }
            }
        }
        Ok(targets)
    }
}

/// Runs `step` once for every target named in `messages` ((message id, body) pairs), several at once;
/// a message fails when one of its targets failed.
async fn apply_downstream<C, F, Fut>(
    layer: Downstream,
    config: &PipelineConfig,
    messages: &[(Option<String>, String)],
    step: F,
) -> LayerOutcome<C>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<C>>,
{
    let mut outcome = LayerOutcome::default();
    let mut per_message: Vec<(Option<String>, Vec<String>)> = Vec::new();
    let mut targets: BTreeMap<String, ()> = BTreeMap::new();
    for (id, body) in messages {
        match layer.targets(config, body) {
            Ok(ts) => {
                targets.extend(ts.iter().map(|t| (t.clone(), ())));
                per_message.push((id.clone(), ts));
            }
            Err(reason) => {
                error!(message_id = ?id, %reason, ?layer, "unusable message");
                outcome.failed_messages.extend(id.clone());
            }
        }
    }
    let results: Vec<(String, Result<C>)> = futures::stream::iter(targets.into_keys())
        .map(|name| {
            let run = step(name.clone());
            async move { (name, run.await) }
        })
        .buffer_unordered(TABLE_CONCURRENCY)
        .collect()
        .await;
    let mut failed: HashSet<String> = HashSet::new();
    for (name, r) in results {
        match r {
            Ok(c) => outcome.commits.push(c),
            Err(e) => {
                error!(target = %name, error = %e, ?layer, "step failed");
                failed.insert(name.clone());
                outcome.table_errors.push((name, e.to_string()));
            }
        }
    }
    for (id, ts) in per_message {
        if ts.iter().any(|t| failed.contains(t)) {
            outcome.failed_messages.extend(id);
        }
    }
    outcome
}

/// Applies silver for every table named in `messages`, once per table, and announces each table's
/// version to gold (when a gold queue is configured; a failed announcement fails the table's messages
/// so the announcement is retried).
pub async fn apply_silver(
    writer: &SilverWriter,
    config: &PipelineConfig,
    messages: &[(Option<String>, String)],
) -> SilverOutcome {
    let mut outcome = apply_downstream(Downstream::Silver, config, messages, |name| async move {
        let table = config
            .table(&name)
            .ok_or_else(|| Error::Event(format!("table {name} vanished from config")))?;
        let commit = writer.apply(table).await?;
        if let (Some(n), Some(v)) = (writer.notifier(), commit.table_version) {
            n.send(&Committed::new("silver", &name, v)).await?;
        }
        Ok(commit)
    })
    .await;
    outcome.commits.sort_by(|a, b| a.table.cmp(&b.table));
    outcome
}

/// Brings every gold view that reads a table named in `messages` up to date, once per view.
pub async fn apply_gold(
    writer: &GoldWriter,
    config: &PipelineConfig,
    messages: &[(Option<String>, String)],
) -> GoldOutcome {
    let mut outcome = apply_downstream(Downstream::Gold, config, messages, |name| async move {
        let view = config
            .view(&name)
            .ok_or_else(|| Error::Event(format!("view {name} vanished from config")))?;
        writer.apply(view, false).await
    })
    .await;
    outcome.commits.sort_by(|a, b| a.view.cmp(&b.view));
    outcome
}

/// (message id, body) of each SQS record of a Lambda payload, or `None` when it is not an SQS batch.
fn sqs_messages(payload: &Value) -> Option<Messages> {
    let records = payload.get("Records").and_then(Value::as_array)?;
    let is_sqs = records
        .first()
        .and_then(|r| r.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs");
    is_sqs.then(|| {
        records
            .iter()
            .map(|r| {
                (
                    r.get("messageId")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    r.get("body")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    })
}

/// A downstream Lambda's answer: `batchItemFailures` for an SQS batch; for a direct event (a committed
/// message or an S3 event) a summary, or an error so the invocation is retried.
fn downstream_response<C>(
    direct: bool,
    outcome: LayerOutcome<C>,
    summary: impl Fn(&C) -> Value,
) -> Result<Value> {
    if !direct {
        let response = BatchOutcome {
            failed_messages: outcome.failed_messages,
            ..Default::default()
        }
        .sqs_response();
        return serde_json::to_value(response).map_err(|e| Error::Event(e.to_string()));
    }
    if let Some((t, e)) = outcome.table_errors.first() {
        return Err(Error::Event(format!("step failed for {t}: {e}")));
    }
    Ok(serde_json::json!({ "steps": outcome.commits.iter().map(summary).collect::<Vec<_>>() }))
}

/// SQS messages as (message id, body); the id is `None` for a direct invocation.
pub type Messages = Vec<(Option<String>, String)>;

/// The messages of a downstream Lambda payload and whether it was a direct event (a committed message
/// or an S3 event, checked here so a bad one is an error) rather than an SQS batch.
fn downstream_messages(
    layer: Downstream,
    config: &PipelineConfig,
    payload: &Value,
) -> Result<(Messages, bool)> {
    if let Some(m) = sqs_messages(payload) {
        return Ok((m, false));
    }
    let body = payload.to_string();
    layer.targets(config, &body).map_err(Error::Event)?;
    Ok((vec![(None, body)], true))
}

/// The silver Lambda's logic.
pub async fn handle_silver_payload(
    writer: &SilverWriter,
    config: &PipelineConfig,
    payload: &Value,
) -> Result<Value> {
    let (messages, direct) = downstream_messages(Downstream::Silver, config, payload)?;
    let outcome = apply_silver(writer, config, &messages).await;
    downstream_response(direct, outcome, |c| {
        serde_json::json!({
            "table": c.table, "version": c.version, "applied": c.applied, "changes": c.changes,
            "inserted": c.inserted, "updated": c.updated, "deleted": c.deleted, "filesRewritten": c.files_rewritten
        })
    })
}

/// The gold Lambda's logic.
pub async fn handle_gold_payload(
    writer: &GoldWriter,
    config: &PipelineConfig,
    payload: &Value,
) -> Result<Value> {
    let (messages, direct) = downstream_messages(Downstream::Gold, config, payload)?;
    let outcome = apply_gold(writer, config, &messages).await;
    downstream_response(direct, outcome, |c| {
        serde_json::json!({
            "view": c.view, "version": c.version, "full": c.full, "groupsTouched": c.groups_touched,
            "upserted": c.upserted, "deleted": c.deleted
        })
    })
}
