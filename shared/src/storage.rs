//! Object storage access for landing objects and config files, through delta-rs' object_store registry so
//! `s3://` (AWS, LocalStack, MinIO) and `file://` behave the same.

use std::sync::Arc;

use deltalake::logstore::store_for;
use deltalake::{ObjectStore, Path};
use object_store::ObjectStoreExt;
use url::Url;

use crate::config::Location;
use crate::error::{Error, Result};

pub type StoreRef = Arc<dyn ObjectStore>;

/// A store rooted at the bucket (s3) or filesystem root (file) of `location`, so object keys from events
/// can be used as paths unchanged.
pub fn bucket_store(location: &Location) -> Result<StoreRef> {
    let mut root = location.url.clone();
    root.set_path("/");
    store_for(&root, location.storage_options.clone()).map_err(|e| Error::ConfigLoad {
        location: root.to_string(),
        reason: format!("cannot build object store: {e}"),
    })
}

/// Read a whole small object (a config file) given as an `s3://bucket/key` URI, credentials from env.
pub async fn read_to_string(uri: &str) -> Result<String> {
    let url = Url::parse(uri).map_err(|e| Error::ConfigLoad {
        location: uri.into(),
        reason: e.to_string(),
    })?;
    let location = Location {
        url: url.clone(),
        storage_options: Default::default(),
    };
    let store = bucket_store(&location)?;
    let key = url.path().trim_start_matches('/');
    let path = Path::parse(key).map_err(|e| Error::ConfigLoad {
        location: uri.into(),
        reason: e.to_string(),
    })?;
    let bytes = store
        .get(&path)
        .await
        .map_err(|e| Error::ConfigLoad {
            location: uri.into(),
            reason: e.to_string(),
        })?
        .bytes()
        .await
        .map_err(|e| Error::ConfigLoad {
            location: uri.into(),
            reason: e.to_string(),
        })?;
    String::from_utf8(bytes.to_vec()).map_err(|e| Error::ConfigLoad {
        location: uri.into(),
        reason: format!("not UTF-8: {e}"),
    })
}
