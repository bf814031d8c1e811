//! Blob storage for berth: the [`BlobStore`] trait and its backends.
//!
//! A blob store holds bytes only; which blobs are visible in which repository is
//! the metadata database's business. Stores are content-addressed: a committed
//! blob lives under its digest and is never modified. Uploads are staged under an
//! upload id and become a blob only through [`BlobStore::upload_commit`], which
//! makes the data durable before it appears under its digest, so a crash never
//! leaves a visible blob whose bytes do not match its name.

mod error;
pub mod fs;
pub mod memory;
pub mod s3;
pub mod testsuite;
pub mod timed;

use std::fmt::Debug;
use std::io;
use std::pin::Pin;

use async_trait::async_trait;
use berth_core::{ByteRange, Digest, Hasher};
use bytes::Bytes;
use futures_util::Stream;
use futures_util::stream::BoxStream;

pub use error::StorageError;
pub use fs::FsStore;
pub use memory::MemoryStore;
pub use s3::{S3Config, S3Store};

/// A stream of bytes flowing in or out of a store.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Content-addressed blob storage with staged uploads.
#[async_trait]
pub trait BlobStore: Send + Sync + Debug {
    /// Size of a committed blob, or `None` when the store does not have it.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError>;

    /// Streams a committed blob, or the inclusive `range` of it.
    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream, StorageError>;

    /// Removes a committed blob's bytes. Missing blobs are not an error.
    async fn delete(&self, digest: &Digest) -> Result<(), StorageError>;

    /// Removes many committed blobs' bytes (garbage collection). Missing blobs
    /// are not an error; on error some may be gone and others not, and calling
    /// again is safe. By default [`DELETE_CONCURRENCY`] deletes run at a time;
    /// S3 sends batched `DeleteObjects` requests instead.
    async fn delete_many(&self, digests: &[Digest]) -> Result<(), StorageError> {
        for chunk in digests.chunks(DELETE_CONCURRENCY) {
            let mut deletes = Vec::with_capacity(chunk.len());
            for digest in chunk {
                deletes.push(self.delete(digest));
            }
            futures_util::future::try_join_all(deletes).await?;
        }
        Ok(())
    }

    /// Every committed blob with its size, in no particular order. This walks the
    /// whole store: for maintenance (migration, scrubbing), never on a request path.
    fn list(&self) -> BoxStream<'_, Result<(Digest, u64), StorageError>>;

    /// Creates empty staging space for upload `id` and returns its first cursor.
    async fn upload_create(&self, id: &str) -> Result<UploadCursor, StorageError>;

    /// Appends `data` after the `offset` bytes staged so far, feeding every byte
    /// to `hasher`. Returns the bytes written and the new cursor, which takes
    /// effect once the caller persists it. On error the staged data is as before.
    async fn upload_append(
        &self,
        id: &str,
        cursor: &UploadCursor,
        offset: u64,
        data: ByteStream,
        hasher: &mut Hasher,
    ) -> Result<(u64, UploadCursor), StorageError>;

    /// Like [`BlobStore::upload_append`], but may return as soon as `data` has
    /// ended, while the last bytes are still being hashed and written: the
    /// returned [`AppendRest`] resolves to `hasher` fed every byte once they
    /// are. Until it has resolved, the caller makes no other call for upload
    /// `id`. If it fails, the staged data is as before the append. An error
    /// returned here (the body failed, say) means the append is already undone.
    ///
    /// This lets a chunked upload's `PATCH` answer while its store catches up,
    /// overlapping that with the client's next request. Backends that do not
    /// pipeline their appends finish them here.
    async fn upload_append_deferred(
        &self,
        id: &str,
        cursor: &UploadCursor,
        offset: u64,
        data: ByteStream,
        mut hasher: Hasher,
    ) -> Result<(u64, UploadCursor, AppendRest), StorageError> {
        let (written, cursor) = self.upload_append(id, cursor, offset, data, &mut hasher).await?;
        Ok((written, cursor, Box::pin(std::future::ready(Ok(hasher)))))
    }

    /// Undoes a successful append that the caller decided not to keep (a chunk of
    /// the wrong length): afterwards the staged data is what `cursor` and `len`
    /// describe.
    async fn upload_rollback(&self, id: &str, cursor: &UploadCursor, len: u64) -> Result<(), StorageError>;

    /// Bytes staged, or `None` when the upload's data does not exist.
    async fn upload_size(&self, id: &str, cursor: &UploadCursor) -> Result<Option<u64>, StorageError>;

    /// Ends appending: afterwards the staged data can be read back and committed.
    async fn upload_seal(&self, id: &str, cursor: &UploadCursor) -> Result<UploadCursor, StorageError>;

    /// Streams the staged data (only the first `len` bytes are meaningful).
    /// Needs a sealed cursor on backends that cannot read unfinished uploads.
    async fn upload_read(&self, id: &str, cursor: &UploadCursor) -> Result<ByteStream, StorageError>;

    /// Makes sealed staged data durable and stores it as `digest`. The caller
    /// has verified the digest. If the blob already exists the staged copy is dropped.
    async fn upload_commit(&self, id: &str, cursor: &UploadCursor, digest: &Digest) -> Result<(), StorageError>;

    /// Discards staged data. Missing uploads are not an error.
    async fn upload_abort(&self, id: &str, cursor: &UploadCursor) -> Result<(), StorageError>;

    /// Whether staged bytes that an append acknowledged survive a power loss.
    /// Where they may not, a session resumed by a later process re-reads its
    /// staged bytes rather than trusting the hash state saved with it.
    fn staged_data_survives_power_loss(&self) -> bool {
        true
    }

    /// Proves the backend answers with one cheap round trip: by default a stat
    /// of a blob nobody has (a HEAD request on S3). Backends where a missing
    /// key cannot reveal a broken store check something stronger.
    async fn health_check(&self) -> Result<(), StorageError> {
        let absent: Digest = HEALTH_PROBE_DIGEST.parse().expect("a valid digest");
        self.stat(&absent).await.map(|_| ())
    }
}

/// What [`BlobStore::upload_append_deferred`] left running: resolves to the
/// upload's hasher once every byte of the append is hashed and written.
pub type AppendRest = futures_util::future::BoxFuture<'static, Result<Hasher, StorageError>>;

/// Deletes one backend runs at once in [`BlobStore::delete_many`].
pub const DELETE_CONCURRENCY: usize = 16;

/// A digest no blob has in practice, used by [`BlobStore::health_check`].
const HEALTH_PROBE_DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// Backend-specific progress of a staged upload (for S3: the multipart upload id,
/// finished parts and the pending tail). Opaque to everyone but the backend; the
/// registry persists it with the upload's offset, so any node can continue it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadCursor(pub String);

impl UploadCursor {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
