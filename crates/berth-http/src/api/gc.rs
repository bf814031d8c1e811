//! Online garbage collection (added by berth; docs/operations/gc.md):
//! `GET /api/v1/system/gc` (queue, settings, recent runs) and
//! `POST /api/v1/system/gc` (start a run, or preview one with `dry_run`). Admin only.

use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_gc::{GcError, Plan, RunRequest, Trigger};
use berth_meta::GcRun;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Caller, Problem, Surface, json_body, refuse_if_locked, rfc3339};
use crate::AppState;

const G: Surface = Surface::GhostDock;

/// Entries of each kind a dry run lists in full (the counts are always exact).
const PLAN_LISTED: usize = 1000;

/// How many recent runs the status shows.
const RUNS_SHOWN: u32 = 10;

async fn admin(state: &AppState, request: Request) -> Result<(Option<Caller>, axum::body::Body), Problem> {
    let (parts, body) = request.into_parts();
    let caller = super::optional_caller(state, &parts, G).await?;
    if let Some(c) = &caller {
        c.require_admin(G)?;
    }
    Ok((caller, body))
}

fn run_json(run: &GcRun) -> Value {
    let at = |ms: i64| rfc3339(ms / 1000);
    json!({
        "id": run.id,
        "node": run.node,
        "trigger": run.trigger,
        "dry_run": run.dry_run,
        "grace_seconds": run.grace_secs,
        "state": run.state,
        "started_at": at(run.started_at),
        "updated_at": at(run.updated_at),
        "finished_at": run.finished_at.map(at),
        "examined": run.counters.examined,
        "manifests_deleted": run.counters.manifests_deleted,
        "links_deleted": run.counters.links_deleted,
        "blobs_deleted": run.counters.blobs_deleted,
        "bytes_reclaimed": run.counters.bytes_reclaimed,
        "error": run.error,
    })
}

/// `GET /api/v1/system/gc`: what waits in the queue, the settings, recent runs.
pub async fn status(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let _caller = admin(&state, request).await?;
    let meta = state.registry.meta();
    let queue = meta.gc_queue_stats().await.map_err(|e| Problem::internal(G, e))?;
    let runs = meta.gc_runs(RUNS_SHOWN).await.map_err(|e| Problem::internal(G, e))?;
    let settings = state.gc.settings();
    Ok(Json(json!({
        "queue": {
            "manifests": queue.manifests,
            "links": queue.links,
            "blobs": queue.blobs,
            "tombstones": queue.tombstones,
        },
        "settings": {
            "grace_seconds": settings.grace.as_secs(),
            "interval_seconds": state.gc_interval.as_secs(),
            "delete_untagged": settings.policy.delete_untagged,
            "keep_referrers": settings.policy.keep_referrers,
        },
        "running": runs.iter().any(|r| r.state == "running" && !r.dry_run),
        "runs": runs.iter().map(run_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RunBody {
    #[serde(default)]
    dry_run: bool,
    /// Overrides the configured grace period.
    #[serde(default)]
    grace_seconds: Option<u64>,
}

fn plan_json(run_id: i64, plan: &Plan) -> Value {
    let counters = plan.counters();
    let truncated = [plan.manifests.len(), plan.links.len(), plan.blobs.len()].iter().any(|n| *n > PLAN_LISTED);
    let pairs = |set: &std::collections::BTreeSet<(String, String)>| -> Vec<Value> {
        set.iter().take(PLAN_LISTED).map(|(r, d)| json!({"repository": r, "digest": d})).collect()
    };
    json!({
        "dry_run": true,
        "run_id": run_id,
        "examined": counters.examined,
        "manifests_deleted": counters.manifests_deleted,
        "links_deleted": counters.links_deleted,
        "blobs_deleted": counters.blobs_deleted,
        "bytes_reclaimed": counters.bytes_reclaimed,
        "manifests": pairs(&plan.manifests),
        "links": pairs(&plan.links),
        "blobs": plan.blobs.iter().take(PLAN_LISTED).map(|(d, size)| json!({"digest": d, "size": size})).collect::<Vec<_>>(),
        "truncated": truncated,
    })
}

/// `POST /api/v1/system/gc`: a dry run answers its plan; a real run starts in
/// the background (202, follow it with GET) unless one is running (409).
pub async fn run(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let (caller, body) = admin(&state, request).await?;
    refuse_if_locked(&state, G).await?;
    let bytes = axum::body::to_bytes(body, 64 << 10).await.map_err(|_| Problem::bad_request(G, "body too large"))?;
    let body: RunBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        RunBody::default()
    } else {
        json_body(axum::body::Body::from(bytes), G).await?
    };
    if body.grace_seconds.is_some_and(|g| g > 365 * 86_400) {
        return Err(Problem::bad_request(G, "grace_seconds is at most a year"));
    }
    let request = RunRequest {
        trigger: Trigger::Api,
        node: state.node.to_string(),
        dry_run: body.dry_run,
        grace: body.grace_seconds.map(Duration::from_secs),
    };
    if body.dry_run {
        let report = state.gc.run(&request, &|_, _| {}).await.map_err(|e| Problem::internal(G, e))?;
        let plan = report.plan.unwrap_or_default();
        return Ok(Json(plan_json(report.run_id, &plan)).into_response());
    }
    let started = match state.gc.start(&request).await {
        Ok(started) => started,
        Err(GcError::Busy) => {
            return Err(Problem::new(G, StatusCode::CONFLICT, "CONFLICT", "garbage collection is already running"));
        }
        Err(e) => return Err(Problem::internal(G, e)),
    };
    let run_id = started.run_id;
    if let Some(c) = &caller {
        let mut draft = c.actor.draft("gc_started", "system.gc", "system:gc");
        draft.detail["run_id"] = json!(run_id);
        draft.detail["grace_seconds"] = json!(body.grace_seconds);
        state.access.audit(draft).await;
    }
    let collector = state.gc.clone();
    tokio::spawn(async move {
        if let Err(e) = collector.finish(started, &|_, _| {}).await {
            tracing::warn!(run = run_id, error = %e, "garbage collection failed");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(json!({"run_id": run_id, "state": "running"}))).into_response())
}
