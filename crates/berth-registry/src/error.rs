//! The registry service's error type. The HTTP layer maps each variant to a
//! protocol status and error code in one place.

use berth_core::Digest;
use berth_meta::MetaError;
use berth_storage::StorageError;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("repository name not known to registry")]
    NameUnknown,
    #[error("blob unknown to registry")]
    BlobUnknown(Digest),
    #[error("blob upload unknown to registry")]
    UploadUnknown,
    /// A chunk did not start at the current offset or its length was wrong.
    #[error("chunk out of order or of the wrong size; upload has {received} bytes")]
    UploadRangeInvalid { received: u64 },
    #[error("digest invalid: {0}")]
    DigestInvalid(String),
    #[error("size invalid: {0}")]
    SizeInvalid(String),
    #[error("manifest unknown")]
    ManifestUnknown,
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest media type {0:?} is not supported")]
    ManifestUnsupported(String),
    #[error("manifest exceeds the {limit} byte limit")]
    ManifestTooLarge { limit: usize },
    #[error("manifest references unknown content")]
    ManifestBlobUnknown(Vec<Digest>),
    #[error("range not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("deletes are disabled on this registry")]
    DeletesDisabled,
    /// A tag immutability rule of the project protects this tag.
    #[error("tag {0} is immutable: it cannot be moved or deleted")]
    TagImmutable(String),
    /// The manifest is a child of an index in the repository (the index's digest).
    #[error("manifest is referenced by index {0}")]
    ManifestReferenced(String),
    /// A hard limit of the project refused the change: `storage`, `repositories` or `tags`.
    #[error("project quota exceeded: {0}")]
    QuotaExceeded(String),
    #[error("storage is full")]
    StorageFull,
    /// A backend (database or blob store) is unreachable; the client may retry.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// Anything unexpected; details are logged, never sent to clients.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<MetaError> for RegistryError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::MissingReferences(missing) => RegistryError::ManifestBlobUnknown(missing),
            MetaError::ImmutableTag(tag) => RegistryError::TagImmutable(tag),
            MetaError::ReferencedByIndex(index) => RegistryError::ManifestReferenced(index),
            MetaError::QuotaExceeded(kind) => RegistryError::QuotaExceeded(kind),
            MetaError::Unavailable(detail) => RegistryError::Unavailable(detail),
            other => RegistryError::Internal(other.to_string()),
        }
    }
}

impl From<StorageError> for RegistryError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Full => RegistryError::StorageFull,
            StorageError::Unavailable(detail) => RegistryError::Unavailable(detail),
            other => RegistryError::Internal(other.to_string()),
        }
    }
}
