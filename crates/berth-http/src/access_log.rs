//! One readable log line per request (written by [`crate::observe`]).

use std::time::Duration;

use axum::http::{Method, header};
use axum::response::Response;

/// The tracing target of access lines. The text log format writes these
/// lines as they are, so [`log`] escapes any text in them that holds control characters.
pub const TARGET: &str = "berth::access";

/// What a handler learned about a request, for the access log.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// The endpoint name (`get_blob`, `put_manifest`, …).
    pub endpoint: &'static str,
    /// The endpoint and method as one metric label (`manifest_get`, `upload_patch`, …).
    pub operation: &'static str,
    pub repo: Option<String>,
    pub digest: Option<String>,
}

/// Logs method, path, status, response bytes, duration, endpoint, repository and digest.
/// Text from the client (the path, and the repository and reference decoded
/// from it) is written as it is unless it holds a control character.
pub fn log(method: &Method, path: &str, response: &Response, elapsed: Duration, info: &RequestInfo) {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    let bytes = response.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).unwrap_or("-");
    let tenths = (elapsed.as_micros() + 50) / 100;
    tracing::info!(
        target: TARGET,
        "{method} {path} {status} {bytes}B {ms}.{tenth}ms endpoint={endpoint} repo={repo} digest={digest}",
        status = response.status().as_u16(),
        ms = tenths / 10,
        tenth = tenths % 10,
        path = Plain(path),
        endpoint = if info.endpoint.is_empty() { "-" } else { info.endpoint },
        repo = Plain(info.repo.as_deref().unwrap_or("-")),
        digest = Plain(info.digest.as_deref().unwrap_or("-")),
    );
}

/// Client text for a log line: as it is, or quoted and escaped if it holds
/// a control character (a percent-encoded escape sequence, say).
struct Plain<'a>(&'a str);

impl std::fmt::Display for Plain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.chars().any(char::is_control) { write!(f, "{:?}", self.0) } else { f.write_str(self.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::Plain;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(Plain("/v2/team/app/manifests/v1").to_string(), "/v2/team/app/manifests/v1");
        assert_eq!(Plain("team/\u{1b}[31mred").to_string(), r#""team/\u{1b}[31mred""#);
        assert_eq!(Plain("a\nb").to_string(), r#""a\nb""#);
    }
}
