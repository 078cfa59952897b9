//! The file store: bytes of uploads and outputs by file id, behind [`FileStore`]. Two backends:
//! [`local::LocalFiles`] (a directory under `--data-dir`, the default) and [`s3::S3Files`] (an S3-compatible
//! bucket, `--files s3://bucket/prefix`, with a bounded local cache in [`cache`] because the engine and ffmpeg
//! read local files).
//!
//! Nothing here records *where* a file is on a node: a file is found by its id alone (the object key is
//! `<prefix>/<id>`), so any node that shares the bucket and the file records can serve or run it.

pub mod cache;
pub mod local;
pub mod s3;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

use crate::error::ServerError;
use crate::types::TaskRow;

pub use local::LocalFiles;
pub use s3::S3Files;

/// A download body: the requested bytes in order.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

#[async_trait]
pub trait FileStore: Send + Sync {
    /// Moves (or copies) a local file in as `id`; returns its size.
    async fn put_path(&self, id: &str, src: &Path) -> Result<u64, ServerError>;
    /// A local path holding the bytes of `id` (for validation and small reads). For a remote store this is a
    /// cache entry that may be evicted later: read it now, or use [`FileStore::copy_to`] for a lasting copy.
    async fn local_path(&self, id: &str) -> Result<PathBuf, ServerError>;
    /// Whether `id` is stored (an error when the store cannot be asked).
    async fn exists(&self, id: &str) -> Result<bool, ServerError>;
    /// Removes `id`; removing a missing file is not an error.
    async fn delete(&self, id: &str) -> Result<(), ServerError>;
    /// A scratch directory on the same filesystem (uploads stream here before `put_path`).
    fn scratch_dir(&self) -> PathBuf;
    /// A private local copy of `id` at `dst` (a hard link when possible) that no cache eviction touches: what
    /// a worker runs the engine on.
    async fn copy_to(&self, id: &str, dst: &Path) -> Result<(), ServerError> {
        let src = self.local_path(id).await?;
        if tokio::fs::hard_link(&src, dst).await.is_err() {
            tokio::fs::copy(&src, dst).await?;
        }
        Ok(())
    }
    /// Downloads: `Some(path)` when `id` lies on this node's disk and can be served from there as is (ranges
    /// and conditional requests by tower-http); `None` for remote stores, whose downloads use [`FileStore::read`].
    fn disk_path(&self, id: &str) -> Option<PathBuf> {
        let _ = id;
        None
    }
    /// The bytes `range` (all of them when `None`) of `id`, streamed.
    async fn read(&self, id: &str, range: Option<Range<u64>>) -> Result<ByteStream, ServerError>;
}

/// Where the files live (`--files`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Location {
    /// `<data-dir>/files`.
    #[default]
    Local,
    /// Objects `<prefix>/<id>` in an S3-compatible bucket; `cache_bytes` bounds the local cache.
    S3 { bucket: String, prefix: String, cache_bytes: u64 },
}

impl Location {
    /// Parses `--files`: empty or `local` for the data directory, `s3://bucket[/prefix]` for a bucket.
    pub fn parse(spec: &str, cache_bytes: u64) -> Result<Self, String> {
        let spec = spec.trim();
        if spec.is_empty() || spec == "local" {
            return Ok(Location::Local);
        }
        let Some(rest) = spec.strip_prefix("s3://") else {
            return Err(format!("--files {spec:?}: give s3://bucket[/prefix], or leave it unset for <data-dir>/files"));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let ok = (3..=63).contains(&bucket.len())
            && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !ok {
            return Err(format!("--files {spec:?}: {bucket:?} is not a bucket name (3-63 of a-z, 0-9, '-', '.')"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p.is_empty() || p == "." || p == "..") && !prefix.is_empty() {
            return Err(format!("--files {spec:?}: the prefix has an empty, '.' or '..' segment"));
        }
        Ok(Location::S3 { bucket: bucket.to_string(), prefix: prefix.to_string(), cache_bytes })
    }
}

/// Opens the configured store under `data_dir`.
pub async fn open(location: &Location, data_dir: &Path) -> Result<Arc<dyn FileStore>, ServerError> {
    Ok(match location {
        Location::Local => Arc::new(LocalFiles::new(data_dir)?),
        Location::S3 { bucket, prefix, cache_bytes } => {
            Arc::new(S3Files::open(data_dir, bucket, prefix, *cache_bytes, s3::Timeouts::default()).await?)
        }
    })
}

/// File ids are ours (uuids), but they arrive in URLs: only letters, digits and '-' are accepted.
pub fn check_id(id: &str) -> Result<(), ServerError> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(ServerError::Other(format!("bad file id {id:?}")));
    }
    Ok(())
}

/// The task as a worker runs it: its input video copied (linked) into the run directory `dir`, so that the run
/// depends neither on the node that accepted the task nor on a cache entry surviving until the end.
pub async fn stage_input(files: &dyn FileStore, task: &TaskRow, dir: &Path) -> Result<TaskRow, ServerError> {
    let mut task = task.clone();
    if let Some(id) = &task.input_file_id {
        let dst = dir.join("input");
        let _ = tokio::fs::remove_file(&dst).await;
        files.copy_to(id, &dst).await?;
        task.request.video = dst;
    }
    Ok(task)
}

#[cfg(test)]
mod tests {
    use super::Location;

    #[test]
    fn files_flag_is_parsed() {
        assert_eq!(Location::parse("", 1), Ok(Location::Local));
        assert_eq!(Location::parse("local", 1), Ok(Location::Local));
        assert_eq!(
            Location::parse("s3://foley-out/a/b/", 7),
            Ok(Location::S3 { bucket: "foley-out".into(), prefix: "a/b".into(), cache_bytes: 7 })
        );
        assert_eq!(
            Location::parse("s3://foley-out", 7),
            Ok(Location::S3 { bucket: "foley-out".into(), prefix: String::new(), cache_bytes: 7 })
        );
        assert!(Location::parse("gs://x/y", 1).is_err());
        assert!(Location::parse("s3://Bad_Bucket/x", 1).is_err());
        assert!(Location::parse("s3://bucket/a//b", 1).is_err());
        assert!(Location::parse("s3://bucket/../b", 1).is_err());
    }
}
