//! Password logins with brute-force defence, sessions, logout, and the system lock.
//!
//! Failures are counted in the database (so every node sees them) per account
//! and per IP over a window: enough failures on an account lock that account
//! until its failures age out; enough from one IP fire the lock rule, which
//! locks the whole system until an admin (or the recovery key) unlocks it.

use std::time::Duration;

use berth_access::secret;
use berth_meta::{SessionRecord, UserRecord};
use serde::{Deserialize, Serialize};

use super::{AccessService, Actor, AuthError, IssuedToken, user_info};

/// The settings row that holds the system lock.
const LOCK_SETTING: &str = "system_lock";
/// The settings row holding when the system was last unlocked: the lock rule
/// forgives failures before it (else the next failure would lock again at once).
const UNLOCKED_SETTING: &str = "system_unlocked_at";

/// A login attempt.
#[derive(Debug, Clone)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    pub otp: Option<String>,
    /// The captcha challenge answered, once failures require one.
    pub captcha_id: Option<String>,
    pub captcha: Option<String>,
    pub ip: String,
    pub user_agent: String,
    /// Login token lifetime (JSON `/auth` asks for 24 h, like the management login).
    pub ttl: Duration,
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub user: UserRecord,
    pub token: IssuedToken,
    pub session_id: String,
    /// The CSRF token for cookie sessions (only its hash is stored).
    pub csrf: String,
    /// Failures on this account since its last success (API.md §6.1 `lock_warning`).
    pub lock_warning: bool,
}

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginFailure {
    InvalidCredentials {
        remaining_attempts: u32,
    },
    /// Too many recent failures: answer a captcha (`GET /api/v1/auth/captcha`).
    CaptchaRequired {
        remaining_attempts: u32,
    },
    /// The captcha answer was wrong, expired or already used.
    CaptchaInvalid {
        remaining_attempts: u32,
    },
    OtpRequired,
    OtpInvalid,
    InactiveUser,
    AccountLocked,
    SystemLocked,
    Backend(String),
}

impl From<AuthError> for LoginFailure {
    fn from(e: AuthError) -> Self {
        LoginFailure::Backend(e.to_string())
    }
}

impl From<berth_meta::MetaError> for LoginFailure {
    fn from(e: berth_meta::MetaError) -> Self {
        LoginFailure::Backend(e.to_string())
    }
}

/// The system lock (API.md §6.2 `LockStatus`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockStatus {
    pub is_locked: bool,
    pub lock_reason: String,
    pub lock_type: String,
    pub locked_at: String,
    pub locked_by_ip: String,
    pub locked_by_user: String,
    pub require_manual: bool,
}

impl AccessService {
    /// Checks a username and password (and TOTP code), applying the lockout rules,
    /// and opens a session. Every outcome is audited.
    pub async fn login(&self, req: &LoginRequest) -> Result<LoginOutcome, LoginFailure> {
        let actor = Actor {
            user_id: None,
            username: req.username.clone(),
            ip: req.ip.clone(),
            user_agent: req.user_agent.clone(),
        };
        if self.lock_status().await?.is_locked {
            return Err(LoginFailure::SystemLocked);
        }
        let now = berth_meta::now_unix();
        let since = now - self.config.failure_window.as_secs() as i64;
        let (account_failures, _) = self.meta.login_failures(&req.username, &req.ip, since).await?;
        let ip_failures = self.ip_failures(&req.username, &req.ip, since).await?;
        if account_failures >= i64::from(self.config.account_lock_after) {
            self.audit(actor.failure("login_failure", "auth.login", "/api/v1/auth/login", "account_locked")).await;
            return Err(LoginFailure::AccountLocked);
        }
        let captcha_after = i64::from(self.config.captcha_after);
        if captcha_after > 0 && account_failures.max(ip_failures) >= captcha_after {
            self.check_login_captcha(req, &actor).await?;
        }
        let user = self.meta.user_by_name(&req.username).await?;
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let password = req.password.clone();
        let ok = tokio::task::spawn_blocking(move || {
            berth_access::password::verify_password_or_dummy(&password, hash.as_deref())
        })
        .await
        .map_err(|e| LoginFailure::Backend(e.to_string()))?;
        let user = match user {
            Some(user) if ok => user,
            _ => {
                let remaining_attempts = self.fail(&actor, "invalid_credentials").await?;
                return Err(LoginFailure::InvalidCredentials { remaining_attempts });
            }
        };
        let actor = Actor { user_id: Some(user.id), ..actor };
        if !user.is_active {
            self.audit(actor.failure("login_failure", "auth.login", "/api/v1/auth/login", "inactive_user")).await;
            return Err(LoginFailure::InactiveUser);
        }
        if user.totp_enabled {
            let Some(code) = req.otp.as_deref().filter(|c| !c.is_empty()) else {
                return Err(LoginFailure::OtpRequired);
            };
            if !self.check_second_factor(&user, code, &actor).await? {
                self.fail(&actor, "otp_invalid").await?;
                return Err(LoginFailure::OtpInvalid);
            }
        }
        self.meta.clear_login_failures(&req.username).await?;
        self.meta.record_login(user.id, now).await?;
        let (session_id, csrf) = self.open_session(&user, &req.ip, req.ttl).await?;
        let token = self.issue_login_token(&user_info(&user), &session_id, req.ttl)?;
        self.audit(actor.draft("login_success", "auth.login", "/api/v1/auth/login")).await;
        Ok(LoginOutcome { user, token, session_id, csrf, lock_warning: account_failures > 0 })
    }

    /// Requires a solved captcha; a missing or wrong answer counts as a failure.
    async fn check_login_captcha(&self, req: &LoginRequest, actor: &Actor) -> Result<(), LoginFailure> {
        let nonempty = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let (Some(id), Some(answer)) = (nonempty(&req.captcha_id), nonempty(&req.captcha)) else {
            let remaining_attempts = self.fail(actor, "captcha_required").await?;
            return Err(LoginFailure::CaptchaRequired { remaining_attempts });
        };
        if !self.solve_captcha(&id, &answer).await? {
            let remaining_attempts = self.fail(actor, "captcha_invalid").await?;
            return Err(LoginFailure::CaptchaInvalid { remaining_attempts });
        }
        Ok(())
    }

    /// Records a failed attempt and fires the lock rule when the IP crossed its
    /// limit; returns the attempts left before the lock.
    async fn fail(&self, actor: &Actor, reason: &str) -> Result<u32, LoginFailure> {
        let now = berth_meta::now_unix();
        let since = now - self.config.failure_window.as_secs() as i64;
        self.audit(actor.failure("login_failure", "auth.login", "/api/v1/auth/login", reason)).await;
        self.meta.record_login_failure(&actor.username, &actor.ip, now).await?;
        let ip_failures = self.ip_failures(&actor.username, &actor.ip, since).await?;
        let limit = i64::from(self.config.lock_after_ip_failures);
        if limit > 0 && ip_failures >= limit {
            let status = LockStatus {
                is_locked: true,
                lock_reason: "too_many_failed_attempts".into(),
                lock_type: "rule_triggered".into(),
                locked_at: now_rfc3339(),
                locked_by_ip: actor.ip.clone(),
                locked_by_user: String::new(),
                require_manual: true,
            };
            self.set_lock(&status, &Actor::system(), "system_locked", "system.lock").await?;
            tracing::warn!(ip = actor.ip.as_str(), failures = ip_failures, "lock rule fired: system locked");
        }
        Ok((limit - ip_failures).max(0) as u32)
    }

    /// Failures from `ip` since `since` or the last unlock, whichever is later.
    async fn ip_failures(&self, username: &str, ip: &str, since: i64) -> Result<i64, LoginFailure> {
        let unlocked_at = self.meta.setting(UNLOCKED_SETTING).await?.and_then(|v| v.parse::<i64>().ok());
        let since = since.max(unlocked_at.unwrap_or(0));
        Ok(self.meta.login_failures(username, ip, since).await?.1)
    }

    async fn open_session(&self, user: &UserRecord, ip: &str, ttl: Duration) -> Result<(String, String), LoginFailure> {
        let now = berth_meta::now_unix();
        let session_id = secret::random_token("sess_", 18);
        let csrf = secret::random_token("", 24);
        self.meta
            .create_session(&SessionRecord {
                id: session_id.clone(),
                user_id: user.id,
                ip: ip.to_owned(),
                csrf_hash: secret::hash_pat(&csrf),
                created_at: now,
                last_seen: now,
                expires_at: now + ttl.as_secs() as i64,
                revoked_at: None,
            })
            .await?;
        Ok((session_id, csrf))
    }

    /// Opens a long-lived session for an OAuth2 offline (refresh) grant.
    pub async fn open_refresh_session(&self, user: &UserRecord, ip: &str) -> Result<String, LoginFailure> {
        Ok(self.open_session(user, ip, self.config.refresh_token_ttl).await?.0)
    }

    /// Ends a session (its JWTs stop working at once on this node, within the
    /// cache period on others).
    pub async fn logout(&self, sid: &str, actor: &Actor) -> Result<(), AuthError> {
        self.meta.revoke_session(sid, berth_meta::now_unix()).await?;
        self.forget_session(sid);
        self.audit(actor.draft("logout", "auth.logout", "/api/v1/auth/logout")).await;
        Ok(())
    }

    /// Checks a cookie session's CSRF token.
    pub async fn check_csrf(&self, sid: &str, presented: &str) -> Result<bool, AuthError> {
        let Some(session) = self.meta.session(sid).await? else { return Ok(false) };
        Ok(secret::constant_time_eq(secret::hash_pat(presented).as_bytes(), session.csrf_hash.as_bytes()))
    }

    /// The current system lock, with the timed release of automatic locks applied.
    pub async fn lock_status(&self) -> Result<LockStatus, AuthError> {
        let Some(raw) = self.meta.setting(LOCK_SETTING).await? else { return Ok(LockStatus::default()) };
        let status: LockStatus = serde_json::from_str(&raw).unwrap_or_default();
        Ok(status)
    }

    /// Whether the system is locked, from a short cache (for the `/v2` hot path).
    pub async fn is_locked(&self) -> Result<bool, AuthError> {
        if let Some(locked) = self.locked.get(&()) {
            return Ok(locked);
        }
        let locked = self.lock_status().await?.is_locked;
        self.locked.insert((), locked);
        Ok(locked)
    }

    /// Locks the system by hand (admin).
    pub async fn lock(&self, reason: &str, actor: &Actor) -> Result<(), AuthError> {
        let status = LockStatus {
            is_locked: true,
            lock_reason: reason.to_owned(),
            lock_type: "manual".into(),
            locked_at: now_rfc3339(),
            locked_by_ip: actor.ip.clone(),
            locked_by_user: actor.username.clone(),
            require_manual: true,
        };
        self.set_lock(&status, actor, "system_locked", "system.lock").await
    }

    /// Unlocks with any active admin's password or the recovery key.
    /// False (and an audited failure) when neither matches.
    pub async fn unlock(
        &self,
        password: Option<&str>,
        recovery_key: Option<&str>,
        actor: &Actor,
    ) -> Result<bool, AuthError> {
        let mut ok = false;
        if let Some(key) = recovery_key.filter(|k| !k.is_empty()) {
            ok = self.check_recovery_key(key).await?;
        }
        if !ok && let Some(password) = password.filter(|p| !p.is_empty()) {
            ok = self.any_admin_password(password).await?;
        }
        if !ok {
            self.audit(actor.failure(
                "system_unlock_failed",
                "system.unlock",
                "/api/v1/system/lock/unlock",
                "login_failure",
            ))
            .await;
            return Ok(false);
        }
        self.set_lock(&LockStatus::default(), actor, "system_unlocked", "system.unlock").await?;
        // Failures counted until now (this second included) no longer count towards the lock rule.
        let forgiven_before = berth_meta::now_unix() + 1;
        self.meta.put_setting(UNLOCKED_SETTING, &forgiven_before.to_string(), None).await?;
        Ok(true)
    }

    async fn set_lock(&self, status: &LockStatus, actor: &Actor, event: &str, action: &str) -> Result<(), AuthError> {
        let value = serde_json::to_string(status).map_err(|e| AuthError::Backend(e.to_string()))?;
        let mut draft = actor.draft(event, action, "system:lock");
        draft.detail["lock"] = serde_json::to_value(status).unwrap_or_default();
        self.meta.put_setting(LOCK_SETTING, &value, Some(&draft)).await?;
        self.locked.invalidate(&());
        Ok(())
    }

    async fn any_admin_password(&self, password: &str) -> Result<bool, AuthError> {
        let mut offset = 0;
        loop {
            let (users, _) = self.meta.list_users(offset, 100).await?;
            if users.is_empty() {
                return Ok(false);
            }
            for user in users.iter().filter(|u| u.role == "admin" && u.is_active) {
                let (password, hash) = (password.to_owned(), user.password_hash.clone());
                let ok = tokio::task::spawn_blocking(move || berth_access::password::verify_password(&password, &hash))
                    .await
                    .map_err(|e| AuthError::Backend(e.to_string()))?;
                if ok {
                    return Ok(true);
                }
            }
            offset += 100;
        }
    }
}

/// Now as RFC 3339 UTC, whole seconds.
pub(crate) fn now_rfc3339() -> String {
    berth_meta::rfc3339(berth_meta::now_unix())
}
