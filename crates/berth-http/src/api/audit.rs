//! The audit log: seed 000's `/api/v1/audit/logs` (+ `/export`) and seed 004's
//! `/api/v1/audit`, two views of one chained store (API.md §6.3, §7, C5).

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use berth_meta::{AuditFilter, AuditRecord};
use serde_json::{Value, json};

use super::{Problem, Surface, caller, paging, query_pairs};
use crate::AppState;

/// Entries per export read (the export streams page by page into one array).
const EXPORT_BATCH: i64 = 1000;
/// Largest export; past this the caller narrows the dates.
const EXPORT_LIMIT: usize = 1_000_000;

/// seed 000 `AuditLog`.
fn log_json(r: &AuditRecord) -> Value {
    json!({
        "id": r.id,
        "timestamp": r.timestamp,
        "level": r.level,
        "event": r.event,
        "user_id": r.user_id,
        "username": r.username,
        "ip_address": r.ip_address,
        "resource": r.resource,
        "action": r.action,
        "status": r.status,
        "blockchain_hash": r.hash,
    })
}

/// seed 004 audit entry.
fn ghost_json(r: &AuditRecord) -> Value {
    let detail: Value = serde_json::from_str(&r.detail).unwrap_or(Value::Null);
    json!({
        "id": r.id,
        "timestamp": r.timestamp,
        "user": r.username,
        "action": r.action,
        "resource": r.resource,
        "ip_address": r.ip_address,
        "user_agent": detail.get("user_agent").cloned().unwrap_or(json!("")),
        "status": r.status,
    })
}

/// A date bound: RFC 3339, or `YYYY-MM-DD` (start or end of that UTC day).
fn date_bound(value: Option<&str>, end_of_day: bool, surface: Surface) -> Result<Option<i64>, Problem> {
    let Some(value) = value.filter(|v| !v.is_empty()) else { return Ok(None) };
    if let Ok(t) = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339) {
        return Ok(Some(t.unix_timestamp()));
    }
    let format = time::format_description::parse_borrowed::<2>("[year]-[month]-[day]")
        .map_err(|e| Problem::internal(surface, e))?;
    let day = time::Date::parse(value, &format)
        .map_err(|_| Problem::bad_request(surface, format!("bad date {value:?}: use RFC 3339 or YYYY-MM-DD")))?;
    let start = day.midnight().assume_utc().unix_timestamp();
    Ok(Some(if end_of_day { start + 86_399 } else { start }))
}

fn param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// seed 000 filters: `event_type`, `start_date`, `end_date`.
fn security_filter(query: &[(String, String)]) -> Result<AuditFilter, Problem> {
    let s = Surface::Security;
    Ok(AuditFilter {
        event: param(query, "event_type").filter(|v| !v.is_empty()).map(str::to_owned),
        from: date_bound(param(query, "start_date"), false, s)?,
        to: date_bound(param(query, "end_date"), true, s)?,
        ..AuditFilter::default()
    })
}

/// `GET /api/v1/audit/logs` (admin): newest first.
pub async fn logs(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let s = Surface::Security;
    let (parts, _) = request.into_parts();
    caller(&state, &parts, s).await?.require_admin(s)?;
    let query = query_pairs(&parts);
    let (page, page_size) = paging(&query, "page_size", 20, s)?;
    let filter = security_filter(&query)?;
    let (logs, total) = state
        .access
        .meta()
        .list_audit(&filter, (page - 1) * page_size, page_size)
        .await
        .map_err(|e| Problem::internal(s, e))?;
    let logs: Vec<Value> = logs.iter().map(log_json).collect();
    Ok(Json(json!({ "logs": logs, "total": total, "page": page, "page_size": page_size })).into_response())
}

/// `GET /api/v1/audit/logs/export` (admin): every matching entry, oldest first,
/// as a JSON file download.
pub async fn export(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let s = Surface::Security;
    let (parts, _) = request.into_parts();
    caller(&state, &parts, s).await?.require_admin(s)?;
    let filter = security_filter(&query_pairs(&parts))?;
    let mut entries = Vec::new();
    let mut after = 0;
    loop {
        let batch =
            state.access.meta().audit_after(after, &filter, EXPORT_BATCH).await.map_err(|e| Problem::internal(s, e))?;
        let Some(last) = batch.last() else { break };
        after = last.id;
        entries.extend(batch.iter().map(log_json));
        if entries.len() >= EXPORT_LIMIT {
            return Err(Problem::bad_request(s, "too many entries: narrow start_date/end_date"));
        }
    }
    let mut response = Json(entries).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"berth-audit.json\""));
    Ok(response)
}

/// `GET /api/v1/audit` (admin; seed 004): filters `user`, `action`, `from`, `to`.
pub async fn ghost_audit(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let g = Surface::GhostDock;
    let (parts, _) = request.into_parts();
    caller(&state, &parts, g).await?.require_admin(g)?;
    let query = query_pairs(&parts);
    let (page, limit) = paging(&query, "limit", 50, g)?;
    let filter = AuditFilter {
        username: param(&query, "user").filter(|v| !v.is_empty()).map(str::to_owned),
        action: param(&query, "action").filter(|v| !v.is_empty()).map(str::to_owned),
        from: date_bound(param(&query, "from"), false, g)?,
        to: date_bound(param(&query, "to"), true, g)?,
        ..AuditFilter::default()
    };
    let (logs, total) = state
        .access
        .meta()
        .list_audit(&filter, (page - 1) * limit, limit)
        .await
        .map_err(|e| Problem::internal(g, e))?;
    let logs: Vec<Value> = logs.iter().map(ghost_json).collect();
    Ok(Json(json!({ "logs": logs, "total": total, "page": page, "limit": limit })).into_response())
}
