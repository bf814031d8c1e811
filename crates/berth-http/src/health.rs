//! `GET /health` and `GET /api/version` in the management envelope (seed 000).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::api::envelope::{Failure, ok};

/// Reports healthy when the metadata database answers.
pub async fn health(State(state): State<AppState>) -> Response {
    match state.registry.catalog(None, 1).await {
        Ok(_) => ok(json!({"status": "healthy", "version": state.version})),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            Failure::new(StatusCode::SERVICE_UNAVAILABLE, "INTERNAL_ERROR", "metadata database unavailable")
                .into_response()
        }
    }
}

/// `GET /api/version` (no authentication, like `/health`).
pub async fn version(State(state): State<AppState>) -> Response {
    ok(json!({"version": state.version, "full_version": state.full_version}))
}
