//! The silver and gold functions' logic: the layers fed by the one before them. A message (an upstream
//! "committed" message, or an S3 event on an upstream `_delta_log/` key) names upstream tables; each
//! target (the silver table itself, or the gold views reading it) is brought up to date once per batch,
//! however many messages name it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use serde_json::Value;
use tracing::{error, warn};

use super::batch::{failed_messages, Outcome};
use super::notify::Notifier;
use super::{direct_error, to_json, Windows, TABLE_CONCURRENCY};
use crate::catalog::Catalog;
use crate::config::PipelineConfig;
use crate::error::{Error, Result};
use crate::events::{self, Committed, Envelope, Invocation, LayerTrigger, TriggerEnvelope};
use crate::gold::{GoldCommit, GoldWriter};
use crate::silver::{SilverCommit, SilverWriter};

pub type SilverOutcome = Outcome<SilverCommit>;
pub type GoldOutcome = Outcome<GoldCommit>;

/// A layer fed by the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

    /// The layer's own name (what a schedule's `step` says).
    pub fn name(self) -> &'static str {
        match self {
            Downstream::Silver => "silver",
            Downstream::Gold => "gold",
        }
    }

    /// What to bring up to date for a change of upstream table `table`: the silver table itself, or
    /// the gold views that read it and that no schedule runs (`windows`).
    fn targets_of(self, config: &PipelineConfig, table: &str, windows: &Windows) -> Vec<String> {
        match self {
            Downstream::Silver => config
                .table(table)
                .map(|t| vec![t.name.clone()])
                .unwrap_or_default(),
            Downstream::Gold => config
                .views_on(table)
                .filter(|v| !windows.scheduled(Downstream::Gold, &v.name))
                .map(|v| v.name.clone())
                .collect(),
        }
    }

    /// Whether `name` is one of this layer's targets (a silver table, a gold view).
    fn is_target(self, config: &PipelineConfig, name: &str) -> bool {
        match self {
            Downstream::Silver => config.table(name).is_some_and(|t| t.has_silver()),
            Downstream::Gold => config.view(name).is_some(),
        }
    }

    /// The targets the triggers of one message ask for. A committed message for an unknown table, or
    /// a schedule naming an unknown target or another layer, is an error for that message; an object
    /// event off the upstream logs is ignored.
    pub fn targets(
        self,
        config: &PipelineConfig,
        triggers: &[LayerTrigger],
        windows: &Windows,
    ) -> std::result::Result<Vec<String>, String> {
        let upstream = self.upstream();
        let mut targets = Vec::new();
        for t in triggers {
            match t {
                LayerTrigger::Scheduled(s) if s.step == self.name() => {
                    if let Some(unknown) = s.names.iter().find(|n| !self.is_target(config, n)) {
                        return Err(format!(
                            "schedule names `{unknown}`, not a {} {} of the pipeline file",
                            self.name(),
                            if self == Downstream::Silver {
                                "table"
                            } else {
                                "view"
                            }
                        ));
                    }
                    targets.extend(s.names.iter().cloned())
                }
                LayerTrigger::Scheduled(s) => {
                    return Err(format!(
                        "a scheduled {} step sent to the {} function",
                        s.step,
                        self.name()
                    ))
                }
                LayerTrigger::Committed(c)
                    if c.layer == upstream && config.table(&c.table).is_some() =>
                {
                    targets.extend(self.targets_of(config, &c.table, windows))
                }
                LayerTrigger::Committed(c) => {
                    return Err(format!(
                        "committed message for unknown {} table `{}`",
                        c.layer, c.table
                    ))
                }
                LayerTrigger::Object(o) => {
                    match config.table_of_log_key(upstream, &o.bucket, &o.key) {
                        Some(t) => targets.extend(self.targets_of(config, &t.name, windows)),
                        None => {
                            warn!(bucket = %o.bucket, key = %o.key, "not a {upstream} log object; ignored")
                        }
                    }
                }
            }
        }
        Ok(targets)
    }

    /// Each message's targets (or why it has none it could use).
    pub fn target_envelopes(
        self,
        config: &PipelineConfig,
        envelopes: &[TriggerEnvelope],
        windows: &Windows,
    ) -> Vec<Envelope<Vec<String>>> {
        envelopes
            .iter()
            .map(|e| {
                Envelope::new(
                    e.message_id.clone(),
                    e.content
                        .as_ref()
                        .map_err(Clone::clone)
                        .and_then(|ts| self.targets(config, ts, windows)),
                )
            })
            .collect()
    }
}

/// Runs `step` once for every target the messages name, several at once, with when the oldest change
/// behind it entered the pipeline; a message fails when it has no usable content or one of its
/// targets failed.
async fn apply<C, F, Fut>(
    layer: Downstream,
    config: &PipelineConfig,
    envelopes: &[TriggerEnvelope],
    windows: &Windows,
    step: F,
) -> Outcome<C>
where
    F: Fn(String, Option<i64>) -> Fut,
    Fut: std::future::Future<Output = Result<C>>,
{
    let mut outcome = Outcome::default();
    let per_message = layer.target_envelopes(config, envelopes, windows);
    let mut targets: BTreeMap<String, Option<i64>> = BTreeMap::new();
    for (m, e) in per_message.iter().zip(envelopes) {
        match &m.content {
            Ok(ts) => {
                for t in ts {
                    let since = targets.entry(t.clone()).or_insert(None);
                    *since = events::earliest(*since, e.origin_ms());
                }
            }
            Err(reason) => error!(message_id = ?m.message_id, %reason, ?layer, "unusable message"),
        }
    }
    let results: Vec<(String, Result<C>)> = futures::stream::iter(targets)
        .map(|(name, since)| {
            let run = step(name.clone(), since);
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
    outcome.failed_messages =
        failed_messages(&per_message, |ts| ts.iter().any(|t| failed.contains(t)));
    outcome
}

/// What the silver and gold handlers share: a layer fed by the one before, its batch step, and what a
/// direct invocation answers per commit.
trait Fed {
    type Commit;
    const LAYER: Downstream;

    fn config(&self) -> &PipelineConfig;

    fn windows(&self) -> &Windows;

    async fn run(&self, envelopes: &[TriggerEnvelope]) -> Outcome<Self::Commit>;

    fn summary(commit: &Self::Commit) -> Value;

    /// The function's answer: `batchItemFailures` for an SQS batch; for a direct event (a committed
    /// message or an S3 event) a summary, or an error so the invocation is retried.
    async fn respond(&self, payload: &Value) -> Result<Value> {
        match events::parse_invocation::<Vec<LayerTrigger>>(payload)? {
            Invocation::Sqs(envelopes) => {
                to_json(&self.run(&envelopes).await.sqs_response(), "SQS response")
            }
            Invocation::Direct(envelope) => {
                // A direct event that names nothing usable is an error, not an empty success.
                if let Ok(triggers) = &envelope.content {
                    Self::LAYER
                        .targets(self.config(), triggers, self.windows())
                        .map_err(Error::event)?;
                }
                let outcome = self.run(std::slice::from_ref(&envelope)).await;
                if let Some((t, e)) = outcome.table_errors.first() {
                    return Err(direct_error(format!("step failed for {t}: {e}")));
                }
                let steps: Vec<Value> = outcome.commits.iter().map(Self::summary).collect();
                Ok(serde_json::json!({ "steps": steps }))
            }
        }
    }
}

/// The silver function: its writer and where it announces commits (gold's queue).
pub struct SilverHandler {
    writer: SilverWriter,
    notifier: Option<Notifier>,
    catalog: Catalog,
    windows: Windows,
}

impl SilverHandler {
    /// A handler that announces nothing.
    pub fn new(writer: SilverWriter) -> Self {
        SilverHandler {
            writer,
            notifier: None,
            catalog: Catalog::none(),
            windows: Windows::default(),
        }
    }

    /// On Lambda: the deployment's schedules run the tables they name (see [`Windows`]).
    pub fn with_windows(mut self, windows: Windows) -> Self {
        windows.warn_disagreements(self.writer.config());
        self.windows = windows;
        self
    }

    /// The writer for `config`, announcing on its `notify.gold` queue when there is one.
    pub async fn from_config(config: Arc<PipelineConfig>) -> Self {
        let notifier = match config.notify.get("gold") {
            Some(q) => Some(Notifier::new(q).await),
            None => None,
        };
        SilverHandler {
            catalog: Catalog::from_config(&config).await,
            writer: SilverWriter::new(config),
            notifier,
            windows: Windows::default(),
        }
    }

    pub fn writer(&self) -> &SilverWriter {
        &self.writer
    }

    /// Applies silver once per table named in `envelopes` and announces each table's version to gold
    /// (a failed announcement fails the table's messages, so it is retried).
    pub async fn apply(&self, envelopes: &[TriggerEnvelope]) -> SilverOutcome {
        let config = self.writer.config();
        let mut outcome = apply(
            Downstream::Silver,
            config,
            envelopes,
            &self.windows,
            |name, since| async move {
                let table = config.table(&name).ok_or_else(|| {
                    Error::invariant(format!("target table {name} not in the config"))
                })?;
                let started = std::time::Instant::now();
                let commit = self.writer.apply(table).await?;
                if table.has_silver() {
                    super::metrics::silver(&commit, started.elapsed(), since).emit();
                    self.catalog
                        .register_after_step(config, "silver", &name, self.writer.tables())
                        .await;
                }
                // Announced when a view reads the table (gold leaves the views a schedule runs).
                let read = config.views_on(&name).next().is_some();
                if let (Some(n), Some(v), true) = (&self.notifier, commit.table_version, read) {
                    n.send(&Committed::new("silver", &name, v).since(since))
                        .await?;
                }
                Ok(commit)
            },
        )
        .await;
        outcome.commits.sort_by(|a, b| a.table.cmp(&b.table));
        outcome
    }

    /// The silver Lambda's logic.
    pub async fn handle(&self, payload: &Value) -> Result<Value> {
        self.respond(payload).await
    }
}

impl Fed for SilverHandler {
    type Commit = SilverCommit;
    const LAYER: Downstream = Downstream::Silver;

    fn config(&self) -> &PipelineConfig {
        self.writer.config()
    }

    fn windows(&self) -> &Windows {
        &self.windows
    }

    async fn run(&self, envelopes: &[TriggerEnvelope]) -> SilverOutcome {
        self.apply(envelopes).await
    }

    fn summary(c: &SilverCommit) -> Value {
        serde_json::to_value(c)
            .unwrap_or_else(|e| serde_json::json!({ "table": c.table, "summary": e.to_string() }))
    }
}

/// The gold function.
pub struct GoldHandler {
    writer: GoldWriter,
    catalog: Catalog,
    windows: Windows,
}

impl GoldHandler {
    pub fn new(writer: GoldWriter) -> Self {
        GoldHandler {
            writer,
            catalog: Catalog::none(),
            windows: Windows::default(),
        }
    }

    /// On Lambda: the views the deployment's schedules run are not run by silver's announcements.
    pub fn with_windows(mut self, windows: Windows) -> Self {
        self.windows = windows;
        self
    }

    pub async fn from_config(config: Arc<PipelineConfig>) -> Self {
        GoldHandler {
            catalog: Catalog::from_config(&config).await,
            writer: GoldWriter::new(config),
            windows: Windows::default(),
        }
    }

    pub fn writer(&self) -> &GoldWriter {
        &self.writer
    }

    /// Brings every gold view that reads a table named in `envelopes` up to date, once per view.
    pub async fn apply(&self, envelopes: &[TriggerEnvelope]) -> GoldOutcome {
        let config = self.writer.config();
        let mut outcome = apply(
            Downstream::Gold,
            config,
            envelopes,
            &self.windows,
            |name, since| async move {
                let view = config.view(&name).ok_or_else(|| {
                    Error::invariant(format!("target view {name} not in the config"))
                })?;
                let started = std::time::Instant::now();
                let commit = self.writer.apply(view, false).await?;
                super::metrics::gold(&commit, started.elapsed(), since).emit();
                self.catalog
                    .register_after_step(config, "gold", &name, self.writer.tables())
                    .await;
                Ok(commit)
            },
        )
        .await;
        outcome.commits.sort_by(|a, b| a.view.cmp(&b.view));
        outcome
    }

    /// The gold Lambda's logic.
    pub async fn handle(&self, payload: &Value) -> Result<Value> {
        self.respond(payload).await
    }
}

impl Fed for GoldHandler {
    type Commit = GoldCommit;
    const LAYER: Downstream = Downstream::Gold;

    fn config(&self) -> &PipelineConfig {
        self.writer.config()
    }

    fn windows(&self) -> &Windows {
        &self.windows
    }

    async fn run(&self, envelopes: &[TriggerEnvelope]) -> GoldOutcome {
        self.apply(envelopes).await
    }

    fn summary(c: &GoldCommit) -> Value {
        serde_json::json!({
            "view": c.view, "version": c.version, "full": c.full, "groupsTouched": c.groups_touched,
            "upserted": c.upserted, "deleted": c.deleted
        })
    }
}
