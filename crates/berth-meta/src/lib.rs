//! berth's metadata: the source of truth for what exists where.
//!
//! The blob store holds bytes; this crate knows which repositories exist, which
//! blobs each repository may see, every manifest (with its exact payload), what
//! manifests reference, tags and upload sessions. Callers use the [`Metadata`]
//! facade, built from capability traits, so the SQLite default and a PostgreSQL
//! backend can sit behind the same interface. Every multi-row change happens in
//! one transaction.

pub mod access;
mod access_sql;
pub mod catalog;
mod catalog_sql;
mod error;
mod events;
mod events_sql;
pub mod gc;
pub mod immutability;
mod migrate;
mod model;
pub mod postgres;
mod proxy;
mod proxy_sql;
mod quota;
mod registry_sql;
pub mod retention;
pub mod sqlite;
mod stats;
pub mod testsuite;
pub mod timed;
pub mod transfer;

use async_trait::async_trait;
use berth_core::{Digest, RepoName, Tag};

pub use access::*;
pub use catalog::{CatalogStore, ImagePage, ImageRow, PullTally, RepositoryRecord, Viewer};
pub use error::MetaError;
pub use events::*;
pub use gc::*;
pub use immutability::{ImmutabilityRule, ImmutabilityStore};
pub use model::*;
pub use postgres::PostgresMeta;
pub use proxy::*;
pub use quota::{ProjectUsage, QuotaLimits, QuotaStore, QuotaView};
pub use retention::{RetentionPolicy, RetentionRule, RetentionStore, RetentionTag};
pub use sqlite::SqliteMeta;
pub use stats::*;

/// Repositories and the catalog.
#[async_trait]
pub trait RepoStore: Send + Sync {
    /// True when the repository exists.
    async fn repo_exists(&self, repo: &RepoName) -> Result<bool, MetaError>;

    /// Repository names sorted bytewise, strictly after `last`, at most `limit`.
    async fn list_repos(&self, last: Option<&str>, limit: u32) -> Result<Vec<String>, MetaError>;

    /// Removes the repository if nothing lives in it (no manifest, tag, visible
    /// blob or upload session), atomically. True if it was removed.
    async fn delete_repo_if_empty(&self, repo: &RepoName) -> Result<bool, MetaError>;
}

/// Which blobs exist and which repositories may see them.
#[async_trait]
pub trait BlobIndex: Send + Sync {
    /// Size of `digest` if it is visible in `repo`.
    async fn blob_in_repo(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>, MetaError>;

    /// Size of `digest` if any repository can see it (for automatic mounts).
    async fn find_blob(&self, digest: &Digest) -> Result<Option<u64>, MetaError>;

    /// Repositories (sorted, at most `limit`) in which `digest` is visible.
    async fn repos_with_blob(&self, digest: &Digest, limit: u32) -> Result<Vec<String>, MetaError>;

    /// Records a verified blob and makes it visible in `repo` (creating the
    /// repository), writing `events` in the same transaction.
    async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        events: &[EventDraft],
    ) -> Result<(), MetaError>;

    /// Makes an existing blob visible in `repo` (creating the repository),
    /// writing `events` in the same transaction; returns its size. `None` when
    /// no such blob exists or the collector is deleting it: upload it instead.
    async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[EventDraft],
    ) -> Result<Option<u64>, MetaError>;

    /// Every blob row in digest order, strictly after `after`, at most `limit`,
    /// with whether any repository links it (for `berth fsck`).
    async fn list_blobs(&self, after: Option<&str>, limit: u32) -> Result<Vec<BlobRow>, MetaError>;

    /// Hides `digest` from `repo`, writing `events` if it was visible there.
    /// Returns false when it was not.
    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest, events: &[EventDraft]) -> Result<bool, MetaError>;
}

/// Manifests, tags and referrers.
#[async_trait]
pub trait ManifestStore: Send + Sync {
    /// Stores a manifest and points `tags` at it in one transaction (with the
    /// manifest's events), after checking that every referenced blob and child
    /// manifest is visible in the repository.
    async fn put_manifest(&self, repo: &RepoName, manifest: NewManifest, tags: &[Tag]) -> Result<(), MetaError>;

    /// Looks a manifest up by digest, with its payload when `with_payload`.
    async fn manifest_by_digest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        with_payload: bool,
    ) -> Result<Option<ManifestRecord>, MetaError>;

    /// Looks up the manifest a tag points at, with its payload when `with_payload`.
    async fn manifest_by_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        with_payload: bool,
    ) -> Result<Option<ManifestRecord>, MetaError>;

    /// Deletes a manifest and every tag pointing at it, writing `events` in the
    /// same transaction. False (and no events) when absent.
    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest, events: &[EventDraft])
    -> Result<bool, MetaError>;

    /// Deletes one tag (the manifest stays), writing `events` in the same
    /// transaction. False (and no events) when absent.
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag, events: &[EventDraft]) -> Result<bool, MetaError>;

    /// Tags sorted bytewise, strictly after `last`, at most `limit` (all when `None`).
    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<String>, MetaError>;

    /// Manifests in `repo` whose subject is `subject`, optionally of one artifact type.
    async fn list_referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, MetaError>;
}

/// Upload sessions, which outlive a restart of the server.
#[async_trait]
pub trait UploadStore: Send + Sync {
    /// Records a new session (creating the repository).
    async fn create_upload(&self, upload: &NewUpload) -> Result<(), MetaError>;

    /// A session by id, only if it belongs to `repo`.
    async fn get_upload(&self, repo: &RepoName, id: &str) -> Result<Option<Upload>, MetaError>;

    /// Records how far the session got (bytes received, hash state, store
    /// cursor), only if it still stood at `expected_received`: false when another
    /// request (possibly on another node) moved it first.
    async fn save_upload_progress(
        &self,
        id: &str,
        expected_received: u64,
        progress: &UploadProgress,
    ) -> Result<bool, MetaError>;

    /// Removes a session. False when absent.
    async fn delete_upload(&self, id: &str) -> Result<bool, MetaError>;

    /// Ends session `id` by linking the blob it uploaded: [`RepoStore::link_blob`]
    /// and [`UploadStore::delete_upload`] in one transaction. When the link
    /// fails (a quota, say) the session stays, for its caller to discard.
    async fn finish_upload(
        &self,
        id: &str,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        events: &[EventDraft],
    ) -> Result<(), MetaError>;

    /// `(id, cursor)` of sessions idle since before `before` (unix seconds).
    async fn stale_uploads(&self, before: i64, limit: u32) -> Result<Vec<(String, String)>, MetaError>;

    /// Whether only the process that holds a session ever changes its record
    /// (an embedded database, which one berth server opens; the command-line
    /// tools that may open it alongside never touch a server's sessions): that
    /// process's own view of the session is then as current as the record.
    /// False where several nodes share the database and continue each other's
    /// sessions.
    fn sessions_private_to_this_process(&self) -> bool {
        false
    }
}

/// Leases that let exactly one node run each background job.
#[async_trait]
pub trait JobLeases: Send + Sync {
    /// Takes or renews the lease on `job` for `holder` for `ttl_secs` seconds.
    /// True when `holder` now holds it; false while another holder's lease lasts.
    async fn try_lease(&self, job: &str, holder: &str, ttl_secs: i64) -> Result<bool, MetaError>;
}

/// Everything berth stores as metadata, behind one object-safe facade.
pub trait Metadata:
    RepoStore
    + BlobIndex
    + ManifestStore
    + UploadStore
    + JobLeases
    + AccessStore
    + AuditLog
    + ProxyStore
    + EventStore
    + CatalogStore
    + ImmutabilityStore
    + RetentionStore
    + StatsStore
    + GcStore
    + QuotaStore
    + std::fmt::Debug
{
}

impl<T> Metadata for T where
    T: RepoStore
        + BlobIndex
        + ManifestStore
        + UploadStore
        + JobLeases
        + AccessStore
        + AuditLog
        + ProxyStore
        + EventStore
        + CatalogStore
        + ImmutabilityStore
        + RetentionStore
        + StatsStore
        + GcStore
        + QuotaStore
        + std::fmt::Debug
{
}

/// Unix seconds as RFC 3339 UTC with whole seconds (`2026-11-23T12:00:00Z`): the
/// audit log's timestamp form (it is hashed into the chain, so it never changes)
/// and the form every API shows.
pub fn rfc3339(at: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(at).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// The current time as unix seconds, the unit every timestamp column uses.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
