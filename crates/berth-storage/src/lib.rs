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
pub mod testsuite;

use std::fmt::Debug;
use std::io;
use std::pin::Pin;

use async_trait::async_trait;
use berth_core::{ByteRange, Digest, Hasher};
use bytes::Bytes;
use futures_util::Stream;

pub use error::StorageError;
pub use fs::FsStore;
pub use memory::MemoryStore;

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

    /// Creates empty staging space for upload `id`.
    async fn upload_create(&self, id: &str) -> Result<(), StorageError>;

    /// Appends `data` at `offset` (the current staged size), feeding every byte to
    /// `hasher`. Returns the number of bytes written. On error the staged data may
    /// extend past `offset`; callers restore it with [`BlobStore::upload_truncate`].
    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        data: ByteStream,
        hasher: &mut Hasher,
    ) -> Result<u64, StorageError>;

    /// Cuts staged data back to `len` bytes (undoing a failed append).
    async fn upload_truncate(&self, id: &str, len: u64) -> Result<(), StorageError>;

    /// Size of the staged data, or `None` when the upload does not exist.
    async fn upload_size(&self, id: &str) -> Result<Option<u64>, StorageError>;

    /// Streams the staged data (to rebuild hash state after a restart).
    async fn upload_read(&self, id: &str) -> Result<ByteStream, StorageError>;

    /// Makes the staged data durable and moves it to `digest`. The caller has
    /// verified the digest. If the blob already exists the staged copy is dropped.
    async fn upload_commit(&self, id: &str, digest: &Digest) -> Result<(), StorageError>;

    /// Discards staged data. Missing uploads are not an error.
    async fn upload_abort(&self, id: &str) -> Result<(), StorageError>;
}
