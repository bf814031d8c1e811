//! Small-request rates: manifest GET by tag and by digest, and blob HEAD.

use std::sync::Arc;

use http::{Method, StatusCode, header};

use crate::cli::RateArgs;
use crate::client::{self, Target};
use crate::oci::Image;
use crate::rate::{self, MakeRequest};
use crate::report::Report;

/// What a client such as docker or containerd sends in `Accept`.
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// Tag the measured image is pushed under.
pub const TAG: &str = "latest";

/// Pushes `image` to `repo` as `latest`.
pub async fn prepare(target: &Arc<Target>, repo: &str, image: &Image) -> anyhow::Result<()> {
    let mut conn = target.connect().await?;
    image.push(&mut conn, repo, TAG).await
}

/// `manifest.tag.cN.*` and `manifest.digest.cN.*`.
pub async fn measure_get(
    target: &Arc<Target>,
    report: &mut Report,
    repo: &str,
    image: &Image,
    args: &RateArgs,
) -> anyhow::Result<()> {
    report.param("manifest_bytes", image.manifest.len());
    for (kind, reference) in [("tag", TAG.to_owned()), ("digest", image.digest.as_str().to_owned())] {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let make: MakeRequest = Arc::new(move |conn| {
            conn.request(Method::GET, &path)
                .header(header::ACCEPT, ACCEPT_MANIFESTS)
                .body(client::empty())
                .expect("valid request")
        });
        rate::measure(target, report, &format!("manifest.{kind}"), args, make, StatusCode::OK).await?;
    }
    Ok(())
}

/// `blob_head.cN.*`: HEAD of the image's layer blob.
pub async fn measure_head(
    target: &Arc<Target>,
    report: &mut Report,
    repo: &str,
    image: &Image,
    args: &RateArgs,
) -> anyhow::Result<()> {
    let layer = berth_core::Digest::sha256(&image.layer);
    let path = format!("/v2/{repo}/blobs/{}", layer.as_str());
    let make: MakeRequest =
        Arc::new(move |conn| conn.request(Method::HEAD, &path).body(client::empty()).expect("valid request"));
    rate::measure(target, report, "blob_head", args, make, StatusCode::OK).await
}
