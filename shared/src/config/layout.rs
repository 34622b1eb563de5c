//! The lake's path layout: `<lake>/<layer>/<table>` for every layer's Delta table, and which table a
//! Delta log key belongs to (S3 events on `_delta_log/` keys trigger the next layer).

use super::{Location, PipelineConfig, TableConfig};

impl PipelineConfig {
    pub fn bronze_location(&self, table: &str) -> Location {
        self.lake.join(&["bronze", table])
    }

    pub fn quarantine_location(&self, table: &str) -> Location {
        self.lake.join(&["quarantine", table])
    }

    /// The table whose Delta log `key` (in `bucket`) belongs to, for `layer` (`bronze`, `silver`):
    /// S3 events on `<lake>/<layer>/<table>/_delta_log/...` trigger the next layer.
    pub fn table_of_log_key(&self, layer: &str, bucket: &str, key: &str) -> Option<&TableConfig> {
        if bucket != self.lake.bucket() {
            return None;
        }
        let rel = relative_key(&self.lake, key)?;
        let rest = rel.strip_prefix(layer)?.strip_prefix('/')?;
        let (table, tail) = rest.split_once('/')?;
        tail.starts_with("_delta_log/")
            .then(|| self.table(table))
            .flatten()
    }

    pub fn gold_location(&self, view: &str) -> Location {
        self.lake.join(&["gold", view])
    }

    pub fn silver_location(&self, table: &str) -> Location {
        self.lake.join(&["silver", table])
    }

    /// Delete tombstones (key, sequence) of a silver table: what stops a late update resurrecting a row.
    pub fn tombstone_location(&self, table: &str) -> Location {
        self.lake.join(&["silver_tombstones", table])
    }
}

/// The part of `key` below the landing prefix, if it is below it.
pub(crate) fn relative_key<'a>(landing: &Location, key: &'a str) -> Option<&'a str> {
    let prefix = landing.prefix();
    if prefix.is_empty() {
        return Some(key);
    }
    key.strip_prefix(prefix.as_str())?.strip_prefix('/')
}

/// Why an object key can never be read as a landing object, if it cannot: a folder marker, or a path
/// with an empty, `.` or `..` segment (object stores cannot address those as plain paths). Such an
/// event is rejected with a log line, not retried into the DLQ.
pub fn unaddressable(key: &str) -> Option<&'static str> {
    if key.is_empty() {
        Some("empty key")
    } else if key.ends_with('/') {
        Some("a folder marker (the key ends with `/`)")
    } else if key.split('/').any(|s| s.is_empty()) {
        Some("an empty path segment (`//` or a leading `/`)")
    } else if key.split('/').any(|s| s == "." || s == "..") {
        Some("a `.` or `..` path segment")
    } else {
        None
    }
}
