//! The public client: one method per distribution-spec read operation.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};

use crate::MAX_MANIFEST_SIZE;
use crate::body::{blob_stream, read_limited, status_error};
use crate::config::UpstreamConfig;
use crate::error::UpstreamError;
use crate::exchange::{Exchange, Request, Transport};
use crate::headers::{content_length, digest, media_type};
use crate::paths::Paths;
use crate::types::{BlobDownload, FetchedManifest, ManifestHead};

/// Manifest types we can serve, newest first (index and manifest, OCI then Docker).
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// The referrers API answers with an OCI image index.
const REFERRERS_ACCEPT: &str = "application/vnd.oci.image.index.v1+json";

/// A client for one upstream registry. Cheap to clone: clones share the
/// connection pool, token cache and concurrency cap.
#[derive(Clone)]
pub struct UpstreamClient {
    transport: Arc<Transport>,
    paths: Arc<Paths>,
}

impl fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.transport.config;
        f.debug_struct("UpstreamClient").field("name", &config.name).field("url", &config.url).finish_non_exhaustive()
    }
}

impl UpstreamClient {
    /// Builds a client; fails if `config.url` is not an http(s) URL with a host.
    pub fn new(config: UpstreamConfig) -> Result<Self, UpstreamError> {
        let base = config.base_url()?;
        let paths = Arc::new(Paths::new(&base));
        Ok(Self { transport: Arc::new(Transport::new(config, base)?), paths })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &UpstreamConfig {
        &self.transport.config
    }

    /// `GET /v2/` without credentials; returns the status code.
    /// A healthy registry answers 200 (open) or 401 (wants authentication).
    pub async fn ping(&self) -> Result<u16, UpstreamError> {
        let request = Request { method: Method::GET, url: self.paths.root(), accept: None, scope: None };
        let exchange = self.transport.execute(&request).await?;
        Ok(exchange.response.status().as_u16())
    }

    /// `HEAD` a manifest by tag or digest; `Ok(None)` if the upstream does not have it.
    pub async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>, UpstreamError> {
        let request = self.pull(Method::HEAD, repo, "manifests", reference, Some(MANIFEST_ACCEPT))?;
        let context = self.context(&request);
        let Some(exchange) = self.found(&request, &context).await? else { return Ok(None) };
        let headers = exchange.response.headers();
        Ok(Some(ManifestHead {
            digest: digest(headers, &context)?,
            media_type: media_type(headers, &context)?,
            size: content_length(headers, &context)?,
        }))
    }

    /// `GET` a manifest by tag or digest; `Ok(None)` if the upstream does not
    /// have it. Bodies over [`MAX_MANIFEST_SIZE`] fail with `TooLarge`.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Option<FetchedManifest>, UpstreamError> {
        let request = self.pull(Method::GET, repo, "manifests", reference, Some(MANIFEST_ACCEPT))?;
        let context = self.context(&request);
        let Some(exchange) = self.found(&request, &context).await? else { return Ok(None) };
        let headers = exchange.response.headers();
        let media_type = media_type(headers, &context)?;
        let digest = digest(headers, &context)?;
        let body = self.read_small(exchange, &context).await?;
        Ok(Some(FetchedManifest { media_type, digest, body }))
    }

    /// `GET` a blob, following redirects; `Ok(None)` if the upstream does not
    /// have it. The body streams and holds a concurrency slot until dropped.
    pub async fn get_blob(&self, repo: &str, digest: &str) -> Result<Option<BlobDownload>, UpstreamError> {
        let request = self.pull(Method::GET, repo, "blobs", digest, None)?;
        let context = self.context(&request);
        let Some(exchange) = self.found(&request, &context).await? else { return Ok(None) };
        let size = content_length(exchange.response.headers(), &context)?;
        Ok(Some(BlobDownload { size, stream: blob_stream(exchange, context) }))
    }

    /// `GET /v2/<repo>/referrers/<digest>` (OCI 1.1): the raw image index.
    /// `Ok(None)` on 404, which is also how upstreams without the API answer.
    pub async fn referrers(&self, repo: &str, digest: &str) -> Result<Option<Bytes>, UpstreamError> {
        let request = self.pull(Method::GET, repo, "referrers", digest, Some(REFERRERS_ACCEPT))?;
        let context = self.context(&request);
        let Some(exchange) = self.found(&request, &context).await? else { return Ok(None) };
        self.read_small(exchange, &context).await.map(Some)
    }

    /// `GET /v2/<repo>/tags/list`, paged with `n` and `last` when given: the raw
    /// JSON (`{"name","tags"}`). `Ok(None)` on 404.
    pub async fn tags(&self, repo: &str, n: Option<u32>, last: Option<&str>) -> Result<Option<Bytes>, UpstreamError> {
        let mut request = self.pull(Method::GET, repo, "tags", "list", Some("application/json"))?;
        if n.is_some() || last.is_some() {
            let mut query = request.url.query_pairs_mut();
            if let Some(n) = n {
                query.append_pair("n", &n.to_string());
            }
            if let Some(last) = last {
                query.append_pair("last", last);
            }
        }
        let context = self.context(&request);
        let Some(exchange) = self.found(&request, &context).await? else { return Ok(None) };
        self.read_small(exchange, &context).await.map(Some)
    }

    /// A request needing pull access to `repo`.
    fn pull(
        &self,
        method: Method,
        repo: &str,
        kind: &str,
        reference: &str,
        accept: Option<&'static str>,
    ) -> Result<Request, UpstreamError> {
        let url = self.paths.object(repo, kind, reference)?;
        Ok(Request { method, url, accept, scope: Some(format!("repository:{repo}:pull")) })
    }

    fn context(&self, request: &Request) -> String {
        request.context(&self.transport.config.name)
    }

    /// Executes `request`: a 2xx exchange, `None` on 404, an error otherwise.
    async fn found(&self, request: &Request, context: &str) -> Result<Option<Exchange>, UpstreamError> {
        let exchange = self.transport.execute(request).await?;
        let status = exchange.response.status();
        if status.is_success() {
            Ok(Some(exchange))
        } else if status == StatusCode::NOT_FOUND {
            Ok(None)
        } else {
            Err(status_error(exchange.response, context, self.transport.config.timeout).await)
        }
    }

    /// Reads a manifest-sized body, keeping the slot until it is read.
    async fn read_small(&self, exchange: Exchange, context: &str) -> Result<Bytes, UpstreamError> {
        let Exchange { response, permit: _permit } = exchange;
        read_limited(response, MAX_MANIFEST_SIZE, self.transport.config.timeout, context).await
    }
}
