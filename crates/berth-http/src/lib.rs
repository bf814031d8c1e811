//! berth's HTTP surfaces.
//!
//! `/v2/…` is routed through one catch-all handler that parses the path into an
//! [`v2::endpoint::OciEndpoint`] and dispatches with a single `match` (repository
//! names contain `/`, so they cannot be router segments). Errors become protocol
//! responses in exactly one place, [`error::ApiError`]. Handlers call the
//! registry service; they never touch storage directly.

pub mod access_log;
pub mod error;
mod health;
pub mod v2;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use berth_registry::Registry;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The registry service.
    pub registry: Arc<Registry>,
    /// berth's version, reported by `/v2/` and `/health`.
    pub version: &'static str,
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/v2", axum::routing::any(v2::handle))
        .route("/v2/", axum::routing::any(v2::handle))
        .route("/v2/{*path}", axum::routing::any(v2::handle))
        .layer(axum::middleware::from_fn(access_log::log_request))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .with_state(state)
}
