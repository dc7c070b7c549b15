//! [`ObjectStorage`]: `PutObject` (and `GetObject`, `DeleteObject`, for the
//! archive) to an S3-compatible service or to a local directory, through
//! `object_store`.
//!
//! One `object_store` client per bucket (and KMS key) is made on first use
//! and kept. For S3, `object_store` retries a failed request once on its own
//! (so a dropped keep-alive connection does not cost a queue round); longer
//! retries are the caller's.
//!
//! The directory backend keeps bucket `b`, key `k/l` at `root/b/k/l`.
//! `object_store`'s `LocalFileSystem` writes a staging file beside the
//! target and renames it, and with fsync on it syncs the file and its
//! directories before returning, so a successful `put` is durable and a
//! crash leaves either the old object or the new one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::client::{HttpClient, HttpConnector, HttpError, HttpErrorKind};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

use crate::{EndpointError, error_chain, tls};

/// How long one S3 request may take, and connecting.
const S3_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const S3_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to reach an S3-compatible service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// The service's base URL, e.g. `http://127.0.0.1:9000`; `None` for AWS
    /// (the regional endpoint of `region`).
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Allow `http://` endpoints (otherwise only HTTPS is used).
    pub allow_http: bool,
    /// `bucket.host/key` requests instead of `host/bucket/key`.
    pub virtual_hosted_style: bool,
}

#[derive(Debug)]
enum Backend {
    Directory(PathBuf),
    S3(S3Settings),
}

type StoreKey = (String, Option<String>);

/// Object storage: S3 or a directory. Cheap to clone; clones share the
/// cached clients.
#[derive(Debug, Clone)]
pub struct ObjectStorage {
    backend: Arc<Backend>,
    stores: Arc<Mutex<HashMap<StoreKey, Arc<dyn ObjectStore>>>>,
}

impl ObjectStorage {
    /// Buckets are directories under `root` (`root/bucket/key`), created as
    /// needed. Writes are atomic (staging file, then rename) and fsync'd.
    pub fn directory(root: PathBuf) -> ObjectStorage {
        ObjectStorage::with_backend(Backend::Directory(root))
    }

    /// An S3-compatible service.
    pub fn s3(settings: S3Settings) -> ObjectStorage {
        ObjectStorage::with_backend(Backend::S3(settings))
    }

    fn with_backend(backend: Backend) -> ObjectStorage {
        ObjectStorage {
            backend: Arc::new(backend),
            stores: Arc::default(),
        }
    }

    /// `PutObject`: store `body` as `key` in `bucket`, replacing any object
    /// already there.
    ///
    /// With `kms_key_id`, S3 encrypts the object with SSE-KMS under that
    /// key. The directory backend ignores `kms_key_id`: files are written in
    /// clear, protected only by the file system's permissions.
    ///
    /// An invalid bucket name or key (empty, an empty segment, `.` or `..`)
    /// is `Permanent`, as are a missing bucket and refused access; a
    /// connection failure, a timeout, S3 5xx and throttling are `Temporary`.
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        kms_key_id: Option<&str>,
    ) -> Result<(), EndpointError> {
        validate_bucket(bucket)?;
        let path = validate_key(key)?;
        let kms_key_id = match &*self.backend {
            Backend::Directory(_) => None,
            Backend::S3(_) => kms_key_id.filter(|k| !k.is_empty()),
        };
        let store = self.store(bucket, kms_key_id).await?;
        store
            .put_opts(&path, PutPayload::from_bytes(body), Default::default())
            .await
            .map(|_| ())
            .map_err(|e| classify(&self.backend, "put", bucket, key, &e))
    }

    /// `GetObject`: the bytes of `key` in `bucket`, or `None` when there is
    /// no such object. Errors are classified as for [`ObjectStorage::put`].
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Option<Bytes>, EndpointError> {
        validate_bucket(bucket)?;
        let path = validate_key(key)?;
        let store = self.store(bucket, None).await?;
        let result = match store.get(&path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(classify(&self.backend, "get", bucket, key, &e)),
        };
        match result.bytes().await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(classify(&self.backend, "get", bucket, key, &e)),
        }
    }

    /// `DeleteObject`: removes `key` from `bucket`. Deleting an object that
    /// is not there succeeds.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), EndpointError> {
        validate_bucket(bucket)?;
        let path = validate_key(key)?;
        let store = self.store(bucket, None).await?;
        match store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(classify(&self.backend, "delete", bucket, key, &e)),
        }
    }

    /// For the directory backend: the bucket's directory (created if
    /// missing) and the file each of `keys` is kept in, exactly where
    /// [`ObjectStorage::put`] writes and [`ObjectStorage::get`] reads it.
    /// `None` for S3. This lets a caller write many objects and make them
    /// durable together (one file-system sync instead of an fsync per
    /// object); such a caller must write a staging file `{file}#{n}` and
    /// rename it, as `put` does, so readers never see a partial object.
    /// Blocking (it creates and resolves the directory). Keys are
    /// validated as for `put`.
    pub fn directory_files(
        &self,
        bucket: &str,
        keys: &[&str],
    ) -> Result<Option<(PathBuf, Vec<PathBuf>)>, EndpointError> {
        validate_bucket(bucket)?;
        let Backend::Directory(root) = &*self.backend else {
            return Ok(None);
        };
        let (dir, store) = bucket_directory(root, bucket)?;
        let files = keys
            .iter()
            .map(|key| {
                let path = validate_key(key)?;
                store
                    .path_to_filesystem(&path)
                    .map_err(|e| classify(&self.backend, "put", bucket, key, &e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some((dir, files)))
    }

    /// The cached client for `bucket`, made on first use.
    async fn store(
        &self,
        bucket: &str,
        kms_key_id: Option<&str>,
    ) -> Result<Arc<dyn ObjectStore>, EndpointError> {
        let cache_key = (bucket.to_owned(), kms_key_id.map(str::to_owned));
        if let Some(store) = self.lock().get(&cache_key) {
            return Ok(store.clone());
        }
        let store: Arc<dyn ObjectStore> = match &*self.backend {
            Backend::Directory(root) => {
                let (root, bucket) = (root.clone(), bucket.to_owned());
                let (_, store) =
                    tokio::task::spawn_blocking(move || bucket_directory(&root, &bucket))
                        .await
                        .map_err(|e| EndpointError::Temporary(e.to_string()))??;
                Arc::new(store.with_fsync(true))
            }
            Backend::S3(settings) => Arc::new(s3_store(settings, bucket, kms_key_id)?),
        };
        Ok(self.lock().entry(cache_key).or_insert(store).clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StoreKey, Arc<dyn ObjectStore>>> {
        self.stores
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn s3_store(
    settings: &S3Settings,
    bucket: &str,
    kms_key_id: Option<&str>,
) -> Result<object_store::aws::AmazonS3, EndpointError> {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(&settings.region)
        .with_access_key_id(&settings.access_key_id)
        .with_secret_access_key(&settings.secret_access_key)
        .with_allow_http(settings.allow_http)
        .with_virtual_hosted_style_request(settings.virtual_hosted_style)
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(settings.allow_http)
                .with_timeout(S3_REQUEST_TIMEOUT)
                .with_connect_timeout(S3_CONNECT_TIMEOUT),
        )
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
            },
            max_retries: 1,
            retry_timeout: Duration::from_secs(120),
        })
        .with_http_connector(RingConnector {
            allow_http: settings.allow_http,
        });
    if let Some(endpoint) = &settings.endpoint {
        if endpoint.starts_with("http://") && !settings.allow_http {
            return Err(EndpointError::Permanent(format!(
                "S3 endpoint {endpoint} is plain HTTP but allow_http is off"
            )));
        }
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(key) = kms_key_id {
        builder = builder.with_sse_kms_encryption(key);
    }
    builder
        .build()
        .map_err(|e| EndpointError::Permanent(format!("S3 bucket {bucket:?}: {}", error_chain(&e))))
}

/// Builds `object_store`'s HTTP client on reqwest with Postern's rustls
/// configuration (ring), instead of `object_store`'s own (aws-lc-rs).
#[derive(Debug)]
struct RingConnector {
    allow_http: bool,
}

impl HttpConnector for RingConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let generic =
            |source: Box<dyn std::error::Error + Send + Sync>| object_store::Error::Generic {
                store: "S3",
                source,
            };
        let tls = tls::client_config(Vec::new()).map_err(|e| generic(e.into()))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(!self.allow_http)
            .timeout(S3_REQUEST_TIMEOUT)
            .connect_timeout(S3_CONNECT_TIMEOUT)
            .user_agent(concat!("postern/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| generic(Box::new(e)))?;
        Ok(HttpClient::new(client))
    }
}

fn validate_bucket(bucket: &str) -> Result<(), EndpointError> {
    if bucket.is_empty()
        || bucket == "."
        || bucket == ".."
        || bucket.contains(['/', '\\'])
        || bucket.chars().any(char::is_control)
    {
        return Err(EndpointError::Permanent(format!(
            "invalid bucket name {bucket:?}"
        )));
    }
    Ok(())
}

/// A key is `/`-separated segments, none empty, `.` or `..`.
fn validate_key(key: &str) -> Result<Path, EndpointError> {
    let invalid =
        |why: &str| EndpointError::Permanent(format!("invalid object key {key:?}: {why}"));
    if key.is_empty() {
        return Err(invalid("empty"));
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err(invalid("empty path segment")),
            "." | ".." => return Err(invalid("'.' and '..' segments are not allowed")),
            _ => {}
        }
    }
    if key.chars().any(char::is_control) {
        return Err(invalid("control character"));
    }
    Path::parse(key).map_err(|e| invalid(&e.to_string()))
}

/// Temporary or permanent, from what `object_store` reports.
///
/// `object_store` turns S3's 404 (`NoSuchBucket`), 403 and 401 into
/// `NotFound`, `PermissionDenied` and `Unauthenticated`; other statuses
/// stay in a `Generic` error whose text holds the status code.
fn classify(
    backend: &Backend,
    operation: &str,
    bucket: &str,
    key: &str,
    error: &object_store::Error,
) -> EndpointError {
    use object_store::Error as E;
    let message = format!("{operation} {bucket}/{key}: {}", error_chain(error));
    match error {
        E::NotFound { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::UnknownConfigurationKey { .. } => EndpointError::Permanent(message),
        _ => match backend {
            Backend::Directory(_) => EndpointError::Temporary(message),
            Backend::S3(_) => {
                if request_never_sent(error) {
                    return EndpointError::Permanent(message);
                }
                if transport_error(error).is_some() {
                    return EndpointError::Temporary(message);
                }
                match status_in(&message) {
                    Some(status)
                        if (400..500).contains(&status) && status != 408 && status != 429 =>
                    {
                        EndpointError::Permanent(message)
                    }
                    _ => EndpointError::Temporary(message),
                }
            }
        },
    }
}

/// The HTTP transport error (connect, timeout, ...) in the error's sources.
fn transport_error(error: &(dyn std::error::Error + 'static)) -> Option<HttpErrorKind> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return Some(http.kind());
        }
        current = e.source();
    }
    None
}

/// A request reqwest refused to build (e.g. an `http://` URL when only
/// HTTPS is allowed): sending it again cannot succeed.
fn request_never_sent(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(reqwest) = e.downcast_ref::<reqwest::Error>() {
            return reqwest.is_builder();
        }
        current = e.source();
    }
    false
}

/// The status in `object_store`'s "Server returned non-2xx status code:
/// 503 Service Unavailable" text (the status itself is not public).
fn status_in(message: &str) -> Option<u16> {
    let marker = "status code: ";
    let start = message.find(marker)? + marker.len();
    message.get(start..start + 3)?.parse().ok()
}

/// A bucket of a directory backend: its directory, made if missing, and a
/// store rooted there.
fn bucket_directory(
    root: &std::path::Path,
    bucket: &str,
) -> Result<(PathBuf, LocalFileSystem), EndpointError> {
    let dir = root.join(bucket);
    std::fs::create_dir_all(&dir).map_err(|e| {
        EndpointError::Temporary(format!(
            "cannot create bucket directory {}: {e}",
            dir.display()
        ))
    })?;
    let store = LocalFileSystem::new_with_prefix(&dir).map_err(|e| {
        EndpointError::Temporary(format!(
            "bucket directory {}: {}",
            dir.display(),
            error_chain(&e)
        ))
    })?;
    Ok((dir, store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(validate_key("a/b/c.eml").is_ok());
        for bad in ["", "/a", "a/", "a//b", "a/../b", "..", "./a", "a\nb"] {
            let err = validate_key(bad).unwrap_err();
            assert!(matches!(err, EndpointError::Permanent(_)), "{bad:?}: {err}");
        }
        for bad in ["", "..", "a/b"] {
            assert!(validate_bucket(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn status_parsing() {
        assert_eq!(
            status_in(
                "Error performing PUT x - Server returned non-2xx status code: 503 Service Unavailable: <Error/>"
            ),
            Some(503)
        );
        assert_eq!(status_in("connection refused"), None);
    }
}
