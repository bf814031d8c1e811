//! Seed 004's `GET /api/v1/health` (no authentication) and `GET /api/v1/metrics`
//! (admin), both raw JSON with GhostDock errors.
//!
//! Counts come from the metadata database; request figures from the metrics
//! middleware's in-process summary, since this process started: `pulls` are
//! successful manifest GETs on `/v2`, `pushes` successful manifest PUTs, and
//! `errors` every answer of 400 or above.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_meta::RegistryTotals;
use serde_json::json;

use super::{Problem, Surface, caller};
use crate::AppState;
use crate::health::check_services;

const G: Surface = Surface::GhostDock;

/// `GET /api/v1/health`: 200 when every service answers, else 503 `"unhealthy"`.
pub async fn health(State(state): State<AppState>) -> Response {
    let (services, totals, users) = tokio::join!(
        check_services(&state),
        state.registry.meta().registry_totals(),
        state.access.meta().count_users()
    );
    let totals = totals.unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot count the registry's content");
        RegistryTotals::default()
    });
    let word = |up: bool| if up { "healthy" } else { "unhealthy" };
    let status = if services.all_up() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": word(services.all_up()),
        "version": state.version,
        "services": {
            "database": word(services.database),
            "storage": word(services.storage),
            "auth": word(services.auth),
        },
        "metrics": {
            "repositories": totals.repositories,
            "images": totals.tags,
            "users": users.unwrap_or_default(),
            "storage_used": human_size(totals.blob_bytes.max(0) as u64),
        },
    });
    (status, Json(body)).into_response()
}

/// `GET /api/v1/metrics`: admins only when authentication is on.
pub async fn metrics(State(state): State<AppState>, request: Request) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    if state.access.enabled() {
        caller(&state, &parts, G).await?.require_admin(G)?;
    }
    let totals = state.registry.meta().registry_totals().await.map_err(|e| Problem::internal(G, e))?;
    let s = state.http_metrics.summary.snapshot();
    let now = berth_meta::rfc3339(berth_meta::now_unix());
    Ok(Json(json!({
        "timestamp": now,
        "requests": {"total": s.total, "success": s.success, "errors": s.errors},
        "registry": {
            "pulls": s.pulls,
            "pushes": s.pushes,
            "repositories": totals.repositories,
            "images": totals.tags,
        },
        "storage": {
            "total_size": totals.blob_bytes,
            "blob_count": totals.blobs,
            "manifest_count": totals.manifests,
        },
        "performance": {
            "avg_response_time": s.avg_ms,
            "p95_response_time": s.p95_ms,
            "p99_response_time": s.p99_ms,
        },
    }))
    .into_response())
}

/// Bytes in binary units as seed 004 writes them (`"2.5GB"`, `"512B"`).
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KB", "MB", "GB", "TB", "PB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    format!("{}{}", text.strip_suffix(".0").unwrap_or(&text), UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_like_the_seed() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(1023), "1023B");
        assert_eq!(human_size(1024), "1KB");
        assert_eq!(human_size(1536), "1.5KB");
        assert_eq!(human_size(5 * 1024 * 1024 * 1024 / 2), "2.5GB");
        assert_eq!(human_size(3 * 1024u64.pow(4)), "3TB");
    }
}
