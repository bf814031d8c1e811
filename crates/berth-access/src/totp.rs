//! Time-based one-time passwords (RFC 6238: HMAC-SHA-1, 6 digits, 30 s steps)
//! and single-use recovery codes, as authenticator apps expect them.
//!
//! Replay protection is the caller's: store the step [`verify`] returns and
//! refuse any later code whose step is not greater.

use hmac::{Hmac, KeyInit as _, Mac as _};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha1::Sha1;

use crate::{
    base32,
    error::AccessError,
    password,
    secret::{constant_time_eq, random_bytes, random_string},
};

/// Seconds per time step.
pub const STEP_SECONDS: i64 = 30;

/// Digits in a code.
pub const DIGITS: usize = 6;

/// Steps accepted either side of the current one, for clock drift and typing time.
const SKEW_STEPS: i64 = 1;

/// Random bytes in a secret: 160 bits, the HMAC-SHA-1 block-friendly size RFC 4226 recommends.
const SECRET_BYTES: usize = 20;

/// Recovery code alphabet: lowercase letters and digits without `0 o 1 l i`.
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// Unreserved characters of RFC 3986 stay as they are in an otpauth URL.
const URL_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A new random secret, base32 without padding (32 characters).
pub fn generate_secret() -> String {
    base32::encode(&random_bytes(SECRET_BYTES))
}

/// Decodes a base32 secret; empty or non-base32 secrets are refused.
fn decode_secret(secret_b32: &str) -> Result<Vec<u8>, AccessError> {
    match base32::decode(secret_b32) {
        Some(key) if !key.is_empty() => Ok(key),
        _ => Err(AccessError::InvalidTotpSecret),
    }
}

/// The code for one time step (RFC 4226 HOTP with dynamic truncation), zero-padded.
fn code_for_step(key: &[u8], step: i64, digits: usize) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(&step.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    let offset = usize::from(hash[hash.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([hash[offset] & 0x7f, hash[offset + 1], hash[offset + 2], hash[offset + 3]]);
    let modulus = 10u32.pow(digits as u32);
    format!("{:0width$}", binary % modulus, width = digits)
}

/// The time step of a Unix time; `None` before 1970.
fn step_of(unix_time: i64) -> Option<i64> {
    (unix_time >= 0).then_some(unix_time / STEP_SECONDS)
}

/// The 6-digit code valid at `unix_time`.
pub fn code_at(secret_b32: &str, unix_time: i64) -> Result<String, AccessError> {
    let key = decode_secret(secret_b32)?;
    let step = step_of(unix_time).ok_or(AccessError::TimeBeforeEpoch)?;
    Ok(code_for_step(&key, step, DIGITS))
}

/// Checks `code` against the steps around `unix_time` (±1) and returns the
/// step it matched, or `None` (also for a bad secret or a code that is not
/// exactly six ASCII digits). Every candidate is compared, in constant time.
pub fn verify(secret_b32: &str, code: &str, unix_time: i64) -> Option<i64> {
    if code.len() != DIGITS || !code.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let key = decode_secret(secret_b32).ok()?;
    let now = step_of(unix_time)?;
    let mut matched = None;
    for step in (now - SKEW_STEPS..=now + SKEW_STEPS).filter(|step| *step >= 0) {
        if constant_time_eq(code_for_step(&key, step, DIGITS).as_bytes(), code.as_bytes()) {
            matched = Some(step);
        }
    }
    matched
}

/// The `otpauth://` URL authenticator apps scan (Google's Key URI format).
pub fn otpauth_url(issuer: &str, account: &str, secret_b32: &str) -> String {
    let issuer = utf8_percent_encode(issuer, URL_ESCAPE);
    let account = utf8_percent_encode(account, URL_ESCAPE);
    let secret = utf8_percent_encode(secret_b32, URL_ESCAPE);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}"
    )
}

/// `n` random recovery codes shaped `xxxx-xxxx` (about 40 bits each).
pub fn generate_recovery_codes(n: usize) -> Vec<String> {
    (0..n).map(|_| format!("{}-{}", random_string(RECOVERY_ALPHABET, 4), random_string(RECOVERY_ALPHABET, 4))).collect()
}

/// A recovery code as typed, reduced to its canonical form: lowercase, without
/// spaces or dashes, so `ABCD EFGH` and `abcd-efgh` are the same code.
pub fn normalize_recovery_code(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace() && *c != '-').flat_map(char::to_lowercase).collect()
}

/// The stored form of a recovery code: an Argon2id hash of its canonical form.
///
/// Forty bits would fall to a fast hash once the database leaks, so recovery
/// codes get the password treatment.
pub fn hash_recovery_code(code: &str) -> Result<String, AccessError> {
    password::hash_password(&normalize_recovery_code(code))
}

/// Whether `code` (as typed) matches a stored recovery code hash.
pub fn verify_recovery_code(code: &str, hash: &str) -> bool {
    password::verify_password(&normalize_recovery_code(code), hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B's SHA-1 seed, "12345678901234567890" in base32.
    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn rfc6238_sha1_vectors() {
        let key = base32::decode(RFC_SECRET).unwrap();
        assert_eq!(key, b"12345678901234567890");
        let vectors = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        for (time, eight) in vectors {
            assert_eq!(code_for_step(&key, time / STEP_SECONDS, 8), eight, "8 digits at T={time}");
            assert_eq!(code_at(RFC_SECRET, time).unwrap(), eight[2..], "6 digits at T={time}");
        }
    }

    #[test]
    fn verify_accepts_one_step_of_skew() {
        let now = 1_234_567_890;
        let code = code_at(RFC_SECRET, now).unwrap();
        let step = now / STEP_SECONDS;
        assert_eq!(verify(RFC_SECRET, &code, now), Some(step));
        assert_eq!(verify(RFC_SECRET, &code, now + STEP_SECONDS), Some(step));
        assert_eq!(verify(RFC_SECRET, &code, now - STEP_SECONDS), Some(step));
        assert_eq!(verify(RFC_SECRET, &code, now + 2 * STEP_SECONDS), None);
        assert_eq!(verify(RFC_SECRET, &code, now - 2 * STEP_SECONDS), None);
    }

    #[test]
    fn verify_rejects_malformed_codes_and_secrets() {
        let now = 1_234_567_890;
        assert_eq!(verify(RFC_SECRET, "005924", now), Some(now / STEP_SECONDS));
        for bad in ["5924", "0059240", "00592a", " 005924", "", "００５９２４"] {
            assert_eq!(verify(RFC_SECRET, bad, now), None, "{bad:?}");
        }
        assert_eq!(verify("not base32!", "005924", now), None);
        assert_eq!(verify("", "005924", now), None);
        assert!(matches!(code_at("!!", now), Err(AccessError::InvalidTotpSecret)));
        assert_eq!(verify(RFC_SECRET, "005924", -1), None);
    }

    #[test]
    fn generated_secret_round_trips() {
        let secret = generate_secret();
        assert_eq!(secret.len(), 32);
        assert_eq!(base32::decode(&secret).unwrap().len(), SECRET_BYTES);
        let code = code_at(&secret, 1_700_000_000).unwrap();
        assert_eq!(code.len(), DIGITS);
        assert!(verify(&secret, &code, 1_700_000_000).is_some());
        assert_ne!(generate_secret(), secret);
    }

    #[test]
    fn otpauth_url_escapes_label_and_issuer() {
        let url = otpauth_url("berth", "alice@example.com", "ABC");
        assert_eq!(
            url,
            "otpauth://totp/berth:alice%40example.com?secret=ABC&issuer=berth&algorithm=SHA1&digits=6&period=30"
        );
        let url = otpauth_url("My Registry", "a:b&c", "ABC");
        assert!(url.starts_with("otpauth://totp/My%20Registry:a%3Ab%26c?"), "{url}");
        assert!(url.contains("&issuer=My%20Registry&"), "{url}");
    }

    #[test]
    fn recovery_codes_have_the_documented_shape() {
        let codes = generate_recovery_codes(10);
        assert_eq!(codes.len(), 10);
        for code in &codes {
            assert_eq!(code.len(), 9);
            assert_eq!(&code[4..5], "-");
            assert!(code.bytes().filter(|c| *c != b'-').all(|c| RECOVERY_ALPHABET.contains(&c)), "{code}");
        }
        let unique: std::collections::BTreeSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), codes.len());
    }

    #[test]
    fn recovery_codes_verify_as_typed() {
        let hash = hash_recovery_code("abcd-efgh").unwrap();
        assert!(verify_recovery_code("ABCD EFGH", &hash));
        assert!(verify_recovery_code("abcdefgh", &hash));
        assert!(!verify_recovery_code("abcd-efgj", &hash));
    }
}
