//! `format = "binary"`: any landing object catalogued as one bronze row (Auto Loader's `binaryFile`):
//! its key, size, content type (the object's metadata, else its extension), last modified, etag,
//! version, and its bytes as delivered (not decompressed) up to `limits.max_binary_mb`. A larger object
//! still gets its row, with no content and the reason: never a failed step, memory bounded by the limit.

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use object_store::{Attribute, ObjectMeta};

use crate::error::Error;
use crate::read::{self, ReadError};
use crate::schema::{self, Lineage};
use crate::storage::StoreRef;

/// The object's row (data columns then lineage), reading its bytes when within the limit.
pub(super) async fn object_row(
    landing: &StoreRef,
    key: &str,
    meta: &ObjectMeta,
    lineage: &Lineage,
    max_bytes: u64,
) -> Result<RecordBatch, ReadError> {
    let (content, omitted, content_type) = if meta.size > max_bytes {
        let reason = format!(
            "{} bytes is over limits.max_binary_mb ({} bytes): content not stored (the object stays in landing)",
            meta.size, max_bytes
        );
        (None, Some(reason), None)
    } else {
        let get = read::open(landing, key, meta).await?;
        let declared = get
            .attributes
            .get(&Attribute::ContentType)
            .map(|v| v.to_string());
        let bytes = read::read_all(get, false, max_bytes).await?;
        (Some(bytes), None, declared)
    };
    let content_type = content_type
        .filter(|t| !t.is_empty() && t != "binary/octet-stream")
        .or_else(|| by_extension(key).map(str::to_string));
    row(Row {
        lineage,
        size: Some(meta.size as i64),
        content_type,
        modified_us: meta.last_modified.timestamp_micros(),
        version: meta.version.clone().filter(|v| v != "null"),
        content: content.as_deref(),
        omitted,
        deleted: false,
    })
}

/// The row recording that the object was removed at `at` (no size, no content).
pub(super) fn removal_row(
    lineage: &Lineage,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<RecordBatch, ReadError> {
    row(Row {
        lineage,
        size: None,
        content_type: None,
        modified_us: at.timestamp_micros(),
        version: None,
        content: None,
        omitted: Some("the object was removed".to_string()),
        deleted: true,
    })
}

/// One object's cells.
struct Row<'a> {
    lineage: &'a Lineage,
    size: Option<i64>,
    content_type: Option<String>,
    modified_us: i64,
    version: Option<String>,
    content: Option<&'a [u8]>,
    omitted: Option<String>,
    deleted: bool,
}

/// The row as bronze stores it: the binary columns, then lineage.
fn row(r: Row) -> Result<RecordBatch, ReadError> {
    let target = Arc::new(schema::bronze_schema(&schema::binary_schema()));
    let utc = |v: i64| TimestampMicrosecondArray::from(vec![v]).with_timezone("UTC");
    let l = r.lineage;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![l.key.as_str()])),
        Arc::new(Int64Array::from(vec![r.size])),
        Arc::new(StringArray::from(vec![r.content_type])),
        Arc::new(utc(r.modified_us)),
        Arc::new(StringArray::from(vec![l.etag.as_str()])),
        Arc::new(StringArray::from(vec![r.version])),
        Arc::new(BinaryArray::from(vec![r.content])),
        Arc::new(StringArray::from(vec![r.omitted])),
        Arc::new(BooleanArray::from(vec![r.deleted])),
        Arc::new(StringArray::from(vec![l.key.as_str()])),
        Arc::new(StringArray::from(vec![l.etag.as_str()])),
        Arc::new(Int64Array::from(vec![1])),
        Arc::new(utc(l.ingested_at_us)),
    ];
    RecordBatch::try_new(target, columns)
        .map_err(|e| ReadError::Sink(Error::arrow("building a binary object's row", e)))
}

/// A content type from the key's extension (the common ones; otherwise none is claimed).
fn by_extension(key: &str) -> Option<&'static str> {
    let name = key.rsplit('/').next().unwrap_or(key);
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "tif" | "tiff" => "image/tiff",
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        "xml" => "application/xml",
        "html" | "htm" => "text/html",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "parquet" => "application/vnd.apache.parquet",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use crate::bronze::{BronzeWriter, ObjectStatus};
    use crate::silver::SilverWriter;
    use crate::testkit::{self, Lab};

    fn write(lab: &Lab, rel: &str, bytes: &[u8], age_s: u64) -> crate::events::SourceObject {
        let path = lab.landing(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(age_s))
            .unwrap();
        testkit::object(&path)
    }

    #[tokio::test]
    async fn objects_are_catalogued_with_their_bytes_up_to_the_limit_and_silver_keeps_the_latest() {
        let lab = Lab::new(
            "[limits]\nmax_binary_mb = 0.001\n[[table]]\nname = \"docs\"\nformat = \"binary\"\nkeys = [\"path\"]\n",
        );
        let table = lab.table("docs");
        let bronze = BronzeWriter::new(lab.cfg.clone()).unwrap();
        // Not UTF-8, as a PDF or an image is.
        let pdf: Vec<u8> = (0..=255u8).chain([0xff, 0xfe, 0x00]).collect();
        let small = write(&lab, "docs/a/report.pdf", &pdf, 60);
        let big = write(&lab, "docs/scan.tiff", &[7u8; 4000], 60);
        let commit = bronze.ingest(table, &[small, big]).await.unwrap();
        assert!(
            commit
                .objects
                .iter()
                .all(|o| matches!(o.status, ObjectStatus::Ingested { rows: 1, .. })),
            "{commit:?}"
        );
        let rows = testkit::rows_as_text(
            &lab.cfg.bronze_location("docs"),
            &["size", "content_type", "content_omitted"],
            "path",
        )
        .await;
        assert_eq!(
            rows["docs/a/report.pdf"][..2],
            [Some("259".into()), Some("application/pdf".into())]
        );
        assert_eq!(rows["docs/a/report.pdf"][2], None);
        assert_eq!(rows["docs/scan.tiff"][1].as_deref(), Some("image/tiff"));
        assert!(rows["docs/scan.tiff"][2]
            .as_deref()
            .is_some_and(|r| r.contains("max_binary_mb")));
        // The bytes themselves, exactly.
        let mut contents = Vec::new();
        for b in testkit::rows(&lab.cfg.bronze_location("docs")).await {
            use deltalake::arrow::array::AsArray;
            let c = deltalake::arrow::compute::cast(
                b.column_by_name("content").unwrap(),
                &deltalake::arrow::datatypes::DataType::Binary,
            )
            .unwrap();
            let c = c.as_binary::<i32>();
            contents.extend(c.iter().map(|v| v.map(<[u8]>::to_vec)));
        }
        contents.sort();
        assert_eq!(contents, [None, Some(pdf.clone())]);

        // The PDF replaced by a newer version: bronze keeps both, silver the newest (without bytes).
        let newer = write(&lab, "docs/a/report.pdf", b"%PDF-1.7 v2", 0);
        bronze.ingest(table, &[newer]).await.unwrap();
        SilverWriter::new(lab.cfg.clone())
            .apply(table)
            .await
            .unwrap();
        let bronze_rows = testkit::rows(&lab.cfg.bronze_location("docs")).await;
        assert_eq!(bronze_rows.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        let silver =
            testkit::rows_as_text(&lab.cfg.silver_location("docs"), &["size"], "path").await;
        assert_eq!(silver.len(), 2);
        assert_eq!(silver["docs/a/report.pdf"], [Some("11".to_string())]);
        for b in testkit::rows(&lab.cfg.silver_location("docs")).await {
            assert!(
                b.column_by_name("content").is_none(),
                "the bytes stay in bronze"
            );
        }

        // Removals (`s3:ObjectRemoved:*`): the TIFF removed now leaves silver; a removal of the PDF
        // older than its newest version (delivered late) does not; a redelivered removal is one row.
        let removal = |rel: &str, age_s: i64| crate::events::SourceObject {
            key: lab
                .landing(rel)
                .to_str()
                .unwrap()
                .trim_start_matches('/')
                .to_string(),
            removed_at: Some(chrono::Utc::now() - chrono::Duration::seconds(age_s)),
            ..Default::default()
        };
        let (tiff, old_pdf) = (
            removal("docs/scan.tiff", 0),
            removal("docs/a/report.pdf", 30),
        );
        bronze
            .ingest(table, &[tiff.clone(), old_pdf])
            .await
            .unwrap();
        let again = bronze.ingest(table, &[tiff]).await.unwrap();
        assert!(
            matches!(again.objects[0].status, ObjectStatus::AlreadyIngested),
            "{again:?}"
        );
        SilverWriter::new(lab.cfg.clone())
            .apply(table)
            .await
            .unwrap();
        let silver =
            testkit::rows_as_text(&lab.cfg.silver_location("docs"), &["size"], "path").await;
        assert_eq!(silver.keys().collect::<Vec<_>>(), ["docs/a/report.pdf"]);
        let bronze_rows = testkit::rows(&lab.cfg.bronze_location("docs")).await;
        assert_eq!(bronze_rows.iter().map(|b| b.num_rows()).sum::<usize>(), 5);
    }

    #[tokio::test]
    async fn other_tables_acknowledge_removals_without_a_row() {
        let lab = Lab::with_table("orders", "format = \"jsonl\"\ncolumns = [\"id long\"]");
        let removal = crate::events::SourceObject {
            key: lab
                .landing("orders/a.jsonl")
                .to_str()
                .unwrap()
                .trim_start_matches('/')
                .to_string(),
            removed_at: Some(chrono::Utc::now()),
            ..Default::default()
        };
        let out = BronzeWriter::new(lab.cfg.clone())
            .unwrap()
            .ingest(lab.table("orders"), &[removal])
            .await
            .unwrap();
        assert!(
            matches!(&out.objects[0].status, ObjectStatus::Skipped { reason } if reason.contains("removal")),
            "{out:?}"
        );
        assert_eq!(out.version, None);
    }
}
