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
        let mut send = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body);
        if let Some((group, dedup)) = fifo_ids(&self.queue_url, msg) {
            send = send.message_group_id(group).message_deduplication_id(dedup);
        }
        send.send().await.map_err(|e| Error::Notify {
            queue: self.queue_url.clone(),
            layer: msg.layer.clone(),
            table: msg.table.clone(),
            version: msg.version,
            source: Box::new(e),
        })?;
        Ok(())
    }
}

/// On a FIFO queue (`.fifo`, what the AWS template deploys between layers): the message group is the
/// table, so one table's steps run one at a time (Lambda hands a group's messages to one invocation
/// at a time) while other tables proceed; a version announced twice (a redelivered upstream batch)
/// within SQS's 5-minute deduplication interval is delivered once.
fn fifo_ids(queue_url: &str, msg: &Committed) -> Option<(String, String)> {
    queue_url.ends_with(".fifo").then(|| {
        let id = format!("{}/{}/{}", msg.layer, msg.table, msg.version);
        // SQS takes at most 128 characters (table names may have 128): a long id keeps its start and
        // gains a hash of the whole (FNV-1a: stable across builds, unlike std's hasher).
        let id = if id.len() <= MAX_SQS_ID {
            id
        } else {
            let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
            format!("{}#{hash:016x}", &id[..MAX_SQS_ID - 17])
        };
        (msg.table.clone(), id)
    })
}

/// Longest SQS message group or deduplication id.
const MAX_SQS_ID: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_queues_group_by_table_and_drop_a_version_announced_twice() {
        let c = Committed::new("bronze", "orders", 7);
        let url = "https://sqs.us-east-1.amazonaws.com/1/stack-SilverQueue-X.fifo";
        assert_eq!(
            fifo_ids(url, &c),
            Some(("orders".into(), "bronze/orders/7".into()))
        );
        // The same version from a redelivered batch: the same deduplication id.
        assert_eq!(fifo_ids(url, &c.clone().since(Some(5))), fifo_ids(url, &c));
        assert_ne!(
            fifo_ids(url, &Committed::new("bronze", "orders", 8)),
            fifo_ids(url, &c)
        );
        assert_eq!(
            fifo_ids("http://127.0.0.1:4566/000/silver-committed", &c),
            None
        );
        // Names of 128 characters: ids stay within SQS's 128 and still tell versions apart.
        let long = "t".repeat(128);
        let (_, a) = fifo_ids(url, &Committed::new("bronze", &long, 1)).unwrap();
        let (_, b) = fifo_ids(url, &Committed::new("bronze", &long, 2)).unwrap();
        assert!(a.len() <= 128 && b.len() <= 128 && a != b, "{a} {b}");
    }
}
