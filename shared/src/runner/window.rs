//! Trigger windows off AWS: messages wait, grouped per table (bronze, silver) or view (gold), until
//! their group holds `max_batch` messages or its oldest has waited `max_wait`, as Lambda's event
//! source mapping does with `BatchSize` and `MaximumBatchingWindowInSeconds`. Pure bookkeeping: time
//! is passed in, so the tests need no clock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Layer;
use crate::config::{PipelineConfig, TriggerWindow};
use crate::events::{ObjectEnvelope, TriggerEnvelope};
use crate::handler::Downstream;

/// A received message's content, parsed once, for its layer's handler.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Objects(ObjectEnvelope),
    Triggers(TriggerEnvelope),
}

impl Parsed {
    /// When the oldest change behind the message entered the pipeline (epoch ms).
    pub fn origin_ms(&self) -> Option<i64> {
        match self {
            Parsed::Objects(e) => e.origin_ms(),
            Parsed::Triggers(e) => e.origin_ms(),
        }
    }
}

/// The instant a message's window starts: its origin (`origin_ms`, epoch ms, read at `now` /
/// `wall`), never later than now. A clock skew into the future counts as now.
pub fn since(now: Instant, wall: chrono::DateTime<chrono::Utc>, origin_ms: Option<i64>) -> Instant {
    let waited = origin_ms.map_or(0, |o| (wall.timestamp_millis() - o).max(0));
    now.checked_sub(Duration::from_millis(waited as u64))
        .unwrap_or(now)
}

/// The window of a message that names nothing known: handled at once (the handler decides its fate).
pub const IMMEDIATE: TriggerWindow = TriggerWindow {
    max_batch: 1,
    max_wait: Duration::ZERO,
};

/// The group a message belongs to (the first table or view it names) and that group's window.
pub fn group_of(layer: Layer, config: &PipelineConfig, parsed: &Parsed) -> (String, TriggerWindow) {
    let first = match (layer, parsed) {
        (Layer::Bronze, Parsed::Objects(env)) => env.content.as_ref().ok().and_then(|objects| {
            objects
                .iter()
                .find_map(|o| config.route(&o.bucket, &o.key))
                .map(|t| (t.name.clone(), t.trigger))
        }),
        (Layer::Silver, Parsed::Triggers(env)) => first_target(Downstream::Silver, config, env)
            .and_then(|t| config.table(&t).map(|c| (t, c.trigger))),
        (Layer::Gold, Parsed::Triggers(env)) => first_target(Downstream::Gold, config, env)
            .and_then(|v| config.view(&v).map(|c| (v, c.trigger))),
        _ => None,
    };
    first.unwrap_or_else(|| (String::new(), IMMEDIATE))
}

fn first_target(
    layer: Downstream,
    config: &PipelineConfig,
    env: &TriggerEnvelope,
) -> Option<String> {
    let triggers = env.content.as_ref().ok()?;
    layer
        .targets(config, triggers, &crate::handler::Windows::default())
        .ok()?
        .into_iter()
        .next()
}

/// Messages of one group waiting for their window.
struct Pending<M> {
    since: Instant,
    window: TriggerWindow,
    messages: Vec<M>,
}

impl<M> Pending<M> {
    fn due(&self, now: Instant) -> bool {
        self.messages.len() >= self.window.max_batch
            || now.duration_since(self.since) >= self.window.max_wait
    }
}

/// The groups waiting for their windows.
pub struct Batcher<M> {
    pending: BTreeMap<String, Pending<M>>,
}

impl<M> Default for Batcher<M> {
    fn default() -> Self {
        Batcher {
            pending: BTreeMap::new(),
        }
    }
}

impl<M> Batcher<M> {
    /// Adds a message to its group, whose window starts at its oldest message's `since` (its arrival,
    /// or earlier for a message whose upstream batch already waited: see [`since`]).
    pub fn push(&mut self, group: String, window: TriggerWindow, since: Instant, message: M) {
        let pending = self.pending.entry(group).or_insert_with(|| Pending {
            since,
            window,
            messages: Vec::new(),
        });
        pending.since = pending.since.min(since);
        pending.messages.push(message);
    }

    /// The groups whose window is over at `now`, removed from waiting.
    pub fn take_due(&mut self, now: Instant) -> Vec<(String, Vec<M>)> {
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.due(now))
            .map(|(k, _)| k.clone())
            .collect();
        due.into_iter()
            .filter_map(|k| self.pending.remove(&k).map(|p| (k, p.messages)))
            .collect()
    }

    /// How long until the soonest window ends (`None`: nothing waits).
    pub fn next_due(&self, now: Instant) -> Option<Duration> {
        self.pending
            .values()
            .map(|p| (p.since + p.window.max_wait).saturating_duration_since(now))
            .min()
    }

    /// Everything still waiting (on stop: released back to the queue).
    pub fn drain(self) -> Vec<M> {
        self.pending
            .into_values()
            .flat_map(|p| p.messages)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Committed, Envelope, LayerTrigger, SourceObject};

    fn window(max_batch: usize, secs: u64) -> TriggerWindow {
        TriggerWindow {
            max_batch,
            max_wait: Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_group_is_due_when_full_or_when_its_oldest_message_waited_long_enough() {
        let t0 = Instant::now();
        let mut b = Batcher::default();
        b.push("orders".into(), window(3, 60), t0, 1);
        b.push("orders".into(), window(3, 60), t0, 2);
        b.push("customers".into(), window(100, 5), t0, 10);
        assert!(b.take_due(t0).is_empty(), "nothing full, nothing waited");
        assert_eq!(b.next_due(t0), Some(Duration::from_secs(5)));
        b.push("orders".into(), window(3, 60), t0, 3);
        assert_eq!(b.take_due(t0), vec![("orders".to_string(), vec![1, 2, 3])]);
        let later = t0 + Duration::from_secs(5);
        assert!(b.take_due(later - Duration::from_millis(1)).is_empty());
        assert_eq!(b.take_due(later), vec![("customers".to_string(), vec![10])]);
        assert_eq!(b.next_due(later), None);
        // A new group's window starts with its first message, not with the batcher.
        b.push("orders".into(), window(3, 60), later, 4);
        assert_eq!(b.next_due(later), Some(Duration::from_secs(60)));
        b.push(String::new(), IMMEDIATE, later, 5);
        assert_eq!(b.take_due(later), vec![(String::new(), vec![5])]);
        assert_eq!(b.drain(), vec![4]);
    }

    /// A message announcing an upstream commit whose batch already waited its window is due at once;
    /// one whose batch waited part of it waits the rest; a new group takes its oldest message's start.
    #[test]
    fn a_window_counts_from_the_oldest_change_behind_a_message() {
        let t0 = Instant::now() + Duration::from_secs(3600); // room to go back
        let wall = chrono::Utc::now();
        let ago = |s: i64| Some(wall.timestamp_millis() - s * 1000);
        let mut b = Batcher::default();
        b.push(
            "orders".into(),
            window(100, 60),
            since(t0, wall, ago(60)),
            1,
        );
        assert_eq!(b.take_due(t0), vec![("orders".to_string(), vec![1])]);
        b.push(
            "orders".into(),
            window(100, 60),
            since(t0, wall, ago(20)),
            2,
        );
        assert_eq!(b.next_due(t0), Some(Duration::from_secs(40)));
        // A later message with an older origin pulls the group's window earlier.
        b.push(
            "orders".into(),
            window(100, 60),
            since(t0, wall, ago(50)),
            3,
        );
        assert_eq!(b.next_due(t0), Some(Duration::from_secs(10)));
        // No origin, or one in the future (clock skew): the window starts now.
        assert_eq!(since(t0, wall, None), t0);
        assert_eq!(since(t0, wall, ago(-5)), t0);
    }

    #[test]
    fn messages_group_under_the_window_of_the_first_table_or_view_they_name() {
        let cfg = PipelineConfig::from_toml(
            r#"
            [landing]
            uri = "s3://landing"
            [lake]
            uri = "s3://lake"
            [[table]]
            name = "orders"
            format = "jsonl"
            keys = ["id"]
            batch_size = 7
            batch_window_seconds = 30
            [[gold]]
            name = "revenue"
            sql = "SELECT id, COUNT(*) AS n FROM orders GROUP BY id"
            keys = ["id"]
            sources = ["orders"]
            batch_size = 9
            batch_window_seconds = 600
            "#,
            "test",
        )
        .unwrap();
        let objects = |key: &str| {
            Parsed::Objects(Envelope::new(
                None,
                Ok(vec![SourceObject {
                    bucket: "landing".into(),
                    key: key.into(),
                    etag: None,
                    version_id: None,
                    removed_at: None,
                }]),
            ))
        };
        let committed = |layer: &str| {
            Parsed::Triggers(Envelope::new(
                None,
                Ok(vec![LayerTrigger::Committed(Committed::new(
                    layer, "orders", 3,
                ))]),
            ))
        };
        assert_eq!(
            group_of(Layer::Bronze, &cfg, &objects("orders/a.jsonl")),
            ("orders".to_string(), window(7, 30))
        );
        assert_eq!(
            group_of(Layer::Bronze, &cfg, &objects("elsewhere/a.jsonl")),
            (String::new(), IMMEDIATE)
        );
        assert_eq!(
            group_of(Layer::Silver, &cfg, &committed("bronze")),
            ("orders".to_string(), window(7, 30))
        );
        assert_eq!(
            group_of(Layer::Gold, &cfg, &committed("silver")),
            ("revenue".to_string(), window(9, 600))
        );
        let unparsable = Parsed::Triggers(Envelope::new(None, Err("not JSON".into())));
        assert_eq!(
            group_of(Layer::Gold, &cfg, &unparsable),
            (String::new(), IMMEDIATE)
        );
    }
}
