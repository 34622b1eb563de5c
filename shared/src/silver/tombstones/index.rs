//! Warm tombstones: every live tombstone of a table, by key, kept for the life of the process and
//! brought forward file by file. A warm step's tombstone check then reads no tombstone file: only the
//! files another writer added since it last looked (its own appends go straight in).
//!
//! Why not cluster the tombstone files by key instead: a step's deletes are a handful of rows spread
//! over the key space, so each appended file spans nearly all of it, and a batch of uniform keys would
//! hit every file's range anyway. Keeping the newest order per key costs a few dozen bytes per live
//! tombstone; past [`MAX_STONES`] a table goes back to the key-range scan (pruned by file statistics).
//!
//! The first step of a process also scans by key range (a cold start pays for its batch, not for the
//! whole tombstone table); the second builds the index, which the steps after only bring forward.
//! Maintenance rewrites (compaction, expiry) show as indexed files gone from the table: the index is
//! then rebuilt from the files as they are.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use deltalake::arrow::array::{Array, ArrayRef, RecordBatch, TimestampMicrosecondArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;
use deltalake::arrow::row::{RowConverter, Rows, SortField};
use deltalake::DeltaTable;
use tracing::warn;

use crate::cdc::{BRONZE_VERSION, SEQ};
use crate::config::Location;
use crate::error::{Error, Result};
use crate::lake;
use crate::schema::{self, DELETED_AT, SOURCE_ROW};

/// Live tombstones one table's index holds at most (about 100 bytes each).
pub const MAX_STONES: usize = 1_000_000;

/// The order of changes and tombstones: sequence, then bronze version, then source row.
const ORDER: [&str; 3] = [SEQ, BRONZE_VERSION, SOURCE_ROW];

/// The columns tombstones are matched on (the table's keys) and ordered by ([`ORDER`]), with the
/// types they are encoded in: those of the batch being checked.
pub struct StoneColumns {
    keys: Vec<String>,
    types: Vec<DataType>,
}

impl StoneColumns {
    pub fn of(changes: &RecordBatch, keys: &[String]) -> Result<Self> {
        let keys = keys.to_vec();
        let types = keys
            .iter()
            .map(String::as_str)
            .chain(ORDER)
            .map(|n| {
                Ok(schema::column(changes, n, "tombstone check")?
                    .data_type()
                    .clone())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(StoneColumns { keys, types })
    }

    /// The encoded keys and orders of `batch`'s rows (its columns cast to this check's types).
    pub fn rows(&self, batch: &RecordBatch) -> Result<(Rows, Rows)> {
        let fail = |e| Error::arrow("tombstone check", e);
        let names: Vec<&str> = self.keys.iter().map(String::as_str).chain(ORDER).collect();
        let columns: Vec<ArrayRef> = schema::columns(batch, &names, "tombstone check")?
            .iter()
            .zip(&self.types)
            .map(|(c, t)| cast(c, t).map_err(fail))
            .collect::<Result<_>>()?;
        let (keys, order) = columns.split_at(self.keys.len());
        let (key_types, order_types) = self.types.split_at(self.keys.len());
        let encode = |cols: &[ArrayRef], types: &[DataType]| {
            RowConverter::new(types.iter().cloned().map(SortField::new).collect())
                .and_then(|c| c.convert_columns(cols))
                .map_err(fail)
        };
        Ok((encode(keys, key_types)?, encode(order, order_types)?))
    }
}

/// One tombstone: its change's encoded order and when it was applied (epoch µs; null never expires).
struct Stone {
    order: Box<[u8]>,
    at: Option<i64>,
}

impl Stone {
    fn expired(&self, cutoff: Option<i64>) -> bool {
        matches!((cutoff, self.at), (Some(c), Some(at)) if at < c)
    }

    /// `self` makes `other` irrelevant: as new an order, and it expires no sooner.
    fn covers(&self, other: &Stone) -> bool {
        self.order >= other.order
            && match (self.at, other.at) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(a), Some(b)) => a >= b,
            }
    }
}

/// Tombstones by encoded key: per key only those no other tombstone of the key covers (usually one).
#[derive(Default)]
pub struct Stones {
    types: Vec<DataType>,
    /// The files (paths as the log names them) whose rows are in.
    files: HashSet<String>,
    by_key: HashMap<Box<[u8]>, Vec<Stone>>,
    count: usize,
}

impl Stones {
    pub fn new(columns: &StoneColumns) -> Self {
        Stones {
            types: columns.types.clone(),
            ..Default::default()
        }
    }

    /// Takes in the tombstone rows of `batch`.
    pub fn absorb(&mut self, columns: &StoneColumns, batch: &RecordBatch) -> Result<()> {
        let (keys, order) = columns.rows(batch)?;
        let at = batch
            .column_by_name(DELETED_AT)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>());
        for i in 0..batch.num_rows() {
            let stone = Stone {
                order: order.row(i).as_ref().into(),
                at: at.and_then(|a| a.is_valid(i).then(|| a.value(i))),
            };
            let list = self.by_key.entry(keys.row(i).as_ref().into()).or_default();
            if list.iter().any(|s| s.covers(&stone)) {
                continue;
            }
            let before = list.len();
            list.retain(|s| !stone.covers(s));
            self.count = self.count + 1 + list.len() - before;
            list.push(stone);
        }
        Ok(())
    }

    /// The newest order among `key`'s tombstones applied at or after `cutoff`.
    pub fn newest(&self, key: &[u8], cutoff: Option<i64>) -> Option<&[u8]> {
        self.by_key
            .get(key)?
            .iter()
            .filter(|s| !s.expired(cutoff))
            .map(|s| &*s.order)
            .max()
    }
}

/// What a process knows of one tombstone table.
enum Warm {
    /// One step checked it by key range; the next builds the index.
    Seen,
    /// More tombstones than [`MAX_STONES`]: checked by key range from now on.
    TooMany,
    Ready(Stones),
}

/// Warm tombstones by table location, shared by clones.
#[derive(Clone, Default)]
pub struct StoneIndex {
    inner: Arc<Mutex<HashMap<String, Warm>>>,
}

impl StoneIndex {
    /// `tombs`' tombstones at its loaded version, taken out of the index (hand them back with
    /// [`StoneIndex::put`]); `None` when the caller should scan by key range instead (first use in this
    /// process, or too many to hold). A concurrent step of the same table finds nothing and scans.
    pub async fn current(
        &self,
        tombs: &DeltaTable,
        location: &Location,
        columns: &StoneColumns,
    ) -> Result<Option<Stones>> {
        let name = location.url.to_string();
        let taken = {
            let Ok(mut map) = self.inner.lock() else {
                return Ok(None);
            };
            match map.remove(&name) {
                None => {
                    map.insert(name, Warm::Seen);
                    return Ok(None);
                }
                Some(Warm::TooMany) => {
                    map.insert(name, Warm::TooMany);
                    return Ok(None);
                }
                Some(Warm::Seen) => None,
                Some(Warm::Ready(s)) => Some(s),
            }
        };
        let snapshot = tombs
            .snapshot()
            .map_err(|e| Error::delta(&name, "list tombstone files", e))?;
        let live: HashSet<String> = snapshot
            .log_data()
            .iter()
            .map(|f| f.path().into_owned())
            .collect();
        // Indexed files that are gone were rewritten or expired by maintenance: start over.
        let mut stones = match taken {
            Some(s) if s.types == columns.types && s.files.is_subset(&live) => s,
            _ => Stones::new(columns),
        };
        let new: Vec<String> = live.difference(&stones.files).cloned().collect();
        for path in new {
            for b in lake::read_data_file(tombs, location, &path, None).await? {
                stones.absorb(columns, &b)?;
            }
            stones.files.insert(path);
            if stones.count > MAX_STONES {
                break;
            }
        }
        if stones.count > MAX_STONES {
            warn!(table = %name, max = MAX_STONES, "more live tombstones than the warm index holds: checked by key range");
            self.set(name, Warm::TooMany);
            return Ok(None);
        }
        Ok(Some(stones))
    }

    /// Hands back what [`StoneIndex::current`] took out.
    pub fn put(&self, location: &Location, stones: Stones) {
        self.set(location.url.to_string(), Warm::Ready(stones));
    }

    /// This process committed `paths` holding the tombstones `rows`: warm stones take them without
    /// reading them back.
    pub fn appended(
        &self,
        location: &Location,
        paths: &[String],
        rows: &RecordBatch,
        keys: &[String],
    ) -> Result<()> {
        let Ok(mut map) = self.inner.lock() else {
            return Ok(());
        };
        if let Some(Warm::Ready(stones)) = map.get_mut(location.url.as_str()) {
            let columns = StoneColumns {
                keys: keys.to_vec(),
                types: stones.types.clone(),
            };
            stones.absorb(&columns, rows)?;
            stones.files.extend(paths.iter().cloned());
        }
        Ok(())
    }

    fn set(&self, name: String, warm: Warm) {
        if let Ok(mut map) = self.inner.lock() {
            map.insert(name, warm);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stone(order: u8, at: Option<i64>) -> Stone {
        Stone {
            order: vec![order].into(),
            at,
        }
    }

    /// A key keeps only the tombstones no other covers, and the answer honours the retention cutoff:
    /// the newest order among those applied at or after it.
    #[test]
    fn the_newest_unexpired_tombstone_of_a_key_answers() {
        let mut s = Stones::default();
        let mut add = |key: u8, st: Stone| {
            let list = s.by_key.entry(vec![key].into()).or_default();
            if !list.iter().any(|x| x.covers(&st)) {
                list.retain(|x| !st.covers(x));
                list.push(st);
            }
        };
        add(1, stone(5, Some(100)));
        add(1, stone(3, Some(50))); // covered: older order, applied earlier
        add(1, stone(2, Some(300))); // applied later: kept for when the first has expired
        add(2, stone(7, None)); // never expires
        add(2, stone(9, Some(10)));
        assert_eq!(s.by_key[&[1u8][..]].len(), 2);
        assert_eq!(s.newest(&[1], None), Some(&[5u8][..]));
        assert_eq!(s.newest(&[1], Some(200)), Some(&[2u8][..]));
        assert_eq!(s.newest(&[1], Some(400)), None);
        assert_eq!(s.newest(&[2], None), Some(&[9u8][..]));
        assert_eq!(s.newest(&[2], Some(20)), Some(&[7u8][..]));
        assert_eq!(s.newest(&[3], None), None);
    }
}
