//! Retention policies of a project (added by berth):
//! `GET`/`PUT /api/v1/projects/{name}/retention` and
//! `POST /api/v1/projects/{name}/retention/run`.
//!
//! A policy's rules say which tags to keep in the repositories their globs
//! match; the rest are deleted by the scheduler (`[retention] interval`) or by
//! a run, which with `dry_run` only lists what it would delete
//! (docs/operations/retention.md).

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use berth_meta::{EventActor, RetentionPolicy, RetentionRule};
use berth_registry::RegistryError;
use serde::Deserialize;
use serde_json::{Value, json};

use super::immutability::{existing_project, readable_project};
use super::{Caller, Problem, Surface, json_body, query_pairs, refuse_if_locked, rfc3339};
use crate::AppState;

const G: Surface = Surface::GhostDock;

fn policy_json(project: &str, policy: Option<&RetentionPolicy>) -> Value {
    let Some(p) = policy else {
        return json!({ "project": project, "enabled": false, "untagged_hours": null, "rules": [], "updated_at": null });
    };
    let rules: Vec<Value> = p
        .rules
        .iter()
        .map(|r| {
            json!({
                "repository": r.repository,
                "keep_last": r.keep_last,
                "keep_tags": r.keep_tags,
                "keep_semver": r.keep_semver,
                "keep_pulled_within_days": r.keep_pulled_within_days,
            })
        })
        .collect();
    json!({
        "project": project,
        "enabled": p.enabled,
        "untagged_hours": p.untagged_hours,
        "rules": rules,
        "updated_at": rfc3339(p.updated_at),
    })
}

/// `GET /api/v1/projects/{name}/retention`: whoever may pull from the project.
pub async fn get_policy(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    readable_project(&state, &parts, &name).await?;
    let policy = state.access.meta().retention_policy(&name).await.map_err(|e| Problem::internal(G, e))?;
    Ok(Json(policy_json(&name, policy.as_ref())).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    enabled: bool,
    #[serde(default)]
    untagged_hours: Option<i64>,
    rules: Vec<RuleBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleBody {
    #[serde(default)]
    repository: Option<String>,
    #[serde(default)]
    keep_last: Option<i64>,
    #[serde(default)]
    keep_tags: Option<String>,
    #[serde(default)]
    keep_semver: Option<String>,
    #[serde(default)]
    keep_pulled_within_days: Option<i64>,
}

impl PolicyBody {
    /// The policy it asks for; a rule without `repository` covers the whole project.
    fn into_policy(self, project: &str) -> RetentionPolicy {
        let rules = self
            .rules
            .into_iter()
            .map(|r| RetentionRule {
                repository: r.repository.unwrap_or_else(|| format!("{project}/*")),
                keep_last: r.keep_last,
                keep_tags: r.keep_tags,
                keep_semver: r.keep_semver,
                keep_pulled_within_days: r.keep_pulled_within_days,
            })
            .collect();
        RetentionPolicy {
            project: project.to_owned(),
            enabled: self.enabled,
            untagged_hours: self.untagged_hours,
            rules,
            updated_at: 0,
        }
    }
}

/// The caller after the checks every change makes: not locked, the project
/// exists, and the caller owns it or is an admin (everyone with auth off).
async fn owner(state: &AppState, parts: &Parts, name: &str) -> Result<Option<Caller>, Problem> {
    let caller = super::optional_caller(state, parts, G).await?;
    refuse_if_locked(state, G).await?;
    existing_project(state, name).await?;
    if let Some(c) = &caller {
        super::projects::require_owner(state, c, name).await?;
    }
    Ok(caller)
}

/// `PUT /api/v1/projects/{name}/retention`: replaces the policy (project owner, admin).
pub async fn put_policy(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let caller = owner(&state, &parts, &name).await?;
    let body: PolicyBody = json_body(body, G).await?;
    let policy = body.into_policy(&name);
    berth_registry::retention::validate(&policy).map_err(|e| Problem::bad_request(G, e))?;
    let draft = caller.as_ref().map(|c| {
        let mut d = c.actor.draft("retention_updated", "project.retention", &format!("project:{name}"));
        d.detail["rules"] = json!(policy.rules.len());
        d.detail["enabled"] = json!(policy.enabled);
        d
    });
    let stored = state
        .access
        .meta()
        .replace_retention_policy(&policy, draft.as_ref())
        .await
        .map_err(|e| Problem::internal(G, e))?;
    Ok(Json(policy_json(&name, Some(&stored))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    dry_run: bool,
}

/// `dry_run` from the query (`?dry_run=true`) or the body (`{"dry_run": true}`):
/// one of them is required, so a run never deletes unless asked to.
async fn dry_run(parts: &Parts, body: axum::body::Body) -> Result<bool, Problem> {
    let from_query = match query_pairs(parts).iter().find(|(k, _)| k == "dry_run").map(|(_, v)| v.as_str()) {
        None => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(other) => return Err(Problem::bad_request(G, format!("dry_run must be true or false, not {other:?}"))),
    };
    let bytes = axum::body::to_bytes(body, 4096)
        .await
        .map_err(|_| Problem::bad_request(G, "request body too large or unreadable"))?;
    let from_body = match bytes.iter().all(u8::is_ascii_whitespace) {
        true => None,
        false => Some(
            serde_json::from_slice::<RunBody>(&bytes)
                .map_err(|e| Problem::bad_request(G, format!("invalid JSON body: {e}")))?
                .dry_run,
        ),
    };
    match (from_query, from_body) {
        (Some(q), Some(b)) if q != b => Err(Problem::bad_request(G, "dry_run differs between query and body")),
        (Some(v), _) | (None, Some(v)) => Ok(v),
        (None, None) => Err(Problem::bad_request(G, "say dry_run=true to preview or dry_run=false to delete")),
    }
}

/// `POST /api/v1/projects/{name}/retention/run`: evaluates the policy now
/// (project owner, admin); a dry run only lists what would be deleted.
pub async fn run(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let caller = owner(&state, &parts, &name).await?;
    let dry_run = dry_run(&parts, body).await?;
    let actor = EventActor::system("retention");
    let report =
        state.registry.run_retention(&name, dry_run, berth_meta::now_unix(), &actor).await.map_err(run_problem)?;
    if let Some(c) = caller.as_ref().filter(|_| !dry_run) {
        state.access.audit(report.audit_draft(&c.actor, &name)).await;
    }
    Ok(Json(report).into_response())
}

fn run_problem(e: RegistryError) -> Problem {
    match e {
        RegistryError::DeletesDisabled => {
            Problem::new(G, StatusCode::CONFLICT, "CONFLICT", "deletes are disabled on this registry")
        }
        other => Problem::internal(G, other),
    }
}
