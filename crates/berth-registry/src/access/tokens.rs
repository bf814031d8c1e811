//! Issuing JWTs: scoped registry tokens (Docker token flow), login tokens and
//! OAuth2 refresh tokens.

use std::time::Duration;

use berth_access::jwt::{Claims, TokenKind};
use berth_access::scope::{AccessEntry, ResourceScope};
use berth_core::RepoName;

use super::{AccessService, AuthError, Principal, Restriction, UserInfo};

/// A signed token and when it was made.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
    /// Unix seconds.
    pub issued_at: i64,
    /// What a scoped token grants (empty for login tokens).
    pub access: Vec<AccessEntry>,
}

impl AccessService {
    /// The Docker token service: grants `requested ∩ allowed` for `principal`.
    /// Scopes for other resource types, or with malformed repository names,
    /// are granted nothing (the client then gets `insufficient_scope`).
    pub async fn issue_registry_token(
        &self,
        principal: &Principal,
        requested: &[ResourceScope],
    ) -> Result<IssuedToken, AuthError> {
        // A scoped token never widens into a new one: `/auth` is answered for
        // the credential's own rights.
        let mut access: Vec<AccessEntry> = Vec::new();
        for scope in requested {
            let granted: Vec<String> =
                match scope.kind.as_str() {
                    "repository" if scope.name.parse::<RepoName>().is_ok() => {
                        let perms = self.repo_perms(principal, &scope.name).await?;
                        let wanted = |action: &str| scope.actions.contains(action) || scope.actions.contains("*");
                        let mut granted = Vec::new();
                        for (action, allowed) in [("pull", perms.pull), ("push", perms.push), ("delete", perms.delete)]
                        {
                            if allowed && wanted(action) {
                                granted.push(action.to_owned());
                            }
                        }
                        granted
                    }
                    "registry" if scope.name == "catalog" && principal.user.is_some() => {
                        if scope.actions.contains("*") { vec!["*".to_owned()] } else { Vec::new() }
                    }
                    _ => Vec::new(),
                };
            if granted.is_empty() {
                continue;
            }
            match access.iter_mut().find(|e| e.kind == scope.kind && e.name == scope.name) {
                Some(entry) => {
                    for action in granted {
                        if !entry.actions.contains(&action) {
                            entry.actions.push(action);
                        }
                    }
                }
                None => {
                    access.push(AccessEntry { kind: scope.kind.clone(), name: scope.name.clone(), actions: granted })
                }
            }
        }
        let sub = principal.user.as_ref().map(|u| u.id.to_string()).unwrap_or_default();
        self.sign(TokenKind::Registry, sub, None, access, self.config.registry_token_ttl)
    }

    /// A login token for a session (management API, JSON `/auth`).
    pub fn issue_login_token(&self, user: &UserInfo, session: &str, ttl: Duration) -> Result<IssuedToken, AuthError> {
        self.sign(TokenKind::Login, user.id.to_string(), Some(session.to_owned()), Vec::new(), ttl)
    }

    /// An OAuth2 refresh token, tied to a session so logout and password changes end it.
    pub fn issue_refresh_token(&self, user: &UserInfo, session: &str) -> Result<IssuedToken, AuthError> {
        let ttl = self.config.refresh_token_ttl;
        self.sign(TokenKind::Refresh, user.id.to_string(), Some(session.to_owned()), Vec::new(), ttl)
    }

    /// Verifies a refresh token and returns its user, with the user's full rights.
    pub async fn redeem_refresh_token(&self, token: &str, ip: &str) -> Result<(Principal, String), AuthError> {
        let claims = self
            .signer()
            .verify(token, &self.config.issuer, &self.config.service, TokenKind::Refresh)
            .map_err(|e| match e {
                berth_access::jwt::TokenError::Expired => AuthError::Expired,
                _ => AuthError::InvalidToken,
            })?;
        let user_id: i64 = claims.sub.parse().map_err(|_| AuthError::InvalidToken)?;
        let sid = claims.sid.ok_or(AuthError::InvalidToken)?;
        let user = self.user(user_id).await?.ok_or(AuthError::InvalidToken)?;
        if !user.is_active {
            return Err(AuthError::InactiveUser);
        }
        // Refresh tokens are used by daemons whose address may change: no IP binding.
        self.check_session_bound(&sid, user.id, ip, false).await?;
        let principal =
            Principal { user: Some(super::user_info(&user)), restriction: Restriction::Full, session: Some(sid) };
        Ok((principal, token.to_owned()))
    }

    fn sign(
        &self,
        kind: TokenKind,
        sub: String,
        sid: Option<String>,
        access: Vec<AccessEntry>,
        ttl: Duration,
    ) -> Result<IssuedToken, AuthError> {
        let now = berth_meta::now_unix();
        let ttl_secs = ttl.as_secs();
        let claims = Claims {
            iss: self.config.issuer.clone(),
            sub,
            aud: self.config.service.clone(),
            exp: now + ttl_secs as i64,
            nbf: now,
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            sid,
            access: access.clone(),
            kind,
        };
        let token = self.signer().sign(&claims).map_err(|e| AuthError::Backend(e.to_string()))?;
        Ok(IssuedToken { token, expires_in: ttl_secs, issued_at: now, access })
    }
}
