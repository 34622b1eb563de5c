//! Changes silver cannot use (an unknown DMS operation, a Debezium event without keys...) go to
//! `quarantine/<table>` with a `silver:` reason and the event's text, once per bronze range: guarded by
//! silver's watermark app id in the quarantine table. One event is quarantined once however many objects
//! carry it (a connector re-delivering after a restart or rebalance): copies in the same step are folded
//! into one row naming where they were, and each quarantined event leaves a marker (the hash of its
//! text) in the quarantine table, so a copy arriving in a later step is recognised and counted, not
//! quarantined again, while the marker lives (the table's 30-day transaction retention).

use std::collections::HashMap;

use serde_json::json;

use super::{watermark_app_id, SilverWriter};
use crate::cdc;
use crate::config::TableConfig;
use crate::error::Result;
use crate::lake;
use crate::quarantine::{self, QuarantinedObject};
use crate::schema::BadRow;

impl SilverWriter {
    /// Rows silver cannot use go to `quarantine/<table>` (reason prefixed `silver:`), once per bronze
    /// range: guarded by the same watermark app id in the quarantine table.
    pub(super) async fn quarantine_rejects(
        &self,
        table: &TableConfig,
        rejected: &[cdc::RejectedChange],
        to: i64,
    ) -> Result<()> {
        if rejected.is_empty() {
            return Ok(());
        }
        let location = self.config.quarantine_location(&table.name);
        let app = watermark_app_id(&table.name);
        let existing = lake::open(&location).await?;
        let markers = match &existing {
            Some(t) => {
                let markers = self.markers.at(&location, t).await?;
                if markers.get(&app).is_some_and(|v| v >= to) {
                    return Ok(());
                }
                Some(markers)
            }
            None => None,
        };
        // Copies of one event (a connector re-delivering after a restart or rebalance writes it into
        // another object) are quarantined once, naming where the copies were.
        let mut copies: HashMap<(&str, &str), Vec<&cdc::RejectedChange>> = HashMap::new();
        let mut first: Vec<&cdc::RejectedChange> = Vec::new();
        for r in rejected {
            match r.raw.as_deref() {
                Some(raw) => {
                    let seen = copies.entry((raw, r.reason.as_str())).or_default();
                    if seen.is_empty() {
                        first.push(r);
                    }
                    seen.push(r);
                }
                None => first.push(r),
            }
        }
        // Events an earlier step quarantined (their markers are in the table): counted, not repeated.
        let mut event_txns = Vec::new();
        let mut earlier = 0;
        let first: Vec<&cdc::RejectedChange> = first
            .into_iter()
            .filter(|r| {
                let Some(raw) = r.raw.as_deref() else {
                    return true;
                };
                let id = event_marker(raw);
                if markers.as_ref().is_some_and(|m| m.get(&id).is_some()) {
                    earlier += 1;
                    return false;
                }
                // Bounded like an object's rejected rows: past it, copies are not recognised.
                if event_txns.len() < table.limits.max_rejected_rows {
                    event_txns.push(lake::txn(&id, 1));
                }
                true
            })
            .collect();
        if earlier > 0 {
            tracing::info!(table = %table.name, copies = earlier, "silver: rejected events already quarantined by an earlier step (copies) not quarantined again");
        }
        if first.is_empty() {
            return Ok(());
        }
        let mut by_object: Vec<QuarantinedObject> = Vec::new();
        for r in first {
            let mut reason = format!("silver: {}", r.reason);
            if let Some(raw) = r.raw.as_deref() {
                let others = &copies[&(raw, r.reason.as_str())][1..];
                if !others.is_empty() {
                    let at: Vec<String> = others
                        .iter()
                        .take(5)
                        .map(|o| format!("{} row {}", o.key, o.row))
                        .collect();
                    reason.push_str(&format!(
                        " ({} more copies of this event: {}{})",
                        others.len(),
                        at.join(", "),
                        if others.len() > 5 { ", ..." } else { "" }
                    ));
                }
            }
            let bad = BadRow {
                row: Some(r.row as u64),
                raw: r.raw.clone(),
                reason,
            };
            match by_object
                .iter_mut()
                .find(|o| o.key == r.key && o.etag == r.etag)
            {
                Some(o) => o.rows.push(bad),
                None => by_object.push(QuarantinedObject {
                    key: r.key.clone(),
                    etag: r.etag.clone(),
                    rows: vec![bad],
                }),
            }
        }
        let batch = quarantine::to_batch(&by_object, chrono::Utc::now().timestamp_micros())?;
        let metadata = HashMap::from([
            ("lakehouse.layer".to_string(), json!("silver_quarantine")),
            ("lakehouse.table".to_string(), json!(table.name)),
            ("lakehouse.bronzeVersion".to_string(), json!(to)),
        ]);
        let txns: Vec<_> = std::iter::once(lake::txn(&app, to))
            .chain(event_txns)
            .collect();
        let v = quarantine::append(
            &location,
            &table.name,
            existing,
            batch,
            txns.clone(),
            metadata,
        )
        .await?;
        self.markers.record(&location, v, &txns);
        Ok(())
    }
}

/// The marker of a quarantined event: the hash of its text (XXH64, stable across releases).
fn event_marker(raw: &str) -> String {
    format!(
        "silver-event/{:016x}",
        twox_hash::XxHash64::oneshot(0, raw.as_bytes())
    )
}
