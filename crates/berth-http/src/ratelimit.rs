//! Request-count rate limits (API.md §3.2, C13).
//!
//! Two limiters, each a per-key hourly budget plus a per-minute burst:
//! - `/v2`: only manifest requests, `_catalog`, `tags/list` and upload `POST`
//!   count (C13), keyed by user (or by IP for anonymous callers and failed
//!   authentications), so a `docker pull` of big layers is never throttled by
//!   its blob requests and byte streams are never counted;
//! - `/auth` and `/api`: every request, keyed by client IP (they are where
//!   credentials are guessed).
//!
//! Counted responses carry `X-RateLimit-Limit/Remaining/Reset`; a refused one is
//! 429 with `Retry-After`. Limits are per node (API.md: "per node unless Redis is
//! configured").

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_access::ratelimit::{RateDecision, RateLimiter, RatePolicy};
use serde_json::json;

use crate::AppState;

/// The two limiters; `None` where limits are off.
#[derive(Debug, Default)]
pub struct RateLimits {
    pub registry: Option<RateLimiter>,
    pub api: Option<RateLimiter>,
}

impl RateLimits {
    /// Limiters for the given policies (`None`: unlimited).
    pub fn new(registry: Option<RatePolicy>, api: Option<RatePolicy>) -> Self {
        RateLimits { registry: registry.map(RateLimiter::new), api: api.map(RateLimiter::new) }
    }
}

/// Adds the `X-RateLimit-*` headers of a counted request.
pub fn add_headers(headers: &mut HeaderMap, decision: &RateDecision) {
    if decision.limit == 0 {
        return;
    }
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    put("x-ratelimit-limit", decision.limit.to_string());
    put("x-ratelimit-remaining", decision.remaining.to_string());
    put("x-ratelimit-reset", decision.reset_unix.to_string());
    if !decision.allowed {
        put("retry-after", decision.retry_after_secs.max(1).to_string());
    }
}

/// Counts one `/v2` request for `key`; `None` when limits are off.
pub fn check_registry(state: &AppState, key: &str) -> Option<RateDecision> {
    state.rate_limits.registry.as_ref().map(|limiter| limiter.check(key, Instant::now()))
}

/// Middleware for `/auth` and `/api/…`: counts by client IP.
pub async fn limit_api(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    // Health probes come every few seconds from load balancers; they must never see a 429.
    let counted = path == "/auth" || (path.starts_with("/api/") && path != "/api/v1/health");
    let Some(limiter) = state.rate_limits.api.as_ref().filter(|_| counted) else { return next.run(request).await };
    let ip = crate::auth::client_ip(request.extensions());
    let decision = limiter.check(&format!("ip:{ip}"), Instant::now());
    let mut response = if decision.allowed { next.run(request).await } else { refused(request.uri().path()) };
    add_headers(response.headers_mut(), &decision);
    response
}

/// The 429 of each surface.
fn refused(path: &str) -> Response {
    let body = if path == "/auth" {
        json!({"errors": [{"code": "TOOMANYREQUESTS", "message": "too many requests", "detail": {}}]})
    } else if path.starts_with("/api/v1/auth")
        || path.starts_with("/api/v1/system")
        || path.starts_with("/api/v1/audit/logs")
    {
        json!({"error": "too many requests", "code": "rate_limit_exceeded"})
    } else {
        json!({"error": {"code": "RATE_LIMITED", "message": "too many requests", "details": {"reason": "rate_limit_exceeded"}}})
    };
    (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response()
}
