//! The default file store: files in one directory (`<data-dir>/files`), named by id.

use std::io::SeekFrom;
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{check_id, ByteStream, FileStore};
use crate::error::ServerError;

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
        check_id(id)?;
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
    async fn exists(&self, id: &str) -> Result<bool, ServerError> {
        match tokio::fs::metadata(self.path(id)?).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
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
    fn disk_path(&self, id: &str) -> Option<PathBuf> {
        self.path(id).ok()
    }
    async fn read(&self, id: &str, range: Option<Range<u64>>) -> Result<ByteStream, ServerError> {
        let mut f = tokio::fs::File::open(self.path(id)?).await?;
        let body = match range {
            Some(r) => {
                f.seek(SeekFrom::Start(r.start)).await?;
                tokio_util::io::ReaderStream::new(f.take(r.end.saturating_sub(r.start))).boxed()
            }
            None => tokio_util::io::ReaderStream::new(f).boxed(),
        };
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::TryStreamExt;

    use super::{FileStore, LocalFiles};

    #[tokio::test]
    async fn put_read_ranges_exists_delete() {
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFiles::new(dir.path()).unwrap();
        let src = files.scratch_dir().join("x");
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        assert_eq!(files.put_path("f-1", &src).await.unwrap(), 5000);
        assert!(files.exists("f-1").await.unwrap() && !files.exists("f-2").await.unwrap());
        let f = &files;
        let read = |r| async move {
            let chunks: Vec<bytes::Bytes> = f.read("f-1", r).await.unwrap().try_collect().await.unwrap();
            chunks.concat()
        };
        assert_eq!(read(None).await, data);
        assert_eq!(read(Some(10..4010)).await, data[10..4010]);
        assert_eq!(files.disk_path("f-1"), Some(dir.path().join("files/f-1")));
        assert!(files.disk_path("../x").is_none());
        files.delete("f-1").await.unwrap();
        files.delete("f-1").await.unwrap();
        assert!(!files.exists("f-1").await.unwrap());
    }
}
