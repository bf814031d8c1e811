//! Tag immutability rules of a project (added by berth):
//! `GET`/`PUT /api/v1/projects/{name}/immutability`.
//!
//! A rule is a repository glob and a tag regular expression; a tag they cover
//! can be pushed once and then neither moved to another manifest nor deleted
//! (`/v2` answers 403 `DENIED` with `detail.reason = "TAG_IMMUTABLE"`).

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use berth_meta::ImmutabilityRule;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Problem, Surface, json_body, refuse_if_locked, rfc3339};
use crate::AppState;

const G: Surface = Surface::GhostDock;
/// Rules per project.
const MAX_RULES: usize = 64;

fn rules_json(project: &str, rules: &[ImmutabilityRule]) -> Value {
    let rules: Vec<Value> = rules
        .iter()
        .map(|r| json!({ "id": r.id, "repository": r.repository, "pattern": r.pattern, "created_at": rfc3339(r.created_at) }))
        .collect();
    json!({ "project": project, "rules": rules })
}

/// With authentication on, projects are records (created by a first push or an
/// admin); with it off there are none, and any well-formed project name will do.
pub(crate) async fn existing_project(state: &AppState, name: &str) -> Result<(), Problem> {
    let well_formed = !name.contains('/') && format!("{name}/x").parse::<berth_core::RepoName>().is_ok();
    let exists = if state.access.enabled() {
        well_formed && state.access.meta().project(name).await.map_err(|e| Problem::internal(G, e))?.is_some()
    } else {
        well_formed
    };
    if exists { Ok(()) } else { Err(Problem::not_found(G, format!("project {name} not found"))) }
}

/// Refuses a caller who may not pull from project `name` (404, as if it did not
/// exist), and a project that does not exist: the check every project-settings
/// read makes (immutability, retention, quota).
pub(crate) async fn readable_project(
    state: &AppState,
    parts: &axum::http::request::Parts,
    name: &str,
) -> Result<(), Problem> {
    if let Some(c) = super::optional_caller(state, parts, G).await? {
        let perms =
            state.access.repo_perms(&c.principal, &format!("{name}/x")).await.map_err(|e| Problem::internal(G, e))?;
        if !perms.pull {
            return Err(Problem::not_found(G, format!("project {name} not found")));
        }
    }
    existing_project(state, name).await
}

/// `GET /api/v1/projects/{name}/immutability`: whoever may pull from the project.
pub async fn get_rules(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    readable_project(&state, &parts, &name).await?;
    let rules = state.access.meta().immutability_rules(&name).await.map_err(|e| Problem::internal(G, e))?;
    Ok(Json(rules_json(&name, &rules)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesBody {
    rules: Vec<RuleBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleBody {
    #[serde(default)]
    repository: Option<String>,
    pattern: String,
}

/// `PUT /api/v1/projects/{name}/immutability`: replaces the rules (project owner, admin).
pub async fn put_rules(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let caller = super::optional_caller(&state, &parts, G).await?;
    refuse_if_locked(&state, G).await?;
    existing_project(&state, &name).await?;
    if let Some(c) = &caller {
        super::projects::require_owner(&state, c, &name).await?;
    }
    let body: RulesBody = json_body(body, G).await?;
    if body.rules.len() > MAX_RULES {
        return Err(Problem::bad_request(G, format!("at most {MAX_RULES} rules per project")));
    }
    let mut rules = Vec::with_capacity(body.rules.len());
    for rule in body.rules {
        let repository = rule.repository.unwrap_or_else(|| format!("{name}/*"));
        let glob_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/*?".contains(c);
        if !repository.starts_with(&format!("{name}/")) || repository.len() > 255 || !repository.chars().all(glob_ok) {
            return Err(Problem::bad_request(
                G,
                format!("repository {repository:?} must be a glob of repositories in {name} (like {name}/*)"),
            ));
        }
        berth_meta::immutability::compile(&rule.pattern)
            .map_err(|e| Problem::bad_request(G, format!("pattern {:?}: {e}", rule.pattern)))?;
        rules.push((repository, rule.pattern));
    }
    let draft = caller.as_ref().map(|c| {
        let mut d = c.actor.draft("immutability_updated", "project.immutability", &format!("project:{name}"));
        d.detail["rules"] = json!(rules.len());
        d
    });
    let stored = state
        .access
        .meta()
        .replace_immutability_rules(&name, &rules, draft.as_ref())
        .await
        .map_err(|e| Problem::internal(G, e))?;
    Ok(Json(rules_json(&name, &stored)).into_response())
}
