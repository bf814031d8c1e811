//! Building request URLs under an upstream's `/v2/`.
//!
//! Repository names keep their `/` as path separators and references go in
//! verbatim, so both are checked against the characters the distribution
//! spec allows: nothing here may be percent-encoded, re-rooted by `..`, or
//! turned into a query.

use reqwest::Url;

use crate::error::UpstreamError;

/// Request URLs for one upstream.
#[derive(Debug)]
pub(crate) struct Paths {
    /// Base URL without a trailing slash.
    base: String,
}

impl Paths {
    pub fn new(base: &Url) -> Self {
        Self { base: base.as_str().trim_end_matches('/').to_owned() }
    }

    /// `{base}/v2/`.
    pub fn root(&self) -> Url {
        Url::parse(&format!("{}/v2/", self.base)).expect("base URL was validated")
    }

    /// `{base}/v2/{repo}/{kind}/{reference}`, e.g. kind `manifests` or `blobs`.
    pub fn object(&self, repo: &str, kind: &str, reference: &str) -> Result<Url, UpstreamError> {
        check_repo(repo)?;
        check_reference(reference)?;
        Url::parse(&format!("{}/v2/{repo}/{kind}/{reference}", self.base))
            .map_err(|e| UpstreamError::InvalidUrl(format!("cannot build URL for {repo}: {e}")))
    }
}

/// Slash-separated segments of `[A-Za-z0-9._-]`, none of them empty, `.` or `..`.
fn check_repo(repo: &str) -> Result<(), UpstreamError> {
    let segment_ok = |s: &str| {
        !s.is_empty() && s != "." && s != ".." && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if repo.split('/').all(segment_ok) {
        Ok(())
    } else {
        Err(UpstreamError::InvalidUrl(format!("invalid repository name {repo:?}")))
    }
}

/// A tag (`[A-Za-z0-9._-]`) or a digest (`algorithm:encoded`, adding `:+=`).
fn check_reference(reference: &str) -> Result<(), UpstreamError> {
    let ok = !reference.is_empty()
        && reference != "."
        && reference != ".."
        && reference.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:+=".contains(&b));
    if ok { Ok(()) } else { Err(UpstreamError::InvalidUrl(format!("invalid reference {reference:?}"))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(base: &str) -> Paths {
        Paths::new(&Url::parse(base).unwrap())
    }

    #[test]
    fn keeps_repo_slashes_and_references_verbatim() {
        let p = paths("https://registry-1.docker.io/");
        assert_eq!(p.root().as_str(), "https://registry-1.docker.io/v2/");
        assert_eq!(
            p.object("library/nginx", "manifests", "1.27-alpine").unwrap().as_str(),
            "https://registry-1.docker.io/v2/library/nginx/manifests/1.27-alpine"
        );
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            paths("http://127.0.0.1:5000/mirror").object("a/b/c", "blobs", digest).unwrap().as_str(),
            format!("http://127.0.0.1:5000/mirror/v2/a/b/c/blobs/{digest}")
        );
    }

    #[test]
    fn rejects_names_that_would_change_the_path() {
        let p = paths("http://h");
        for repo in ["", "/a", "a/", "a//b", "../x", "a/./b", "a?b", "a#b", "a%2fb", "a b"] {
            assert!(p.object(repo, "manifests", "latest").is_err(), "{repo}");
        }
        for reference in ["", "..", "a/b", "a?b", "a%20"] {
            assert!(p.object("a", "manifests", reference).is_err(), "{reference}");
        }
    }
}
