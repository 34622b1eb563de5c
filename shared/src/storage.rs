//! Where things live and how to reach them: a [`Location`] (URI + object_store options) and stores built
//! through delta-rs' object_store registry, so `s3://` (AWS, LocalStack, MinIO) and `file://` behave the
//! same. The bottom of the crate: it knows no table, layer or config.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::logstore::store_for;
use deltalake::{ObjectStore, Path};
use object_store::ObjectStoreExt;
use url::Url;

use crate::error::{Error, Result};

pub type StoreRef = Arc<dyn ObjectStore>;

/// A storage location: a URI plus object_store options (endpoint, keys, allow_http...). Values may reference
/// environment variables as `${NAME}`, so one file serves LocalStack, MinIO and real AWS.
#[derive(Debug, Clone)]
pub struct Location {
    pub url: Url,
    pub storage_options: HashMap<String, String>,
}

impl Location {
    /// Bucket (s3) or empty (file).
    pub fn bucket(&self) -> &str {
        self.url.host_str().unwrap_or("")
    }

    /// Key prefix inside the bucket (s3) or absolute directory (file), without leading or trailing `/`.
    pub fn prefix(&self) -> String {
        self.url.path().trim_matches('/').to_string()
    }

    /// Whether a listing here comes back in key order, so a reader may stop early: S3 (and the stores
    /// speaking its API) list in key order, a local directory does not.
    pub fn lists_in_order(&self) -> bool {
        self.url.scheme() != "file"
    }

    /// A child location `<self>/<a>/<b>`.
    pub fn join(&self, parts: &[&str]) -> Location {
        let mut url = self.url.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}/{}", parts.join("/")));
        Location {
            url,
            storage_options: self.storage_options.clone(),
        }
    }
}

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
    let fail = |reason: String| Error::ConfigLoad {
        location: uri.into(),
        reason,
    };
    let url = Url::parse(uri).map_err(|e| fail(e.to_string()))?;
    let location = Location {
        url: url.clone(),
        storage_options: Default::default(),
    };
    let store = bucket_store(&location)?;
    let key = url.path().trim_start_matches('/');
    let path = Path::parse(key).map_err(|e| fail(e.to_string()))?;
    let bytes = store
        .get(&path)
        .await
        .map_err(|e| fail(e.to_string()))?
        .bytes()
        .await
        .map_err(|e| fail(e.to_string()))?;
    String::from_utf8(bytes.to_vec()).map_err(|e| fail(format!("not UTF-8: {e}")))
}

/// An AWS SDK configuration for a service reached at `endpoint_url` (LocalStack, moto...), in `region`,
/// with `keys` when given; otherwise the SDK's own resolution (the function's role on AWS).
pub async fn sdk_config(
    endpoint_url: Option<&str>,
    region: Option<&str>,
    keys: Option<(&str, &str)>,
) -> aws_config::SdkConfig {
    use aws_config::{BehaviorVersion, Region};
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(e) = endpoint_url {
        loader = loader.endpoint_url(e);
    }
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    if let Some((k, s)) = keys {
        loader = loader.credentials_provider(aws_credential_types::Credentials::new(
            k,
            s,
            None,
            None,
            "pipeline-config",
        ));
    }
    loader.load().await
}
