//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use berth_core::{Digest, RepoName};

use super::{ApiResult, V2Request};
use crate::AppState;

pub(super) async fn handle(state: &AppState, repo: &RepoName, digest: &Digest, req: &V2Request) -> ApiResult {
    let registry = &state.registry;
    match req.method {
        Method::HEAD => {
            let size = registry.stat_blob(repo, digest).await?;
            Ok(blob_response(StatusCode::OK, digest, size).body(Body::empty()).expect("valid response"))
        }
        Method::DELETE => {
            registry.delete_blob(repo, digest, &req.actor).await?;
            Ok(Response::builder()
                .status(StatusCode::ACCEPTED)
                .header(header::CONTENT_LENGTH, 0)
                .body(Body::empty())
                .expect("valid response"))
        }
        _ => {
            let blob = registry.get_blob(repo, digest, req.header(header::RANGE)).await?;
            let body = Body::from_stream(blob.stream);
            let response = match blob.range {
                Some(r) => blob_response(StatusCode::PARTIAL_CONTENT, digest, r.len())
                    .header(header::CONTENT_RANGE, format!("bytes {}-{}/{}", r.start, r.end, blob.size)),
                None => blob_response(StatusCode::OK, digest, blob.size),
            };
            Ok(response.body(body).expect("valid response"))
        }
    }
}

fn blob_response(status: StatusCode, digest: &Digest, len: u64) -> axum::http::response::Builder {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, berth_core::media_type::OCTET_STREAM)
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header("docker-content-digest", digest.as_str())
        .header(header::ETAG, format!("\"{digest}\""))
        .header(header::CACHE_CONTROL, "max-age=31536000")
}
