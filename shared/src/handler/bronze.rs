//! The bronze function's logic: route the objects a batch names to their tables, ingest each table in
//! one commit, announce each table's version to silver, and say which messages failed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use serde_json::Value;
use tracing::{error, warn};

use super::batch::{failed_messages, Outcome};
use super::notify::Notifier;
use super::{direct_error, to_json, Windows, TABLE_CONCURRENCY};
use crate::bronze::{BronzeCommit, BronzeWriter};
use crate::catalog::Catalog;
use crate::config::PipelineConfig;
use crate::error::{Error, Result};
use crate::events::{self, Committed, Invocation, ObjectEnvelope, SourceObject};

/// What a bronze invocation did.
pub type BatchOutcome = Outcome<BronzeCommit>;

/// The bronze function: its writer, where it announces commits (silver's queue) and the catalog its
/// tables are registered in.
pub struct BronzeHandler {
    writer: BronzeWriter,
    notifier: Option<Notifier>,
    catalog: Catalog,
    windows: Windows,
}

impl BronzeHandler {
    /// A handler that announces nothing.
    pub fn new(writer: BronzeWriter) -> Self {
        BronzeHandler {
            writer,
            notifier: None,
            catalog: Catalog::none(),
            windows: Windows::default(),
        }
    }

    /// On Lambda: the tables the deployment's schedules run are not announced to silver.
    pub fn with_windows(mut self, windows: Windows) -> Self {
        windows.warn_disagreements(self.config());
        self.windows = windows;
        self
    }

    /// The writer for `config`, announcing on its `notify.silver` queue when there is one.
    pub async fn from_config(config: Arc<PipelineConfig>) -> Result<Self> {
        let notifier = match config.notify.get("silver") {
            Some(q) => Some(Notifier::new(q).await),
            None => None,
        };
        Ok(BronzeHandler {
            catalog: Catalog::from_config(&config).await,
            writer: BronzeWriter::new(config)?,
            notifier,
            windows: Windows::default(),
        })
    }

    pub fn writer(&self) -> &BronzeWriter {
        &self.writer
    }

    fn config(&self) -> &PipelineConfig {
        self.writer.config()
    }

    /// Ingests the objects named by `envelopes`. A message fails when its body is not an object event
    /// (it then reaches the DLQ after the queue's maxReceiveCount), when one of its objects could not be
    /// read, or when its table's commit (or the announcement of it) failed.
    pub async fn ingest(&self, envelopes: &[ObjectEnvelope]) -> BatchOutcome {
        let mut outcome = BatchOutcome::default();
        // Each table's objects, and when the oldest of their messages was sent.
        let mut by_table: BTreeMap<String, (Vec<SourceObject>, Option<i64>)> = BTreeMap::new();
        for env in envelopes {
            match &env.content {
                Err(reason) => error!(message_id = ?env.message_id, %reason, "unusable message"),
                Ok(objects) => {
                    for obj in objects {
                        match self.config().route(&obj.bucket, &obj.key) {
                            Some(t) => {
                                let (objects, since) =
                                    by_table.entry(t.name.clone()).or_insert((Vec::new(), None));
                                objects.push(obj.clone());
                                *since = events::earliest(*since, env.origin_ms());
                            }
                            None => {
                                let why = crate::config::unaddressable(&obj.key).unwrap_or(
                                    "not under the landing location or any table prefix",
                                );
                                warn!(bucket = %obj.bucket, key = %obj.key, reason = why, "rejected; nothing written");
                                outcome.rejected.push(obj.clone());
                            }
                        }
                    }
                }
            }
        }
        let results: Vec<(String, Result<BronzeCommit>)> = futures::stream::iter(by_table)
            .map(|(name, (objects, since))| async move {
                let result = self.ingest_table(&name, &objects, since).await;
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
                    outcome.commits.push(commit);
                }
                Err(e) => {
                    error!(table = %name, error = %e, "bronze ingest failed");
                    failed_tables.insert(name.clone());
                    outcome.table_errors.push((name, e.to_string()));
                }
            }
        }
        outcome.failed_messages = failed_messages(envelopes, |objects| {
            objects.iter().any(|o| {
                failed_keys.contains(&o.key)
                    || self
                        .config()
                        .route(&o.bucket, &o.key)
                        .is_some_and(|t| failed_tables.contains(&t.name))
            })
        });
        outcome.commits.sort_by(|a, b| a.table.cmp(&b.table));
        outcome
    }

    /// One table's objects in one commit, then its version announced. The version is announced even
    /// when this batch was a redelivery: the announcement of the first delivery may be what failed.
    async fn ingest_table(
        &self,
        name: &str,
        objects: &[SourceObject],
        since: Option<i64>,
    ) -> Result<BronzeCommit> {
        let table = self.config().table(name).ok_or_else(|| {
            Error::invariant(format!("routed to table {name}, not in the config"))
        })?;
        let started = std::time::Instant::now();
        let commit = self.writer.ingest(table, objects).await?;
        super::metrics::bronze(&commit, started.elapsed(), since).emit();
        self.catalog
            .register_after_step(self.config(), "bronze", name, self.writer.tables())
            .await;
        let announced = table.has_silver() && self.windows.announces(name);
        if let (Some(n), Some(v), true) = (&self.notifier, commit.table_version, announced) {
            n.send(&Committed::new("bronze", name, v).since(since))
                .await?;
        }
        Ok(commit)
    }

    /// The Lambda entry point's logic: the JSON response (an `SqsBatchResponse` for SQS batches, a
    /// summary for direct events) or an error for a direct event that must be retried.
    pub async fn handle(&self, payload: &Value) -> Result<Value> {
        match events::parse_invocation(payload)? {
            Invocation::Sqs(envelopes) => to_json(
                &self.ingest(&envelopes).await.sqs_response(),
                "SQS response",
            ),
            Invocation::Direct(envelope) => {
                let outcome = self.ingest(std::slice::from_ref(&envelope)).await;
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
                    return Err(direct_error(format!(
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
}
