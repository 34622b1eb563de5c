//! What a bronze invocation does with a payload: classify it, route objects to tables, ingest each table
//! in one commit, and say which SQS messages failed (partial batch failures) so only those are retried.

use std::collections::{BTreeMap, HashSet};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use futures::StreamExt;
use serde_json::Value;
use tracing::{error, warn};

use crate::bronze::{BronzeCommit, BronzeWriter};
use crate::error::{Error, Result};
use crate::events::{self, Envelope, Invocation, LayerTrigger, SourceObject};
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

/// What a silver invocation did.
#[derive(Debug, Default)]
pub struct SilverOutcome {
    pub commits: Vec<SilverCommit>,
    pub failed_messages: Vec<String>,
    pub table_errors: Vec<(String, String)>,
}

/// The tables a silver message asks to bring up to date: a bronze committed message, or an S3 event on
/// a `bronze/<table>/_delta_log/` key of the lake. Anything else is an error for that message.
fn silver_tables(
    config: &crate::config::PipelineConfig,
    body: &str,
) -> std::result::Result<Vec<String>, String> {
    let mut tables = Vec::new();
    for t in events::layer_triggers(body).map_err(|e| e.to_string())? {
        match t {
            LayerTrigger::Committed(c)
                if c.layer == "bronze" && config.table(&c.table).is_some() =>
            {
                tables.push(c.table)
            }
            LayerTrigger::Committed(c) => {
                return Err(format!(
                    "committed message for unknown {} table `{}`",
                    c.layer, c.table
                ))
            }
            LayerTrigger::Object(o) => match config.table_of_log_key("bronze", &o.bucket, &o.key) {
                Some(t) => tables.push(t.name.clone()),
                None => warn!(bucket = %o.bucket, key = %o.key, "not a bronze log object; ignored"),
            },
        }
    }
    Ok(tables)
}

/// Applies silver for every table named in `messages` ((message id, body) pairs), once per table.
pub async fn apply_silver(
    writer: &SilverWriter,
    config: &crate::config::PipelineConfig,
    messages: &[(Option<String>, String)],
) -> SilverOutcome {
    let mut outcome = SilverOutcome::default();
    let mut per_message: Vec<(Option<String>, Vec<String>)> = Vec::new();
    let mut tables: BTreeMap<String, ()> = BTreeMap::new();
    for (id, body) in messages {
        match silver_tables(config, body) {
            Ok(ts) => {
                tables.extend(ts.iter().map(|t| (t.clone(), ())));
                per_message.push((id.clone(), ts));
            }
            Err(reason) => {
                error!(message_id = ?id, %reason, "unusable silver message");
                outcome.failed_messages.extend(id.clone());
            }
        }
    }
    let results: Vec<(String, Result<SilverCommit>)> = futures::stream::iter(tables.into_keys())
        .map(|name| async move {
            let result = match config.table(&name) {
                Some(t) => writer.apply(t).await,
                None => Err(Error::Event(format!("table {name} vanished from config"))),
            };
            (name, result)
        })
        .buffer_unordered(TABLE_CONCURRENCY)
        .collect()
        .await;
    let mut failed: HashSet<String> = HashSet::new();
    for (name, r) in results {
        match r {
            Ok(c) => outcome.commits.push(c),
            Err(e) => {
                error!(table = %name, error = %e, "silver step failed");
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
    outcome.commits.sort_by(|a, b| a.table.cmp(&b.table));
    outcome
}

/// The silver Lambda's logic: SQS batches answer with `batchItemFailures`; a direct event (a committed
/// message or an S3 event) answers with a summary or an error.
pub async fn handle_silver_payload(
    writer: &SilverWriter,
    config: &crate::config::PipelineConfig,
    payload: &Value,
) -> Result<Value> {
    let records = payload.get("Records").and_then(Value::as_array);
    let is_sqs = records
        .and_then(|r| r.first())
        .and_then(|r| r.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs");
    if is_sqs {
        let messages: Vec<(Option<String>, String)> = records
            .into_iter()
            .flatten()
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
            .collect();
        let outcome = apply_silver(writer, config, &messages).await;
        let response = BatchOutcome {
            failed_messages: outcome.failed_messages,
            ..Default::default()
        }
        .sqs_response();
        return serde_json::to_value(response).map_err(|e| Error::Event(e.to_string()));
    }
    let body = payload.to_string();
    silver_tables(config, &body).map_err(Error::Event)?;
    let outcome = apply_silver(writer, config, &[(None, body)]).await;
    if let Some((t, e)) = outcome.table_errors.first() {
        return Err(Error::Event(format!("silver step failed for {t}: {e}")));
    }
    Ok(serde_json::json!({
        "tables": outcome.commits.iter().map(|c| serde_json::json!({
            "table": c.table, "version": c.version, "applied": c.applied, "changes": c.changes,
            "inserted": c.inserted, "updated": c.updated, "deleted": c.deleted, "filesRewritten": c.files_rewritten
        })).collect::<Vec<_>>()
    }))
}
