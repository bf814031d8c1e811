//! Project quotas against a real server: exact accounting after pushes, mounts,
//! deletes and garbage collection; hard limits refuse with 403 `DENIED`
//! (before the bytes when their size is known); the soft limit warns.

use berth_testkit::{BerthProcess, Blob, ImageFixture};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::common::{blob_files, client, push_blob, push_image, put_manifest};

const BIN: &str = env!("CARGO_BIN_EXE_berth");
const OCI_MANIFEST: &str = berth_core::media_type::OCI_MANIFEST;

async fn usage(c: &Client, base: &str) -> Value {
    let r = c.get(format!("{base}/api/v1/projects/q/quota")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn set_limits(c: &Client, base: &str, limits: Value) -> reqwest::Response {
    c.put(format!("{base}/api/v1/projects/q/quota")).json(&limits).send().await.unwrap()
}

async fn assert_denied(r: reqwest::Response, quota: &str) {
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
    assert_eq!(body["errors"][0]["detail"]["reason"], "QUOTA_EXCEEDED", "{body}");
    assert_eq!(body["errors"][0]["detail"]["quota"], quota, "{body}");
}

async fn collect(c: &Client, base: &str) {
    let r = c.post(format!("{base}/api/v1/system/gc")).json(&json!({"grace_seconds": 0})).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["run_id"].clone();
    for _ in 0..600 {
        let s: Value = c.get(format!("{base}/api/v1/system/gc")).send().await.unwrap().json().await.unwrap();
        if s["runs"].as_array().unwrap().iter().any(|r| r["id"] == id && r["state"] == "finished") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("collection did not finish");
}

#[tokio::test]
async fn quotas_account_exactly_and_refuse_past_hard_limits() {
    let berth = BerthProcess::start_with_env(BIN, &[], &[("BERTH_GC__INTERVAL", "off")]);
    let (c, base) = (client(), berth.url());
    let image = ImageFixture::new(31, &[3000]);
    let image_bytes: i64 = image.blobs().map(|b| b.data.len() as i64).sum();
    push_image(&c, &base, "q/a", &image, "v1").await;
    let u = usage(&c, &base).await;
    assert_eq!(
        u["usage"],
        json!({"physical_bytes": image_bytes, "logical_bytes": image_bytes, "repositories": 1, "tags": 1})
    );
    assert_eq!(u["limits"]["storage_bytes"], Value::Null);

    // Bad limits are refused.
    for bad in
        [json!({"storage_bytes": -1}), json!({"storage_bytes": 10, "storage_soft_bytes": 11}), json!({"disk": 1})]
    {
        assert_eq!(set_limits(&c, &base, bad.clone()).await.status(), 400, "{bad}");
    }
    let hard = image_bytes + 6000;
    let soft = image_bytes + 4000;
    let r =
        set_limits(&c, &base, json!({"storage_bytes": hard, "storage_soft_bytes": soft, "repositories": 2, "tags": 3}))
            .await;
    assert_eq!(r.status(), 200);

    // A mount into a second repository costs logical bytes, not physical ones.
    let layer = &image.layers[0];
    let r = c.post(format!("{base}/v2/q/b/blobs/uploads/?mount={}&from=q/a", layer.digest)).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let u = usage(&c, &base).await;
    assert_eq!(u["usage"]["physical_bytes"], image_bytes);
    assert_eq!(u["usage"]["logical_bytes"], image_bytes + 3000);
    assert_eq!(u["usage"]["repositories"], 2);

    // Crossing the soft limit warns on the push that crosses it, and after.
    let big = Blob::random(5000, 32);
    let r = c.post(format!("{base}/v2/q/a/blobs/uploads/?digest={}", big.digest)).body(big.data.clone()).send();
    let r = r.await.unwrap();
    assert_eq!(r.status(), 201);
    let warning = r.headers().get("x-berth-quota-warning").expect("a soft-limit warning").to_str().unwrap();
    assert!(warning.contains("soft limit"), "{warning}");
    assert_eq!(usage(&c, &base).await["soft_limit_exceeded"], true);

    // A monolithic push past the hard limit is refused before its bytes are read.
    let too_big = Blob::random(2000, 33);
    let r = c.post(format!("{base}/v2/q/a/blobs/uploads/?digest={}", too_big.digest)).body(too_big.data.clone());
    assert_denied(r.send().await.unwrap(), "storage").await;
    // So is a chunk whose Content-Length would pass it.
    let r = c.post(format!("{base}/v2/q/a/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let r = c
        .patch(format!("{base}{location}"))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("0-{}", too_big.data.len() - 1))
        .body(too_big.data.clone())
        .send()
        .await
        .unwrap();
    assert_denied(r, "storage").await;
    // A streamed upload (no length known) is refused when it would be linked,
    // and its bytes go with the next collection.
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(too_big.data.clone())]);
    let r = c
        .post(format!("{base}/v2/q/a/blobs/uploads/?digest={}", too_big.digest))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_denied(r, "storage").await;
    let u = usage(&c, &base).await;
    assert_eq!(u["usage"]["physical_bytes"], image_bytes + 5000, "refusals cost nothing");
    // The collector takes the refused bytes, the blob no manifest uses and the mount.
    collect(&c, &base).await;
    let stored: std::collections::BTreeSet<String> = blob_files(berth.data_dir()).into_iter().map(|(_, h)| h).collect();
    assert_eq!(stored, image.blobs().map(|b| b.digest.encoded().to_owned()).collect());
    let u = usage(&c, &base).await;
    assert_eq!(u["usage"]["physical_bytes"], image_bytes);
    assert_eq!(u["usage"]["logical_bytes"], image_bytes);
    assert_eq!(u["soft_limit_exceeded"], false);

    // Repository and tag limits.
    let other = ImageFixture::new(34, &[10]);
    let r = c.post(format!("{base}/v2/q/c/blobs/uploads/?digest={}", other.layers[0].digest));
    assert_denied(r.body(other.layers[0].data.clone()).send().await.unwrap(), "repositories").await;
    for tag in ["v2", "v3"] {
        let r = put_manifest(&c, &base, "q/a", tag, OCI_MANIFEST, image.manifest.clone()).await;
        assert_eq!(r.status(), 201);
    }
    assert_denied(put_manifest(&c, &base, "q/a", "v4", OCI_MANIFEST, image.manifest.clone()).await, "tags").await;
    // Moving an existing tag is not a new one.
    let r = put_manifest(&c, &base, "q/a", "v3", OCI_MANIFEST, image.manifest.clone()).await;
    assert_eq!(r.status(), 201);
    assert_eq!(usage(&c, &base).await["usage"]["tags"], 3);

    // Deletes and collection give back exactly what they free.
    for tag in ["v1", "v2", "v3"] {
        assert_eq!(c.delete(format!("{base}/v2/q/a/manifests/{tag}")).send().await.unwrap().status(), 202);
    }
    collect(&c, &base).await;
    let u = usage(&c, &base).await;
    assert_eq!(u["usage"], json!({"physical_bytes": 0, "logical_bytes": 0, "repositories": 2, "tags": 0}), "{u}");
    assert_eq!(u["soft_limit_exceeded"], false);
    assert!(blob_files(berth.data_dir()).is_empty());

    // Under the limits again, pushes work.
    push_image(&c, &base, "q/a", &image, "v1").await;
    push_blob(&c, &base, "q/b", &other.layers[0]).await;
    assert_eq!(usage(&c, &base).await["usage"]["tags"], 1);
}

const ADMIN_PASSWORD: &str = "quota-Admin-password-1";

#[tokio::test]
async fn only_admins_set_quotas_and_members_read_them() {
    let berth = BerthProcess::start_with_auth(BIN, ADMIN_PASSWORD, &[]);
    let (c, base) = (client(), berth.url());
    let login = |user: &'static str, password: &'static str| crate::common::login(&c, &base, user, password);
    let admin = login("admin", ADMIN_PASSWORD).await;
    let r = c
        .post(format!("{base}/api/v1/users"))
        .bearer_auth(&admin)
        .json(&json!({"username": "plain", "password": "password-plain-1", "email": "plain@x.org"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let image = ImageFixture::new(35, &[16]);
    for blob in image.blobs() {
        let r = c
            .post(format!("{base}/v2/q/app/blobs/uploads/?digest={}", blob.digest))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .body(blob.data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let plain = login("plain", "password-plain-1").await;
    let url = format!("{base}/api/v1/projects/q/quota");
    assert_eq!(c.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(c.get(&url).bearer_auth(&plain).send().await.unwrap().status(), 404, "not a member: no such project");
    let limits = json!({"storage_bytes": 1000});
    assert_eq!(c.put(&url).bearer_auth(&plain).json(&limits).send().await.unwrap().status(), 403);
    let r = c.put(&url).bearer_auth(&admin).json(&limits).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(&url).bearer_auth(&admin).send().await.unwrap();
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["limits"]["storage_bytes"], 1000);
    assert_eq!(view["usage"]["repositories"], 1);
    let unknown = format!("{base}/api/v1/projects/nope/quota");
    assert_eq!(c.get(&unknown).bearer_auth(&admin).send().await.unwrap().status(), 404);
}
