//! berth's HTTP surfaces.
//!
//! `/v2/…` is routed through one catch-all handler that parses the path into an
//! [`v2::endpoint::OciEndpoint`] and dispatches with a single `match` (repository
//! names contain `/`, so they cannot be router segments). Errors become protocol
//! responses in exactly one place, [`error::ApiError`]. Handlers call the
//! registry service; they never touch storage directly.
//!
//! Dependencies beyond the web stack: `rustix` (features `fs`, `system`; already
//! in the tree through `tempfile`) gives [`hostinfo`] `statvfs` and `uname`
//! without `unsafe` code, instead of `libc` (needs `unsafe`) or `sysinfo` (large).

pub mod access_log;
pub mod api;
pub mod auth;
pub mod error;
mod health;
pub mod hostinfo;
pub mod metrics;
pub mod openapi;
pub mod ratelimit;
mod routes;
mod token;
pub mod v2;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use berth_registry::Registry;
use berth_registry::access::AccessService;

/// Shared state of every handler, behind one `Arc`: routing and middleware
/// clone it for every request, and one atomic increment is cheaper than one
/// per field.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    /// Shares `parts` with every handler.
    pub fn new(parts: AppParts) -> Self {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct AppParts {
    /// The registry service.
    pub registry: Arc<Registry>,
    /// Users, tokens, permissions, the audit log.
    pub access: Arc<AccessService>,
    /// berth's version, reported by `/v2/` and `/health`.
    pub version: &'static str,
    /// The version with its commit and date, for `/api/version`.
    pub full_version: &'static str,
    /// The URL clients reach berth at (the token realm); the request's Host when unset.
    pub external_url: Option<Arc<str>>,
    /// Whether berth itself terminates TLS (Secure cookies, https realm).
    pub tls: bool,
    /// Request-count limits per user or IP.
    pub rate_limits: Arc<ratelimit::RateLimits>,
    /// The pull-through cache.
    pub proxy: Arc<berth_proxy::Proxy>,
    /// Webhook secrets, test deliveries and the delivery dispatcher.
    pub webhooks: Arc<berth_webhooks::Webhooks>,
    /// The data and blob directories and cached host facts (`/api/system`).
    pub host: Arc<api::system::Host>,
    /// Renders the Prometheus metrics (`GET /metrics`), when a recorder is installed.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Request counters and latencies (Prometheus and `GET /api/v1/metrics`).
    pub http_metrics: Arc<metrics::HttpMetrics>,
    /// The garbage collector (`/api/v1/system/gc`).
    pub gc: Arc<berth_gc::Collector>,
    /// How often scheduled collections run (zero: never), for the status.
    pub gc_interval: std::time::Duration,
    /// This process's name among the nodes (lease holder of the runs it starts).
    pub node: Arc<str>,
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    routes::management_api(false)
        .into_router()
        .route("/auth", get(token::get_token).post(token::post_token))
        // The API limit counts only `/auth` and `/api/`; `/v2` judges its own
        // limits per user, so the routes below skip this layer.
        .layer(axum::middleware::from_fn_with_state(state.clone(), ratelimit::limit_api))
        .route("/v2", axum::routing::any(v2::handle))
        .route("/v2/", axum::routing::any(v2::handle))
        .route("/v2/{*path}", axum::routing::any(v2::handle))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(axum::middleware::from_fn_with_state(state.http_metrics.clone(), metrics::observe))
        .with_state(state)
}

/// `GET /api/openapi.json`: the management API's OpenAPI 3.1 document, built
/// on the first request (an idle server does not hold it).
async fn openapi_document(axum::extract::State(state): axum::extract::State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    static DOCUMENT: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
    let document = DOCUMENT.get_or_init(|| {
        let document = routes::management_api(true).document(state.version);
        serde_json::to_vec(&document).expect("a JSON value serializes").into()
    });
    ([(axum::http::header::CONTENT_TYPE, "application/json")], document.clone()).into_response()
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match &state.metrics {
        Some(handle) => {
            ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response()
        }
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}
