//! Projects and their members (added by berth; seed 004 envelope).
//!
//! A project is the first segment of repository names. It is created by the
//! first push into it (the pusher becomes its owner) or here by an admin. Its
//! owner and admins set its visibility and members.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_access::permissions::MemberRole;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Caller, Problem, Surface, caller, json_body, refuse_if_locked, rfc3339};
use crate::AppState;

const G: Surface = Surface::GhostDock;

/// A project name is one repository path component.
fn valid_project(name: &str) -> bool {
    format!("{name}/x").parse::<berth_core::RepoName>().is_ok() && !name.contains('/')
}

/// Whether the caller owns the project (or is an admin).
pub(crate) async fn require_owner(state: &AppState, caller: &Caller, project: &str) -> Result<(), Problem> {
    if caller.principal.is_admin() {
        return Ok(());
    }
    if !caller.is_login() {
        return Err(Problem::forbidden(G));
    }
    let members = state.access.meta().list_members(project).await.map_err(|e| Problem::internal(G, e))?;
    let owner = members.iter().any(|(id, _, role)| *id == caller.user_id() && role == "owner");
    if owner { Ok(()) } else { Err(Problem::forbidden(G)) }
}

async fn project_json(state: &AppState, name: &str) -> Result<Value, Problem> {
    let meta = state.access.meta();
    let project = meta.project(name).await.map_err(|e| Problem::internal(G, e))?;
    let project = project.ok_or_else(|| Problem::not_found(G, format!("project {name} not found")))?;
    let members: Vec<Value> = meta
        .list_members(name)
        .await
        .map_err(|e| Problem::internal(G, e))?
        .into_iter()
        .map(|(id, username, role)| json!({ "user_id": id, "username": username, "role": role }))
        .collect();
    Ok(json!({
        "name": project.name,
        "visibility": project.visibility,
        "description": project.description,
        "created_at": rfc3339(project.created_at),
        "members": members,
    }))
}

/// `GET /api/v1/projects/{name}`: members and admins see it; anyone signed in sees a public one.
pub async fn get_project(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    let caller = caller(&state, &parts, G).await?;
    let perms =
        state.access.repo_perms(&caller.principal, &format!("{name}/x")).await.map_err(|e| Problem::internal(G, e))?;
    let exists = state.access.meta().project(&name).await.map_err(|e| Problem::internal(G, e))?.is_some();
    if !exists || !perms.pull {
        return Err(Problem::not_found(G, format!("project {name} not found")));
    }
    Ok(Json(project_json(&state, &name).await?).into_response())
}

#[derive(Deserialize)]
struct ProjectBody {
    #[serde(default)]
    visibility: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// `PUT /api/v1/projects/{name}`: sets visibility/description (owner, admin);
/// an admin may create the project here.
pub async fn put_project(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let caller = caller(&state, &parts, G).await?;
    refuse_if_locked(&state, G).await?;
    if !valid_project(&name) {
        return Err(Problem::bad_request(G, "invalid project name"));
    }
    let body: ProjectBody = json_body(body, G).await?;
    if let Some(v) = &body.visibility
        && !matches!(v.as_str(), "public" | "private")
    {
        return Err(Problem::bad_request(G, "visibility must be public or private"));
    }
    let meta = state.access.meta();
    if meta.project(&name).await.map_err(|e| Problem::internal(G, e))?.is_none() {
        caller.require_admin(G)?;
        let draft = caller.actor.draft("project_created", "project.create", &format!("project:{name}"));
        meta.ensure_project(&name, Some(caller.user_id()), &draft).await.map_err(|e| Problem::internal(G, e))?;
    } else {
        require_owner(&state, &caller, &name).await?;
    }
    let draft = caller.actor.draft("project_updated", "project.update", &format!("project:{name}"));
    meta.update_project(&name, body.visibility.as_deref(), body.description.as_deref(), &draft)
        .await
        .map_err(|e| Problem::internal(G, e))?;
    state.access.forget_project(&name);
    Ok(Json(project_json(&state, &name).await?).into_response())
}

#[derive(Deserialize)]
struct MemberBody {
    role: String,
}

/// `PUT /api/v1/projects/{name}/members/{username}` (owner, admin).
pub async fn put_member(
    State(state): State<AppState>,
    Path((name, username)): Path<(String, String)>,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let caller = caller(&state, &parts, G).await?;
    refuse_if_locked(&state, G).await?;
    let body: MemberBody = json_body(body, G).await?;
    let role = MemberRole::parse(&body.role)
        .ok_or_else(|| Problem::bad_request(G, "role must be owner, maintainer, developer or guest"))?;
    set_member(&state, &caller, &name, &username, Some(role.as_str())).await?;
    Ok(Json(project_json(&state, &name).await?).into_response())
}

/// `DELETE /api/v1/projects/{name}/members/{username}` (owner, admin).
pub async fn delete_member(
    State(state): State<AppState>,
    Path((name, username)): Path<(String, String)>,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    let caller = caller(&state, &parts, G).await?;
    refuse_if_locked(&state, G).await?;
    set_member(&state, &caller, &name, &username, None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_member(
    state: &AppState,
    caller: &Caller,
    project: &str,
    username: &str,
    role: Option<&str>,
) -> Result<(), Problem> {
    let meta = state.access.meta();
    if meta.project(project).await.map_err(|e| Problem::internal(G, e))?.is_none() {
        return Err(Problem::not_found(G, format!("project {project} not found")));
    }
    require_owner(state, caller, project).await?;
    let user = meta.user_by_name(username).await.map_err(|e| Problem::internal(G, e))?;
    let user = user.ok_or_else(|| Problem::not_found(G, format!("user {username} not found")))?;
    let (event, action) =
        if role.is_some() { ("member_set", "project.member.set") } else { ("member_removed", "project.member.remove") };
    let mut draft = caller.actor.draft(event, action, &format!("project:{project}"));
    draft.detail["member"] = json!(username);
    draft.detail["role"] = json!(role);
    meta.set_member(project, user.id, role, &draft).await.map_err(|e| Problem::internal(G, e))?;
    state.access.forget_project(project);
    Ok(())
}

/// Creates the project of a pull-through cache namespace if it is missing:
/// public when the upstream needs no credentials (it mirrors public content),
/// private otherwise. An existing project is left as its owners set it.
pub async fn ensure_cache_project(
    state: &AppState,
    namespace: &str,
    public: bool,
    actor: &berth_registry::access::Actor,
) -> Result<(), berth_meta::MetaError> {
    let meta = state.access.meta();
    if meta.project(namespace).await?.is_some() {
        return Ok(());
    }
    let draft = actor.draft("project_created", "project.create", &format!("project:{namespace}"));
    meta.ensure_project(namespace, actor.user_id, &draft).await?;
    let visibility = if public { "public" } else { "private" };
    let draft = actor.draft("project_updated", "project.update", &format!("project:{namespace}"));
    meta.update_project(namespace, Some(visibility), Some("pull-through cache"), &draft).await?;
    state.access.forget_project(namespace);
    Ok(())
}
