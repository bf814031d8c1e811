//! `GET /health` and `GET /api/version` in the management envelope (seed 000),
//! and the service checks `GET /api/v1/health` shares.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::api::envelope::{Failure, ok};

/// How long one check may take before its service counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Which services answered their check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Services {
    pub database: bool,
    pub storage: bool,
    pub auth: bool,
}

impl Services {
    pub fn all_up(self) -> bool {
        self.database && self.storage && self.auth
    }
}

/// Runs the three checks concurrently: the database answers a trivial query;
/// the blob store completes a round trip (`BlobStore::health_check`);
/// the access service reads the users table and can sign a token.
pub(crate) async fn check_services(state: &AppState) -> Services {
    let database = check("database", async { state.registry.meta().ping().await.map_err(|e| e.to_string()) });
    let storage =
        check("storage", async { state.registry.blob_store().health_check().await.map_err(|e| e.to_string()) });
    let auth = check("auth", async {
        state.access.meta().count_users().await.map_err(|e| e.to_string())?;
        let probe = berth_registry::access::UserInfo {
            id: 0,
            username: "health-check".into(),
            role: berth_access::permissions::UserRole::User,
        };
        state.access.issue_login_token(&probe, "health-check", Duration::from_secs(1)).map_err(|e| e.to_string())?;
        Ok(())
    });
    let (database, storage, auth) = tokio::join!(database, storage, auth);
    Services { database, storage, auth }
}

async fn check(service: &str, probe: impl Future<Output = Result<(), String>>) -> bool {
    match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::error!(service, error = %e, "health check failed");
            false
        }
        Err(_) => {
            tracing::error!(service, "health check timed out");
            false
        }
    }
}

/// Healthy when the database, the blob store and the access service all answer.
pub async fn health(State(state): State<AppState>) -> Response {
    let services = check_services(&state).await;
    if services.all_up() {
        return ok(json!({"status": "healthy", "version": state.version}));
    }
    let down: Vec<&str> = [("database", services.database), ("storage", services.storage), ("auth", services.auth)]
        .into_iter()
        .filter(|(_, up)| !up)
        .map(|(name, _)| name)
        .collect();
    Failure::new(StatusCode::SERVICE_UNAVAILABLE, "INTERNAL_ERROR", format!("unavailable: {}", down.join(", ")))
        .into_response()
}

/// `GET /api/version` (no authentication, like `/health`).
pub async fn version(State(state): State<AppState>) -> Response {
    ok(json!({"version": state.version, "full_version": state.full_version}))
}
