//! [`Timed`]: a [`BlobStore`] decorator that records how long every call takes.
//!
//! Latencies go to the `berth_storage_operation_duration_seconds{op}` histogram,
//! `op` being the method name. For `get` and `upload_read` that is the time to
//! open the stream (the first byte on S3), not the transfer; `list` is not
//! timed (it is a maintenance walk that streams for as long as the store is big).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use berth_core::{ByteRange, Digest, Hasher};
use futures_util::stream::BoxStream;

use crate::{AppendRest, BlobStore, ByteStream, StorageError, UploadCursor};

/// The latency histogram every blob-store call feeds.
pub const STORAGE_OPERATION_DURATION: &str = "berth_storage_operation_duration_seconds";

/// A blob store whose calls are timed.
#[derive(Debug, Clone)]
pub struct Timed {
    inner: Arc<dyn BlobStore>,
}

impl Timed {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn BlobStore>) -> Self {
        Timed { inner }
    }
}

/// Awaits a call and records its latency under `op`. A macro so the label is a
/// literal: the metric key is then a `static` and recording allocates nothing.
macro_rules! timed {
    ($op:literal, $call:expr) => {{
        let started = Instant::now();
        let result = $call.await;
        metrics::histogram!(STORAGE_OPERATION_DURATION, "op" => $op).record(started.elapsed().as_secs_f64());
        result
    }};
}

#[async_trait]
impl BlobStore for Timed {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        timed!("stat", self.inner.stat(digest))
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream, StorageError> {
        timed!("get", self.inner.get(digest, range))
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        timed!("delete", self.inner.delete(digest))
    }

    async fn delete_many(&self, digests: &[Digest]) -> Result<(), StorageError> {
        timed!("delete_many", self.inner.delete_many(digests))
    }

    fn list(&self) -> BoxStream<'_, Result<(Digest, u64), StorageError>> {
        self.inner.list()
    }

    async fn upload_create(&self, id: &str) -> Result<UploadCursor, StorageError> {
        timed!("upload_create", self.inner.upload_create(id))
    }

    async fn upload_append(
        &self,
        id: &str,
        cursor: &UploadCursor,
        offset: u64,
        data: ByteStream,
        hasher: &mut Hasher,
    ) -> Result<(u64, UploadCursor), StorageError> {
        timed!("upload_append", self.inner.upload_append(id, cursor, offset, data, hasher))
    }

    async fn upload_append_deferred(
        &self,
        id: &str,
        cursor: &UploadCursor,
        offset: u64,
        data: ByteStream,
        hasher: Hasher,
    ) -> Result<(u64, UploadCursor, AppendRest), StorageError> {
        // The time until the answer: what the client waits for.
        timed!("upload_append", self.inner.upload_append_deferred(id, cursor, offset, data, hasher))
    }

    async fn upload_rollback(&self, id: &str, cursor: &UploadCursor, len: u64) -> Result<(), StorageError> {
        timed!("upload_rollback", self.inner.upload_rollback(id, cursor, len))
    }

    async fn upload_size(&self, id: &str, cursor: &UploadCursor) -> Result<Option<u64>, StorageError> {
        timed!("upload_size", self.inner.upload_size(id, cursor))
    }

    async fn upload_seal(&self, id: &str, cursor: &UploadCursor) -> Result<UploadCursor, StorageError> {
        timed!("upload_seal", self.inner.upload_seal(id, cursor))
    }

    async fn upload_read(&self, id: &str, cursor: &UploadCursor) -> Result<ByteStream, StorageError> {
        timed!("upload_read", self.inner.upload_read(id, cursor))
    }

    async fn upload_commit(&self, id: &str, cursor: &UploadCursor, digest: &Digest) -> Result<(), StorageError> {
        timed!("upload_commit", self.inner.upload_commit(id, cursor, digest))
    }

    async fn upload_abort(&self, id: &str, cursor: &UploadCursor) -> Result<(), StorageError> {
        timed!("upload_abort", self.inner.upload_abort(id, cursor))
    }

    fn staged_data_survives_power_loss(&self) -> bool {
        self.inner.staged_data_survives_power_loss()
    }

    async fn health_check(&self) -> Result<(), StorageError> {
        timed!("health_check", self.inner.health_check())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FsStore, MemoryStore};

    #[tokio::test]
    async fn timed_store_passes_the_backend_suite() {
        let store = Timed::new(Arc::new(MemoryStore::default()));
        crate::testsuite::run_all(&store).await;
    }

    #[tokio::test]
    async fn fs_health_check_sees_a_missing_blob_tree() {
        let dir = tempfile::tempdir().unwrap();
        let store = Timed::new(Arc::new(FsStore::open(dir.path()).await.unwrap()));
        store.health_check().await.unwrap();
        std::fs::rename(dir.path().join("blobs"), dir.path().join("blobs.away")).unwrap();
        assert!(store.health_check().await.is_err());
        std::fs::rename(dir.path().join("blobs.away"), dir.path().join("blobs")).unwrap();
        store.health_check().await.unwrap();
        assert!(std::fs::read_dir(dir.path().join("uploads")).unwrap().next().is_none(), "probe files are removed");
    }
}
