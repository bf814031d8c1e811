//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use berth_core::manifest::MAX_MANIFEST_BYTES;
use berth_core::{Digest, Reference, RepoName, Tag};
use berth_registry::RegistryError;
use http_body_util::BodyExt;

use super::{ApiResult, V2Request};
use crate::AppState;
use crate::error::ApiError;

/// Reads a reference for GET/HEAD/DELETE. A malformed tag cannot name anything
/// stored, so it is simply unknown (404); a malformed digest is a client error.
pub(super) fn lookup_reference(reference: &str) -> Result<Reference, ApiError> {
    if Digest::looks_like_digest(reference) {
        reference.parse::<Digest>().map(Reference::Digest).map_err(ApiError::digest_invalid)
    } else {
        reference.parse::<Tag>().map(Reference::Tag).map_err(|_| RegistryError::ManifestUnknown.into())
    }
}

pub(super) async fn get(state: &AppState, repo: &RepoName, reference: &str, req: &V2Request) -> ApiResult {
    let reference = lookup_reference(reference)?;
    let manifest = state.registry.get_manifest(repo, &reference).await?;
    let with_body = req.method == axum::http::Method::GET;
    if with_body {
        state.registry.record_pull(berth_registry::Pull::of(repo, &reference, &manifest), &req.actor);
    }
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, &manifest.media_type)
        .header(header::CONTENT_LENGTH, manifest.payload.len())
        .header("docker-content-digest", manifest.digest.as_str())
        .header(header::ETAG, format!("\"{}\"", manifest.digest));
    let body = if with_body { Body::from(manifest.payload.clone()) } else { Body::empty() };
    Ok(response.body(body).expect("valid response"))
}

pub(super) async fn put(state: &AppState, repo: &RepoName, reference: &str, req: &V2Request, body: Body) -> ApiResult {
    let reference: Reference = reference.parse().map_err(|e| match e {
        berth_core::reference::ReferenceError::Digest(e) => ApiError::digest_invalid(e),
        berth_core::reference::ReferenceError::Tag(e) => RegistryError::ManifestInvalid(format!("bad tag: {e}")).into(),
    })?;
    let extra_tags = req
        .params("tag")
        .map(|t| t.parse::<Tag>().map_err(|e| RegistryError::ManifestInvalid(format!("bad tag {t:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if req.content_length().is_some_and(|len| len > MAX_MANIFEST_BYTES as u64) {
        return Err(RegistryError::ManifestTooLarge { limit: MAX_MANIFEST_BYTES }.into());
    }
    let content_type = req.header(header::CONTENT_TYPE).map(str::to_owned);
    let body = read_limited(body).await?;
    let put =
        state.registry.put_manifest(repo, &reference, content_type.as_deref(), body, extra_tags, &req.actor).await?;
    let mut response = Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{repo}/manifests/{}", put.digest))
        .header("docker-content-digest", put.digest.as_str())
        .header(header::CONTENT_LENGTH, 0);
    if let Some(subject) = &put.subject {
        response = response.header("oci-subject", subject.as_str());
    }
    if !put.tags.is_empty() && matches!(reference, Reference::Digest(_)) {
        let tags: Vec<&str> = put.tags.iter().map(Tag::as_str).collect();
        response = response.header("oci-tag", tags.join(", "));
    }
    let response = response.body(Body::empty()).expect("valid response");
    Ok(super::with_quota_warning(state, repo, response).await)
}

/// Collects a manifest body, refusing more than the limit without buffering it.
async fn read_limited(body: Body) -> Result<Vec<u8>, ApiError> {
    let limited = http_body_util::Limited::new(body, MAX_MANIFEST_BYTES);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(RegistryError::ManifestTooLarge { limit: MAX_MANIFEST_BYTES }.into())
        }
        Err(e) => Err(RegistryError::ManifestInvalid(format!("could not read body: {e}")).into()),
    }
}

pub(super) async fn delete(state: &AppState, repo: &RepoName, reference: &str, req: &V2Request) -> ApiResult {
    let reference = lookup_reference(reference)?;
    state.registry.delete_manifest(repo, &reference, &req.actor).await?;
    Ok(Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid response"))
}
