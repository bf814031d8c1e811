//! Which failures are retried, how often, and what is reported in the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::Response;
use berth_upstream::{UpstreamConfig, UpstreamError};

use crate::support::{client, config, reply, serve};

/// A registry answering the n-th request (1-based) with `answer(n)`; returns
/// its URL and the request counter.
async fn scripted(answer: fn(usize) -> Response) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let url = serve(move |_| {
        Router::new().fallback(move || {
            let hits = counter.clone();
            async move { answer(hits.fetch_add(1, Ordering::SeqCst) + 1) }
        })
    })
    .await;
    (url, hits)
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let (url, hits) = scripted(|n| if n <= 2 { reply(503, &[], "busy") } else { reply(200, &[], "{}") }).await;
    let manifest = client(config(&url)).get_manifest("a", "latest").await.unwrap().unwrap();
    assert_eq!(manifest.body, "{}");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn not_found_is_none_and_not_retried() {
    let (url, hits) = scripted(|_| reply(404, &[], "")).await;
    let upstream = client(config(&url));
    assert!(upstream.get_manifest("a", "latest").await.unwrap().is_none());
    assert!(upstream.get_blob("a", "sha256:00").await.unwrap().is_none());
    assert!(upstream.head_manifest("a", "latest").await.unwrap().is_none());
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn client_errors_are_reported_and_not_retried() {
    const BODY: &str = r#"{"errors":[{"code":"MANIFEST_INVALID","message":"bad reference","detail":null}]}"#;
    let (url, hits) = scripted(|_| reply(400, &[], BODY)).await;
    let err = client(config(&url)).get_manifest("a", "latest").await.unwrap_err();
    let UpstreamError::Status { status: 400, message } = &err else { panic!("{err:?}") };
    assert!(
        message.contains("GET /v2/a/manifests/latest") && message.contains("MANIFEST_INVALID: bad reference"),
        "{message}"
    );
    assert!(!err.is_retryable());
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn too_many_requests_waits_for_retry_after() {
    let (url, hits) =
        scripted(|n| if n == 1 { reply(429, &[("retry-after", "1")], "") } else { reply(200, &[], "{}") }).await;
    let started = Instant::now();
    assert!(client(config(&url)).get_manifest("a", "latest").await.unwrap().is_some());
    assert!(started.elapsed() >= Duration::from_millis(950), "{:?}", started.elapsed());
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn retries_exhausted() {
    let (url, hits) = scripted(|_| reply(503, &[], "")).await;
    let err = client(config(&url)).get_manifest("a", "latest").await.unwrap_err();
    assert!(matches!(err, UpstreamError::Status { status: 503, .. }), "{err}");
    assert!(err.is_retryable());
    assert_eq!(hits.load(Ordering::SeqCst), 3, "one attempt plus two retries");

    let (url, hits) = scripted(|_| reply(429, &[], "")).await;
    let err = client(UpstreamConfig { retries: 1, ..config(&url) }).get_manifest("a", "latest").await.unwrap_err();
    assert!(matches!(err, UpstreamError::RateLimited { retry_after: None }), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // A Retry-After beyond what we wait out ends the retries at once.
    let (url, hits) = scripted(|_| reply(429, &[("retry-after", "60")], "")).await;
    let err = client(config(&url)).get_manifest("a", "latest").await.unwrap_err();
    assert!(
        matches!(err, UpstreamError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(60)),
        "{err}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refused_connection_is_a_retryable_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = client(UpstreamConfig { retries: 1, ..config(&url) }).get_manifest("a", "latest").await.unwrap_err();
    assert!(matches!(err, UpstreamError::Connect(_)), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn invalid_urls_are_rejected() {
    for url in ["", "ftp://example.org", "https://user:pw@example.org", "http://example.org/v2"] {
        let err = berth_upstream::UpstreamClient::new(config(url)).unwrap_err();
        assert!(matches!(err, UpstreamError::InvalidUrl(_)), "{url}: {err}");
    }
    let upstream = client(config("http://127.0.0.1:9"));
    let err = upstream.get_manifest("../etc", "latest").await.unwrap_err();
    assert!(matches!(err, UpstreamError::InvalidUrl(_)), "{err}");
}
