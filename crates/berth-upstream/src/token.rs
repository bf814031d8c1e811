//! Bearer tokens from a Docker token endpoint, and their cache.
//!
//! See <https://distribution.github.io/distribution/spec/auth/token/>.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use http::HeaderValue;
use serde::Deserialize;
use tokio::time::Instant;

use crate::error::UpstreamError;

/// Lifetime the spec prescribes when `expires_in` is missing.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// Cached scopes beyond which expired entries are swept on insert.
const SWEEP_ABOVE: usize = 256;

/// The token endpoint's JSON answer.
#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
    // `issued_at` is ignored on purpose: the lifetime counts from when we
    // received the token, which needs no clock agreement with the issuer.
}

/// A token ready to send, and how long to keep sending it. (`Debug` shows
/// the header as "Sensitive".)
#[derive(Debug)]
pub(crate) struct Token {
    pub header: HeaderValue,
    pub lifetime: Duration,
}

/// Reads a token response body. Errors never quote the body: it is a secret.
pub(crate) fn parse_token(body: &[u8]) -> Result<Token, UpstreamError> {
    let response: TokenResponse = serde_json::from_slice(body)
        // Only the position: serde's message may quote a value from the body.
        .map_err(|e| {
            UpstreamError::Protocol(format!("token response is not the expected JSON (column {})", e.column()))
        })?;
    let token = response
        .token
        .or(response.access_token)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| UpstreamError::Protocol("token response has neither token nor access_token".into()))?;
    let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| UpstreamError::Protocol("token contains characters not allowed in a header".into()))?;
    header.set_sensitive(true);
    let lifetime = match response.expires_in {
        Some(0) | None => DEFAULT_LIFETIME,
        Some(secs) => Duration::from_secs(secs),
    };
    Ok(Token { header, lifetime })
}

/// Tokens by scope (`repository:<name>:pull`), kept until shortly before expiry.
#[derive(Default)]
pub(crate) struct TokenCache {
    // A plain Mutex: it is never held across an await and the map is tiny.
    entries: Mutex<HashMap<String, (HeaderValue, Instant)>>,
}

impl TokenCache {
    /// The cached `Authorization` value for `scope`, if still fresh.
    pub fn get(&self, scope: &str) -> Option<HeaderValue> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(scope).filter(|(_, until)| Instant::now() < *until).map(|(header, _)| header.clone())
    }

    /// Keeps `token` for `scope`, retiring it a tenth of its lifetime (at
    /// most 30 s) early so a request never leaves with a token about to lapse.
    pub fn insert(&self, scope: &str, token: &Token) {
        let margin = (token.lifetime / 10).min(Duration::from_secs(30));
        let until = Instant::now() + token.lifetime - margin;
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= SWEEP_ABOVE {
            let now = Instant::now();
            entries.retain(|_, (_, until)| now < *until);
        }
        entries.insert(scope.to_owned(), (token.header.clone(), until));
    }

    /// Forgets the token for `scope` (the upstream refused it).
    pub fn remove(&self, scope: &str) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).remove(scope);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_token_or_access_token() {
        let token = parse_token(br#"{"token":"abc","expires_in":300,"issued_at":"2024-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(token.header.to_str().unwrap(), "Bearer abc");
        assert!(token.header.is_sensitive());
        assert_eq!(token.lifetime, Duration::from_secs(300));

        let token = parse_token(br#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!(token.header.to_str().unwrap(), "Bearer xyz");
        assert_eq!(token.lifetime, DEFAULT_LIFETIME);
    }

    #[test]
    fn rejects_bad_responses_without_quoting_them() {
        for body in [&b"not json secret"[..], br#"{"expires_in":5}"#, br#"{"token":""}"#, b"{\"token\":\"a\\nb\"}"] {
            let err = parse_token(body).unwrap_err();
            assert!(matches!(err, UpstreamError::Protocol(_)), "{err}");
            assert!(!err.to_string().contains("secret"));
        }
    }

    #[test]
    fn cache_expires_and_forgets() {
        let cache = TokenCache::default();
        let fresh = Token { header: HeaderValue::from_static("Bearer a"), lifetime: Duration::from_secs(60) };
        cache.insert("repository:a:pull", &fresh);
        assert_eq!(cache.get("repository:a:pull").unwrap(), "Bearer a");
        assert!(cache.get("repository:b:pull").is_none());
        cache.remove("repository:a:pull");
        assert!(cache.get("repository:a:pull").is_none());

        let stale = Token { header: HeaderValue::from_static("Bearer b"), lifetime: Duration::ZERO };
        cache.insert("repository:b:pull", &stale);
        assert!(cache.get("repository:b:pull").is_none());
    }
}
