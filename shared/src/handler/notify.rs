//! Announcing commits to the next layer's queue: the handlers own this, the writers know nothing of
//! queues. A failed announcement fails the messages that led to it, so it is retried.

use crate::config::QueueConfig;
use crate::error::{Error, Result};
use crate::events::Committed;

/// Sends committed messages to one queue.
#[derive(Clone, Debug)]
pub struct Notifier {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

/// An SQS client for queue `q` (its endpoint, region and keys when given; else the SDK's defaults).
pub async fn sqs_client(q: &QueueConfig) -> aws_sdk_sqs::Client {
    let keys = q
        .access_key_id
        .as_deref()
        .zip(q.secret_access_key.as_deref());
    let sdk =
        crate::storage::sdk_config(q.endpoint_url.as_deref(), q.region.as_deref(), keys).await;
    aws_sdk_sqs::Client::new(&sdk)
}

impl Notifier {
    pub async fn new(q: &QueueConfig) -> Notifier {
        Notifier {
            client: sqs_client(q).await,
            queue_url: q.queue_url.clone(),
        }
    }

    pub async fn send(&self, msg: &Committed) -> Result<()> {
        let body = serde_json::to_string(msg).map_err(|source| Error::Serialize {
            what: "committed message",
            source,
        })?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| Error::Notify {
                queue: self.queue_url.clone(),
                layer: msg.layer.clone(),
                table: msg.table.clone(),
                version: msg.version,
                source: Box::new(e),
            })?;
        Ok(())
    }
}
