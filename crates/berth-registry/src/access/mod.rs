//! The access service: who is calling, and what may they do.
//!
//! Credentials come in four forms (API.md §3.1): a password (Basic), a personal
//! access token (`berth_pat_…` as Basic password, `Bearer` or `Token`), a login
//! JWT (management sessions) and a scoped registry JWT from the Docker token
//! service. [`AccessService::authenticate`] turns any of them into a
//! [`Principal`]; [`AccessService::repo_perms`] decides what the principal may
//! do with one repository. The decisions themselves are pure functions in
//! `berth_access::permissions`; this module feeds them from the database, with
//! short caches so that a `docker pull` of many layers costs one argon2
//! verification, not one per request.

mod allowlist;
mod audit;
mod bootstrap;
mod captcha;
mod login;
#[cfg(test)]
mod tests;
mod tokens;
mod twofactor;

use std::sync::Arc;
use std::time::Duration;

use berth_access::jwt::{Claims, TokenKind, TokenSigner};
use berth_access::permissions::{
    self, MemberRole, Perms, ProjectAccess, Subject, TokenPermission, UserRole, Visibility,
};
use berth_access::scope::AccessEntry;
use berth_access::secret;
use berth_meta::{AuditDraft, Metadata, TokenRecord, UserRecord};
use moka::sync::Cache;

pub use allowlist::{AllowList, AllowListError, Cidr};
pub use audit::Actor;
pub use bootstrap::Bootstrap;
pub use captcha::{CAPTCHA_TTL_SECS, Captcha};
pub use login::{LoginFailure, LoginOutcome, LoginRequest};
pub use tokens::IssuedToken;
pub use twofactor::{RECOVERY_CODES, TotpSetup, TwoFactorError};

/// How berth authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Users, projects and tokens are enforced (the default).
    Token,
    /// No authentication at all: every request may do everything. For throwaway setups.
    None,
}

/// Knobs of the access service.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    pub mode: AuthMode,
    /// `service` of the Docker token flow and the JWT audience.
    pub service: String,
    /// JWT issuer.
    pub issuer: String,
    /// Lifetime of scoped `/auth` tokens.
    pub registry_token_ttl: Duration,
    /// Lifetime of login and JSON `/auth` tokens.
    pub login_token_ttl: Duration,
    /// A login session ends after this long without a request.
    pub session_idle: Duration,
    /// Lifetime of OAuth2 refresh tokens.
    pub refresh_token_ttl: Duration,
    /// Default PAT lifetime when the request names none.
    pub pat_default_ttl: Duration,
    /// Reject a session used from another IP than the one that logged in.
    pub bind_session_ip: bool,
    /// How long verified credentials and permission lookups are reused.
    pub cache_ttl: Duration,
    /// Failures (per account and IP) after which a login needs a captcha.
    pub captcha_after: u32,
    /// Failures from one IP, within the window, that lock the whole system.
    pub lock_after_ip_failures: u32,
    /// Failures on one account, within the window, that lock that account.
    pub account_lock_after: u32,
    /// While the system is locked, refuse `/v2` pulls too (not only writes).
    pub lock_blocks_pulls: bool,
    /// Write an audit entry for every manifest pull too (pushes and deletes always are).
    pub audit_pulls: bool,
    /// How long a locked account stays locked.
    pub account_lock_duration: Duration,
    /// The window failures are counted over.
    pub failure_window: Duration,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            mode: AuthMode::Token,
            service: "berth".into(),
            issuer: "berth".into(),
            registry_token_ttl: Duration::from_secs(300),
            login_token_ttl: Duration::from_secs(86_400),
            session_idle: Duration::from_secs(1800),
            refresh_token_ttl: Duration::from_secs(90 * 86_400),
            pat_default_ttl: Duration::from_secs(90 * 86_400),
            bind_session_ip: true,
            cache_ttl: Duration::from_secs(5),
            captcha_after: 3,
            lock_after_ip_failures: 5,
            lock_blocks_pulls: false,
            audit_pulls: false,
            account_lock_after: 10,
            account_lock_duration: Duration::from_secs(900),
            failure_window: Duration::from_secs(900),
        }
    }
}

/// A presented credential, as parsed from a request.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// `Basic user:secret`; the secret may be a password or a PAT.
    Basic { username: String, secret: String },
    /// `Bearer <jwt>` or `Bearer berth_pat_…` / `Token berth_pat_…`.
    Bearer(String),
}

impl std::fmt::Debug for Credential {
    // Never print a secret, not even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credential::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// The user behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub id: i64,
    pub username: String,
    pub role: UserRole,
}

/// What narrows a user's own rights for this request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restriction {
    /// The user's full rights (password, login session).
    Full,
    /// A personal access token's permissions and repository globs.
    Pat { token_id: i64, permissions: Vec<String>, repositories: Vec<String> },
    /// A scoped registry token: only what it grants.
    Scoped(Vec<AccessEntry>),
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `None` for anonymous.
    pub user: Option<UserInfo>,
    pub restriction: Restriction,
    /// The login session, for login JWTs and cookies.
    pub session: Option<String>,
}

impl Principal {
    pub fn anonymous() -> Self {
        Principal { user: None, restriction: Restriction::Full, session: None }
    }

    pub fn is_admin(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.role == UserRole::Admin) && self.restriction == Restriction::Full
    }

    pub fn username(&self) -> &str {
        self.user.as_ref().map_or("", |u| u.username.as_str())
    }

    pub fn user_id(&self) -> Option<i64> {
        self.user.as_ref().map(|u| u.id)
    }
}

/// Why a credential was refused. Messages never contain the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    InvalidToken,
    #[error("user is disabled")]
    InactiveUser,
    #[error("session used from another IP address")]
    IpMismatch,
    #[error("two-factor users must use a personal access token here")]
    TotpRequiresToken,
    #[error("{0}")]
    Backend(String),
}

impl From<berth_meta::MetaError> for AuthError {
    fn from(e: berth_meta::MetaError) -> Self {
        AuthError::Backend(e.to_string())
    }
}

/// A project's visibility and one user's role in it.
type ProjectView = (String, Option<String>);

/// The access service.
pub struct AccessService {
    meta: Arc<dyn Metadata>,
    signer: TokenSigner,
    config: AccessConfig,
    /// Verified Basic passwords: sha256(user, password) → user id.
    verified_passwords: Cache<[u8; 32], i64>,
    /// Users by id (role, active flag), refreshed every `cache_ttl`.
    users: Cache<i64, Arc<UserRecord>>,
    /// PATs by lookup prefix.
    pats: Cache<String, Arc<TokenRecord>>,
    /// (project, user id) → visibility and member role; `None` when the project is missing.
    projects: Cache<(String, Option<i64>), Option<ProjectView>>,
    /// Repository → its own visibility (`None`: the project's applies).
    repo_visibility: Cache<String, Option<String>>,
    /// Live login sessions: id → (user id, ip, expires at).
    sessions: Cache<String, Option<(i64, String, i64)>>,
    /// Whether the system is locked, re-read every `cache_ttl` (checked on every `/v2` write).
    locked: Cache<(), bool>,
    /// The admin IP allow-list (one entry).
    allowlist: Cache<(), Arc<AllowList>>,
    /// Where a name that is no project of its own is served from in the
    /// pull-through cache's mirror mode (`library/nginx` → `docker.io/library/nginx`).
    mirror_alias: std::sync::OnceLock<MirrorAlias>,
}

/// Maps a repository name to the cache repository mirror mode serves it from.
pub type MirrorAlias = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl std::fmt::Debug for AccessService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessService").field("config", &self.config).finish_non_exhaustive()
    }
}

impl AccessService {
    pub fn new(meta: Arc<dyn Metadata>, signer: TokenSigner, config: AccessConfig) -> Self {
        let ttl = config.cache_ttl;
        AccessService {
            meta,
            signer,
            verified_passwords: short_cache(10_000, ttl.max(Duration::from_secs(60))),
            users: short_cache(10_000, ttl),
            pats: short_cache(10_000, ttl),
            projects: short_cache(100_000, ttl),
            repo_visibility: short_cache(100_000, ttl),
            sessions: short_cache(10_000, ttl),
            locked: short_cache(1, ttl),
            allowlist: short_cache(1, ttl),
            mirror_alias: std::sync::OnceLock::new(),
            config,
        }
    }

    pub fn config(&self) -> &AccessConfig {
        &self.config
    }

    pub fn enabled(&self) -> bool {
        self.config.mode == AuthMode::Token
    }

    pub fn meta(&self) -> &Arc<dyn Metadata> {
        &self.meta
    }

    /// Turns a credential into a principal.
    pub async fn authenticate(&self, credential: &Credential, ip: &str) -> Result<Principal, AuthError> {
        match credential {
            Credential::Basic { username, secret } if secret::looks_like_pat(secret) => {
                let principal = self.authenticate_pat(secret).await?;
                // The Basic user name must be the token's owner (a PAT is not a skeleton key).
                if principal.username() != username {
                    return Err(AuthError::InvalidCredentials);
                }
                Ok(principal)
            }
            Credential::Basic { username, secret } => self.authenticate_password(username, secret, ip).await,
            Credential::Bearer(token) if secret::looks_like_pat(token) => self.authenticate_pat(token).await,
            Credential::Bearer(token) => self.authenticate_jwt(token, ip).await,
        }
    }

    async fn authenticate_password(&self, username: &str, password: &str, ip: &str) -> Result<Principal, AuthError> {
        let key = secret::hash_credential_cache_key(username, password);
        let user = match self.verified_passwords.get(&key) {
            Some(id) => self.user(id).await?.ok_or(AuthError::InvalidCredentials)?,
            None => {
                // Basic auth is a login too: a locked account stays locked here, and
                // failures count towards the lockout, so `/v2` is no way around it.
                let now = berth_meta::now_unix();
                let since = now - self.config.failure_window.as_secs() as i64;
                let (account_failures, _) = self.meta.login_failures(username, ip, since).await?;
                if self.config.account_lock_after > 0 && account_failures >= i64::from(self.config.account_lock_after) {
                    return Err(AuthError::InvalidCredentials);
                }
                let user = self.meta.user_by_name(username).await?;
                // Verify even for unknown users, so response time does not reveal which names exist.
                let hash = user.as_ref().map(|u| u.password_hash.clone());
                let password = password.to_owned();
                let ok = tokio::task::spawn_blocking(move || {
                    berth_access::password::verify_password_or_dummy(&password, hash.as_deref())
                })
                .await
                .map_err(|e| AuthError::Backend(e.to_string()))?;
                let Some(user) = user.filter(|_| ok) else {
                    self.meta.record_login_failure(username, ip, now).await?;
                    return Err(AuthError::InvalidCredentials);
                };
                self.verified_passwords.insert(key, user.id);
                let user = Arc::new(user);
                self.users.insert(user.id, user.clone());
                user
            }
        };
        if !user.is_active {
            return Err(AuthError::InactiveUser);
        }
        if user.totp_enabled {
            return Err(AuthError::TotpRequiresToken);
        }
        Ok(Principal { user: Some(user_info(&user)), restriction: Restriction::Full, session: None })
    }

    async fn authenticate_pat(&self, token: &str) -> Result<Principal, AuthError> {
        let lookup = secret::pat_lookup(token).ok_or(AuthError::InvalidToken)?;
        let record = match self.pats.get(lookup) {
            Some(record) => record,
            None => {
                let record = self.meta.token_by_lookup(lookup).await?.ok_or(AuthError::InvalidToken)?;
                let record = Arc::new(record);
                self.pats.insert(lookup.to_owned(), record.clone());
                record
            }
        };
        if !secret::constant_time_eq(secret::hash_pat(token).as_bytes(), record.hash.as_bytes()) {
            return Err(AuthError::InvalidToken);
        }
        let now = berth_meta::now_unix();
        if record.revoked_at.is_some() {
            return Err(AuthError::InvalidToken);
        }
        if record.expires_at.is_some_and(|at| at <= now) {
            return Err(AuthError::Expired);
        }
        let user = self.user(record.user_id).await?.ok_or(AuthError::InvalidToken)?;
        if !user.is_active {
            return Err(AuthError::InactiveUser);
        }
        // last_used is informational: write it at most once a minute per token.
        if record.last_used.is_none_or(|at| now - at >= 60) {
            let mut touched = (*record).clone();
            touched.last_used = Some(now);
            self.pats.insert(lookup.to_owned(), Arc::new(touched));
            let meta = self.meta.clone();
            let id = record.id;
            tokio::spawn(async move {
                if let Err(e) = meta.touch_token(id, now).await {
                    tracing::debug!(error = %e, "could not record token use");
                }
            });
        }
        Ok(Principal {
            user: Some(user_info(&user)),
            restriction: Restriction::Pat {
                token_id: record.id,
                permissions: record.permissions.clone(),
                repositories: record.repositories.clone(),
            },
            session: None,
        })
    }

    async fn authenticate_jwt(&self, token: &str, ip: &str) -> Result<Principal, AuthError> {
        let claims = self.verify_any(token)?;
        if claims.sub.is_empty() && claims.kind == TokenKind::Registry {
            // An anonymous token from `/auth` (public pulls).
            return Ok(Principal { user: None, restriction: Restriction::Scoped(claims.access), session: None });
        }
        let user_id: i64 = claims.sub.parse().map_err(|_| AuthError::InvalidToken)?;
        let user = self.user(user_id).await?.ok_or(AuthError::InvalidToken)?;
        if !user.is_active {
            return Err(AuthError::InactiveUser);
        }
        match claims.kind {
            TokenKind::Registry => Ok(Principal {
                user: Some(user_info(&user)),
                restriction: Restriction::Scoped(claims.access),
                session: None,
            }),
            TokenKind::Login => {
                let sid = claims.sid.ok_or(AuthError::InvalidToken)?;
                self.check_session(&sid, user.id, ip).await?;
                Ok(Principal { user: Some(user_info(&user)), restriction: Restriction::Full, session: Some(sid) })
            }
            TokenKind::Refresh => Err(AuthError::InvalidToken),
        }
    }

    /// Verifies a JWT of any kind this service issues.
    fn verify_any(&self, token: &str) -> Result<Claims, AuthError> {
        let mut last = AuthError::InvalidToken;
        for kind in [TokenKind::Registry, TokenKind::Login] {
            match self.signer.verify(token, &self.config.issuer, &self.config.service, kind) {
                Ok(claims) => return Ok(claims),
                Err(berth_access::jwt::TokenError::Expired) => last = AuthError::Expired,
                Err(_) => {}
            }
        }
        Err(last)
    }

    /// Checks that a login session is live, bound to this IP when configured, and
    /// keeps its idle timer fresh.
    pub async fn check_session(&self, sid: &str, user_id: i64, ip: &str) -> Result<(), AuthError> {
        self.check_session_bound(sid, user_id, ip, self.config.bind_session_ip).await
    }

    /// [`Self::check_session`] with the IP binding chosen by the caller.
    pub(crate) async fn check_session_bound(
        &self,
        sid: &str,
        user_id: i64,
        ip: &str,
        bind_ip: bool,
    ) -> Result<(), AuthError> {
        let now = berth_meta::now_unix();
        let live = match self.sessions.get(sid) {
            Some(live) => live,
            None => {
                let live = self.meta.session(sid).await?.and_then(|s| {
                    let idle_limit = s.last_seen + self.config.session_idle.as_secs() as i64;
                    (s.revoked_at.is_none() && s.expires_at > now && idle_limit > now).then_some((
                        s.user_id,
                        s.ip,
                        s.expires_at,
                    ))
                });
                if live.is_some() {
                    // Seen now: refresh the idle timer (at most once per cache period).
                    let meta = self.meta.clone();
                    let sid = sid.to_owned();
                    tokio::spawn(async move {
                        let _ = meta.touch_session(&sid, now).await;
                    });
                }
                self.sessions.insert(sid.to_owned(), live.clone());
                live
            }
        };
        let (owner, bound_ip, expires_at) = live.ok_or(AuthError::InvalidToken)?;
        if owner != user_id || expires_at <= now {
            return Err(AuthError::InvalidToken);
        }
        if bind_ip && bound_ip != ip {
            return Err(AuthError::IpMismatch);
        }
        Ok(())
    }

    /// A user by id, cached briefly.
    pub async fn user(&self, id: i64) -> Result<Option<Arc<UserRecord>>, AuthError> {
        if let Some(user) = self.users.get(&id) {
            return Ok(Some(user));
        }
        let Some(user) = self.meta.user_by_id(id).await? else { return Ok(None) };
        let user = Arc::new(user);
        self.users.insert(id, user.clone());
        Ok(Some(user))
    }

    /// What `principal` may do with repository `repo`.
    /// Installs the mirror-mode mapping (once, at start).
    pub fn set_mirror_alias(&self, alias: MirrorAlias) {
        let _ = self.mirror_alias.set(alias);
    }

    pub async fn repo_perms(&self, principal: &Principal, repo: &str) -> Result<Perms, AuthError> {
        if !self.enabled() {
            return Ok(Perms::all());
        }
        if let Restriction::Scoped(access) = &principal.restriction {
            return Ok(scoped_perms(access, repo));
        }
        let subject = match &principal.user {
            None => Subject::Anonymous,
            Some(user) => Subject::User { role: user.role, active: true },
        };
        let project = project_of(repo);
        let access = match self.project_access(project, principal.user_id()).await? {
            None => ProjectAccess::Missing,
            Some((visibility, role)) => ProjectAccess::Existing {
                visibility: if visibility == "public" { Visibility::Public } else { Visibility::Private },
                member_role: role.as_deref().and_then(MemberRole::parse),
            },
        };
        let access = self.with_repo_visibility(repo, access).await?;
        let mut own = permissions::repo_perms(&subject, access);
        // A name of no project may be pulled through the cache's mirror mode: its
        // pull right is that of the cache repository it is served from.
        if access == ProjectAccess::Missing
            && let Some(alias) = self.mirror_alias.get().and_then(|f| f(repo))
        {
            let cached = match self.project_access(project_of(&alias), principal.user_id()).await? {
                None => ProjectAccess::Missing,
                Some((visibility, role)) => ProjectAccess::Existing {
                    visibility: if visibility == "public" { Visibility::Public } else { Visibility::Private },
                    member_role: role.as_deref().and_then(MemberRole::parse),
                },
            };
            own.pull |= permissions::repo_perms(&subject, cached).pull;
        }
        Ok(match &principal.restriction {
            Restriction::Pat { permissions: words, repositories, .. } => {
                let words: Vec<TokenPermission> = words.iter().filter_map(|w| TokenPermission::parse(w)).collect();
                permissions::token_perms(own, &words, repositories, repo)
            }
            _ => own,
        })
    }

    /// A repository's own visibility, when set, replaces its project's.
    async fn with_repo_visibility(&self, repo: &str, access: ProjectAccess) -> Result<ProjectAccess, AuthError> {
        let own = match self.repo_visibility.get(repo) {
            Some(found) => found,
            None => {
                let found = self.meta.repo_visibility(repo).await?;
                self.repo_visibility.insert(repo.to_owned(), found.clone());
                found
            }
        };
        let Some(own) = own else { return Ok(access) };
        let visibility = if own == "public" { Visibility::Public } else { Visibility::Private };
        Ok(match access {
            ProjectAccess::Existing { member_role, .. } => ProjectAccess::Existing { visibility, member_role },
            // A repository of no project row (pushed with authentication off) that was made public.
            ProjectAccess::Missing if visibility == Visibility::Public => {
                ProjectAccess::Existing { visibility, member_role: None }
            }
            ProjectAccess::Missing => ProjectAccess::Missing,
        })
    }

    /// Drops the cached visibility of a repository after a change.
    pub fn forget_repository(&self, repo: &str) {
        self.repo_visibility.invalidate(repo);
    }

    async fn project_access(&self, project: &str, user_id: Option<i64>) -> Result<Option<ProjectView>, AuthError> {
        let key = (project.to_owned(), user_id);
        if let Some(found) = self.projects.get(&key) {
            return Ok(found);
        }
        let found = self.meta.project_access(project, user_id).await?;
        self.projects.insert(key, found.clone());
        Ok(found)
    }

    /// Makes sure the project of `repo` exists before a push, owned by the pusher
    /// when it is new (API.md §3.1: a user pushes to own or new repositories).
    pub async fn ensure_project(&self, repo: &str, actor: &Actor) -> Result<(), AuthError> {
        let project = project_of(repo);
        if self.projects.get(&(project.to_owned(), actor.user_id)).is_some_and(|found| found.is_some()) {
            return Ok(());
        }
        let draft = actor.draft("project_created", "project.create", &format!("project:{project}"));
        if self.meta.ensure_project(project, actor.user_id, &draft).await? {
            tracing::info!(project, owner = actor.username.as_str(), "project created");
        }
        self.forget_project(project);
        Ok(())
    }

    /// Drops cached permission lookups of a project after a change.
    pub fn forget_project(&self, project: &str) {
        let project = project.to_owned();
        let _ = self.projects.invalidate_entries_if(move |(name, _), _| *name == project);
    }

    /// Drops cached state of a user after a change (role, password, disable).
    pub fn forget_user(&self, id: i64) {
        self.users.invalidate(&id);
        let _ = self.verified_passwords.invalidate_entries_if(move |_, uid| *uid == id);
        let _ = self.sessions.invalidate_entries_if(move |_, s| s.as_ref().is_some_and(|(uid, _, _)| *uid == id));
        let _ = self.pats.invalidate_entries_if(move |_, t| t.user_id == id);
    }

    /// Drops a cached token after revocation.
    pub fn forget_token(&self, lookup: &str) {
        self.pats.invalidate(lookup);
    }

    /// Drops a cached session after logout.
    pub fn forget_session(&self, sid: &str) {
        self.sessions.invalidate(sid);
    }

    /// Records an audit entry outside any other change (logins, pushes).
    pub async fn audit(&self, draft: AuditDraft) {
        if let Err(e) = self.meta.append_audit(&draft).await {
            tracing::error!(error = %e, event = draft.event.as_str(), "could not write the audit log");
        }
    }

    pub(crate) fn signer(&self) -> &TokenSigner {
        &self.signer
    }
}

/// A bounded cache whose entries live `ttl`, invalidatable by predicate.
fn short_cache<K, V>(capacity: u64, ttl: Duration) -> Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder().max_capacity(capacity).time_to_live(ttl).support_invalidation_closures().build()
}

/// The project of a repository: its first path segment.
pub fn project_of(repo: &str) -> &str {
    repo.split('/').next().unwrap_or(repo)
}

pub(crate) fn user_info(user: &UserRecord) -> UserInfo {
    UserInfo {
        id: user.id,
        username: user.username.clone(),
        role: if user.role == "admin" { UserRole::Admin } else { UserRole::User },
    }
}

/// Rights a scoped registry token grants on `repo`.
fn scoped_perms(access: &[AccessEntry], repo: &str) -> Perms {
    let mut perms = Perms::none();
    for entry in access.iter().filter(|e| e.kind == "repository" && e.name == repo) {
        for action in &entry.actions {
            match action.as_str() {
                "pull" => perms.pull = true,
                "push" => perms.push = true,
                "delete" => perms.delete = true,
                "*" => perms = Perms::all(),
                _ => {}
            }
        }
    }
    perms
}

/// True when a scoped token carries `registry:catalog:*`.
pub fn scoped_catalog(access: &[AccessEntry]) -> bool {
    access.iter().any(|e| e.kind == "registry" && e.name == "catalog" && e.actions.iter().any(|a| a == "*"))
}
