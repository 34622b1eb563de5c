//! The one test kit of the crate's unit tests: a temporary landing folder and lake with a pipeline
//! ([`Lab`]), objects written and ingested, and tables read back as plain values for comparing with
//! each test's own oracle. It computes nothing a test asserts: expected values stay in the tests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, AsArray, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Int64Type};

use crate::bronze::{BronzeCommit, BronzeWriter};
use crate::config::{Location, PipelineConfig, TableConfig};
use crate::events::SourceObject;
use crate::lake;

/// Target file size of every lab table (bronze and silver): a few dozen rows per file.
pub const TEST_FILE_SIZE_MB: f64 = 0.001;

/// A pipeline of `sections` (`[[table]]` and `[[gold]]` TOML) with no storage behind it, for tests
/// of parsing and planning.
pub fn pipeline(sections: &str) -> PipelineConfig {
    let text = format!("[landing]\nuri = \"s3://l\"\n[lake]\nuri = \"s3://k\"\n{sections}\n");
    PipelineConfig::from_toml(&text, "test").unwrap()
}

/// The single table of a pipeline declaring `[[table]] name = "t"` with `fields`.
pub fn table(fields: &str) -> TableConfig {
    pipeline(&format!("[[table]]\nname = \"t\"\n{fields}"))
        .tables
        .remove(0)
}

/// A temporary landing folder (`<dir>/landing`) and lake (`<dir>/lake`) with a pipeline.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub cfg: Arc<PipelineConfig>,
}

impl Lab {
    /// A lab whose pipeline has `sections` (`[[table]]` and `[[gold]]` TOML).
    pub fn new(sections: &str) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        // Tiny files: every test's bronze and silver tables span many files, as a big table would.
        let sections = sections.replace(
            "[[table]]\n",
            &format!("[[table]]\ntarget_file_size_mb = {TEST_FILE_SIZE_MB}\n"),
        );
        let text = format!(
            "target_file_size_mb = {TEST_FILE_SIZE_MB}\n[landing]\nuri = \"file://{d}/landing\"\n[lake]\nuri = \"file://{d}/lake\"\n{sections}\n",
            d = dir.path().display()
        );
        let cfg = Arc::new(PipelineConfig::from_toml(&text, "test").unwrap());
        for t in &cfg.tables {
            std::fs::create_dir_all(dir.path().join("landing").join(&t.prefix)).unwrap();
        }
        Lab { dir, cfg }
    }

    /// A lab with one table, `name`, declared by `fields` (and any `[[gold]]` sections after them).
    pub fn with_table(name: &str, fields: &str) -> Lab {
        Lab::new(&format!("[[table]]\nname = \"{name}\"\n{fields}"))
    }

    pub fn table(&self, name: &str) -> &TableConfig {
        self.cfg.table(name).unwrap()
    }

    pub fn landing(&self, rel: &str) -> PathBuf {
        self.dir.path().join("landing").join(rel)
    }

    /// Writes `bytes` to `landing/<rel>` and names it as an event would.
    pub fn put(&self, rel: &str, bytes: &[u8]) -> SourceObject {
        let path = self.landing(rel);
        std::fs::write(&path, bytes).unwrap();
        object(&path)
    }

    /// Writes `landing/<table>/<file>` and ingests it into bronze.
    pub async fn ingest(&self, table: &str, file: &str, body: &str) -> BronzeCommit {
        let obj = self.put(&format!("{table}/{file}"), body.as_bytes());
        BronzeWriter::new(self.cfg.clone())
            .unwrap()
            .ingest(self.table(table), &[obj])
            .await
            .unwrap()
    }
}

/// A local file as an event names it (file:// landing: no bucket, the path as the key).
pub fn object(path: &std::path::Path) -> SourceObject {
    SourceObject {
        bucket: String::new(),
        key: path.to_str().unwrap().trim_start_matches('/').to_string(),
        etag: None,
        version_id: None,
        removed_at: None,
    }
}

/// A column cast to `to` (scans may return other integer widths, views or dictionaries).
fn column_as(b: &RecordBatch, name: &str, to: &DataType) -> ArrayRef {
    let c = b
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column `{name}` in {:?}", b.schema()));
    cast(c, to).unwrap()
}

/// Column `name` as integers.
pub fn ints(b: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let c = column_as(b, name, &DataType::Int64);
    c.as_primitive::<Int64Type>().iter().collect()
}

/// Column `name` as text.
pub fn texts(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let c = column_as(b, name, &DataType::Utf8);
    c.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

/// Column `name` as booleans.
pub fn bools(b: &RecordBatch, name: &str) -> Vec<Option<bool>> {
    let c = column_as(b, name, &DataType::Boolean);
    c.as_boolean().iter().collect()
}

/// Every row of the table at `location` (nothing when it does not exist).
pub async fn rows(location: &Location) -> Vec<RecordBatch> {
    lake::read_table(location).await.unwrap()
}

/// Column `name` of every row of the table at `location`, as integers.
pub async fn column_ints(location: &Location, name: &str) -> Vec<Option<i64>> {
    rows(location)
        .await
        .iter()
        .flat_map(|b| ints(b, name))
        .collect()
}

/// Column `name` of every row of the table at `location`, as text.
pub async fn column_texts(location: &Location, name: &str) -> Vec<Option<String>> {
    rows(location)
        .await
        .iter()
        .flat_map(|b| texts(b, name))
        .collect()
}

/// Text of `columns` of every row, keyed by the text of `key` (nulls as `None`).
pub async fn rows_as_text(
    location: &Location,
    columns: &[&str],
    key: &str,
) -> BTreeMap<String, Vec<Option<String>>> {
    let mut out = BTreeMap::new();
    for b in rows(location).await {
        let keys = texts(&b, key);
        let cols: Vec<_> = columns.iter().map(|c| texts(&b, c)).collect();
        for (i, k) in keys.into_iter().enumerate() {
            let k = k.unwrap_or_else(|| panic!("null `{key}`"));
            out.insert(k, cols.iter().map(|c| c[i].clone()).collect());
        }
    }
    out
}

/// The quarantine reasons of `table`, in table order.
pub async fn quarantine_reasons(cfg: &PipelineConfig, table: &str) -> Vec<String> {
    column_texts(&cfg.quarantine_location(table), crate::quarantine::REASON)
        .await
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect()
}
