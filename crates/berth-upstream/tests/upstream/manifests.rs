//! Ping, manifest HEAD/GET and referrers: headers in, fields out.

use axum::Router;
use axum::extract::Request;
use axum::http::Method;
use berth_upstream::ManifestHead;

use crate::support::{client, config, reply, serve};

const DIGEST: &str = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

#[tokio::test]
async fn ping_reports_200_and_401() {
    let url = serve(|_| {
        Router::new().fallback(|request: Request| async move {
            assert!(request.headers().get("authorization").is_none(), "ping sends no credentials");
            match request.uri().path() {
                "/open/v2/" => reply(200, &[], "{}"),
                "/closed/v2/" => reply(401, &[("www-authenticate", r#"Bearer realm="http://x/token""#)], ""),
                _ => reply(404, &[], ""),
            }
        })
    })
    .await;
    let with_credentials = |prefix: &str| {
        client(berth_upstream::UpstreamConfig {
            username: Some("u".into()),
            password: Some("p".into()),
            ..config(&format!("{url}/{prefix}"))
        })
    };
    assert_eq!(with_credentials("open").ping().await.unwrap(), 200);
    assert_eq!(with_credentials("closed/").ping().await.unwrap(), 401);
}

/// A registry with one manifest, checking the Accept headers it receives.
async fn manifest_registry() -> String {
    serve(|_| {
        Router::new().fallback(|request: Request| async move {
            let accept = request.headers().get("accept").map(|v| v.to_str().unwrap().to_owned());
            let path = request.uri().path();
            if path == format!("/v2/library/nginx/referrers/{DIGEST}") {
                assert_eq!(accept.as_deref(), Some(INDEX));
                return reply(200, &[("content-type", INDEX)], r#"{"manifests":[]}"#);
            }
            if path != "/v2/library/nginx/manifests/latest" && path != format!("/v2/library/nginx/manifests/{DIGEST}") {
                return reply(404, &[], "");
            }
            assert_eq!(accept.as_deref(), Some(MANIFEST_ACCEPT));
            let headers = [
                ("content-type", "application/vnd.docker.distribution.manifest.list.v2+json"),
                ("docker-content-digest", DIGEST),
            ];
            if request.method() == Method::HEAD {
                let mut response = reply(200, &headers, "");
                response.headers_mut().insert("content-length", "1234".parse().unwrap());
                response
            } else {
                reply(200, &headers, r#"{"schemaVersion":2}"#)
            }
        })
    })
    .await
}

#[tokio::test]
async fn head_manifest_reports_digest_type_and_size() {
    let upstream = client(config(&manifest_registry().await));
    let head = upstream.head_manifest("library/nginx", "latest").await.unwrap();
    assert_eq!(
        head,
        Some(ManifestHead {
            digest: Some(DIGEST.into()),
            media_type: Some("application/vnd.docker.distribution.manifest.list.v2+json".into()),
            size: Some(1234),
        })
    );
}

#[tokio::test]
async fn get_manifest_by_digest() {
    let upstream = client(config(&manifest_registry().await));
    let manifest = upstream.get_manifest("library/nginx", DIGEST).await.unwrap().unwrap();
    assert_eq!(manifest.body, r#"{"schemaVersion":2}"#);
    assert_eq!(manifest.digest.as_deref(), Some(DIGEST));
    assert_eq!(manifest.media_type.as_deref(), Some("application/vnd.docker.distribution.manifest.list.v2+json"));
}

#[tokio::test]
async fn referrers_found_and_missing() {
    let upstream = client(config(&manifest_registry().await));
    let index = upstream.referrers("library/nginx", DIGEST).await.unwrap().unwrap();
    assert_eq!(index, r#"{"manifests":[]}"#);
    assert!(upstream.referrers("library/nginx", "sha256:00").await.unwrap().is_none());
}
