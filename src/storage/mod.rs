//! Where bounded data lives: the object-store registry that maps `file://`, `hdfs://`
//! (native HDFS client) and `s3://` (credentials and endpoint from the `AWS_*`
//! environment) to one `ObjectStore` code path, so every location kind is read and
//! written the same way. Stores are created on first use, one per namenode or bucket.

pub mod locations;

use std::path::Path;
use std::sync::Arc;

use dashmap::DashMap;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use hdfs_native_object_store::HdfsObjectStoreBuilder;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use url::Url;

use crate::error::{Result, WeirError};

/// Object stores by scheme and authority; `hdfs://namenode:port` and `s3://bucket` stores
/// are built lazily.
#[derive(Debug, Default)]
pub struct ObjectStores {
    inner: DefaultObjectStoreRegistry,
    lazily_built: DashMap<String, Arc<dyn ObjectStore>>,
}

impl ObjectStores {
    pub fn new() -> Self {
        Self::default()
    }
}

fn store_key(url: &Url) -> String {
    format!(
        "{}://{}",
        url.scheme(),
        &url[url::Position::BeforeHost..url::Position::AfterPort]
    )
}

impl ObjectStoreRegistry for ObjectStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.inner.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        self.inner.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.inner.get_store(url) {
            return Ok(store);
        }
        let key = store_key(url);
        if let Some(store) = self.lazily_built.get(&key) {
            return Ok(store.clone());
        }
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            // The HDFS client resolves the namenode itself (and reads HADOOP_CONF_DIR
            // for HA name services), so one store per authority is enough.
            "hdfs" | "viewfs" => Arc::new(
                HdfsObjectStoreBuilder::new()
                    .with_url(key.clone())
                    .build()
                    .map_err(|e| DataFusionError::ObjectStore(Box::new(e)))?,
            ),
            // One store per bucket; AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
            // AWS_ENDPOINT (an S3-compatible service) and AWS_ALLOW_HTTP are read from
            // the environment, as the AWS tools do.
            "s3" => Arc::new(
                AmazonS3Builder::from_env()
                    .with_url(key.clone())
                    .build()
                    .map_err(|e| DataFusionError::ObjectStore(Box::new(e)))?,
            ),
            other => {
                return Err(DataFusionError::Configuration(format!(
                    "no object store for scheme \"{other}\" in {url}; {SUPPORTED}"
                )));
            }
        };
        Ok(self.lazily_built.entry(key).or_insert(store).clone())
    }
}

const SUPPORTED: &str = "supported: file://, hdfs://, s3://";

/// Resolve a table location as written in SQL: URLs (`hdfs://…`, `file://…`) stay as
/// they are; a plain path is taken relative to `base` (the `.sql` file's folder). A
/// location outside the allowed ones is refused ([`locations`]).
pub fn resolve_location(location: &str, base: Option<&Path>) -> Result<String> {
    let resolved = resolve(location, base)?;
    locations::admit(&resolved)?;
    Ok(resolved)
}

fn resolve(location: &str, base: Option<&Path>) -> Result<String> {
    if let Some(url) = locations::url_of(location) {
        return match url.scheme() {
            "file" | "hdfs" | "viewfs" | "s3" => Ok(location.to_string()),
            other => Err(WeirError::InvalidParameter(format!(
                "unsupported location scheme \"{other}\" in \"{location}\"; {SUPPORTED}, or a path"
            ))),
        };
    }
    let path = Path::new(location);
    let joined = match base {
        Some(base) if path.is_relative() => base.join(path),
        _ => path.to_path_buf(),
    };
    let mut resolved = joined.to_string_lossy().into_owned();
    // A folder is read as a whole (with its partition sub-folders) only with a trailing slash.
    if joined.is_dir() && !resolved.ends_with('/') {
        resolved.push('/');
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_sql_folder() {
        let base = Path::new("/srv/sql");
        assert_eq!(
            resolve_location("data/x.parquet", Some(base)).unwrap(),
            "/srv/sql/data/x.parquet"
        );
        assert_eq!(resolve_location("/abs/y/", Some(base)).unwrap(), "/abs/y/");
        assert_eq!(
            resolve_location("hdfs://nn:8020/shop/", Some(base)).unwrap(),
            "hdfs://nn:8020/shop/"
        );
        assert!(
            resolve_location("gopher://x/", None)
                .unwrap_err()
                .to_string()
                .contains("supported")
        );
    }

    #[test]
    fn hdfs_stores_are_built_per_authority() {
        let stores = ObjectStores::new();
        let a = stores
            .get_store(&Url::parse("hdfs://nn1:8020/a/b").unwrap())
            .unwrap();
        let b = stores
            .get_store(&Url::parse("hdfs://nn1:8020/c").unwrap())
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(
            stores
                .get_store(&Url::parse("file:///tmp").unwrap())
                .is_ok()
        );
        let c = stores
            .get_store(&Url::parse("s3://bucket-a/x/y").unwrap())
            .unwrap();
        let d = stores
            .get_store(&Url::parse("s3://bucket-a/z").unwrap())
            .unwrap();
        let e = stores
            .get_store(&Url::parse("s3://bucket-b/z").unwrap())
            .unwrap();
        assert!(Arc::ptr_eq(&c, &d));
        assert!(!Arc::ptr_eq(&c, &e));
        let err = stores
            .get_store(&Url::parse("gopher://x/").unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("s3://"), "{err}");
    }
}
