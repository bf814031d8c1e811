//! The error of operations that can fail for reasons other than bad input:
//! key files, hashing and signing.
//!
//! Input that is merely wrong (a bad password, a forged token, a malformed
//! scope) is not an `AccessError`: those answers are `bool`, `Option` or the
//! small error types of their own modules, so callers cannot confuse "denied"
//! with "broken".

use std::{io, path::PathBuf};

/// A failure of the machinery itself, never a verdict on user input.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Reading or writing the signing key file failed.
    #[error("signing key {}: {source}", path.display())]
    KeyIo {
        /// The key file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The signing key bytes are not a P-256 private key berth can use.
    #[error("invalid signing key: {0}")]
    InvalidKey(String),
    /// Generating a key pair failed (the system RNG or the crypto library).
    #[error("could not generate a signing key")]
    KeyGeneration,
    /// Argon2 rejected the parameters or failed to hash.
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// The JWT library failed to sign claims.
    #[error("token signing failed: {0}")]
    Signing(String),
    /// A TOTP secret is not valid base32 or is empty.
    #[error("invalid TOTP secret")]
    InvalidTotpSecret,
    /// A time before 1970 was given where a Unix time is needed.
    #[error("time before the Unix epoch")]
    TimeBeforeEpoch,
}

impl AccessError {
    /// Wraps an I/O error on the key file at `path`.
    pub(crate) fn key_io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        AccessError::KeyIo { path: path.into(), source }
    }
}
