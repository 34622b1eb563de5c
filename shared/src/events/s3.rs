//! Object events: an S3 notification (direct, or as an SQS or SNS message body), an EventBridge
//! "Object Created" or "Object Deleted" event, and S3's `s3:TestEvent`, each reduced to [`SourceObject`]s.
//!
//! S3 records are parsed with a minimal lenient struct instead of `aws_lambda_events::s3::S3Event`, whose
//! required fields (eventTime, userIdentity, requestParameters...) some S3-compatible stores omit. S3
//! notification keys are URL-encoded (`+` is a space, `%2B` is `+`) and are decoded here.

use serde::Deserialize;
use serde_json::Value;

use super::{parse_json, SourceObject};
use crate::error::{Error, Result};

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
    #[serde(default, rename = "eTag")]
    etag: Option<String>,
    #[serde(default, rename = "versionId")]
    version_id: Option<String>,
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
    #[serde(default, rename = "eventTime")]
    event_time: Option<String>,
    s3: S3Entity,
}

pub fn clean_etag(etag: &str) -> String {
    etag.trim().trim_matches('"').to_string()
}

/// Decodes an S3 notification key: `+` is a space, then percent-decoding (so `%2B` is a literal `+`).
pub fn decode_s3_key(raw: &str) -> Result<String> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|e| {
            Error::event(format!(
                "object key `{raw}` is not valid percent-encoded UTF-8: {e}"
            ))
        })
}

fn from_s3_records(records: &Value) -> Result<Vec<SourceObject>> {
    let records: Vec<S3Record> =
        serde_json::from_value(records.clone()).map_err(|e| Error::Event {
            reason: "bad S3 notification record".into(),
            source: Some(e),
        })?;
    let mut out = Vec::new();
    for r in records {
        let name = r.event_name.unwrap_or_default();
        // Creations carry data; removals are passed on (binary tables record them); restores and
        // the rest are logged and acknowledged.
        let removed = name.contains("ObjectRemoved");
        if !name.is_empty() && !name.contains("ObjectCreated") && !removed {
            tracing::info!(event = %name, key = %r.s3.object.key, "ignoring non-create S3 event");
            continue;
        }
        let removed_at = removed.then(|| {
            r.event_time
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
                .unwrap_or_else(chrono::Utc::now)
        });
        out.push(SourceObject {
            bucket: r.s3.bucket.name,
            key: decode_s3_key(&r.s3.object.key)?,
            etag: r.s3.object.etag.as_deref().map(clean_etag),
            version_id: r
                .s3
                .object
                .version_id
                .filter(|v| !v.is_empty() && v != "null"),
            removed_at,
        });
    }
    Ok(out)
}

fn from_eventbridge(v: &Value) -> Result<Vec<SourceObject>> {
    let detail_type = v
        .get("detail-type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // Creations carry data; deletions are passed on (binary tables record them), as for S3
    // notifications; anything else (restores, tagging) is acknowledged.
    let removed = detail_type == "Object Deleted";
    if detail_type != "Object Created" && !removed {
        tracing::info!(
            detail_type,
            "ignoring EventBridge event that is neither Object Created nor Object Deleted"
        );
        return Ok(Vec::new());
    }
    let detail = v
        .get("detail")
        .ok_or_else(|| Error::event("EventBridge event without detail"))?;
    let bucket = detail.pointer("/bucket/name").and_then(Value::as_str);
    let key = detail.pointer("/object/key").and_then(Value::as_str);
    let removed_at = removed.then(|| {
        v.get("time")
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(chrono::Utc::now)
    });
    match (bucket, key) {
        // EventBridge keys are taken as-is (not form-encoded like S3 notification keys).
        (Some(bucket), Some(key)) => Ok(vec![SourceObject {
            bucket: bucket.to_string(),
            key: key.to_string(),
            etag: detail
                .pointer("/object/etag")
                .and_then(Value::as_str)
                .map(clean_etag),
            version_id: detail
                .pointer("/object/version-id")
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty() && *v != "null")
                .map(str::to_string),
            removed_at,
        }]),
        _ => Err(Error::event(format!(
            "EventBridge {detail_type} event without bucket.name or object.key"
        ))),
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
            .ok_or_else(|| Error::event("SNS notification without Message"))?;
        return objects_in(&parse_json(msg)?);
    }
    if v.get("source").and_then(Value::as_str) == Some("aws.s3") && v.get("detail").is_some() {
        return from_eventbridge(v);
    }
    Err(Error::event("not an S3, SNS or EventBridge object event"))
}
