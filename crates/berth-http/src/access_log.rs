//! One readable log line per request.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// What a handler learned about a request, for the access log.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// The endpoint name (`get_blob`, `put_manifest`, …).
    pub endpoint: &'static str,
    /// The endpoint and method as one metric label (`manifest_get`, `upload_patch`, …).
    pub operation: &'static str,
    pub repo: Option<String>,
    pub digest: Option<String>,
}

/// Logs method, path, status, response bytes, duration, endpoint, repository and digest.
pub async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let info = response.extensions().get::<RequestInfo>().cloned().unwrap_or_default();
    let bytes = response
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    tracing::info!(
        target: "berth::access",
        "{method} {path} {status} {bytes}B {ms:.1}ms endpoint={endpoint} repo={repo} digest={digest}",
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        endpoint = if info.endpoint.is_empty() { "-" } else { info.endpoint },
        repo = info.repo.as_deref().unwrap_or("-"),
        digest = info.digest.as_deref().unwrap_or("-"),
    );
    response
}
