//! Password hashing (Argon2id, PHC strings), generation and policy.
//!
//! Parameters follow the OWASP recommendation for Argon2id: 19 MiB of memory,
//! two passes, one lane — roughly 20 ms per hash on a server core. The
//! parameters are stored in every PHC string, so they can be raised later and
//! old hashes still verify; [`needs_rehash`] tells when to upgrade one.

use std::sync::LazyLock;

use argon2::{
    ARGON2ID_IDENT, Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version,
};

use crate::{
    error::AccessError,
    secret::{random_bytes, random_string},
};

/// Memory cost in KiB (19 MiB).
const M_COST_KIB: u32 = 19_456;
/// Passes over memory.
const T_COST: u32 = 2;
/// Lanes.
const P_COST: u32 = 1;
/// Salt length in bytes (the PHC recommendation).
const SALT_BYTES: usize = 16;

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest accepted password, in characters (bounds hashing work per request).
pub const MAX_PASSWORD_CHARS: usize = 256;
/// Length of generated passwords.
const GENERATED_CHARS: usize = 24;
/// Letters and digits without look-alikes (`0 O o 1 l I`), for passwords read off a screen.
const UNAMBIGUOUS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";

/// Why a new password was refused; the message can be shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Fewer than [`MIN_PASSWORD_CHARS`] characters.
    #[error("password must be at least {min} characters long")]
    TooShort {
        /// The minimum.
        min: usize,
    },
    /// More than [`MAX_PASSWORD_CHARS`] characters.
    #[error("password must be at most {max} characters long")]
    TooLong {
        /// The maximum.
        max: usize,
    },
    /// Nothing but whitespace.
    #[error("password must not be only whitespace")]
    Blank,
}

fn hasher() -> Result<Argon2<'static>, AccessError> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).map_err(|e| AccessError::Hashing(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` with Argon2id and a fresh random salt into a PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
pub fn hash_password(password: &str) -> Result<String, AccessError> {
    let salt = random_bytes(SALT_BYTES);
    let hash = hasher()?
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| AccessError::Hashing(e.to_string()))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `phc`; `false` for a malformed
/// or unsupported PHC string. The parameters are read from `phc` itself.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default().verify_password(password.as_bytes(), &hash).is_ok()
}

/// A hash of a password nobody knows, to burn the same time when a user does not exist.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password(&generate_password()).unwrap_or_else(|_| String::from("$invalid")));

/// Like [`verify_password`], but when there is no stored hash (unknown user)
/// it still spends the time of one verification, so response times do not
/// reveal which user names exist. Always `false` then.
pub fn verify_password_or_dummy(password: &str, phc: Option<&str>) -> bool {
    match phc {
        Some(phc) => verify_password(password, phc),
        None => {
            verify_password(password, &DUMMY_HASH);
            false
        }
    }
}

/// Whether `phc` should be replaced by a fresh hash on the next successful
/// login: it is malformed, not Argon2id, or uses other parameters than today's.
pub fn needs_rehash(phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return true;
    };
    let param = |name: &str| hash.params.get(name).and_then(|value| value.decimal().ok());
    hash.algorithm != ARGON2ID_IDENT
        || hash.version != Some(Version::V0x13.into())
        || param("m") != Some(M_COST_KIB)
        || param("t") != Some(T_COST)
        || param("p") != Some(P_COST)
}

/// A random 24-character password from an unambiguous alphabet (about 139 bits).
pub fn generate_password() -> String {
    random_string(UNAMBIGUOUS, GENERATED_CHARS)
}

/// Checks a new password against the policy: 8 to 256 characters, not all whitespace.
pub fn check_password_policy(password: &str) -> Result<(), PolicyError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PolicyError::TooShort { min: MIN_PASSWORD_CHARS });
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(PolicyError::TooLong { max: MAX_PASSWORD_CHARS });
    }
    if password.trim().is_empty() {
        return Err(PolicyError::Blank);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("correct horsE", &phc));
        assert!(!verify_password("", &phc));
        assert!(!needs_rehash(&phc));
    }

    #[test]
    fn salts_differ() {
        assert_ne!(hash_password("same").unwrap(), hash_password("same").unwrap());
    }

    #[test]
    fn malformed_phc_never_verifies_or_panics() {
        for phc in [
            "",
            "$",
            "plain",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$AAAA",
        ] {
            assert!(!verify_password("x", phc), "{phc:?}");
            assert!(needs_rehash(phc), "{phc:?}");
        }
    }

    #[test]
    fn verifies_hashes_with_other_parameters() {
        // A hash made with cheaper parameters (as an older release might have) still verifies,
        // and is flagged for upgrade.
        let params = Params::new(8, 1, 1, None).unwrap();
        let cheap = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_with_salt(b"pw", b"saltsaltsalt")
            .unwrap()
            .to_string();
        assert!(verify_password("pw", &cheap));
        assert!(needs_rehash(&cheap));
    }

    #[test]
    fn dummy_verification_is_always_false() {
        assert!(!verify_password_or_dummy("anything", None));
        let phc = hash_password("pw-pw-pw").unwrap();
        assert!(verify_password_or_dummy("pw-pw-pw", Some(&phc)));
    }

    #[test]
    fn generated_passwords_pass_policy() {
        let password = generate_password();
        assert_eq!(password.len(), 24);
        assert!(password.bytes().all(|c| UNAMBIGUOUS.contains(&c)));
        assert_eq!(check_password_policy(&password), Ok(()));
        assert_ne!(generate_password(), password);
    }

    #[test]
    fn policy() {
        assert_eq!(check_password_policy("1234567"), Err(PolicyError::TooShort { min: 8 }));
        assert_eq!(check_password_policy("12345678"), Ok(()));
        assert_eq!(check_password_policy(&"x".repeat(256)), Ok(()));
        assert_eq!(check_password_policy(&"x".repeat(257)), Err(PolicyError::TooLong { max: 256 }));
        assert_eq!(check_password_policy("        "), Err(PolicyError::Blank));
        assert_eq!(check_password_policy("\t \n   \u{a0}  "), Err(PolicyError::Blank));
        // Characters, not bytes: eight accented letters are enough.
        assert_eq!(check_password_policy("éééééééé"), Ok(()));
        assert_eq!(
            check_password_policy("short").unwrap_err().to_string(),
            "password must be at least 8 characters long"
        );
    }
}
