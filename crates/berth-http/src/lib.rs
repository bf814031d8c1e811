//! berth's HTTP surfaces.
//!
//! `/v2/…` is routed through one catch-all handler that parses the path into an
//! [`v2::endpoint::OciEndpoint`] and dispatches with a single `match` (repository
//! names contain `/`, so they cannot be router segments). Errors become protocol
//! responses in exactly one place, [`error::ApiError`]. Handlers call the
//! registry service; they never touch storage directly.

pub mod access_log;
pub mod api;
pub mod auth;
pub mod error;
mod health;
pub mod metrics;
pub mod ratelimit;
mod token;
pub mod v2;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use berth_registry::Registry;
use berth_registry::access::AccessService;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
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
    /// Renders the Prometheus metrics (`GET /metrics`), when a recorder is installed.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Request counters and latencies (Prometheus and `GET /api/v1/metrics`).
    pub http_metrics: Arc<metrics::HttpMetrics>,
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/api/version", get(health::version))
        .route("/auth", get(token::get_token).post(token::post_token))
        .route("/api/v1/auth/login", post(api::security::login))
        .route("/api/v1/auth/logout", post(api::security::logout))
        .route("/api/v1/auth/verify-token", post(api::security::verify_token))
        .route("/api/v1/auth/me", get(api::security::me))
        .route("/api/v1/auth/heartbeat", get(api::security::heartbeat))
        .route("/api/v1/auth/captcha", get(api::security::captcha))
        .route("/api/v1/auth/2fa/setup", post(api::twofactor::setup))
        .route("/api/v1/auth/2fa/enable", post(api::twofactor::enable))
        .route("/api/v1/auth/2fa/disable", post(api::twofactor::disable))
        .route("/api/v1/system/allowlist", get(api::allowlist::get_allowlist).put(api::allowlist::put_allowlist))
        .route("/api/v1/system/lock/status", get(api::security::lock_status))
        .route("/api/v1/system/lock/unlock", post(api::security::unlock))
        .route("/api/v1/system/lock/lock", post(api::security::lock))
        .route("/api/v1/audit/logs", get(api::audit::logs))
        .route("/api/v1/audit/logs/export", get(api::audit::export))
        .route("/api/v1/audit", get(api::audit::ghost_audit))
        .route("/api/v1/users", get(api::users::list_users).post(api::users::create_user))
        .route("/api/v1/users/{id}", axum::routing::put(api::users::update_user).delete(api::users::delete_user))
        .route("/api/v1/tokens", get(api::users::list_tokens).post(api::users::create_token))
        .route("/api/v1/tokens/{id}", axum::routing::delete(api::users::delete_token))
        .route("/api/v1/projects/{name}", get(api::projects::get_project).put(api::projects::put_project))
        .route(
            "/api/v1/projects/{name}/members/{username}",
            axum::routing::put(api::projects::put_member).delete(api::projects::delete_member),
        )
        .route("/api/accel/upstreams", get(api::accel::list_upstreams).post(api::accel::add_upstream))
        .route(
            "/api/accel/upstreams/{name}",
            axum::routing::put(api::accel::update_upstream).delete(api::accel::delete_upstream),
        )
        .route("/api/accel/upstreams/{name}/enable", post(api::accel::enable_upstream))
        .route("/api/accel/upstreams/{name}/disable", post(api::accel::disable_upstream))
        .route("/api/accel/upstreams/{name}/health", get(api::accel::upstream_health))
        .route("/api/accel/cache", axum::routing::delete(api::accel::clear_cache))
        .route("/api/accel/cache/stats", get(api::accel::cache_stats))
        .route("/api/accel/cache/entries", get(api::accel::cache_entries))
        .route("/api/accel/cache/{digest}", axum::routing::delete(api::accel::delete_entry))
        .route("/api/accel/cache/{digest}/pin", axum::routing::put(api::accel::pin_entry).delete(api::accel::pin_entry))
        .route("/api/accel/pull/{*path}", get(api::accel::pull))
        .route("/metrics", get(metrics))
        .route("/api/v1/health", get(api::monitoring::health))
        .route("/api/v1/metrics", get(api::monitoring::metrics))
        .route("/v2", axum::routing::any(v2::handle))
        .route("/v2/", axum::routing::any(v2::handle))
        .route("/v2/{*path}", axum::routing::any(v2::handle))
        .layer(axum::middleware::from_fn_with_state(state.clone(), ratelimit::limit_api))
        .layer(axum::middleware::from_fn(access_log::log_request))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(axum::middleware::from_fn_with_state(state.http_metrics.clone(), metrics::track))
        .with_state(state)
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
