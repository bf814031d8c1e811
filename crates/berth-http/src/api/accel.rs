//! Seed 000's accelerator API (API.md §5.2): upstreams, the cache, and pulls
//! through it, in the management envelope.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_core::{Digest, Reference, RepoName};
use berth_proxy::upstreams::UpstreamView;
use berth_proxy::{ProxyError, UpstreamSpec};
use serde_json::json;

use super::envelope::{Failure, Needs, ok, require};
use super::{Caller, Surface, json_body, query_pairs, rfc3339};
use crate::AppState;

type Answer = Result<Response, Failure>;

fn failure(e: ProxyError) -> Failure {
    match e {
        ProxyError::Invalid(m) => Failure::bad_request(m),
        ProxyError::UnknownUpstream => Failure::not_found("NOT_FOUND", "upstream not found"),
        ProxyError::NotFound | ProxyError::Offline => Failure::not_found("NOT_FOUND", e.to_string()),
        ProxyError::InvalidManifest(m) => Failure::new(StatusCode::BAD_REQUEST, "INVALID_MANIFEST", m),
        ProxyError::Upstream(m) | ProxyError::Corrupt(m) => Failure::new(StatusCode::BAD_GATEWAY, "UPSTREAM_ERROR", m),
        ProxyError::Registry(berth_registry::RegistryError::StorageFull) => {
            Failure::new(StatusCode::INSUFFICIENT_STORAGE, "STORAGE_FULL", "storage is full")
        }
        other => Failure::internal(other),
    }
}

async fn audit(state: &AppState, caller: &Option<Caller>, event: &str, action: &str, resource: &str) {
    if let Some(caller) = caller {
        state.access.audit(caller.actor.draft(event, action, resource)).await;
    }
}

/// `GET /api/accel/upstreams`.
pub async fn list_upstreams(State(state): State<AppState>, request: Request) -> Answer {
    let (parts, _) = request.into_parts();
    require(&state, &parts, Needs::Admin).await?;
    let upstreams: Vec<UpstreamView> = state.proxy.upstreams().iter().map(|u| UpstreamView::from(&u.record)).collect();
    Ok(ok(json!({ "count": upstreams.len(), "upstreams": upstreams })))
}

/// `POST /api/accel/upstreams`: `name` and `url` required, `enabled` defaults to true.
pub async fn add_upstream(State(state): State<AppState>, request: Request) -> Answer {
    let (parts, body) = request.into_parts();
    let caller = require(&state, &parts, Needs::Admin).await?;
    let spec: UpstreamSpec = json_body(body, Surface::GhostDock).await?;
    let view = state.proxy.add_upstream(spec, false).await.map_err(failure)?;
    ensure_namespace_project(&state, &view, &caller).await?;
    audit(&state, &caller, "upstream_created", "upstream.create", &format!("upstream:{}", view.name)).await;
    Ok(ok(view))
}

/// `PUT /api/accel/upstreams/{name}`: any field but the name.
pub async fn update_upstream(State(state): State<AppState>, Path(name): Path<String>, request: Request) -> Answer {
    let (parts, body) = request.into_parts();
    let caller = require(&state, &parts, Needs::Admin).await?;
    let update: UpstreamSpec = json_body(body, Surface::GhostDock).await?;
    let view = state.proxy.update_upstream(&name, update).await.map_err(failure)?;
    ensure_namespace_project(&state, &view, &caller).await?;
    audit(&state, &caller, "upstream_updated", "upstream.update", &format!("upstream:{name}")).await;
    Ok(ok(view))
}

/// `DELETE /api/accel/upstreams/{name}`.
pub async fn delete_upstream(State(state): State<AppState>, Path(name): Path<String>, request: Request) -> Answer {
    let (parts, _) = request.into_parts();
    let caller = require(&state, &parts, Needs::Admin).await?;
    state.proxy.delete_upstream(&name).await.map_err(failure)?;
    audit(&state, &caller, "upstream_deleted", "upstream.delete", &format!("upstream:{name}")).await;
    Ok(ok(json!({ "message": "Upstream deleted" })))
}

/// `POST /api/accel/upstreams/{name}/enable`.
pub async fn enable_upstream(state: State<AppState>, name: Path<String>, request: Request) -> Answer {
    switch(state, name, request, true).await
}

/// `POST /api/accel/upstreams/{name}/disable`.
pub async fn disable_upstream(state: State<AppState>, name: Path<String>, request: Request) -> Answer {
    switch(state, name, request, false).await
}

async fn switch(State(state): State<AppState>, Path(name): Path<String>, request: Request, enabled: bool) -> Answer {
    let (parts, _) = request.into_parts();
    let caller = require(&state, &parts, Needs::Admin).await?;
    let update = UpstreamSpec { enabled: Some(enabled), ..UpstreamSpec::default() };
    let view = state.proxy.update_upstream(&name, update).await.map_err(failure)?;
    let action = if enabled { "upstream.enable" } else { "upstream.disable" };
    audit(&state, &caller, "upstream_updated", action, &format!("upstream:{name}")).await;
    Ok(ok(view))
}

/// `GET /api/accel/upstreams/{name}/health`.
pub async fn upstream_health(State(state): State<AppState>, Path(name): Path<String>, request: Request) -> Answer {
    let (parts, _) = request.into_parts();
    require(&state, &parts, Needs::Admin).await?;
    Ok(ok(state.proxy.upstream_health(&name).await.map_err(failure)?))
}

/// `GET /api/accel/cache/stats`.
pub async fn cache_stats(State(state): State<AppState>, request: Request) -> Answer {
    let (parts, _) = request.into_parts();
    require(&state, &parts, Needs::Admin).await?;
    Ok(ok(state.proxy.stats().await.map_err(failure)?))
}

/// `GET /api/accel/cache/entries` (`page`, `page_size`, at most 1000 per page).
pub async fn cache_entries(State(state): State<AppState>, request: Request) -> Answer {
    let (parts, _) = request.into_parts();
    require(&state, &parts, Needs::Admin).await?;
    let query = query_pairs(&parts);
    let get = |k: &str| query.iter().find(|(key, _)| key == k).and_then(|(_, v)| v.parse::<i64>().ok());
    let page = get("page").unwrap_or(1).clamp(1, super::MAX_PAGE);
    let size = get("page_size").unwrap_or(100).clamp(1, 1000);
    let entries = state.proxy.entries(size, (page - 1) * size).await.map_err(failure)?;
    let entries: Vec<_> = entries
        .iter()
        .map(|e| {
            json!({
                "digest": e.digest,
                "size": e.size,
                "last_access": rfc3339(e.last_access),
                "access_count": e.access_count,
                "upstream": e.upstream,
                "pinned": e.pinned,
                "created_at": rfc3339(e.created_at),
            })
        })
        .collect();
    Ok(ok(json!({ "count": entries.len(), "entries": entries })))
}

/// `DELETE /api/accel/cache`.
pub async fn clear_cache(State(state): State<AppState>, request: Request) -> Answer {
    let (parts, _) = request.into_parts();
    let caller = require(&state, &parts, Needs::Admin).await?;
    let cleared = state.proxy.clear().await.map_err(failure)?;
    audit(&state, &caller, "cache_cleared", "cache.clear", "cache").await;
    Ok(ok(json!({ "message": "Cache cleared", "entries": cleared })))
}

/// `DELETE /api/accel/cache/{digest}`.
pub async fn delete_entry(State(state): State<AppState>, Path(digest): Path<String>, request: Request) -> Answer {
    let (parts, _) = request.into_parts();
    let caller = require(&state, &parts, Needs::Admin).await?;
    if !state.proxy.delete_entry(&digest).await.map_err(failure)? {
        return Err(Failure::not_found("NOT_FOUND", "cache entry not found"));
    }
    audit(&state, &caller, "cache_entry_deleted", "cache.delete", &digest).await;
    Ok(ok(json!({ "message": "Cache entry deleted", "digest": digest })))
}

/// `PUT /api/accel/cache/{digest}/pin` and `DELETE …/pin` (added by berth).
pub async fn pin_entry(State(state): State<AppState>, Path(digest): Path<String>, request: Request) -> Answer {
    let (parts, _) = request.into_parts();
    let caller = require(&state, &parts, Needs::Admin).await?;
    let pinned = parts.method == axum::http::Method::PUT;
    if !state.proxy.pin(&digest, pinned).await.map_err(failure)? {
        return Err(Failure::not_found("NOT_FOUND", "cache entry not found"));
    }
    let action = if pinned { "cache.pin" } else { "cache.unpin" };
    audit(&state, &caller, "cache_entry_updated", action, &digest).await;
    Ok(ok(json!({ "digest": digest, "pinned": pinned })))
}

/// The project of an upstream's namespace, so its repositories can be
/// authorized: public without credentials (it mirrors public content),
/// private with them.
async fn ensure_namespace_project(
    state: &AppState,
    view: &UpstreamView,
    caller: &Option<Caller>,
) -> Result<(), Failure> {
    let Some(caller) = caller else { return Ok(()) };
    crate::api::projects::ensure_cache_project(state, &view.namespace, view.username.is_none(), &caller.actor)
        .await
        .map_err(Failure::internal)
}

/// `GET /api/accel/pull/{name}/manifests/{reference}` and `…/blobs/{digest}`:
/// raw content through the cache (API.md §5.2), for signed-in users who may pull.
pub async fn pull(State(state): State<AppState>, Path(rest): Path<String>, request: Request) -> Answer {
    let (parts, _) = request.into_parts();
    let caller = require(&state, &parts, Needs::User).await?;
    let (name, kind, reference) =
        split_pull_path(&rest).ok_or_else(|| Failure::not_found("NOT_FOUND", "no such endpoint"))?;
    name.parse::<RepoName>().map_err(|e| Failure::bad_request(format!("invalid repository name: {e}")))?;
    let route = state.proxy.route(name, None).await.map_err(failure)?;
    let repo_name = route.as_ref().map(|r| r.cache_repo.to_string()).unwrap_or_else(|| name.to_owned());
    if let Some(caller) = &caller {
        let perms = state.access.repo_perms(&caller.principal, &repo_name).await.map_err(Failure::internal)?;
        if !perms.pull {
            return Err(Failure::new(StatusCode::FORBIDDEN, "FORBIDDEN", "you may not pull this repository"));
        }
    }
    let repo: RepoName = repo_name.parse().map_err(|e| Failure::bad_request(format!("{e}")))?;
    if kind == "manifests" {
        let not_found = || Failure::not_found("IMAGE_NOT_FOUND", "image not found");
        let reference: Reference = reference.parse().map_err(|_| not_found())?;
        let (body, cache) = match &route {
            Some(route) => {
                let m = state.proxy.manifest(route, &reference).await.map_err(|e| match e {
                    ProxyError::NotFound | ProxyError::Offline => not_found(),
                    other => failure(other),
                })?;
                (m.body, Some(m.status.as_str()))
            }
            None => (state.registry.get_manifest(&repo, &reference).await.map_err(|_| not_found())?, None),
        };
        let mut response = Response::builder()
            .header(header::CONTENT_TYPE, &body.media_type)
            .header(header::CONTENT_LENGTH, body.payload.len())
            .header("docker-content-digest", body.digest.as_str());
        if let Some(cache) = cache {
            response = response.header("x-berth-cache", cache);
        }
        return Ok(response.body(Body::from(body.payload.clone())).expect("valid response"));
    }
    let not_found = || Failure::not_found("BLOB_NOT_FOUND", "blob not found");
    let digest: Digest = reference.parse().map_err(|_| not_found())?;
    let (size, stream, cache) = match &route {
        Some(route) => {
            let b = state.proxy.blob(route, &digest, None, true).await.map_err(|e| match e {
                ProxyError::NotFound | ProxyError::Offline => not_found(),
                other => failure(other),
            })?;
            (b.size, b.stream, Some(b.status.as_str()))
        }
        None => {
            let b = state.registry.get_blob(&repo, &digest, None).await.map_err(|_| not_found())?;
            (Some(b.size), b.stream, None)
        }
    };
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, berth_core::media_type::OCTET_STREAM)
        .header("docker-content-digest", digest.as_str());
    if let Some(size) = size {
        response = response.header(header::CONTENT_LENGTH, size);
    }
    if let Some(cache) = cache {
        response = response.header("x-berth-cache", cache);
    }
    Ok(response.body(Body::from_stream(stream)).expect("valid response").into_response())
}

/// `library/nginx/manifests/latest` → (`library/nginx`, `manifests`, `latest`):
/// the name is everything before the last `/manifests/` or `/blobs/` (API.md D3).
fn split_pull_path(rest: &str) -> Option<(&str, &'static str, &str)> {
    let (head, reference) = rest.rsplit_once('/')?;
    let (name, kind) = head.rsplit_once('/')?;
    let kind = match kind {
        "manifests" => "manifests",
        "blobs" => "blobs",
        _ => return None,
    };
    (!name.is_empty() && !reference.is_empty()).then_some((name, kind, reference))
}

#[cfg(test)]
mod tests {
    use super::split_pull_path;

    #[test]
    fn pull_paths_split_at_the_last_kind() {
        assert_eq!(split_pull_path("library/nginx/manifests/latest"), Some(("library/nginx", "manifests", "latest")));
        assert_eq!(split_pull_path("a/blobs/b/blobs/sha256:x"), Some(("a/blobs/b", "blobs", "sha256:x")));
        assert_eq!(split_pull_path("nginx/tags/list"), None);
        assert_eq!(split_pull_path("manifests/latest"), None);
    }
}
