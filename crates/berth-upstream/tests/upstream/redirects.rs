//! Blob redirects: followed, and credentials stay with the upstream's host.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Request;
use futures_util::TryStreamExt;

use crate::support::{authorization, client, config, reply, serve};

/// Path and `Authorization` of each request that reached the end of a redirect.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

#[tokio::test]
async fn redirect_to_another_host_drops_authorization() {
    let seen: Seen = Arc::default();

    let cdn_seen = seen.clone();
    let cdn = serve(move |_| {
        Router::new().fallback(move |request: Request| {
            let seen = cdn_seen.clone();
            async move {
                seen.lock().unwrap().push((request.uri().path().to_owned(), authorization(request.headers())));
                reply(200, &[], "cdn-bytes")
            }
        })
    })
    .await;
    // Same server, other host name: 127.0.0.1 → localhost.
    let cdn = cdn.replace("127.0.0.1", "localhost");

    let registry_seen = seen.clone();
    let registry = serve(move |base| {
        let realm = format!("{base}/token");
        Router::new().fallback(move |request: Request| {
            let seen = registry_seen.clone();
            let (realm, cdn) = (realm.clone(), cdn.clone());
            async move {
                let path = request.uri().path().to_owned();
                let auth = authorization(request.headers());
                match path.as_str() {
                    "/token" => return reply(200, &[], r#"{"access_token":"tok"}"#),
                    "/local/bbb" => {
                        seen.lock().unwrap().push((path, auth));
                        return reply(200, &[], "local-bytes");
                    }
                    _ => {}
                }
                if auth.as_deref() != Some("Bearer tok") {
                    let challenge = format!(r#"Bearer realm="{realm}",service="s""#);
                    return reply(401, &[("www-authenticate", &challenge)], "");
                }
                match path.as_str() {
                    "/v2/r/blobs/sha256:aaa" => reply(307, &[("location", &format!("{cdn}/cdn/aaa?sig=x"))], ""),
                    "/v2/r/blobs/sha256:bbb" => reply(307, &[("location", "/local/bbb")], ""),
                    _ => reply(404, &[], ""),
                }
            }
        })
    })
    .await;

    let upstream = client(config(&registry));
    let read = |digest: &'static str| {
        let upstream = upstream.clone();
        async move {
            let blob = upstream.get_blob("r", digest).await.unwrap().unwrap();
            let chunks: Vec<_> = blob.stream.try_collect().await.unwrap();
            chunks.concat()
        }
    };
    assert_eq!(read("sha256:aaa").await, b"cdn-bytes");
    assert_eq!(read("sha256:bbb").await, b"local-bytes");

    let seen = seen.lock().unwrap();
    assert!(seen.contains(&("/cdn/aaa".to_owned(), None)), "{seen:?}");
    // The same-host redirect keeps the token, so the check above is meaningful.
    assert!(seen.contains(&("/local/bbb".to_owned(), Some("Bearer tok".to_owned()))), "{seen:?}");
}
