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
