//! Changes silver cannot use (an unknown DMS operation, a Debezium event without keys...) go to
//! `quarantine/<table>` with a `silver:` reason, once per bronze range: guarded by silver's watermark app
//! id in the quarantine table.

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
        if let Some(t) = &existing {
            if lake::txn_version(t, &app).await?.is_some_and(|v| v >= to) {
                return Ok(());
            }
        }
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
        quarantine::append(
            &location,
            &table.name,
            existing,
            batch,
            vec![lake::txn(&app, to)],
            metadata,
        )
        .await
    }
}
