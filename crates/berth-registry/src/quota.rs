//! Project quotas as pushes see them. The database enforces hard limits in the
//! transaction of every change (`berth_meta::quota`); this checks the storage
//! limit earlier, before any byte of an upload whose size is known is accepted,
//! and turns crossing the soft limit into one event and a response header.

use berth_core::RepoName;
use berth_meta::{EventActor, EventDraft, EventKind, now_unix};

use crate::{Registry, RegistryError};

/// The event written once each time a project's usage crosses its soft limit.
pub const SOFT_LIMIT_EVENT: &str = "project.quota_warning";

impl Registry {
    /// Refuses an upload that would bring `repo`'s project past its hard storage
    /// limit once `upload_bytes` (the whole upload so far) are stored.
    pub(crate) async fn check_storage_quota(&self, repo: &RepoName, upload_bytes: u64) -> Result<(), RegistryError> {
        let view = self.meta.project_quota(repo.project()).await?;
        match view.limits.storage_bytes {
            Some(limit) if view.usage.physical_bytes.saturating_add(upload_bytes as i64) > limit => {
                Err(RegistryError::QuotaExceeded("storage".into()))
            }
            _ => Ok(()),
        }
    }

    /// After a push into `repo`: a warning when its project is over its soft
    /// storage limit (the crossing recorded, with an event, once).
    pub async fn quota_warning(&self, repo: &RepoName) -> Result<Option<String>, RegistryError> {
        let project = repo.project();
        let view = self.meta.project_quota(project).await?;
        let Some(soft) = view.limits.storage_soft else {
            return Ok(None);
        };
        let used = view.usage.physical_bytes;
        if used <= soft {
            if view.soft_warned_at.is_some() {
                self.meta.mark_soft_limit(project, None, &[]).await?;
            }
            return Ok(None);
        }
        if view.soft_warned_at.is_none() {
            let mut event =
                EventDraft::new(EventKind::Management(SOFT_LIMIT_EVENT.into()), &EventActor::system("quota"))
                    .repository(repo.as_str());
            event.detail = serde_json::json!({
                "project": project,
                "physical_bytes": used,
                "soft_limit": soft,
                "hard_limit": view.limits.storage_bytes,
            });
            self.meta.mark_soft_limit(project, Some(now_unix()), &[event]).await?;
        }
        Ok(Some(format!("project {project} stores {used} bytes, over its soft limit of {soft} bytes")))
    }
}
