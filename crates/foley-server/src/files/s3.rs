//! Files in an S3-compatible bucket (`--files s3://bucket/prefix`) through `object_store`: object `<prefix>/<id>`,
//! single PUTs up to [`PART_SIZE`] and multipart uploads above, ranged GETs streamed to the client, and a
//! bounded local [`Cache`] for what the engine and ffmpeg must read from disk.
//!
//! Endpoint, region and credentials come from the standard variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, …, read by `AmazonS3Builder::from_env`). Requests are
//! path-style (`<endpoint>/<bucket>/<key>`, object_store's default) unless `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`;
//! plain http is allowed when the endpoint is an `http://` URL. Every request is bounded in time (connect,
//! first byte, each body chunk, whole upload), and failures become [`ServerError::StoreUnavailable`] (503) or
//! [`ServerError::StoreRefused`] (502), never a hang.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as Key;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, RetryConfig, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::cache::Cache;
use super::{check_id, ByteStream, FileStore};
use crate::error::ServerError;

/// Uploads larger than this go up in parts of this size (S3's minimum part is 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts in flight at once during a multipart upload.
const PARTS_IN_FLIGHT: usize = 4;

/// Time bounds of bucket requests.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Connecting to the endpoint.
    pub connect: Duration,
    /// One request up to its response headers (HEAD, DELETE, a GET's start, a small PUT), retries included.
    pub request: Duration,
    /// Longest pause between two chunks of a body.
    pub idle: Duration,
    /// Retries of a failed request (object_store's backoff), within `request`.
    pub retries: usize,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(30),
            idle: Duration::from_secs(30),
            retries: 3,
        }
    }
}

/// An S3-compatible bucket with a local cache.
pub struct S3Files {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: String,
    cache: Cache,
    scratch: PathBuf,
    t: Timeouts,
}

impl S3Files {
    /// Connects to `bucket` (configuration from the `AWS_*` variables) and checks it answers: a bucket that
    /// refuses (missing, wrong credentials) is a start-up error; one that cannot be reached only a warning
    /// (requests then get 503 until it is back). The cache lives in `<data_dir>/cache`, scratch in `<data_dir>/tmp`.
    pub async fn open(data_dir: &Path, bucket: &str, prefix: &str, cache_bytes: u64, t: Timeouts) -> Result<Self, ServerError> {
        Self::with_builder(AmazonS3Builder::from_env(), data_dir, bucket, prefix, cache_bytes, t).await
    }

    /// [`S3Files::open`] with the connection settings of `builder` instead of the environment's.
    pub async fn with_builder(
        builder: AmazonS3Builder,
        data_dir: &Path,
        bucket: &str,
        prefix: &str,
        cache_bytes: u64,
        t: Timeouts,
    ) -> Result<Self, ServerError> {
        let builder = builder.with_bucket_name(bucket);
        let plain_http = builder.get_config_value(&AmazonS3ConfigKey::Endpoint).is_some_and(|e| e.starts_with("http://"));
        let client = ClientOptions::new()
            .with_allow_http(plain_http)
            .with_connect_timeout(t.connect)
            // The whole-request bound of the HTTP client also covers streamed bodies, so it is generous; the
            // tight bounds are ours (first byte, idle chunks).
            .with_timeout(Duration::from_secs(3600));
        let retry = RetryConfig { max_retries: t.retries, retry_timeout: t.request, ..Default::default() };
        let store = builder
            .with_client_options(client)
            .with_retry(retry)
            .build()
            .map_err(|e| ServerError::Other(format!("--files s3://{bucket}: {e}")))?;
        let scratch = data_dir.join("tmp");
        std::fs::create_dir_all(&scratch)?;
        let cache = Cache::new(&data_dir.join("cache"), cache_bytes)?;
        let s3 = S3Files { store: Arc::new(store), bucket: bucket.into(), prefix: prefix.into(), cache, scratch, t };
        match s3.probe().await {
            Ok(()) => tracing::info!(bucket, prefix, "file store: S3-compatible bucket"),
            Err(e @ ServerError::StoreRefused(_)) => return Err(e),
            Err(e) => tracing::warn!(error = %e, bucket, "the bucket does not answer yet; file requests get 503 until it does"),
        }
        Ok(s3)
    }

    /// One listing request of the prefix.
    pub async fn probe(&self) -> Result<(), ServerError> {
        let prefix = (!self.prefix.is_empty()).then(|| Key::from(self.prefix.as_str()));
        let fut = self.store.list_with_delimiter(prefix.as_ref());
        bounded(self.t.request, "listing the bucket", fut).await.map(|_| ())
    }

    fn key(&self, id: &str) -> Result<Key, ServerError> {
        check_id(id)?;
        Ok(if self.prefix.is_empty() { Key::from(id) } else { Key::from(format!("{}/{id}", self.prefix)) })
    }

    /// The bucket name (for messages and tests).
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// (files, bytes) in the local cache.
    pub async fn cache_usage(&self) -> (usize, u64) {
        self.cache.usage().await
    }

    /// Uploads `src` as `key`: one PUT when small, else a multipart upload (aborted on failure).
    async fn upload(&self, key: &Key, src: &Path, size: u64) -> Result<(), ServerError> {
        if size <= PART_SIZE as u64 {
            let bytes = tokio::fs::read(src).await?;
            return bounded(self.t.request, "uploading", self.store.put(key, bytes.into())).await.map(|_| ());
        }
        let upload = bounded(self.t.request, "starting an upload", self.store.put_multipart(key)).await?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut f = tokio::fs::File::open(src).await?;
        let mut buf = vec![0u8; 1 << 20];
        let res: Result<(), ServerError> = async {
            loop {
                let n = f.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                // A part is bounded like one request: it may wait for an earlier part to finish first.
                bounded(self.t.request * 2, "uploading a part", w.wait_for_capacity(PARTS_IN_FLIGHT)).await?;
                w.write(&buf[..n]);
            }
            Ok(())
        }
        .await;
        match res {
            Ok(()) => bounded(self.t.request * 2, "finishing an upload", w.finish()).await.map(|_| ()),
            Err(e) => {
                let _ = tokio::time::timeout(self.t.request, w.abort()).await;
                Err(e)
            }
        }
    }

    /// A GET of `range` whose body is bounded by the idle timeout between chunks.
    async fn get(&self, key: &Key, range: Option<Range<u64>>) -> Result<ByteStream, ServerError> {
        let opts = GetOptions { range: range.map(GetRange::Bounded), ..Default::default() };
        let res = bounded(self.t.request, "reading", self.store.get_opts(key, opts)).await?;
        let idle = self.t.idle;
        let body = res.into_stream().map_err(|e| std::io::Error::other(classify(e, "reading").to_string())).boxed();
        // The idle bound starts when the next chunk is asked for (a slow client is not the bucket's fault).
        Ok(futures_util::stream::unfold(Some(body), move |state| async move {
            let mut body = state?;
            match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(body))),
                Ok(Some(Err(e))) => Some((Err(e), None)),
                Ok(None) => None,
                Err(_) => Some((Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the bucket stopped sending")), None)),
            }
        })
        .boxed())
    }

    /// Streams `id` into the file `dst`.
    async fn download_to(&self, id: &str, dst: &Path) -> Result<(), ServerError> {
        let mut body = self.get(&self.key(id)?, None).await?;
        let mut f = tokio::fs::File::create(dst).await?;
        let res: Result<(), ServerError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| ServerError::StoreUnavailable(format!("reading {id}: {e}")))?;
                f.write_all(&chunk).await?;
            }
            f.flush().await?;
            Ok(())
        }
        .await;
        if res.is_err() {
            let _ = tokio::fs::remove_file(dst).await;
        }
        res
    }
}

#[async_trait]
impl FileStore for S3Files {
    async fn put_path(&self, id: &str, src: &Path) -> Result<u64, ServerError> {
        let key = self.key(id)?;
        let size = tokio::fs::metadata(src).await?.len();
        self.upload(&key, src, size).await?;
        // Kept in the cache: an upload is usually validated and run right after.
        self.cache.insert(id, src).await?;
        Ok(size)
    }
    async fn local_path(&self, id: &str) -> Result<PathBuf, ServerError> {
        self.key(id)?;
        if let Some(p) = self.cache.get(id).await {
            return Ok(p);
        }
        let tmp = self.scratch.join(format!("dl-{id}-{}", uuid::Uuid::new_v4()));
        self.download_to(id, &tmp).await?;
        Ok(self.cache.insert(id, &tmp).await?)
    }
    async fn exists(&self, id: &str) -> Result<bool, ServerError> {
        match bounded(self.t.request, "checking", self.store.head(&self.key(id)?)).await {
            Ok(_) => Ok(true),
            Err(ServerError::StoreRefused(m)) if m.contains(NOT_FOUND) => Ok(false),
            Err(e) => Err(e),
        }
    }
    async fn delete(&self, id: &str) -> Result<(), ServerError> {
        let key = self.key(id)?;
        self.cache.remove(id).await;
        match bounded(self.t.request, "deleting", self.store.delete(&key)).await {
            Err(ServerError::StoreRefused(m)) if m.contains(NOT_FOUND) => Ok(()),
            other => other,
        }
    }
    fn scratch_dir(&self) -> PathBuf {
        self.scratch.clone()
    }
    async fn copy_to(&self, id: &str, dst: &Path) -> Result<(), ServerError> {
        self.key(id)?;
        if self.cache.link_to(id, dst).await? {
            return Ok(());
        }
        self.download_to(id, dst).await
    }
    async fn read(&self, id: &str, range: Option<Range<u64>>) -> Result<ByteStream, ServerError> {
        self.get(&self.key(id)?, range).await
    }
}

/// Marks the message of a missing object (so `exists`/`delete` can tell it from other refusals).
const NOT_FOUND: &str = "is not in the bucket";

/// Runs one store call under `limit`; its error (or the timeout) becomes a [`ServerError`].
async fn bounded<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = object_store::Result<T>>,
) -> Result<T, ServerError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(e, what)),
        Err(_) => Err(ServerError::StoreUnavailable(format!("{what} timed out after {} s", limit.as_secs()))),
    }
}

/// Refusals (the bucket answered no) are 502s; everything else (unreachable, timeouts, 5xx) is a 503.
fn classify(e: object_store::Error, what: &str) -> ServerError {
    use object_store::Error as E;
    let short = |s: String| -> String { s.chars().take(300).collect() };
    match e {
        E::NotFound { path, .. } => ServerError::StoreRefused(format!("{what}: {path} {NOT_FOUND}")),
        E::PermissionDenied { path, .. } | E::Unauthenticated { path, .. } => {
            ServerError::StoreRefused(format!("{what} {path}: access denied (check the AWS_* credentials)"))
        }
        e @ (E::Precondition { .. }
        | E::AlreadyExists { .. }
        | E::NotModified { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::UnknownConfigurationKey { .. }) => ServerError::StoreRefused(short(format!("{what}: {e}"))),
        e => {
            let text = e.to_string();
            match client_error(&text) {
                Some((status, code)) => ServerError::StoreRefused(format!("{what}: the bucket answered {status} {code}")),
                None => ServerError::StoreUnavailable(short(format!("{what}: {text}"))),
            }
        }
    }
}

/// A 4xx answer (other than 408 and 429) inside an error text: its status and S3 error code (`NoSuchBucket`, …).
/// Listing errors reach us only as text.
fn client_error(text: &str) -> Option<(u16, String)> {
    let at = text.find("non-2xx status code: ")? + "non-2xx status code: ".len();
    let status: u16 = text.get(at..at + 3)?.parse().ok()?;
    if !(400..500).contains(&status) || status == 408 || status == 429 {
        return None;
    }
    let code = text
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(c, _)| c.chars().filter(|c| c.is_ascii_alphanumeric()).take(64).collect())
        .unwrap_or_default();
    Some((status, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_objects_are_refusals_and_transport_errors_are_unavailability() {
        let nf = object_store::Error::NotFound { path: "p/x".into(), source: "404".into() };
        assert!(matches!(classify(nf, "reading"), ServerError::StoreRefused(m) if m.contains(NOT_FOUND)));
        let g = object_store::Error::Generic { store: "S3", source: "connection refused".into() };
        assert!(matches!(classify(g, "reading"), ServerError::StoreUnavailable(_)));
        let listing = "Error performing list request: Server returned non-2xx status code: 404 Not Found: \
                       <?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code></Error>";
        let g = object_store::Error::Generic { store: "S3", source: listing.into() };
        assert_eq!(classify(g, "listing").to_string(), "the file store refused the request (listing: the bucket answered 404 NoSuchBucket)");
        let busy = "Server returned non-2xx status code: 429 Too Many Requests: slow down";
        let g = object_store::Error::Generic { store: "S3", source: busy.into() };
        assert!(matches!(classify(g, "reading"), ServerError::StoreUnavailable(_)));
    }
}
