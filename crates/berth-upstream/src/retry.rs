//! When to try a request again, and how long to wait first.

use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{HeaderMap, StatusCode};

use crate::error::UpstreamError;

/// Wait before the first retry; doubles with each further one.
const BACKOFF_BASE: Duration = Duration::from_millis(100);

/// Longest backoff between two attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Longest `Retry-After` we wait out; beyond it we give up and report it,
/// since holding a pull that long helps nobody.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(5);

/// Exponential backoff before retry number `attempt + 1` (0-based).
pub(crate) fn backoff(attempt: u32) -> Duration {
    BACKOFF_BASE.checked_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX)).unwrap_or(BACKOFF_MAX).min(BACKOFF_MAX)
}

/// `Retry-After` in seconds; the HTTP-date form is not used by registries and is ignored.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Whether a response with `status` deserves another attempt, and after how long.
pub(crate) fn delay_for_status(status: StatusCode, headers: &HeaderMap, attempt: u32) -> Option<Duration> {
    if !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) {
        return None;
    }
    let honours_retry_after = status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE;
    match retry_after(headers).filter(|_| honours_retry_after) {
        Some(after) if after > RETRY_AFTER_MAX => None,
        Some(after) => Some(after),
        None => Some(backoff(attempt)),
    }
}

/// Whether a failed attempt deserves another, and after how long.
pub(crate) fn delay_for_error(error: &UpstreamError, attempt: u32) -> Option<Duration> {
    match error {
        // The token endpoint can rate-limit too; its Retry-After counts like the registry's.
        UpstreamError::RateLimited { retry_after: Some(after) } if *after > RETRY_AFTER_MAX => None,
        UpstreamError::RateLimited { retry_after: Some(after) } => Some(*after),
        _ if error.is_retryable() => Some(backoff(attempt)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn backoff_doubles_and_caps() {
        let waits: Vec<u64> = (0..7).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff(40), BACKOFF_MAX);
    }

    #[test]
    fn retry_after_seconds_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn which_statuses_retry() {
        let none = HeaderMap::new();
        assert_eq!(delay_for_status(StatusCode::BAD_GATEWAY, &none, 1), Some(Duration::from_millis(200)));
        assert_eq!(delay_for_status(StatusCode::TOO_MANY_REQUESTS, &none, 0), Some(Duration::from_millis(100)));
        for status in [StatusCode::BAD_REQUEST, StatusCode::NOT_FOUND, StatusCode::UNAUTHORIZED, StatusCode::OK] {
            assert_eq!(delay_for_status(status, &none, 0), None, "{status}");
        }

        let mut soon = HeaderMap::new();
        soon.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        assert_eq!(delay_for_status(StatusCode::TOO_MANY_REQUESTS, &soon, 0), Some(Duration::from_secs(1)));
        assert_eq!(delay_for_status(StatusCode::SERVICE_UNAVAILABLE, &soon, 0), Some(Duration::from_secs(1)));
        // Only 429 and 503 carry a meaningful Retry-After.
        assert_eq!(delay_for_status(StatusCode::BAD_GATEWAY, &soon, 0), Some(Duration::from_millis(100)));

        let limited = |secs| UpstreamError::RateLimited { retry_after: Some(Duration::from_secs(secs)) };
        assert_eq!(delay_for_error(&limited(2), 0), Some(Duration::from_secs(2)));
        assert_eq!(delay_for_error(&limited(9), 0), None);
        assert_eq!(delay_for_error(&UpstreamError::Connect(String::new()), 2), Some(Duration::from_millis(400)));
        assert_eq!(delay_for_error(&UpstreamError::Unauthorized(String::new()), 0), None);

        let mut late = HeaderMap::new();
        late.insert(RETRY_AFTER, HeaderValue::from_static("60"));
        assert_eq!(delay_for_status(StatusCode::TOO_MANY_REQUESTS, &late, 0), None);
    }
}
