//! From what a batch did to the answer SQS needs: which messages failed (`batchItemFailures`), so only
//! those are retried and, after the queue's maxReceiveCount, reach its DLQ.

use std::collections::HashSet;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};

use crate::events::{Envelope, SourceObject};

/// Everything one invocation of a layer did, for logs, the CLI and tests.
#[derive(Debug)]
pub struct Outcome<C> {
    /// One per table (bronze, silver) or view (gold) the batch named.
    pub commits: Vec<C>,
    /// SQS message ids to report as `batchItemFailures`.
    pub failed_messages: Vec<String>,
    /// Objects outside the landing bucket or any table prefix: logged, never written (bronze).
    pub rejected: Vec<SourceObject>,
    /// Tables or views whose step failed as a whole, with the error.
    pub table_errors: Vec<(String, String)>,
}

impl<C> Default for Outcome<C> {
    fn default() -> Self {
        Outcome {
            commits: Vec::new(),
            failed_messages: Vec::new(),
            rejected: Vec::new(),
            table_errors: Vec::new(),
        }
    }
}

impl<C> Outcome<C> {
    /// The SQS partial-batch response.
    pub fn sqs_response(&self) -> SqsBatchResponse {
        sqs_response(&self.failed_messages)
    }
}

/// The partial-batch response naming `failed` message ids.
pub fn sqs_response(failed: &[String]) -> SqsBatchResponse {
    let mut r = SqsBatchResponse::default();
    r.batch_item_failures = failed
        .iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id.clone();
            f
        })
        .collect();
    r
}

/// The ids of the messages that failed: those that could not be parsed, and those whose content
/// `failed` says holds a failed item (an unreadable object, a table whose commit failed). A direct
/// event has no id and is never listed (its invocation fails instead). Each id once, in batch order.
pub fn failed_messages<T>(envelopes: &[Envelope<T>], failed: impl Fn(&T) -> bool) -> Vec<String> {
    let mut seen = HashSet::new();
    envelopes
        .iter()
        .filter(|e| e.content.as_ref().map_or(true, &failed))
        .filter_map(|e| e.message_id.clone())
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(
        id: Option<&str>,
        content: Result<Vec<&'static str>, &str>,
    ) -> Envelope<Vec<&'static str>> {
        Envelope::new(id.map(str::to_string), content.map_err(str::to_string))
    }

    #[test]
    fn unparsable_messages_and_messages_with_a_failed_item_fail_alone() {
        let batch = vec![
            env(Some("m1"), Ok(vec!["a.jsonl", "b.jsonl"])),
            env(Some("m2"), Err("not JSON")),
            env(Some("m3"), Ok(vec!["c.jsonl", "bad.jsonl"])),
            env(Some("m4"), Ok(vec![])),
            env(None, Ok(vec!["bad.jsonl"])),
            env(Some("m3"), Ok(vec!["bad.jsonl"])),
        ];
        let failed = failed_messages(&batch, |items| items.contains(&"bad.jsonl"));
        assert_eq!(failed, vec!["m2".to_string(), "m3".to_string()]);
        let none = failed_messages(&batch[..1], |_| false);
        assert!(none.is_empty());
    }

    #[test]
    fn the_response_names_exactly_the_failed_ids() {
        let r = sqs_response(&["m2".to_string(), "m3".to_string()]);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m3"}]})
        );
        let empty = serde_json::to_value(sqs_response(&[])).unwrap();
        assert_eq!(empty, serde_json::json!({"batchItemFailures": []}));
    }
}
