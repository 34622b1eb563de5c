//! Landing objects in object storage: look one up (its version tag for idempotency), open exactly that
//! version, and read it as a blocking, decompressed stream (text) or whole (Parquet). Storage failures
//! stay distinguishable from bad bytes all the way through the parsers ([`classify`]).

use std::io::{BufRead, BufReader, Read};

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use futures::TryStreamExt;
use object_store::{GetOptions, GetResult, ObjectMeta, ObjectStoreExt};

use super::ReadError;
use crate::config::{Compression, TableConfig};
use crate::storage::StoreRef;

/// Marks an I/O error that came from the storage stream rather than from decoding its bytes.
#[derive(Debug)]
pub(super) struct StorageFault(pub(super) String);

impl std::fmt::Display for StorageFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StorageFault {}

pub(super) fn classify(e: std::io::Error, what: &str) -> ReadError {
    if let Some(fault) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<StorageFault>())
    {
        return ReadError::Unavailable(fault.0.clone());
    }
    ReadError::Malformed(format!("{what}: {e}"))
}

pub fn is_gzip(table: &TableConfig, key: &str) -> bool {
    match table.compression {
        Compression::Gzip => true,
        Compression::None => false,
        Compression::Auto => key.ends_with(".gz"),
    }
}

fn object_path(key: &str) -> Result<deltalake::Path, ReadError> {
    // `Path::parse` keeps the key as-is (`Path::from` would percent-encode non-ASCII and `%`, naming
    // another object). It only refuses keys with empty, `.` or `..` segments, which we cannot address.
    deltalake::Path::parse(key)
        .map_err(|e| ReadError::Unavailable(format!("unaddressable key `{key}`: {e}")))
}

/// The version of `key` to read (etag, size, mtime, version id), without reading it: `version` when
/// the event names one (versioned buckets), else the current one.
pub async fn head(
    store: &StoreRef,
    key: &str,
    version: Option<&str>,
) -> Result<ObjectMeta, ReadError> {
    let path = object_path(key)?;
    let fail = |e: object_store::Error| ReadError::Unavailable(e.to_string());
    match version {
        None => store.head(&path).await.map_err(fail),
        Some(v) => {
            let options = GetOptions {
                head: true,
                version: Some(v.to_string()),
                ..Default::default()
            };
            let mut meta = store.get_opts(&path, options).await.map_err(fail)?.meta;
            meta.version.get_or_insert_with(|| v.to_string());
            Ok(meta)
        }
    }
}

/// The version tag used in idempotency markers and lineage: the etag (unquoted), else the event's etag,
/// else size and mtime; with the version id on a versioned bucket, so a key rewritten with content it
/// had before is still a new version to ingest.
pub fn version_tag(meta: &ObjectMeta, event_etag: Option<&str>) -> String {
    let tag = meta
        .e_tag
        .as_deref()
        .map(crate::events::clean_etag)
        .or_else(|| event_etag.map(str::to_string))
        .unwrap_or_else(|| format!("{}-{}", meta.size, meta.last_modified.timestamp_millis()));
    match meta.version.as_deref() {
        Some(v) if !v.is_empty() && v != "null" => format!("{tag}@{v}"),
        _ => tag,
    }
}

/// Opens exactly the version `meta` describes (its version id, and `If-Match` on its etag): if the
/// object was replaced since, this fails (and the event is retried) rather than reading other bytes
/// under this version's marker.
pub async fn open(store: &StoreRef, key: &str, meta: &ObjectMeta) -> Result<GetResult, ReadError> {
    let options = GetOptions {
        if_match: meta.e_tag.clone(),
        version: meta.version.clone().filter(|v| v != "null"),
        ..Default::default()
    };
    store
        .get_opts(&object_path(key)?, options)
        .await
        .map_err(|e| ReadError::Unavailable(e.to_string()))
}

/// Counts the bytes read through it and fails once they pass `max`: a gzip bomb or an endless object
/// ends as a quarantine entry, not as a step that never finishes.
struct Capped<R> {
    inner: R,
    read: u64,
    max: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.max {
            return Err(std::io::Error::other(format!(
                "the object yields over {} bytes (decompressed): limits.max_object_gb",
                self.max
            )));
        }
        Ok(n)
    }
}

/// A blocking `Read` over the object's byte stream (for use inside `spawn_blocking`), decompressed when
/// needed and capped at `max` bytes. Storage errors surface as [`StorageFault`] I/O errors so
/// [`classify`] can tell them apart.
pub fn blocking_reader(get: GetResult, gzip: bool, max: u64) -> Box<dyn BufRead + Send> {
    let stream = get
        .into_stream()
        .map_err(|e| std::io::Error::other(StorageFault(e.to_string())));
    let bridge = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    let inner: Box<dyn Read + Send> = if gzip {
        Box::new(MultiGzDecoder::new(bridge))
    } else {
        Box::new(bridge)
    };
    Box::new(BufReader::with_capacity(
        1 << 20,
        Capped {
            inner,
            read: 0,
            max,
        },
    ))
}

/// Whole object as bytes (Parquet needs random access to its footer), decompressed when needed, at
/// most `max` bytes.
pub async fn read_all(get: GetResult, gzip: bool, max: u64) -> Result<Bytes, ReadError> {
    if get.meta.size > max {
        return Err(ReadError::Malformed(format!(
            "object is {} bytes, over {max}: limits.max_object_gb",
            get.meta.size
        )));
    }
    let bytes = get
        .bytes()
        .await
        .map_err(|e| ReadError::Unavailable(e.to_string()))?;
    if !gzip {
        return Ok(bytes);
    }
    super::contained("gzip decoder".into(), move || {
        let mut out = Vec::new();
        Capped {
            inner: MultiGzDecoder::new(bytes.as_ref()),
            read: 0,
            max,
        }
        .read_to_end(&mut out)
        .map_err(|e| classify(e, "gzip"))?;
        Ok(Bytes::from(out))
    })
    .await
}
