//! One behavioural test suite that every [`Metadata`] backend must pass.

use berth_core::{Algorithm, Digest, RepoName, Tag};

use crate::{MetaError, Metadata, NewManifest, NewUpload};

fn repo(s: &str) -> RepoName {
    s.parse().unwrap()
}

fn tag(s: &str) -> Tag {
    s.parse().unwrap()
}

fn manifest(body: &str, blobs: &[&Digest], subject: Option<&Digest>, artifact_type: Option<&str>) -> NewManifest {
    NewManifest {
        digest: Digest::sha256(body.as_bytes()),
        media_type: berth_core::media_type::OCI_MANIFEST.into(),
        artifact_type: artifact_type.map(Into::into),
        subject: subject.cloned(),
        annotations_json: Some(r#"{"k":"v"}"#.into()),
        payload: body.as_bytes().to_vec(),
        blob_refs: blobs.iter().map(|d| (*d).clone()).collect(),
        manifest_refs: vec![],
        require_references: true,
        events: Vec::new(),
    }
}

/// Runs every check against `meta`, which must be empty. Panics on the first violation.
pub async fn run_all(meta: &dyn Metadata) {
    blobs_are_visible_per_repository(meta).await;
    manifests_check_references_and_move_tags(meta).await;
    a_manifest_creates_its_repository(meta).await;
    listings_paginate_bytewise(meta).await;
    referrers_filter_by_artifact_type(meta).await;
    uploads_round_trip(meta).await;
    leases_have_one_holder(meta).await;
    users_keep_an_admin(meta).await;
    projects_tokens_sessions_settings(meta).await;
    audit_entries_chain(meta).await;
    proxy_records(meta).await;
    events_feed_webhook_deliveries(meta).await;
    catalog_views(meta).await;
    catalog_search_uses_indexes(meta).await;
    totals_count_content(meta).await;
    immutable_tags_hold_inside_the_transaction(meta).await;
    retention_policies_round_trip(meta).await;
    retention_reads_follow_push_time_and_references(meta).await;
    blob_rows_page_in_digest_order(meta).await;
    pushes_and_pull_flushes_never_deadlock(meta).await;
    quotas_count_exactly_and_refuse(meta).await;
}

/// Usage follows every change exactly (links, mounts, tags, deletes, cascades,
/// collection) and hard limits refuse inside the transaction.
async fn quotas_count_exactly_and_refuse(meta: &dyn Metadata) {
    use crate::{ProjectUsage, QuotaLimits};
    let usage = |l, p, r, t| ProjectUsage { logical_bytes: l, physical_bytes: p, repositories: r, tags: t };
    let one: RepoName = "quota/one".parse().unwrap();
    let two: RepoName = "quota/two".parse().unwrap();
    let (a, b, c) = (Digest::sha256(b"quota a"), Digest::sha256(b"quota b"), Digest::sha256(b"quota c"));
    assert_eq!(meta.project_quota("quota").await.unwrap().usage, usage(0, 0, 0, 0));
    meta.link_blob(&one, &a, 10, &[]).await.unwrap();
    meta.link_blob(&one, &b, 20, &[]).await.unwrap();
    meta.link_blob(&one, &b, 20, &[]).await.unwrap();
    assert_eq!(meta.mount_blob(&two, &a, &[]).await.unwrap(), Some(10));
    assert_eq!(meta.project_quota("quota").await.unwrap().usage, usage(40, 30, 2, 0));
    let m = manifest_with(&[&a, &b], b"quota manifest");
    meta.put_manifest(&one, m.clone(), &["v1".parse().unwrap(), "v2".parse().unwrap()]).await.unwrap();
    meta.put_manifest(&one, m.clone(), &["v1".parse().unwrap()]).await.unwrap();
    assert_eq!(meta.project_quota("quota").await.unwrap().usage.tags, 2);

    // Hard limits: storage counts physical bytes, so a blob the project has is free.
    let limits = QuotaLimits { storage_bytes: Some(35), storage_soft: Some(25), repositories: Some(3), tags: Some(3) };
    let view = meta.set_project_quota("quota", &limits, None).await.unwrap();
    assert_eq!(view.limits, limits);
    assert!(matches!(meta.link_blob(&one, &c, 10, &[]).await, Err(MetaError::QuotaExceeded(k)) if k == "storage"));
    let refused = NewUpload {
        id: "u-quota".into(),
        repo: one.clone(),
        algorithm: Algorithm::Sha256,
        cursor: String::new(),
        actor: Default::default(),
    };
    meta.create_upload(&refused).await.unwrap();
    let finished = meta.finish_upload("u-quota", &one, &c, 10, &[]).await;
    assert!(matches!(finished, Err(MetaError::QuotaExceeded(k)) if k == "storage"));
    assert!(meta.get_upload(&one, "u-quota").await.unwrap().is_some(), "a refused link keeps its session");
    assert!(meta.delete_upload("u-quota").await.unwrap());
    let three: RepoName = "quota/three".parse().unwrap();
    meta.link_blob(&three, &b, 20, &[]).await.unwrap();
    let four: RepoName = "quota/four".parse().unwrap();
    assert!(
        matches!(meta.link_blob(&four, &a, 10, &[]).await, Err(MetaError::QuotaExceeded(k)) if k == "repositories")
    );
    meta.put_manifest(&one, m.clone(), &["v3".parse().unwrap()]).await.unwrap();
    let refused = meta.put_manifest(&one, m.clone(), &["v4".parse().unwrap()]).await;
    assert!(matches!(refused, Err(MetaError::QuotaExceeded(k)) if k == "tags"));
    meta.put_manifest(&one, m.clone(), &["v1".parse().unwrap()]).await.unwrap();
    assert_eq!(meta.project_quota("quota").await.unwrap().usage, usage(60, 30, 3, 3));

    // Soft limit: one warning per crossing.
    assert!(meta.mark_soft_limit("quota", Some(5), &[]).await.unwrap());
    assert!(!meta.mark_soft_limit("quota", Some(6), &[]).await.unwrap());
    assert_eq!(meta.project_quota("quota").await.unwrap().soft_warned_at, Some(5));
    assert!(meta.mark_soft_limit("quota", None, &[]).await.unwrap());

    // Removals: unlink, delete tag, delete repository (cascade), collection of a link.
    assert!(meta.unlink_blob(&two, &a, &[]).await.unwrap());
    assert_eq!(meta.project_quota("quota").await.unwrap().usage, usage(50, 30, 3, 3));
    assert!(meta.delete_tag(&one, &"v3".parse().unwrap(), &[]).await.unwrap());
    assert!(meta.delete_repository("quota/one", &[]).await.unwrap());
    assert_eq!(meta.project_quota("quota").await.unwrap().usage, usage(20, 20, 2, 0));
    let item = crate::GcItem {
        kind: crate::GcKind::Link,
        repo_id: repo_id_of(meta, "quota/three").await,
        repository: "quota/three".into(),
        digest: b.to_string(),
        queued_at: crate::now_ms(),
    };
    assert_eq!(meta.gc_collect_links(&[item]).await.unwrap(), 1);
    assert_eq!(meta.project_quota("quota").await.unwrap().usage, usage(0, 0, 2, 0));
    meta.set_project_quota("quota", &QuotaLimits::default(), None).await.unwrap();
    meta.link_blob(&four, &c, 10, &[]).await.unwrap();
    assert_eq!(meta.project_quota("quota").await.unwrap().usage, usage(10, 10, 3, 0));
}

/// A repository's id, through the collector's queue (the blob link it queued).
async fn repo_id_of(meta: &dyn Metadata, repo: &str) -> i64 {
    let due = meta.gc_due(crate::GcKind::Link, i64::MAX, 100_000).await.unwrap();
    due.iter().find(|i| i.repository == repo).map(|i| i.repo_id).expect("a queued link of the repository")
}

fn manifest_with(blobs: &[&Digest], payload: &[u8]) -> NewManifest {
    NewManifest {
        digest: Digest::sha256(payload),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        artifact_type: None,
        subject: None,
        annotations_json: None,
        payload: payload.to_vec(),
        blob_refs: blobs.iter().map(|d| (*d).clone()).collect(),
        manifest_refs: Vec::new(),
        require_references: true,
        events: Vec::new(),
    }
}

/// Claims one blob for deletion right away, as cache eviction does; true when claimed
/// (its row is then removed, as after its bytes were deleted).
async fn claim_blob_now(meta: &dyn Metadata, digest: &str) -> bool {
    let item = crate::GcItem {
        kind: crate::GcKind::Blob,
        repo_id: 0,
        repository: String::new(),
        digest: digest.into(),
        queued_at: crate::now_ms(),
    };
    let claimed = meta.gc_claim_blobs(&[item]).await.unwrap();
    let digests: Vec<String> = claimed.iter().map(|c| c.digest.clone()).collect();
    meta.gc_finish_blobs(&digests).await.unwrap();
    !claimed.is_empty()
}

fn draft(event: &str) -> crate::AuditDraft {
    crate::AuditDraft {
        level: "info",
        event: event.into(),
        action: "suite.test".into(),
        user_id: None,
        username: "suite".into(),
        ip_address: "127.0.0.1".into(),
        resource: "suite".into(),
        status: "success",
        detail: serde_json::json!({"user_agent": "suite"}),
    }
}

fn new_user(name: &str, role: &str) -> crate::NewUser {
    crate::NewUser {
        username: name.into(),
        email: None,
        password_hash: "$argon2id$stub".into(),
        role: role.into(),
        must_change_password: false,
    }
}

async fn users_keep_an_admin(meta: &dyn Metadata) {
    let admin = meta.create_user(&new_user("root", "admin"), &draft("user_created")).await.unwrap();
    assert!(matches!(
        meta.create_user(&new_user("root", "user"), &draft("user_created")).await,
        Err(MetaError::Conflict(_))
    ));
    let bob = meta.create_user(&new_user("bob", "user"), &draft("user_created")).await.unwrap();
    assert_eq!(meta.count_users().await.unwrap(), 2);
    assert_eq!(meta.user_by_name("bob").await.unwrap().unwrap().id, bob.id);
    // The last active admin can be neither demoted, disabled nor deleted.
    let demote = crate::UserUpdate { role: Some("user".into()), ..Default::default() };
    assert!(matches!(meta.update_user(admin.id, &demote, &draft("user_updated")).await, Err(MetaError::Conflict(_))));
    let disable = crate::UserUpdate { is_active: Some(false), ..Default::default() };
    assert!(matches!(meta.update_user(admin.id, &disable, &draft("user_updated")).await, Err(MetaError::Conflict(_))));
    assert!(matches!(meta.delete_user(admin.id, &draft("user_deleted")).await, Err(MetaError::Conflict(_))));
    // With a second admin it can.
    let promote =
        crate::UserUpdate { role: Some("admin".into()), email: Some(Some("b@x".into())), ..Default::default() };
    let bob = meta.update_user(bob.id, &promote, &draft("user_updated")).await.unwrap().unwrap();
    assert_eq!((bob.role.as_str(), bob.email.as_deref()), ("admin", Some("b@x")));
    assert!(meta.update_user(admin.id, &disable, &draft("user_updated")).await.unwrap().is_some());
    assert!(!meta.user_by_id(admin.id).await.unwrap().unwrap().is_active);
    assert!(meta.update_user(9999, &disable, &draft("user_updated")).await.unwrap().is_none());
    let (page, total) = meta.list_users(0, 1).await.unwrap();
    assert_eq!((page.len(), total), (1, 2));
    meta.record_login(bob.id, 42).await.unwrap();
    assert_eq!(meta.user_by_id(bob.id).await.unwrap().unwrap().last_login, Some(42));
}

async fn projects_tokens_sessions_settings(meta: &dyn Metadata) {
    let owner = meta.create_user(&new_user("carol", "user"), &draft("user_created")).await.unwrap();
    let guest = meta.create_user(&new_user("dave", "user"), &draft("user_created")).await.unwrap();
    assert_eq!(meta.project_access("team", Some(owner.id)).await.unwrap(), None);
    assert!(meta.ensure_project("team", Some(owner.id), &draft("project_created")).await.unwrap());
    assert!(!meta.ensure_project("team", Some(guest.id), &draft("project_created")).await.unwrap());
    assert_eq!(
        meta.project_access("team", Some(owner.id)).await.unwrap(),
        Some(("private".into(), Some("owner".into())))
    );
    assert_eq!(meta.project_access("team", None).await.unwrap(), Some(("private".into(), None)));
    assert!(meta.set_member("team", guest.id, Some("guest"), &draft("member_set")).await.unwrap());
    assert!(meta.set_member("team", guest.id, Some("developer"), &draft("member_set")).await.unwrap());
    assert!(!meta.set_member("nope", guest.id, Some("guest"), &draft("member_set")).await.unwrap());
    let members = meta.list_members("team").await.unwrap();
    assert_eq!(
        members,
        vec![(owner.id, "carol".into(), "owner".into()), (guest.id, "dave".into(), "developer".into())]
    );
    assert!(meta.update_project("team", Some("public"), None, &draft("project_updated")).await.unwrap());
    assert_eq!(meta.project("team").await.unwrap().unwrap().visibility, "public");
    assert!(meta.set_member("team", guest.id, None, &draft("member_removed")).await.unwrap());
    assert_eq!(meta.project_access("team", Some(guest.id)).await.unwrap(), Some(("public".into(), None)));

    let token = crate::NewToken {
        user_id: owner.id,
        name: "ci".into(),
        lookup: "abcd1234".into(),
        hash: "h".into(),
        permissions: vec!["pull".into()],
        repositories: vec!["team/*".into()],
        expires_at: Some(100),
    };
    let created = meta.create_token(&token, &draft("token_created")).await.unwrap();
    let found = meta.token_by_lookup("abcd1234").await.unwrap().unwrap();
    assert_eq!((found.id, found.repositories.clone()), (created.id, vec!["team/*".to_owned()]));
    assert_eq!(meta.list_tokens(owner.id, 0, 10).await.unwrap().1, 1);
    meta.touch_token(created.id, 50).await.unwrap();
    assert_eq!(meta.token_by_lookup("abcd1234").await.unwrap().unwrap().last_used, Some(50));
    assert_eq!(meta.revoke_token(guest.id, created.id, &draft("token_revoked")).await.unwrap(), None, "not theirs");
    assert_eq!(
        meta.revoke_token(owner.id, created.id, &draft("token_revoked")).await.unwrap(),
        Some("abcd1234".into())
    );
    assert_eq!(meta.revoke_token(owner.id, created.id, &draft("token_revoked")).await.unwrap(), None);
    assert_eq!(meta.list_tokens(owner.id, 0, 10).await.unwrap().1, 0);

    let session = crate::SessionRecord {
        id: "sess_1".into(),
        user_id: owner.id,
        ip: "10.0.0.1".into(),
        csrf_hash: "c".into(),
        created_at: 1,
        last_seen: 1,
        expires_at: 1000,
        revoked_at: None,
    };
    meta.create_session(&session).await.unwrap();
    meta.touch_session("sess_1", 5).await.unwrap();
    assert_eq!(meta.session("sess_1").await.unwrap().unwrap().last_seen, 5);
    // A password change ends the user's sessions.
    let passwd = crate::UserUpdate { password_hash: Some("$argon2id$new".into()), ..Default::default() };
    meta.update_user(owner.id, &passwd, &draft("user_updated")).await.unwrap();
    assert!(meta.session("sess_1").await.unwrap().unwrap().revoked_at.is_some());
    assert!(!meta.revoke_session("sess_1", 9).await.unwrap(), "already revoked");

    assert_eq!(meta.setting("k").await.unwrap(), None);
    meta.put_setting("k", "v1", None).await.unwrap();
    meta.put_setting("k", "v2", Some(&draft("setting_changed"))).await.unwrap();
    assert_eq!(meta.setting("k").await.unwrap().as_deref(), Some("v2"));
    assert!(!meta.put_setting_if_absent("k", "v3").await.unwrap());
    assert!(meta.put_setting_if_absent("k2", "v3").await.unwrap());

    // Single-use settings: only one taker gets the value.
    meta.put_setting("captcha:c_1", "h", None).await.unwrap();
    assert_eq!(meta.take_setting("captcha:c_1").await.unwrap().as_deref(), Some("h"));
    assert_eq!(meta.take_setting("captcha:c_1").await.unwrap(), None);
    meta.put_setting("captcha:c_2", "h", None).await.unwrap();
    meta.put_setting("captchaX", "h", None).await.unwrap();
    assert_eq!(meta.purge_settings("captcha:", 0).await.unwrap(), 0, "nothing older than 0");
    assert_eq!(meta.purge_settings("captcha:", i64::MAX).await.unwrap(), 1);
    assert_eq!(meta.setting("captchaX").await.unwrap().as_deref(), Some("h"), "other prefixes stay");
    // A monotonic claim: equal or smaller values are refused.
    assert!(meta.advance_setting("step", 10).await.unwrap());
    assert!(!meta.advance_setting("step", 10).await.unwrap());
    assert!(!meta.advance_setting("step", 9).await.unwrap());
    assert!(meta.advance_setting("step", 11).await.unwrap());
    assert_eq!(meta.setting("step").await.unwrap().as_deref(), Some("11"));
    // Recovery codes are swapped only from the expected value.
    let codes =
        crate::UserUpdate { totp: Some((Some("S".into()), true, Some("[\"a\",\"b\"]".into()))), ..Default::default() };
    meta.update_user(owner.id, &codes, &draft("2fa_enabled")).await.unwrap();
    assert!(
        meta.replace_recovery_codes(owner.id, "[\"a\",\"b\"]", "[\"b\"]", &draft("2fa_recovery_code_used"))
            .await
            .unwrap()
    );
    assert!(
        !meta
            .replace_recovery_codes(owner.id, "[\"a\",\"b\"]", "[\"a\"]", &draft("2fa_recovery_code_used"))
            .await
            .unwrap()
    );
    assert_eq!(meta.user_by_id(owner.id).await.unwrap().unwrap().recovery_codes.as_deref(), Some("[\"b\"]"));

    meta.record_login_failure("carol", "10.0.0.9", 100).await.unwrap();
    meta.record_login_failure("carol", "10.0.0.8", 101).await.unwrap();
    meta.record_login_failure("erin", "10.0.0.9", 102).await.unwrap();
    assert_eq!(meta.login_failures("carol", "10.0.0.9", 0).await.unwrap(), (2, 2));
    assert_eq!(meta.login_failures("carol", "10.0.0.9", 101).await.unwrap(), (1, 1));
    meta.clear_login_failures("carol").await.unwrap();
    assert_eq!(meta.login_failures("carol", "10.0.0.9", 0).await.unwrap(), (0, 1));
    // Deleting a user removes their memberships and tokens with them.
    assert!(meta.delete_user(guest.id, &draft("user_deleted")).await.unwrap());
    assert!(!meta.delete_user(guest.id, &draft("user_deleted")).await.unwrap());
}

async fn audit_entries_chain(meta: &dyn Metadata) {
    use berth_access::audit_chain::{GENESIS_HASH, chain_hash};
    meta.append_audit(&draft("login_success")).await.unwrap();
    let mut failed = draft("login_failure");
    failed.status = "failure";
    meta.append_audit(&failed).await.unwrap();
    // Everything the earlier checks changed was audited too: walk the whole chain.
    let all = meta.audit_after(0, &crate::AuditFilter::default(), 10_000).await.unwrap();
    assert!(all.len() >= 15, "every audited change left an entry ({})", all.len());
    let mut prev = GENESIS_HASH.to_owned();
    for (i, record) in all.iter().enumerate() {
        assert_eq!(record.id, i as i64 + 1, "ids are dense");
        assert_eq!(record.prev_hash, prev);
        assert_eq!(record.hash, chain_hash(&prev, &crate::chain_entry(record).canonical_json()));
        prev = record.hash.clone();
    }
    assert_eq!(meta.audit_head().await.unwrap(), (all.len() as i64, prev));
    let filter = crate::AuditFilter { event: Some("login_failure".into()), ..Default::default() };
    let (page, total) = meta.list_audit(&filter, 0, 10).await.unwrap();
    assert_eq!((page.len(), total, page[0].status.as_str()), (1, 1, "failure"));
    let (newest, _) = meta.list_audit(&crate::AuditFilter::default(), 0, 1).await.unwrap();
    assert_eq!(newest[0].id, all.len() as i64, "newest first");
    let filter = crate::AuditFilter { from: Some(i64::MAX - 1), ..Default::default() };
    assert_eq!(meta.list_audit(&filter, 0, 10).await.unwrap().1, 0);
}

async fn leases_have_one_holder(meta: &dyn Metadata) {
    assert!(meta.try_lease("suite-job", "node-a", 60).await.unwrap());
    assert!(!meta.try_lease("suite-job", "node-b", 60).await.unwrap(), "held by node-a");
    assert!(meta.try_lease("suite-job", "node-a", 60).await.unwrap(), "the holder renews");
    assert!(meta.try_lease("suite-job-2", "node-b", -1).await.unwrap());
    assert!(meta.try_lease("suite-job-2", "node-a", 60).await.unwrap(), "an expired lease is taken over");
}

async fn blobs_are_visible_per_repository(meta: &dyn Metadata) {
    let (a, b) = (repo("suite/a"), repo("suite/b"));
    let d = Digest::sha256(b"blob");
    assert!(!meta.repo_exists(&a).await.unwrap());
    assert_eq!(meta.find_blob(&d).await.unwrap(), None);
    meta.link_blob(&a, &d, 4, &[]).await.unwrap();
    meta.link_blob(&a, &d, 4, &[]).await.unwrap();
    assert!(meta.repo_exists(&a).await.unwrap(), "linking creates the repository");
    assert_eq!(meta.blob_in_repo(&a, &d).await.unwrap(), Some(4));
    assert_eq!(meta.blob_in_repo(&b, &d).await.unwrap(), None);
    assert_eq!(meta.find_blob(&d).await.unwrap(), Some(4));
    meta.link_blob(&b, &d, 4, &[]).await.unwrap();
    assert_eq!(meta.repos_with_blob(&d, 10).await.unwrap(), vec!["suite/a", "suite/b"]);
    assert_eq!(meta.repos_with_blob(&d, 1).await.unwrap(), vec!["suite/a"]);
    assert!(meta.unlink_blob(&a, &d, &[]).await.unwrap());
    assert!(!meta.unlink_blob(&a, &d, &[]).await.unwrap());
    assert_eq!(meta.blob_in_repo(&a, &d).await.unwrap(), None);
    assert_eq!(meta.blob_in_repo(&b, &d).await.unwrap(), Some(4), "other repositories keep it");
}

/// The first write into a repository may be a manifest (the pull-through
/// cache stores one before what it references): it creates the repository,
/// recording that before its own event, and everything else lands as usual.
async fn a_manifest_creates_its_repository(meta: &dyn Metadata) {
    use crate::{EventActor, EventDraft, EventKind};
    let r = repo("suite/fresh");
    let bob = EventActor::new("bob", "10.0.0.9");
    let mut m = manifest("fresh", &[&Digest::sha256(b"not fetched yet")], None, None);
    m.require_references = false;
    m.events = vec![EventDraft::new(EventKind::Push, &bob).repository(r.as_str()).tag(Some("v1"))];
    meta.put_manifest(&r, m.clone(), &[tag("v1")]).await.unwrap();
    assert!(meta.repo_exists(&r).await.unwrap());
    assert_eq!(meta.manifest_by_tag(&r, &tag("v1"), false).await.unwrap().unwrap().digest, m.digest);
    let events: Vec<String> = meta
        .pending_events(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.draft.repository.as_deref() == Some(r.as_str()))
        .map(|e| format!("{} {}", e.draft.kind.as_str(), e.draft.actor.name))
        .collect();
    assert_eq!(events, ["repository.create bob", "push bob"]);
    let mut pushed = manifest("fresh pushed", &[], None, None);
    pushed.events.clear();
    let other = repo("suite/fresh-pushed");
    meta.put_manifest(&other, pushed, &[tag("v1")]).await.unwrap();
    assert_eq!(meta.repository(other.as_str()).await.unwrap().unwrap().push_count, 1, "a push counts once");
}

async fn manifests_check_references_and_move_tags(meta: &dyn Metadata) {
    let r = repo("suite/m");
    let config = Digest::sha256(b"config");
    let layer = Digest::sha256(b"layer");
    meta.link_blob(&r, &config, 6, &[]).await.unwrap();
    let m1 = manifest("m1", &[&config, &layer], None, None);
    match meta.put_manifest(&r, m1.clone(), &[tag("latest")]).await {
        Err(MetaError::MissingReferences(missing)) => assert_eq!(missing, vec![layer.clone()]),
        other => panic!("expected missing layer, got {other:?}"),
    }
    assert!(meta.manifest_by_digest(&r, &m1.digest, false).await.unwrap().is_none(), "nothing stored");
    meta.link_blob(&r, &layer, 5, &[]).await.unwrap();
    meta.put_manifest(&r, m1.clone(), &[tag("latest"), tag("v1")]).await.unwrap();
    let got = meta.manifest_by_tag(&r, &tag("latest"), true).await.unwrap().unwrap();
    assert_eq!(got.digest, m1.digest);
    assert_eq!(got.payload.as_deref(), Some(&b"m1"[..]));
    assert_eq!(got.size, 2);
    assert!(meta.manifest_by_digest(&r, &m1.digest, false).await.unwrap().unwrap().payload.is_none());

    let m2 = manifest("m2", &[&config], None, None);
    meta.put_manifest(&r, m2.clone(), &[tag("latest")]).await.unwrap();
    assert_eq!(meta.manifest_by_tag(&r, &tag("latest"), false).await.unwrap().unwrap().digest, m2.digest);
    assert_eq!(meta.manifest_by_tag(&r, &tag("v1"), false).await.unwrap().unwrap().digest, m1.digest);

    assert!(meta.delete_tag(&r, &tag("v1"), &[]).await.unwrap());
    assert!(!meta.delete_tag(&r, &tag("v1"), &[]).await.unwrap());
    assert!(meta.manifest_by_digest(&r, &m1.digest, false).await.unwrap().is_some(), "tag delete keeps manifest");
    meta.put_manifest(&r, m1.clone(), &[tag("v1")]).await.unwrap();
    assert!(meta.delete_manifest(&r, &m1.digest, &[]).await.unwrap());
    assert!(meta.manifest_by_tag(&r, &tag("v1"), false).await.unwrap().is_none(), "its tags go too");
    assert!(!meta.delete_manifest(&r, &m1.digest, &[]).await.unwrap());
    assert_eq!(meta.list_tags(&r, None, None).await.unwrap(), vec!["latest"]);
}

async fn listings_paginate_bytewise(meta: &dyn Metadata) {
    let r = repo("suite/tags");
    let config = Digest::sha256(b"c");
    meta.link_blob(&r, &config, 1, &[]).await.unwrap();
    let tags: Vec<Tag> = ["b", "a", "C", "a1"].into_iter().map(tag).collect();
    meta.put_manifest(&r, manifest("t", &[&config], None, None), &tags).await.unwrap();
    assert_eq!(meta.list_tags(&r, None, None).await.unwrap(), vec!["C", "a", "a1", "b"]);
    assert_eq!(meta.list_tags(&r, None, Some(2)).await.unwrap(), vec!["C", "a"]);
    assert_eq!(meta.list_tags(&r, Some("a"), Some(2)).await.unwrap(), vec!["a1", "b"]);
    assert_eq!(meta.list_tags(&r, Some("b"), None).await.unwrap(), Vec::<String>::new());
    assert_eq!(meta.list_tags(&r, None, Some(0)).await.unwrap(), Vec::<String>::new());
    let all = meta.list_repos(None, 100).await.unwrap();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted: {all:?}");
    let after = meta.list_repos(Some("suite/m"), 1).await.unwrap();
    assert_eq!(after, vec!["suite/tags"]);
}

async fn referrers_filter_by_artifact_type(meta: &dyn Metadata) {
    let r = repo("suite/refs");
    let config = Digest::sha256(b"cfg");
    meta.link_blob(&r, &config, 3, &[]).await.unwrap();
    let subject = Digest::sha256(b"not pushed yet");
    let sig = manifest("sig", &[&config], Some(&subject), Some("application/x-sig"));
    let sbom = manifest("sbom", &[&config], Some(&subject), Some("application/x-sbom"));
    meta.put_manifest(&r, sig.clone(), &[]).await.unwrap();
    meta.put_manifest(&r, sbom.clone(), &[]).await.unwrap();
    let all = meta.list_referrers(&r, &subject, None).await.unwrap();
    assert_eq!(all.len(), 2);
    let sigs = meta.list_referrers(&r, &subject, Some("application/x-sig")).await.unwrap();
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0].digest, sig.digest);
    assert_eq!(sigs[0].annotations_json.as_deref(), Some(r#"{"k":"v"}"#));
    assert!(meta.list_referrers(&repo("suite/other"), &subject, None).await.unwrap().is_empty());
}

async fn uploads_round_trip(meta: &dyn Metadata) {
    let r = repo("suite/up");
    let upload = NewUpload {
        id: "u-1".into(),
        repo: r.clone(),
        algorithm: Algorithm::Sha512,
        cursor: "c0".into(),
        actor: Default::default(),
    };
    meta.create_upload(&upload).await.unwrap();
    assert!(meta.repo_exists(&r).await.unwrap(), "an upload creates the repository");
    let got = meta.get_upload(&r, "u-1").await.unwrap().unwrap();
    assert_eq!((got.received, got.algorithm), (0, Algorithm::Sha512));
    assert!(meta.get_upload(&repo("suite/a"), "u-1").await.unwrap().is_none(), "bound to its repository");
    assert_eq!((got.cursor.as_str(), got.hash_state.as_deref()), ("c0", None));
    let progress = crate::UploadProgress { received: 42, hash_state: vec![1, 2, 3], cursor: "c1".into() };
    assert!(meta.save_upload_progress("u-1", 0, &progress).await.unwrap());
    assert!(!meta.save_upload_progress("u-1", 0, &progress).await.unwrap(), "stale offset refused");
    let got = meta.get_upload(&r, "u-1").await.unwrap().unwrap();
    assert_eq!((got.received, got.hash_state.as_deref(), got.cursor.as_str()), (42, Some(&[1u8, 2, 3][..]), "c1"));
    assert_eq!(
        meta.stale_uploads(crate::now_unix() + 10, 10).await.unwrap(),
        vec![("u-1".to_owned(), "c1".to_owned())]
    );
    assert!(meta.stale_uploads(crate::now_unix() - 10, 10).await.unwrap().is_empty());
    assert!(meta.delete_upload("u-1").await.unwrap());
    assert!(meta.get_upload(&r, "u-1").await.unwrap().is_none());

    // Finishing links the blob and ends the session at once.
    let finished = NewUpload { id: "u-2".into(), algorithm: Algorithm::Sha256, ..upload };
    meta.create_upload(&finished).await.unwrap();
    let digest = Digest::sha256(b"finished upload");
    meta.finish_upload("u-2", &r, &digest, 15, &[]).await.unwrap();
    assert_eq!(meta.blob_in_repo(&r, &digest).await.unwrap(), Some(15));
    assert!(meta.get_upload(&r, "u-2").await.unwrap().is_none(), "the session ends with the link");
}

fn upstream(name: &str, priority: i64) -> crate::UpstreamRecord {
    crate::UpstreamRecord {
        name: name.into(),
        url: format!("https://{name}.example"),
        priority,
        enabled: true,
        namespace: "mirror.example".into(),
        mirror: true,
        library_prefix: false,
        username: None,
        password_sealed: None,
        timeout_secs: 30,
        max_concurrent: 8,
        max_size: 0,
        created_at: 1,
        updated_at: 1,
    }
}

async fn proxy_records(meta: &dyn Metadata) {
    // Upstreams: unique names, ordered by priority, updatable, deletable.
    assert!(meta.insert_upstream(&upstream("second", 2)).await.unwrap());
    assert!(meta.insert_upstream(&upstream("first", 1)).await.unwrap());
    assert!(!meta.insert_upstream(&upstream("first", 5)).await.unwrap(), "duplicate names are refused");
    let names: Vec<String> = meta.list_upstreams().await.unwrap().into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["first", "second"]);
    let mut changed = upstream("second", 0);
    changed.enabled = false;
    changed.password_sealed = Some("sealed".into());
    assert!(meta.update_upstream(&changed).await.unwrap());
    let listed = meta.list_upstreams().await.unwrap();
    assert_eq!(listed[0], changed);
    assert!(!meta.update_upstream(&upstream("absent", 1)).await.unwrap());

    // Cache entries: recorded, touched in batches, totals, LRU order, pins.
    meta.record_cache_entry("sha256:aa", "first", 100, 10).await.unwrap();
    meta.record_cache_entry("sha256:bb", "second", 50, 20).await.unwrap();
    meta.record_cache_entry("sha256:cc", "first", 25, 30).await.unwrap();
    meta.touch_cache_entries(&[("sha256:aa".into(), 40, 3), ("sha256:bb".into(), 5, 1)]).await.unwrap();
    let aa = meta.cache_entry("sha256:aa").await.unwrap().unwrap();
    assert_eq!((aa.last_access, aa.access_count), (40, 4));
    let bb = meta.cache_entry("sha256:bb").await.unwrap().unwrap();
    assert_eq!((bb.last_access, bb.access_count), (20, 2), "an older touch never moves last_access back");
    assert_eq!(meta.cache_totals(None).await.unwrap(), crate::CacheTotals { entries: 3, bytes: 175 });
    assert_eq!(meta.cache_totals(Some("first")).await.unwrap(), crate::CacheTotals { entries: 2, bytes: 125 });
    let lru: Vec<String> = meta.eviction_candidates(None, 10).await.unwrap().into_iter().map(|e| e.digest).collect();
    assert_eq!(lru, ["sha256:bb", "sha256:cc", "sha256:aa"]);
    assert!(meta.set_cache_pin("sha256:bb", true).await.unwrap());
    let lru: Vec<String> =
        meta.eviction_candidates(Some("first"), 1).await.unwrap().into_iter().map(|e| e.digest).collect();
    assert_eq!(lru, ["sha256:cc"]);
    let idle: Vec<String> = meta.idle_cache_entries(35, 10).await.unwrap().into_iter().map(|e| e.digest).collect();
    assert_eq!(idle, ["sha256:cc"], "pinned entries are never idle candidates");
    let recent: Vec<String> = meta.list_cache_entries(2, 0).await.unwrap().into_iter().map(|e| e.digest).collect();
    assert_eq!(recent, ["sha256:aa", "sha256:cc"]);
    assert!(meta.delete_cache_entry("sha256:cc").await.unwrap());
    assert!(!meta.delete_cache_entry("sha256:cc").await.unwrap());

    // Cached tags.
    let tag = crate::CachedTag { upstream: "first".into(), digest: "sha256:m1".into(), validated_at: 7 };
    meta.put_cached_tag("mirror.example/app", "v1", &tag).await.unwrap();
    let moved = crate::CachedTag { digest: "sha256:m2".into(), validated_at: 9, ..tag };
    meta.put_cached_tag("mirror.example/app", "v1", &moved).await.unwrap();
    assert_eq!(meta.cached_tag("mirror.example/app", "v1").await.unwrap(), Some(moved));
    assert_eq!(meta.cached_tag("mirror.example/app", "v2").await.unwrap(), None);

    // Emptying a namespace: links go, a blob still linked elsewhere stays known.
    let cached: RepoName = "mirror.example/app".parse().unwrap();
    let local: RepoName = "local/app".parse().unwrap();
    let shared = Digest::sha256(b"shared layer");
    let only_cached = Digest::sha256(b"cached layer");
    meta.link_blob(&cached, &shared, 12, &[]).await.unwrap();
    meta.link_blob(&local, &shared, 12, &[]).await.unwrap();
    meta.link_blob(&cached, &only_cached, 12, &[]).await.unwrap();
    assert_eq!(meta.unlink_blob_in_project("mirror.example", only_cached.as_str()).await.unwrap(), 1);
    assert!(claim_blob_now(meta, only_cached.as_str()).await, "no link left: collectable");
    assert_eq!(meta.delete_project_repositories("mirror.example").await.unwrap(), 1);
    assert!(!meta.repo_exists(&cached).await.unwrap());
    assert_eq!(meta.cached_tag("mirror.example/app", "v1").await.unwrap(), None);
    assert!(!claim_blob_now(meta, shared.as_str()).await, "still linked in local/app");
    assert_eq!(meta.find_blob(&shared).await.unwrap(), Some(12));

    assert!(meta.delete_upstream("first").await.unwrap());
    assert!(meta.delete_upstream("second").await.unwrap());
    assert!(!meta.delete_upstream("second").await.unwrap());
}

/// Events are written with their change (and only when it happened), fan out
/// into deliveries once, and deliveries move through attempts to a final state.
async fn events_feed_webhook_deliveries(meta: &dyn Metadata) {
    use crate::{AttemptOutcome, EventActor, EventDraft, EventKind, WebhookSpec};
    // Earlier checks left events behind (uploads create repositories): settle them.
    let old: Vec<i64> = meta.pending_events(100_000).await.unwrap().iter().map(|e| e.id).collect();
    meta.fan_out(&old, &[], 0).await.unwrap();
    assert!(meta.pending_events(10).await.unwrap().is_empty());

    let alice = EventActor::new("alice", "10.0.0.7");
    let r = repo("events/app");
    let config = Digest::sha256(b"events-config");
    let pushed = EventDraft::new(EventKind::BlobPush, &alice).repository(r.as_str()).digest(config.as_str()).size(13);
    meta.link_blob(&r, &config, 13, &[pushed]).await.unwrap();
    let mut m = manifest("events-manifest", &[&config], None, None);
    m.events =
        vec![EventDraft::new(EventKind::Push, &alice).repository(r.as_str()).digest(m.digest.as_str()).tag(Some("v1"))];
    let digest = m.digest.clone();
    meta.put_manifest(&r, m, &[tag("v1")]).await.unwrap();
    let gone = EventDraft::new(EventKind::Delete, &alice).repository(r.as_str()).tag(Some("nope"));
    assert!(!meta.delete_tag(&r, &tag("nope"), std::slice::from_ref(&gone)).await.unwrap(), "no such tag");
    assert!(meta.delete_tag(&r, &tag("v1"), &[gone.clone().tag(Some("v1"))]).await.unwrap());

    let pending = meta.pending_events(100).await.unwrap();
    let kinds: Vec<&str> = pending.iter().map(|e| e.draft.kind.as_str()).collect();
    assert_eq!(kinds, ["repository.create", "blob.push", "push", "delete"], "a refused delete records nothing");
    assert_eq!(pending[2].draft.actor, alice);
    assert_eq!(pending[2].draft.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(pending[3].draft.tag.as_deref(), Some("v1"));
    assert_eq!(meta.event(pending[2].id).await.unwrap().unwrap(), pending[2]);

    // A management change audited as a success is an event in the same transaction.
    let mut audit = draft("user_created");
    audit.action = "user.create".into();
    meta.append_audit(&audit).await.unwrap();
    let after = meta.pending_events(100).await.unwrap();
    assert_eq!(after.last().unwrap().draft.kind.as_str(), "user.create");
    assert_eq!(after.len(), 5);

    let spec = WebhookSpec {
        url: "http://127.0.0.1:9/hook".into(),
        events: vec!["push".into(), "delete".into()],
        repository: "events/*".into(),
        secret_sealed: Some("sealed".into()),
        format: "berth".into(),
        enabled: true,
    };
    let hook = meta.create_webhook(&spec, "admin").await.unwrap();
    assert_eq!((hook.events.clone(), hook.enabled), (spec.events.clone(), true));
    let other = meta.create_webhook(&WebhookSpec { enabled: false, ..spec.clone() }, "admin").await.unwrap();
    assert_eq!(meta.enabled_webhooks().await.unwrap().iter().map(|w| w.id).collect::<Vec<_>>(), [hook.id]);
    let (all, total) = meta.list_webhooks(0, 1).await.unwrap();
    assert_eq!((all.len(), total), (1, 2));

    // A batch marks its own events only: the rest stay pending, in order.
    let ids: Vec<i64> = after.iter().map(|e| e.id).collect();
    meta.fan_out(&ids[..2], &[], 1_000).await.unwrap();
    let left: Vec<i64> = meta.pending_events(10).await.unwrap().iter().map(|e| e.id).collect();
    assert_eq!(left, ids[2..], "the first two events fanned out");
    let plan = vec![(hook.id, after[2].id, "k-push".to_string()), (hook.id, after[3].id, "k-del".to_string())];
    meta.fan_out(&ids[2..], &plan, 1_000).await.unwrap();
    assert!(meta.pending_events(10).await.unwrap().is_empty(), "fanned out once");

    assert!(meta.claim_due_deliveries(hook.id, 999, 5_000, 10).await.unwrap().is_empty(), "not due yet");
    let due = meta.claim_due_deliveries(hook.id, 1_000, 5_000, 10).await.unwrap();
    assert_eq!(due.iter().map(|d| d.delivery_key.as_str()).collect::<Vec<_>>(), ["k-push", "k-del"]);
    assert!(meta.claim_due_deliveries(hook.id, 1_000, 5_000, 10).await.unwrap().is_empty(), "claimed");
    let fail = AttemptOutcome {
        at_ms: 1_100,
        status: Some(503),
        latency_ms: 7,
        error: Some("receiver answered 503".into()),
        delivered: false,
        retry_at_ms: Some(2_000),
    };
    meta.record_attempt(due[0].id, &fail).await.unwrap();
    let ok = AttemptOutcome {
        at_ms: 2_100,
        status: Some(200),
        error: None,
        delivered: true,
        retry_at_ms: None,
        ..fail.clone()
    };
    let retry = meta.claim_due_deliveries(hook.id, 2_000, 9_000, 10).await.unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!((retry[0].id, retry[0].attempts, retry[0].last_status), (due[0].id, 1, Some(503)));
    meta.record_attempt(due[0].id, &ok).await.unwrap();
    meta.record_attempt(due[1].id, &AttemptOutcome { retry_at_ms: None, ..fail.clone() }).await.unwrap();
    let delivered = meta.delivery(due[0].id).await.unwrap().unwrap();
    assert_eq!((delivered.state.as_str(), delivered.attempts, delivered.last_error.clone()), ("delivered", 2, None));
    assert_eq!(meta.delivery(due[1].id).await.unwrap().unwrap().state, "failed");
    let log = meta.delivery_attempts(due[0].id).await.unwrap();
    assert_eq!(log.iter().map(|a| (a.attempt, a.status)).collect::<Vec<_>>(), [(1, Some(503)), (2, Some(200))]);
    let (history, total) = meta.list_deliveries(hook.id, 0, 10).await.unwrap();
    assert_eq!((history[0].id, total), (due[1].id, 2), "newest first");

    let again = meta.redeliver(due[1].id, 3_000).await.unwrap().expect("redelivered");
    let again = meta.delivery(again).await.unwrap().unwrap();
    assert_eq!((again.state.as_str(), again.attempts, again.delivery_key.as_str()), ("pending", 0, "k-del"));

    let ping = EventDraft::new(EventKind::Ping, &alice);
    let direct = meta.create_direct_delivery(hook.id, &ping, "k-ping", i64::MAX / 2).await.unwrap();
    assert!(meta.pending_events(10).await.unwrap().is_empty(), "a ping goes to its webhook only");
    assert_eq!(meta.event(direct.event_id).await.unwrap().unwrap().draft.kind, EventKind::Ping);

    // Pruning keeps events with pending deliveries.
    meta.prune_events(i64::MAX, 1000).await.unwrap();
    assert!(meta.event(after[3].id).await.unwrap().is_some(), "its redelivery is pending");
    assert!(meta.event(after[2].id).await.unwrap().is_none(), "delivered and old");
    assert!(meta.delivery(due[0].id).await.unwrap().is_none(), "history goes with the event");

    assert!(meta.delete_webhook(hook.id).await.unwrap());
    assert!(!meta.delete_webhook(hook.id).await.unwrap());
    assert!(meta.delivery(again.id).await.unwrap().is_none());
    assert!(meta.delete_webhook(other.id).await.unwrap());
}

/// Pushes `repo:tags` as a manifest over a config (3 bytes) and a layer (`layer` bytes).
async fn push_image(meta: &dyn Metadata, name: &str, body: &str, layer: u64, tags: &[&str]) -> NewManifest {
    let r = repo(name);
    let config = Digest::sha256(format!("{body}-config").as_bytes());
    let blob = Digest::sha256(format!("{body}-layer").as_bytes());
    meta.link_blob(&r, &config, 3, &[]).await.unwrap();
    meta.link_blob(&r, &blob, layer, &[]).await.unwrap();
    let m = manifest(body, &[&config, &blob], None, None);
    let tags: Vec<Tag> = tags.iter().map(|t| tag(t)).collect();
    meta.put_manifest(&r, m.clone(), &tags).await.unwrap();
    m
}

fn names(page: &crate::ImagePage) -> Vec<String> {
    page.images.iter().map(|i| format!("{}:{}", i.repo, i.tag)).collect()
}

async fn catalog_views(meta: &dyn Metadata) {
    use crate::Viewer;
    let erin = meta.create_user(&new_user("erin", "user"), &draft("user_created")).await.unwrap();
    let owner = meta.create_user(&new_user("frank", "user"), &draft("user_created")).await.unwrap();
    // catalpha: a private project; catbeta: no project row; catgamma: private project, public repository.
    meta.ensure_project("catalpha", Some(owner.id), &draft("project_created")).await.unwrap();
    meta.ensure_project("catgamma", Some(owner.id), &draft("project_created")).await.unwrap();
    let web = push_image(meta, "catalpha/web", "cat-web", 100, &["v1", "Release-X"]).await;
    push_image(meta, "catbeta/api", "cat-api", 200, &["latest"]).await;
    push_image(meta, "catgamma/db", "cat-db", 300, &["latest"]).await;
    assert!(meta.update_repository("catgamma/db", None, Some("public"), 50, &[]).await.unwrap());
    assert!(!meta.update_repository("catgamma/nope", None, Some("public"), 50, &[]).await.unwrap());

    let all = meta.list_images(Viewer::All, 0, 1000).await.unwrap();
    assert_eq!(all.total as usize, all.images.len());
    let ours: Vec<String> = names(&all).into_iter().filter(|n| n.starts_with("cat")).collect();
    assert_eq!(ours, ["catalpha/web:Release-X", "catalpha/web:v1", "catbeta/api:latest", "catgamma/db:latest"]);
    let v1 = all.images.iter().find(|i| i.repo == "catalpha/web" && i.tag == "v1").unwrap();
    assert_eq!(v1.size, web.payload.len() as i64 + 3 + 100, "manifest + config + layer");
    assert_eq!(v1.digest, web.digest.as_str());
    assert_eq!(v1.push_count, 1);
    assert!(!v1.cached);
    let page = meta.list_images(Viewer::All, 1, 2).await.unwrap();
    assert_eq!(page.images, all.images[1..3].to_vec());
    assert_eq!(page.total, all.total);

    // A user sees public and project-less repositories, and projects they belong to.
    let seen = meta.list_images(Viewer::User(erin.id), 0, 1000).await.unwrap();
    let ours: Vec<String> = names(&seen).into_iter().filter(|n| n.starts_with("cat")).collect();
    assert_eq!(ours, ["catbeta/api:latest", "catgamma/db:latest"]);
    assert_eq!(seen.total as usize, seen.images.len());
    meta.set_member("catalpha", erin.id, Some("guest"), &draft("member_set")).await.unwrap();
    let seen = meta.list_images(Viewer::User(erin.id), 0, 1000).await.unwrap();
    assert!(names(&seen).contains(&"catalpha/web:v1".to_owned()));

    // Search: case-insensitive substrings of names or tags; short queries are prefixes.
    let hits = meta.search_images("ALPHA", Viewer::All, 0, 100).await.unwrap();
    assert_eq!(names(&hits), ["catalpha/web:Release-X", "catalpha/web:v1"]);
    assert_eq!(hits.total, 2);
    let hits = meta.search_images("ease-x", Viewer::All, 0, 100).await.unwrap();
    assert_eq!(names(&hits), ["catalpha/web:Release-X"]);
    let hits = meta.search_images("cat", Viewer::User(erin.id), 1, 2).await.unwrap();
    assert_eq!(
        names(&hits),
        ["catalpha/web:v1", "catbeta/api"].map(|s| if s.contains(':') { s.to_owned() } else { format!("{s}:latest") })
    );
    assert_eq!(hits.total, 4);
    let hits = meta.search_images("re", Viewer::All, 0, 100).await.unwrap();
    assert_eq!(names(&hits), ["catalpha/web:Release-X"], "prefix of a tag, any case");
    assert_eq!(meta.search_images("100%_", Viewer::All, 0, 10).await.unwrap().total, 0);
    assert_eq!(meta.search_images("\"x", Viewer::All, 0, 10).await.unwrap().total, 0);
    // New tag names may reach the index in batches; a search finds them before and after.
    push_image(meta, "catdelta/job", "cat-job", 400, &["Nightly-7"]).await;
    for round in ["before indexing", "after indexing", "with nothing left to index"] {
        let hits = meta.search_images("TLY-7", Viewer::All, 0, 10).await.unwrap();
        assert_eq!(names(&hits), ["catdelta/job:Nightly-7"], "{round}");
        assert_eq!(meta.search_images("ly-8", Viewer::All, 0, 10).await.unwrap().total, 0, "{round}");
        let indexed = meta.index_search_backlog().await.unwrap();
        if round == "with nothing left to index" {
            assert_eq!(indexed, 0);
        }
    }
    assert!(meta.delete_repository("catdelta/job", &[]).await.unwrap());

    // Repository details and counters.
    let r = meta.repository("catgamma/db").await.unwrap().unwrap();
    assert_eq!((r.visibility.as_deref(), r.project_visibility.as_deref()), (Some("public"), Some("private")));
    assert_eq!(r.effective_visibility(), "public");
    assert_eq!(r.owner.as_deref(), Some("frank"));
    assert_eq!(r.updated_at, 50);
    assert_eq!(r.push_count, 1);
    assert!(r.size > 300);
    assert_eq!(meta.repo_visibility("catgamma/db").await.unwrap().as_deref(), Some("public"));
    assert_eq!(meta.repo_visibility("catbeta/api").await.unwrap(), None);
    assert!(meta.update_repository("catbeta/api", Some("the API"), None, 60, &[]).await.unwrap());
    let r = meta.repository("catbeta/api").await.unwrap().unwrap();
    assert_eq!((r.description.as_str(), r.effective_visibility(), r.owner.as_deref()), ("the API", "private", None));
    assert!(meta.repository("catbeta/none").await.unwrap().is_none());

    let pulls = [
        crate::PullTally { repo: "catbeta/api".into(), tag: Some("latest".into()), count: 3, at: 70 },
        crate::PullTally { repo: "catbeta/api".into(), tag: None, count: 2, at: 80 },
    ];
    meta.record_pulls(&pulls).await.unwrap();
    let r = meta.repository("catbeta/api").await.unwrap().unwrap();
    assert_eq!((r.pull_count, r.last_pulled_at), (5, Some(80)));
    let latest = meta.image("catbeta/api", "latest").await.unwrap().unwrap();
    assert_eq!((latest.pull_count, latest.last_pulled_at), (3, Some(70)));
    assert!(meta.image("catbeta/api", "nope").await.unwrap().is_none());
    push_image(meta, "catbeta/api", "cat-api", 200, &["latest"]).await;
    assert_eq!(meta.image("catbeta/api", "latest").await.unwrap().unwrap().push_count, 2);
    assert_eq!(meta.repo_images("catalpha/web").await.unwrap().len(), 2);

    let gone = repo("catalpha/web");
    assert!(meta.delete_repository("catalpha/web", &[]).await.unwrap());
    assert!(!meta.delete_repository("catalpha/web", &[]).await.unwrap());
    assert!(!meta.repo_exists(&gone).await.unwrap());
    assert!(meta.manifest_by_digest(&gone, &web.digest, false).await.unwrap().is_none());
    assert_eq!(meta.search_images("alpha", Viewer::All, 0, 10).await.unwrap().total, 0);
}

/// Substring search reads the trigram indexes and short queries the prefix indexes.
async fn catalog_search_uses_indexes(meta: &dyn Metadata) {
    let (applied, known) = meta.schema_versions().await.unwrap();
    assert_eq!(applied, known);
    assert!(known >= 6);
    let long = meta.explain_search("alpha").await.unwrap().join("\n");
    let short = meta.explain_search("ca").await.unwrap().join("\n");
    for (plan, wanted) in [
        (&long, ["repositories_fts", "tag_names_fts"]),
        (&short, ["sqlite_autoindex_repositories_1", "tag_names_lower"]),
    ] {
        let pg_wanted = if plan == &long {
            ["repositories_name_trgm", "tag_names_trgm"]
        } else {
            ["repositories_name_bytes", "tag_names_lower_bytes"]
        };
        let sqlite = wanted.iter().all(|w| plan.contains(w));
        let postgres = pg_wanted.iter().all(|w| plan.contains(w));
        assert!(sqlite || postgres, "search does not use its indexes:\n{plan}");
        assert!(!plan.contains("Seq Scan on repositories"), "full scan:\n{plan}");
        assert!(!plan.contains("SCAN repositories\n") && !plan.contains("SCAN r\n"), "full scan:\n{plan}");
    }
}

/// Repositories `proj<i % 1000>/app-<i>` with one tag `v<i % 500>` each,
/// seeded by the scale tests (bulk SQL per dialect).
pub const SCALE_REPOS: i64 = 100_000;

/// Times search and listing over [`SCALE_REPOS`] seeded repositories and
/// checks the answers; panics when a query takes longer than `budget`.
pub async fn search_at_scale(meta: &dyn Metadata, budget: std::time::Duration) {
    use crate::Viewer;
    // As the server's indexer would have by now.
    meta.index_search_backlog().await.unwrap();
    let timed = async |label: &str, query: Option<&str>, offset: i64, budget: std::time::Duration| {
        let start = std::time::Instant::now();
        let page = match query {
            Some(q) => meta.search_images(q, Viewer::All, offset, 10).await.unwrap(),
            None => meta.list_images(Viewer::All, offset, 10).await.unwrap(),
        };
        let took = start.elapsed();
        eprintln!("{label}: {} of {} in {took:?}", page.images.len(), page.total);
        assert!(took < budget, "{label} took {took:?}");
        page
    };
    // A query matching every repository materialises and sorts every match, and
    // a deep page steps over `offset` index entries (index reads, no table
    // scan): their cost grows with the matches or the offset.
    let broad = budget * 4;
    let one = timed("search app-42424 (1 repository)", Some("app-42424"), 0, budget).await;
    assert_eq!(names(&one), ["proj424/app-42424:v424"]);
    let tag = timed("search v499 (a tag of 200 repositories)", Some("v499"), 0, budget).await;
    assert_eq!(tag.total, 200);
    let short = timed("search pr (prefix, every repository)", Some("pr"), 0, broad).await;
    assert_eq!(short.total, SCALE_REPOS);
    let few = timed("search 9999 (substring of 19 names)", Some("9999"), 0, budget).await;
    assert_eq!(few.total, 19, "app-9999, app-19999 … app-89999 and app-99990 … app-99999");
    let first = timed("list page 1", None, 0, budget).await;
    assert_eq!(first.total, SCALE_REPOS);
    timed("list page 5000", None, 49_990, broad).await;
    eprintln!("plan (substring):\n{}", meta.explain_search("app-42424").await.unwrap().join("\n"));
}

async fn totals_count_content(meta: &dyn Metadata) {
    meta.ping().await.unwrap();
    let before = meta.registry_totals().await.unwrap();
    let (a, b) = (repo("suite/totals-a"), repo("suite/totals-b"));
    let shared = Digest::sha256(b"totals shared layer");
    let own = Digest::sha256(b"totals own layer");
    meta.link_blob(&a, &shared, 1000, &[]).await.unwrap();
    meta.link_blob(&b, &shared, 1000, &[]).await.unwrap();
    meta.link_blob(&b, &own, 24, &[]).await.unwrap();
    meta.put_manifest(&a, manifest("totals-a", &[&shared], None, None), &[tag("v1"), tag("latest")]).await.unwrap();
    meta.put_manifest(&b, manifest("totals-b", &[&shared, &own], None, None), &[tag("v1")]).await.unwrap();
    let after = meta.registry_totals().await.unwrap();
    assert_eq!(after.repositories - before.repositories, 2);
    assert_eq!(after.tags - before.tags, 3, "repo:tag pairs");
    assert_eq!(after.manifests - before.manifests, 2);
    assert_eq!(after.blobs - before.blobs, 2, "a blob in two repositories counts once");
    assert_eq!(after.blob_bytes - before.blob_bytes, 1024);
    // A blob no repository can see any more no longer counts.
    meta.delete_manifest(&b, &Digest::sha256(b"totals-b"), &[]).await.unwrap();
    assert!(meta.unlink_blob(&b, &own, &[]).await.unwrap());
    let unlinked = meta.registry_totals().await.unwrap();
    assert_eq!((unlinked.blobs - before.blobs, unlinked.blob_bytes - before.blob_bytes), (1, 1000));
    assert_eq!((unlinked.tags - before.tags, unlinked.manifests - before.manifests), (2, 1));
}

/// Immutability rules are checked where tags are written and deleted.
async fn immutable_tags_hold_inside_the_transaction(meta: &dyn Metadata) {
    let r = repo("frozen/app");
    let config = Digest::sha256(b"frozen-config");
    meta.link_blob(&r, &config, 5, &[]).await.unwrap();
    let m1 = manifest("frozen-1", &[&config], None, None);
    let m2 = manifest("frozen-2", &[&config], None, None);
    let rules = vec![("frozen/*".to_owned(), r"^v\d+$".to_owned())];
    let stored = meta.replace_immutability_rules("frozen", &rules, Some(&draft("immutability_updated"))).await.unwrap();
    assert_eq!((stored.len(), stored[0].pattern.as_str()), (1, r"^v\d+$"));
    assert_eq!(meta.immutability_rules("frozen").await.unwrap(), stored);
    assert!(meta.immutability_rules("thawed").await.unwrap().is_empty());

    meta.put_manifest(&r, m1.clone(), &[tag("v1"), tag("latest")]).await.unwrap();
    meta.put_manifest(&r, m1.clone(), &[tag("v1")]).await.expect("same manifest, no move");
    match meta.put_manifest(&r, m2.clone(), &[tag("latest"), tag("v1")]).await {
        Err(MetaError::ImmutableTag(t)) => assert_eq!(t, "v1"),
        other => panic!("moving v1 must be refused, got {other:?}"),
    }
    let now = meta.manifest_by_tag(&r, &tag("latest"), false).await.unwrap().unwrap();
    assert_eq!(now.digest, m1.digest, "the refused push changed nothing, latest included");
    meta.put_manifest(&r, m2.clone(), &[tag("latest"), tag("v2")]).await.unwrap();
    assert!(matches!(meta.delete_tag(&r, &tag("v1"), &[]).await, Err(MetaError::ImmutableTag(_))));
    assert!(matches!(meta.delete_manifest(&r, &m1.digest, &[]).await, Err(MetaError::ImmutableTag(_))));
    assert!(matches!(meta.delete_repository("frozen/app", &[]).await, Err(MetaError::ImmutableTag(_))));
    assert!(meta.delete_tag(&r, &tag("latest"), &[]).await.unwrap(), "unprotected tags delete");

    meta.replace_immutability_rules("frozen", &[], None).await.unwrap();
    assert!(meta.delete_tag(&r, &tag("v1"), &[]).await.unwrap());
    assert!(meta.delete_repository("frozen/app", &[]).await.unwrap());
}

/// `list_blobs` pages every blob row in digest order and says which are linked.
async fn blob_rows_page_in_digest_order(meta: &dyn Metadata) {
    let r = repo("fsck/app");
    let (kept, dropped) = (Digest::sha256(b"fsck-kept"), Digest::sha256(b"fsck-dropped"));
    meta.link_blob(&r, &kept, 9, &[]).await.unwrap();
    meta.link_blob(&r, &dropped, 12, &[]).await.unwrap();
    assert!(meta.unlink_blob(&r, &dropped, &[]).await.unwrap());
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = meta.list_blobs(after.as_deref(), 7).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = Some(page.last().unwrap().digest.to_string());
        all.extend(page);
    }
    let digests: Vec<String> = all.iter().map(|b| b.digest.to_string()).collect();
    let mut sorted = digests.clone();
    sorted.sort();
    assert_eq!(digests, sorted, "digest order, no repeats across pages");
    sorted.dedup();
    assert_eq!(sorted.len(), digests.len());
    let find = |d: &Digest| all.iter().find(|b| &b.digest == d).cloned().expect("listed");
    assert_eq!((find(&kept).size, find(&kept).linked), (9, true));
    assert_eq!((find(&dropped).size, find(&dropped).linked), (12, false));
}

/// Pushes and pull-count flushes touch the same tag and repository rows; on
/// PostgreSQL they must lock them in one order or concurrent ones deadlock.
async fn pushes_and_pull_flushes_never_deadlock(meta: &dyn Metadata) {
    let r = repo("race/app");
    let config = Digest::sha256(b"race-config");
    meta.link_blob(&r, &config, 4, &[]).await.unwrap();
    let manifests: Vec<NewManifest> = (0..4).map(|i| manifest(&format!("race-{i}"), &[&config], None, None)).collect();
    meta.put_manifest(&r, manifests[0].clone(), &[tag("a"), tag("b")]).await.unwrap();
    let pulls = |n: i64| {
        vec![
            crate::PullTally { repo: "race/app".into(), tag: Some("b".into()), count: n, at: n },
            crate::PullTally { repo: "race/app".into(), tag: None, count: n, at: n },
            crate::PullTally { repo: "race/app".into(), tag: Some("a".into()), count: n, at: n },
        ]
    };
    let (ab, ba, one, two) = ([tag("a"), tag("b")], [tag("b"), tag("a")], pulls(1), pulls(2));
    for round in 0..40 {
        let (p1, p2, f1, f2) = tokio::join!(
            meta.put_manifest(&r, manifests[round % 4].clone(), &ba),
            meta.put_manifest(&r, manifests[(round + 1) % 4].clone(), &ab),
            meta.record_pulls(&one),
            meta.record_pulls(&two),
        );
        for (what, result) in [("push 1", p1), ("push 2", p2), ("flush 1", f1), ("flush 2", f2)] {
            result.unwrap_or_else(|e| panic!("round {round}: {what}: {e}"));
        }
    }
}

/// A retention policy is stored whole, replaced whole, and audited with its write.
async fn retention_policies_round_trip(meta: &dyn Metadata) {
    use crate::{RetentionPolicy, RetentionRule};
    assert_eq!(meta.retention_policy("retain").await.unwrap(), None);
    let rules = vec![
        RetentionRule { repository: "retain/*".into(), keep_last: Some(3), ..Default::default() },
        RetentionRule {
            repository: "retain/app".into(),
            keep_tags: Some("^stable$".into()),
            keep_semver: Some(">=1.2, <2".into()),
            keep_pulled_within_days: Some(30),
            ..Default::default()
        },
    ];
    let policy = RetentionPolicy {
        project: "retain".into(),
        enabled: true,
        untagged_hours: Some(24),
        rules: rules.clone(),
        updated_at: 0,
    };
    let (_, head_before) = meta.audit_head().await.unwrap();
    let stored = meta.replace_retention_policy(&policy, Some(&draft("retention_updated"))).await.unwrap();
    assert_ne!(meta.audit_head().await.unwrap().1, head_before, "the write is audited");
    assert!(stored.updated_at > 0);
    assert_eq!(stored, RetentionPolicy { updated_at: stored.updated_at, ..policy.clone() });
    assert_eq!(meta.retention_policy("retain").await.unwrap(), Some(stored));
    let idle = RetentionPolicy { project: "retain-idle".into(), rules: rules.clone(), ..Default::default() };
    meta.replace_retention_policy(&idle, None).await.unwrap();
    let enabled = meta.retention_projects().await.unwrap();
    assert!(enabled.contains(&"retain".to_owned()) && !enabled.contains(&"retain-idle".to_owned()));

    // Replacing drops the old rules and settings.
    let fewer = RetentionPolicy { rules: rules[1..].to_vec(), enabled: false, untagged_hours: None, ..policy };
    let stored = meta.replace_retention_policy(&fewer, None).await.unwrap();
    assert_eq!((stored.rules, stored.enabled, stored.untagged_hours), (rules[1..].to_vec(), false, None));
    assert!(!meta.retention_projects().await.unwrap().contains(&"retain".to_owned()));
}

/// Tags come newest push first; manifests that may go exclude index children
/// and referrers of a present subject.
async fn retention_reads_follow_push_time_and_references(meta: &dyn Metadata) {
    let r = repo("retain/app");
    meta.link_blob(&repo("retain/deep/er"), &Digest::sha256(b"retain-other"), 1, &[]).await.unwrap();
    meta.link_blob(&repo("retainer/app"), &Digest::sha256(b"retain-other"), 1, &[]).await.unwrap();
    let config = Digest::sha256(b"retain-config");
    meta.link_blob(&r, &config, 5, &[]).await.unwrap();
    assert_eq!(meta.project_repositories("retain").await.unwrap(), ["retain/app", "retain/deep/er"]);

    let (old, child) =
        (manifest("retain-old", &[&config], None, None), manifest("retain-child", &[&config], None, None));
    meta.put_manifest(&r, old.clone(), &[tag("b-old"), tag("a-old")]).await.unwrap();
    meta.put_manifest(&r, child.clone(), &[]).await.unwrap();
    let mut index = manifest("retain-index", &[], None, None);
    index.manifest_refs = vec![child.digest.clone()];
    meta.put_manifest(&r, index.clone(), &[]).await.unwrap();
    let live_ref = manifest("retain-sig", &[&config], Some(&old.digest), Some("application/x-sig"));
    let gone = Digest::sha256(b"retain-never-pushed");
    let dangling = manifest("retain-dangling", &[&config], Some(&gone), Some("application/x-sig"));
    meta.put_manifest(&r, live_ref.clone(), &[]).await.unwrap();
    meta.put_manifest(&r, dangling.clone(), &[]).await.unwrap();
    // Push times are whole seconds: the next push is a later one.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let new = manifest("retain-new", &[&config], None, None);
    meta.put_manifest(&r, new.clone(), &[tag("new")]).await.unwrap();
    meta.record_pulls(&[crate::PullTally { repo: r.to_string(), tag: Some("a-old".into()), count: 2, at: 1234 }])
        .await
        .unwrap();

    let tags = meta.retention_tags(&r).await.unwrap();
    let names: Vec<&str> = tags.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["new", "a-old", "b-old"], "newest push first, ties by name");
    assert!(tags[0].pushed_at > tags[1].pushed_at);
    assert_eq!((tags[1].digest.as_str(), tags[1].last_pulled_at), (old.digest.as_str(), Some(1234)));
    assert_eq!(tags[2].last_pulled_at, None);
    assert!(meta.retention_tags(&repo("retain/none")).await.unwrap().is_empty());

    let later = crate::now_unix() + 10;
    let mut expected: Vec<String> = [&old, &index, &dangling, &new].iter().map(|m| m.digest.to_string()).collect();
    expected.sort();
    assert_eq!(meta.retention_manifests(&r, later).await.unwrap(), expected);
    let before_new = tags[0].pushed_at;
    let older = meta.retention_manifests(&r, before_new).await.unwrap();
    assert!(!older.contains(&new.digest.to_string()) && older.contains(&old.digest.to_string()));
    assert!(meta.retention_manifests(&r, 0).await.unwrap().is_empty());
}
