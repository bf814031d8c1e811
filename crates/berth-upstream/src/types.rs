//! What the client hands back.

use std::fmt;
use std::io;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;

/// A streamed response body. Errors are `io::Error`s; a stalled body ends
/// with [`io::ErrorKind::TimedOut`].
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Headers of a manifest, from `HEAD /v2/<name>/manifests/<reference>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// `Docker-Content-Digest`, when the upstream sent it.
    pub digest: Option<String>,
    /// `Content-Type` without parameters.
    pub media_type: Option<String>,
    /// `Content-Length`.
    pub size: Option<u64>,
}

/// A manifest body with what the upstream said about it. The body is exactly
/// the bytes received; the digest header is not verified here.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// `Content-Type` without parameters.
    pub media_type: Option<String>,
    /// `Docker-Content-Digest`, when the upstream sent it.
    pub digest: Option<String>,
    /// The raw manifest bytes (at most [`MAX_MANIFEST_SIZE`](crate::MAX_MANIFEST_SIZE)).
    pub body: Bytes,
}

/// A blob being downloaded. It occupies one of the client's concurrency
/// slots until `stream` ends, fails or is dropped.
pub struct BlobDownload {
    /// `Content-Length` of the (possibly redirected) response.
    pub size: Option<u64>,
    /// The body; not retried once it has started.
    pub stream: ByteStream,
}

impl fmt::Debug for BlobDownload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobDownload").field("size", &self.size).finish_non_exhaustive()
    }
}
