//! Project quotas (added by berth; docs/operations/quotas.md):
//! `GET`/`PUT /api/v1/projects/{name}/quota`.
//!
//! Usage is exact at all times (database triggers keep it in the transaction of
//! every change). Hard limits refuse pushes with `/v2` 403 `DENIED`,
//! `detail.reason = "QUOTA_EXCEEDED"`; the soft storage limit adds an
//! `X-Berth-Quota-Warning` header to pushes and one event per crossing.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use berth_meta::{QuotaLimits, QuotaView};
use serde::Deserialize;
use serde_json::{Value, json};

use super::immutability::{existing_project, readable_project};
use super::{Problem, Surface, json_body, refuse_if_locked, rfc3339};
use crate::AppState;

const G: Surface = Surface::GhostDock;

fn quota_json(project: &str, view: &QuotaView) -> Value {
    let (limits, usage) = (&view.limits, &view.usage);
    json!({
        "project": project,
        "limits": {
            "storage_bytes": limits.storage_bytes,
            "storage_soft_bytes": limits.storage_soft,
            "repositories": limits.repositories,
            "tags": limits.tags,
        },
        "usage": {
            "physical_bytes": usage.physical_bytes,
            "logical_bytes": usage.logical_bytes,
            "repositories": usage.repositories,
            "tags": usage.tags,
        },
        "soft_limit_exceeded": limits.storage_soft.is_some_and(|soft| usage.physical_bytes > soft),
        "updated_at": view.updated_at.map(rfc3339),
    })
}

/// `GET /api/v1/projects/{name}/quota`: whoever may pull from the project.
pub async fn get_quota(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    readable_project(&state, &parts, &name).await?;
    let view = state.access.meta().project_quota(&name).await.map_err(|e| Problem::internal(G, e))?;
    Ok(Json(quota_json(&name, &view)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsBody {
    #[serde(default)]
    storage_bytes: Option<i64>,
    #[serde(default)]
    storage_soft_bytes: Option<i64>,
    #[serde(default)]
    repositories: Option<i64>,
    #[serde(default)]
    tags: Option<i64>,
}

impl LimitsBody {
    fn validate(self) -> Result<QuotaLimits, String> {
        let limits = QuotaLimits {
            storage_bytes: self.storage_bytes,
            storage_soft: self.storage_soft_bytes,
            repositories: self.repositories,
            tags: self.tags,
        };
        for (name, value) in [
            ("storage_bytes", limits.storage_bytes),
            ("storage_soft_bytes", limits.storage_soft),
            ("repositories", limits.repositories),
            ("tags", limits.tags),
        ] {
            if value.is_some_and(|v| v < 0) {
                return Err(format!("{name} cannot be negative (null: no limit)"));
            }
        }
        if let (Some(soft), Some(hard)) = (limits.storage_soft, limits.storage_bytes)
            && soft > hard
        {
            return Err("storage_soft_bytes cannot be above storage_bytes".into());
        }
        Ok(limits)
    }
}

/// `PUT /api/v1/projects/{name}/quota` (admin): replaces the limits; `null` or an
/// absent field removes that limit. Lowering a limit below current usage keeps
/// what is stored and refuses what would add more.
pub async fn put_quota(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let caller = super::optional_caller(&state, &parts, G).await?;
    if let Some(c) = &caller {
        c.require_admin(G)?;
    }
    refuse_if_locked(&state, G).await?;
    existing_project(&state, &name).await?;
    let body: LimitsBody = json_body(body, G).await?;
    let limits = body.validate().map_err(|e| Problem::bad_request(G, e))?;
    let draft = caller.as_ref().map(|c| {
        let mut d = c.actor.draft("quota_updated", "project.quota", &format!("project:{name}"));
        d.detail["storage_bytes"] = json!(limits.storage_bytes);
        d.detail["storage_soft_bytes"] = json!(limits.storage_soft);
        d.detail["repositories"] = json!(limits.repositories);
        d.detail["tags"] = json!(limits.tags);
        d
    });
    let view = state
        .access
        .meta()
        .set_project_quota(&name, &limits, draft.as_ref())
        .await
        .map_err(|e| Problem::internal(G, e))?;
    state.registry.forget_quota_limits(&name);
    Ok(Json(quota_json(&name, &view)).into_response())
}
