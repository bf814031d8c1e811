//! The JSON management surfaces under `/api/v1`: seed 000's security API (auth,
//! system lock, audit logs) and seed 004's users, tokens and audit.
//!
//! Both authenticate the same way ([`caller`]): a login JWT (`Bearer`), a
//! personal access token (`Token`/`Bearer berth_pat_…`) or the browser session
//! cookie, which needs the CSRF header on unsafe methods. Scoped registry tokens
//! are for `/v2` only. Errors keep each seed's shape ([`Surface`]).

pub mod accel;
pub mod allowlist;
pub mod audit;
pub mod envelope;
pub mod gc;
pub mod images;
pub mod immutability;
pub mod monitoring;
pub mod projects;
pub mod quota;
pub mod repositories;
pub mod retention;
pub mod security;
pub mod system;
pub mod twofactor;
pub mod users;
pub mod webhooks;

use axum::Json;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_registry::access::{Actor, AuthError, Credential, Principal, Restriction};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{CSRF_COOKIE, SESSION_COOKIE, client_ip, cookie, credential};

/// Which seed's error envelope a route answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Seed 000: `{"error":"<message>","code":"<code>"}`.
    Security,
    /// Seed 004: `{"error":{"code","message","details"}}`.
    GhostDock,
}

/// A failed management request.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    /// The security code (`invalid_jwt`, `permission_denied`, …).
    pub code: &'static str,
    pub message: String,
    pub surface: Surface,
    /// Extra top-level fields (`remaining_attempts`, …) on the security surface.
    pub extra: Value,
}

impl Problem {
    pub fn new(surface: Surface, status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Problem { status, code, message: message.into(), surface, extra: Value::Null }
    }

    pub fn bad_request(surface: Surface, message: impl Into<String>) -> Self {
        let code = if surface == Surface::Security { "invalid_request" } else { "INVALID_REQUEST" };
        Problem::new(surface, StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(surface: Surface, message: impl Into<String>) -> Self {
        Problem::new(surface, StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    pub fn forbidden(surface: Surface) -> Self {
        Problem::new(surface, StatusCode::FORBIDDEN, "permission_denied", "permission denied")
    }

    pub fn internal(surface: Surface, detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "management request failed");
        Problem::new(surface, StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error")
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        if self.extra.is_null() {
            self.extra = json!({});
        }
        self.extra[key] = value;
        self
    }

    /// Seed 004's code for a status.
    fn ghost_code(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST => "INVALID_REQUEST",
            StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
            StatusCode::FORBIDDEN => "FORBIDDEN",
            StatusCode::NOT_FOUND if self.code == "REPOSITORY_NOT_FOUND" => "REPOSITORY_NOT_FOUND",
            StatusCode::NOT_FOUND => "NOT_FOUND",
            StatusCode::CONFLICT => "CONFLICT",
            StatusCode::TOO_MANY_REQUESTS => "RATE_LIMITED",
            _ => "INTERNAL_ERROR",
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = match self.surface {
            Surface::Security => {
                let mut body = json!({ "error": self.message, "code": self.code });
                if let Value::Object(extra) = &self.extra {
                    for (k, v) in extra {
                        body[k] = v.clone();
                    }
                }
                body
            }
            Surface::GhostDock => {
                let mut details = json!({});
                if self.ghost_code() != self.code {
                    details["reason"] = json!(self.code);
                }
                if let Value::Object(extra) = &self.extra {
                    for (k, v) in extra {
                        details[k] = v.clone();
                    }
                }
                json!({ "error": { "code": self.ghost_code(), "message": self.message, "details": details } })
            }
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<berth_meta::MetaError> for Problem {
    fn from(e: berth_meta::MetaError) -> Self {
        Problem::internal(Surface::Security, e)
    }
}

/// The authenticated caller of a management request.
pub struct Caller {
    pub principal: Principal,
    pub actor: Actor,
    /// Authenticated by the browser cookie (CSRF applies).
    pub via_cookie: bool,
    /// False for an admin calling from outside the admin IP allow-list.
    pub admin_ip_allowed: bool,
}

impl Caller {
    pub fn user_id(&self) -> i64 {
        self.principal.user_id().unwrap_or_default()
    }

    /// A PAT narrows its owner; a login (token or cookie) does not.
    pub fn is_login(&self) -> bool {
        self.principal.restriction == Restriction::Full
    }

    /// Admins only, and only from the allow-listed addresses when the list is on (API.md §6.4).
    pub fn require_admin(&self, surface: Surface) -> Result<(), Problem> {
        if !self.principal.is_admin() {
            return Err(Problem::forbidden(surface));
        }
        if !self.admin_ip_allowed {
            return Err(Problem::new(
                surface,
                StatusCode::FORBIDDEN,
                "ip_not_allowed",
                "admin access is not allowed from this IP address",
            ));
        }
        Ok(())
    }
}

/// The actor for requests without a caller (login, unlock).
pub fn anonymous_actor(parts: &Parts, username: &str) -> Actor {
    Actor {
        user_id: None,
        username: username.to_owned(),
        ip: client_ip(&parts.extensions),
        user_agent: user_agent(&parts.headers),
    }
}

pub fn user_agent(headers: &HeaderMap) -> String {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// Authenticates a management request (API.md §3.1, §3.3).
pub async fn caller(state: &AppState, parts: &Parts, surface: Surface) -> Result<Caller, Problem> {
    let ip = client_ip(&parts.extensions);
    let unauthorized =
        |code: &'static str, message: &str| Problem::new(surface, StatusCode::UNAUTHORIZED, code, message);
    let (credential, via_cookie) = match credential(&parts.headers) {
        Ok(Some(credential)) => (credential, false),
        Ok(None) => match cookie(&parts.headers, SESSION_COOKIE) {
            Some(jwt) => (Credential::Bearer(jwt.to_owned()), true),
            None => return Err(unauthorized("no_auth_header", "authorization required")),
        },
        Err(_) => return Err(unauthorized("invalid_format", "malformed Authorization header")),
    };
    if matches!(credential, Credential::Basic { .. }) {
        return Err(unauthorized("invalid_format", "use a Bearer token or a personal access token"));
    }
    let principal = match state.access.authenticate(&credential, &ip).await {
        Ok(p) => p,
        Err(AuthError::Backend(e)) => return Err(Problem::internal(surface, e)),
        Err(AuthError::InactiveUser) => return Err(unauthorized("inactive_user", "user is disabled")),
        Err(AuthError::IpMismatch) => return Err(unauthorized("ip_mismatch", "session used from another IP address")),
        Err(AuthError::Expired) => return Err(unauthorized("invalid_jwt", "token expired")),
        Err(_) if matches!(&credential, Credential::Bearer(t) if berth_access::secret::looks_like_pat(t)) => {
            return Err(unauthorized("invalid_token", "invalid access token"));
        }
        Err(_) => return Err(unauthorized("invalid_jwt", "invalid token")),
    };
    if matches!(principal.restriction, Restriction::Scoped(_)) {
        return Err(unauthorized("invalid_token", "registry tokens are valid on /v2 only"));
    }
    if via_cookie && !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        let Some(presented) = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()) else {
            return Err(Problem::new(surface, StatusCode::FORBIDDEN, "csrf_missing", "CSRF token missing"));
        };
        let cookie_matches = cookie(&parts.headers, CSRF_COOKIE)
            .is_some_and(|c| berth_access::secret::constant_time_eq(c.as_bytes(), presented.as_bytes()));
        let sid = principal.session.as_deref().unwrap_or_default();
        let session_matches = state.access.check_csrf(sid, presented).await.unwrap_or(false);
        if !(cookie_matches && session_matches) {
            return Err(Problem::new(surface, StatusCode::FORBIDDEN, "csrf_invalid", "invalid CSRF token"));
        }
    }
    let admin_ip_allowed =
        !principal.is_admin() || state.access.admin_ip_allowed(&ip).await.map_err(|e| Problem::internal(surface, e))?;
    let actor = crate::auth::actor(&principal, &ip, &parts.headers);
    Ok(Caller { principal, actor, via_cookie, admin_ip_allowed })
}

/// The caller with authentication on; `None` (everyone may act) with it off.
pub async fn optional_caller(state: &AppState, parts: &Parts, surface: Surface) -> Result<Option<Caller>, Problem> {
    if !state.access.enabled() {
        return Ok(None);
    }
    Ok(Some(caller(state, parts, surface).await?))
}

/// The actor of the events a management change causes: the caller, or just the
/// client's address with authentication off.
pub fn event_actor(caller: &Option<Caller>, parts: &Parts) -> berth_meta::EventActor {
    match caller {
        Some(c) => berth_meta::EventActor::new(c.actor.username.clone(), c.actor.ip.clone()),
        None => berth_meta::EventActor::new("", crate::auth::client_ip(&parts.extensions)),
    }
}

/// Refuses management writes while the system is locked (API.md §3.3).
pub async fn refuse_if_locked(state: &AppState, surface: Surface) -> Result<(), Problem> {
    match state.access.lock_status().await {
        Ok(status) if status.is_locked => {
            Err(Problem::new(surface, StatusCode::FORBIDDEN, "system_locked", "the system is locked"))
        }
        Ok(_) => Ok(()),
        Err(e) => Err(Problem::internal(surface, e)),
    }
}

/// The largest page number: its offset, at most 100 per page, stays far from
/// overflowing (a page past the end is an empty list, not an error).
pub const MAX_PAGE: i64 = 1_000_000_000;

/// `page`/`limit` (seed 004: 50 by default, at most 100) or `page`/`page_size`.
pub fn paging(
    query: &[(String, String)],
    size_key: &str,
    default: i64,
    surface: Surface,
) -> Result<(i64, i64), Problem> {
    let get = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let page =
        match get("page") {
            None => 1,
            Some(v) => v.parse::<i64>().ok().filter(|p| (1..=MAX_PAGE).contains(p)).ok_or_else(|| {
                Problem::bad_request(surface, format!("page must be an integer from 1 to {MAX_PAGE}"))
            })?,
        };
    let size = match get(size_key) {
        None => default,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| Problem::bad_request(surface, format!("{size_key} must be a positive integer")))?
            .min(100),
    };
    Ok((page, size))
}

/// Decoded query pairs of a request.
pub fn query_pairs(parts: &Parts) -> Vec<(String, String)> {
    parts.uri.query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

pub use berth_meta::rfc3339;

/// Reads a JSON body (at most 64 KiB) into `T`.
pub async fn json_body<T: serde::de::DeserializeOwned>(body: axum::body::Body, surface: Surface) -> Result<T, Problem> {
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| Problem::bad_request(surface, "request body too large or unreadable"))?;
    serde_json::from_slice(&bytes).map_err(|e| Problem::bad_request(surface, format!("invalid JSON body: {e}")))
}
