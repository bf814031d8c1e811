//! The Docker token dance and Basic challenges.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::Request;
use berth_upstream::{UpstreamConfig, UpstreamError};

use crate::support::{authorization, basic, client, config, query_param, reply, serve, within_5s};

const MANIFEST: &str = r#"{"schemaVersion":2}"#;

#[derive(Default)]
struct Counts {
    token: AtomicUsize,
    challenged: AtomicUsize,
    served: AtomicUsize,
}

/// A registry whose manifests need `Bearer tok-<n>`, and its token endpoint.
/// The token endpoint calls `check` with the request and refuses if it says no.
async fn token_registry(
    counts: Arc<Counts>,
    challenge_scope: Option<&'static str>,
    check: fn(&Request) -> bool,
) -> String {
    serve(move |base| {
        let realm = format!("{base}/token");
        Router::new().fallback(move |request: Request| {
            let counts = counts.clone();
            let realm = realm.clone();
            async move {
                if request.uri().path() == "/token" {
                    if !check(&request) {
                        return reply(401, &[], "bad credentials");
                    }
                    let n = counts.token.fetch_add(1, Ordering::SeqCst) + 1;
                    return reply(200, &[], format!(r#"{{"token":"tok-{n}","expires_in":300}}"#));
                }
                if authorization(request.headers()).is_some_and(|a| a.starts_with("Bearer tok-")) {
                    counts.served.fetch_add(1, Ordering::SeqCst);
                    return reply(200, &[("content-type", "application/vnd.oci.image.manifest.v1+json")], MANIFEST);
                }
                counts.challenged.fetch_add(1, Ordering::SeqCst);
                let scope = challenge_scope.map(|s| format!(r#",scope="{s}""#)).unwrap_or_default();
                let challenge = format!(r#"Bearer realm="{realm}",service="registry.test"{scope}"#);
                reply(401, &[("www-authenticate", &challenge)], "")
            }
        })
    })
    .await
}

#[tokio::test]
async fn anonymous_token_dance_then_token_reused() {
    let counts = Arc::new(Counts::default());
    let check = |request: &Request| {
        authorization(request.headers()).is_none()
            && query_param(request.uri(), "service").as_deref() == Some("registry.test")
            // The challenge's scope, comma and all, goes to the token endpoint verbatim.
            && query_param(request.uri(), "scope").as_deref() == Some("repository:library/nginx:pull,push")
    };
    let url = token_registry(counts.clone(), Some("repository:library/nginx:pull,push"), check).await;
    // One slot: the dance must never hold two at once.
    let upstream = client(UpstreamConfig { max_concurrent: 1, ..config(&url) });

    let first = within_5s(upstream.get_manifest("library/nginx", "latest")).await.unwrap().unwrap();
    assert_eq!(first.body, MANIFEST);
    assert_eq!(first.media_type.as_deref(), Some("application/vnd.oci.image.manifest.v1+json"));
    upstream.head_manifest("library/nginx", "latest").await.unwrap().unwrap();
    // A clone shares the token cache.
    upstream.clone().get_manifest("library/nginx", "1.27").await.unwrap().unwrap();

    assert_eq!(counts.token.load(Ordering::SeqCst), 1, "one token for the scope");
    assert_eq!(counts.challenged.load(Ordering::SeqCst), 1, "later requests send the token up front");
    assert_eq!(counts.served.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn token_dance_with_credentials() {
    let counts = Arc::new(Counts::default());
    let check = |request: &Request| {
        authorization(request.headers()) == Some(basic("alice", "s3cret"))
            // No scope in the challenge: the client asks for pull on the repository.
            && query_param(request.uri(), "scope").as_deref() == Some("repository:team/app:pull")
    };
    let url = token_registry(counts.clone(), None, check).await;

    let good =
        client(UpstreamConfig { username: Some("alice".into()), password: Some("s3cret".into()), ..config(&url) });
    assert!(good.get_manifest("team/app", "v1").await.unwrap().is_some());
    assert_eq!(counts.token.load(Ordering::SeqCst), 1);

    let bad = client(UpstreamConfig {
        username: Some("alice".into()),
        password: Some("wrong-password".into()),
        ..config(&url)
    });
    let err = bad.get_manifest("team/app", "v1").await.unwrap_err();
    assert!(matches!(err, UpstreamError::Unauthorized(_)), "{err}");
    assert!(!err.is_retryable());
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("wrong-password") && !shown.contains("tok-"), "{shown}");
}

/// A registry that wants `Basic alice:s3cret` and counts its 401s.
async fn basic_registry(refusals: Arc<AtomicUsize>) -> String {
    serve(move |_| {
        Router::new().fallback(move |request: Request| {
            let refusals = refusals.clone();
            async move {
                if authorization(request.headers()) == Some(basic("alice", "s3cret")) {
                    return reply(200, &[], MANIFEST);
                }
                refusals.fetch_add(1, Ordering::SeqCst);
                reply(401, &[("www-authenticate", r#"Basic realm="registry", charset="UTF-8""#)], "")
            }
        })
    })
    .await
}

#[tokio::test]
async fn basic_challenge_with_credentials() {
    let refusals = Arc::new(AtomicUsize::new(0));
    let url = basic_registry(refusals.clone()).await;
    let with = |password: Option<&str>| {
        client(UpstreamConfig {
            username: password.map(|_| "alice".into()),
            password: password.map(Into::into),
            max_concurrent: 1,
            ..config(&url)
        })
    };

    let upstream = with(Some("s3cret"));
    assert!(within_5s(upstream.get_manifest("a/b", "latest")).await.unwrap().is_some());
    assert!(upstream.get_manifest("c", "latest").await.unwrap().is_some());
    assert_eq!(refusals.load(Ordering::SeqCst), 1, "Basic goes up front after the first challenge");

    let err = with(Some("nope")).get_manifest("a/b", "latest").await.unwrap_err();
    assert!(matches!(err, UpstreamError::Unauthorized(_)), "{err}");
    assert_eq!(refusals.load(Ordering::SeqCst), 3, "wrong credentials are tried once, not in a loop");

    let err = with(None).get_manifest("a/b", "latest").await.unwrap_err();
    assert!(matches!(err, UpstreamError::Unauthorized(_)), "{err}");
}
