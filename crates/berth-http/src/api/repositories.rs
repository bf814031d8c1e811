//! Seed 004's repository API (API.md §7): `GET`/`PUT`/`DELETE
//! /api/v1/repositories/{repository}`, the whole remainder being the name.
//!
//! Visibility: a repository inherits its project's visibility until its own is
//! set here; the own value then applies to it alone (a `public` repository in a
//! private project may be pulled anonymously, a `private` one in a public
//! project only by members). The owner is the project's creator (or first
//! owner); admins and the project's owners and maintainers may change or
//! delete a repository (the same right as deleting on `/v2`). With deletes
//! turned off (`registry.deletes_enabled = false`) `DELETE` answers 400.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_core::RepoName;
use berth_meta::RepositoryRecord;
use berth_registry::RegistryError;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Caller, Problem, Surface, json_body, refuse_if_locked, rfc3339};
use crate::AppState;

const G: Surface = Surface::GhostDock;

type Answer = Result<Response, Problem>;

fn not_found(name: &str) -> Problem {
    let mut p = Problem::new(G, StatusCode::NOT_FOUND, "REPOSITORY_NOT_FOUND", format!("Repository {name} not found"));
    p.extra = json!({ "repository": name });
    p
}

/// `GET /api/v1/repositories/{repository}`: anyone who may pull it.
pub async fn get_repository(State(state): State<AppState>, Path(name): Path<String>, request: Request) -> Answer {
    let (parts, _) = request.into_parts();
    let caller = super::optional_caller(&state, &parts, G).await?;
    let (repo, record) = find(&state, &name).await?;
    if !perms(&state, &caller, &repo).await?.pull {
        return Err(not_found(&name));
    }
    Ok(Json(repository_json(&state, &record).await?).into_response())
}

/// The body of `PUT`: both fields optional, nothing else accepted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepositoryUpdate {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    visibility: Option<String>,
}

/// Longest description accepted, in characters.
const MAX_DESCRIPTION: usize = 4096;

/// `PUT /api/v1/repositories/{repository}`: description and visibility (owner).
pub async fn put_repository(State(state): State<AppState>, Path(name): Path<String>, request: Request) -> Answer {
    let (parts, body) = request.into_parts();
    let caller = super::optional_caller(&state, &parts, G).await?;
    refuse_if_locked(&state, G).await?;
    let (repo, _) = find(&state, &name).await?;
    require_owner(&state, &caller, &repo, &name).await?;
    let update: RepositoryUpdate = json_body(body, G).await?;
    if let Some(v) = &update.visibility
        && !matches!(v.as_str(), "public" | "private")
    {
        return Err(Problem::bad_request(G, "visibility must be public or private"));
    }
    if update.description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
        return Err(Problem::bad_request(G, format!("description is longer than {MAX_DESCRIPTION} characters")));
    }
    let meta = state.registry.meta();
    let now = berth_meta::now_unix();
    let mut event =
        berth_meta::EventDraft::new(berth_meta::EventKind::RepositoryUpdate, &super::event_actor(&caller, &parts))
            .repository(name.as_str());
    event.detail = json!({ "description": update.description, "visibility": update.visibility });
    let updated = meta
        .update_repository(&name, update.description.as_deref(), update.visibility.as_deref(), now, &[event])
        .await
        .map_err(|e| Problem::internal(G, e))?;
    if !updated {
        return Err(not_found(&name));
    }
    state.access.forget_repository(&name);
    if let Some(c) = &caller {
        let mut draft = c.actor.draft("repository_updated", "repository.update", &format!("repository:{name}"));
        draft.detail["visibility"] = json!(update.visibility);
        state.access.audit(draft).await;
    }
    let (_, record) = find(&state, &name).await?;
    Ok(Json(repository_json(&state, &record).await?).into_response())
}

/// `DELETE /api/v1/repositories/{repository}`: every tag and manifest (owner).
pub async fn delete_repository(State(state): State<AppState>, Path(name): Path<String>, request: Request) -> Answer {
    let (parts, _) = request.into_parts();
    let caller = super::optional_caller(&state, &parts, G).await?;
    refuse_if_locked(&state, G).await?;
    let (repo, _) = find(&state, &name).await?;
    require_owner(&state, &caller, &repo, &name).await?;
    match state.registry.delete_repository(&repo, &super::event_actor(&caller, &parts)).await {
        Ok(()) => {}
        Err(RegistryError::NameUnknown) => return Err(not_found(&name)),
        Err(RegistryError::DeletesDisabled) => return Err(Problem::bad_request(G, "deletes are disabled")),
        Err(RegistryError::TagImmutable(tag)) => {
            return Err(Problem::new(G, StatusCode::FORBIDDEN, "FORBIDDEN", format!("tag {tag} is immutable"))
                .with("reason", json!("TAG_IMMUTABLE"))
                .with("tag", json!(tag)));
        }
        Err(e) => return Err(Problem::internal(G, e)),
    }
    state.access.forget_repository(&name);
    if let Some(c) = &caller {
        let draft = c.actor.draft("repository_deleted", "repository.delete", &format!("repository:{name}"));
        state.access.audit(draft).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn find(state: &AppState, name: &str) -> Result<(RepoName, RepositoryRecord), Problem> {
    let repo: RepoName = name.parse().map_err(|_| not_found(name))?;
    let record = state.registry.meta().repository(name).await.map_err(|e| Problem::internal(G, e))?;
    Ok((repo, record.ok_or_else(|| not_found(name))?))
}

async fn perms(
    state: &AppState,
    caller: &Option<Caller>,
    repo: &RepoName,
) -> Result<berth_access::permissions::Perms, Problem> {
    match caller {
        None => Ok(berth_access::permissions::Perms::all()),
        Some(c) => state.access.repo_perms(&c.principal, repo.as_str()).await.map_err(|e| Problem::internal(G, e)),
    }
}

/// Admins and project owners/maintainers (delete right); others who can see
/// the repository get 403, the rest 404.
async fn require_owner(state: &AppState, caller: &Option<Caller>, repo: &RepoName, name: &str) -> Result<(), Problem> {
    let perms = perms(state, caller, repo).await?;
    if !perms.pull {
        return Err(not_found(name));
    }
    if !perms.delete {
        return Err(Problem::forbidden(G));
    }
    Ok(())
}

async fn repository_json(state: &AppState, r: &RepositoryRecord) -> Result<Value, Problem> {
    let tags: Vec<Value> = state
        .registry
        .meta()
        .repo_images(&r.name)
        .await
        .map_err(|e| Problem::internal(G, e))?
        .into_iter()
        .map(|t| json!({ "name": t.tag, "digest": t.digest, "size": t.size, "created_at": rfc3339(t.created_at) }))
        .collect();
    Ok(json!({
        "name": r.name,
        "description": r.description,
        "visibility": r.effective_visibility(),
        "owner": r.owner,
        "created_at": rfc3339(r.created_at),
        "updated_at": rfc3339(r.updated_at),
        "size": r.size,
        "pull_count": r.pull_count,
        "tags": tags,
    }))
}
