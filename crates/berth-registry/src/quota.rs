//! Project quotas as pushes see them. The database enforces hard limits in the
//! transaction of every change (`berth_meta::quota`); this checks the storage
//! limit earlier, before any byte of an upload whose size is known is accepted,
//! and turns crossing the soft limit into one event and a response header.

use berth_core::RepoName;
use berth_meta::{EventActor, EventDraft, EventKind, QuotaLimits, QuotaView, now_unix};

use crate::{Registry, RegistryError};

/// The event written once each time a project's usage crosses its soft limit.
pub const SOFT_LIMIT_EVENT: &str = "project.quota_warning";

impl Registry {
    /// Refuses an upload that would bring `repo`'s project past its hard storage
    /// limit once `upload_bytes` (the whole upload so far) are stored.
    pub(crate) async fn check_storage_quota(&self, repo: &RepoName, upload_bytes: u64) -> Result<(), RegistryError> {
        let Some(view) = self.quota_view_if(repo.project(), |l| l.storage_bytes.is_some()).await? else {
            return Ok(());
        };
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
        let Some(view) = self.quota_view_if(project, |l| l.storage_soft.is_some()).await? else {
            return Ok(None);
        };
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

    /// `project`'s quota and usage, read only if its limits are `limited`. Most
    /// projects have no limits, and their limits are known from a short-lived
    /// cache, so a push into one reads nothing here.
    async fn quota_view_if(
        &self,
        project: &str,
        limited: impl Fn(&QuotaLimits) -> bool,
    ) -> Result<Option<QuotaView>, RegistryError> {
        if self.cache.quota_limits(project).is_some_and(|limits| !limited(&limits)) {
            return Ok(None);
        }
        let view = self.meta.project_quota(project).await?;
        self.cache.put_quota_limits(project, view.limits);
        Ok(limited(&view.limits).then_some(view))
    }

    /// Forgets the cached limits of `project`. Call after changing them.
    pub fn forget_quota_limits(&self, project: &str) {
        self.cache.forget_quota_limits(project);
    }
}
