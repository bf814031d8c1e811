//! The OCI Distribution protocol over raw HTTP: the flows and headers real
//! clients depend on.

use berth_core::media_type::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use berth_core::{Algorithm, Digest};
use berth_testkit::fixtures::index;
use berth_testkit::{Blob, ImageFixture};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{self, client, error_code, push_blob, push_image, put_manifest};

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// PATCHes bytes `start..=end` of `data` to the upload session at `url` with their Content-Range.
async fn patch_range(c: &reqwest::Client, url: &str, data: &[u8], start: usize, end: usize) -> reqwest::Response {
    c.patch(url)
        .header("content-range", format!("{start}-{end}"))
        .header("content-type", "application/octet-stream")
        .body(data[start..=end].to_vec())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn base_ping_and_health() {
    let server = common::start();
    let c = client();
    let r = c.get(format!("{}/v2/", server.url())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-distribution-api-version"), "registry/2.0");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["registry"], "berth");
    let r = c.get(format!("{}/v2/_ping", server.url())).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "OK"}));
    let r = c.get(format!("{}/health", server.url())).send().await.unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["success"], true);
    assert_eq!(body["data"]["status"], "healthy");
    let r = c.get(format!("{}/api/version", server.url())).send().await.unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["success"], true);
    assert_eq!(body["data"]["version"], env!("CARGO_PKG_VERSION"));
    let full = body["data"]["full_version"].as_str().unwrap();
    assert!(full.starts_with(&format!("{} (", env!("CARGO_PKG_VERSION"))) && full.contains(" @ "), "{full}");
}

#[tokio::test]
async fn chunked_upload_reports_progress_and_completes() {
    let server = common::start();
    let c = client();
    let base = server.url();
    let blob = Blob::random(300_000, 1);
    let r = c.post(format!("{base}/v2/up/chunked/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-0");
    let uuid = header(&r, "docker-upload-uuid").to_owned();
    let mut location = header(&r, "location").to_owned();
    assert_eq!(location, format!("/v2/up/chunked/blobs/uploads/{uuid}"));
    for (start, end) in [(0usize, 99_999usize), (100_000, 199_999)] {
        let r = patch_range(&c, &format!("{base}{location}"), &blob.data, start, end).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&r, "range"), format!("0-{end}"));
        location = header(&r, "location").to_owned();
    }
    let r = c.get(format!("{base}{location}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), "0-199999");
    // Not visible until completed.
    let r = c.head(format!("{base}/v2/up/chunked/blobs/{}", blob.digest)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // Last chunk carried by the closing PUT.
    let r = c
        .put(format!("{base}{location}?digest={}", blob.digest))
        .header("content-range", "200000-299999")
        .body(blob.data[200_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/up/chunked/blobs/{}", blob.digest));
    assert_eq!(header(&r, "docker-content-digest"), blob.digest.as_str());
    let got = c.get(format!("{base}/v2/up/chunked/blobs/{}", blob.digest)).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), blob.data.as_slice());
    // A completed session is gone.
    let r = c.get(format!("{base}{location}")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn an_upload_session_answers_only_under_its_own_repository() {
    let server = common::start();
    let c = client();
    let base = server.url();
    let blob = Blob::random(200_000, 7);
    let r = c.post(format!("{base}/v2/up/mine/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let uuid = header(&r, "docker-upload-uuid").to_owned();
    let patch = |repo: &str, start: usize, end: usize| {
        let url = format!("{base}/v2/{repo}/blobs/uploads/{uuid}");
        let (c, data) = (&c, &blob.data);
        async move { patch_range(c, &url, data, start, end).await }
    };
    let r = patch("up/mine", 0, 99_999).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // The session this process holds is not found through another repository,
    // for a status, a chunk or a completion.
    let r = c.get(format!("{base}/v2/up/other/blobs/uploads/{uuid}")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    let r = patch("up/other", 100_000, 199_999).await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    let r = c.put(format!("{base}/v2/up/other/blobs/uploads/{uuid}?digest={}", blob.digest)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // Under its own repository it goes on where it stood.
    let r = c.get(format!("{base}/v2/up/mine/blobs/uploads/{uuid}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), "0-99999");
    let r = patch("up/mine", 100_000, 199_999).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = c.put(format!("{base}/v2/up/mine/blobs/uploads/{uuid}?digest={}", blob.digest)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c.head(format!("{base}/v2/up/other/blobs/{}", blob.digest)).send().await.unwrap();
    assert_eq!(r.status(), 404, "nothing landed in the other repository");
}

#[tokio::test]
async fn streamed_patch_with_chunked_transfer_encoding() {
    let server = common::start();
    let c = client();
    let base = server.url();
    let blob = Blob::random(5 * 1024 * 1024 + 3, 2);
    let r = c.post(format!("{base}/v2/up/stream/blobs/uploads/")).send().await.unwrap();
    let location = header(&r, "location").to_owned();
    let parts: Vec<Result<Vec<u8>, std::io::Error>> = blob.data.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(parts));
    let r = c.patch(format!("{base}{location}")).body(body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), format!("0-{}", blob.data.len() - 1));
    let location = header(&r, "location").to_owned();
    let r = c.put(format!("{base}{location}?digest={}", blob.digest)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c.head(format!("{base}/v2/up/stream/blobs/{}", blob.digest)).send().await.unwrap();
    assert_eq!(header(&r, "content-length"), blob.data.len().to_string());
}

#[tokio::test]
async fn sha512_uploads_via_digest_algorithm() {
    let server = common::start();
    let c = client();
    let base = server.url();
    let data = b"sha512 content".to_vec();
    let digest = Digest::compute(Algorithm::Sha512, &data);
    let r = c.post(format!("{base}/v2/up/sha512/blobs/uploads/?digest-algorithm=sha512")).send().await.unwrap();
    let location = header(&r, "location").to_owned();
    let r = c.put(format!("{base}{location}?digest={digest}")).body(data.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c.get(format!("{base}/v2/up/sha512/blobs/{digest}")).send().await.unwrap();
    assert_eq!(header(&r, "docker-content-digest"), digest.as_str());
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());
    // A sha256 session closed with a sha512 digest is re-hashed and verified.
    let r = c.post(format!("{base}/v2/up/sha512/blobs/uploads/")).send().await.unwrap();
    let location = header(&r, "location").to_owned();
    let other = b"other".to_vec();
    let d512 = Digest::compute(Algorithm::Sha512, &other);
    let r = c.put(format!("{base}{location}?digest={d512}")).body(other).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn ranges_return_partial_content() {
    let server = common::start();
    let c = client();
    let base = server.url();
    let blob = Blob::random(2048, 3);
    push_blob(&c, &base, "dl/range", &blob).await;
    let url = format!("{base}/v2/dl/range/blobs/{}", blob.digest);
    for (range, start, end) in [("bytes=500-1499", 500, 1499), ("bytes=500-", 500, 2047), ("bytes=-500", 1548, 2047)] {
        let r = c.get(&url).header("range", range).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(header(&r, "content-range"), format!("bytes {start}-{end}/2048"));
        assert_eq!(header(&r, "content-length"), (end - start + 1).to_string());
        assert_eq!(r.bytes().await.unwrap().as_ref(), &blob.data[start..=end]);
    }
    let r = c.get(&url).header("range", "bytes=5000-6000").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&r, "content-range"), "bytes */2048");
    let r = c.head(&url).send().await.unwrap();
    assert_eq!(header(&r, "accept-ranges"), "bytes");
    assert_eq!(header(&r, "content-length"), "2048");
}

#[tokio::test]
async fn mounts_blobs_between_repositories() {
    let server = common::start();
    let c = client();
    let base = server.url();
    let blob = Blob::random(1000, 4);
    push_blob(&c, &base, "mnt/src", &blob).await;
    let r =
        c.post(format!("{base}/v2/mnt/dst/blobs/uploads/?mount={}&from=mnt/src", blob.digest)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/mnt/dst/blobs/{}", blob.digest));
    // From a repository that does not have it: a fresh session instead.
    let r = c
        .post(format!("{base}/v2/mnt/dst2/blobs/uploads/?mount={}&from=mnt/nothing", blob.digest))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(header(&r, "location").starts_with("/v2/mnt/dst2/blobs/uploads/"));
    // Automatic mount without `from`.
    let r = c.post(format!("{base}/v2/mnt/auto/blobs/uploads/?mount={}", blob.digest)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let missing = Digest::sha256(b"never pushed");
    let r = c.post(format!("{base}/v2/mnt/auto/blobs/uploads/?mount={missing}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // Deleting from one repository leaves the others alone.
    let r = c.delete(format!("{base}/v2/mnt/dst/blobs/{}", blob.digest)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = c.head(format!("{base}/v2/mnt/dst/blobs/{}", blob.digest)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = c.head(format!("{base}/v2/mnt/src/blobs/{}", blob.digest)).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn manifests_are_served_byte_for_byte() {
    let server = common::start();
    let c = client();
    let base = server.url();
    let image = ImageFixture::new(10, &[100, 200]);
    push_image(&c, &base, "m/app", &image, "v1").await;
    for reference in ["v1".to_owned(), image.digest.to_string()] {
        let r = c.get(format!("{base}/v2/m/app/manifests/{reference}")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&r, "docker-content-digest"), image.digest.as_str());
        assert_eq!(header(&r, "content-length"), image.manifest.len().to_string());
        assert_eq!(r.bytes().await.unwrap().as_ref(), image.manifest.as_slice());
        let r = c.head(format!("{base}/v2/m/app/manifests/{reference}")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-length"), image.manifest.len().to_string());
    }
    // Docker schema 2 and manifest lists keep their media types.
    let docker = String::from_utf8(image.manifest.clone()).unwrap().replace(OCI_MANIFEST, DOCKER_MANIFEST);
    let r = put_manifest(&c, &base, "m/app", "docker", DOCKER_MANIFEST, docker.clone().into_bytes()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let docker_digest = Digest::sha256(docker.as_bytes());
    let list = String::from_utf8(index(&[(&docker_digest, docker.len())]))
        .unwrap()
        .replace(OCI_INDEX, DOCKER_MANIFEST_LIST)
        .replace(OCI_MANIFEST, DOCKER_MANIFEST);
    let r = put_manifest(&c, &base, "m/app", "list", DOCKER_MANIFEST_LIST, list.into_bytes()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c.head(format!("{base}/v2/m/app/manifests/list")).send().await.unwrap();
    assert_eq!(header(&r, "content-type"), DOCKER_MANIFEST_LIST);
}

#[tokio::test]
async fn tags_move_delete_and_paginate() {
    let server = common::start();
    let c = client();
    let base = server.url();
    let one = ImageFixture::new(20, &[10]);
    let two = ImageFixture::new(21, &[10]);
    push_image(&c, &base, "t/app", &one, "latest").await;
    push_image(&c, &base, "t/app", &two, "latest").await;
    let r = c.head(format!("{base}/v2/t/app/manifests/latest")).send().await.unwrap();
    assert_eq!(header(&r, "docker-content-digest"), two.digest.as_str(), "re-push moves the tag");
    // Several tags in one push by digest (OCI-Tag).
    let r = c
        .put(format!("{base}/v2/t/app/manifests/{}?tag=b&tag=a&tag=c", one.digest))
        .header("content-type", OCI_MANIFEST)
        .body(one.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "oci-tag"), "b, a, c");
    let tags =
        |r: Value| r["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let r = c.get(format!("{base}/v2/t/app/tags/list")).send().await.unwrap();
    assert_eq!(tags(r.json().await.unwrap()), ["a", "b", "c", "latest"]);
    let r = c.get(format!("{base}/v2/t/app/tags/list?n=2")).send().await.unwrap();
    assert_eq!(header(&r, "link"), "</v2/t/app/tags/list?n=2&last=b>; rel=\"next\"");
    assert_eq!(tags(r.json().await.unwrap()), ["a", "b"]);
    let r = c.get(format!("{base}/v2/t/app/tags/list?n=2&last=b")).send().await.unwrap();
    assert_eq!(header(&r, "link"), "");
    assert_eq!(tags(r.json().await.unwrap()), ["c", "latest"]);
    let r = c.get(format!("{base}/v2/t/app/tags/list?n=0")).send().await.unwrap();
    assert_eq!(header(&r, "link"), "");
    assert!(tags(r.json().await.unwrap()).is_empty());
    // Deleting a tag keeps the manifest; deleting the manifest drops its tags.
    let r = c.delete(format!("{base}/v2/t/app/manifests/a")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = c.get(format!("{base}/v2/t/app/manifests/{}", one.digest)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.delete(format!("{base}/v2/t/app/manifests/{}", one.digest)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = c.get(format!("{base}/v2/t/app/tags/list")).send().await.unwrap();
    assert_eq!(tags(r.json().await.unwrap()), ["latest"]);
    let r = c.get(format!("{base}/v2/t/app/manifests/b")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn catalog_paginates_with_link() {
    let server = common::start();
    let c = client();
    let base = server.url();
    let blob = Blob::new(b"x".to_vec());
    for repo in ["cat/c", "cat/a", "cat/b"] {
        push_blob(&c, &base, repo, &blob).await;
    }
    let r = c.get(format!("{base}/v2/_catalog?n=2")).send().await.unwrap();
    assert_eq!(header(&r, "link"), "</v2/_catalog?n=2&last=cat%2Fb>; rel=\"next\"");
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"repositories": ["cat/a", "cat/b"]}));
    let r = c.get(format!("{base}/v2/_catalog?n=2&last=cat%2Fb")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"repositories": ["cat/c"]}));
}

#[tokio::test]
async fn referrers_list_and_filter_by_artifact_type() {
    let server = common::start();
    let c = client();
    let base = server.url();
    let subject = ImageFixture::new(30, &[10]);
    let sig = ImageFixture::artifact(31, "application/vnd.example.sig", &subject.digest, subject.manifest.len());
    let sbom = ImageFixture::artifact(32, "application/vnd.example.sbom", &subject.digest, subject.manifest.len());
    // Referrers may be pushed before their subject.
    for art in [&sig, &sbom] {
        for blob in art.blobs() {
            push_blob(&c, &base, "r/app", blob).await;
        }
        let r = put_manifest(&c, &base, "r/app", art.digest.as_str(), OCI_MANIFEST, art.manifest.clone()).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(header(&r, "oci-subject"), subject.digest.as_str());
    }
    push_image(&c, &base, "r/app", &subject, "v1").await;
    let r = c.get(format!("{base}/v2/r/app/referrers/{}", subject.digest)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), OCI_INDEX);
    assert_eq!(header(&r, "oci-filters-applied"), "");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["schemaVersion"], 2);
    let entries = body["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let sig_entry = entries.iter().find(|e| e["digest"] == sig.digest.as_str()).unwrap();
    assert_eq!(sig_entry["artifactType"], "application/vnd.example.sig");
    assert_eq!(sig_entry["size"], sig.manifest.len());
    assert_eq!(sig_entry["annotations"]["org.example.seed"], "31");
    let r = c
        .get(format!("{base}/v2/r/app/referrers/{}?artifactType=application/vnd.example.sbom", subject.digest))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(body["manifests"][0]["digest"], sbom.digest.as_str());
    // No referrers (even in an unknown repository): an empty index, never 404.
    let r = c.get(format!("{base}/v2/r/none/referrers/{}", subject.digest)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["manifests"], json!([]));
}

#[tokio::test]
async fn deletes_can_be_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, "[registry]\ndeletes_enabled = false\n").unwrap();
    let server =
        berth_testkit::BerthProcess::start_with(env!("CARGO_BIN_EXE_berth"), &["--config", config.to_str().unwrap()]);
    let c = client();
    let base = server.url();
    let image = ImageFixture::new(40, &[10]);
    push_image(&c, &base, "d/app", &image, "v1").await;
    for url in [
        format!("{base}/v2/d/app/manifests/v1"),
        format!("{base}/v2/d/app/manifests/{}", image.digest),
        format!("{base}/v2/d/app/blobs/{}", image.config.digest),
    ] {
        let r = c.delete(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{url}");
        assert_eq!(error_code(r).await, "UNSUPPORTED");
    }
    let r = c.get(format!("{base}/v2/d/app/manifests/v1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn index_requires_its_children() {
    let server = common::start();
    let c = client();
    let base = server.url();
    let amd = ImageFixture::new(50, &[10]);
    let arm = ImageFixture::new(51, &[10]);
    let idx = index(&[(&amd.digest, amd.manifest.len()), (&arm.digest, arm.manifest.len())]);
    push_image(&c, &base, "i/app", &amd, amd.digest.as_str()).await;
    let r = put_manifest(&c, &base, "i/app", "multi", OCI_INDEX, idx.clone()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(body["errors"][0]["detail"]["digest"], arm.digest.as_str());
    push_image(&c, &base, "i/app", &arm, arm.digest.as_str()).await;
    let r = put_manifest(&c, &base, "i/app", "multi", OCI_INDEX, idx.clone()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c.get(format!("{base}/v2/i/app/manifests/multi")).send().await.unwrap();
    assert_eq!(header(&r, "content-type"), OCI_INDEX);
    assert_eq!(r.bytes().await.unwrap().as_ref(), idx.as_slice());
}
