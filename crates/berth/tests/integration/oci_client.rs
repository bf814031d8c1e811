//! Round trips through the `oci-client` crate, the way Rust tooling talks to registries.

use berth_testkit::ImageFixture;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::common;

fn oci() -> Client {
    Client::new(ClientConfig { protocol: ClientProtocol::Http, ..Default::default() })
}

#[tokio::test]
async fn push_and_pull_an_image_with_oci_client() {
    let server = common::start();
    let fixture = ImageFixture::new(7, &[1024, 3 * 1024 * 1024 + 17]);
    let reference: Reference = format!("{}/clients/oci-client:v1", server.addr).parse().unwrap();
    let client = oci();
    let layers: Vec<ImageLayer> = fixture
        .layers
        .iter()
        .map(|l| ImageLayer::new(l.data.clone(), "application/vnd.oci.image.layer.v1.tar".into(), None))
        .collect();
    let config = Config::new(fixture.config.data.clone(), "application/vnd.oci.image.config.v1+json".into(), None);
    let manifest = OciImageManifest::build(&layers, &config, None);
    let pushed =
        client.push(&reference, &layers, config, &RegistryAuth::Anonymous, Some(manifest)).await.expect("push");
    assert!(pushed.manifest_url.contains("/v2/clients/oci-client/manifests/"));

    let image = client
        .pull(&reference, &RegistryAuth::Anonymous, vec!["application/vnd.oci.image.layer.v1.tar"])
        .await
        .expect("pull");
    assert_eq!(image.layers.len(), 2);
    // oci-client fetches layers concurrently; compare them in manifest order by digest.
    for original in &fixture.layers {
        let pulled = image.layers.iter().find(|l| l.sha256_digest() == original.digest.as_str());
        assert_eq!(pulled.map(|l| l.data.as_ref()), Some(original.data.as_slice()), "layer bytes round-trip");
    }
    assert_eq!(image.config.data.as_ref(), fixture.config.data.as_slice());
    let digest = image.digest.expect("pull reports the manifest digest");
    let (_, fetched_digest) = client.pull_manifest(&reference, &RegistryAuth::Anonymous).await.expect("manifest");
    assert_eq!(digest, fetched_digest);
    let tags = client.list_tags(&reference, &RegistryAuth::Anonymous, None, None).await.expect("tags");
    assert_eq!(tags.tags, vec!["v1"]);
}

#[tokio::test]
async fn oci_client_mounts_blobs_across_repositories() {
    let server = common::start();
    let c = common::client();
    let fixture = ImageFixture::new(8, &[2048]);
    common::push_image(&c, &server.url(), "team/source", &fixture, "v1").await;
    let source: Reference = format!("{}/team/source:v1", server.addr).parse().unwrap();
    let target: Reference = format!("{}/team/target:v1", server.addr).parse().unwrap();
    let client = oci();
    client.auth(&target, &RegistryAuth::Anonymous, oci_client::RegistryOperation::Push).await.ok();
    client.mount_blob(&target, &source, fixture.layers[0].digest.as_str()).await.expect("mount");
    let r = c.head(format!("{}/v2/team/target/blobs/{}", server.url(), fixture.layers[0].digest)).send().await.unwrap();
    assert_eq!(r.status(), 200, "mounted blob is visible in the target repository");
}
