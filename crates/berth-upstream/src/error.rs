//! What can go wrong talking to an upstream.
//!
//! Messages name the upstream and the request path but never credentials,
//! tokens or the URLs of redirect targets (pre-signed CDN URLs carry
//! signatures in their query).

use std::time::Duration;

/// An upstream request that did not produce a usable answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The configured URL, or a name used to build a request URL, is unusable.
    #[error("invalid upstream URL: {0}")]
    InvalidUrl(String),
    /// The upstream refused access (401/403) after the credentials or token were tried.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The upstream answered 429 and further attempts were not allowed or did not help.
    #[error("rate limited by upstream{}", match .retry_after {
        Some(after) => format!(" (retry after {}s)", after.as_secs()),
        None => String::new(),
    })]
    RateLimited {
        /// The upstream's `Retry-After`, when it sent one in seconds.
        retry_after: Option<Duration>,
    },
    /// Any other unexpected status: 5xx after retries, or a 4xx.
    #[error("unexpected status {status}: {message}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// What was asked and, when the upstream said, why it failed.
        message: String,
    },
    /// No response headers (or no complete small body) within the configured time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The connection failed: DNS, refused, reset, TLS.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The upstream broke the protocol: malformed challenge, token response or header.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A body exceeded the size limit for its kind.
    #[error("response body larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

impl UpstreamError {
    /// Whether trying again later may succeed: transport failures, timeouts,
    /// rate limits and server errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout(_) | Self::Connect(_) | Self::RateLimited { .. } => true,
            Self::Status { status, .. } => *status >= 500,
            Self::InvalidUrl(_) | Self::Unauthorized(_) | Self::Protocol(_) | Self::TooLarge { .. } => false,
        }
    }

    /// Classifies a reqwest failure; `context` says which request (no secrets).
    pub(crate) fn transport(context: &str, error: reqwest::Error) -> Self {
        let error = error.without_url();
        let detail = format!("{context}: {}", chain(&error));
        if error.is_timeout() {
            Self::Timeout(detail)
        } else if error.is_redirect() {
            Self::Protocol(detail)
        } else if error.is_builder() {
            Self::InvalidUrl(detail)
        } else {
            // Connect, reset while waiting for headers, TLS: all worth another try.
            Self::Connect(detail)
        }
    }
}

/// The error and its sources on one line; reqwest's own text stops at the
/// outermost layer ("error sending request").
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_kinds() {
        assert!(UpstreamError::Timeout("x".into()).is_retryable());
        assert!(UpstreamError::Connect("x".into()).is_retryable());
        assert!(UpstreamError::RateLimited { retry_after: None }.is_retryable());
        assert!(UpstreamError::Status { status: 503, message: String::new() }.is_retryable());
        assert!(!UpstreamError::Status { status: 400, message: String::new() }.is_retryable());
        assert!(!UpstreamError::Unauthorized("x".into()).is_retryable());
        assert!(!UpstreamError::TooLarge { limit: 1 }.is_retryable());
    }

    #[test]
    fn rate_limit_message_mentions_retry_after() {
        let err = UpstreamError::RateLimited { retry_after: Some(Duration::from_secs(7)) };
        assert_eq!(err.to_string(), "rate limited by upstream (retry after 7s)");
    }
}
