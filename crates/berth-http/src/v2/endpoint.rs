//! Parsing `/v2/…` paths into endpoints.
//!
//! Repository names contain `/`, so the path is read from its right-hand end:
//! the last segments decide the endpoint and everything before is the name.

/// A `/v2` endpoint, before method dispatch and before validating names,
/// references and digests (so each handler can pick the right error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OciEndpoint {
    /// `/v2/`
    Base,
    /// `/v2/_ping`
    Ping,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/manifests/<reference>`
    Manifest { name: String, reference: String },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: String, digest: String },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart { name: String },
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload { name: String, id: String },
    /// `/v2/<name>/tags/list`
    TagsList { name: String },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: String, digest: String },
}

impl OciEndpoint {
    /// Parses the part of the path after `/v2/` (already percent-decoded).
    pub fn parse(rest: &str) -> Option<OciEndpoint> {
        match rest {
            "" => return Some(OciEndpoint::Base),
            "_ping" => return Some(OciEndpoint::Ping),
            "_catalog" => return Some(OciEndpoint::Catalog),
            _ => {}
        }
        let segments: Vec<&str> = rest.split('/').collect();
        let n = segments.len();
        let name_before = |k: usize| (n > k).then(|| segments[..n - k].join("/")).filter(|name| !name.is_empty());
        let last = segments[n - 1];
        let tail = |k: usize| (n >= k).then(|| &segments[n - k..n - 1]);
        if tail(3) == Some(&["blobs", "uploads"]) {
            let name = name_before(3)?;
            return Some(if last.is_empty() {
                OciEndpoint::UploadStart { name }
            } else {
                OciEndpoint::Upload { name, id: last.to_owned() }
            });
        }
        if n >= 3 && segments[n - 2..] == ["blobs", "uploads"] {
            return Some(OciEndpoint::UploadStart { name: name_before(2)? });
        }
        if n >= 3 && segments[n - 2..] == ["tags", "list"] {
            return Some(OciEndpoint::TagsList { name: name_before(2)? });
        }
        if last.is_empty() {
            return None;
        }
        let name = name_before(2)?;
        match segments[n - 2] {
            "manifests" => Some(OciEndpoint::Manifest { name, reference: last.to_owned() }),
            "blobs" => Some(OciEndpoint::Blob { name, digest: last.to_owned() }),
            "referrers" => Some(OciEndpoint::Referrers { name, digest: last.to_owned() }),
            _ => None,
        }
    }

    /// A stable name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            OciEndpoint::Base => "base",
            OciEndpoint::Ping => "ping",
            OciEndpoint::Catalog => "catalog",
            OciEndpoint::Manifest { .. } => "manifest",
            OciEndpoint::Blob { .. } => "blob",
            OciEndpoint::UploadStart { .. } => "upload_start",
            OciEndpoint::Upload { .. } => "upload",
            OciEndpoint::TagsList { .. } => "tags_list",
            OciEndpoint::Referrers { .. } => "referrers",
        }
    }

    /// The endpoint with the method, for metric labels: `manifest_get`,
    /// `blob_head`, `upload_patch`, … (`<endpoint>_other` for methods it does not serve).
    pub fn operation(&self, method: &axum::http::Method) -> &'static str {
        use axum::http::Method as M;
        match (self, method) {
            (OciEndpoint::Base, _) => "base",
            (OciEndpoint::Ping, _) => "ping",
            (OciEndpoint::Catalog, _) => "catalog",
            (OciEndpoint::TagsList { .. }, _) => "tags_list",
            (OciEndpoint::Referrers { .. }, _) => "referrers",
            (OciEndpoint::Manifest { .. }, &M::GET) => "manifest_get",
            (OciEndpoint::Manifest { .. }, &M::HEAD) => "manifest_head",
            (OciEndpoint::Manifest { .. }, &M::PUT) => "manifest_put",
            (OciEndpoint::Manifest { .. }, &M::DELETE) => "manifest_delete",
            (OciEndpoint::Manifest { .. }, _) => "manifest_other",
            (OciEndpoint::Blob { .. }, &M::GET) => "blob_get",
            (OciEndpoint::Blob { .. }, &M::HEAD) => "blob_head",
            (OciEndpoint::Blob { .. }, &M::DELETE) => "blob_delete",
            (OciEndpoint::Blob { .. }, _) => "blob_other",
            (OciEndpoint::UploadStart { .. }, &M::POST) => "upload_start",
            (OciEndpoint::UploadStart { .. }, _) => "upload_start_other",
            (OciEndpoint::Upload { .. }, &M::GET) => "upload_get",
            (OciEndpoint::Upload { .. }, &M::PATCH) => "upload_patch",
            (OciEndpoint::Upload { .. }, &M::PUT) => "upload_put",
            (OciEndpoint::Upload { .. }, &M::DELETE) => "upload_delete",
            (OciEndpoint::Upload { .. }, _) => "upload_other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OciEndpoint as E;

    fn p(s: &str) -> Option<E> {
        E::parse(s)
    }

    #[test]
    fn parses_every_endpoint() {
        assert_eq!(p(""), Some(E::Base));
        assert_eq!(p("_catalog"), Some(E::Catalog));
        assert_eq!(
            p("library/nginx/manifests/latest"),
            Some(E::Manifest { name: "library/nginx".into(), reference: "latest".into() })
        );
        assert_eq!(p("a/blobs/sha256:x"), Some(E::Blob { name: "a".into(), digest: "sha256:x".into() }));
        assert_eq!(p("a/b/blobs/uploads/"), Some(E::UploadStart { name: "a/b".into() }));
        assert_eq!(p("a/b/blobs/uploads"), Some(E::UploadStart { name: "a/b".into() }));
        assert_eq!(p("a/blobs/uploads/123"), Some(E::Upload { name: "a".into(), id: "123".into() }));
        assert_eq!(p("a/tags/list"), Some(E::TagsList { name: "a".into() }));
        assert_eq!(p("a/referrers/sha256:x"), Some(E::Referrers { name: "a".into(), digest: "sha256:x".into() }));
    }

    #[test]
    fn operations_combine_endpoint_and_method() {
        use axum::http::Method;
        let manifest = p("a/manifests/v1").unwrap();
        assert_eq!(manifest.operation(&Method::GET), "manifest_get");
        assert_eq!(manifest.operation(&Method::PUT), "manifest_put");
        assert_eq!(manifest.operation(&Method::POST), "manifest_other");
        assert_eq!(p("a/blobs/uploads/1").unwrap().operation(&Method::PATCH), "upload_patch");
        assert_eq!(p("a/blobs/uploads/").unwrap().operation(&Method::POST), "upload_start");
        assert_eq!(p("a/tags/list").unwrap().operation(&Method::GET), "tags_list");
    }

    #[test]
    fn names_may_contain_endpoint_words() {
        assert_eq!(
            p("manifests/blobs/manifests/v1"),
            Some(E::Manifest { name: "manifests/blobs".into(), reference: "v1".into() })
        );
        assert_eq!(p("blobs/tags/list"), Some(E::TagsList { name: "blobs".into() }));
    }

    #[test]
    fn rejects_unknown_paths() {
        for bad in ["manifests/latest", "a/manifests/", "a/unknown/x", "a", "a/b", "/manifests/x", "blobs/uploads/"] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }
}
