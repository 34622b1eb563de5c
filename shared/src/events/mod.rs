//! Event intake: every message shape a function accepts, parsed once into what it names.
//!
//! A Lambda payload is either an SQS batch (answered with `batchItemFailures`) or one direct event. Each
//! message body is parsed here, once, into the body's content: for bronze the landing objects it names
//! ([`s3`]: S3 notifications, SNS-wrapped or not, EventBridge "Object Created", `s3:TestEvent`), for
//! silver and gold the [`LayerTrigger`]s it carries (a [`Committed`] message of the layer before, or an
//! object event on a `_delta_log/` key). The local runner builds the same envelopes from the SQS
//! messages it receives, so the handlers never see raw JSON.

use serde_json::Value;

use crate::error::{Error, Result};

mod committed;
pub mod s3;

pub use committed::{Committed, COMMITTED};
pub use s3::{clean_etag, decode_s3_key, objects_in};

/// One object to ingest, as named by an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SourceObject {
    pub bucket: String,
    pub key: String,
    /// ETag from the event, without quotes, when the event has one.
    pub etag: Option<String>,
    /// The object version the event is about (versioned buckets): exactly that version is read, so a
    /// key overwritten twice has each version ingested once, whatever order the events arrive in.
    pub version_id: Option<String>,
    /// A removal (`s3:ObjectRemoved:*`) at this time: only binary tables record it (as a deleted row);
    /// the others acknowledge it.
    pub removed_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What can trigger a downstream layer (silver, gold).
#[derive(Debug, Clone, PartialEq)]
pub enum LayerTrigger {
    /// A layer's explicit "committed" message.
    Committed(Committed),
    /// An object event, typically on a `<layer>/<table>/_delta_log/` key.
    Object(SourceObject),
    /// A schedule's "the window of these tables (silver) or views (gold) is over": what runs the
    /// steps whose window is longer than a Lambda event source mapping can wait.
    Scheduled(Scheduled),
}

/// The input of a schedule (`lakehouse aws-template` writes it):
/// `{"type": "scheduled", "step": "silver", "names": ["ledger"]}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Scheduled {
    #[serde(rename = "type")]
    pub kind: String,
    /// `silver` (names are tables) or `gold` (names are views).
    pub step: String,
    pub names: Vec<String>,
}

/// The `type` of a [`Scheduled`] input.
pub const SCHEDULED: &str = "scheduled";

impl Scheduled {
    pub fn new(step: &str, names: Vec<String>) -> Self {
        Scheduled {
            kind: SCHEDULED.into(),
            step: step.into(),
            names,
        }
    }
}

/// One SQS message (or the single direct event): its id for partial batch failures and its parsed
/// content, or why it could not be parsed (the message then fails on its own; the batch proceeds).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<T> {
    /// SQS `messageId`; `None` for a direct invocation.
    pub message_id: Option<String>,
    pub content: std::result::Result<T, String>,
    /// SQS `SentTimestamp` (epoch ms), when the message carries it.
    pub sent_ms: Option<i64>,
}

impl<T> Envelope<T> {
    /// A message's envelope; see [`Envelope::sent`] for its send time.
    pub fn new(message_id: Option<String>, content: std::result::Result<T, String>) -> Self {
        Envelope {
            message_id,
            content,
            sent_ms: None,
        }
    }

    pub fn sent(mut self, sent_ms: Option<i64>) -> Self {
        self.sent_ms = sent_ms;
        self
    }
}

impl ObjectEnvelope {
    /// When this message entered the pipeline (epoch ms): when it was sent.
    pub fn origin_ms(&self) -> Option<i64> {
        self.sent_ms
    }
}

impl TriggerEnvelope {
    /// When the oldest change behind this message entered the pipeline (epoch ms): what its committed
    /// messages say, else when it was sent.
    pub fn origin_ms(&self) -> Option<i64> {
        let carried = self.content.as_ref().ok().and_then(|ts| {
            ts.iter()
                .filter_map(|t| match t {
                    LayerTrigger::Committed(c) => c.since_ms,
                    LayerTrigger::Object(_) | LayerTrigger::Scheduled(_) => None,
                })
                .min()
        });
        carried.or(self.sent_ms)
    }
}

/// The earlier of two optional instants (epoch ms); an unknown one does not count.
pub fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A message naming landing objects (bronze's input).
pub type ObjectEnvelope = Envelope<Vec<SourceObject>>;
/// A message naming upstream commits (silver's and gold's input).
pub type TriggerEnvelope = Envelope<Vec<LayerTrigger>>;

/// An invocation payload, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation<T> {
    /// An SQS batch: answer with `batchItemFailures`.
    Sqs(Vec<Envelope<T>>),
    /// A direct event (S3, EventBridge, a committed message): answer with success or an error, so
    /// Lambda retries it.
    Direct(Envelope<T>),
}

/// What a message body can hold, parsed from its JSON.
pub trait Content: Sized {
    fn parse(v: &Value) -> Result<Self>;

    /// Parses a message body (an SQS body or an SNS message).
    fn parse_text(text: &str) -> Result<Self> {
        Self::parse(&parse_json(text)?)
    }
}

impl Content for Vec<SourceObject> {
    fn parse(v: &Value) -> Result<Self> {
        objects_in(v)
    }
}

impl Content for Vec<LayerTrigger> {
    /// A committed message, a schedule's input, or any object event [`objects_in`] accepts.
    fn parse(v: &Value) -> Result<Self> {
        fn typed<T: serde::de::DeserializeOwned>(v: &Value, what: &str) -> Result<T> {
            serde_json::from_value(v.clone()).map_err(|e| Error::Event {
                reason: format!("bad {what}"),
                source: Some(e),
            })
        }
        Ok(match v.get("type").and_then(Value::as_str) {
            Some(SCHEDULED) => vec![LayerTrigger::Scheduled(typed(v, "scheduled input")?)],
            Some(COMMITTED) => vec![LayerTrigger::Committed(typed(v, "committed message")?)],
            _ => objects_in(v)?
                .into_iter()
                .map(LayerTrigger::Object)
                .collect(),
        })
    }
}

pub(crate) fn parse_json(text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| Error::Event {
        reason: "message body is not JSON".into(),
        source: Some(e),
    })
}

impl<T: Content> Envelope<T> {
    /// An SQS message: its id and body.
    pub fn from_message(message_id: Option<String>, body: &str) -> Self {
        Envelope::new(message_id, T::parse_text(body).map_err(|e| error_text(&e)))
    }
}

/// An error with its sources, on one line (what a failed message is logged with).
fn error_text(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Classifies a Lambda payload and parses its messages. Only a payload that is none of the known shapes
/// is an error; a bad SQS message is reported in its own envelope so the rest of the batch proceeds.
pub fn parse_invocation<T: Content>(payload: &Value) -> Result<Invocation<T>> {
    if let Some(records) = payload.get("Records").and_then(Value::as_array) {
        let is_sqs = records
            .first()
            .and_then(|r| r.get("eventSource"))
            .and_then(Value::as_str)
            == Some("aws:sqs");
        if is_sqs {
            let envelopes = records
                .iter()
                .map(|r| {
                    let id = r
                        .get("messageId")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    let sent = r
                        .pointer("/attributes/SentTimestamp")
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse().ok());
                    match r.get("body").and_then(Value::as_str) {
                        Some(body) => Envelope::from_message(id, body),
                        None => Envelope::new(id, Err("SQS record without body".to_string())),
                    }
                    .sent(sent)
                })
                .collect();
            return Ok(Invocation::Sqs(envelopes));
        }
    }
    Ok(Invocation::Direct(Envelope::new(
        None,
        Ok(T::parse(payload)?),
    )))
}

#[cfg(test)]
mod tests {
    //! Every accepted shape, from fixture files captured from LocalStack or written after AWS's
    //! documented examples.
    use super::*;

    const S3_PUT: &str = include_str!("fixtures/s3_put_localstack.json");
    const S3_TEST_EVENT: &str = include_str!("fixtures/s3_test_event.json");
    const SNS: &str = include_str!("fixtures/sns_wrapped_s3.json");
    const EVENTBRIDGE: &str = include_str!("fixtures/eventbridge_object_created.json");
    /// As LocalStack's S3 sends it to EventBridge (a versioned bucket: a delete marker).
    const EVENTBRIDGE_DELETED: &str = include_str!("fixtures/eventbridge_object_deleted.json");
    const COMMITTED_MSG: &str = include_str!("fixtures/committed_bronze.json");
    const SQS_BATCH: &str = include_str!("fixtures/sqs_batch_bronze.json");

    fn objects(text: &str) -> Vec<SourceObject> {
        Vec::<SourceObject>::parse_text(text).unwrap()
    }

    #[test]
    fn decodes_localstack_percent_encoded_keys() {
        assert_eq!(
            objects(S3_PUT),
            vec![SourceObject {
                bucket: "landing".into(),
                key: "orders/dir a/file+1 ü.jsonl".into(),
                etag: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
                version_id: None,
                removed_at: None,
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
        assert_eq!(objects(S3_TEST_EVENT), vec![]);
    }

    #[test]
    fn sqs_batch_keeps_bad_messages_separate() {
        let payload: Value = serde_json::from_str(SQS_BATCH).unwrap();
        let Invocation::Sqs(envs) = parse_invocation::<Vec<SourceObject>>(&payload).unwrap() else {
            panic!("not sqs")
        };
        assert_eq!(envs.len(), 3);
        assert_eq!(envs[0].message_id.as_deref(), Some("m1"));
        assert_eq!(envs[0].content.as_ref().unwrap().len(), 1);
        assert_eq!(envs[0].sent_ms, Some(1545082649183), "SQS SentTimestamp");
        assert_eq!(envs[1].sent_ms, None);
        assert!(envs[1].content.as_ref().unwrap_err().contains("not JSON"));
        assert_eq!(envs[2].content, Ok(vec![]), "the test event names nothing");
    }

    /// A committed message carries when its oldest change entered the pipeline; older producers'
    /// messages (without it) count from when they were sent.
    #[test]
    fn a_trigger_counts_from_the_oldest_change_it_carries_else_from_its_send_time() {
        let c = Committed::new("bronze", "orders", 4).since(Some(1_000));
        let text = serde_json::to_string(&c).unwrap();
        let env = TriggerEnvelope::from_message(None, &text).sent(Some(5_000));
        assert_eq!(env.origin_ms(), Some(1_000));
        let old = r#"{"type": "lakehouse.committed", "layer": "bronze", "table": "orders", "version": 4}"#;
        let env = TriggerEnvelope::from_message(None, old).sent(Some(5_000));
        assert_eq!(env.origin_ms(), Some(5_000));
        assert!(
            !serde_json::to_string(&Committed::new("bronze", "orders", 4))
                .unwrap()
                .contains("since"),
            "no field when unknown"
        );
        assert_eq!(earliest(Some(3), None), Some(3));
        assert_eq!(earliest(Some(3), Some(2)), Some(2));
    }

    #[test]
    fn sns_wrapped_and_eventbridge_and_direct() {
        assert_eq!(objects(SNS)[0].key, "orders/dir a/file+1 ü.jsonl");
        let objs = objects(EVENTBRIDGE);
        assert_eq!(
            (objs[0].key.as_str(), objs[0].etag.as_deref()),
            ("orders/a b.jsonl", Some("abc"))
        );
        let direct: Value = serde_json::from_str(S3_PUT).unwrap();
        let Invocation::Direct(env) = parse_invocation::<Vec<SourceObject>>(&direct).unwrap()
        else {
            panic!("not direct")
        };
        assert_eq!(env.content.unwrap().len(), 1);
        // A removal is passed on with its time (binary tables record it); a restore is not.
        let removed = S3_PUT.replace("ObjectCreated:Put", "ObjectRemoved:Delete");
        assert!(objects(&removed)[0].removed_at.is_some());
        let restored = S3_PUT.replace("ObjectCreated:Put", "ObjectRestore:Completed");
        assert!(objects(&restored).is_empty());
        assert!(objects(S3_PUT)[0].removed_at.is_none());
        let deleted = objects(EVENTBRIDGE_DELETED);
        assert_eq!(
            (deleted[0].key.as_str(), deleted[0].version_id.as_deref()),
            ("hot/a.jsonl", Some("AaJSrWuTCtMZpZZ8V8MtLX4pF_lhT2V2"))
        );
        assert_eq!(
            deleted[0].removed_at.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-12-07T22:43:46+00:00")
        );
        assert!(
            objects(&EVENTBRIDGE.replace("Object Created", "Object Restore Completed")).is_empty()
        );
        assert!(parse_invocation::<Vec<SourceObject>>(&serde_json::json!({"hello": 1})).is_err());
    }

    #[test]
    fn layer_triggers_are_committed_messages_or_object_events() {
        let t = Vec::<LayerTrigger>::parse_text(COMMITTED_MSG).unwrap();
        assert_eq!(
            t,
            vec![LayerTrigger::Committed(Committed::new(
                "bronze", "orders", 7
            ))]
        );
        let t = Vec::<LayerTrigger>::parse_text(S3_PUT).unwrap();
        assert!(matches!(&t[..], [LayerTrigger::Object(o)] if o.bucket == "landing"));
        let t = Vec::<LayerTrigger>::parse_text(
            r#"{"type": "scheduled", "step": "gold", "names": ["daily_revenue"]}"#,
        )
        .unwrap();
        assert_eq!(
            t,
            vec![LayerTrigger::Scheduled(Scheduled::new(
                "gold",
                vec!["daily_revenue".into()]
            ))]
        );
        assert!(
            Vec::<LayerTrigger>::parse_text(r#"{"type": "scheduled", "step": "gold"}"#).is_err()
        );
        let bad = COMMITTED_MSG.replace("\"version\": 7", "\"version\": \"seven\"");
        let e = Vec::<LayerTrigger>::parse_text(&bad).unwrap_err();
        assert!(
            matches!(
                &e,
                Error::Event {
                    source: Some(_),
                    ..
                }
            ),
            "the serde error is kept as the source: {e:?}"
        );
        let env = TriggerEnvelope::from_message(Some("m".into()), &bad);
        assert!(
            env.content.unwrap_err().contains("invalid type"),
            "the failed message's text carries the cause"
        );
    }
}
