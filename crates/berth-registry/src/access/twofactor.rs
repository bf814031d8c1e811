//! TOTP two-factor authentication (API.md §6.4): enrolment, the second factor
//! at login, recovery codes and disabling.
//!
//! A pending enrolment is a `totp_secret` with `totp_enabled = 0`; enabling
//! proves the authenticator works with one code. Each accepted code claims its
//! time step in the `settings` row `totp_last_step:<user id>` (a monotonic
//! compare-and-set, shared by every node), so a code cannot be replayed.
//! Recovery codes are stored as Argon2 hashes and consumed with a compare-and-swap.

use berth_access::totp;
use berth_meta::{UserRecord, UserUpdate};

use super::{AccessService, Actor, AuthError};

/// How many recovery codes enabling hands out.
pub const RECOVERY_CODES: usize = 10;
/// The issuer shown by authenticator apps.
const ISSUER: &str = "berth";

/// A started enrolment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpSetup {
    /// Base32 secret, for typing into an authenticator by hand.
    pub secret: String,
    /// The `otpauth://` URL a QR code carries.
    pub otpauth_url: String,
}

/// Why a two-factor change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwoFactorError {
    #[error("two-factor authentication is already enabled")]
    AlreadyEnabled,
    #[error("start with /api/v1/auth/2fa/setup first")]
    NoSetup,
    #[error("two-factor authentication is not enabled")]
    NotEnabled,
    #[error("invalid two-factor code")]
    OtpInvalid,
    #[error("invalid credentials")]
    BadPassword,
    #[error("no such user")]
    UnknownUser,
    #[error("{0}")]
    Backend(String),
}

impl From<AuthError> for TwoFactorError {
    fn from(e: AuthError) -> Self {
        TwoFactorError::Backend(e.to_string())
    }
}

impl From<berth_meta::MetaError> for TwoFactorError {
    fn from(e: berth_meta::MetaError) -> Self {
        TwoFactorError::Backend(e.to_string())
    }
}

impl AccessService {
    /// Starts (or restarts) enrolment: stores a new pending secret.
    pub async fn setup_totp(&self, user_id: i64, actor: &Actor) -> Result<TotpSetup, TwoFactorError> {
        let user = self.fresh_user(user_id).await?;
        if user.totp_enabled {
            return Err(TwoFactorError::AlreadyEnabled);
        }
        let secret = totp::generate_secret();
        let update = UserUpdate { totp: Some((Some(secret.clone()), false, None)), ..Default::default() };
        let draft = actor.draft("2fa_setup", "user.2fa.setup", &format!("user:{}", user.username));
        self.meta.update_user(user_id, &update, &draft).await?;
        self.forget_user(user_id);
        let otpauth_url = totp::otpauth_url(ISSUER, &user.username, &secret);
        Ok(TotpSetup { secret, otpauth_url })
    }

    /// Finishes enrolment with a code from the authenticator; returns the
    /// recovery codes (shown once, stored hashed).
    pub async fn enable_totp(&self, user_id: i64, code: &str, actor: &Actor) -> Result<Vec<String>, TwoFactorError> {
        let user = self.fresh_user(user_id).await?;
        if user.totp_enabled {
            return Err(TwoFactorError::AlreadyEnabled);
        }
        let Some(secret) = user.totp_secret.clone() else { return Err(TwoFactorError::NoSetup) };
        if !self.claim_totp_code(&user, code.trim()).await? {
            return Err(TwoFactorError::OtpInvalid);
        }
        let codes = totp::generate_recovery_codes(RECOVERY_CODES);
        let plain = codes.clone();
        let hashes = tokio::task::spawn_blocking(move || {
            plain.iter().map(|c| totp::hash_recovery_code(c)).collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| TwoFactorError::Backend(e.to_string()))?
        .map_err(|e| TwoFactorError::Backend(e.to_string()))?;
        let hashes = serde_json::to_string(&hashes).map_err(|e| TwoFactorError::Backend(e.to_string()))?;
        let update = UserUpdate { totp: Some((Some(secret), true, Some(hashes))), ..Default::default() };
        let draft = actor.draft("2fa_enabled", "user.2fa.enable", &format!("user:{}", user.username));
        self.meta.update_user(user_id, &update, &draft).await?;
        self.forget_user(user_id);
        Ok(codes)
    }

    /// The user turns 2FA off, proving it with the password and a code (TOTP or recovery).
    pub async fn disable_totp(
        &self,
        user_id: i64,
        password: &str,
        code: &str,
        actor: &Actor,
    ) -> Result<(), TwoFactorError> {
        let user = self.fresh_user(user_id).await?;
        let (password, hash) = (password.to_owned(), user.password_hash.clone());
        let ok = tokio::task::spawn_blocking(move || berth_access::password::verify_password(&password, &hash))
            .await
            .map_err(|e| TwoFactorError::Backend(e.to_string()))?;
        if !ok {
            self.audit(actor.failure("2fa_disable_failed", "user.2fa.disable", "user", "login_failure")).await;
            return Err(TwoFactorError::BadPassword);
        }
        if !user.totp_enabled {
            return Err(TwoFactorError::NotEnabled);
        }
        if !self.check_second_factor(&user, code, actor).await? {
            self.audit(actor.failure("2fa_disable_failed", "user.2fa.disable", "user", "otp_invalid")).await;
            return Err(TwoFactorError::OtpInvalid);
        }
        self.clear_totp(&user, actor).await
    }

    /// An admin turns another user's 2FA off (a lost authenticator); idempotent.
    pub async fn disable_totp_for(&self, user_id: i64, actor: &Actor) -> Result<(), TwoFactorError> {
        let user = self.fresh_user(user_id).await?;
        self.clear_totp(&user, actor).await
    }

    async fn clear_totp(&self, user: &UserRecord, actor: &Actor) -> Result<(), TwoFactorError> {
        let update = UserUpdate { totp: Some((None, false, None)), ..Default::default() };
        let draft = actor.draft("2fa_disabled", "user.2fa.disable", &format!("user:{}", user.username));
        self.meta.update_user(user.id, &update, &draft).await?;
        self.forget_user(user.id);
        Ok(())
    }

    /// The user as stored now (2FA changes must not act on a cached copy).
    async fn fresh_user(&self, user_id: i64) -> Result<UserRecord, TwoFactorError> {
        self.meta.user_by_id(user_id).await?.ok_or(TwoFactorError::UnknownUser)
    }

    /// Checks a second factor: a TOTP code not used before, or an unused
    /// recovery code (which is consumed, audited).
    pub(crate) async fn check_second_factor(
        &self,
        user: &UserRecord,
        code: &str,
        actor: &Actor,
    ) -> Result<bool, AuthError> {
        let code = code.trim();
        if code.len() == totp::DIGITS && code.bytes().all(|b| b.is_ascii_digit()) {
            return self.claim_totp_code(user, code).await;
        }
        self.consume_recovery_code(user, code, actor).await
    }

    /// Verifies a TOTP code and claims its time step; false for a wrong or replayed code.
    async fn claim_totp_code(&self, user: &UserRecord, code: &str) -> Result<bool, AuthError> {
        let secret = user.totp_secret.as_deref().unwrap_or_default();
        let Some(step) = totp::verify(secret, code, berth_meta::now_unix()) else { return Ok(false) };
        Ok(self.meta.advance_setting(&format!("totp_last_step:{}", user.id), step).await?)
    }

    async fn consume_recovery_code(&self, user: &UserRecord, code: &str, actor: &Actor) -> Result<bool, AuthError> {
        let Some(stored) = user.recovery_codes.clone() else { return Ok(false) };
        let canonical = totp::normalize_recovery_code(code);
        if canonical.len() != 8 || !canonical.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(false);
        }
        let hashes: Vec<String> = serde_json::from_str(&stored).unwrap_or_default();
        let candidates = hashes.clone();
        let matched = tokio::task::spawn_blocking(move || {
            candidates.iter().position(|h| totp::verify_recovery_code(&canonical, h))
        })
        .await
        .map_err(|e| AuthError::Backend(e.to_string()))?;
        let Some(index) = matched else { return Ok(false) };
        let remaining: Vec<&String> = hashes.iter().enumerate().filter(|(i, _)| *i != index).map(|(_, h)| h).collect();
        let remaining = serde_json::to_string(&remaining).map_err(|e| AuthError::Backend(e.to_string()))?;
        let mut draft = actor.draft("2fa_recovery_code_used", "user.2fa.recovery", &format!("user:{}", user.username));
        draft.detail["remaining"] = serde_json::json!(hashes.len() - 1);
        // Another login may have consumed a code meanwhile: then this one lost the race.
        let swapped = self.meta.replace_recovery_codes(user.id, &stored, &remaining, &draft).await?;
        self.forget_user(user.id);
        Ok(swapped)
    }
}
