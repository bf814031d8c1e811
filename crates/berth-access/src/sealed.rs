//! Secrets encrypted at rest: AES-256-GCM under the operator's secrets key.
//!
//! Values berth keeps in its database that would let someone act as berth
//! (the shared token-signing key; upstream registry credentials) are stored as
//! `sealed:v1:<base64(nonce ‖ ciphertext ‖ tag)>`, so a database dump or backup
//! alone reveals nothing. The key comes from configuration (`secrets.key`, or
//! `BERTH_SECRETS__KEY_FILE`) and never touches the database.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Prefix of a sealed value (the version lets the format change later).
const PREFIX: &str = "sealed:v1:";

/// Why a key or a sealed value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The key text is not 32 bytes of hex or base64.
    #[error("the secrets key must be 32 bytes, written as 64 hex digits or base64")]
    BadKey,
    /// The value lacks the `sealed:v1:` form.
    #[error("not a sealed value")]
    NotSealed,
    /// Wrong key, wrong context, or modified bytes.
    #[error("the sealed value does not open with this key (wrong key, or tampered)")]
    Tampered,
}

/// The secrets key (an AES-256-GCM key).
pub struct SecretsKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(<redacted>)")
    }
}

impl SecretsKey {
    /// Parses 32 bytes written as 64 hex digits or as base64.
    pub fn parse(text: &str) -> Result<Self, SealError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| SealError::BadKey)?
        } else {
            STANDARD.decode(text).map_err(|_| SealError::BadKey)?
        };
        if bytes.len() != 32 {
            return Err(SealError::BadKey);
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SealError::BadKey)?;
        Ok(SecretsKey { key: LessSafeKey::new(key) })
    }

    /// A new random key, as 64 hex digits (for `berth` to suggest to operators).
    pub fn generate_text() -> String {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        hex::encode(bytes)
    }

    /// Encrypts `plaintext` under a fresh random nonce. `context` (for example
    /// the settings row's name) is authenticated, so a sealed value cannot be
    /// moved to another row.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let mut data = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut data)
            .expect("AES-GCM sealing of an in-memory buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    /// Decrypts a value made by [`Self::seal`] with the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(SealError::NotSealed)?;
        let mut data = STANDARD.decode(body).map_err(|_| SealError::NotSealed)?;
        if data.len() < NONCE_LEN {
            return Err(SealError::NotSealed);
        }
        let nonce: [u8; NONCE_LEN] = data[..NONCE_LEN].try_into().map_err(|_| SealError::NotSealed)?;
        let opened = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut data[NONCE_LEN..])
            .map_err(|_| SealError::Tampered)?;
        Ok(opened.to_vec())
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_tampering() {
        let key = SecretsKey::parse(&SecretsKey::generate_text()).unwrap();
        let sealed = key.seal("row", b"signing key");
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("signing"));
        assert_eq!(key.open("row", &sealed).unwrap(), b"signing key");
        assert_ne!(key.seal("row", b"signing key"), sealed, "fresh nonce every time");
        assert_eq!(key.open("other-row", &sealed), Err(SealError::Tampered));
        let other = SecretsKey::parse(&SecretsKey::generate_text()).unwrap();
        assert_eq!(other.open("row", &sealed), Err(SealError::Tampered));
        let mut bytes = STANDARD.decode(&sealed[PREFIX.len()..]).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(key.open("row", &format!("{PREFIX}{}", STANDARD.encode(bytes))), Err(SealError::Tampered));
        assert_eq!(key.open("row", "plain"), Err(SealError::NotSealed));
    }

    #[test]
    fn keys_are_32_bytes_in_hex_or_base64() {
        assert!(SecretsKey::parse(&"ab".repeat(32)).is_ok());
        assert!(SecretsKey::parse(&STANDARD.encode([7u8; 32])).is_ok());
        assert_eq!(SecretsKey::parse("short").unwrap_err(), SealError::BadKey);
        assert_eq!(SecretsKey::parse(&"ab".repeat(16)).unwrap_err(), SealError::BadKey);
        assert_eq!(format!("{:?}", SecretsKey::parse(&"ab".repeat(32)).unwrap()), "SecretsKey(<redacted>)");
    }
}
