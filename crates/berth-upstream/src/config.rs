//! What an upstream is and how patiently to talk to it.

use std::fmt;
use std::time::Duration;

use reqwest::Url;

use crate::error::UpstreamError;

/// Connection settings for one remote registry.
#[derive(Clone)]
pub struct UpstreamConfig {
    /// Short name used in logs and error messages.
    pub name: String,
    /// Base URL without `/v2`, e.g. `https://registry-1.docker.io` or `http://127.0.0.1:5000`.
    pub url: String,
    /// User for Basic auth or for the token endpoint; `None` means anonymous.
    pub username: Option<String>,
    /// Password or access token belonging to `username`.
    pub password: Option<String>,
    /// Time allowed to establish the TCP (and TLS) connection. Default 5 s.
    pub connect_timeout: Duration,
    /// Time allowed until response headers arrive, and for reading a whole
    /// small body (manifest, token, referrers). Default 30 s.
    pub timeout: Duration,
    /// Longest silence allowed while streaming a blob body. Default 60 s.
    pub read_timeout: Duration,
    /// Requests in flight to this upstream at most; a blob stream counts until
    /// it is dropped. Default 16.
    pub max_concurrent: usize,
    /// Extra attempts for retryable failures. Default 2.
    pub retries: u32,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            username: None,
            password: None,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            max_concurrent: 16,
            retries: 2,
        }
    }
}

// Hand-written so the password never reaches a log line through `{:?}`.
impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_concurrent", &self.max_concurrent)
            .field("retries", &self.retries)
            .finish()
    }
}

impl UpstreamConfig {
    /// Parses and checks `url`: http(s) with a host, no credentials, query or
    /// fragment, and no `/v2` suffix. Returns it without a trailing slash.
    pub(crate) fn base_url(&self) -> Result<Url, UpstreamError> {
        let invalid = |why: &str| UpstreamError::InvalidUrl(format!("upstream {}: {why}", self.name));
        let mut url = Url::parse(self.url.trim()).map_err(|e| invalid(&format!("cannot parse URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("URL scheme must be http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("URL has no host"));
        }
        // Credentials in the URL would leak into every error message and log line.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("put credentials in username/password, not in the URL"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("URL must not have a query or fragment"));
        }
        let path = url.path().trim_end_matches('/').to_owned();
        if path.ends_with("/v2") {
            return Err(invalid("give the base URL without /v2"));
        }
        url.set_path(&path);
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> UpstreamConfig {
        UpstreamConfig { name: "t".into(), url: url.into(), ..UpstreamConfig::default() }
    }

    #[test]
    fn accepts_http_and_https_bases() {
        assert_eq!(
            with_url("https://registry-1.docker.io").base_url().unwrap().as_str(),
            "https://registry-1.docker.io/"
        );
        assert_eq!(with_url("http://127.0.0.1:5000/").base_url().unwrap().as_str(), "http://127.0.0.1:5000/");
        assert_eq!(with_url("https://host/mirror/").base_url().unwrap().as_str(), "https://host/mirror");
    }

    #[test]
    fn rejects_bad_bases() {
        for url in [
            "",
            "ftp://host",
            "unix:/tmp/sock",
            "https://user:pw@host",
            "https://host?x=1",
            "https://host/v2",
            "https://host/v2/",
        ] {
            let err = with_url(url).base_url().unwrap_err();
            assert!(matches!(err, UpstreamError::InvalidUrl(_)), "{url}: {err}");
            assert!(!err.to_string().contains("pw"), "{err}");
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let config = UpstreamConfig { password: Some("hunter2".into()), ..with_url("https://h") };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
