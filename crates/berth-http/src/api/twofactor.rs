//! `/api/v1/auth/2fa/{setup,enable,disable}`: TOTP enrolment (API.md §6.4).
//!
//! Only a login (JWT or cookie) may change its own second factor: a personal
//! access token must not be able to turn 2FA off for its owner.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_registry::access::TwoFactorError;
use serde::Deserialize;
use serde_json::json;

use super::{Caller, Problem, Surface, caller, json_body, refuse_if_locked};
use crate::AppState;

const S: Surface = Surface::Security;

fn problem(e: TwoFactorError) -> Problem {
    let unauthorized = |code, message: &str| Problem::new(S, StatusCode::UNAUTHORIZED, code, message);
    match e {
        TwoFactorError::OtpInvalid => unauthorized("otp_invalid", "invalid two-factor code"),
        TwoFactorError::BadPassword => unauthorized("login_failure", "Invalid credentials"),
        TwoFactorError::Backend(e) => Problem::internal(S, e),
        other => Problem::bad_request(S, other.to_string()),
    }
}

fn require_login(caller: &Caller) -> Result<(), Problem> {
    if caller.is_login() {
        Ok(())
    } else {
        Err(Problem::new(S, StatusCode::FORBIDDEN, "permission_denied", "two-factor changes need a login, not a token"))
    }
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /api/v1/auth/2fa/setup`: a new pending secret. `qr_image` is null: the
/// client renders `otpauth_url` as a QR code itself.
pub async fn setup(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    let caller = caller(&state, &parts, S).await?;
    require_login(&caller)?;
    refuse_if_locked(&state, S).await?;
    let setup = state.access.setup_totp(caller.user_id(), &caller.actor).await.map_err(problem)?;
    let body = json!({ "secret": setup.secret, "otpauth_url": setup.otpauth_url, "qr_image": null });
    Ok(no_store(Json(body).into_response()))
}

#[derive(Deserialize)]
struct EnableBody {
    code: String,
}

/// `POST /api/v1/auth/2fa/enable`: proves the authenticator, returns the recovery codes.
pub async fn enable(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let caller = caller(&state, &parts, S).await?;
    require_login(&caller)?;
    refuse_if_locked(&state, S).await?;
    let body: EnableBody = json_body(body, S).await?;
    let codes = state.access.enable_totp(caller.user_id(), &body.code, &caller.actor).await.map_err(problem)?;
    let body = json!({ "message": "Two-factor authentication enabled", "recovery_codes": codes });
    Ok(no_store(Json(body).into_response()))
}

#[derive(Deserialize)]
struct DisableBody {
    #[serde(default)]
    user_id: Option<i64>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

/// `POST /api/v1/auth/2fa/disable`: the user with password and code, or an admin for another user.
pub async fn disable(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let caller = caller(&state, &parts, S).await?;
    require_login(&caller)?;
    refuse_if_locked(&state, S).await?;
    let body: DisableBody = json_body(body, S).await?;
    match body.user_id.filter(|id| *id != caller.user_id()) {
        Some(target) => {
            caller.require_admin(S)?;
            state.access.disable_totp_for(target, &caller.actor).await.map_err(problem)?;
        }
        None => {
            let (Some(password), Some(code)) = (body.password, body.code) else {
                return Err(Problem::bad_request(S, "password and code are required"));
            };
            state.access.disable_totp(caller.user_id(), &password, &code, &caller.actor).await.map_err(problem)?;
        }
    }
    Ok(Json(json!({ "message": "Two-factor authentication disabled" })).into_response())
}
