//! The bronze writer: landing objects of one table become raw Delta rows with lineage, in one commit per
//! batch, exactly once per (key, etag).
//!
//! Idempotency: each ingested object is recorded as a Delta application transaction (`txn`, app id
//! `<key>@<etag>`) in the same commit as its rows. A redelivered object finds its marker and appends
//! nothing; two invocations racing on one object both try to commit the same app id, delta-rs rejects the
//! second with a conflict, and its re-run finds the marker. Bad rows go to `quarantine/<table>` first,
//! guarded the same way, so a crash between the two commits loses and duplicates nothing.

//!
//! [`report`] says what happened to each object; [`schema`] creates and evolves the table's schema.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::kernel::{Add, Transaction};
use deltalake::writer::DeltaWriter;
use deltalake::DeltaTable;
use object_store::ObjectMeta;
use serde_json::json;
use tracing::{info, warn};

use crate::config::{CdcFormat, Format, Location, PipelineConfig, TableConfig, UnknownFields};
use crate::error::{Error, Result};
use crate::events::SourceObject;
use crate::lake::{self, RetryPolicy};
use crate::quarantine::{self, QuarantinedObject};
use crate::read::{self, ReadError, ReadOutcome};
use crate::schema::{BadRow, Lineage};
use crate::storage::{self, StoreRef};

mod binary;
#[cfg(test)]
mod hostile_tests;
mod report;
mod schema;
pub mod snapshot;
#[cfg(test)]
mod tests;

pub use report::{app_id, BronzeCommit, ObjectReport, ObjectStatus};

/// Marker version in bronze: the object's rows are committed.
const TXN_INGESTED: i64 = 1;

/// Marker versions in quarantine: the object's bad rows are recorded / the whole object is quarantined.
const TXN_BAD_ROWS: i64 = 1;

const TXN_WHOLE_OBJECT: i64 = 2;

/// Appends landing objects to bronze tables.
pub struct BronzeWriter {
    config: Arc<PipelineConfig>,
    landing: StoreRef,
    retry: RetryPolicy,
    function_version: String,
    /// Objects last modified before this many days ago are [`ObjectStatus::Stale`] (`None`: any age).
    horizon_days: Option<i64>,
    /// Each bronze and quarantine table as the last step left it (what the catalog registers), brought
    /// to its latest version at the start of each attempt: markers are checked against that version.
    seen: lake::Tables,
    /// Their object markers, read once and then commit by commit.
    markers: lake::TxnIndex,
}

/// Per-object work gathered during one attempt.
#[derive(Default)]
struct Attempt {
    reports: Vec<ObjectReport>,
    adds: Vec<Add>,
    txns: Vec<Transaction>,
    quarantine: Vec<QuarantinedObject>,
    quarantine_txns: Vec<Transaction>,
    /// Markers of this attempt: two events for one key (overwritten twice, unversioned) may both
    /// resolve to the version now in storage; it is read once.
    ids: HashSet<String>,
    /// Keys quarantined whole (now or by an earlier delivery): a snapshot with such a part is not
    /// complete.
    rejected_whole: HashSet<String>,
    /// Snapshots this commit records complete.
    completed: Vec<String>,
}
impl BronzeWriter {
    pub fn new(config: Arc<PipelineConfig>) -> Result<Self> {
        let landing = storage::bucket_store(&config.landing)?;
        let function_version = std::env::var("AWS_LAMBDA_FUNCTION_VERSION")
            .map(|v| format!("{}:{v}", env!("CARGO_PKG_VERSION")))
            .unwrap_or_else(|_| env!("CARGO_PKG_VERSION").to_string());
        Ok(BronzeWriter {
            config,
            landing,
            retry: RetryPolicy::default(),
            function_version,
            horizon_days: Some(lake::MARKER_HORIZON_DAYS),
            seen: lake::Tables::new(),
            markers: lake::TxnIndex::new(),
        })
    }

    /// Ingests objects of any age (backfill: an operator re-ingesting history on purpose). An object
    /// older than the marker horizon that was ingested before is then ingested again.
    pub fn any_age(mut self) -> Self {
        self.horizon_days = None;
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// The bronze tables as the last steps left them.
    pub fn tables(&self) -> &lake::Tables {
        &self.seen
    }

    /// Ingests `objects` (all routed to `table`) in one bronze commit, re-running the whole step when a
    /// concurrent writer wins the commit race.
    pub async fn ingest(
        &self,
        table: &TableConfig,
        objects: &[SourceObject],
    ) -> Result<BronzeCommit> {
        // Removals are recorded by binary tables only; the others acknowledge them.
        let (removals, objects): (Vec<SourceObject>, Vec<SourceObject>) = objects
            .iter()
            .cloned()
            .partition(|o| o.removed_at.is_some() && table.format != Format::Binary);
        let objects = &objects[..];
        // A snapshot table: markers bring their folder's parts along and complete their snapshot.
        let plan = match table.cdc {
            CdcFormat::Snapshot => {
                Some(snapshot::plan(&self.landing, &self.config, table, objects).await?)
            }
            _ => None,
        };
        let mut seen = HashSet::new();
        let objects: Vec<&SourceObject> = plan
            .as_ref()
            .map_or(objects, |p| &p.objects)
            .iter()
            .filter(|o| seen.insert((&o.key, &o.etag, &o.version_id)))
            .collect();
        let complete = plan.as_ref().map_or(&[][..], |p| &p.complete);
        let what = format!("bronze/{}", table.name);
        let ((version, table_version, mut reports), attempts) = self
            .retry
            .run(&what, || self.attempt(table, &objects, complete))
            .await?;
        let removed = removals
            .into_iter()
            .map(|o| (o, "a removal: only binary tables record those".to_string()));
        for (o, reason) in plan
            .map(|p| p.skipped)
            .unwrap_or_default()
            .into_iter()
            .chain(removed)
        {
            reports.push(ObjectReport {
                key: o.key,
                etag: o.etag,
                status: ObjectStatus::Skipped { reason },
            });
        }
        Ok(BronzeCommit {
            table: table.name.clone(),
            version,
            table_version,
            objects: reports,
            attempts,
        })
    }

    async fn attempt(
        &self,
        table: &TableConfig,
        objects: &[&SourceObject],
        complete: &[(String, Vec<String>)],
    ) -> Result<(Option<i64>, Option<i64>, Vec<ObjectReport>)> {
        let bronze_loc = self.config.bronze_location(&table.name);
        let quarantine_loc = self.config.quarantine_location(&table.name);
        let mut bronze = self.seen.open(&bronze_loc).await?;
        let quarantine = self.seen.open(&quarantine_loc).await?;
        let bronze_markers = match &bronze {
            Some(t) => Some(self.markers.at(&bronze_loc, t).await?),
            None => None,
        };
        let quarantine_markers = match &quarantine {
            Some(t) => Some(self.markers.at(&quarantine_loc, t).await?),
            None => None,
        };
        let ingested_at_us = chrono::Utc::now().timestamp_micros();
        let mut work = Attempt::default();

        for obj in objects {
            let report = |etag: Option<&str>, status| ObjectReport {
                key: obj.key.clone(),
                etag: etag.map(str::to_string),
                status,
            };
            // A removal (binary tables only get here): a row flagged deleted, once per removal.
            if let Some(at) = obj.removed_at {
                let tag = format!("removed@{}", at.timestamp_micros());
                let id = app_id(&obj.key, &tag);
                if bronze_markers
                    .as_ref()
                    .is_some_and(|m| m.get(&id).is_some())
                    || !work.ids.insert(id.clone())
                {
                    work.reports
                        .push(report(Some(&tag), ObjectStatus::AlreadyIngested));
                    continue;
                }
                let lineage = Lineage {
                    key: self.config.lineage_key(&obj.key).to_string(),
                    etag: tag.clone(),
                    ingested_at_us,
                };
                let meta = ObjectMeta {
                    location: object_store::path::Path::from(obj.key.as_str()),
                    last_modified: at,
                    size: 0,
                    e_tag: None,
                    version: None,
                };
                let key = obj.key.clone();
                self.ensure_table(table, &bronze_loc, &mut bronze, &key, &meta)
                    .await
                    .map_err(|e| match e {
                        ReadError::Sink(e) => e,
                        other => {
                            Error::invariant(format!("binary table {}: {other:?}", table.name))
                        }
                    })?;
                let t = bronze
                    .as_ref()
                    .ok_or_else(|| Error::invariant("bronze table missing"))?;
                let row = binary::removal_row(&lineage, at).map_err(|e| match e {
                    ReadError::Sink(e) => e,
                    other => Error::invariant(format!("{other:?}")),
                })?;
                work.adds
                    .extend(lake::write_batches(t, &bronze_loc, [row], None, &[]).await?);
                work.txns.push(lake::txn(&id, TXN_INGESTED));
                work.reports.push(report(
                    Some(&tag),
                    ObjectStatus::Ingested {
                        rows: 1,
                        quarantined: 0,
                    },
                ));
                continue;
            }
            let meta = match read::head(&self.landing, &obj.key, obj.version_id.as_deref()).await {
                Ok(m) => m,
                Err(e) => {
                    warn!(table = %table.name, key = %obj.key, error = %e, "cannot read landing object");
                    work.reports.push(report(
                        obj.etag.as_deref(),
                        ObjectStatus::Failed {
                            reason: e.to_string(),
                        },
                    ));
                    continue;
                }
            };
            let etag = read::version_tag(&meta, obj.etag.as_deref());
            if let Some(days) = self.horizon_days {
                let horizon = chrono::Utc::now() - chrono::Duration::days(days);
                if meta.last_modified < horizon {
                    let reason = format!(
                        "last modified {} is before the {days}-day marker horizon: an earlier delivery may have ingested it; use `lakehouse backfill` to ingest it on purpose",
                        meta.last_modified
                    );
                    warn!(table = %table.name, key = %obj.key, %etag, %reason, "stale event; not ingested");
                    work.reports
                        .push(report(Some(&etag), ObjectStatus::Stale { reason }));
                    continue;
                }
            }
            let id = app_id(&obj.key, &etag);
            let bronze_done = bronze_markers
                .as_ref()
                .is_some_and(|m| m.get(&id).is_some());
            let quarantine_marker = quarantine_markers.as_ref().and_then(|m| m.get(&id));
            let seen_here = !work.ids.insert(id.clone());
            if quarantine_marker == Some(TXN_WHOLE_OBJECT) {
                work.rejected_whole.insert(obj.key.clone());
            }
            if bronze_done || seen_here || quarantine_marker == Some(TXN_WHOLE_OBJECT) {
                info!(table = %table.name, key = %obj.key, %etag, "already ingested; skipping");
                work.reports
                    .push(report(Some(&etag), ObjectStatus::AlreadyIngested));
                continue;
            }
            let lineage = Lineage {
                key: self.config.lineage_key(&obj.key).to_string(),
                etag: etag.clone(),
                ingested_at_us,
            };
            let outcome = self
                .read_into_bronze(table, &bronze_loc, &mut bronze, &meta, &lineage)
                .await;
            match outcome {
                Ok((adds, out)) => {
                    let quarantined = out.rejected();
                    if quarantined > 0 && quarantined >= out.rows_ok {
                        warn!(table = %table.name, key = %obj.key, rows = out.rows_ok, quarantined,
                            "bronze: most rows of this object were rejected (see the quarantine table's reasons): check the table's columns and format");
                    }
                    work.adds.extend(adds);
                    work.txns.push(lake::txn(&id, TXN_INGESTED));
                    if !out.bad.is_empty() && quarantine_marker.is_none() {
                        work.quarantine.push(QuarantinedObject {
                            key: self.config.lineage_key(&obj.key).to_string(),
                            etag: etag.clone(),
                            rows: out.bad,
                        });
                        work.quarantine_txns.push(lake::txn(&id, TXN_BAD_ROWS));
                    }
                    work.reports.push(report(
                        Some(&etag),
                        ObjectStatus::Ingested {
                            rows: out.rows_ok,
                            quarantined,
                        },
                    ));
                }
                Err(ReadError::Unavailable(reason)) => {
                    warn!(table = %table.name, key = %obj.key, %reason, "landing object became unreadable");
                    work.reports
                        .push(report(Some(&etag), ObjectStatus::Failed { reason }));
                }
                Err(ReadError::Malformed(reason)) => {
                    warn!(table = %table.name, key = %obj.key, %reason, "quarantining whole object");
                    work.rejected_whole.insert(obj.key.clone());
                    work.quarantine.push(QuarantinedObject {
                        key: self.config.lineage_key(&obj.key).to_string(),
                        etag: etag.clone(),
                        rows: vec![BadRow {
                            row: None,
                            raw: None,
                            reason: reason.clone(),
                        }],
                    });
                    work.quarantine_txns.push(lake::txn(&id, TXN_WHOLE_OBJECT));
                    work.reports
                        .push(report(Some(&etag), ObjectStatus::Quarantined { reason }));
                }
                Err(ReadError::Sink(e)) => return Err(e),
            }
        }

        // Snapshots complete in this commit: every part is in bronze (now or before).
        for (id, parts) in complete {
            let app = snapshot::complete_app_id(id);
            if bronze_markers
                .as_ref()
                .is_some_and(|m| m.get(&app).is_some())
            {
                continue;
            }
            let missing = parts.iter().find(|k| {
                work.rejected_whole.contains(*k)
                    || !work.reports.iter().any(|r| {
                        &r.key == *k
                            && matches!(
                                r.status,
                                ObjectStatus::Ingested { .. } | ObjectStatus::AlreadyIngested
                            )
                    })
            });
            match missing {
                Some(k) => {
                    warn!(table = %table.name, snapshot = %id, part = %k,
                        "snapshot not complete: a part could not be ingested (see the quarantine table); silver keeps the previous snapshot")
                }
                None => {
                    // Parts with rows quarantined: the snapshot lacks those rows, so silver must not
                    // take their keys as deleted.
                    let rejected_rows = parts.iter().any(|k| {
                        work.reports.iter().any(|r| {
                            &r.key == k
                                && match &r.status {
                                    ObjectStatus::Ingested { quarantined, .. } => *quarantined > 0,
                                    _ => r.etag.as_ref().is_some_and(|e| {
                                        quarantine_markers
                                            .as_ref()
                                            .and_then(|m| m.get(&app_id(k, e)))
                                            == Some(TXN_BAD_ROWS)
                                    }),
                                }
                        })
                    });
                    let version = match rejected_rows {
                        true => snapshot::WITH_REJECTED_ROWS,
                        false => snapshot::CLEAN,
                    };
                    work.txns.push(lake::txn(&app, version));
                    work.completed.push(id.clone());
                }
            }
        }
        // Quarantine first: if bronze then loses a race, the re-run finds the quarantine markers.
        if !work.quarantine.is_empty() {
            self.commit_quarantine(table, &quarantine_loc, quarantine, &work, ingested_at_us)
                .await?;
        }
        let version = match (&mut bronze, work.txns.is_empty()) {
            (Some(t), false) => {
                let metadata = self.commit_metadata(table, &work);
                let txns = std::mem::take(&mut work.txns);
                let v =
                    lake::commit_append(t, std::mem::take(&mut work.adds), txns.clone(), metadata)
                        .await
                        .map_err(|e| Error::delta(bronze_loc.url.to_string(), "commit", e))?;
                self.markers.record(&bronze_loc, v, &txns);
                info!(table = %table.name, version = v, rows = work.reports.iter().map(|r| if let ObjectStatus::Ingested { rows, .. } = r.status { rows } else { 0 }).sum::<u64>(), "bronze commit");
                Some(v)
            }
            _ => None,
        };
        let table_version =
            version.or_else(|| bronze.as_ref().and_then(|t| t.version()).map(|v| v as i64));
        if let Some(t) = &bronze {
            self.seen.put(&bronze_loc, t);
        }
        Ok((version, table_version, work.reports))
    }

    fn commit_metadata(
        &self,
        table: &TableConfig,
        work: &Attempt,
    ) -> HashMap<String, serde_json::Value> {
        let keys: Vec<&str> = work
            .reports
            .iter()
            .filter(|r| matches!(r.status, ObjectStatus::Ingested { .. }))
            .map(|r| r.key.as_str())
            .collect();
        let rows: u64 = work
            .reports
            .iter()
            .map(|r| {
                if let ObjectStatus::Ingested { rows, .. } = r.status {
                    rows
                } else {
                    0
                }
            })
            .sum();
        let mut metadata = self.lineage_metadata("bronze", table, &keys, rows);
        if !work.completed.is_empty() {
            metadata.insert(
                "lakehouse.snapshotsComplete".to_string(),
                json!(work.completed),
            );
        }
        metadata
    }

    /// commitInfo lineage: which layer and table, which source objects, how many rows, which code.
    fn lineage_metadata(
        &self,
        layer: &str,
        table: &TableConfig,
        keys: &[&str],
        rows: u64,
    ) -> HashMap<String, serde_json::Value> {
        HashMap::from([
            ("lakehouse.layer".to_string(), json!(layer)),
            ("lakehouse.table".to_string(), json!(table.name)),
            ("lakehouse.sourceKeys".to_string(), json!(keys)),
            ("lakehouse.rows".to_string(), json!(rows)),
            (
                "lakehouse.functionVersion".to_string(),
                json!(self.function_version),
            ),
        ])
    }

    async fn commit_quarantine(
        &self,
        table: &TableConfig,
        location: &Location,
        existing: Option<DeltaTable>,
        work: &Attempt,
        ingested_at_us: i64,
    ) -> Result<()> {
        let batch = quarantine::to_batch(&work.quarantine, ingested_at_us)?;
        let keys: Vec<&str> = work.quarantine.iter().map(|o| o.key.as_str()).collect();
        let metadata = self.lineage_metadata("quarantine", table, &keys, batch.num_rows() as u64);
        let v = quarantine::append(
            location,
            &table.name,
            existing,
            batch,
            work.quarantine_txns.clone(),
            metadata,
        )
        .await?;
        self.markers.record(location, v, &work.quarantine_txns);
        Ok(())
    }

    /// Streams one object into new parquet files of the bronze table; returns their adds (not committed).
    async fn read_into_bronze(
        &self,
        table: &TableConfig,
        location: &Location,
        bronze: &mut Option<DeltaTable>,
        meta: &ObjectMeta,
        lineage: &Lineage,
    ) -> Result<(Vec<Add>, ReadOutcome), ReadError> {
        // The object's key in the landing store (lineage may name it relative to the landing URI).
        let key = meta.location.to_string();
        let Some(target) = self
            .ensure_table(table, location, bronze, &key, meta)
            .await?
        else {
            return Err(ReadError::Malformed(
                "no valid row to infer the table schema from".into(),
            ));
        };
        if table.format == Format::Binary {
            let Some(t) = bronze.as_ref() else {
                return Err(ReadError::Malformed("bronze table missing".into()));
            };
            let row = binary::object_row(
                &self.landing,
                &key,
                meta,
                lineage,
                table.limits.max_binary_bytes,
            )
            .await?;
            let adds = lake::write_batches(t, location, [row], None, &[]).await?;
            let mut out = ReadOutcome::new(table.limits);
            out.rows_ok = 1;
            return Ok((adds, out));
        }
        let target = match table.unknown_fields {
            UnknownFields::Evolve => {
                self.evolve(table, location, bronze, meta, lineage, target)
                    .await?
            }
            _ => target,
        };
        let Some(t) = bronze.as_ref() else {
            return Err(ReadError::Malformed("bronze table missing".into()));
        };
        let gzip = read::is_gzip(table, &key);
        let get = read::open(&self.landing, &key, meta).await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(2);
        let parse_table = table.clone();
        let parse_lineage = lineage.clone();
        let max = table.limits.max_object_bytes;
        let what = format!("reader of {key}");
        let parser = if table.format.is_typed_file() {
            let bytes = read::read_all(get, gzip, max).await?;
            tokio::spawn(read::contained(what, move || {
                let dest = destination(&target, &parse_lineage, tx);
                match parse_table.format {
                    Format::Avro => read::parse_avro(bytes, &parse_table, dest),
                    _ => read::parse_parquet(bytes, &parse_table, dest),
                }
            }))
        } else {
            tokio::spawn(read::contained(what, move || {
                let dest = destination(&target, &parse_lineage, tx);
                read::parse_text(read::blocking_reader(get, gzip, max), &parse_table, dest)
            }))
        };
        // Each object's row numbers are unique.
        let unique = [crate::schema::SOURCE_ROW.to_string()];
        let mut writer =
            lake::new_writer(t, location, Some(self.config.target_file_size), &unique)?;
        while let Some(batch) = rx.recv().await {
            writer
                .write(batch)
                .await
                .map_err(|e| Error::delta(location.url.to_string(), "write", e))?;
        }
        let outcome = parser.await.map_err(|source| {
            ReadError::Sink(Error::Task {
                what: format!("parser for {key}"),
                source,
            })
        })??;
        let adds = writer
            .flush()
            .await
            .map_err(|e| Error::delta(location.url.to_string(), "write", e))?;
        Ok((adds, outcome))
    }
}

/// The blocking parser's destination: each conformed chunk goes to the async writer through `tx`.
fn destination<'a>(
    target: &'a SchemaRef,
    lineage: &'a Lineage,
    tx: tokio::sync::mpsc::Sender<RecordBatch>,
) -> read::Destination<'a> {
    read::Destination {
        target,
        lineage,
        sink: Box::new(move |b| {
            tx.blocking_send(b).map_err(|_| Error::ChannelClosed {
                what: "bronze parser".into(),
            })
        }),
    }
}
