//! Reading the few response headers the distribution protocol relies on.
//!
//! A header that is present but unreadable is a protocol error rather than
//! "absent": a cache must not store a manifest under a garbled digest.

use http::HeaderMap;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};

use crate::error::UpstreamError;

/// The digest header of manifest and blob responses.
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// `Content-Length`, if sent.
pub(crate) fn content_length(headers: &HeaderMap, context: &str) -> Result<Option<u64>, UpstreamError> {
    text(headers, CONTENT_LENGTH.as_str(), context)?
        .map(|value| {
            value
                .parse()
                .map_err(|_| UpstreamError::Protocol(format!("{context}: Content-Length {value:?} is not a number")))
        })
        .transpose()
}

/// `Docker-Content-Digest`, if sent.
pub(crate) fn digest(headers: &HeaderMap, context: &str) -> Result<Option<String>, UpstreamError> {
    text(headers, DOCKER_CONTENT_DIGEST, context)
}

/// `Content-Type` without parameters (`; charset=…`), if sent.
pub(crate) fn media_type(headers: &HeaderMap, context: &str) -> Result<Option<String>, UpstreamError> {
    Ok(text(headers, CONTENT_TYPE.as_str(), context)?
        .map(|value| value.split(';').next().unwrap_or_default().trim().to_owned())
        .filter(|value| !value.is_empty()))
}

/// A header as trimmed text; an empty value counts as absent.
fn text(headers: &HeaderMap, name: &str, context: &str) -> Result<Option<String>, UpstreamError> {
    let Some(value) = headers.get(name) else { return Ok(None) };
    let value = value
        .to_str()
        .map_err(|_| UpstreamError::Protocol(format!("{context}: header {name} is not visible ASCII")))?
        .trim();
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn reads_and_checks_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("1234"));
        headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/vnd.oci.image.index.v1+json; charset=utf-8"));
        headers.insert(DOCKER_CONTENT_DIGEST, HeaderValue::from_static(" sha256:abc "));
        assert_eq!(content_length(&headers, "c").unwrap(), Some(1234));
        assert_eq!(media_type(&headers, "c").unwrap().as_deref(), Some("application/vnd.oci.image.index.v1+json"));
        assert_eq!(digest(&headers, "c").unwrap().as_deref(), Some("sha256:abc"));

        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("12x"));
        assert!(matches!(content_length(&headers, "c"), Err(UpstreamError::Protocol(_))));
        assert_eq!(content_length(&HeaderMap::new(), "c").unwrap(), None);
    }
}
