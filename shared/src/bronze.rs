//! The bronze writer: landing objects of one table become raw Delta rows with lineage, in one commit per
//! batch, exactly once per (key, etag).
//!
//! Idempotency: each ingested object is recorded as a Delta application transaction (`txn`, app id
//! `<key>@<etag>`) in the same commit as its rows. A redelivered object finds its marker and appends
//! nothing; two invocations racing on one object both try to commit the same app id, delta-rs rejects the
//! second with a conflict, and its re-run finds the marker. Bad rows go to `quarantine/<table>` first,
//! guarded the same way, so a crash between the two commits loses and duplicates nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::{Schema, SchemaRef};
use deltalake::kernel::{Add, Transaction};
use deltalake::writer::DeltaWriter;
use deltalake::DeltaTable;
use object_store::ObjectMeta;
use serde_json::json;
use tracing::{info, warn};

use crate::config::{Format, Location, PipelineConfig, TableConfig, UnknownFields};
use crate::error::{Error, Result};
use crate::events::SourceObject;
use crate::lake::{self, RetryPolicy};
use crate::quarantine::{self, QuarantinedObject};
use crate::read::{self, ReadError, ReadOutcome};
use crate::schema::{self, BadRow, Lineage};
use crate::storage::{self, StoreRef};

/// Marker version in bronze: the object's rows are committed.
const TXN_INGESTED: i64 = 1;
/// Marker versions in quarantine: the object's bad rows are recorded / the whole object is quarantined.
const TXN_BAD_ROWS: i64 = 1;
const TXN_WHOLE_OBJECT: i64 = 2;

/// What happened to one object.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectStatus {
    /// Rows appended (and bad rows quarantined) in this commit.
    Ingested { rows: u64, quarantined: u64 },
    /// An earlier delivery already ingested this key and etag: nothing appended.
    AlreadyIngested,
    /// The object is not a valid file of its format; recorded in quarantine, not retried.
    Quarantined { reason: String },
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

/// Appends landing objects to bronze tables.
pub struct BronzeWriter {
    config: Arc<PipelineConfig>,
    landing: StoreRef,
    retry: RetryPolicy,
    function_version: String,
    /// Where commits are announced (the silver queue), if configured.
    notifier: Option<crate::notify::Notifier>,
}

/// Per-object work gathered during one attempt.
#[derive(Default)]
struct Attempt {
    reports: Vec<ObjectReport>,
    adds: Vec<Add>,
    txns: Vec<Transaction>,
    quarantine: Vec<QuarantinedObject>,
    quarantine_txns: Vec<Transaction>,
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
            notifier: None,
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Announce commits on the `notify.silver` queue of the config, if any.
    pub async fn with_configured_notifier(mut self) -> Self {
        if let Some(q) = self.config.notify.get("silver") {
            self.notifier = Some(crate::notify::Notifier::new(q).await);
        }
        self
    }

    pub fn notifier(&self) -> Option<&crate::notify::Notifier> {
        self.notifier.as_ref()
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// Ingests `objects` (all routed to `table`) in one bronze commit, re-running the whole step when a
    /// concurrent writer wins the commit race.
    pub async fn ingest(
        &self,
        table: &TableConfig,
        objects: &[SourceObject],
    ) -> Result<BronzeCommit> {
        let mut seen = HashSet::new();
        let objects: Vec<&SourceObject> = objects
            .iter()
            .filter(|o| seen.insert((&o.key, &o.etag)))
            .collect();
        let what = format!("bronze/{}", table.name);
        let ((version, table_version, reports), attempts) = self
            .retry
            .run(&what, || self.attempt(table, &objects))
            .await?;
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
    ) -> Result<(Option<i64>, Option<i64>, Vec<ObjectReport>)> {
        let bronze_loc = self.config.bronze_location(&table.name);
        let quarantine_loc = self.config.quarantine_location(&table.name);
        let mut bronze = lake::open(&bronze_loc).await?;
        let quarantine = lake::open(&quarantine_loc).await?;
        let ingested_at_us = chrono::Utc::now().timestamp_micros();
        let mut work = Attempt::default();

        for obj in objects {
            let report = |etag: Option<&str>, status| ObjectReport {
                key: obj.key.clone(),
                etag: etag.map(str::to_string),
                status,
            };
            let meta = match read::head(&self.landing, &obj.key).await {
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
            let id = app_id(&obj.key, &etag);
            let bronze_done = match &bronze {
                Some(t) => lake::txn_version(t, &id).await?.is_some(),
                None => false,
            };
            let quarantine_marker = match &quarantine {
                Some(t) => lake::txn_version(t, &id).await?,
                None => None,
            };
            if bronze_done || quarantine_marker == Some(TXN_WHOLE_OBJECT) {
                info!(table = %table.name, key = %obj.key, %etag, "already ingested; skipping");
                work.reports
                    .push(report(Some(&etag), ObjectStatus::AlreadyIngested));
                continue;
            }
            let lineage = Lineage {
                key: obj.key.clone(),
                etag: etag.clone(),
                ingested_at_us,
            };
            let outcome = self
                .read_into_bronze(table, &bronze_loc, &mut bronze, &meta, &lineage)
                .await;
            match outcome {
                Ok((adds, out)) => {
                    let quarantined = out.bad.len() as u64;
                    work.adds.extend(adds);
                    work.txns.push(lake::txn(&id, TXN_INGESTED));
                    if !out.bad.is_empty() && quarantine_marker.is_none() {
                        work.quarantine.push(QuarantinedObject {
                            key: obj.key.clone(),
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
                    work.quarantine.push(QuarantinedObject {
                        key: obj.key.clone(),
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

        // Quarantine first: if bronze then loses a race, the re-run finds the quarantine markers.
        if !work.quarantine.is_empty() {
            self.commit_quarantine(table, &quarantine_loc, quarantine, &work, ingested_at_us)
                .await?;
        }
        let version = match (&mut bronze, work.txns.is_empty()) {
            (Some(t), false) => {
                let metadata = self.commit_metadata(table, &work);
                let v = lake::commit_append(
                    t,
                    std::mem::take(&mut work.adds),
                    std::mem::take(&mut work.txns),
                    metadata,
                )
                .await
                .map_err(|e| Error::delta(bronze_loc.url.to_string(), "commit", e))?;
                info!(table = %table.name, version = v, rows = work.reports.iter().map(|r| if let ObjectStatus::Ingested { rows, .. } = r.status { rows } else { 0 }).sum::<u64>(), "bronze commit");
                Some(v)
            }
            _ => None,
        };
        let table_version =
            version.or_else(|| bronze.as_ref().and_then(|t| t.version()).map(|v| v as i64));
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
        self.lineage_metadata("bronze", table, &keys, rows)
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
        quarantine::append(
            location,
            &table.name,
            existing,
            batch,
            work.quarantine_txns.clone(),
            metadata,
        )
        .await
    }

    /// The table's data schema, creating the bronze table (declared or inferred schema) when absent.
    /// `Ok(None)`: the table does not exist and this object has no row to infer a schema from.
    async fn ensure_table(
        &self,
        table: &TableConfig,
        location: &Location,
        bronze: &mut Option<DeltaTable>,
        key: &str,
        meta: &ObjectMeta,
    ) -> Result<Option<SchemaRef>, ReadError> {
        if bronze.is_none() {
            let data = match table.declared_schema() {
                Some(s) => s.as_ref().clone(),
                None => match self.infer(table, key, meta).await? {
                    Some(s) => s,
                    None => return Ok(None),
                },
            };
            let created = lake::open_or_create(
                location,
                &format!("bronze_{}", table.name),
                &schema::bronze_schema(&data),
                &[],
            )
            .await?;
            *bronze = Some(created);
        }
        let Some(t) = bronze.as_ref() else {
            return Ok(None);
        };
        let snapshot = t
            .snapshot()
            .map_err(|e| Error::delta(location.url.to_string(), "read schema", e))?;
        let arrow: Schema = snapshot.snapshot().arrow_schema().as_ref().clone();
        Ok(Some(schema::data_schema(&arrow)))
    }

    async fn infer(
        &self,
        table: &TableConfig,
        key: &str,
        meta: &ObjectMeta,
    ) -> Result<Option<Schema>, ReadError> {
        let get = read::open(&self.landing, key, meta).await?;
        let gzip = read::is_gzip(table, key);
        if table.format == Format::Parquet {
            return read::infer_parquet(read::read_all(get, gzip).await?);
        }
        let table = table.clone();
        tokio::task::spawn_blocking(move || {
            read::infer_text(read::blocking_reader(get, gzip), &table)
        })
        .await
        .map_err(|e| ReadError::Sink(Error::Task(e.to_string())))?
    }

    /// Schema evolution: fields of this object (by inference on its first rows, or its Parquet schema)
    /// that bronze lacks become new nullable columns, committed before the rows. Returns the data schema
    /// to parse the object with.
    async fn evolve(
        &self,
        table: &TableConfig,
        location: &Location,
        bronze: &mut Option<DeltaTable>,
        meta: &ObjectMeta,
        lineage: &Lineage,
        target: SchemaRef,
    ) -> Result<SchemaRef, ReadError> {
        let Some(found) = self.infer(table, &lineage.key, meta).await? else {
            return Ok(target);
        };
        let Some(t) = bronze.as_mut() else {
            return Ok(target);
        };
        let mut metadata =
            self.lineage_metadata("bronze_schema", table, &[lineage.key.as_str()], 0);
        metadata.insert("lakehouse.sourceEtag".into(), json!(lineage.etag));
        let added = lake::add_missing_columns(t, location, &found, metadata).await?;
        if added.is_empty() {
            return Ok(target);
        }
        info!(table = %table.name, key = %lineage.key, columns = ?added, "bronze schema evolved");
        let snapshot = t
            .snapshot()
            .map_err(|e| Error::delta(location.url.to_string(), "read schema", e))?;
        Ok(schema::data_schema(
            snapshot.snapshot().arrow_schema().as_ref(),
        ))
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
        let key = lineage.key.clone();
        let Some(target) = self
            .ensure_table(table, location, bronze, &key, meta)
            .await?
        else {
            return Err(ReadError::Malformed(
                "no valid row to infer the table schema from".into(),
            ));
        };
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
        let parser = if table.format == Format::Parquet {
            let bytes = read::read_all(get, gzip).await?;
            tokio::task::spawn_blocking(move || {
                read::parse_parquet(bytes, &parse_table, &target, &parse_lineage, &mut |b| {
                    tx.blocking_send(b)
                        .map_err(|_| Error::Task("bronze writer stopped".into()))
                })
            })
        } else {
            tokio::task::spawn_blocking(move || {
                read::parse_text(
                    read::blocking_reader(get, gzip),
                    &parse_table,
                    &target,
                    &parse_lineage,
                    &mut |b| {
                        tx.blocking_send(b)
                            .map_err(|_| Error::Task("bronze writer stopped".into()))
                    },
                )
            })
        };
        let mut writer = lake::new_writer(t, location, Some(self.config.target_file_size))?;
        while let Some(batch) = rx.recv().await {
            writer
                .write(batch)
                .await
                .map_err(|e| Error::delta(location.url.to_string(), "write", e))?;
        }
        let outcome = parser
            .await
            .map_err(|e| ReadError::Sink(Error::Task(format!("parser for {key}: {e}"))))??;
        let adds = writer
            .flush()
            .await
            .map_err(|e| Error::delta(location.url.to_string(), "write", e))?;
        Ok((adds, outcome))
    }
}

#[cfg(test)]
mod tests {
    //! Bronze against real Delta tables on the local filesystem (the S3 path is covered by the
    //! LocalStack + MinIO integration tests in `tests/`). Expected rows are computed from the generated
    //! inputs here, not by the reader under test.
    use super::*;
    use crate::lake::read_table;
    use deltalake::arrow::array::{Array, AsArray};
    use deltalake::arrow::datatypes::Int64Type;
    use std::collections::BTreeSet;
    use std::io::Write;

    struct Fixture {
        _dir: tempfile::TempDir,
        landing_dir: std::path::PathBuf,
        config: Arc<PipelineConfig>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let landing_dir = dir.path().join("landing");
        std::fs::create_dir_all(landing_dir.join("orders")).unwrap();
        std::fs::create_dir_all(landing_dir.join("events")).unwrap();
        let text = format!(
            r#"
            [landing]
            uri = "file://{landing}"
            [lake]
            uri = "file://{lake}"
            [[table]]
            name = "orders"
            format = "jsonl"
            columns = ["id long not null", "amount double"]
            [[table]]
            name = "events"
            format = "csv"
            "#,
            landing = landing_dir.display(),
            lake = dir.path().join("lake").display()
        );
        let config = Arc::new(PipelineConfig::from_toml(&text, "test").unwrap());
        Fixture {
            _dir: dir,
            landing_dir,
            config,
        }
    }

    impl Fixture {
        fn put(&self, rel: &str, bytes: &[u8]) -> SourceObject {
            let path = self.landing_dir.join(rel);
            std::fs::write(&path, bytes).unwrap();
            SourceObject {
                bucket: String::new(),
                key: path.to_str().unwrap().trim_start_matches('/').to_string(),
                etag: None,
            }
        }
        fn writer(&self) -> BronzeWriter {
            BronzeWriter::new(self.config.clone()).unwrap()
        }
        async fn ids(&self, table: &str) -> Vec<(i64, String, i64)> {
            let mut out = Vec::new();
            for b in read_table(&self.config.bronze_location(table))
                .await
                .unwrap()
            {
                let id = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
                let key = b
                    .column_by_name(schema::SOURCE_KEY)
                    .unwrap()
                    .as_string::<i32>();
                let row = b
                    .column_by_name(schema::SOURCE_ROW)
                    .unwrap()
                    .as_primitive::<Int64Type>();
                for i in 0..b.num_rows() {
                    out.push((
                        id.value(i),
                        key.value(i).rsplit('/').next().unwrap().to_string(),
                        row.value(i),
                    ));
                }
            }
            out.sort();
            out
        }
        async fn quarantine_rows(&self, table: &str) -> Vec<(Option<i64>, String)> {
            let mut out = Vec::new();
            for b in read_table(&self.config.quarantine_location(table))
                .await
                .unwrap()
            {
                let row = b
                    .column_by_name(schema::SOURCE_ROW)
                    .unwrap()
                    .as_primitive::<Int64Type>();
                let reason = b
                    .column_by_name(quarantine::REASON)
                    .unwrap()
                    .as_string::<i32>();
                for i in 0..b.num_rows() {
                    out.push((
                        row.is_valid(i).then(|| row.value(i)),
                        reason.value(i).to_string(),
                    ));
                }
            }
            out.sort();
            out
        }
    }

    fn jsonl(ids: std::ops::Range<i64>) -> Vec<u8> {
        ids.map(|i| format!("{{\"id\": {i}, \"amount\": {}.5}}\n", i))
            .collect::<String>()
            .into_bytes()
    }

    #[tokio::test]
    async fn ingests_once_and_redelivery_appends_nothing() {
        let f = fixture();
        let a = f.put("orders/a.jsonl", &jsonl(0..100));
        let mut b_bytes = jsonl(100..150);
        b_bytes.extend_from_slice(b"{\"id\": \"oops\"}\n{broken\n");
        let b = f.put("orders/b.jsonl", &b_bytes);
        let w = f.writer();
        let table = f.config.table("orders").unwrap();
        let first = w
            .ingest(table, &[a.clone(), b.clone(), a.clone()])
            .await
            .unwrap();
        assert_eq!(
            first.version,
            Some(1),
            "create is v0, one commit for the batch"
        );
        assert_eq!(first.rows(), 150);
        let expected: Vec<(i64, String, i64)> = (0..100)
            .map(|i| (i, "a.jsonl".to_string(), i + 1))
            .chain((100..150).map(|i| (i, "b.jsonl".to_string(), i - 99)))
            .collect();
        assert_eq!(f.ids("orders").await, expected);
        assert_eq!(
            f.quarantine_rows("orders")
                .await
                .iter()
                .map(|r| r.0)
                .collect::<Vec<_>>(),
            vec![Some(51), Some(52)]
        );

        let again = w.ingest(table, &[b.clone(), a.clone()]).await.unwrap();
        assert_eq!(again.version, None);
        assert!(again
            .objects
            .iter()
            .all(|o| o.status == ObjectStatus::AlreadyIngested));
        assert_eq!(f.ids("orders").await, expected);
        assert_eq!(f.quarantine_rows("orders").await.len(), 2);

        // A new version of the same key (new etag) is a new object.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let a2 = f.put("orders/a.jsonl", &jsonl(1000..1001));
        let third = w.ingest(table, &[a2]).await.unwrap();
        assert_eq!(third.rows(), 1);
        assert_eq!(f.ids("orders").await.len(), 151);
    }

    #[tokio::test]
    async fn concurrent_invocations_ingest_each_object_once() {
        let f = fixture();
        let objs: Vec<SourceObject> = (0..4)
            .map(|i| f.put(&format!("orders/p{i}.jsonl"), &jsonl(i * 10..i * 10 + 10)))
            .collect();
        let table = f.config.table("orders").unwrap();
        let writers: Vec<BronzeWriter> = (0..4).map(|_| f.writer()).collect();
        let runs = writers.iter().enumerate().map(|(i, w)| {
            let mut mine = objs.clone();
            mine.rotate_left(i);
            async move { w.ingest(table, &mine).await }
        });
        let results = futures::future::join_all(runs).await;
        for r in &results {
            assert!(r.is_ok(), "{r:?}");
        }
        let ids: Vec<i64> = f.ids("orders").await.into_iter().map(|r| r.0).collect();
        assert_eq!(ids, (0..40).collect::<Vec<_>>());
        // One create (v0) and one data commit: losers neither re-create nor append.
        let version = crate::lake::version(&f.config.bronze_location("orders"))
            .await
            .unwrap();
        assert_eq!(version, Some(1));
    }

    #[tokio::test]
    async fn malformed_objects_are_quarantined_whole_and_missing_ones_fail() {
        let f = fixture();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&jsonl(0..50)).unwrap();
        let gz = gz.finish().unwrap();
        let good = f.put("orders/good.jsonl.gz", &gz);
        let corrupt = f.put("orders/corrupt.jsonl.gz", &gz[..gz.len() / 2]);
        let mut missing = good.clone();
        missing.key = missing.key.replace("good", "missing");
        let table = f.config.table("orders").unwrap();
        let w = f.writer();
        let out = w
            .ingest(table, &[good, corrupt.clone(), missing])
            .await
            .unwrap();
        let statuses: Vec<_> = out
            .objects
            .iter()
            .map(|o| std::mem::discriminant(&o.status))
            .collect();
        assert_eq!(
            statuses[0],
            std::mem::discriminant(&ObjectStatus::Ingested {
                rows: 0,
                quarantined: 0
            })
        );
        assert!(
            matches!(&out.objects[1].status, ObjectStatus::Quarantined { reason } if reason.contains("gzip") || reason.contains("reading")),
            "{:?}",
            out.objects[1]
        );
        assert!(matches!(out.objects[2].status, ObjectStatus::Failed { .. }));
        assert_eq!(f.ids("orders").await.len(), 50);
        assert_eq!(f.quarantine_rows("orders").await.len(), 1);
        // The corrupt object is not retried forever: its redelivery is recognised.
        let again = w
            .ingest(table, std::slice::from_ref(&corrupt))
            .await
            .unwrap();
        assert_eq!(again.objects[0].status, ObjectStatus::AlreadyIngested);
        assert!(
            std::path::Path::new(&format!("/{}", corrupt.key)).exists(),
            "landing object untouched"
        );
    }

    #[tokio::test]
    async fn csv_schema_is_inferred_then_enforced() {
        let f = fixture();
        let a = f.put("events/a.csv", b"id,kind,score\n1,click,0.5\n2,view,1.5\n");
        let b = f.put("events/b.csv", b"id,kind,score\n3,click,2.0\nx,view,1\n");
        let table = f.config.table("events").unwrap();
        let w = f.writer();
        w.ingest(table, &[a]).await.unwrap();
        let out = w.ingest(table, &[b]).await.unwrap();
        assert_eq!(out.rows(), 1);
        let ids: BTreeSet<i64> = f.ids("events").await.into_iter().map(|r| r.0).collect();
        assert_eq!(ids, BTreeSet::from([1, 2, 3]));
        let q = f.quarantine_rows("events").await;
        assert_eq!(q.len(), 1);
        assert!(q[0].1.contains("`x` is not a valid long"), "{q:?}");
    }
}
