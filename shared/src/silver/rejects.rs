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
        let mut by_object: Vec<QuarantinedObject> = Vec::new();
        for r in rejected {
            let bad = BadRow {
                row: Some(r.row as u64),
                raw: None,
                reason: format!("silver: {}", r.reason),
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
