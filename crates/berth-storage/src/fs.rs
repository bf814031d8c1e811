//! The filesystem blob store (the embedded default).
//!
//! Layout under the root: `blobs/<alg>/<first two hex>/<hex>` for committed
//! blobs, `uploads/<id>` for staged data. A commit fsyncs the staged file, renames
//! it into place and fsyncs the directory, so after a crash a blob file either
//! does not exist or holds exactly the bytes its name promises.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use berth_core::{ByteRange, Digest, Hasher};
use futures_util::StreamExt;
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use crate::{BlobStore, ByteStream, StorageError};

/// Bytes gathered from the network before one write to disk.
const WRITE_BUFFER: usize = 1024 * 1024;
/// Bytes read from disk per chunk when streaming a blob out.
const READ_CHUNK: usize = 256 * 1024;

/// Blobs as files under a root directory.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        fs::create_dir_all(root.join("blobs")).await?;
        fs::create_dir_all(root.join("uploads")).await?;
        Ok(FsStore { root })
    }

    /// Where a committed blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.encoded();
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    fn upload_path(&self, id: &str) -> PathBuf {
        // Upload ids are server-generated UUIDs; refuse anything else outright.
        debug_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        self.root.join("uploads").join(id)
    }
}

async fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    // Persist the rename itself: see the qmail `syncdir` notes on why a file's
    // fsync does not cover its directory entry.
    let dir = fs::File::open(dir).await?;
    dir.sync_all().await?;
    Ok(())
}

fn is_safe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[async_trait]
impl BlobStore for FsStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        match fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn get(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<ByteStream, StorageError> {
        let mut file = fs::File::open(self.blob_path(digest)).await?;
        let stream = match range {
            Some(r) => {
                file.seek(SeekFrom::Start(r.start)).await?;
                ReaderStream::with_capacity(file.take(r.len()), READ_CHUNK).boxed()
            }
            None => ReaderStream::with_capacity(file, READ_CHUNK).boxed(),
        };
        Ok(stream)
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        match fs::remove_file(self.blob_path(digest)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn upload_create(&self, id: &str) -> Result<(), StorageError> {
        if !is_safe_id(id) {
            return Err(StorageError::NotFound);
        }
        fs::File::create(self.upload_path(id)).await?;
        Ok(())
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        mut data: ByteStream,
        hasher: &mut Hasher,
    ) -> Result<u64, StorageError> {
        if !is_safe_id(id) {
            return Err(StorageError::NotFound);
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .open(self.upload_path(id))
            .await?;
        file.seek(SeekFrom::Start(offset)).await?;
        let mut buffer = Vec::with_capacity(WRITE_BUFFER);
        let mut written = 0u64;
        while let Some(chunk) = data.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            written += chunk.len() as u64;
            if buffer.is_empty() && chunk.len() >= WRITE_BUFFER {
                file.write_all(&chunk).await?;
                continue;
            }
            buffer.extend_from_slice(&chunk);
            if buffer.len() >= WRITE_BUFFER {
                file.write_all(&buffer).await?;
                buffer.clear();
            }
        }
        file.write_all(&buffer).await?;
        file.flush().await?;
        Ok(written)
    }

    async fn upload_truncate(&self, id: &str, len: u64) -> Result<(), StorageError> {
        if !is_safe_id(id) {
            return Err(StorageError::NotFound);
        }
        let file = fs::OpenOptions::new()
            .write(true)
            .open(self.upload_path(id))
            .await?;
        file.set_len(len).await?;
        Ok(())
    }

    async fn upload_size(&self, id: &str) -> Result<Option<u64>, StorageError> {
        if !is_safe_id(id) {
            return Ok(None);
        }
        match fs::metadata(self.upload_path(id)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn upload_read(&self, id: &str) -> Result<ByteStream, StorageError> {
        if !is_safe_id(id) {
            return Err(StorageError::NotFound);
        }
        let file = fs::File::open(self.upload_path(id)).await?;
        Ok(ReaderStream::with_capacity(file, READ_CHUNK).boxed())
    }

    async fn upload_commit(&self, id: &str, digest: &Digest) -> Result<(), StorageError> {
        if !is_safe_id(id) {
            return Err(StorageError::NotFound);
        }
        let staged = self.upload_path(id);
        let target = self.blob_path(digest);
        if fs::try_exists(&target).await? {
            fs::remove_file(&staged).await?;
            return Ok(());
        }
        fs::File::open(&staged).await?.sync_all().await?;
        let dir = target.parent().expect("blob paths have a parent");
        fs::create_dir_all(dir).await?;
        fs::rename(&staged, &target).await?;
        sync_dir(dir).await
    }

    async fn upload_abort(&self, id: &str) -> Result<(), StorageError> {
        if !is_safe_id(id) {
            return Ok(());
        }
        match fs::remove_file(self.upload_path(id)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fs_store_passes_the_backend_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).await.unwrap();
        crate::testsuite::run_all(&store).await;
    }

    #[tokio::test]
    async fn committed_blobs_live_under_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).await.unwrap();
        let digest = Digest::sha256(b"abc");
        store.upload_create("u1").await.unwrap();
        let mut h = digest.algorithm().hasher();
        let data = futures_util::stream::iter([Ok(bytes::Bytes::from_static(b"abc"))]).boxed();
        store.upload_append("u1", 0, data, &mut h).await.unwrap();
        store.upload_commit("u1", &digest).await.unwrap();
        let path = store.blob_path(&digest);
        assert!(path.ends_with(format!("blobs/sha256/ba/{}", digest.encoded())));
        assert_eq!(std::fs::read(path).unwrap(), b"abc");
        assert!(
            std::fs::read_dir(dir.path().join("uploads"))
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[tokio::test]
    async fn path_tricks_in_upload_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).await.unwrap();
        assert!(store.upload_create("../evil").await.is_err());
        assert_eq!(store.upload_size("../../etc/passwd").await.unwrap(), None);
    }
}
