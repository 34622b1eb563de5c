//! Warm snapshots: the tables a writer opened stay loaded for the life of the process (a warm Lambda
//! container, the local runner) and are brought up to date by reading only the commits made since,
//! instead of being reopened from the log (or the last checkpoint) on every invocation.
//!
//! Memory: one snapshot per table location, and a writer only ever opens the locations its config
//! names (bronze, silver, tombstones, gold), so the cache holds at most a few snapshots per configured
//! table; a snapshot's size follows the table's live file count, which maintenance keeps small.
//! [`MAX_TABLES`] bounds it regardless.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use deltalake::DeltaTable;
use tracing::debug;

use super::{open, table_name};
use crate::error::Result;
use crate::storage::Location;

/// The cache forgets everything when it would hold more tables than this.
pub const MAX_TABLES: usize = 512;

/// Opened tables by location, shared by clones (cheap: snapshots are reference counted).
#[derive(Clone, Default)]
pub struct Tables {
    inner: Arc<Mutex<HashMap<String, DeltaTable>>>,
}

impl Tables {
    pub fn new() -> Self {
        Self::default()
    }

    fn cached(&self, key: &str) -> Option<DeltaTable> {
        self.inner.lock().ok()?.get(key).cloned()
    }

    /// The table at `location` at its latest version (`None` when there is none yet): the cached
    /// snapshot brought forward, or a fresh open on first use (or when the update fails, e.g. the
    /// cached version's commits were cleaned up).
    pub async fn open(&self, location: &Location) -> Result<Option<DeltaTable>> {
        let key = table_name(location);
        if let Some(mut table) = self.cached(&key) {
            match table.update_incremental(None).await {
                Ok(()) => {
                    self.put(location, &table);
                    return Ok(Some(table));
                }
                Err(e) => {
                    debug!(table = %key, error = %e, "cached snapshot not updatable; reopening")
                }
            }
        }
        let table = open(location).await?;
        if let Some(t) = &table {
            self.put(location, t);
        }
        Ok(table)
    }

    /// The snapshot last seen at `location`, as it is (no I/O): what a step left behind.
    pub fn peek(&self, location: &Location) -> Option<DeltaTable> {
        self.cached(&table_name(location))
    }

    /// Remembers `table` (after a commit, so the next open starts from it).
    pub fn put(&self, location: &Location, table: &DeltaTable) {
        if table.version().is_none() {
            return;
        }
        if let Ok(mut map) = self.inner.lock() {
            if map.len() >= MAX_TABLES {
                map.clear();
            }
            map.insert(table_name(location), table.clone());
        }
    }

    /// How many tables are cached.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Lab;

    #[tokio::test]
    async fn a_cached_table_is_brought_forward_to_commits_made_elsewhere() {
        let lab = Lab::with_table(
            "t",
            "format = \"jsonl\"\ncolumns = [\"id long not null\"]\nkeys = [\"id\"]",
        );
        let loc = lab.cfg.bronze_location("t");
        let tables = Tables::new();
        assert!(tables.open(&loc).await.unwrap().is_none(), "no table yet");
        assert!(tables.is_empty());
        lab.ingest("t", "a.jsonl", "{\"id\": 1}\n").await;
        let first = tables.open(&loc).await.unwrap().unwrap().version();
        assert_eq!(tables.len(), 1);
        // Another writer (another container) commits; the cached snapshot catches up.
        lab.ingest("t", "b.jsonl", "{\"id\": 2}\n").await;
        let cached = tables.open(&loc).await.unwrap().unwrap();
        let fresh = crate::lake::open(&loc).await.unwrap().unwrap();
        assert!(cached.version() > first);
        assert_eq!(cached.version(), fresh.version());
        assert_eq!(
            crate::lake::scan(&cached, &loc)
                .await
                .unwrap()
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>(),
            2
        );
    }
}
