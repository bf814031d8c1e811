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
    }
}

/// Runs every check against `meta`, which must be empty. Panics on the first violation.
pub async fn run_all(meta: &dyn Metadata) {
    blobs_are_visible_per_repository(meta).await;
    manifests_check_references_and_move_tags(meta).await;
    listings_paginate_bytewise(meta).await;
    referrers_filter_by_artifact_type(meta).await;
    uploads_round_trip(meta).await;
    leases_have_one_holder(meta).await;
    users_keep_an_admin(meta).await;
    projects_tokens_sessions_settings(meta).await;
    audit_entries_chain(meta).await;
    proxy_records(meta).await;
    totals_count_content(meta).await;
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
    meta.link_blob(&a, &d, 4).await.unwrap();
    meta.link_blob(&a, &d, 4).await.unwrap();
    assert!(meta.repo_exists(&a).await.unwrap(), "linking creates the repository");
    assert_eq!(meta.blob_in_repo(&a, &d).await.unwrap(), Some(4));
    assert_eq!(meta.blob_in_repo(&b, &d).await.unwrap(), None);
    assert_eq!(meta.find_blob(&d).await.unwrap(), Some(4));
    meta.link_blob(&b, &d, 4).await.unwrap();
    assert_eq!(meta.repos_with_blob(&d, 10).await.unwrap(), vec!["suite/a", "suite/b"]);
    assert_eq!(meta.repos_with_blob(&d, 1).await.unwrap(), vec!["suite/a"]);
    assert!(meta.unlink_blob(&a, &d).await.unwrap());
    assert!(!meta.unlink_blob(&a, &d).await.unwrap());
    assert_eq!(meta.blob_in_repo(&a, &d).await.unwrap(), None);
    assert_eq!(meta.blob_in_repo(&b, &d).await.unwrap(), Some(4), "other repositories keep it");
}

async fn manifests_check_references_and_move_tags(meta: &dyn Metadata) {
    let r = repo("suite/m");
    let config = Digest::sha256(b"config");
    let layer = Digest::sha256(b"layer");
    meta.link_blob(&r, &config, 6).await.unwrap();
    let m1 = manifest("m1", &[&config, &layer], None, None);
    match meta.put_manifest(&r, m1.clone(), &[tag("latest")]).await {
        Err(MetaError::MissingReferences(missing)) => assert_eq!(missing, vec![layer.clone()]),
        other => panic!("expected missing layer, got {other:?}"),
    }
    assert!(meta.manifest_by_digest(&r, &m1.digest, false).await.unwrap().is_none(), "nothing stored");
    meta.link_blob(&r, &layer, 5).await.unwrap();
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

    assert!(meta.delete_tag(&r, &tag("v1")).await.unwrap());
    assert!(!meta.delete_tag(&r, &tag("v1")).await.unwrap());
    assert!(meta.manifest_by_digest(&r, &m1.digest, false).await.unwrap().is_some(), "tag delete keeps manifest");
    meta.put_manifest(&r, m1.clone(), &[tag("v1")]).await.unwrap();
    assert!(meta.delete_manifest(&r, &m1.digest).await.unwrap());
    assert!(meta.manifest_by_tag(&r, &tag("v1"), false).await.unwrap().is_none(), "its tags go too");
    assert!(!meta.delete_manifest(&r, &m1.digest).await.unwrap());
    assert_eq!(meta.list_tags(&r, None, None).await.unwrap(), vec!["latest"]);
}

async fn listings_paginate_bytewise(meta: &dyn Metadata) {
    let r = repo("suite/tags");
    let config = Digest::sha256(b"c");
    meta.link_blob(&r, &config, 1).await.unwrap();
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
    meta.link_blob(&r, &config, 3).await.unwrap();
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
    let upload = NewUpload { id: "u-1".into(), repo: r.clone(), algorithm: Algorithm::Sha512, cursor: "c0".into() };
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
    meta.link_blob(&cached, &shared, 12).await.unwrap();
    meta.link_blob(&local, &shared, 12).await.unwrap();
    meta.link_blob(&cached, &only_cached, 12).await.unwrap();
    assert_eq!(meta.unlink_blob_in_project("mirror.example", only_cached.as_str()).await.unwrap(), 1);
    assert!(meta.forget_unlinked_blob(only_cached.as_str()).await.unwrap());
    assert_eq!(meta.delete_project_repositories("mirror.example").await.unwrap(), 1);
    assert!(!meta.repo_exists(&cached).await.unwrap());
    assert_eq!(meta.cached_tag("mirror.example/app", "v1").await.unwrap(), None);
    assert!(!meta.forget_unlinked_blob(shared.as_str()).await.unwrap(), "still linked in local/app");
    assert_eq!(meta.find_blob(&shared).await.unwrap(), Some(12));

    assert!(meta.delete_upstream("first").await.unwrap());
    assert!(meta.delete_upstream("second").await.unwrap());
    assert!(!meta.delete_upstream("second").await.unwrap());
}

async fn totals_count_content(meta: &dyn Metadata) {
    meta.ping().await.unwrap();
    let before = meta.registry_totals().await.unwrap();
    let (a, b) = (repo("suite/totals-a"), repo("suite/totals-b"));
    let shared = Digest::sha256(b"totals shared layer");
    let own = Digest::sha256(b"totals own layer");
    meta.link_blob(&a, &shared, 1000).await.unwrap();
    meta.link_blob(&b, &shared, 1000).await.unwrap();
    meta.link_blob(&b, &own, 24).await.unwrap();
    meta.put_manifest(&a, manifest("totals-a", &[&shared], None, None), &[tag("v1"), tag("latest")]).await.unwrap();
    meta.put_manifest(&b, manifest("totals-b", &[&shared, &own], None, None), &[tag("v1")]).await.unwrap();
    let after = meta.registry_totals().await.unwrap();
    assert_eq!(after.repositories - before.repositories, 2);
    assert_eq!(after.tags - before.tags, 3, "repo:tag pairs");
    assert_eq!(after.manifests - before.manifests, 2);
    assert_eq!(after.blobs - before.blobs, 2, "a blob in two repositories counts once");
    assert_eq!(after.blob_bytes - before.blob_bytes, 1024);
    // A blob no repository can see any more no longer counts.
    meta.delete_manifest(&b, &Digest::sha256(b"totals-b")).await.unwrap();
    assert!(meta.unlink_blob(&b, &own).await.unwrap());
    let unlinked = meta.registry_totals().await.unwrap();
    assert_eq!((unlinked.blobs - before.blobs, unlinked.blob_bytes - before.blob_bytes), (1, 1000));
    assert_eq!((unlinked.tags - before.tags, unlinked.manifests - before.manifests), (2, 1));
}
