//! Pull-through cache records: upstream registries, cached blobs with their
//! LRU bookkeeping, and when each cached tag was last confirmed upstream.
//!
//! Cached manifests, tags and blob links live in the ordinary registry tables
//! (a cache repository is a repository whose project is an upstream's
//! namespace), so cached images show up in every listing at once.

use async_trait::async_trait;

use crate::MetaError;

/// An upstream registry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRecord {
    pub name: String,
    pub url: String,
    /// Lower is tried first.
    pub priority: i64,
    pub enabled: bool,
    /// First path segment of this upstream's cache repositories.
    pub namespace: String,
    /// Serves host-less `/v2` paths (registry mirrors).
    pub mirror: bool,
    /// Single-segment names are `library/<name>` upstream (Docker Hub).
    pub library_prefix: bool,
    pub username: Option<String>,
    /// The password sealed with the secrets key.
    pub password_sealed: Option<String>,
    pub timeout_secs: i64,
    pub max_concurrent: i64,
    /// Own size limit in bytes for blobs fetched through it; 0 = none.
    pub max_size: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A cached blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub digest: String,
    /// The upstream it was fetched through.
    pub upstream: String,
    pub size: i64,
    pub created_at: i64,
    pub last_access: i64,
    pub access_count: i64,
    /// Never evicted.
    pub pinned: bool,
}

/// Count and bytes of cached blobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheTotals {
    pub entries: i64,
    pub bytes: i64,
}

/// When a cached tag was last confirmed upstream, and what it pointed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedTag {
    pub upstream: String,
    pub digest: String,
    pub validated_at: i64,
}

/// Access recorded in memory and written in batches: `(digest, last access, extra hits)`.
pub type CacheTouch = (String, i64, i64);

/// Storage of the pull-through cache's own records.
#[async_trait]
pub trait ProxyStore: Send + Sync {
    /// Every upstream, by priority then name.
    async fn list_upstreams(&self) -> Result<Vec<UpstreamRecord>, MetaError>;

    /// Adds an upstream; false when the name is taken.
    async fn insert_upstream(&self, upstream: &UpstreamRecord) -> Result<bool, MetaError>;

    /// Replaces the upstream of the same name; false when absent.
    async fn update_upstream(&self, upstream: &UpstreamRecord) -> Result<bool, MetaError>;

    /// Removes an upstream; false when absent.
    async fn delete_upstream(&self, name: &str) -> Result<bool, MetaError>;

    /// Records a blob that just entered the cache (or refreshes its entry).
    async fn record_cache_entry(&self, digest: &str, upstream: &str, size: i64, now: i64) -> Result<(), MetaError>;

    /// Applies batched accesses.
    async fn touch_cache_entries(&self, touches: &[CacheTouch]) -> Result<(), MetaError>;

    /// One entry.
    async fn cache_entry(&self, digest: &str) -> Result<Option<CacheEntry>, MetaError>;

    /// Entries, most recently used first.
    async fn list_cache_entries(&self, limit: i64, offset: i64) -> Result<Vec<CacheEntry>, MetaError>;

    /// Totals over every entry, or over one upstream's.
    async fn cache_totals(&self, upstream: Option<&str>) -> Result<CacheTotals, MetaError>;

    /// Unpinned entries, least recently used first (of one upstream, or all).
    async fn eviction_candidates(&self, upstream: Option<&str>, limit: i64) -> Result<Vec<CacheEntry>, MetaError>;

    /// Unpinned entries not used since `before`.
    async fn idle_cache_entries(&self, before: i64, limit: i64) -> Result<Vec<CacheEntry>, MetaError>;

    /// Removes an entry; false when absent.
    async fn delete_cache_entry(&self, digest: &str) -> Result<bool, MetaError>;

    /// Pins or unpins an entry; false when absent.
    async fn set_cache_pin(&self, digest: &str, pinned: bool) -> Result<bool, MetaError>;

    /// The confirmation record of a cached tag.
    async fn cached_tag(&self, repo: &str, tag: &str) -> Result<Option<CachedTag>, MetaError>;

    /// Records that `repo:tag` was confirmed upstream at `validated_at`.
    async fn put_cached_tag(&self, repo: &str, tag: &str, record: &CachedTag) -> Result<(), MetaError>;

    /// Hides `digest` from every repository of `project`; returns how many links went.
    async fn unlink_blob_in_project(&self, project: &str, digest: &str) -> Result<u64, MetaError>;

    /// Deletes every repository of `project` with all it holds; returns how many.
    async fn delete_project_repositories(&self, project: &str) -> Result<u64, MetaError>;
}
