//! Seed 000's security API: `/api/v1/auth/*` and `/api/v1/system/lock/*` (API.md §6.1, §6.2).

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_meta::UserRecord;
use berth_registry::access::{Credential, LoginFailure, LoginRequest};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Problem, Surface, anonymous_actor, caller, json_body, user_agent};
use crate::AppState;
use crate::auth::{CSRF_COOKIE, SESSION_COOKIE, client_ip};

const S: Surface = Surface::Security;

/// `User` of the security surface.
pub fn user_json(user: &UserRecord) -> Value {
    json!({ "id": user.id, "username": user.username, "role": user.role, "is_active": user.is_active })
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
    #[serde(default)]
    otp: Option<String>,
    #[serde(default)]
    captcha_id: Option<String>,
    #[serde(default)]
    captcha: Option<String>,
}

/// `POST /api/v1/auth/login`.
pub async fn login(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let body: LoginBody = json_body(body, S).await?;
    let ip = client_ip(&parts.extensions);
    let req = LoginRequest {
        username: body.username,
        password: body.password,
        otp: body.otp,
        captcha_id: body.captcha_id,
        captcha: body.captcha,
        ip: ip.clone(),
        user_agent: user_agent(&parts.headers),
        ttl: state.access.config().login_token_ttl,
    };
    let unauthorized = |code, message: &str| Problem::new(S, StatusCode::UNAUTHORIZED, code, message);
    let outcome = match state.access.login(&req).await {
        Ok(outcome) => outcome,
        Err(LoginFailure::InvalidCredentials { remaining_attempts }) => {
            return Err(unauthorized("login_failure", "Invalid credentials")
                .with("remaining_attempts", json!(remaining_attempts)));
        }
        Err(LoginFailure::AccountLocked) => {
            return Err(unauthorized("login_failure", "Account temporarily locked after repeated failures")
                .with("account_locked", json!(true)));
        }
        Err(LoginFailure::CaptchaRequired { remaining_attempts }) => {
            return Err(unauthorized("captcha_required", "captcha required after repeated failures")
                .with("remaining_attempts", json!(remaining_attempts)));
        }
        Err(LoginFailure::CaptchaInvalid { remaining_attempts }) => {
            return Err(unauthorized("captcha_invalid", "wrong, expired or used captcha")
                .with("remaining_attempts", json!(remaining_attempts)));
        }
        Err(LoginFailure::OtpRequired) => return Err(unauthorized("otp_required", "two-factor code required")),
        Err(LoginFailure::OtpInvalid) => return Err(unauthorized("otp_invalid", "invalid two-factor code")),
        Err(LoginFailure::InactiveUser) => return Err(unauthorized("inactive_user", "user is disabled")),
        Err(LoginFailure::SystemLocked) => {
            return Err(Problem::new(S, StatusCode::FORBIDDEN, "system_locked", "the system is locked"));
        }
        Err(LoginFailure::Backend(e)) => return Err(Problem::internal(S, e)),
    };
    let body = json!({
        "user": user_json(&outcome.user),
        "token": outcome.token.token,
        "session": { "id": outcome.session_id, "ip": ip },
        "must_change_password": outcome.user.must_change_password,
        "lock_warning": outcome.lock_warning,
    });
    let mut response = Json(body).into_response();
    let secure = if state.tls { "; Secure" } else { "" };
    let max_age = state.access.config().login_token_ttl.as_secs();
    let cookies = [
        format!(
            "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}",
            outcome.token.token
        ),
        // Readable by the UI's script, which echoes it in X-CSRF-Token.
        format!("{CSRF_COOKIE}={}; Path=/; SameSite=Strict; Max-Age={max_age}{secure}", outcome.csrf),
    ];
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /api/v1/auth/captcha`: a new single-use challenge (API.md §6.4).
pub async fn captcha(State(state): State<AppState>) -> Result<Response, Problem> {
    let captcha = state.access.new_captcha().await.map_err(|e| Problem::internal(S, e))?;
    let body = json!({ "captcha_id": captcha.id, "image": captcha.image, "expires_in": captcha.expires_in });
    let mut response = Json(body).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `POST /api/v1/auth/logout`: ends the session and its tokens.
pub async fn logout(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    let caller = caller(&state, &parts, S).await?;
    if let Some(sid) = &caller.principal.session {
        state.access.logout(sid, &caller.actor).await.map_err(|e| Problem::internal(S, e))?;
    }
    let mut response = Json(json!({ "message": "Logged out successfully" })).into_response();
    for name in [SESSION_COOKIE, CSRF_COOKIE] {
        if let Ok(v) = HeaderValue::from_str(&format!("{name}=; Path=/; Max-Age=0")) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(response)
}

#[derive(Deserialize)]
struct VerifyBody {
    token: String,
}

/// `POST /api/v1/auth/verify-token`: `{"valid":true,"user":{…}}` or `{"valid":false}`.
pub async fn verify_token(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let body: VerifyBody = json_body(body, S).await?;
    let ip = client_ip(&parts.extensions);
    let principal = state.access.authenticate(&Credential::Bearer(body.token), &ip).await.ok();
    let Some(user) = principal.as_ref().and_then(|p| p.user.as_ref()) else {
        return Ok(Json(json!({ "valid": false })).into_response());
    };
    let role = if user.role == berth_access::permissions::UserRole::Admin { "admin" } else { "user" };
    Ok(Json(json!({ "valid": true, "user": { "id": user.id, "username": user.username, "role": role } }))
        .into_response())
}

/// `GET /api/v1/auth/me`.
pub async fn me(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    let caller = caller(&state, &parts, S).await?;
    let user = state.access.user(caller.user_id()).await.map_err(|e| Problem::internal(S, e))?;
    let user =
        user.ok_or_else(|| Problem::new(S, StatusCode::UNAUTHORIZED, "invalid_token", "user no longer exists"))?;
    Ok(Json(json!({ "user": user_json(&user) })).into_response())
}

/// `GET /api/v1/auth/heartbeat`: keeps the session's idle timer fresh.
pub async fn heartbeat(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    caller(&state, &parts, S).await?;
    Ok(Json(json!({ "status": "ok", "timestamp": berth_meta::now_unix() })).into_response())
}

/// `GET /api/v1/system/lock/status` (no auth).
pub async fn lock_status(State(state): State<AppState>) -> Result<Response, Problem> {
    let status = state.access.lock_status().await.map_err(|e| Problem::internal(S, e))?;
    Ok(Json(status).into_response())
}

#[derive(Deserialize)]
struct UnlockBody {
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    recovery_key: Option<String>,
}

/// `POST /api/v1/system/lock/unlock`: any active admin's password or the recovery key.
pub async fn unlock(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let body: UnlockBody = json_body(body, S).await?;
    let actor = anonymous_actor(&parts, "");
    let ok = state
        .access
        .unlock(body.password.as_deref(), body.recovery_key.as_deref(), &actor)
        .await
        .map_err(|e| Problem::internal(S, e))?;
    if !ok {
        return Err(Problem::new(S, StatusCode::UNAUTHORIZED, "login_failure", "Invalid credentials"));
    }
    Ok(Json(json!({ "message": "System unlocked successfully" })).into_response())
}

#[derive(Deserialize)]
struct LockBody {
    reason: String,
}

/// `POST /api/v1/system/lock/lock` (admin).
pub async fn lock(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let caller = caller(&state, &parts, S).await?;
    caller.require_admin(S)?;
    let body: LockBody = json_body(body, S).await?;
    if body.reason.trim().is_empty() || body.reason.len() > 500 {
        return Err(Problem::bad_request(S, "reason must be 1 to 500 characters"));
    }
    state.access.lock(body.reason.trim(), &caller.actor).await.map_err(|e| Problem::internal(S, e))?;
    Ok(Json(json!({ "message": "System locked successfully" })).into_response())
}
