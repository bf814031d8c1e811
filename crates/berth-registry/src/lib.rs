//! berth's domain services. Knows nothing of HTTP.
//!
//! [`Registry`] implements the OCI Distribution operations on top of a
//! [`BlobStore`](berth_storage::BlobStore) (bytes) and a
//! [`Metadata`](berth_meta::Metadata) backend (the source of truth). Every
//! operation validates before it writes, hashes while receiving, and writes the
//! metadata last, so a failure at any step leaves nothing half-visible.

pub mod access;
mod blobs;
mod cache;
mod error;
mod manifests;
mod pulls;
pub mod quota;
pub mod retention;
mod uploads;
mod usage;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::RepoName;
use berth_meta::Metadata;
use berth_storage::BlobStore;

pub use berth_storage::ByteStream;
pub use blobs::BlobBody;
pub use cache::ManifestBody;
pub use error::RegistryError;
pub use manifests::{ManifestPut, ReferrerList};
pub use pulls::Pull;
pub use uploads::{MountOutcome, UploadState};
pub use usage::FLUSH_INTERVAL as USAGE_FLUSH_INTERVAL;

/// How often new names are indexed for search ([`Registry::spawn_search_indexer`]).
pub const SEARCH_INDEX_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Knobs of the registry service.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Whether DELETE on manifests, tags and blobs is allowed.
    pub deletes_enabled: bool,
    /// Upload sessions idle for longer than this are discarded.
    pub upload_expiry: Duration,
    /// Mount a blob found in any repository when `mount` comes without `from`.
    pub automatic_mount: bool,
    /// How long a cached manifest or blob lookup may be served. Within one
    /// process writes invalidate exactly; with several nodes this bounds how
    /// long another node's tag move or delete takes to become visible.
    pub cache_ttl: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            deletes_enabled: true,
            upload_expiry: Duration::from_secs(24 * 3600),
            automatic_mount: true,
            cache_ttl: Duration::from_secs(3600),
        }
    }
}

/// The registry service: blobs, uploads, manifests, tags, referrers, catalog.
#[derive(Debug)]
pub struct Registry {
    blobs: Arc<dyn BlobStore>,
    meta: Arc<dyn Metadata>,
    config: RegistryConfig,
    /// Live hash state of upload sessions this process has touched.
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<uploads::Session>>>>,
    /// Read caches for manifests and blob stats.
    cache: cache::Caches,
    /// Pull events waiting to be written.
    pulls: pulls::PullQueue,
    /// Pulls counted in memory, written in batches.
    usage: usage::Usage,
    /// When this process started (Unix seconds): upload sessions saved before
    /// it may have lost staged bytes to a power loss.
    started_at: i64,
}

impl Registry {
    pub fn new(blobs: Arc<dyn BlobStore>, meta: Arc<dyn Metadata>, config: RegistryConfig) -> Self {
        let cache = cache::Caches::new(config.cache_ttl);
        Registry {
            blobs,
            meta,
            config,
            sessions: Mutex::new(HashMap::new()),
            cache,
            pulls: Default::default(),
            usage: usage::Usage::default(),
            started_at: berth_meta::now_unix(),
        }
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The metadata backend, for services layered on the registry (the cache).
    pub fn meta(&self) -> &Arc<dyn Metadata> {
        &self.meta
    }

    /// The blob store, for services layered on the registry (the cache).
    pub fn blob_store(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// Drops cached reads of `repo` after a change made around the registry.
    pub fn invalidate(&self, repo: &RepoName) {
        self.cache.invalidate(repo);
    }

    /// Writes the pulls counted since the last call, in one transaction.
    pub async fn flush_usage(&self) -> Result<usize, RegistryError> {
        Ok(self.usage.flush(self.meta.as_ref()).await?)
    }

    /// Flushes the pull counters every [`USAGE_FLUSH_INTERVAL`] until aborted;
    /// call [`Registry::flush_usage`] once more at shutdown.
    pub fn spawn_usage_flusher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let registry = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(USAGE_FLUSH_INTERVAL);
            loop {
                ticker.tick().await;
                if let Err(e) = registry.flush_usage().await {
                    tracing::warn!(error = %e, "cannot write pull counters");
                }
            }
        })
    }

    /// Indexes names added for search every [`SEARCH_INDEX_INTERVAL`] until
    /// aborted, where the backend indexes them in batches (SQLite's tag names,
    /// kept off the push path). Searches see names not yet indexed regardless.
    pub fn spawn_search_indexer(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let registry = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(SEARCH_INDEX_INTERVAL);
            loop {
                ticker.tick().await;
                if let Err(e) = registry.meta.index_search_backlog().await {
                    tracing::warn!(error = %e, "cannot index new names for search");
                }
            }
        })
    }

    /// Repository names for `/v2/_catalog`, strictly after `last`.
    pub async fn catalog(&self, last: Option<&str>, limit: u32) -> Result<Vec<String>, RegistryError> {
        Ok(self.meta.list_repos(last, limit).await?)
    }
}
