//! `/v2` reads served through the pull-through cache, and the refusal of
//! writes into an upstream's namespace.

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use berth_core::{Digest, RepoName};
use berth_proxy::{CacheStatus, Route};

use super::endpoint::OciEndpoint;
use super::{ApiResult, V2Request};
use crate::AppState;
use crate::error::ApiError;

/// Decides whether the cache serves this (already authorized) request,
/// rewriting the endpoint's name to the cache repository it is served from.
pub(super) async fn route(
    state: &AppState,
    endpoint: &mut OciEndpoint,
    req: &V2Request,
) -> Result<Option<Route>, ApiError> {
    use OciEndpoint as E;
    let proxy = &state.proxy;
    if !proxy.is_active() {
        return Ok(None);
    }
    let read = matches!(req.method, Method::GET | Method::HEAD);
    let name = match endpoint {
        E::Manifest { name, .. } | E::Blob { name, .. } if read => name,
        E::TagsList { name } | E::Referrers { name, .. } if read => name,
        E::Manifest { name, .. } | E::UploadStart { name } | E::Upload { name, .. } if req.method != Method::DELETE => {
            return match proxy.namespace_of(name) {
                Some(ns) => Err(ApiError::new(StatusCode::FORBIDDEN, berth_core::ErrorCode::Denied)
                    .message(format!("{ns} is a pull-through cache of an upstream registry; push elsewhere"))
                    .detail(serde_json::json!({"reason": "PROXY_NAMESPACE", "namespace": ns}))),
                None => Ok(None),
            };
        }
        _ => return Ok(None),
    };
    // Only a well-formed name can be routed; the usual checks report the rest.
    if name.parse::<RepoName>().is_err() {
        return Ok(None);
    }
    let route = proxy.route(name, req.param("ns")).await.map_err(|e| ApiError::from_proxy(e, true))?;
    if let Some(route) = &route {
        *name = route.cache_repo.to_string();
    }
    Ok(route)
}

fn cache_headers(builder: axum::http::response::Builder, status: CacheStatus) -> axum::http::response::Builder {
    let builder = builder.header("x-berth-cache", status.as_str());
    if status == CacheStatus::Stale { builder.header(header::WARNING, "110 - \"Response is Stale\"") } else { builder }
}

pub(super) async fn manifest(state: &AppState, route: &Route, reference: &str, req: &V2Request) -> ApiResult {
    let with_body = req.method == Method::GET;
    let reference = super::manifests::lookup_reference(reference)?;
    let found = state.proxy.manifest(route, &reference).await.map_err(|e| ApiError::from_proxy(e, true))?;
    let m = &found.body;
    if with_body {
        state.registry.record_pull(berth_registry::Pull::of(&route.cache_repo, &reference, m), &req.actor);
    }
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, &m.media_type)
        .header(header::CONTENT_LENGTH, m.payload.len())
        .header("docker-content-digest", m.digest.as_str())
        .header(header::ETAG, format!("\"{}\"", m.digest));
    let body = if with_body { Body::from(m.payload.clone()) } else { Body::empty() };
    Ok(cache_headers(response, found.status).body(body).expect("valid response"))
}

pub(super) async fn blob(state: &AppState, route: &Route, digest: &Digest, req: &V2Request) -> ApiResult {
    let want_body = req.method == Method::GET;
    let range = req.header(header::RANGE);
    let blob = state.proxy.blob(route, digest, range, want_body).await.map_err(|e| ApiError::from_proxy(e, false))?;
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, berth_core::media_type::OCTET_STREAM)
        .header(header::ACCEPT_RANGES, "bytes")
        .header("docker-content-digest", digest.as_str())
        .header(header::ETAG, format!("\"{digest}\""));
    response = match (blob.range, blob.size) {
        (Some(r), Some(size)) => response
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_LENGTH, r.len())
            .header(header::CONTENT_RANGE, format!("bytes {}-{}/{size}", r.start, r.end)),
        (_, Some(size)) => response.status(StatusCode::OK).header(header::CONTENT_LENGTH, size),
        (_, None) => response.status(StatusCode::OK),
    };
    let body = if want_body { Body::from_stream(blob.stream) } else { Body::empty() };
    Ok(cache_headers(response, blob.status).body(body).expect("valid response"))
}
