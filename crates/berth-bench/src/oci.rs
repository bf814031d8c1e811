//! The distribution-spec requests the benchmarks are made of: uploads, mounts, manifests, blob GETs.

use anyhow::{Context, bail};
use berth_core::{Algorithm, Digest, media_type};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};

use crate::client::{self, Body, Conn, Fetched, Target};
use crate::data::{Blob, Pool};

impl Conn {
    /// A request with the target's `Host` and credentials.
    pub fn request(&self, method: Method, path: &str) -> http::request::Builder {
        self.target().request(method, path)
    }
}

/// Opens an upload session; returns the path to send the data to.
pub async fn start_upload(conn: &mut Conn, repo: &str) -> anyhow::Result<String> {
    let req = conn
        .request(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
        .header(header::CONTENT_LENGTH, 0)
        .body(client::empty())?;
    let resp = conn.fetch(req).await?.expect(StatusCode::ACCEPTED, "POST blobs/uploads")?;
    location(&resp)
}

/// Monolithic push: POST, then one PUT carrying the whole blob.
pub async fn push_monolithic(conn: &mut Conn, repo: &str, blob: &Blob) -> anyhow::Result<()> {
    let location = start_upload(conn, repo).await?;
    let body = client::stream(futures_util::stream::iter(blob.pieces(0, blob.size())));
    let req = data_request(conn, Method::PUT, &with_digest(&location, blob.digest()), blob.size(), body)?;
    conn.fetch(req).await?.expect(StatusCode::CREATED, "PUT blob upload")?;
    Ok(())
}

/// Chunked push: POST, one PATCH per `chunk` bytes (following `Location`), then an empty PUT.
pub async fn push_chunked(conn: &mut Conn, repo: &str, blob: &Blob, chunk: u64) -> anyhow::Result<()> {
    let mut location = start_upload(conn, repo).await?;
    let mut offset = 0;
    while offset < blob.size() {
        let n = chunk.min(blob.size() - offset);
        let body = client::stream(futures_util::stream::iter(blob.pieces(offset, n)));
        let req = conn
            .request(Method::PATCH, &location)
            .header(header::CONTENT_TYPE, media_type::OCTET_STREAM)
            .header(header::CONTENT_LENGTH, n)
            .header(header::CONTENT_RANGE, format!("{}-{}", offset, offset + n - 1))
            .body(body)?;
        let resp = conn.fetch(req).await?.expect(StatusCode::ACCEPTED, "PATCH blob upload")?;
        location = self::location(&resp)?;
        offset += n;
    }
    let req = data_request(conn, Method::PUT, &with_digest(&location, blob.digest()), 0, client::empty())?;
    conn.fetch(req).await?.expect(StatusCode::CREATED, "PUT blob upload")?;
    Ok(())
}

/// Pushes a small blob held in memory; returns its digest.
pub async fn push_bytes(conn: &mut Conn, repo: &str, bytes: &Bytes) -> anyhow::Result<Digest> {
    let digest = Digest::sha256(bytes);
    let location = start_upload(conn, repo).await?;
    let path = with_digest(&location, &digest);
    let req = data_request(conn, Method::PUT, &path, bytes.len() as u64, client::full(bytes.clone()))?;
    conn.fetch(req).await?.expect(StatusCode::CREATED, "PUT blob upload")?;
    Ok(digest)
}

/// An OCI index listing no manifests: it references nothing, so one PUT creates a repository.
pub const EMPTY_INDEX: &str =
    r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;

/// PUTs an OCI image manifest under a tag or digest.
pub async fn put_manifest(conn: &mut Conn, repo: &str, reference: &str, manifest: &Bytes) -> anyhow::Result<()> {
    put_manifest_as(conn, repo, reference, manifest, media_type::OCI_MANIFEST).await
}

/// PUTs a manifest of the given media type.
pub async fn put_manifest_as(
    conn: &mut Conn,
    repo: &str,
    reference: &str,
    manifest: &Bytes,
    media_type: &str,
) -> anyhow::Result<()> {
    let req = conn
        .request(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
        .header(header::CONTENT_TYPE, media_type)
        .header(header::CONTENT_LENGTH, manifest.len())
        .body(client::full(manifest.clone()))?;
    conn.fetch(req).await?.expect(StatusCode::CREATED, "PUT manifest")?;
    Ok(())
}

/// GETs a blob on a fresh connection, streaming the body; with `verify`, hashes it and checks the digest.
pub async fn get_blob(target: &Target, repo: &str, digest: &Digest, verify: bool) -> anyhow::Result<u64> {
    let path = format!("/v2/{repo}/blobs/{}", digest.as_str());
    let mut hasher = verify.then(|| Algorithm::Sha256.hasher());
    let (status, n) = client::raw_get(target, &path, |piece| {
        if let Some(h) = hasher.as_mut() {
            h.update(piece);
        }
    })
    .await?;
    if status != StatusCode::OK {
        bail!("GET blob: expected 200 OK, got {status}");
    }
    if let Some(h) = hasher {
        let got = h.finish();
        if &got != digest {
            bail!("GET blob: body hashes to {}, expected {}", got.as_str(), digest.as_str());
        }
    }
    Ok(n)
}

/// A small image: a config blob, one layer and the manifest that references them.
#[derive(Clone)]
pub struct Image {
    pub config: Bytes,
    pub layer: Bytes,
    pub manifest: Bytes,
    pub digest: Digest,
}

impl Image {
    /// Builds the image from the pool (`id` picks the layer's bytes).
    pub fn new(pool: &Pool, id: usize) -> Image {
        let config =
            Bytes::from_static(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#);
        let layer = pool.bytes(id.wrapping_mul(7919) << 10, 2048);
        let manifest = format!(
            concat!(
                r#"{{"schemaVersion":2,"mediaType":"{}","#,
                r#""config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"#,
                r#""layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}]}}"#
            ),
            media_type::OCI_MANIFEST,
            Digest::sha256(&config).as_str(),
            config.len(),
            Digest::sha256(&layer).as_str(),
            layer.len(),
        );
        let manifest = Bytes::from(manifest);
        let digest = Digest::sha256(&manifest);
        Image { config, layer, manifest, digest }
    }

    /// Pushes the config and layer blobs, then the manifest under `tag`.
    pub async fn push(&self, conn: &mut Conn, repo: &str, tag: &str) -> anyhow::Result<()> {
        push_bytes(conn, repo, &self.config).await?;
        push_bytes(conn, repo, &self.layer).await?;
        put_manifest(conn, repo, tag, &self.manifest).await
    }
}

fn data_request(conn: &Conn, method: Method, path: &str, len: u64, body: Body) -> anyhow::Result<Request<Body>> {
    Ok(conn
        .request(method, path)
        .header(header::CONTENT_TYPE, media_type::OCTET_STREAM)
        .header(header::CONTENT_LENGTH, len)
        .body(body)?)
}

/// The `Location` of an upload response as a path (absolute URLs are cut to their path).
fn location(resp: &Fetched) -> anyhow::Result<String> {
    let loc = resp.header(header::LOCATION).context("upload response has no Location header")?;
    let path = match loc.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => loc,
    };
    Ok(path.to_owned())
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={}", digest.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_appended_to_the_query() {
        let d = Digest::sha256(b"");
        assert_eq!(with_digest("/v2/a/blobs/uploads/x", &d), format!("/v2/a/blobs/uploads/x?digest={}", d.as_str()));
        assert_eq!(with_digest("/u?_state=s", &d), format!("/u?_state=s&digest={}", d.as_str()));
    }

    #[test]
    fn fixture_manifest_is_about_the_size_of_the_baseline_body() {
        let image = Image::new(&Pool::generate(1 << 20, 1), 0);
        assert!((380..460).contains(&image.manifest.len()), "{}", image.manifest.len());
        berth_core::ParsedManifest::parse(&image.manifest, Some(media_type::OCI_MANIFEST)).expect("valid manifest");
    }
}
