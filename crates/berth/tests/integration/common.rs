//! Shared helpers for the integration tests.

use berth_testkit::{BerthProcess, Blob, ImageFixture};
use reqwest::{Client, Response, StatusCode};

/// Starts a fresh berth with an empty data dir.
pub fn start() -> BerthProcess {
    BerthProcess::start(env!("CARGO_BIN_EXE_berth"))
}

pub fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Pushes a blob with one monolithic POST; panics unless 201.
pub async fn push_blob(c: &Client, base: &str, repo: &str, blob: &Blob) {
    let r = c
        .post(format!(
            "{base}/v2/{repo}/blobs/uploads/?digest={}",
            blob.digest
        ))
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
    let r = put_manifest(
        c,
        base,
        repo,
        reference,
        berth_core::media_type::OCI_MANIFEST,
        image.manifest.clone(),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "push manifest: {:?}",
        r.text().await
    );
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
    body["errors"][0]["code"]
        .as_str()
        .expect("errors[0].code")
        .to_owned()
}
