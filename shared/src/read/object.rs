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
use crate::error::Error;
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

/// The version of `key` now in storage (etag, size, mtime), without reading it.
pub async fn head(store: &StoreRef, key: &str) -> Result<ObjectMeta, ReadError> {
    store
        .head(&object_path(key)?)
        .await
        .map_err(|e| ReadError::Unavailable(e.to_string()))
}

/// The version tag used in idempotency markers and lineage: the etag (unquoted), else the event's etag,
/// else size and mtime.
pub fn version_tag(meta: &ObjectMeta, event_etag: Option<&str>) -> String {
    meta.e_tag
        .as_deref()
        .map(crate::events::clean_etag)
        .or_else(|| event_etag.map(str::to_string))
        .unwrap_or_else(|| format!("{}-{}", meta.size, meta.last_modified.timestamp_millis()))
}

/// Opens exactly the version `meta` describes (`If-Match` on its etag): if the object was replaced since,
/// this fails (and the event is retried) rather than reading other bytes under this version's marker.
pub async fn open(store: &StoreRef, key: &str, meta: &ObjectMeta) -> Result<GetResult, ReadError> {
    let options = GetOptions {
        if_match: meta.e_tag.clone(),
        ..Default::default()
    };
    store
        .get_opts(&object_path(key)?, options)
        .await
        .map_err(|e| ReadError::Unavailable(e.to_string()))
}

/// A blocking `Read` over the object's byte stream (for use inside `spawn_blocking`), decompressed when
/// needed. Storage errors surface as [`StorageFault`] I/O errors so [`classify`] can tell them apart.
pub fn blocking_reader(get: GetResult, gzip: bool) -> Box<dyn BufRead + Send> {
    let stream = get
        .into_stream()
        .map_err(|e| std::io::Error::other(StorageFault(e.to_string())));
    let bridge = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    if gzip {
        Box::new(BufReader::with_capacity(
            1 << 20,
            MultiGzDecoder::new(bridge),
        ))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, bridge))
    }
}

/// Whole object as bytes (Parquet needs random access to its footer), decompressed when needed.
pub async fn read_all(get: GetResult, gzip: bool) -> Result<Bytes, ReadError> {
    let bytes = get
        .bytes()
        .await
        .map_err(|e| ReadError::Unavailable(e.to_string()))?;
    if !gzip {
        return Ok(bytes);
    }
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        MultiGzDecoder::new(bytes.as_ref())
            .read_to_end(&mut out)
            .map_err(|e| classify(e, "gzip"))?;
        Ok(Bytes::from(out))
    })
    .await
    .map_err(|source| {
        ReadError::Sink(Error::Task {
            what: "gzip decoder".into(),
            source,
        })
    })?
}
