//! The file store: bytes of uploads and outputs by file id. [`FileStore`] is small so that an S3-compatible
//! store can stand in for [`LocalFiles`] (the engine then works on a local copy, see [`FileStore::local_path`]).

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::error::ServerError;

#[async_trait]
pub trait FileStore: Send + Sync {
    /// Moves (or copies) a local file in as `id`.
    async fn put_path(&self, id: &str, src: &Path) -> Result<u64, ServerError>;
    /// A local path holding the bytes of `id` (for the engine, ffmpeg and range-serving).
    async fn local_path(&self, id: &str) -> Result<PathBuf, ServerError>;
    async fn exists(&self, id: &str) -> bool;
    async fn delete(&self, id: &str) -> Result<(), ServerError>;
    /// A scratch directory on the same filesystem (uploads stream here before `put_path`).
    fn scratch_dir(&self) -> PathBuf;
}

/// Files in one directory, named by id.
pub struct LocalFiles {
    dir: PathBuf,
    scratch: PathBuf,
}

impl LocalFiles {
    pub fn new(root: &Path) -> Result<Self, ServerError> {
        let dir = root.join("files");
        let scratch = root.join("tmp");
        std::fs::create_dir_all(&dir)?;
        std::fs::create_dir_all(&scratch)?;
        Ok(LocalFiles { dir, scratch })
    }
    fn path(&self, id: &str) -> Result<PathBuf, ServerError> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(ServerError::Other(format!("bad file id {id:?}")));
        }
        Ok(self.dir.join(id))
    }
}

#[async_trait]
impl FileStore for LocalFiles {
    async fn put_path(&self, id: &str, src: &Path) -> Result<u64, ServerError> {
        let dst = self.path(id)?;
        if tokio::fs::rename(src, &dst).await.is_err() {
            tokio::fs::copy(src, &dst).await?;
        }
        Ok(tokio::fs::metadata(&dst).await?.len())
    }
    async fn local_path(&self, id: &str) -> Result<PathBuf, ServerError> {
        self.path(id)
    }
    async fn exists(&self, id: &str) -> bool {
        match self.path(id) {
            Ok(p) => tokio::fs::metadata(p).await.is_ok(),
            Err(_) => false,
        }
    }
    async fn delete(&self, id: &str) -> Result<(), ServerError> {
        match tokio::fs::remove_file(self.path(id)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
    fn scratch_dir(&self) -> PathBuf {
        self.scratch.clone()
    }
}
