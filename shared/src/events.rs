//! Event intake: everything that can tell a function "an object arrived", reduced to [`SourceObject`]s.
//!
//! Accepted shapes: an S3 notification delivered directly; an SQS batch whose message bodies are S3
//! notifications, SNS notifications wrapping them, or EventBridge "Object Created" events; an EventBridge
//! event delivered directly. `s3:TestEvent` messages carry no object and are acknowledged. S3 notification
//! keys are URL-encoded (`+` is a space, `%2B` is `+`) and are decoded here.
//!
//! S3 records are parsed with a minimal lenient struct instead of `aws_lambda_events::s3::S3Event`, whose
//! required fields (eventTime, userIdentity, requestParameters...) some S3-compatible stores omit.

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// One object to ingest, as named by an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceObject {
    pub bucket: String,
    pub key: String,
    /// ETag from the event, without quotes, when the event has one.
    pub etag: Option<String>,
}

/// One SQS message (or the single direct event): its id for partial batch failures and its objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// SQS `messageId`; `None` for a direct invocation.
    pub message_id: Option<String>,
    /// Objects named by the message; empty for a test event or a non-create event.
    pub objects: Result<Vec<SourceObject>, String>,
}

/// An invocation payload, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// An SQS batch: answer with `batchItemFailures`.
    Sqs(Vec<Envelope>),
    /// A direct S3 or EventBridge event: answer with success or an error (Lambda retries async events).
    Direct(Envelope),
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
    #[serde(default, rename = "eTag")]
    etag: Option<String>,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(default, rename = "eventName")]
    event_name: Option<String>,
    s3: S3Entity,
}

pub(crate) fn clean_etag(etag: &str) -> String {
    etag.trim().trim_matches('"').to_string()
}

/// Decodes an S3 notification key: `+` is a space, then percent-decoding (so `%2B` is a literal `+`).
pub fn decode_s3_key(raw: &str) -> Result<String> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|e| {
            Error::Event(format!(
                "object key `{raw}` is not valid percent-encoded UTF-8: {e}"
            ))
        })
}

fn from_s3_records(records: &Value) -> Result<Vec<SourceObject>> {
    let records: Vec<S3Record> = serde_json::from_value(records.clone())
        .map_err(|e| Error::Event(format!("bad S3 notification record: {e}")))?;
    let mut out = Vec::new();
    for r in records {
        let name = r.event_name.unwrap_or_default();
        // Only creations carry data; removals and restores are logged and acknowledged.
        if !name.is_empty() && !name.contains("ObjectCreated") {
            tracing::info!(event = %name, key = %r.s3.object.key, "ignoring non-create S3 event");
            continue;
        }
        out.push(SourceObject {
            bucket: r.s3.bucket.name,
            key: decode_s3_key(&r.s3.object.key)?,
            etag: r.s3.object.etag.as_deref().map(clean_etag),
        });
    }
    Ok(out)
}

fn from_eventbridge(v: &Value) -> Result<Vec<SourceObject>> {
    let detail_type = v
        .get("detail-type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if detail_type != "Object Created" {
        tracing::info!(
            detail_type,
            "ignoring EventBridge event that is not Object Created"
        );
        return Ok(Vec::new());
    }
    let detail = v
        .get("detail")
        .ok_or_else(|| Error::Event("EventBridge event without detail".into()))?;
    let bucket = detail.pointer("/bucket/name").and_then(Value::as_str);
    let key = detail.pointer("/object/key").and_then(Value::as_str);
    match (bucket, key) {
        // EventBridge keys are taken as-is (not form-encoded like S3 notification keys).
        (Some(bucket), Some(key)) => Ok(vec![SourceObject {
            bucket: bucket.to_string(),
            key: key.to_string(),
            etag: detail
                .pointer("/object/etag")
                .and_then(Value::as_str)
                .map(clean_etag),
        }]),
        _ => Err(Error::Event(
            "EventBridge Object Created event without bucket.name or object.key".into(),
        )),
    }
}

/// Objects named by one event document (an S3 notification, SNS envelope or EventBridge event).
pub fn objects_in(v: &Value) -> Result<Vec<SourceObject>> {
    if let Some(records) = v.get("Records") {
        return from_s3_records(records);
    }
    if v.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        tracing::info!("acknowledging s3:TestEvent");
        return Ok(Vec::new());
    }
    if v.get("Type").and_then(Value::as_str) == Some("Notification") {
        let msg = v
            .get("Message")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Event("SNS notification without Message".into()))?;
        return objects_in_text(msg);
    }
    if v.get("source").and_then(Value::as_str) == Some("aws.s3") && v.get("detail").is_some() {
        return from_eventbridge(v);
    }
    Err(Error::Event(
        "not an S3, SNS or EventBridge object event".into(),
    ))
}

/// What can trigger a downstream layer (silver, gold).
#[derive(Debug, Clone, PartialEq)]
pub enum LayerTrigger {
    /// A layer's explicit "committed" message.
    Committed(crate::notify::Committed),
    /// An object event, typically on a `<layer>/<table>/_delta_log/` key.
    Object(SourceObject),
}

/// Triggers in one message body: a committed message, or any object event [`objects_in`] accepts.
pub fn layer_triggers(text: &str) -> Result<Vec<LayerTrigger>> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Error::Event(format!("message body is not JSON: {e}")))?;
    if v.get("type").and_then(Value::as_str) == Some(crate::notify::COMMITTED) {
        let c = serde_json::from_value(v)
            .map_err(|e| Error::Event(format!("bad committed message: {e}")))?;
        return Ok(vec![LayerTrigger::Committed(c)]);
    }
    Ok(objects_in(&v)?
        .into_iter()
        .map(LayerTrigger::Object)
        .collect())
}

/// Like [`objects_in`] for a JSON text (an SQS body or SNS message).
pub fn objects_in_text(text: &str) -> Result<Vec<SourceObject>> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Error::Event(format!("message body is not JSON: {e}")))?;
    objects_in(&v)
}

/// Classifies a Lambda payload. Only a payload that is none of the known shapes is an error; a bad SQS
/// message is reported in its own envelope so the rest of the batch proceeds.
pub fn parse_invocation(payload: &Value) -> Result<Invocation> {
    if let Some(records) = payload.get("Records").and_then(Value::as_array) {
        let is_sqs = records
            .first()
            .and_then(|r| r.get("eventSource"))
            .and_then(Value::as_str)
            == Some("aws:sqs");
        if is_sqs {
            let envelopes = records
                .iter()
                .map(|r| Envelope {
                    message_id: r
                        .get("messageId")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    objects: match r.get("body").and_then(Value::as_str) {
                        Some(body) => objects_in_text(body).map_err(|e| e.to_string()),
                        None => Err("SQS record without body".to_string()),
                    },
                })
                .collect();
            return Ok(Invocation::Sqs(envelopes));
        }
    }
    Ok(Invocation::Direct(Envelope {
        message_id: None,
        objects: Ok(objects_in(payload)?),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A notification body exactly as LocalStack 4.13 delivers it to SQS (key percent-encoded).
    const LOCALSTACK_BODY: &str = r#"{"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventTime": "2026-11-25T17:30:00.123Z", "eventName": "ObjectCreated:Put", "userIdentity": {"principalId": "AIDAJDPLRKLG7UEXAMPLE"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"}, "responseElements": {"x-amz-request-id": "4c0f7b7c", "x-amz-id-2": "eftixk72aD6Ap51TnqcoF8eFidJG9Z/2"}, "s3": {"s3SchemaVersion": "1.0", "configurationId": "bronze", "bucket": {"name": "landing", "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": "arn:aws:s3:::landing"}, "object": {"key": "orders/dir%20a/file%2B1%20%C3%BC.jsonl", "sequencer": "0055AED6DCD90281E5", "eTag": "\"d41d8cd98f00b204e9800998ecf8427e\"", "size": 0}}}]}"#;

    #[test]
    fn decodes_localstack_percent_encoded_keys() {
        let objs = objects_in_text(LOCALSTACK_BODY).unwrap();
        assert_eq!(
            objs,
            vec![SourceObject {
                bucket: "landing".into(),
                key: "orders/dir a/file+1 ü.jsonl".into(),
                etag: Some("d41d8cd98f00b204e9800998ecf8427e".into())
            }]
        );
    }

    #[test]
    fn plus_is_a_space_and_percent_2b_is_plus() {
        assert_eq!(decode_s3_key("a+b%2Bc").unwrap(), "a b+c");
        assert!(decode_s3_key("bad%FF").is_err());
    }

    #[test]
    fn test_event_is_acknowledged_with_no_objects() {
        let body = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-25T17:00:00.000Z","Bucket":"landing","RequestId":"1","HostId":"h"}"#;
        assert_eq!(objects_in_text(body).unwrap(), vec![]);
    }

    #[test]
    fn sqs_batch_keeps_bad_messages_separate() {
        let payload = serde_json::json!({"Records": [
            {"messageId": "m1", "eventSource": "aws:sqs", "body": LOCALSTACK_BODY},
            {"messageId": "m2", "eventSource": "aws:sqs", "body": "not json"},
        ]});
        let Invocation::Sqs(envs) = parse_invocation(&payload).unwrap() else {
            panic!("not sqs")
        };
        assert_eq!(envs[0].message_id.as_deref(), Some("m1"));
        assert_eq!(envs[0].objects.as_ref().unwrap().len(), 1);
        assert!(envs[1].objects.as_ref().unwrap_err().contains("not JSON"));
    }

    #[test]
    fn sns_wrapped_and_eventbridge_and_direct() {
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "x", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": LOCALSTACK_BODY});
        assert_eq!(
            objects_in(&sns).unwrap()[0].key,
            "orders/dir a/file+1 ü.jsonl"
        );
        let eb = serde_json::json!({"version": "0", "detail-type": "Object Created", "source": "aws.s3",
            "detail": {"bucket": {"name": "landing"}, "object": {"key": "orders/a b.jsonl", "size": 3, "etag": "abc"}}});
        let objs = objects_in(&eb).unwrap();
        assert_eq!(
            (objs[0].key.as_str(), objs[0].etag.as_deref()),
            ("orders/a b.jsonl", Some("abc"))
        );
        let direct: Value = serde_json::from_str(LOCALSTACK_BODY).unwrap();
        let Invocation::Direct(env) = parse_invocation(&direct).unwrap() else {
            panic!("not direct")
        };
        assert_eq!(env.objects.unwrap().len(), 1);
        let removed = LOCALSTACK_BODY.replace("ObjectCreated:Put", "ObjectRemoved:Delete");
        assert!(objects_in_text(&removed).unwrap().is_empty());
        assert!(parse_invocation(&serde_json::json!({"hello": 1})).is_err());
    }
}
