//! First start: the initial admin and the recovery key.

use berth_access::{password, secret};
use berth_meta::NewUser;

use super::{AccessService, Actor, AuthError};

/// The settings row holding the SHA-256 of the recovery key.
const RECOVERY_SETTING: &str = "recovery_key_sha256";

/// What the first start created; the caller prints it once, never logs it.
#[derive(Default)]
pub struct Bootstrap {
    /// `(username, password)` of a newly created admin, when the password was generated here.
    pub generated_admin: Option<(String, String)>,
    /// Whether an admin was created from `BERTH_ADMIN_PASSWORD`.
    pub supplied_admin: bool,
    /// The recovery key, when it was created by this start.
    pub recovery_key: Option<String>,
}

impl std::fmt::Debug for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bootstrap")
            .field("generated_admin", &self.generated_admin.as_ref().map(|(u, _)| u))
            .field("supplied_admin", &self.supplied_admin)
            .field("recovery_key", &self.recovery_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl AccessService {
    /// Creates the first admin (named `admin`) when there are no users, with
    /// `supplied_password` or a random one, and the recovery key when there is none.
    /// A generated password must be changed at first login; a supplied one need
    /// not (automation uses it at once).
    pub async fn bootstrap(&self, supplied_password: Option<&str>) -> Result<Bootstrap, AuthError> {
        let mut out = Bootstrap::default();
        if self.meta.count_users().await? == 0 {
            let generated = supplied_password.is_none();
            let plain = supplied_password.map_or_else(password::generate_password, str::to_owned);
            let hash = password::hash_password(&plain).map_err(|e| AuthError::Backend(e.to_string()))?;
            let user = NewUser {
                username: "admin".into(),
                email: None,
                password_hash: hash,
                role: "admin".into(),
                must_change_password: generated,
            };
            let draft = Actor::system().draft("user_created", "user.create", "user:admin");
            match self.meta.create_user(&user, &draft).await {
                Ok(_) => {}
                // Another node created it first.
                Err(berth_meta::MetaError::Conflict(_)) => return Ok(out),
                Err(e) => return Err(e.into()),
            }
            if generated {
                out.generated_admin = Some(("admin".into(), plain));
            } else {
                out.supplied_admin = true;
            }
        }
        if self.meta.setting(RECOVERY_SETTING).await?.is_none() {
            let key = secret::random_token("berth_recovery_", 24);
            // Several nodes may start at once: only the one whose key is stored prints it.
            if self.meta.put_setting_if_absent(RECOVERY_SETTING, &secret::hash_pat(&key)).await? {
                self.audit(Actor::system().draft("recovery_key_created", "system.recovery_key", "system:recovery_key"))
                    .await;
                out.recovery_key = Some(key);
            }
        }
        Ok(out)
    }

    /// Whether `key` is the recovery key (compared in constant time, as hashes).
    pub async fn check_recovery_key(&self, key: &str) -> Result<bool, AuthError> {
        let Some(stored) = self.meta.setting(RECOVERY_SETTING).await? else { return Ok(false) };
        Ok(secret::constant_time_eq(secret::hash_pat(key).as_bytes(), stored.as_bytes()))
    }
}
