//! Why a cache operation failed.

use berth_meta::MetaError;
use berth_registry::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Neither the cache nor any upstream has it.
    #[error("not found in the cache or upstream")]
    NotFound,
    /// Nothing cached and the cache is offline.
    #[error("not cached, and the cache is offline")]
    Offline,
    /// Every upstream failed (unreachable, 5xx, auth, timeout).
    #[error("upstream error: {0}")]
    Upstream(String),
    /// The upstream sent a manifest that does not parse or match its digest.
    #[error("upstream sent an invalid manifest: {0}")]
    InvalidManifest(String),
    /// The upstream sent a blob whose bytes do not match its digest.
    #[error("upstream sent corrupt content: {0}")]
    Corrupt(String),
    /// A management request was wrong (bad field, duplicate name).
    #[error("{0}")]
    Invalid(String),
    /// No upstream of that name.
    #[error("upstream not found")]
    UnknownUpstream,
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<MetaError> for ProxyError {
    fn from(e: MetaError) -> Self {
        ProxyError::Registry(e.into())
    }
}
