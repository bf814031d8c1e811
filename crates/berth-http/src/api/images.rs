//! Seed 000's image API (API.md §5.1): listings, search, details and tag
//! deletion, in the management envelope.
//!
//! `Image.size` is the manifest plus the blobs it references (config and
//! layers); for an index it is the index plus each child manifest and its
//! blobs, so it is what pulling every platform would transfer. `created_at` is
//! when the tag was last pushed. An index shows no `layers` of its own; its
//! `platforms` list what it holds.

use axum::extract::{Path, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::Response;
use berth_core::{Digest, Reference, RepoName, Tag};
use berth_meta::{ImagePage, ImageRow, Viewer};
use berth_registry::RegistryError;
use berth_registry::access::Restriction;
use serde_json::{Value, json};

use super::envelope::{Failure, Needs, ok, require};
use super::{Caller, Surface, paging, query_pairs, refuse_if_locked, rfc3339};
use crate::AppState;

type Answer = Result<Response, Failure>;

fn not_found(what: &str) -> Failure {
    Failure::not_found("IMAGE_NOT_FOUND", format!("image {what} not found"))
}

/// `GET /api/images`: pullable images by repository, then tag.
pub async fn list_images(State(state): State<AppState>, request: Request) -> Answer {
    let (parts, _) = request.into_parts();
    let caller = require(&state, &parts, Needs::User).await?;
    let (page, size) = page_args(&parts)?;
    let found = state.registry.meta().list_images(viewer(&caller), (page - 1) * size, size).await;
    page_answer(&state, &caller, found.map_err(Failure::internal)?, page, size).await
}

/// `GET /api/images/search?q=`: case-insensitive substring of name or tag.
pub async fn search_images(State(state): State<AppState>, request: Request) -> Answer {
    let (parts, _) = request.into_parts();
    let caller = require(&state, &parts, Needs::User).await?;
    let query = query_pairs(&parts);
    let q = query.iter().find(|(k, _)| k == "q").map(|(_, v)| v.trim()).unwrap_or_default();
    if q.is_empty() {
        return Err(Failure::bad_request("query parameter q is required"));
    }
    let (page, size) = page_args(&parts)?;
    let found = state.registry.meta().search_images(q, viewer(&caller), (page - 1) * size, size).await;
    page_answer(&state, &caller, found.map_err(Failure::internal)?, page, size).await
}

/// `GET /api/images/{name}`: the repository's tags when the whole remainder is
/// a repository, else `{name}/{tag}` (API.md D3).
pub async fn get_image(State(state): State<AppState>, Path(path): Path<String>, request: Request) -> Answer {
    let (parts, _) = request.into_parts();
    let caller = require(&state, &parts, Needs::User).await?;
    if let Ok(repo) = path.parse::<RepoName>()
        && state.registry.meta().repo_exists(&repo).await.map_err(Failure::internal)?
    {
        require_pull(&state, &caller, &repo, &path).await?;
        return repository_details(&state, &repo).await;
    }
    let (repo, tag) = split(&path)?;
    require_pull(&state, &caller, &repo, &path).await?;
    let image = state.registry.meta().image(repo.as_str(), tag.as_str()).await.map_err(Failure::internal)?;
    let image = image.ok_or_else(|| not_found(&path))?;
    let pull_cmd = format!("docker pull {}/{}:{}", registry_host(&state, &parts), image.repo, image.tag);
    Ok(ok(json!({ "image": detailed_json(&state, &repo, &image).await?, "pull_cmd": pull_cmd })))
}

/// `DELETE /api/images/{name}/{tag}`: removes the tag (its manifest stays
/// until garbage collection finds it untagged and unreferenced).
pub async fn delete_image(State(state): State<AppState>, Path(path): Path<String>, request: Request) -> Answer {
    let (parts, _) = request.into_parts();
    let caller = require(&state, &parts, Needs::User).await?;
    refuse_if_locked(&state, Surface::GhostDock).await?;
    let (repo, tag) = split(&path)?;
    if let Some(c) = &caller {
        let perms = state.access.repo_perms(&c.principal, repo.as_str()).await.map_err(Failure::internal)?;
        if !perms.pull {
            return Err(not_found(&path));
        }
        if !perms.delete {
            return Err(super::Problem::forbidden(Surface::GhostDock).into());
        }
    }
    let actor = super::event_actor(&caller, &parts);
    match state.registry.delete_manifest(&repo, &Reference::Tag(tag.clone()), &actor).await {
        Ok(()) => {}
        Err(RegistryError::ManifestUnknown | RegistryError::NameUnknown) => return Err(not_found(&path)),
        Err(RegistryError::DeletesDisabled) => return Err(Failure::bad_request("deletes are disabled")),
        Err(RegistryError::TagImmutable(tag)) => {
            let mut f =
                Failure::new(axum::http::StatusCode::FORBIDDEN, "permission_denied", format!("tag {tag} is immutable"));
            f.details = json!({ "reason": "TAG_IMMUTABLE", "tag": tag });
            return Err(f);
        }
        Err(e) => return Err(Failure::internal(e)),
    }
    if let Some(c) = &caller {
        let draft = c.actor.draft("image_deleted", "image.delete", &format!("repository:{repo}:{tag}"));
        state.access.audit(draft).await;
    }
    Ok(ok(json!({ "message": "Image deleted successfully", "name": repo.as_str(), "tag": tag.as_str() })))
}

/// `page` (1) and `page_size` (10, at most 100).
fn page_args(parts: &Parts) -> Result<(i64, i64), Failure> {
    paging(&query_pairs(parts), "page_size", 10, Surface::GhostDock).map_err(|p| Failure::bad_request(p.message))
}

fn viewer(caller: &Option<Caller>) -> Viewer {
    match caller {
        Some(c) if !c.principal.is_admin() => Viewer::User(c.user_id()),
        _ => Viewer::All,
    }
}

async fn page_answer(state: &AppState, caller: &Option<Caller>, found: ImagePage, page: i64, size: i64) -> Answer {
    let mut images = Vec::with_capacity(found.images.len());
    for image in &found.images {
        // A token limited to some repositories sees only those.
        // FIXME: the total still counts what its owner may pull.
        if let Some(c) = caller
            && matches!(c.principal.restriction, Restriction::Pat { .. })
            && !state.access.repo_perms(&c.principal, &image.repo).await.map_err(Failure::internal)?.pull
        {
            continue;
        }
        images.push(image_json(image));
    }
    Ok(ok(json!({
        "images": images,
        "total": found.total,
        "page": page,
        "page_size": size,
        "total_pages": (found.total + size - 1) / size,
    })))
}

fn image_json(image: &ImageRow) -> Value {
    json!({
        "name": image.repo,
        "tag": image.tag,
        "digest": image.digest,
        "size": image.size,
        "created_at": rfc3339(image.created_at),
    })
}

/// `{"name","tags":[Image + layers, platforms, counters]}`.
async fn repository_details(state: &AppState, repo: &RepoName) -> Answer {
    let rows = state.registry.meta().repo_images(repo.as_str()).await.map_err(Failure::internal)?;
    let mut tags = Vec::with_capacity(rows.len());
    for row in &rows {
        tags.push(detailed_json(state, repo, row).await?);
    }
    let cached = rows.first().is_some_and(|r| r.cached);
    Ok(ok(json!({ "name": repo.as_str(), "cached": cached, "tags": tags })))
}

/// `Image` plus `media_type`, `layers`, `platforms`, the counters and `cached`.
async fn detailed_json(state: &AppState, repo: &RepoName, row: &ImageRow) -> Result<Value, Failure> {
    let mut image = image_json(row);
    let (layers, platforms) = contents(state, repo, &row.digest).await?;
    image["media_type"] = json!(row.media_type);
    image["layers"] = layers;
    image["platforms"] = platforms;
    image["pull_count"] = json!(row.pull_count);
    image["push_count"] = json!(row.push_count);
    image["last_pulled_at"] = json!(row.last_pulled_at.map(rfc3339));
    image["cached"] = json!(row.cached);
    Ok(image)
}

/// The layers (`{"digest","size","mediaType"}`) of an image manifest, or the
/// platforms (`os/arch[/variant]`) of an index, read from the stored manifest.
async fn contents(state: &AppState, repo: &RepoName, digest: &str) -> Result<(Value, Value), Failure> {
    let digest: Digest = digest.parse().map_err(Failure::internal)?;
    let manifest = state.registry.get_manifest(repo, &Reference::Digest(digest)).await.map_err(Failure::internal)?;
    let doc: Value = serde_json::from_slice(&manifest.payload).unwrap_or(Value::Null);
    let layers: Vec<Value> = doc["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| json!({ "digest": l["digest"], "size": l["size"], "mediaType": l["mediaType"] }))
        .collect();
    let platforms: Vec<Value> = doc["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let p = &m["platform"];
            let (os, arch) = (p["os"].as_str()?, p["architecture"].as_str()?);
            Some(match p["variant"].as_str() {
                Some(v) => json!(format!("{os}/{arch}/{v}")),
                None => json!(format!("{os}/{arch}")),
            })
        })
        .collect();
    Ok((json!(layers), json!(platforms)))
}

/// `name/tag`, the last segment being the tag.
fn split(path: &str) -> Result<(RepoName, Tag), Failure> {
    let (name, tag) = path.rsplit_once('/').ok_or_else(|| not_found(path))?;
    let repo = name.parse::<RepoName>().map_err(|_| not_found(path))?;
    let tag = tag.parse::<Tag>().map_err(|_| not_found(path))?;
    Ok((repo, tag))
}

/// Hides what the caller may not pull behind the same 404 as a missing image.
async fn require_pull(state: &AppState, caller: &Option<Caller>, repo: &RepoName, path: &str) -> Result<(), Failure> {
    let Some(c) = caller else { return Ok(()) };
    let perms = state.access.repo_perms(&c.principal, repo.as_str()).await.map_err(Failure::internal)?;
    if perms.pull { Ok(()) } else { Err(not_found(path)) }
}

/// The registry host for `docker pull`: the external URL without its scheme,
/// else the request's `Host`.
fn registry_host(state: &AppState, parts: &Parts) -> String {
    if let Some(url) = state.external_url.as_deref() {
        let url = url.trim_end_matches('/');
        return url.split_once("://").map_or(url, |(_, rest)| rest).to_owned();
    }
    parts.headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost").to_owned()
}
