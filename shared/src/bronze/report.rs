//! What one ingest did, per object and per table: the answer the handler turns into partial batch
//! failures and the CLI into a summary.

/// What happened to one object.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectStatus {
    /// Rows appended (and bad rows quarantined) in this commit.
    Ingested { rows: u64, quarantined: u64 },
    /// An earlier delivery already ingested this key and etag: nothing appended.
    AlreadyIngested,
    /// The object is not a valid file of its format; recorded in quarantine, not retried.
    Quarantined { reason: String },
    /// Last modified before the marker horizon ([`crate::lake::MARKER_HORIZON_DAYS`]): an earlier
    /// delivery may have ingested it and its marker expired, so an event no longer ingests it (a
    /// redelivered old event must not replay old rows over newer ones). Not retried; `backfill`
    /// ingests such objects on purpose.
    Stale { reason: String },
    /// Not data (a snapshot's `_SUCCESS` marker, a hidden `_*` or `.*` object): nothing appended.
    Skipped { reason: String },
    /// Storage could not serve it: the event must be retried.
    Failed { reason: String },
}

#[derive(Debug, Clone)]
pub struct ObjectReport {
    pub key: String,
    pub etag: Option<String>,
    pub status: ObjectStatus,
}

/// The outcome of one ingest call for one table.
#[derive(Debug, Clone)]
pub struct BronzeCommit {
    pub table: String,
    /// Bronze version this call committed, if it committed anything.
    pub version: Option<i64>,
    /// The table's version after this call (what the next layer should catch up to), if it exists.
    pub table_version: Option<i64>,
    pub objects: Vec<ObjectReport>,
    /// Attempts used (more than one when a concurrent writer won a race).
    pub attempts: u32,
}

impl BronzeCommit {
    pub fn rows(&self) -> u64 {
        self.objects
            .iter()
            .map(|o| {
                if let ObjectStatus::Ingested { rows, .. } = o.status {
                    rows
                } else {
                    0
                }
            })
            .sum()
    }
    pub fn quarantined_rows(&self) -> u64 {
        self.objects
            .iter()
            .map(|o| match &o.status {
                ObjectStatus::Ingested { quarantined, .. } => *quarantined,
                ObjectStatus::Quarantined { .. } => 1,
                _ => 0,
            })
            .sum()
    }
    pub fn failed(&self) -> impl Iterator<Item = &ObjectReport> {
        self.objects
            .iter()
            .filter(|o| matches!(o.status, ObjectStatus::Failed { .. }))
    }
}

/// Idempotency marker of one object version.
pub fn app_id(key: &str, etag: &str) -> String {
    format!("{key}@{etag}")
}
