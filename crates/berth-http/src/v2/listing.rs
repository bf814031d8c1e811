//! `/v2/`, `/v2/_ping`, `/v2/_catalog`, tags and referrers listings.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_core::{Digest, ErrorCode, RepoName};
use berth_registry::access::{Principal, Restriction};
use serde_json::{Value, json};

use super::{ApiResult, V2Request};
use crate::AppState;
use crate::error::ApiError;

/// Most entries a catalog page returns, whatever `n` asks for.
const MAX_CATALOG_PAGE: u32 = 1000;

pub(super) fn base(state: &AppState) -> Response {
    Json(json!({"registry": "berth", "version": state.version, "features": ["referrers"]})).into_response()
}

pub(super) fn ping() -> Response {
    Json(json!({"status": "OK"})).into_response()
}

/// Parses `n`: absent is `None`; anything but a non-negative integer is an error.
fn page_size(req: &V2Request) -> Result<Option<u32>, ApiError> {
    req.param("n")
        .map(|n| {
            n.parse::<u32>().map_err(|_| {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::PaginationNumberInvalid).detail(json!({"n": n}))
            })
        })
        .transpose()
}

/// Trims a page fetched with one extra row and adds `Link` when more remain.
/// `{"repositories":[…]}` serialised straight from the slice (no intermediate `Value`).
#[derive(serde::Serialize)]
struct Catalog<'a> {
    repositories: &'a [String],
}

/// `{"name":…,"tags":[…]}`.
#[derive(serde::Serialize)]
struct TagList<'a> {
    name: &'a str,
    tags: &'a [String],
}

/// Trims a page fetched with one extra row; returns it and the `Link` to the next one.
fn page<'a>(items: &'a [String], limit: Option<u32>, base_path: &str) -> (&'a [String], Option<String>) {
    let more = limit.is_some_and(|n| items.len() > n as usize);
    let items = match limit {
        Some(n) => &items[..items.len().min(n as usize)],
        None => items,
    };
    let link = match (more, items.last(), limit) {
        (true, Some(last), Some(n)) => {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("n", &n.to_string())
                .append_pair("last", last)
                .finish();
            Some(format!("<{base_path}?{query}>; rel=\"next\""))
        }
        _ => None,
    };
    (items, link)
}

fn with_link(body: impl serde::Serialize, link: Option<String>) -> Response {
    let mut response = Json(body).into_response();
    if let Some(link) = link {
        response.headers_mut().insert(header::LINK, link.parse().expect("link is ASCII"));
    }
    response
}

pub(super) async fn catalog(state: &AppState, req: &V2Request, principal: &Principal) -> ApiResult {
    let limit = page_size(req)?.unwrap_or(MAX_CATALOG_PAGE).min(MAX_CATALOG_PAGE);
    if limit == 0 {
        return Ok(Json(json!({"repositories": []})).into_response());
    }
    let repos = state.registry.catalog(req.param("last"), limit + 1).await?;
    let (repositories, link) = page(&repos, Some(limit), "/v2/_catalog");
    if !state.access.enabled() {
        return Ok(with_link(Catalog { repositories }, link));
    }
    // Only repositories the caller may pull (API.md §4). A scoped token's catalog
    // grant lists what its user can pull. A page may come back shorter than `n`;
    // `Link` still points past the last repository examined.
    let viewer = match &principal.restriction {
        Restriction::Scoped(_) => Principal { restriction: Restriction::Full, ..principal.clone() },
        _ => principal.clone(),
    };
    let mut visible = Vec::with_capacity(repositories.len());
    for repo in repositories {
        let perms = state.access.repo_perms(&viewer, repo).await.map_err(ApiError::unavailable)?;
        if perms.pull {
            visible.push(repo.clone());
        }
    }
    Ok(with_link(Catalog { repositories: &visible }, link))
}

pub(super) async fn tags(state: &AppState, repo: &RepoName, req: &V2Request) -> ApiResult {
    let limit = page_size(req)?;
    if limit == Some(0) {
        // The spec: n=0 returns an empty list and no Link (after checking the repository).
        state.registry.list_tags(repo, None, Some(0)).await?;
        return Ok(Json(json!({"name": repo.as_str(), "tags": []})).into_response());
    }
    let tags = state.registry.list_tags(repo, req.param("last"), limit.map(|n| n + 1)).await?;
    let base_path = format!("/v2/{repo}/tags/list");
    let (tags, link) = page(&tags, limit, &base_path);
    Ok(with_link(TagList { name: repo.as_str(), tags }, link))
}

/// Tags of a cache repository: the upstream's list when it answers, else the cached tags.
pub(super) async fn proxied_tags(
    state: &AppState,
    repo: &RepoName,
    route: &berth_proxy::Route,
    req: &V2Request,
) -> ApiResult {
    let limit = page_size(req)?;
    let last = req.param("last");
    match state.proxy.upstream_tags(route, limit.map(|n| n + 1), last).await {
        Some(tags) => {
            let tags: Vec<String> = tags.into_iter().filter(|t| last.is_none_or(|l| t.as_str() > l)).collect();
            let (tags, link) = page(&tags, limit, &format!("/v2/{repo}/tags/list"));
            Ok(with_link(TagList { name: repo.as_str(), tags }, link))
        }
        None => tags(state, repo, req).await,
    }
}

pub(super) async fn referrers(state: &AppState, repo: &RepoName, subject: &Digest, req: &V2Request) -> ApiResult {
    let artifact_type = req.param("artifactType").filter(|t| !t.is_empty());
    let list = state.registry.referrers(repo, subject, artifact_type).await?;
    let manifests: Vec<Value> = list
        .referrers
        .iter()
        .map(|r| {
            let mut d = json!({"mediaType": r.media_type, "digest": r.digest, "size": r.size});
            if let Some(t) = &r.artifact_type {
                d["artifactType"] = json!(t);
            }
            if let Some(a) = r.annotations_json.as_deref().and_then(|a| serde_json::from_str::<Value>(a).ok()) {
                d["annotations"] = a;
            }
            d
        })
        .collect();
    let body = json!({
        "schemaVersion": 2,
        "mediaType": berth_core::media_type::OCI_INDEX,
        "manifests": manifests,
    });
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, berth_core::media_type::OCI_INDEX.parse().expect("static"));
    if list.filtered_by_artifact_type {
        headers.insert("oci-filters-applied", "artifactType".parse().expect("static"));
    }
    Ok(response)
}
