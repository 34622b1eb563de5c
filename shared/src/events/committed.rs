//! Layer chaining messages: after a commit a layer tells the next one "table T committed version V" on
//! the next layer's SQS queue. Explicit messages keep the chain working when the lake is on MinIO
//! (which cannot notify SQS); S3 events on `_delta_log/` keys are accepted too, so other writers can
//! feed a layer.

use serde::{Deserialize, Serialize};

/// `type` of a committed message.
pub const COMMITTED: &str = "lakehouse.committed";

/// "`layer` table `table` committed version `version`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    #[serde(rename = "type")]
    pub kind: String,
    pub layer: String,
    pub table: String,
    pub version: i64,
    /// When the oldest message behind this commit entered the pipeline (epoch ms): the next layer's
    /// trigger window counts from it, so a change waits one window end to end, not one per layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
}

impl Committed {
    pub fn new(layer: &str, table: &str, version: i64) -> Self {
        Committed {
            kind: COMMITTED.into(),
            layer: layer.into(),
            table: table.into(),
            version,
            since_ms: None,
        }
    }

    /// The same, its window counting from `since_ms`.
    pub fn since(mut self, since_ms: Option<i64>) -> Self {
        self.since_ms = since_ms;
        self
    }
}
