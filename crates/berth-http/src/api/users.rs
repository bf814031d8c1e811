//! Seed 004's users and personal access tokens (API.md §7).

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_access::{password, secret};
use berth_meta::{MetaError, NewToken, NewUser, TokenRecord, UserRecord, UserUpdate};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Problem, Surface, caller, json_body, paging, query_pairs, refuse_if_locked, rfc3339};
use crate::AppState;

const G: Surface = Surface::GhostDock;

/// `User` of seed 004.
fn user_json(user: &UserRecord) -> Value {
    json!({
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "role": user.role,
        "is_active": user.is_active,
        "created_at": rfc3339(user.created_at),
        "last_login": user.last_login.map(rfc3339),
    })
}

/// `Token` of seed 004, without the secret.
fn token_json(token: &TokenRecord) -> Value {
    json!({
        "id": token.id,
        "name": token.name,
        "permissions": token.permissions,
        "repositories": token.repositories,
        "created_at": rfc3339(token.created_at),
        "expires_at": token.expires_at.map(rfc3339),
        "last_used": token.last_used.map(rfc3339),
    })
}

fn meta_problem(e: MetaError) -> Problem {
    match e {
        MetaError::Conflict(m) => Problem::new(G, StatusCode::CONFLICT, "CONFLICT", m),
        other => Problem::internal(G, other),
    }
}

fn valid_username(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

fn valid_role(role: &str) -> bool {
    matches!(role, "admin" | "user")
}

async fn hash(password: String) -> Result<String, Problem> {
    tokio::task::spawn_blocking(move || password::hash_password(&password))
        .await
        .map_err(|e| Problem::internal(G, e))?
        .map_err(|e| Problem::internal(G, e))
}

/// `GET /api/v1/users` (admin).
pub async fn list_users(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    caller(&state, &parts, G).await?.require_admin(G)?;
    let (page, limit) = paging(&query_pairs(&parts), "limit", 50, G)?;
    let (users, total) = state.access.meta().list_users((page - 1) * limit, limit).await.map_err(meta_problem)?;
    let users: Vec<Value> = users.iter().map(user_json).collect();
    Ok(Json(json!({ "users": users, "total": total, "page": page, "limit": limit })).into_response())
}

#[derive(Deserialize)]
struct CreateUser {
    username: String,
    #[serde(default)]
    email: Option<String>,
    password: String,
    #[serde(default)]
    role: Option<String>,
}

/// `POST /api/v1/users` (admin).
pub async fn create_user(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let caller = caller(&state, &parts, G).await?;
    caller.require_admin(G)?;
    refuse_if_locked(&state, G).await?;
    let body: CreateUser = json_body(body, G).await?;
    let role = body.role.unwrap_or_else(|| "user".into());
    if !valid_username(&body.username) {
        return Err(Problem::bad_request(G, "username: 1-64 characters of letters, digits, '.', '_', '-'"));
    }
    if !valid_role(&role) {
        return Err(Problem::bad_request(G, "role must be admin or user"));
    }
    password::check_password_policy(&body.password).map_err(|e| Problem::bad_request(G, e.to_string()))?;
    let user = NewUser {
        username: body.username.clone(),
        email: body.email.filter(|e| !e.is_empty()),
        password_hash: hash(body.password).await?,
        role,
        must_change_password: false,
    };
    let draft = caller.actor.draft("user_created", "user.create", &format!("user:{}", body.username));
    let created = state.access.meta().create_user(&user, &draft).await.map_err(meta_problem)?;
    Ok((StatusCode::CREATED, Json(user_json(&created))).into_response())
}

#[derive(Deserialize)]
struct UpdateUser {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    current_password: Option<String>,
    #[serde(default)]
    is_active: Option<bool>,
}

/// `PUT /api/v1/users/{id}`: admins change anything; users change their own
/// email, and their password with the current one.
pub async fn update_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let caller = caller(&state, &parts, G).await?;
    refuse_if_locked(&state, G).await?;
    let id: i64 = id.parse().map_err(|_| Problem::not_found(G, "no such user"))?;
    let body: UpdateUser = json_body(body, G).await?;
    let is_admin = caller.principal.is_admin();
    let is_self = caller.is_login() && caller.user_id() == id;
    if !is_admin && !is_self {
        return Err(Problem::new(G, StatusCode::FORBIDDEN, "permission_denied", "permission denied"));
    }
    if !is_admin && (body.role.is_some() || body.is_active.is_some()) {
        return Err(Problem::new(G, StatusCode::FORBIDDEN, "permission_denied", "only admins change roles or status"));
    }
    let target = state.access.meta().user_by_id(id).await.map_err(meta_problem)?;
    let target = target.ok_or_else(|| Problem::not_found(G, "no such user"))?;
    let mut update = UserUpdate::default();
    if let Some(email) = body.email {
        update.email = Some(Some(email).filter(|e| !e.is_empty()));
    }
    if let Some(role) = body.role {
        if !valid_role(&role) {
            return Err(Problem::bad_request(G, "role must be admin or user"));
        }
        update.role = Some(role);
    }
    update.is_active = body.is_active;
    if let Some(new_password) = body.password {
        password::check_password_policy(&new_password).map_err(|e| Problem::bad_request(G, e.to_string()))?;
        if is_self {
            // Your own password needs the current one, even for admins.
            let current = body.current_password.unwrap_or_default();
            let stored = target.password_hash.clone();
            let ok = tokio::task::spawn_blocking(move || password::verify_password(&current, &stored))
                .await
                .map_err(|e| Problem::internal(G, e))?;
            if !ok {
                return Err(Problem::new(G, StatusCode::FORBIDDEN, "login_failure", "current_password is wrong"));
            }
        }
        update.password_hash = Some(hash(new_password).await?);
        // An admin reset must be changed at next login; a self-chosen one need not.
        update.must_change_password = Some(!is_self);
    }
    let draft = caller.actor.draft("user_updated", "user.update", &format!("user:{}", target.username));
    let updated = state.access.meta().update_user(id, &update, &draft).await.map_err(meta_problem)?;
    let updated = updated.ok_or_else(|| Problem::not_found(G, "no such user"))?;
    state.access.forget_user(id);
    Ok(Json(user_json(&updated)).into_response())
}

/// `DELETE /api/v1/users/{id}` (admin).
pub async fn delete_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    let caller = caller(&state, &parts, G).await?;
    caller.require_admin(G)?;
    refuse_if_locked(&state, G).await?;
    let id: i64 = id.parse().map_err(|_| Problem::not_found(G, "no such user"))?;
    let draft = caller.actor.draft("user_deleted", "user.delete", &format!("user:{id}"));
    if !state.access.meta().delete_user(id, &draft).await.map_err(meta_problem)? {
        return Err(Problem::not_found(G, "no such user"));
    }
    state.access.forget_user(id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v1/tokens`: the caller's own tokens.
pub async fn list_tokens(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    let caller = caller(&state, &parts, G).await?;
    let (page, limit) = paging(&query_pairs(&parts), "limit", 50, G)?;
    let (tokens, total) =
        state.access.meta().list_tokens(caller.user_id(), (page - 1) * limit, limit).await.map_err(meta_problem)?;
    let data: Vec<Value> = tokens.iter().map(token_json).collect();
    let pages = (total + limit - 1) / limit;
    Ok(Json(json!({
        "data": data,
        "pagination": { "page": page, "limit": limit, "total": total, "pages": pages },
    }))
    .into_response())
}

#[derive(Deserialize)]
struct CreateToken {
    name: String,
    permissions: Vec<String>,
    #[serde(default)]
    repositories: Vec<String>,
    #[serde(default)]
    expires_at: Option<String>,
}

/// `POST /api/v1/tokens`: a new PAT for the caller, shown once. Only a login
/// (not another PAT) may create tokens.
pub async fn create_token(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let caller = caller(&state, &parts, G).await?;
    if !caller.is_login() {
        return Err(Problem::new(G, StatusCode::FORBIDDEN, "permission_denied", "tokens are created from a login"));
    }
    refuse_if_locked(&state, G).await?;
    let body: CreateToken = json_body(body, G).await?;
    let name = body.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(Problem::bad_request(G, "name must be 1 to 100 characters"));
    }
    if body.permissions.is_empty() || body.permissions.iter().any(|p| !matches!(p.as_str(), "pull" | "push" | "delete"))
    {
        return Err(Problem::bad_request(G, "permissions: a non-empty list of pull, push, delete"));
    }
    if body.repositories.iter().any(|g| g.is_empty() || g.len() > 255) {
        return Err(Problem::bad_request(G, "repositories: globs of 1 to 255 characters"));
    }
    let now = berth_meta::now_unix();
    let expires_at = match body.expires_at.as_deref() {
        None => now + state.access.config().pat_default_ttl.as_secs() as i64,
        Some(text) => {
            let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map_err(|_| Problem::bad_request(G, "expires_at must be an RFC 3339 time"))?
                .unix_timestamp();
            if at <= now {
                return Err(Problem::bad_request(G, "expires_at is in the past"));
            }
            at
        }
    };
    let fresh = secret::generate_pat();
    let token = NewToken {
        user_id: caller.user_id(),
        name: name.to_owned(),
        lookup: fresh.lookup.clone(),
        hash: fresh.hash.clone(),
        permissions: body.permissions,
        repositories: body.repositories,
        expires_at: Some(expires_at),
    };
    let draft = caller.actor.draft("token_created", "token.create", "token");
    let record = state.access.meta().create_token(&token, &draft).await.map_err(meta_problem)?;
    let mut body = token_json(&record);
    body["token"] = json!(fresh.token);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `DELETE /api/v1/tokens/{id}`: revokes one of the caller's tokens.
pub async fn delete_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    let caller = caller(&state, &parts, G).await?;
    refuse_if_locked(&state, G).await?;
    let id: i64 = id.parse().map_err(|_| Problem::not_found(G, "no such token"))?;
    let draft = caller.actor.draft("token_revoked", "token.revoke", &format!("token:{id}"));
    let revoked = state.access.meta().revoke_token(caller.user_id(), id, &draft).await.map_err(meta_problem)?;
    let lookup = revoked.ok_or_else(|| Problem::not_found(G, "no such token"))?;
    state.access.forget_token(&lookup);
    Ok(StatusCode::NO_CONTENT.into_response())
}
