//! Blob uploads: `POST …/blobs/uploads/` and `GET`/`PATCH`/`PUT`/`DELETE …/blobs/uploads/<id>`.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use berth_core::{Algorithm, ContentRange, Digest, ErrorCode, RepoName};
use berth_registry::{MountOutcome, RegistryError, UploadState};
use serde_json::json;

use super::{ApiResult, V2Request, body_stream, upload_range};
use crate::AppState;
use crate::access_log::RequestInfo;
use crate::error::ApiError;

fn upload_location(repo: &RepoName, id: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

/// A 202/204 answer describing where an upload stands.
fn session_response(status: StatusCode, repo: &RepoName, state: &UploadState) -> Response {
    Response::builder()
        .status(status)
        .header(header::LOCATION, upload_location(repo, &state.id))
        .header(header::RANGE, upload_range(state.received))
        .header("docker-upload-uuid", &state.id)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid response")
}

fn blob_created(repo: &RepoName, digest: &Digest) -> Response {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{repo}/blobs/{digest}"))
        .header("docker-content-digest", digest.as_str())
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid response")
}

/// Adds the headers a client needs to resume a session that has `received` bytes.
fn with_progress(e: ApiError, repo: &RepoName, id: &str, received: u64) -> ApiError {
    e.header(header::LOCATION, upload_location(repo, id))
        .header(header::RANGE, upload_range(received))
        .header(header::HeaderName::from_static("docker-upload-uuid"), id)
}

/// Maps an error on an existing session, adding the headers clients need to resume.
fn session_error(repo: &RepoName, id: &str, e: RegistryError) -> ApiError {
    match e {
        RegistryError::UploadRangeInvalid { received } => with_progress(ApiError::from(e), repo, id, received),
        other => other.into(),
    }
}

/// The request's Content-Range. A malformed one is a 416 carrying the session's
/// progress like any other bad range (or a 404 when there is no such session).
async fn chunk_range(
    state: &AppState,
    repo: &RepoName,
    id: &str,
    req: &V2Request,
) -> Result<Option<ContentRange>, ApiError> {
    match content_range(req) {
        Ok(range) => Ok(range),
        Err(e) => {
            let upload = state.registry.upload_status(repo, id).await?;
            Err(with_progress(e, repo, id, upload.received))
        }
    }
}

/// Upload ids are UUIDs; anything else cannot be a session of ours.
fn check_id(id: &str) -> Result<(), ApiError> {
    uuid::Uuid::parse_str(id).map(|_| ()).map_err(|_| ApiError::from(RegistryError::UploadUnknown))
}

fn content_range(req: &V2Request) -> Result<Option<ContentRange>, ApiError> {
    req.header(header::CONTENT_RANGE)
        .map(|h| {
            ContentRange::parse(h).map_err(|_| {
                ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, ErrorCode::BlobUploadInvalid)
                    .detail(json!({"reason": format!("malformed Content-Range {h:?}")}))
            })
        })
        .transpose()
}

fn digest_query(req: &V2Request, key: &str) -> Result<Option<Digest>, ApiError> {
    req.param(key).map(|d| d.parse().map_err(ApiError::digest_invalid)).transpose()
}

pub(super) async fn start(
    state: &AppState,
    repo: &RepoName,
    req: &V2Request,
    body: Body,
    info: &mut RequestInfo,
) -> ApiResult {
    let registry = &state.registry;
    if let Some(digest) = digest_query(req, "mount")? {
        info.digest = Some(digest.to_string());
        // An invalid `from` cannot name a repository holding the blob: fall back to a session.
        let from = req.param("from").and_then(|f| f.parse::<RepoName>().ok());
        if req.param("from").is_some() && from.is_none() {
            let state = registry.start_upload(repo, digest.algorithm(), &req.actor).await?;
            return Ok(session_response(StatusCode::ACCEPTED, repo, &state));
        }
        return match registry.mount_or_start(repo, &digest, from.as_ref(), &req.actor).await? {
            MountOutcome::Mounted { .. } => {
                Ok(super::with_quota_warning(state, repo, blob_created(repo, &digest)).await)
            }
            MountOutcome::Started(state) => Ok(session_response(StatusCode::ACCEPTED, repo, &state)),
        };
    }
    if let Some(digest) = digest_query(req, "digest")? {
        info.digest = Some(digest.to_string());
        let declared = req.content_length();
        registry.put_blob(repo, &digest, declared, body_stream(body), &req.actor).await?;
        return Ok(super::with_quota_warning(state, repo, blob_created(repo, &digest)).await);
    }
    let algorithm = match req.param("digest-algorithm") {
        Some(a) => a.parse::<Algorithm>().map_err(ApiError::digest_invalid)?,
        None => Algorithm::Sha256,
    };
    let state = registry.start_upload(repo, algorithm, &req.actor).await?;
    Ok(session_response(StatusCode::ACCEPTED, repo, &state))
}

pub(super) async fn status(state: &AppState, repo: &RepoName, id: &str) -> ApiResult {
    check_id(id)?;
    let upload = state.registry.upload_status(repo, id).await?;
    Ok(session_response(StatusCode::NO_CONTENT, repo, &upload))
}

pub(super) async fn patch(state: &AppState, repo: &RepoName, id: &str, req: &V2Request, body: Body) -> ApiResult {
    check_id(id)?;
    let range = chunk_range(state, repo, id, req).await?;
    let declared = req.content_length();
    let upload = state
        .registry
        .append(repo, id, range, declared, body_stream(body))
        .await
        .map_err(|e| session_error(repo, id, e))?;
    Ok(session_response(StatusCode::ACCEPTED, repo, &upload))
}

pub(super) async fn finish(
    state: &AppState,
    repo: &RepoName,
    id: &str,
    req: &V2Request,
    body: Body,
    info: &mut RequestInfo,
) -> ApiResult {
    check_id(id)?;
    let digest = digest_query(req, "digest")?.ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::DigestInvalid)
            .detail(json!({"digest": "digest parameter required"}))
    })?;
    info.digest = Some(digest.to_string());
    let last_chunk = if req.has_body() {
        let range = chunk_range(state, repo, id, req).await?;
        let declared = req.content_length();
        Some((range, declared, body_stream(body)))
    } else {
        None
    };
    state
        .registry
        .complete_upload(repo, id, &digest, last_chunk, &req.actor)
        .await
        .map_err(|e| session_error(repo, id, e))?;
    Ok(super::with_quota_warning(state, repo, blob_created(repo, &digest)).await)
}

pub(super) async fn cancel(state: &AppState, repo: &RepoName, id: &str) -> ApiResult {
    check_id(id)?;
    state.registry.cancel_upload(repo, id).await?;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).body(Body::empty()).expect("valid response"))
}
