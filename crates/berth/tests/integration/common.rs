//! Shared helpers for the integration tests.

use berth_testkit::{BerthProcess, Blob, ImageFixture};
use reqwest::{Client, Response, StatusCode};

/// Starts a fresh berth with an empty data dir.
pub fn start() -> BerthProcess {
    BerthProcess::start(env!("CARGO_BIN_EXE_berth"))
}

pub fn client() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// Pushes a blob with one monolithic POST; panics unless 201.
pub async fn push_blob(c: &Client, base: &str, repo: &str, blob: &Blob) {
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={}", blob.digest))
        .header("content-type", "application/octet-stream")
        .body(blob.data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "push blob {}", blob.digest);
}

/// Pushes every blob of `image` and then its manifest under `reference`.
pub async fn push_image(c: &Client, base: &str, repo: &str, image: &ImageFixture, reference: &str) {
    for blob in image.blobs() {
        push_blob(c, base, repo, blob).await;
    }
    let r = put_manifest(c, base, repo, reference, berth_core::media_type::OCI_MANIFEST, image.manifest.clone()).await;
    assert_eq!(r.status(), StatusCode::CREATED, "push manifest: {:?}", r.text().await);
}

pub async fn put_manifest(
    c: &Client,
    base: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: Vec<u8>,
) -> Response {
    c.put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", media_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The first error code of an OCI error body.
pub async fn error_code(r: Response) -> String {
    let body: serde_json::Value = r.json().await.expect("error body is JSON");
    body["errors"][0]["code"].as_str().expect("errors[0].code").to_owned()
}

/// Lowercase hex SHA-256 of `data`, computed independently of berth.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

/// Every committed blob file under `<data_dir>/blobs`, as (path, hex file name).
/// Panics on anything not laid out as `blobs/sha256/<first 2 hex>/<64 hex>`.
pub fn blob_files(data_dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let is_hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let mut files = Vec::new();
    for alg in std::fs::read_dir(data_dir.join("blobs")).expect("blobs/") {
        let alg = alg.unwrap();
        assert_eq!(alg.file_name(), "sha256", "unexpected entry {:?} in blobs/", alg.path());
        for prefix in std::fs::read_dir(alg.path()).unwrap() {
            let prefix = prefix.unwrap();
            let p = prefix.file_name().into_string().unwrap();
            assert!(p.len() == 2 && is_hex(&p), "unexpected directory {:?}", prefix.path());
            for file in std::fs::read_dir(prefix.path()).unwrap() {
                let file = file.unwrap();
                let name = file.file_name().into_string().unwrap();
                assert!(
                    name.len() == 64 && is_hex(&name) && name.starts_with(&p) && file.file_type().unwrap().is_file(),
                    "unexpected file {:?} in blobs/",
                    file.path()
                );
                files.push((file.path(), name));
            }
        }
    }
    files
}

/// Logs `user` in and returns the session JWT.
pub async fn login(c: &Client, base: &str, user: &str, password: &str) -> String {
    let r = c
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "login {user}");
    r.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
}
