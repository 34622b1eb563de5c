//! The maintenance function: an EventBridge schedule (every table) or a direct invocation naming one
//! (`{"table": "orders"}`, also read from a scheduled rule's constant input or an event's `detail`)
//! runs [`crate::maintain`]. The answer is the run's report; a run with a failed task is the
//! invocation's error, so the function's error metric and alarm see it (the next run retries anyway).

use std::sync::Arc;

use serde_json::Value;

use super::{direct_error, to_json};
use crate::config::PipelineConfig;
use crate::error::Result;
use crate::maintain::Maintainer;

pub struct MaintainHandler {
    maintainer: Maintainer,
}

impl MaintainHandler {
    pub fn from_config(config: Arc<PipelineConfig>) -> Self {
        MaintainHandler {
            maintainer: Maintainer::new(config),
        }
    }

    /// The table an event names, if any: `table` at the top or in `detail`.
    fn table_of(event: &Value) -> Option<&str> {
        event
            .get("table")
            .or_else(|| event.get("detail").and_then(|d| d.get("table")))
            .and_then(Value::as_str)
    }

    pub async fn handle(&self, event: &Value) -> Result<Value> {
        let report = self.maintainer.run(Self::table_of(event)).await?;
        super::metrics::maintenance(&report, Self::table_of(event)).emit();
        let failed: Vec<String> = report
            .failed()
            .map(|t| {
                format!(
                    "{} {}: {}",
                    t.table,
                    t.task,
                    t.detail.as_deref().unwrap_or("")
                )
            })
            .collect();
        if !failed.is_empty() {
            return Err(direct_error(format!(
                "maintenance failed for {} task(s): {}",
                failed.len(),
                failed.join("; ")
            )));
        }
        to_json(&report, "maintenance report")
    }
}
