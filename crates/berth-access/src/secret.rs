//! Random secrets, personal access tokens and constant-time comparison.
//!
//! PATs are 256 random bits, so they are stored as a plain SHA-256: nobody can
//! guess a preimage of a uniformly random 32-byte value, and unlike a password
//! a PAT has no dictionary to try. A slow hash (argon2) would only make every
//! authenticated `/v2` request cost ~20 ms of CPU for no security gain.

use rand::RngExt as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// The prefix of every personal access token (lets scanners and people spot one).
pub const PAT_PREFIX: &str = "berth_pat_";

/// How many characters after [`PAT_PREFIX`] are stored in clear to find and show a token.
pub const PAT_LOOKUP_LEN: usize = 8;

/// Random bytes in a PAT.
const PAT_BYTES: usize = 32;

/// Base62: URL-, header- and double-click-safe, with no separator that could be
/// confused with the `_` of the prefix.
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A freshly generated personal access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPat {
    /// The whole token; shown to its owner once and never stored.
    pub token: String,
    /// The first [`PAT_LOOKUP_LEN`] characters after the prefix, stored in clear.
    pub lookup: String,
    /// Lowercase hex SHA-256 of the whole token, the only form that is stored.
    pub hash: String,
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Fills a buffer of `len` bytes from the thread-local CSPRNG (ChaCha, seeded from the OS).
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::fill(&mut bytes[..]);
    bytes
}

/// `len` characters drawn uniformly (no modulo bias) from `alphabet`.
pub fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len).map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())])).collect()
}

/// How many base62 characters carry at least `bytes * 8` bits (log2 62 > 5.954).
fn base62_len(bytes: usize) -> usize {
    (bytes * 8 * 1000).div_ceil(5954)
}

/// `prefix` followed by base62 characters holding at least `bytes` random bytes of entropy.
pub fn random_token(prefix: &str, bytes: usize) -> String {
    let mut token = String::from(prefix);
    token.push_str(&random_string(BASE62, base62_len(bytes)));
    token
}

/// Generates a new personal access token with its lookup key and stored hash.
pub fn generate_pat() -> NewPat {
    let token = random_token(PAT_PREFIX, PAT_BYTES);
    let lookup = token[PAT_PREFIX.len()..PAT_PREFIX.len() + PAT_LOOKUP_LEN].to_owned();
    let hash = hash_pat(&token);
    NewPat { token, lookup, hash }
}

/// The stored form of a PAT: lowercase hex SHA-256 of the whole token.
pub fn hash_pat(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `text` has the exact shape of a berth PAT (prefix, length, alphabet).
///
/// Checking the shape first keeps garbage from ever reaching the database.
pub fn looks_like_pat(text: &str) -> bool {
    text.strip_prefix(PAT_PREFIX)
        .is_some_and(|body| body.len() == base62_len(PAT_BYTES) && body.bytes().all(|c| c.is_ascii_alphanumeric()))
}

/// The lookup key of a PAT, or `None` if `token` is not shaped like one.
pub fn pat_lookup(token: &str) -> Option<&str> {
    looks_like_pat(token).then(|| &token[PAT_PREFIX.len()..PAT_PREFIX.len() + PAT_LOOKUP_LEN])
}

/// A cache key for Basic credentials that have been verified, so the password
/// itself need not be kept in memory.
///
/// The fields are length-prefixed, so `("ab", "c")` and `("a", "bc")` differ.
pub fn hash_credential_cache_key(user: &str, password: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"berth-basic-cache-v1");
    for field in [user, password] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn random_token_has_prefix_length_and_alphabet() {
        let token = random_token("x_", 32);
        assert!(token.starts_with("x_"));
        assert_eq!(token.len(), 2 + 43, "32 bytes need 43 base62 characters");
        assert!(token[2..].bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(random_token("x_", 32), token);
        assert_eq!(random_token("", 16).len(), 22);
    }

    #[test]
    fn generated_pat_is_consistent() {
        let pat = generate_pat();
        assert!(looks_like_pat(&pat.token));
        assert_eq!(pat_lookup(&pat.token), Some(pat.lookup.as_str()));
        assert_eq!(pat.lookup.len(), PAT_LOOKUP_LEN);
        assert_eq!(pat.hash, hash_pat(&pat.token));
        assert_eq!(pat.hash.len(), 64);
        assert_ne!(generate_pat().token, pat.token);
    }

    #[test]
    fn hash_pat_is_sha256_hex() {
        assert_eq!(hash_pat("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn looks_like_pat_rejects_near_misses() {
        let token = generate_pat().token;
        assert!(!looks_like_pat(&token[..token.len() - 1]));
        assert!(!looks_like_pat(&format!("{token}A")));
        assert!(!looks_like_pat(&token.replacen(PAT_PREFIX, "berth_pak_", 1)));
        let mut with_dash = token.clone();
        with_dash.replace_range(PAT_PREFIX.len() + 3..PAT_PREFIX.len() + 4, "-");
        assert!(!looks_like_pat(&with_dash));
        assert_eq!(pat_lookup("berth_pat_short"), None);
        // Multi-byte characters must not make slicing panic.
        assert_eq!(pat_lookup("berth_pat_ééééééééééééééééééééé"), None);
    }

    #[test]
    fn credential_cache_key_separates_fields() {
        assert_ne!(hash_credential_cache_key("ab", "c"), hash_credential_cache_key("a", "bc"));
        assert_eq!(hash_credential_cache_key("a", "b"), hash_credential_cache_key("a", "b"));
        assert_ne!(hash_credential_cache_key("a", "b"), hash_credential_cache_key("a", "B"));
    }
}
