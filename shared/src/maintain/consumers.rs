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

/// How far silver (the table and its tombstones) has read bronze table `table`: silver's watermark,
/// and while the tombstone table owes deletes ([`silver::Owed`]), the start of the range its next step
/// reads to record them.
pub async fn of_bronze(config: &PipelineConfig, table: &str) -> Result<Consumed> {
    if !config.table(table).is_some_and(|t| t.has_silver()) {
        return Ok(Consumed::Free);
    }
    let app = silver::watermark_app_id(table);
    let silver_loc = config.silver_location(table);
    let Some(silver_table) = lake::open(&silver_loc).await? else {
        return Ok(Consumed::Nothing);
    };
    // One replay for every marker (watermark and what the tombstones owe).
    let marks = lake::TxnIndex::new().at(&silver_loc, &silver_table).await?;
    let silver_mark = marks.get(&app);
    let tomb_loc = config.tombstone_location(table);
    let tomb_mark = match lake::open(&tomb_loc).await? {
        Some(t) => lake::txn_version(&t, &app).await?,
        None => None,
    };
    let owed = silver::Owed::of(&marks, table, silver_mark);
    Ok(match owed.missing(tomb_mark) {
        None => upto(silver_mark),
        Some((after, _)) => upto(silver_mark).and(upto(after.filter(|v| *v >= 0))),
    })
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
