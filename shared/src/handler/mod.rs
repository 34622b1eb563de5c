//! What the Lambda functions call: a payload in, the JSON answer out. Each handler owns its layer's
//! writer and the [`notify::Notifier`] that announces commits to the next layer; the writers know
//! nothing of queues or payloads.
//!
//! [`bronze`] routes landing objects to tables; [`downstream`] serves silver and gold, fed by the
//! layer before; [`maintain`] runs maintenance on a schedule; [`batch`] maps what a batch did to SQS
//! partial batch failures.

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

pub mod batch;
pub mod bronze;
pub mod downstream;
pub mod maintain;
mod metrics;
pub mod notify;
#[cfg(test)]
mod tests;
pub mod windows;

pub use batch::{failed_messages, sqs_response, Outcome};
pub use bronze::{BatchOutcome, BronzeHandler};
pub use downstream::{Downstream, GoldHandler, GoldOutcome, SilverHandler, SilverOutcome};
pub use maintain::MaintainHandler;
pub use notify::Notifier;
pub use windows::{Windows, SCHEDULED_ENV};

/// How many tables (or views) of one batch are processed at once.
const TABLE_CONCURRENCY: usize = 4;

fn to_json(value: &impl Serialize, what: &'static str) -> Result<Value> {
    serde_json::to_value(value).map_err(|source| Error::Serialize { what, source })
}

/// The pipeline file named by `LAKEHOUSE_CONFIG`, loaded once per cold start; its load time is logged
/// (part of a function's init phase, next to the runtime's own start).
pub async fn config_from_env() -> Result<std::sync::Arc<crate::PipelineConfig>> {
    let started = std::time::Instant::now();
    let config = crate::PipelineConfig::from_env().await?;
    tracing::info!(
        ms = started.elapsed().as_secs_f64() * 1e3,
        tables = config.tables.len(),
        views = config.gold.len(),
        "config loaded"
    );
    Ok(std::sync::Arc::new(config))
}

/// A direct invocation whose work failed: returned as the invocation's error so Lambda retries it.
fn direct_error(summary: String) -> Error {
    Error::StepFailed { summary }
}
