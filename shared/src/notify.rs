//! Layer chaining: after a commit a layer tells the next one "table T committed version V" on the next
//! layer's SQS queue. Explicit messages keep the chain working when the lake is on MinIO (which cannot
//! notify SQS); S3 events on `_delta_log/` keys are accepted too, so other writers can feed a layer.

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use serde::{Deserialize, Serialize};

use crate::config::QueueConfig;
use crate::error::{Error, Result};

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
}

impl Committed {
    pub fn new(layer: &str, table: &str, version: i64) -> Self {
        Committed {
            kind: COMMITTED.into(),
            layer: layer.into(),
            table: table.into(),
            version,
        }
    }
}

/// Sends committed messages to one queue.
#[derive(Clone, Debug)]
pub struct Notifier {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

/// An SQS client for queue `q` (its endpoint, region and keys when given; else the SDK's defaults).
pub async fn sqs_client(q: &QueueConfig) -> aws_sdk_sqs::Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(e) = &q.endpoint_url {
        loader = loader.endpoint_url(e);
    }
    if let Some(r) = &q.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let (Some(k), Some(s)) = (&q.access_key_id, &q.secret_access_key) {
        loader = loader.credentials_provider(Credentials::new(k, s, None, None, "pipeline-config"));
    }
    aws_sdk_sqs::Client::new(&loader.load().await)
}

impl Notifier {
    pub async fn new(q: &QueueConfig) -> Notifier {
        Notifier {
            client: sqs_client(q).await,
            queue_url: q.queue_url.clone(),
        }
    }

    pub async fn send(&self, msg: &Committed) -> Result<()> {
        let body = serde_json::to_string(msg).map_err(|e| Error::Event(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| {
                Error::Event(format!(
                    "cannot notify {} of {} {} v{}: {}",
                    self.queue_url,
                    msg.layer,
                    msg.table,
                    msg.version,
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                ))
            })?;
        Ok(())
    }
}
