//! `GET /health` and `GET /api/version` in the management envelope (seed 000).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;

/// Reports healthy when the metadata database answers.
pub async fn health(State(state): State<AppState>) -> Response {
    match state.registry.catalog(None, 1).await {
        Ok(_) => {
            Json(json!({"success": true, "data": {"status": "healthy", "version": state.version}})).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            let body = json!({
                "success": false,
                "error": {"code": "INTERNAL_ERROR", "message": "metadata database unavailable", "details": {}},
                "timestamp": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// `GET /api/version` (no authentication, like `/health`).
pub async fn version(State(state): State<AppState>) -> Response {
    crate::api::envelope::ok(json!({"version": state.version, "full_version": state.full_version}))
}
