//! The single place where failures become `/v2` protocol responses.
//!
//! Every error carries an OCI error code, an HTTP status and optional headers.
//! Internal failures are logged in full and answered with a bare `UNKNOWN`, so
//! no internal detail ever reaches a client.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_core::ErrorCode;
use berth_registry::RegistryError;
use serde_json::{Value, json};

/// A `/v2` error response: `{"errors":[{"code","message","detail"}]}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    errors: Vec<(ErrorCode, Value)>,
    message: Option<String>,
    headers: Vec<(HeaderName, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode) -> Self {
        ApiError { status, errors: vec![(code, Value::Null)], message: None, headers: Vec::new() }
    }

    /// Attaches a JSON `detail` to the (first) error.
    pub fn detail(mut self, detail: Value) -> Self {
        self.errors[0].1 = detail;
        self
    }

    /// Replaces the default message with a more specific one.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    pub fn header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> ErrorCode {
        self.errors[0].0
    }

    pub fn name_invalid(reason: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::NameInvalid).detail(json!({"reason": reason.to_string()}))
    }

    pub fn digest_invalid(reason: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::DigestInvalid).detail(json!({"reason": reason.to_string()}))
    }

    pub fn not_found_endpoint() -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NameUnknown).message("no such registry endpoint")
    }

    /// 503 for a backend (database, store) that cannot answer now; the client may retry.
    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        RegistryError::Unavailable(detail.to_string()).into()
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::Unsupported)
            .message("method not allowed on this endpoint")
            .header(axum::http::header::ALLOW, allow)
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        use RegistryError as E;
        let (status, code) = match &e {
            E::NameUnknown => (StatusCode::NOT_FOUND, ErrorCode::NameUnknown),
            E::BlobUnknown(_) => (StatusCode::NOT_FOUND, ErrorCode::BlobUnknown),
            E::UploadUnknown => (StatusCode::NOT_FOUND, ErrorCode::BlobUploadUnknown),
            E::UploadRangeInvalid { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, ErrorCode::BlobUploadInvalid),
            E::DigestInvalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::DigestInvalid),
            E::SizeInvalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::SizeInvalid),
            E::ManifestUnknown => (StatusCode::NOT_FOUND, ErrorCode::ManifestUnknown),
            E::ManifestInvalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid),
            E::ManifestUnsupported(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, ErrorCode::ManifestInvalid),
            E::ManifestTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::SizeInvalid),
            E::ManifestBlobUnknown(_) => (StatusCode::BAD_REQUEST, ErrorCode::ManifestBlobUnknown),
            E::RangeNotSatisfiable { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, ErrorCode::SizeInvalid),
            E::DeletesDisabled => (StatusCode::METHOD_NOT_ALLOWED, ErrorCode::Unsupported),
            E::TagImmutable(_) => (StatusCode::FORBIDDEN, ErrorCode::Denied),
            E::ManifestReferenced(_) => (StatusCode::CONFLICT, ErrorCode::Denied),
            E::QuotaExceeded(_) => (StatusCode::FORBIDDEN, ErrorCode::Denied),
            E::StorageFull => (StatusCode::INSUFFICIENT_STORAGE, ErrorCode::Unknown),
            E::Unavailable(detail) => {
                tracing::warn!(error = %detail, "backend unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unknown)
            }
            E::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown)
            }
        };
        let mut api = ApiError::new(status, code);
        match e {
            E::BlobUnknown(d) => api = api.detail(json!({"digest": d})),
            E::DigestInvalid(m) | E::SizeInvalid(m) | E::ManifestInvalid(m) => api = api.detail(json!({"reason": m})),
            E::ManifestUnsupported(t) => api = api.detail(json!({"mediaType": t})),
            E::ManifestTooLarge { limit } => api = api.detail(json!({"limit": limit})),
            E::ManifestBlobUnknown(missing) => {
                api.errors = missing.into_iter().map(|d| (code, json!({"digest": d}))).collect();
            }
            E::RangeNotSatisfiable { size } => {
                api = api
                    .message("requested range not satisfiable")
                    .header(axum::http::header::CONTENT_RANGE, format!("bytes */{size}"));
            }
            E::StorageFull => api = api.detail(json!({"reason": "STORAGE_FULL"})),
            E::TagImmutable(tag) => {
                api = api
                    .message(format!("tag {tag} is immutable: a project rule forbids moving or deleting it"))
                    .detail(json!({"reason": "TAG_IMMUTABLE", "tag": tag}))
            }
            E::QuotaExceeded(kind) => {
                api = api
                    .message(format!(
                        "the project's {kind} quota is used up; delete content or ask an admin to raise the limit"
                    ))
                    .detail(json!({"reason": "QUOTA_EXCEEDED", "quota": kind}))
            }
            E::ManifestReferenced(index) => {
                api = api
                    .message(format!(
                        "the manifest is a child of index {index} in this repository; delete the index first"
                    ))
                    .detail(json!({"reason": "MANIFEST_REFERENCED", "index": index}))
            }
            E::Unavailable(_) => {
                api = api
                    .message("a storage backend is temporarily unavailable; retry")
                    .detail(json!({"reason": "BACKEND_UNAVAILABLE"}))
                    .header(axum::http::header::RETRY_AFTER, "1")
            }
            _ => {}
        }
        api
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let errors: Vec<Value> = self
            .errors
            .iter()
            .map(|(code, detail)| {
                json!({
                    "code": code.as_str(),
                    "message": self.message.as_deref().unwrap_or(code.message()),
                    "detail": if detail.is_null() { json!({}) } else { detail.clone() },
                })
            })
            .collect();
        let mut response = (self.status, axum::Json(json!({"errors": errors}))).into_response();
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().append(name, value);
            }
        }
        response
    }
}

impl ApiError {
    /// A pull-through cache failure on `/v2`; `manifest` picks the not-found code.
    pub fn from_proxy(e: berth_proxy::ProxyError, manifest: bool) -> Self {
        use berth_proxy::ProxyError as P;
        let not_found = if manifest { ErrorCode::ManifestUnknown } else { ErrorCode::BlobUnknown };
        match e {
            P::NotFound => Self::new(StatusCode::NOT_FOUND, not_found).message("not found in the cache or upstream"),
            P::Offline => Self::new(StatusCode::NOT_FOUND, not_found)
                .message("not cached, and the cache is offline")
                .detail(json!({"reason": "CACHE_OFFLINE"})),
            // A bad or unreachable upstream is a gateway failure (5xx use UNKNOWN, API.md O15).
            P::Upstream(m) | P::InvalidManifest(m) | P::Corrupt(m) => {
                tracing::warn!(error = %m, "upstream failure");
                Self::new(StatusCode::BAD_GATEWAY, ErrorCode::Unknown)
                    .message("the upstream registry failed")
                    .detail(json!({"reason": "UPSTREAM_ERROR", "error": m}))
            }
            P::Registry(e) => e.into(),
            P::Invalid(m) => Self::new(StatusCode::BAD_REQUEST, ErrorCode::NameInvalid).detail(json!({"reason": m})),
            P::UnknownUpstream | P::Internal(_) => {
                tracing::error!(error = %e, "cache failure");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown)
            }
        }
    }
}
