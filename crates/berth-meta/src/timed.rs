//! [`Timed`]: a [`Metadata`] decorator that records how long every call takes.
//!
//! Each trait method forwards to the wrapped backend and records its latency in
//! the `berth_db_operation_duration_seconds{op}` histogram, `op` being the
//! method name (a fixed set, so the label stays bounded). Wrapping the trait
//! object once at startup instruments both backends without touching them.
//! A method added to one of the capability traits needs one forwarding line here.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use berth_core::{Digest, RepoName, Tag};

use crate::*;

/// The latency histogram every metadata call feeds.
pub const DB_OPERATION_DURATION: &str = "berth_db_operation_duration_seconds";

/// A metadata backend whose calls are timed.
#[derive(Debug, Clone)]
pub struct Timed {
    inner: Arc<dyn Metadata>,
}

impl Timed {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Metadata>) -> Self {
        Timed { inner }
    }
}

/// Awaits a call and records its latency under `op`. A macro so the label is a
/// literal: the metric key is then a `static` and recording allocates nothing.
macro_rules! timed {
    ($op:literal, $call:expr) => {{
        let started = Instant::now();
        let result = $call.await;
        metrics::histogram!(DB_OPERATION_DURATION, "op" => $op).record(started.elapsed().as_secs_f64());
        result
    }};
}

#[async_trait]
impl RepoStore for Timed {
    async fn repo_exists(&self, repo: &RepoName) -> Result<bool, MetaError> {
        timed!("repo_exists", self.inner.repo_exists(repo))
    }

    async fn list_repos(&self, last: Option<&str>, limit: u32) -> Result<Vec<String>, MetaError> {
        timed!("list_repos", self.inner.list_repos(last, limit))
    }

    async fn delete_repo_if_empty(&self, repo: &RepoName) -> Result<bool, MetaError> {
        timed!("delete_repo_if_empty", self.inner.delete_repo_if_empty(repo))
    }
}

#[async_trait]
impl BlobIndex for Timed {
    async fn blob_in_repo(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>, MetaError> {
        timed!("blob_in_repo", self.inner.blob_in_repo(repo, digest))
    }

    async fn find_blob(&self, digest: &Digest) -> Result<Option<u64>, MetaError> {
        timed!("find_blob", self.inner.find_blob(digest))
    }

    async fn list_blobs(&self, after: Option<&str>, limit: u32) -> Result<Vec<BlobRow>, MetaError> {
        timed!("list_blobs", self.inner.list_blobs(after, limit))
    }

    async fn repos_with_blob(&self, digest: &Digest, limit: u32) -> Result<Vec<String>, MetaError> {
        timed!("repos_with_blob", self.inner.repos_with_blob(digest, limit))
    }

    async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[EventDraft],
    ) -> Result<Option<u64>, MetaError> {
        timed!("mount_blob", self.inner.mount_blob(repo, digest, events))
    }

    async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        events: &[EventDraft],
    ) -> Result<(), MetaError> {
        timed!("link_blob", self.inner.link_blob(repo, digest, size, events))
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest, events: &[EventDraft]) -> Result<bool, MetaError> {
        timed!("unlink_blob", self.inner.unlink_blob(repo, digest, events))
    }
}

#[async_trait]
impl ManifestStore for Timed {
    async fn put_manifest(&self, repo: &RepoName, manifest: NewManifest, tags: &[Tag]) -> Result<(), MetaError> {
        timed!("put_manifest", self.inner.put_manifest(repo, manifest, tags))
    }

    async fn manifest_by_digest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        with_payload: bool,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        timed!("manifest_by_digest", self.inner.manifest_by_digest(repo, digest, with_payload))
    }

    async fn manifest_by_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        with_payload: bool,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        timed!("manifest_by_tag", self.inner.manifest_by_tag(repo, tag, with_payload))
    }

    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        events: &[EventDraft],
    ) -> Result<bool, MetaError> {
        timed!("delete_manifest", self.inner.delete_manifest(repo, digest, events))
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag, events: &[EventDraft]) -> Result<bool, MetaError> {
        timed!("delete_tag", self.inner.delete_tag(repo, tag, events))
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<String>, MetaError> {
        timed!("list_tags", self.inner.list_tags(repo, last, limit))
    }

    async fn list_referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, MetaError> {
        timed!("list_referrers", self.inner.list_referrers(repo, subject, artifact_type))
    }
}

#[async_trait]
impl UploadStore for Timed {
    async fn create_upload(&self, upload: &NewUpload) -> Result<(), MetaError> {
        timed!("create_upload", self.inner.create_upload(upload))
    }

    async fn get_upload(&self, repo: &RepoName, id: &str) -> Result<Option<Upload>, MetaError> {
        timed!("get_upload", self.inner.get_upload(repo, id))
    }

    async fn save_upload_progress(
        &self,
        id: &str,
        expected_received: u64,
        progress: &UploadProgress,
    ) -> Result<bool, MetaError> {
        timed!("save_upload_progress", self.inner.save_upload_progress(id, expected_received, progress))
    }

    async fn delete_upload(&self, id: &str) -> Result<bool, MetaError> {
        timed!("delete_upload", self.inner.delete_upload(id))
    }

    async fn finish_upload(
        &self,
        id: &str,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        events: &[EventDraft],
    ) -> Result<(), MetaError> {
        timed!("finish_upload", self.inner.finish_upload(id, repo, digest, size, events))
    }

    async fn stale_uploads(&self, before: i64, limit: u32) -> Result<Vec<(String, String)>, MetaError> {
        timed!("stale_uploads", self.inner.stale_uploads(before, limit))
    }

    fn sessions_private_to_this_process(&self) -> bool {
        self.inner.sessions_private_to_this_process()
    }
}

#[async_trait]
impl JobLeases for Timed {
    async fn try_lease(&self, job: &str, holder: &str, ttl_secs: i64) -> Result<bool, MetaError> {
        timed!("try_lease", self.inner.try_lease(job, holder, ttl_secs))
    }
}

#[async_trait]
impl AccessStore for Timed {
    async fn count_users(&self) -> Result<i64, MetaError> {
        timed!("count_users", self.inner.count_users())
    }

    async fn create_user(&self, user: &NewUser, audit: &AuditDraft) -> Result<UserRecord, MetaError> {
        timed!("create_user", self.inner.create_user(user, audit))
    }

    async fn user_by_id(&self, id: i64) -> Result<Option<UserRecord>, MetaError> {
        timed!("user_by_id", self.inner.user_by_id(id))
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, MetaError> {
        timed!("user_by_name", self.inner.user_by_name(username))
    }

    async fn list_users(&self, offset: i64, limit: i64) -> Result<(Vec<UserRecord>, i64), MetaError> {
        timed!("list_users", self.inner.list_users(offset, limit))
    }

    async fn update_user(
        &self,
        id: i64,
        update: &UserUpdate,
        audit: &AuditDraft,
    ) -> Result<Option<UserRecord>, MetaError> {
        timed!("update_user", self.inner.update_user(id, update, audit))
    }

    async fn delete_user(&self, id: i64, audit: &AuditDraft) -> Result<bool, MetaError> {
        timed!("delete_user", self.inner.delete_user(id, audit))
    }

    async fn record_login(&self, id: i64, at: i64) -> Result<(), MetaError> {
        timed!("record_login", self.inner.record_login(id, at))
    }

    async fn project(&self, name: &str) -> Result<Option<ProjectRecord>, MetaError> {
        timed!("project", self.inner.project(name))
    }

    async fn project_access(
        &self,
        name: &str,
        user_id: Option<i64>,
    ) -> Result<Option<(String, Option<String>)>, MetaError> {
        timed!("project_access", self.inner.project_access(name, user_id))
    }

    async fn ensure_project(&self, name: &str, owner: Option<i64>, audit: &AuditDraft) -> Result<bool, MetaError> {
        timed!("ensure_project", self.inner.ensure_project(name, owner, audit))
    }

    async fn update_project(
        &self,
        name: &str,
        visibility: Option<&str>,
        description: Option<&str>,
        audit: &AuditDraft,
    ) -> Result<bool, MetaError> {
        timed!("update_project", self.inner.update_project(name, visibility, description, audit))
    }

    async fn set_member(
        &self,
        project: &str,
        user_id: i64,
        role: Option<&str>,
        audit: &AuditDraft,
    ) -> Result<bool, MetaError> {
        timed!("set_member", self.inner.set_member(project, user_id, role, audit))
    }

    async fn list_members(&self, project: &str) -> Result<Vec<(i64, String, String)>, MetaError> {
        timed!("list_members", self.inner.list_members(project))
    }

    async fn create_token(&self, token: &NewToken, audit: &AuditDraft) -> Result<TokenRecord, MetaError> {
        timed!("create_token", self.inner.create_token(token, audit))
    }

    async fn token_by_lookup(&self, lookup: &str) -> Result<Option<TokenRecord>, MetaError> {
        timed!("token_by_lookup", self.inner.token_by_lookup(lookup))
    }

    async fn list_tokens(&self, user_id: i64, offset: i64, limit: i64) -> Result<(Vec<TokenRecord>, i64), MetaError> {
        timed!("list_tokens", self.inner.list_tokens(user_id, offset, limit))
    }

    async fn revoke_token(&self, user_id: i64, id: i64, audit: &AuditDraft) -> Result<Option<String>, MetaError> {
        timed!("revoke_token", self.inner.revoke_token(user_id, id, audit))
    }

    async fn touch_token(&self, id: i64, at: i64) -> Result<(), MetaError> {
        timed!("touch_token", self.inner.touch_token(id, at))
    }

    async fn create_session(&self, session: &SessionRecord) -> Result<(), MetaError> {
        timed!("create_session", self.inner.create_session(session))
    }

    async fn session(&self, id: &str) -> Result<Option<SessionRecord>, MetaError> {
        timed!("session", self.inner.session(id))
    }

    async fn touch_session(&self, id: &str, at: i64) -> Result<(), MetaError> {
        timed!("touch_session", self.inner.touch_session(id, at))
    }

    async fn revoke_session(&self, id: &str, at: i64) -> Result<bool, MetaError> {
        timed!("revoke_session", self.inner.revoke_session(id, at))
    }

    async fn setting(&self, name: &str) -> Result<Option<String>, MetaError> {
        timed!("setting", self.inner.setting(name))
    }

    async fn put_setting(&self, name: &str, value: &str, audit: Option<&AuditDraft>) -> Result<(), MetaError> {
        timed!("put_setting", self.inner.put_setting(name, value, audit))
    }

    async fn put_setting_if_absent(&self, name: &str, value: &str) -> Result<bool, MetaError> {
        timed!("put_setting_if_absent", self.inner.put_setting_if_absent(name, value))
    }

    async fn take_setting(&self, name: &str) -> Result<Option<String>, MetaError> {
        timed!("take_setting", self.inner.take_setting(name))
    }

    async fn purge_settings(&self, prefix: &str, before: i64) -> Result<u64, MetaError> {
        timed!("purge_settings", self.inner.purge_settings(prefix, before))
    }

    async fn advance_setting(&self, name: &str, value: i64) -> Result<bool, MetaError> {
        timed!("advance_setting", self.inner.advance_setting(name, value))
    }

    async fn replace_recovery_codes(
        &self,
        id: i64,
        expected: &str,
        codes: &str,
        audit: &AuditDraft,
    ) -> Result<bool, MetaError> {
        timed!("replace_recovery_codes", self.inner.replace_recovery_codes(id, expected, codes, audit))
    }

    async fn record_login_failure(&self, username: &str, ip: &str, at: i64) -> Result<(), MetaError> {
        timed!("record_login_failure", self.inner.record_login_failure(username, ip, at))
    }

    async fn login_failures(&self, username: &str, ip: &str, since: i64) -> Result<(i64, i64), MetaError> {
        timed!("login_failures", self.inner.login_failures(username, ip, since))
    }

    async fn clear_login_failures(&self, username: &str) -> Result<(), MetaError> {
        timed!("clear_login_failures", self.inner.clear_login_failures(username))
    }
}

#[async_trait]
impl AuditLog for Timed {
    async fn append_audit(&self, draft: &AuditDraft) -> Result<i64, MetaError> {
        timed!("append_audit", self.inner.append_audit(draft))
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<AuditRecord>, i64), MetaError> {
        timed!("list_audit", self.inner.list_audit(filter, offset, limit))
    }

    async fn audit_head(&self) -> Result<(i64, String), MetaError> {
        timed!("audit_head", self.inner.audit_head())
    }

    async fn audit_after(
        &self,
        after_id: i64,
        filter: &AuditFilter,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, MetaError> {
        timed!("audit_after", self.inner.audit_after(after_id, filter, limit))
    }
}

#[async_trait]
impl ProxyStore for Timed {
    async fn list_upstreams(&self) -> Result<Vec<UpstreamRecord>, MetaError> {
        timed!("list_upstreams", self.inner.list_upstreams())
    }

    async fn insert_upstream(&self, upstream: &UpstreamRecord) -> Result<bool, MetaError> {
        timed!("insert_upstream", self.inner.insert_upstream(upstream))
    }

    async fn update_upstream(&self, upstream: &UpstreamRecord) -> Result<bool, MetaError> {
        timed!("update_upstream", self.inner.update_upstream(upstream))
    }

    async fn delete_upstream(&self, name: &str) -> Result<bool, MetaError> {
        timed!("delete_upstream", self.inner.delete_upstream(name))
    }

    async fn record_cache_entry(&self, digest: &str, upstream: &str, size: i64, now: i64) -> Result<(), MetaError> {
        timed!("record_cache_entry", self.inner.record_cache_entry(digest, upstream, size, now))
    }

    async fn touch_cache_entries(&self, touches: &[CacheTouch]) -> Result<(), MetaError> {
        timed!("touch_cache_entries", self.inner.touch_cache_entries(touches))
    }

    async fn cache_entry(&self, digest: &str) -> Result<Option<CacheEntry>, MetaError> {
        timed!("cache_entry", self.inner.cache_entry(digest))
    }

    async fn list_cache_entries(&self, limit: i64, offset: i64) -> Result<Vec<CacheEntry>, MetaError> {
        timed!("list_cache_entries", self.inner.list_cache_entries(limit, offset))
    }

    async fn cache_totals(&self, upstream: Option<&str>) -> Result<CacheTotals, MetaError> {
        timed!("cache_totals", self.inner.cache_totals(upstream))
    }

    async fn eviction_candidates(&self, upstream: Option<&str>, limit: i64) -> Result<Vec<CacheEntry>, MetaError> {
        timed!("eviction_candidates", self.inner.eviction_candidates(upstream, limit))
    }

    async fn idle_cache_entries(&self, before: i64, limit: i64) -> Result<Vec<CacheEntry>, MetaError> {
        timed!("idle_cache_entries", self.inner.idle_cache_entries(before, limit))
    }

    async fn delete_cache_entry(&self, digest: &str) -> Result<bool, MetaError> {
        timed!("delete_cache_entry", self.inner.delete_cache_entry(digest))
    }

    async fn set_cache_pin(&self, digest: &str, pinned: bool) -> Result<bool, MetaError> {
        timed!("set_cache_pin", self.inner.set_cache_pin(digest, pinned))
    }

    async fn cached_tag(&self, repo: &str, tag: &str) -> Result<Option<CachedTag>, MetaError> {
        timed!("cached_tag", self.inner.cached_tag(repo, tag))
    }

    async fn put_cached_tag(&self, repo: &str, tag: &str, record: &CachedTag) -> Result<(), MetaError> {
        timed!("put_cached_tag", self.inner.put_cached_tag(repo, tag, record))
    }

    async fn unlink_blob_in_project(&self, project: &str, digest: &str) -> Result<u64, MetaError> {
        timed!("unlink_blob_in_project", self.inner.unlink_blob_in_project(project, digest))
    }

    async fn delete_project_repositories(&self, project: &str) -> Result<u64, MetaError> {
        timed!("delete_project_repositories", self.inner.delete_project_repositories(project))
    }
}

#[async_trait]
impl StatsStore for Timed {
    async fn registry_totals(&self) -> Result<RegistryTotals, MetaError> {
        timed!("registry_totals", self.inner.registry_totals())
    }

    async fn ping(&self) -> Result<(), MetaError> {
        timed!("ping", self.inner.ping())
    }
}

#[async_trait]
impl EventStore for Timed {
    async fn append_events(&self, events: &[EventDraft]) -> Result<Vec<i64>, MetaError> {
        timed!("append_events", self.inner.append_events(events))
    }

    async fn event(&self, id: i64) -> Result<Option<EventRecord>, MetaError> {
        timed!("event", self.inner.event(id))
    }

    async fn pending_events(&self, limit: i64) -> Result<Vec<EventRecord>, MetaError> {
        timed!("pending_events", self.inner.pending_events(limit))
    }

    async fn fan_out(&self, events: &[i64], deliveries: &[(i64, i64, String)], due_ms: i64) -> Result<(), MetaError> {
        timed!("fan_out", self.inner.fan_out(events, deliveries, due_ms))
    }

    async fn prune_events(&self, before_ms: i64, limit: i64) -> Result<u64, MetaError> {
        timed!("prune_events", self.inner.prune_events(before_ms, limit))
    }

    async fn create_webhook(&self, spec: &WebhookSpec, created_by: &str) -> Result<WebhookRecord, MetaError> {
        timed!("create_webhook", self.inner.create_webhook(spec, created_by))
    }

    async fn update_webhook(&self, id: i64, spec: &WebhookSpec) -> Result<Option<WebhookRecord>, MetaError> {
        timed!("update_webhook", self.inner.update_webhook(id, spec))
    }

    async fn webhook(&self, id: i64) -> Result<Option<WebhookRecord>, MetaError> {
        timed!("webhook", self.inner.webhook(id))
    }

    async fn list_webhooks(&self, offset: i64, limit: i64) -> Result<(Vec<WebhookRecord>, i64), MetaError> {
        timed!("list_webhooks", self.inner.list_webhooks(offset, limit))
    }

    async fn enabled_webhooks(&self) -> Result<Vec<WebhookRecord>, MetaError> {
        timed!("enabled_webhooks", self.inner.enabled_webhooks())
    }

    async fn delete_webhook(&self, id: i64) -> Result<bool, MetaError> {
        timed!("delete_webhook", self.inner.delete_webhook(id))
    }

    async fn claim_due_deliveries(
        &self,
        webhook_id: i64,
        now_ms: i64,
        claim_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, MetaError> {
        timed!("claim_due_deliveries", self.inner.claim_due_deliveries(webhook_id, now_ms, claim_until_ms, limit))
    }

    async fn record_attempt(&self, delivery_id: i64, outcome: &AttemptOutcome) -> Result<(), MetaError> {
        timed!("record_attempt", self.inner.record_attempt(delivery_id, outcome))
    }

    async fn list_deliveries(
        &self,
        webhook_id: i64,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<DeliveryRecord>, i64), MetaError> {
        timed!("list_deliveries", self.inner.list_deliveries(webhook_id, offset, limit))
    }

    async fn delivery(&self, id: i64) -> Result<Option<DeliveryRecord>, MetaError> {
        timed!("delivery", self.inner.delivery(id))
    }

    async fn create_direct_delivery(
        &self,
        webhook_id: i64,
        event: &EventDraft,
        delivery_key: &str,
        due_ms: i64,
    ) -> Result<DeliveryRecord, MetaError> {
        timed!("create_direct_delivery", self.inner.create_direct_delivery(webhook_id, event, delivery_key, due_ms))
    }

    async fn delivery_attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRecord>, MetaError> {
        timed!("delivery_attempts", self.inner.delivery_attempts(delivery_id))
    }

    async fn redeliver(&self, delivery_id: i64, due_ms: i64) -> Result<Option<i64>, MetaError> {
        timed!("redeliver", self.inner.redeliver(delivery_id, due_ms))
    }
}

#[async_trait]
impl CatalogStore for Timed {
    async fn list_images(&self, viewer: Viewer, offset: i64, limit: i64) -> Result<ImagePage, MetaError> {
        timed!("list_images", self.inner.list_images(viewer, offset, limit))
    }

    async fn search_images(
        &self,
        query: &str,
        viewer: Viewer,
        offset: i64,
        limit: i64,
    ) -> Result<ImagePage, MetaError> {
        timed!("search_images", self.inner.search_images(query, viewer, offset, limit))
    }

    async fn repo_images(&self, repo: &str) -> Result<Vec<ImageRow>, MetaError> {
        timed!("repo_images", self.inner.repo_images(repo))
    }

    async fn image(&self, repo: &str, tag: &str) -> Result<Option<ImageRow>, MetaError> {
        timed!("image", self.inner.image(repo, tag))
    }

    async fn repository(&self, repo: &str) -> Result<Option<RepositoryRecord>, MetaError> {
        timed!("repository", self.inner.repository(repo))
    }

    async fn repo_visibility(&self, repo: &str) -> Result<Option<String>, MetaError> {
        timed!("repo_visibility", self.inner.repo_visibility(repo))
    }

    async fn update_repository(
        &self,
        repo: &str,
        description: Option<&str>,
        visibility: Option<&str>,
        at: i64,
        events: &[crate::EventDraft],
    ) -> Result<bool, MetaError> {
        timed!("update_repository", self.inner.update_repository(repo, description, visibility, at, events))
    }

    async fn delete_repository(&self, repo: &str, events: &[crate::EventDraft]) -> Result<bool, MetaError> {
        timed!("delete_repository", self.inner.delete_repository(repo, events))
    }

    async fn record_pulls(&self, pulls: &[PullTally]) -> Result<(), MetaError> {
        timed!("record_pulls", self.inner.record_pulls(pulls))
    }

    async fn schema_versions(&self) -> Result<(i64, i64), MetaError> {
        timed!("schema_versions", self.inner.schema_versions())
    }

    async fn index_search_backlog(&self) -> Result<u64, MetaError> {
        timed!("index_search_backlog", self.inner.index_search_backlog())
    }

    async fn explain_search(&self, query: &str) -> Result<Vec<String>, MetaError> {
        timed!("explain_search", self.inner.explain_search(query))
    }
}

#[async_trait]
impl ImmutabilityStore for Timed {
    async fn immutability_rules(&self, project: &str) -> Result<Vec<ImmutabilityRule>, MetaError> {
        timed!("immutability_rules", self.inner.immutability_rules(project))
    }

    async fn replace_immutability_rules(
        &self,
        project: &str,
        rules: &[(String, String)],
        audit: Option<&AuditDraft>,
    ) -> Result<Vec<ImmutabilityRule>, MetaError> {
        timed!("replace_immutability_rules", self.inner.replace_immutability_rules(project, rules, audit))
    }
}

#[async_trait]
impl GcStore for Timed {
    async fn gc_adopt_blob(&self, digest: &str, size: u64) -> Result<(), MetaError> {
        timed!("gc_adopt_blob", self.inner.gc_adopt_blob(digest, size))
    }

    async fn gc_due(&self, kind: GcKind, cutoff_ms: i64, limit: u32) -> Result<Vec<GcItem>, MetaError> {
        timed!("gc_due", self.inner.gc_due(kind, cutoff_ms, limit))
    }

    async fn gc_queue_stats(&self) -> Result<GcQueueStats, MetaError> {
        timed!("gc_queue_stats", self.inner.gc_queue_stats())
    }

    async fn gc_seed(&self) -> Result<u64, MetaError> {
        timed!("gc_seed", self.inner.gc_seed())
    }

    async fn gc_manifest_holds(&self, item: &GcItem, policy: GcPolicy) -> Result<Option<ManifestHolds>, MetaError> {
        timed!("gc_manifest_holds", self.inner.gc_manifest_holds(item, policy))
    }

    async fn gc_link_holds(&self, item: &GcItem) -> Result<Option<(Vec<String>, bool)>, MetaError> {
        timed!("gc_link_holds", self.inner.gc_link_holds(item))
    }

    async fn gc_blob_holds(&self, digest: &str) -> Result<Option<BlobHolds>, MetaError> {
        timed!("gc_blob_holds", self.inner.gc_blob_holds(digest))
    }

    async fn gc_collect_manifests(
        &self,
        items: &[GcItem],
        policy: GcPolicy,
    ) -> Result<Vec<CollectedManifest>, MetaError> {
        timed!("gc_collect_manifests", self.inner.gc_collect_manifests(items, policy))
    }

    async fn gc_collect_links(&self, items: &[GcItem]) -> Result<u64, MetaError> {
        timed!("gc_collect_links", self.inner.gc_collect_links(items))
    }

    async fn gc_claim_blobs(&self, items: &[GcItem]) -> Result<Vec<ClaimedBlob>, MetaError> {
        timed!("gc_claim_blobs", self.inner.gc_claim_blobs(items))
    }

    async fn gc_tombstones(&self, limit: u32) -> Result<Vec<ClaimedBlob>, MetaError> {
        timed!("gc_tombstones", self.inner.gc_tombstones(limit))
    }

    async fn gc_finish_blobs(&self, digests: &[String]) -> Result<(), MetaError> {
        timed!("gc_finish_blobs", self.inner.gc_finish_blobs(digests))
    }

    async fn begin_blob_commit(&self, upload_id: &str, digest: &str) -> Result<bool, MetaError> {
        timed!("begin_blob_commit", self.inner.begin_blob_commit(upload_id, digest))
    }

    async fn gc_start_run(&self, node: &str, trigger: &str, dry_run: bool, grace_secs: i64) -> Result<i64, MetaError> {
        timed!("gc_start_run", self.inner.gc_start_run(node, trigger, dry_run, grace_secs))
    }

    async fn gc_update_run(
        &self,
        id: i64,
        counters: &GcCounters,
        state: &str,
        error: Option<&str>,
    ) -> Result<(), MetaError> {
        timed!("gc_update_run", self.inner.gc_update_run(id, counters, state, error))
    }

    async fn gc_runs(&self, limit: u32) -> Result<Vec<GcRun>, MetaError> {
        timed!("gc_runs", self.inner.gc_runs(limit))
    }
}

#[async_trait]
impl RetentionStore for Timed {
    async fn retention_policy(&self, project: &str) -> Result<Option<RetentionPolicy>, MetaError> {
        timed!("retention_policy", self.inner.retention_policy(project))
    }

    async fn replace_retention_policy(
        &self,
        policy: &RetentionPolicy,
        audit: Option<&AuditDraft>,
    ) -> Result<RetentionPolicy, MetaError> {
        timed!("replace_retention_policy", self.inner.replace_retention_policy(policy, audit))
    }

    async fn retention_projects(&self) -> Result<Vec<String>, MetaError> {
        timed!("retention_projects", self.inner.retention_projects())
    }

    async fn project_repositories(&self, project: &str) -> Result<Vec<String>, MetaError> {
        timed!("project_repositories", self.inner.project_repositories(project))
    }

    async fn retention_tags(&self, repo: &RepoName) -> Result<Vec<RetentionTag>, MetaError> {
        timed!("retention_tags", self.inner.retention_tags(repo))
    }

    async fn retention_manifests(&self, repo: &RepoName, created_before: i64) -> Result<Vec<String>, MetaError> {
        timed!("retention_manifests", self.inner.retention_manifests(repo, created_before))
    }
}

#[async_trait]
impl QuotaStore for Timed {
    async fn project_quota(&self, project: &str) -> Result<QuotaView, MetaError> {
        timed!("project_quota", self.inner.project_quota(project))
    }

    async fn set_project_quota(
        &self,
        project: &str,
        limits: &QuotaLimits,
        audit: Option<&AuditDraft>,
    ) -> Result<QuotaView, MetaError> {
        timed!("set_project_quota", self.inner.set_project_quota(project, limits, audit))
    }

    async fn mark_soft_limit(&self, project: &str, at: Option<i64>, events: &[EventDraft]) -> Result<bool, MetaError> {
        timed!("mark_soft_limit", self.inner.mark_soft_limit(project, at, events))
    }
}
