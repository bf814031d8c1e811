//! Seed 004's webhooks (API.md §7) with berth's additions: update, event
//! filters, CloudEvents, delivery history and redelivery.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use berth_meta::{DeliveryRecord, EventActor, MetaError, WebhookRecord, WebhookSpec};
use berth_webhooks::{Format, filter};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Problem, Surface, json_body, paging, query_pairs, refuse_if_locked, rfc3339};
use crate::AppState;

const G: Surface = Surface::GhostDock;

/// `Webhook` of seed 004 plus berth's fields; the secret is never shown.
fn webhook_json(w: &WebhookRecord) -> Value {
    json!({
        "id": w.id,
        "url": w.url,
        "events": w.events,
        "repository": w.repository,
        "format": w.format,
        "enabled": w.enabled,
        "signed": w.secret_sealed.is_some(),
        "created_by": w.created_by,
        "created_at": rfc3339(w.created_at),
        "updated_at": rfc3339(w.updated_at),
    })
}

fn delivery_json(d: &DeliveryRecord) -> Value {
    let ms = |at: i64| berth_webhooks::payload::rfc3339_ms(at);
    json!({
        "id": d.id,
        "webhook_id": d.webhook_id,
        "event_id": d.event_id,
        "delivery": d.delivery_key,
        "state": d.state,
        "attempts": d.attempts,
        "created_at": ms(d.created_at_ms),
        "next_attempt_at": (d.state == "pending").then(|| ms(d.next_attempt_ms)),
        "finished_at": d.finished_at_ms.map(ms),
        "last_status": d.last_status,
        "last_error": d.last_error,
        "last_latency_ms": d.last_latency_ms,
    })
}

fn list_json(data: Vec<Value>, page: i64, limit: i64, total: i64) -> Value {
    json!({
        "data": data,
        "pagination": { "page": page, "limit": limit, "total": total, "pages": (total + limit - 1) / limit },
    })
}

fn internal(e: MetaError) -> Problem {
    Problem::internal(G, e)
}

/// Admins only (everyone with authentication off); returns who acts.
async fn admin(state: &AppState, parts: &Parts) -> Result<(EventActor, Option<super::Caller>), Problem> {
    let caller = super::optional_caller(state, parts, G).await?;
    if let Some(c) = &caller {
        c.require_admin(G)?;
    }
    Ok((super::event_actor(&caller, parts), caller))
}

/// Audits a change (which also makes it a `webhook.*` event); nobody to account for with auth off.
async fn audit(state: &AppState, caller: &Option<super::Caller>, event: &str, action: &str, id: i64) {
    if let Some(caller) = caller {
        state.access.audit(caller.actor.draft(event, action, &format!("webhook:{id}"))).await;
    }
}

fn webhook_id(raw: &str) -> Result<i64, Problem> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| Problem::not_found(G, "no such webhook"))
}

async fn find(state: &AppState, id: i64) -> Result<WebhookRecord, Problem> {
    state.registry.meta().webhook(id).await.map_err(internal)?.ok_or_else(|| Problem::not_found(G, "no such webhook"))
}

/// A webhook body: every field optional on update; `secret: ""` removes the secret.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    url: Option<String>,
    events: Option<Vec<String>>,
    repository: Option<String>,
    secret: Option<String>,
    format: Option<String>,
    enabled: Option<bool>,
}

/// Checks a body against (optionally) the current state and builds the new one.
fn spec(state: &AppState, body: WebhookBody, current: Option<&WebhookRecord>) -> Result<WebhookSpec, Problem> {
    let bad = |m: &str| Problem::bad_request(G, m.to_owned());
    let url = match (body.url, current) {
        (Some(url), _) => url,
        (None, Some(c)) => c.url.clone(),
        (None, None) => return Err(bad("url is required")),
    };
    let parsed = url::Url::parse(&url).map_err(|e| Problem::bad_request(G, format!("url: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) || url.len() > 2048 {
        return Err(bad("url must be an http or https URL with a host (at most 2048 characters)"));
    }
    let events = match (body.events, current) {
        (Some(events), _) => events,
        (None, Some(c)) => c.events.clone(),
        (None, None) => return Err(bad("events is required (e.g. [\"push\", \"delete\"])")),
    };
    if events.is_empty() || events.len() > 64 {
        return Err(bad("events must list 1 to 64 filters"));
    }
    if let Some(unknown) = events.iter().find(|e| !filter::valid_filter(e)) {
        return Err(Problem::bad_request(
            G,
            format!(
                "unknown event filter {unknown:?}: use *, an event name (push, pull, delete, blob.push, …) or a family (repository.*)"
            ),
        ));
    }
    let repository = body.repository.or_else(|| current.map(|c| c.repository.clone())).unwrap_or_else(|| "*".into());
    let glob_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/*?".contains(c);
    if repository.is_empty() || repository.len() > 255 || !repository.chars().all(glob_ok) {
        return Err(bad("repository must be a repository name or glob (lower case, digits, . _ - / * ?)"));
    }
    let format = body.format.or_else(|| current.map(|c| c.format.clone())).unwrap_or_else(|| "berth".into());
    if Format::parse(&format).is_none() {
        return Err(bad("format must be berth or cloudevents"));
    }
    let secret_sealed = match body.secret {
        Some(s) if s.is_empty() => None,
        Some(s) if s.len() > 1024 => return Err(bad("secret is at most 1024 bytes")),
        Some(s) => Some(state.webhooks.seal_secret(&s)),
        None => current.and_then(|c| c.secret_sealed.clone()),
    };
    let enabled = body.enabled.or(current.map(|c| c.enabled)).unwrap_or(true);
    Ok(WebhookSpec { url, events, repository, secret_sealed, format, enabled })
}

/// `GET /api/v1/webhooks` (admin).
pub async fn list(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    admin(&state, &parts).await?;
    let (page, limit) = paging(&query_pairs(&parts), "limit", 50, G)?;
    let (hooks, total) = state.registry.meta().list_webhooks((page - 1) * limit, limit).await.map_err(internal)?;
    Ok(Json(list_json(hooks.iter().map(webhook_json).collect(), page, limit, total)).into_response())
}

/// `POST /api/v1/webhooks` (admin).
pub async fn create(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let (actor, caller) = admin(&state, &parts).await?;
    refuse_if_locked(&state, G).await?;
    let body: WebhookBody = json_body(body, G).await?;
    let spec = spec(&state, body, None)?;
    let created = state.registry.meta().create_webhook(&spec, &actor.name).await.map_err(internal)?;
    audit(&state, &caller, "webhook_created", "webhook.create", created.id).await;
    Ok((StatusCode::CREATED, Json(webhook_json(&created))).into_response())
}

/// `GET /api/v1/webhooks/{id}` (admin; added by berth).
pub async fn get(State(state): State<AppState>, Path(id): Path<String>, request: Request) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    admin(&state, &parts).await?;
    let hook = find(&state, webhook_id(&id)?).await?;
    Ok(Json(webhook_json(&hook)).into_response())
}

/// `PUT /api/v1/webhooks/{id}` (admin; added by berth): changes the given fields.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let (_, caller) = admin(&state, &parts).await?;
    refuse_if_locked(&state, G).await?;
    let current = find(&state, webhook_id(&id)?).await?;
    let body: WebhookBody = json_body(body, G).await?;
    let spec = spec(&state, body, Some(&current))?;
    let updated = state.registry.meta().update_webhook(current.id, &spec).await.map_err(internal)?;
    let updated = updated.ok_or_else(|| Problem::not_found(G, "no such webhook"))?;
    audit(&state, &caller, "webhook_updated", "webhook.update", updated.id).await;
    Ok(Json(webhook_json(&updated)).into_response())
}

/// `DELETE /api/v1/webhooks/{id}` (admin): 204, with its delivery history.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    let (_, caller) = admin(&state, &parts).await?;
    refuse_if_locked(&state, G).await?;
    let id = webhook_id(&id)?;
    if !state.registry.meta().delete_webhook(id).await.map_err(internal)? {
        return Err(Problem::not_found(G, "no such webhook"));
    }
    audit(&state, &caller, "webhook_deleted", "webhook.delete", id).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/webhooks/{id}/test` (admin): sends a `ping` now.
pub async fn test(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    let (actor, _) = admin(&state, &parts).await?;
    let hook = find(&state, webhook_id(&id)?).await?;
    let result = state.webhooks.test(&hook, &actor).await.map_err(|e| Problem::internal(G, e))?;
    Ok(Json(json!({
        "delivered": result.delivered,
        "status_code": result.status_code.unwrap_or(0),
        "error": result.error,
        "delivery_id": result.delivery_id,
    }))
    .into_response())
}

/// `GET /api/v1/webhooks/{id}/deliveries` (admin): newest first.
pub async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    admin(&state, &parts).await?;
    let hook = find(&state, webhook_id(&id)?).await?;
    let (page, limit) = paging(&query_pairs(&parts), "limit", 50, G)?;
    let (list, total) =
        state.registry.meta().list_deliveries(hook.id, (page - 1) * limit, limit).await.map_err(internal)?;
    let mut data = Vec::with_capacity(list.len());
    for d in &list {
        let mut v = delivery_json(d);
        if let Some(event) = state.registry.meta().event(d.event_id).await.map_err(internal)? {
            v["event"] = json!(event.draft.kind.as_str());
            v["repository"] = json!(event.draft.repository);
            v["tag"] = json!(event.draft.tag);
            v["digest"] = json!(event.draft.digest);
        }
        data.push(v);
    }
    Ok(Json(list_json(data, page, limit, total)).into_response())
}

/// The delivery `did` of webhook `id`, or 404.
async fn find_delivery(state: &AppState, id: &str, did: &str) -> Result<DeliveryRecord, Problem> {
    let hook = find(state, webhook_id(id)?).await?;
    let did = did.parse::<i64>().map_err(|_| Problem::not_found(G, "no such delivery"))?;
    let delivery = state.registry.meta().delivery(did).await.map_err(internal)?;
    delivery.filter(|d| d.webhook_id == hook.id).ok_or_else(|| Problem::not_found(G, "no such delivery"))
}

/// `GET /api/v1/webhooks/{id}/deliveries/{delivery}` (admin): with every attempt.
pub async fn delivery(
    State(state): State<AppState>,
    Path((id, did)): Path<(String, String)>,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    admin(&state, &parts).await?;
    let d = find_delivery(&state, &id, &did).await?;
    let attempts = state.registry.meta().delivery_attempts(d.id).await.map_err(internal)?;
    let mut v = delivery_json(&d);
    v["attempt_log"] = attempts
        .iter()
        .map(|a| {
            json!({
                "attempt": a.attempt,
                "at": berth_webhooks::payload::rfc3339_ms(a.at_ms),
                "status": a.status,
                "latency_ms": a.latency_ms,
                "error": a.error,
            })
        })
        .collect();
    Ok(Json(v).into_response())
}

/// `POST /api/v1/webhooks/{id}/deliveries/{delivery}/redeliver` (admin): 202 with the new delivery.
pub async fn redeliver(
    State(state): State<AppState>,
    Path((id, did)): Path<(String, String)>,
    request: Request,
) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    admin(&state, &parts).await?;
    let d = find_delivery(&state, &id, &did).await?;
    let queued = state.registry.meta().redeliver(d.id, berth_meta::now_ms()).await.map_err(internal)?;
    let queued = queued.ok_or_else(|| Problem::not_found(G, "no such delivery"))?;
    let queued = state.registry.meta().delivery(queued).await.map_err(internal)?;
    let queued = queued.ok_or_else(|| Problem::not_found(G, "no such delivery"))?;
    Ok((StatusCode::ACCEPTED, Json(delivery_json(&queued))).into_response())
}
