//! The claims berth puts in its JWTs.

use serde::{Deserialize, Serialize};

use crate::{scope::AccessEntry, secret::random_token};

/// What a token is for; a token of one kind is never accepted as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// Management/UI login token: carries the user's own rights.
    Login,
    /// Docker registry token from `/auth`: carries only its `access` scopes.
    Registry,
    /// OAuth2 refresh token for `/auth`: exchanges for registry tokens only.
    Refresh,
}

impl TokenKind {
    /// The wire form (`login`, `registry`, `refresh`).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Login => "login",
            TokenKind::Registry => "registry",
            TokenKind::Refresh => "refresh",
        }
    }
}

/// The payload of a berth JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: this registry's external URL or configured name.
    pub iss: String,
    /// Subject: the user name.
    pub sub: String,
    /// Audience: the service (`berth` for registry tokens).
    pub aud: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Not valid before, Unix seconds.
    pub nbf: i64,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Unique token id, for revocation lists and logs.
    pub jti: String,
    /// The login session this token belongs to; revoking the session revokes the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Docker token `access` claim: what a registry token grants.
    #[serde(default)]
    pub access: Vec<AccessEntry>,
    /// What the token is for.
    pub kind: TokenKind,
}

impl Claims {
    /// Claims valid from `now` for `ttl_secs`, with a fresh random `jti`, no session and no access.
    pub fn new(kind: TokenKind, issuer: &str, subject: &str, audience: &str, now: i64, ttl_secs: i64) -> Self {
        Claims {
            iss: issuer.to_owned(),
            sub: subject.to_owned(),
            aud: audience.to_owned(),
            exp: now.saturating_add(ttl_secs),
            nbf: now,
            iat: now,
            jti: random_token("", 16),
            sid: None,
            access: Vec::new(),
            kind,
        }
    }

    /// These claims bound to login session `sid`.
    pub fn with_session(mut self, sid: impl Into<String>) -> Self {
        self.sid = Some(sid.into());
        self
    }

    /// These claims granting `access`.
    pub fn with_access(mut self, access: Vec<AccessEntry>) -> Self {
        self.access = access;
        self
    }
}
