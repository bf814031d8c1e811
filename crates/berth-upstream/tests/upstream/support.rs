//! A tiny test registry: a real axum server on 127.0.0.1:0, plus helpers.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use berth_upstream::{UpstreamClient, UpstreamConfig};

/// Starts a server whose router may use its own base URL (e.g. for a realm).
/// Returns the base URL, `http://127.0.0.1:<port>`.
pub async fn serve(router: impl FnOnce(&str) -> Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(&base);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// Short timeouts and fast failure so no test waits long.
pub fn config(url: &str) -> UpstreamConfig {
    UpstreamConfig {
        name: "test".into(),
        url: url.into(),
        connect_timeout: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        ..UpstreamConfig::default()
    }
}

pub fn client(config: UpstreamConfig) -> UpstreamClient {
    UpstreamClient::new(config).unwrap()
}

/// A response with `status`, `headers` and `body`.
pub fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Body>) -> Response {
    let mut builder = Response::builder().status(StatusCode::from_u16(status).unwrap());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body.into()).unwrap()
}

/// The request's `Authorization` header, if any.
pub fn authorization(headers: &HeaderMap) -> Option<String> {
    headers.get("authorization").map(|v| v.to_str().unwrap().to_owned())
}

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// A query parameter of the request URI, percent-decoded.
pub fn query_param(uri: &axum::http::Uri, name: &str) -> Option<String> {
    let Query(mut params) = Query::<HashMap<String, String>>::try_from_uri(uri).ok()?;
    params.remove(name)
}

/// Awaits `future`, failing the test after 5 s instead of hanging (a deadlock).
pub async fn within_5s<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), future).await.expect("no deadlock")
}
