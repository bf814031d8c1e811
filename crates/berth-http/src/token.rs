//! `/auth`: the Docker token service (`GET`), seed 004's JSON login and the
//! Docker OAuth2 form (`POST`). API.md §4.1.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_access::scope::ResourceScope;
use berth_core::ErrorCode;
use berth_registry::access::{AuthError, Credential, IssuedToken, LoginFailure, LoginRequest, Principal, Restriction};
use serde_json::json;

use crate::AppState;
use crate::auth::{client_ip, credential};
use crate::error::ApiError;

/// Largest `/auth` request body (a login form is a few hundred bytes).
const MAX_BODY: usize = 64 * 1024;

/// `GET /auth?service=…&scope=…`: a scoped registry token for the Basic
/// credential (or anonymous), granting what was asked and is allowed.
pub async fn get_token(State(state): State<AppState>, request: Request) -> Response {
    let ip = client_ip(request.extensions());
    let query: Vec<(String, String)> =
        request.uri().query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let param = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    if let Err(e) = check_service(&state, param("service")) {
        return e.into_response();
    }
    let scopes = match parse_scopes(query.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.as_str())) {
        Ok(scopes) => scopes,
        Err(e) => return e.into_response(),
    };
    let principal = match principal(&state, request.headers(), &ip).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match state.access.issue_registry_token(&principal, &scopes).await {
        Ok(token) => token_response(&token, None, None),
        Err(e) => auth_error(e).into_response(),
    }
}

/// `POST /auth`: JSON `{"username","password","otp"}` (seed 004) or the OAuth2
/// form (`grant_type=password|refresh_token`).
pub async fn post_token(State(state): State<AppState>, request: Request) -> Response {
    let ip = client_ip(request.extensions());
    let headers = request.headers().clone();
    let body = match axum::body::to_bytes(request.into_body(), MAX_BODY).await {
        Ok(body) => body,
        Err(_) => return bad_request("request body too large or unreadable").into_response(),
    };
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if is_json {
        json_login(&state, &headers, &ip, &body).await
    } else {
        oauth_form(&state, &headers, &ip, &body).await
    }
}

#[derive(serde::Deserialize)]
struct JsonLogin {
    username: String,
    password: String,
    #[serde(default)]
    otp: Option<String>,
    #[serde(default)]
    captcha_id: Option<String>,
    #[serde(default)]
    captcha: Option<String>,
}

async fn json_login(state: &AppState, headers: &HeaderMap, ip: &str, body: &Bytes) -> Response {
    let Ok(login) = serde_json::from_slice::<JsonLogin>(body) else {
        return ghost_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "body must be {\"username\",\"password\"}");
    };
    let request = LoginRequest {
        username: login.username,
        password: login.password,
        otp: login.otp,
        captcha_id: login.captcha_id,
        captcha: login.captcha,
        ip: ip.to_owned(),
        user_agent: user_agent(headers),
        ttl: Duration::from_secs(86_400),
    };
    match state.access.login(&request).await {
        Ok(outcome) => token_response(&outcome.token, None, None),
        Err(LoginFailure::SystemLocked) => ghost_error(StatusCode::FORBIDDEN, "FORBIDDEN", "system_locked"),
        Err(LoginFailure::CaptchaRequired { .. }) => {
            ghost_reason(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "captcha required", "captcha_required")
        }
        Err(LoginFailure::CaptchaInvalid { .. }) => {
            ghost_reason(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "wrong, expired or used captcha", "captcha_invalid")
        }
        Err(LoginFailure::Backend(e)) => {
            tracing::error!(error = %e, "login failed on a backend error");
            ghost_error(StatusCode::SERVICE_UNAVAILABLE, "INTERNAL_ERROR", "try again")
        }
        Err(_) => ghost_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "Invalid credentials"),
    }
}

async fn oauth_form(state: &AppState, headers: &HeaderMap, ip: &str, body: &Bytes) -> Response {
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let field = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    if let Err(e) = check_service(state, field("service")) {
        return e.into_response();
    }
    let scopes = match parse_scopes(field("scope").unwrap_or_default().split(' ').filter(|s| !s.is_empty())) {
        Ok(scopes) => scopes,
        Err(e) => return e.into_response(),
    };
    let offline = field("access_type") == Some("offline");
    let (principal, refresh) = match field("grant_type") {
        Some("password") => {
            let (Some(username), Some(password)) = (field("username"), field("password")) else {
                return bad_request("username and password are required").into_response();
            };
            let credential = Credential::Basic { username: username.to_owned(), secret: password.to_owned() };
            let principal = match state.access.authenticate(&credential, ip).await {
                Ok(p) => p,
                Err(e) => return auth_error(e).into_response(),
            };
            let refresh = if offline { new_refresh_token(state, &principal, ip).await } else { Ok(None) };
            match refresh {
                Ok(refresh) => (principal, refresh),
                Err(e) => return auth_error(e).into_response(),
            }
        }
        Some("refresh_token") => {
            let Some(token) = field("refresh_token") else {
                return bad_request("refresh_token is required").into_response();
            };
            match state.access.redeem_refresh_token(token, ip).await {
                Ok((principal, token)) => (principal, Some(token)),
                Err(e) => return auth_error(e).into_response(),
            }
        }
        _ => {
            return ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Unsupported)
                .message("unsupported grant_type")
                .into_response();
        }
    };
    let _ = headers;
    let scope_text = field("scope").unwrap_or_default().to_owned();
    match state.access.issue_registry_token(&principal, &scopes).await {
        Ok(token) => token_response(&token, Some(&scope_text), refresh.as_deref()),
        Err(e) => auth_error(e).into_response(),
    }
}

async fn new_refresh_token(state: &AppState, principal: &Principal, ip: &str) -> Result<Option<String>, AuthError> {
    // Only a user's own credential earns a refresh token (not a PAT: it already is one).
    let (Some(user), Restriction::Full) = (&principal.user, &principal.restriction) else { return Ok(None) };
    let record = state.access.user(user.id).await?.ok_or(AuthError::InvalidCredentials)?;
    let session =
        state.access.open_refresh_session(&record, ip).await.map_err(|e| AuthError::Backend(format!("{e:?}")))?;
    Ok(Some(state.access.issue_refresh_token(user, &session)?.token))
}

/// The caller of `/auth`: Basic (password or PAT), a PAT or login token as
/// Bearer, or anonymous. A scoped registry token cannot mint another.
async fn principal(state: &AppState, headers: &HeaderMap, ip: &str) -> Result<Principal, ApiError> {
    match credential(headers) {
        Ok(None) => Ok(Principal::anonymous()),
        Ok(Some(credential)) => {
            let principal = state.access.authenticate(&credential, ip).await.map_err(auth_error)?;
            if matches!(principal.restriction, Restriction::Scoped(_)) {
                return Err(auth_error(AuthError::InvalidToken));
            }
            Ok(principal)
        }
        Err(e) => Err(auth_error(e)),
    }
}

fn check_service(state: &AppState, service: Option<&str>) -> Result<(), ApiError> {
    match service {
        Some(s) if s != state.access.config().service => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Unsupported)
                .message("unknown service")
                .detail(json!({ "service": s })))
        }
        _ => Ok(()),
    }
}

fn parse_scopes<'a>(values: impl Iterator<Item = &'a str>) -> Result<Vec<ResourceScope>, ApiError> {
    values
        .flat_map(|v| v.split(' '))
        .filter(|v| !v.is_empty())
        .map(|v| {
            ResourceScope::parse(v).map_err(|_| {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Unsupported)
                    .message("malformed scope")
                    .detail(json!({ "scope": v }))
            })
        })
        .collect()
}

fn auth_error(e: AuthError) -> ApiError {
    match e {
        AuthError::Backend(detail) => ApiError::unavailable(detail),
        other => ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized)
            .message("authentication required")
            .detail(json!({ "reason": other.to_string() })),
    }
}

fn bad_request(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Unsupported).message(message)
}

fn token_response(token: &IssuedToken, scope: Option<&str>, refresh: Option<&str>) -> Response {
    let issued_at = berth_meta::rfc3339(token.issued_at);
    let mut body = json!({
        "token": token.token,
        "access_token": token.token,
        "expires_in": token.expires_in,
        "issued_at": issued_at,
    });
    if let Some(scope) = scope {
        body["scope"] = json!(scope);
    }
    if let Some(refresh) = refresh {
        body["refresh_token"] = json!(refresh);
    }
    let mut response = Json(body).into_response();
    // Tokens must never be cached by proxies.
    response.headers_mut().insert(header::CACHE_CONTROL, "no-store".parse().expect("static"));
    response
}

/// Seed 004's error shape for its JSON login.
fn ghost_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message, "details": {}}}))).into_response()
}

fn ghost_reason(status: StatusCode, code: &str, message: &str, reason: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message, "details": {"reason": reason}}});
    (status, Json(body)).into_response()
}

fn user_agent(headers: &HeaderMap) -> String {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}
