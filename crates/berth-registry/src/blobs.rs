//! Reading and deleting blobs.

use berth_core::{ByteRange, Digest, RepoName};
use berth_meta::{EventActor, EventDraft, EventKind};

use crate::{ByteStream, Registry, RegistryError};

/// A blob (or part of it) ready to stream to a client.
pub struct BlobBody {
    /// Size of the whole blob.
    pub size: u64,
    /// The part being sent, when a range was asked for.
    pub range: Option<ByteRange>,
    pub stream: ByteStream,
}

impl Registry {
    /// Size of `digest` if it is visible in `repo`.
    pub async fn stat_blob(&self, repo: &RepoName, digest: &Digest) -> Result<u64, RegistryError> {
        let key = self.cache.blob_key(repo, digest);
        if let Some(size) = self.cache.blob_size(&key) {
            return Ok(size);
        }
        let size =
            self.meta.blob_in_repo(repo, digest).await?.ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))?;
        self.cache.put_blob_size(key, size);
        Ok(size)
    }

    /// Opens a blob for reading, honouring a `Range` header value.
    pub async fn get_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range_header: Option<&str>,
    ) -> Result<BlobBody, RegistryError> {
        let size = self.stat_blob(repo, digest).await?;
        let range = match range_header {
            Some(h) => ByteRange::parse_request(h, size).map_err(|_| RegistryError::RangeNotSatisfiable { size })?,
            None => None,
        };
        match self.blobs.get(digest, range).await {
            Ok(stream) => Ok(BlobBody { size, range, stream }),
            Err(e) if e.is_not_found() => {
                tracing::error!(%digest, "blob is recorded in metadata but missing from the blob store");
                Err(RegistryError::BlobUnknown(digest.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Hides a blob from `repo`. The bytes are reclaimed by garbage collection.
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest, actor: &EventActor) -> Result<(), RegistryError> {
        if !self.config.deletes_enabled {
            return Err(RegistryError::DeletesDisabled);
        }
        let deleted = EventDraft::new(EventKind::BlobDelete, actor).repository(repo.as_str()).digest(digest.as_str());
        if self.meta.unlink_blob(repo, digest, &[deleted]).await? {
            self.cache.invalidate(repo);
            Ok(())
        } else {
            Err(RegistryError::BlobUnknown(digest.clone()))
        }
    }
}
