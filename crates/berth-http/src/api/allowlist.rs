//! `GET`/`PUT /api/v1/system/allowlist`: the admin IP allow-list (API.md §6.4).

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use berth_registry::access::{AllowList, AllowListError};

use super::{Problem, Surface, caller, json_body, refuse_if_locked};
use crate::AppState;

const S: Surface = Surface::Security;

/// `GET /api/v1/system/allowlist` (admin).
pub async fn get_allowlist(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    caller(&state, &parts, S).await?.require_admin(S)?;
    let list = state.access.allowlist().await.map_err(|e| Problem::internal(S, e))?;
    Ok(Json(&*list).into_response())
}

/// `PUT /api/v1/system/allowlist` (admin): refuses bad CIDRs and lists that exclude the caller.
pub async fn put_allowlist(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let caller = caller(&state, &parts, S).await?;
    caller.require_admin(S)?;
    refuse_if_locked(&state, S).await?;
    let list: AllowList = json_body(body, S).await?;
    match state.access.set_allowlist(list, &caller.actor).await {
        Ok(stored) => Ok(Json(stored).into_response()),
        Err(AllowListError::Backend(e)) => Err(Problem::internal(S, e)),
        Err(e) => Err(Problem::bad_request(S, e.to_string())),
    }
}
