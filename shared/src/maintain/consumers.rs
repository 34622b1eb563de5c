//! What downstream layers have consumed: the rule that keeps maintenance from removing a commit a
//! consumer still has to read. Silver consumes bronze (its watermark, and the tombstone table's), gold
//! consumes silver (each view's watermark per source).

use crate::config::PipelineConfig;
use crate::error::Result;
use crate::lake;
use crate::{gold, silver};

/// How far every consumer of a table has read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumed {
    /// Nobody reads the table's log incrementally.
    Free,
    /// Every consumer has applied the versions up to and including this one.
    Upto(i64),
    /// A consumer has not started (or has no watermark): it will read from version 0.
    Nothing,
}

impl Consumed {
    /// The lowest version the table's log must keep, at table version `latest`.
    pub fn keep_from(self, latest: i64) -> i64 {
        match self {
            Consumed::Free => latest,
            Consumed::Upto(v) => (v + 1).min(latest),
            Consumed::Nothing => 0,
        }
    }

    fn and(self, other: Consumed) -> Consumed {
        match (self, other) {
            (Consumed::Nothing, _) | (_, Consumed::Nothing) => Consumed::Nothing,
            (Consumed::Free, x) | (x, Consumed::Free) => x,
            (Consumed::Upto(a), Consumed::Upto(b)) => Consumed::Upto(a.min(b)),
        }
    }
}

/// A watermark as consumption: `None` (no marker, no table) is [`Consumed::Nothing`].
fn upto(mark: Option<i64>) -> Consumed {
    mark.map_or(Consumed::Nothing, Consumed::Upto)
}

/// How far silver (the table and its tombstones) has read bronze table `table`. The tombstone table
/// counts only while it owes deletes (silver's `tombstones-due` ahead of its watermark): from where
/// it was complete. A table written before silver recorded that counts its tombstone watermark.
pub async fn of_bronze(config: &PipelineConfig, table: &str) -> Result<Consumed> {
    if !config.table(table).is_some_and(|t| t.has_silver()) {
        return Ok(Consumed::Free);
    }
    let app = silver::watermark_app_id(table);
    if let Some(silver_table) = lake::open(&config.silver_location(table)).await? {
        let due = lake::txn_version(&silver_table, &silver::owed_app_id(table, "due")).await?;
        if let Some(due) = due {
            let silver_mark = lake::txn_version(&silver_table, &app).await?;
            let tomb_mark = match lake::open(&config.tombstone_location(table)).await? {
                Some(t) => lake::txn_version(&t, &app).await?,
                None => None,
            };
            if due <= tomb_mark.unwrap_or(-1) {
                return Ok(upto(silver_mark));
            }
            let complete =
                lake::txn_version(&silver_table, &silver::owed_app_id(table, "complete")).await?;
            let from = complete.max(tomb_mark).filter(|v| *v >= 0);
            return Ok(upto(silver_mark).and(upto(from)));
        }
    }
    let mut out = Consumed::Free;
    for (location, required) in [
        (config.silver_location(table), true),
        // No tombstone table yet: it will start from silver's watermark, not from 0.
        (config.tombstone_location(table), false),
    ] {
        let mark = match lake::open(&location).await? {
            Some(t) => lake::txn_version(&t, &app).await?,
            None if !required => continue,
            None => None,
        };
        out = out.and(upto(mark));
    }
    Ok(out)
}

/// How far the gold views reading silver table `table` have read it.
pub async fn of_silver(config: &PipelineConfig, table: &str) -> Result<Consumed> {
    let mut out = Consumed::Free;
    for view in config
        .gold
        .iter()
        .filter(|v| v.sources.iter().any(|s| s == table))
    {
        let mark = match lake::open(&config.gold_location(&view.name)).await? {
            Some(t) => lake::txn_version(&t, &gold::watermark_app_id(&view.name, table)).await?,
            None => None,
        };
        out = out.and(upto(mark));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::Consumed::*;

    #[test]
    fn the_slowest_consumer_decides() {
        assert_eq!(Upto(5).and(Upto(3)), Upto(3));
        assert_eq!(Free.and(Upto(3)), Upto(3));
        assert_eq!(Upto(3).and(Nothing), Nothing);
        assert_eq!(Upto(3).keep_from(10), 4);
        assert_eq!(Upto(30).keep_from(10), 10);
        assert_eq!(Nothing.keep_from(10), 0);
        assert_eq!(Free.keep_from(10), 10);
    }
}
