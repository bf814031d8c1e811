//! Concurrency cap, size limit and timeouts.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use berth_upstream::{MAX_MANIFEST_SIZE, UpstreamConfig, UpstreamError};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};

use crate::support::{client, config, reply, serve};

#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
}

/// A blob server whose bodies take ~100 ms; it counts requests in flight
/// until the body's last byte.
async fn slow_blobs(in_flight: Arc<InFlight>) -> String {
    serve(move |_| {
        Router::new().fallback(move || {
            let in_flight = in_flight.clone();
            async move {
                let now = in_flight.now.fetch_add(1, Ordering::SeqCst) + 1;
                in_flight.max.fetch_max(now, Ordering::SeqCst);
                let body = stream::unfold(0, move |step| {
                    let in_flight = in_flight.clone();
                    async move {
                        match step {
                            0 => Some((Ok::<_, Infallible>(Bytes::from_static(b"first")), 1)),
                            1 => {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                Some((Ok(Bytes::from_static(b"-second")), 2))
                            }
                            _ => {
                                // Before the end reaches the client, so it cannot race the next request.
                                in_flight.now.fetch_sub(1, Ordering::SeqCst);
                                None
                            }
                        }
                    }
                });
                reply(200, &[], Body::from_stream(body))
            }
        })
    })
    .await
}

#[tokio::test]
async fn concurrency_cap_counts_open_blob_streams() {
    let in_flight = Arc::new(InFlight::default());
    let url = slow_blobs(in_flight.clone()).await;
    let upstream = client(UpstreamConfig { max_concurrent: 2, ..config(&url) });

    let downloads: Vec<_> = (0..6)
        .map(|i| {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let blob = upstream.get_blob("r", &format!("sha256:{i}")).await.unwrap().unwrap();
                let chunks: Vec<Bytes> = blob.stream.try_collect().await.unwrap();
                assert_eq!(chunks.concat(), b"first-second");
            })
        })
        .collect();
    for download in downloads {
        download.await.unwrap();
    }
    assert_eq!(in_flight.max.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_unread_blob_stream_keeps_its_slot_until_dropped() {
    let url = serve(|_| Router::new().fallback(|| async { reply(200, &[], "blob") })).await;
    let upstream = client(UpstreamConfig { max_concurrent: 2, ..config(&url) });

    let first = upstream.get_blob("r", "sha256:1").await.unwrap().unwrap();
    let second = upstream.get_blob("r", "sha256:2").await.unwrap().unwrap();
    let third = tokio::time::timeout(Duration::from_millis(200), upstream.get_blob("r", "sha256:3")).await;
    assert!(third.is_err(), "a third request must wait while two streams are open");

    drop(first);
    let third = tokio::time::timeout(Duration::from_secs(1), upstream.get_blob("r", "sha256:3")).await;
    assert!(third.unwrap().unwrap().is_some());
    drop(second);
}

#[tokio::test]
async fn manifests_over_4_mib_are_too_large() {
    let url = serve(|_| {
        Router::new().fallback(|request: axum::extract::Request| async move {
            let big = vec![b' '; MAX_MANIFEST_SIZE + 1];
            if request.uri().path().ends_with("/declared") {
                reply(200, &[], big)
            } else {
                // Chunked, no Content-Length: the limit must hold while reading.
                let chunks =
                    big.chunks(64 * 1024).map(|c| Ok::<_, Infallible>(Bytes::copy_from_slice(c))).collect::<Vec<_>>();
                reply(200, &[], Body::from_stream(stream::iter(chunks)))
            }
        })
    })
    .await;
    let upstream = client(config(&url));
    for reference in ["declared", "chunked"] {
        let err = upstream.get_manifest("a", reference).await.unwrap_err();
        assert!(matches!(err, UpstreamError::TooLarge { limit: MAX_MANIFEST_SIZE }), "{reference}: {err}");
    }
    let err = upstream.referrers("a", "sha256:declared").await.unwrap_err();
    assert!(matches!(err, UpstreamError::TooLarge { .. }), "{err}");
}

#[tokio::test]
async fn slow_response_headers_time_out() {
    let url = serve(|_| {
        Router::new().fallback(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            reply(200, &[], "{}")
        })
    })
    .await;
    let upstream = client(UpstreamConfig { timeout: Duration::from_millis(200), retries: 0, ..config(&url) });
    let started = Instant::now();
    let err = upstream.get_manifest("a", "latest").await.unwrap_err();
    assert!(matches!(err, UpstreamError::Timeout(_)), "{err}");
    assert!(err.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
}

#[tokio::test]
async fn stalled_blob_body_hits_read_timeout() {
    let url = serve(|_| {
        Router::new().fallback(|| async {
            let first = stream::iter([Ok::<_, Infallible>(Bytes::from_static(b"first"))]);
            reply(200, &[], Body::from_stream(first.chain(stream::pending())))
        })
    })
    .await;
    let upstream = client(UpstreamConfig { read_timeout: Duration::from_millis(300), ..config(&url) });
    let mut blob = upstream.get_blob("r", "sha256:1").await.unwrap().unwrap().stream;
    assert_eq!(blob.next().await.unwrap().unwrap(), "first");
    let started = Instant::now();
    let err = blob.next().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(blob.next().await.is_none(), "the stream ends after an error");
}
