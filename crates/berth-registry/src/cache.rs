//! In-process read caches for the hot paths: manifest GET/HEAD and blob HEAD.
//!
//! Entries are keyed by a per-repository generation. Every write that can change
//! what a repository serves (manifest push, tag or manifest delete, blob delete)
//! bumps the generation *after* its transaction commits, so a reader that raced
//! the write can only have cached the old answer under the old generation, which
//! nobody reads again. Generations come from one global counter, so a repository
//! whose generation was evicted never reuses an old number.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use berth_core::{Digest, RepoName};
use berth_meta::QuotaLimits;
use bytes::Bytes;
use moka::sync::Cache;

/// A manifest as served: exact bytes plus the headers derived from them.
#[derive(Debug)]
pub struct ManifestBody {
    pub digest: Digest,
    pub media_type: String,
    pub payload: Bytes,
}

/// Total manifest bytes kept in memory.
const MANIFEST_CACHE_BYTES: u64 = 32 * 1024 * 1024;
/// Blob sizes kept per (repository, digest).
const BLOB_CACHE_ENTRIES: u64 = 200_000;

#[derive(Debug)]
pub(crate) struct Caches {
    next_generation: AtomicU64,
    generations: Cache<String, u64>,
    manifests: Cache<(u64, String), Arc<ManifestBody>>,
    blobs: Cache<(u64, Digest), u64>,
    tag_pages: Cache<TagPageKey, Arc<Vec<String>>>,
    /// Projects' quota limits by project name.
    quota_limits: Cache<String, QuotaLimits>,
}

/// (generation, `last`, page size) of a tags listing.
type TagPageKey = (u64, Option<String>, Option<u32>);

/// How long a project's quota limits are trusted: a limit set on another node
/// takes at most this long to apply to this node's early checks and warnings
/// (the database enforces hard limits in every transaction regardless).
const QUOTA_LIMITS_TTL: Duration = Duration::from_secs(5);

/// Total bytes of tag names kept in cached listings.
const TAG_PAGE_CACHE_BYTES: u64 = 16 * 1024 * 1024;

impl Caches {
    /// Caches whose entries live at most `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Caches {
            next_generation: AtomicU64::new(1),
            generations: Cache::builder().max_capacity(200_000).time_to_live(ttl).build(),
            manifests: Cache::builder()
                .max_capacity(MANIFEST_CACHE_BYTES)
                .weigher(|_, m: &Arc<ManifestBody>| (m.payload.len() + 128).try_into().unwrap_or(u32::MAX))
                .time_to_live(ttl)
                .build(),
            blobs: Cache::builder().max_capacity(BLOB_CACHE_ENTRIES).time_to_live(ttl).build(),
            tag_pages: Cache::builder()
                .max_capacity(TAG_PAGE_CACHE_BYTES)
                .weigher(|_, tags: &Arc<Vec<String>>| {
                    tags.iter().map(|t| t.len() + 24).sum::<usize>().try_into().unwrap_or(u32::MAX)
                })
                .time_to_live(ttl)
                .build(),
            quota_limits: Cache::builder().max_capacity(10_000).time_to_live(ttl.min(QUOTA_LIMITS_TTL)).build(),
        }
    }

    /// `project`'s quota limits, if read recently.
    pub fn quota_limits(&self, project: &str) -> Option<QuotaLimits> {
        self.quota_limits.get(project)
    }

    pub fn put_quota_limits(&self, project: &str, limits: QuotaLimits) {
        self.quota_limits.insert(project.to_owned(), limits);
    }

    /// Forgets `project`'s limits. Call after they changed.
    pub fn forget_quota_limits(&self, project: &str) {
        self.quota_limits.invalidate(project);
    }

    fn generation(&self, repo: &RepoName) -> u64 {
        self.generations.get_with_by_ref(repo.as_str(), || self.next_generation.fetch_add(1, Ordering::Relaxed))
    }

    /// Forgets everything cached for `repo`. Call after the write has committed.
    pub fn invalidate(&self, repo: &RepoName) {
        self.generations.insert(repo.as_str().to_owned(), self.next_generation.fetch_add(1, Ordering::Relaxed));
    }

    /// The cache key for `reference` in `repo` as of now.
    pub fn manifest_key(&self, repo: &RepoName, reference: &str) -> (u64, String) {
        (self.generation(repo), reference.to_owned())
    }

    pub fn manifest(&self, key: &(u64, String)) -> Option<Arc<ManifestBody>> {
        self.manifests.get(key)
    }

    pub fn put_manifest(&self, key: (u64, String), body: Arc<ManifestBody>) {
        self.manifests.insert(key, body);
    }

    pub fn blob_key(&self, repo: &RepoName, digest: &Digest) -> (u64, Digest) {
        (self.generation(repo), digest.clone())
    }

    pub fn blob_size(&self, key: &(u64, Digest)) -> Option<u64> {
        self.blobs.get(key)
    }

    pub fn put_blob_size(&self, key: (u64, Digest), size: u64) {
        self.blobs.insert(key, size);
    }
}

impl Caches {
    pub fn tag_page_key(&self, repo: &RepoName, last: Option<&str>, limit: Option<u32>) -> TagPageKey {
        (self.generation(repo), last.map(str::to_owned), limit)
    }

    pub fn tag_page(&self, key: &TagPageKey) -> Option<Arc<Vec<String>>> {
        self.tag_pages.get(key)
    }

    pub fn put_tag_page(&self, key: TagPageKey, tags: Arc<Vec<String>>) {
        self.tag_pages.insert(key, tags);
    }
}
