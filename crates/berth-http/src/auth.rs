//! Reading credentials off a request, and the `/v2` access check.
//!
//! Every `/v2` request passes [`authorize_v2`] before it is dispatched: the
//! endpoint and method decide the action (`GET`/`HEAD` pull, writes push,
//! `DELETE` delete), the principal's rights on the repository decide the answer.
//! Failures follow API.md §3.3: no or bad credentials, or a scoped token that
//! lacks the scope, get 401 with a `Bearer` challenge; a known identity without
//! the right gets 403 `DENIED`.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use berth_core::ErrorCode;
use berth_registry::access::{AccessService, Actor, AuthError, Credential, Principal, Restriction};
use serde_json::json;

use crate::error::ApiError;

/// The name of the browser session cookie (its value is a login JWT).
pub const SESSION_COOKIE: &str = "berth_session";
/// The CSRF cookie, echoed by the UI in `X-CSRF-Token`.
pub const CSRF_COOKIE: &str = "berth_csrf";

/// The client's address as seen on the socket.
pub fn client_ip(extensions: &axum::http::Extensions) -> String {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default()
}

/// The `Authorization` header as a credential. `Ok(None)` when absent;
/// `Err` when present but malformed.
pub fn credential(headers: &HeaderMap) -> Result<Option<Credential>, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().map_err(|_| AuthError::InvalidCredentials)?.trim();
    let (scheme, rest) = value.split_once(' ').ok_or(AuthError::InvalidCredentials)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded =
            base64::engine::general_purpose::STANDARD.decode(rest).map_err(|_| AuthError::InvalidCredentials)?;
        let decoded = String::from_utf8(decoded).map_err(|_| AuthError::InvalidCredentials)?;
        let (username, secret) = decoded.split_once(':').ok_or(AuthError::InvalidCredentials)?;
        if username.is_empty() {
            return Err(AuthError::InvalidCredentials);
        }
        return Ok(Some(Credential::Basic { username: username.to_owned(), secret: secret.to_owned() }));
    }
    if (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token")) && !rest.is_empty() {
        return Ok(Some(Credential::Bearer(rest.to_owned())));
    }
    Err(AuthError::InvalidCredentials)
}

/// A cookie's value.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// What a `/v2` request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing (`/v2/_ping`).
    Nothing,
    /// Any valid credential (`/v2/`).
    Authenticated,
    /// `registry:catalog:*` (`/v2/_catalog`); the listing is then filtered per repository.
    Catalog,
    Pull,
    Push,
    Delete,
}

impl Need {
    fn scope_actions(self) -> &'static str {
        match self {
            Need::Push => "pull,push",
            Need::Delete => "delete",
            _ => "pull",
        }
    }
}

/// Authenticates a `/v2` request and checks it may do `need` on `repo`.
/// With auth off, everyone is an anonymous principal with every right.
pub async fn authorize_v2(
    access: &AccessService,
    external_url: &str,
    headers: &HeaderMap,
    ip: &str,
    need: Need,
    repo: Option<&str>,
) -> Result<Principal, ApiError> {
    if !access.enabled() || need == Need::Nothing {
        return Ok(Principal::anonymous());
    }
    let challenge = |error: Option<&str>| challenge(external_url, &access.config().service, need, repo, error);
    let principal = match credential(headers) {
        Ok(None) => Principal::anonymous(),
        Ok(Some(credential)) => match access.authenticate(&credential, ip).await {
            Ok(principal) => principal,
            Err(AuthError::Backend(detail)) => {
                return Err(ApiError::unavailable(detail));
            }
            Err(e) => {
                let error = if matches!(credential, Credential::Bearer(_)) { Some("invalid_token") } else { None };
                return Err(unauthorized(challenge(error), &e));
            }
        },
        Err(e) => return Err(unauthorized(challenge(None), &e)),
    };
    let anonymous_credential = principal.user.is_none() && principal.restriction == Restriction::Full;
    let allowed = match (need, repo) {
        (Need::Authenticated, _) => !anonymous_credential,
        (Need::Catalog, _) => match &principal.restriction {
            Restriction::Scoped(access) => berth_registry::access::scoped_catalog(access),
            _ => principal.user.is_some(),
        },
        (_, None) => !anonymous_credential,
        (need, Some(repo)) => {
            let perms = access.repo_perms(&principal, repo).await.map_err(ApiError::unavailable)?;
            match need {
                Need::Pull => perms.pull,
                Need::Push => perms.push,
                Need::Delete => perms.delete,
                Need::Authenticated | Need::Catalog | Need::Nothing => true,
            }
        }
    };
    if allowed {
        return Ok(principal);
    }
    Err(match principal.restriction {
        _ if anonymous_credential => unauthorized(challenge(None), &AuthError::InvalidCredentials),
        Restriction::Scoped(_) => ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized)
            .message("authorization token lacks the scope for this request")
            .header(header::WWW_AUTHENTICATE, challenge(Some("insufficient_scope"))),
        _ => ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Denied)
            .message("requested access to the resource is denied")
            .detail(json!({ "repository": repo, "action": need.scope_actions() })),
    })
}

fn unauthorized(challenge: String, why: &AuthError) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized)
        .message("authentication required")
        .detail(json!({ "reason": why.to_string() }))
        .header(header::WWW_AUTHENTICATE, challenge)
}

/// `Bearer realm="…/auth",service="berth",scope="repository:name:actions"`.
pub fn challenge(external_url: &str, service: &str, need: Need, repo: Option<&str>, error: Option<&str>) -> String {
    let mut value = format!("Bearer realm=\"{}/auth\",service=\"{service}\"", external_url.trim_end_matches('/'));
    match (need, repo) {
        (Need::Pull | Need::Push | Need::Delete, Some(repo)) => {
            value.push_str(&format!(",scope=\"repository:{repo}:{}\"", need.scope_actions()));
        }
        (Need::Catalog, _) => {
            value.push_str(",scope=\"registry:catalog:*\"");
        }
        _ => {}
    }
    if let Some(error) = error {
        value.push_str(&format!(",error=\"{error}\""));
    }
    value
}

/// The URL clients reach berth at: the configured external URL, else the
/// request's `Host` (with the scheme berth serves).
pub fn external_base(configured: Option<&str>, tls: bool, headers: &HeaderMap) -> String {
    if let Some(url) = configured {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    format!("{}://{host}", if tls { "https" } else { "http" })
}

/// The actor of a request, for audit entries.
pub fn actor(principal: &Principal, ip: &str, headers: &HeaderMap) -> Actor {
    Actor {
        user_id: principal.user_id(),
        username: principal.username().to_owned(),
        ip: ip.to_owned(),
        user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned(),
    }
}
