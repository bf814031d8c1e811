//! Seed 000's management envelope (API.md §5): `{"success":true,"data":…}` and
//! `{"success":false,"error":{"code","message","details"},"timestamp"}`.

use axum::Json;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::{Surface, caller};
use crate::AppState;

/// A successful management answer.
pub fn ok<T: Serialize>(data: T) -> Response {
    Json(json!({ "success": true, "data": data })).into_response()
}

/// A failed management request in seed 000's shape.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
}

impl Failure {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Failure { status, code, message: message.into(), details: json!({}) }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Failure::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "management request failed");
        Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "internal error")
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = json!({
            "success": false,
            "error": { "code": self.code, "message": self.message, "details": self.details },
            "timestamp": berth_meta::rfc3339(berth_meta::now_unix()),
        });
        (self.status, Json(body)).into_response()
    }
}

/// API.md §3.3, Management column: 401 `AUTH_FAILED` with the security code
/// as `details.reason`; 403 and 429 carry the security code itself
/// (`permission_denied`, `system_locked`, `ip_not_allowed`, `csrf_*`,
/// `rate_limit_exceeded`).
impl From<super::Problem> for Failure {
    fn from(p: super::Problem) -> Self {
        let code = match p.status {
            StatusCode::UNAUTHORIZED => "AUTH_FAILED",
            StatusCode::FORBIDDEN => p.code,
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_exceeded",
            StatusCode::BAD_REQUEST => "INVALID_REQUEST",
            _ => "INTERNAL_ERROR",
        };
        Failure { status: p.status, code, message: p.message, details: json!({ "reason": p.code }) }
    }
}

/// Who may call a seed 000 route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Any signed-in user.
    User,
    /// Administrators (from the allow-listed addresses).
    Admin,
}

/// Authenticates a seed 000 request; with authentication off everyone passes.
pub async fn require(state: &AppState, parts: &Parts, needs: Needs) -> Result<Option<super::Caller>, Failure> {
    if !state.access.enabled() {
        return Ok(None);
    }
    let caller = caller(state, parts, Surface::GhostDock).await?;
    if needs == Needs::Admin {
        caller.require_admin(Surface::GhostDock)?;
    }
    Ok(Some(caller))
}
