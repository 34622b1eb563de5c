//! The runner's side of SQS after a batch: delete what succeeded, release what waits (on stop).

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
};
use tracing::error;

/// Deletes `messages` (10 per request). A failed delete is logged: the messages come back and are
/// handled again, idempotently.
pub async fn delete(sqs: &aws_sdk_sqs::Client, queue_url: &str, messages: &[&Message]) {
    for chunk in messages.chunks(10) {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        if let Err(e) = sqs
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            error!(queue = queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "delete failed");
        }
    }
}

/// Makes `messages` visible again now instead of after their visibility timeout.
pub async fn release(sqs: &aws_sdk_sqs::Client, queue_url: &str, messages: &[Message]) {
    for chunk in messages.chunks(10) {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        if let Err(e) = sqs
            .change_message_visibility_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            // Not released: they come back after their visibility timeout instead.
            error!(queue = queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "release failed");
        }
    }
}
