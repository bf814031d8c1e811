//! An in-memory blob store for tests.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use berth_core::{ByteRange, Digest, Hasher};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use crate::{BlobStore, ByteStream, StorageError, UploadCursor};

/// Blobs and uploads held in memory; contents vanish with the value.
#[derive(Debug, Default)]
pub struct MemoryStore {
    blobs: Mutex<HashMap<Digest, Bytes>>,
    uploads: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn truncate(&self, id: &str, len: u64) -> Result<(), StorageError> {
        let mut uploads = self.uploads.lock().unwrap();
        uploads.get_mut(id).ok_or(StorageError::NotFound)?.truncate(len as usize);
        Ok(())
    }
}

fn once(bytes: Bytes) -> ByteStream {
    futures_util::stream::iter([Ok(bytes)]).boxed()
}

#[async_trait]
impl BlobStore for MemoryStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        Ok(self.blobs.lock().unwrap().get(digest).map(|b| b.len() as u64))
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream, StorageError> {
        let blob = self.blobs.lock().unwrap().get(digest).cloned().ok_or(StorageError::NotFound)?;
        Ok(once(match range {
            Some(r) => blob.slice(r.start as usize..=r.end as usize),
            None => blob,
        }))
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        self.blobs.lock().unwrap().remove(digest);
        Ok(())
    }

    fn list(&self) -> BoxStream<'_, Result<(Digest, u64), StorageError>> {
        let all: Vec<_> = self.blobs.lock().unwrap().iter().map(|(d, b)| Ok((d.clone(), b.len() as u64))).collect();
        futures_util::stream::iter(all).boxed()
    }

    async fn upload_create(&self, id: &str) -> Result<UploadCursor, StorageError> {
        self.uploads.lock().unwrap().insert(id.to_owned(), Vec::new());
        Ok(UploadCursor::default())
    }

    async fn upload_append(
        &self,
        id: &str,
        _cursor: &UploadCursor,
        offset: u64,
        mut data: ByteStream,
        hasher: &mut Hasher,
    ) -> Result<(u64, UploadCursor), StorageError> {
        let mut written = 0u64;
        while let Some(chunk) = data.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    self.truncate(id, offset)?;
                    return Err(e.into());
                }
            };
            hasher.update(&chunk);
            let mut uploads = self.uploads.lock().unwrap();
            let staged = uploads.get_mut(id).ok_or(StorageError::NotFound)?;
            staged.truncate((offset + written) as usize);
            staged.extend_from_slice(&chunk);
            written += chunk.len() as u64;
        }
        Ok((written, UploadCursor::default()))
    }

    async fn upload_rollback(&self, id: &str, _cursor: &UploadCursor, len: u64) -> Result<(), StorageError> {
        self.truncate(id, len)
    }

    async fn upload_size(&self, id: &str, _cursor: &UploadCursor) -> Result<Option<u64>, StorageError> {
        Ok(self.uploads.lock().unwrap().get(id).map(|u| u.len() as u64))
    }

    async fn upload_seal(&self, _id: &str, cursor: &UploadCursor) -> Result<UploadCursor, StorageError> {
        Ok(cursor.clone())
    }

    async fn upload_read(&self, id: &str, _cursor: &UploadCursor) -> Result<ByteStream, StorageError> {
        let data = self.uploads.lock().unwrap().get(id).cloned().ok_or(StorageError::NotFound)?;
        Ok(once(Bytes::from(data)))
    }

    async fn upload_commit(&self, id: &str, _cursor: &UploadCursor, digest: &Digest) -> Result<(), StorageError> {
        let data = self.uploads.lock().unwrap().remove(id).ok_or(StorageError::NotFound)?;
        self.blobs.lock().unwrap().entry(digest.clone()).or_insert_with(|| Bytes::from(data));
        Ok(())
    }

    async fn upload_abort(&self, id: &str, _cursor: &UploadCursor) -> Result<(), StorageError> {
        self.uploads.lock().unwrap().remove(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_store_passes_the_backend_suite() {
        crate::testsuite::run_all(&super::MemoryStore::new()).await;
    }
}
