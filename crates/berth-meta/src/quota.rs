//! Project quotas: usage kept exact by database triggers, limits enforced there.
//!
//! Triggers (migration 0011) update `project_usage` in the transaction of every
//! change to repositories, tags and blob links, cascades and garbage collection
//! included, so usage is never recomputed and never drifts. The same triggers
//! refuse a new repository, tag or blob link past a hard limit; the refusal
//! reaches callers as [`crate::MetaError::QuotaExceeded`]. Logical bytes count a
//! blob once per repository that links it, physical bytes once per project.

use async_trait::async_trait;

use crate::{AuditDraft, EventDraft, MetaError};

/// A project's limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaLimits {
    /// Hard limit on physical (deduplicated) blob bytes.
    pub storage_bytes: Option<i64>,
    /// Soft limit on physical bytes: crossing it warns (event, response header).
    pub storage_soft: Option<i64>,
    pub repositories: Option<i64>,
    pub tags: Option<i64>,
}

/// What a project uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProjectUsage {
    pub logical_bytes: i64,
    pub physical_bytes: i64,
    pub repositories: i64,
    pub tags: i64,
}

/// A project's limits and usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaView {
    pub limits: QuotaLimits,
    pub usage: ProjectUsage,
    /// When usage crossed the soft limit (unix seconds); `None` while under it.
    pub soft_warned_at: Option<i64>,
    /// When the limits last changed; `None` when none were ever set.
    pub updated_at: Option<i64>,
}

/// Quotas per project.
#[async_trait]
pub trait QuotaStore: Send + Sync {
    /// A project's limits and usage (all zero / unlimited for a project without either).
    async fn project_quota(&self, project: &str) -> Result<QuotaView, MetaError>;

    /// Replaces a project's limits, audited in the same transaction.
    async fn set_project_quota(
        &self,
        project: &str,
        limits: &QuotaLimits,
        audit: Option<&AuditDraft>,
    ) -> Result<QuotaView, MetaError>;

    /// Records whether usage is over the soft limit (`Some(now)` on crossing,
    /// `None` once back under), writing `events` with the change. False when
    /// another writer recorded the same state first (so one warning per crossing).
    async fn mark_soft_limit(&self, project: &str, at: Option<i64>, events: &[EventDraft]) -> Result<bool, MetaError>;
}

/// Expands [`QuotaStore`] for one backend.
macro_rules! quota_impl {
    ($ty:ty, $db:ty) => {
        use async_trait::async_trait;
        use sqlx::Row;

        use $crate::quota::{ProjectUsage, QuotaLimits, QuotaStore, QuotaView};
        use $crate::{AuditDraft, EventDraft, MetaError, now_unix};

        async fn read_view<'e, E>(executor: E, project: &str) -> Result<QuotaView, MetaError>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let row = sqlx::query(
                "SELECT q.storage_bytes, q.storage_soft, q.repositories AS max_repositories, q.tags AS max_tags,
                        q.soft_warned_at, q.updated_at,
                        u.logical_bytes, u.physical_bytes, u.repositories, u.tags
                 FROM (SELECT $1 AS project) p
                 LEFT JOIN project_quotas q ON q.project = p.project
                 LEFT JOIN project_usage u ON u.project = p.project",
            )
            .bind(project)
            .fetch_one(executor)
            .await?;
            let n = |col: &str| -> Result<i64, MetaError> { Ok(row.try_get::<Option<i64>, _>(col)?.unwrap_or(0)) };
            Ok(QuotaView {
                limits: QuotaLimits {
                    storage_bytes: row.try_get("storage_bytes")?,
                    storage_soft: row.try_get("storage_soft")?,
                    repositories: row.try_get("max_repositories")?,
                    tags: row.try_get("max_tags")?,
                },
                usage: ProjectUsage {
                    logical_bytes: n("logical_bytes")?,
                    physical_bytes: n("physical_bytes")?,
                    repositories: n("repositories")?,
                    tags: n("tags")?,
                },
                soft_warned_at: row.try_get("soft_warned_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        }

        #[async_trait]
        impl QuotaStore for $ty {
            async fn project_quota(&self, project: &str) -> Result<QuotaView, MetaError> {
                read_view(&mut *self.read_conn().await?, project).await
            }

            async fn set_project_quota(
                &self,
                project: &str,
                limits: &QuotaLimits,
                audit: Option<&AuditDraft>,
            ) -> Result<QuotaView, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::query(
                    "INSERT INTO project_quotas (project, storage_bytes, storage_soft, repositories, tags, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (project) DO UPDATE SET storage_bytes = excluded.storage_bytes,
                         storage_soft = excluded.storage_soft, repositories = excluded.repositories,
                         tags = excluded.tags, updated_at = excluded.updated_at",
                )
                .bind(project)
                .bind(limits.storage_bytes)
                .bind(limits.storage_soft)
                .bind(limits.repositories)
                .bind(limits.tags)
                .bind(now_unix())
                .execute(&mut *tx)
                .await?;
                if let Some(audit) = audit {
                    super::access::audit_in_tx(&mut tx, audit).await?;
                }
                let view = read_view(&mut *tx, project).await?;
                tx.commit().await?;
                Ok(view)
            }

            async fn mark_soft_limit(
                &self,
                project: &str,
                at: Option<i64>,
                events: &[EventDraft],
            ) -> Result<bool, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let sql = if at.is_some() {
                    "UPDATE project_quotas SET soft_warned_at = $2 WHERE project = $1 AND soft_warned_at IS NULL"
                } else {
                    "UPDATE project_quotas SET soft_warned_at = $2 WHERE project = $1 AND soft_warned_at IS NOT NULL"
                };
                let changed = sqlx::query(sql).bind(project).bind(at).execute(&mut *tx).await?.rows_affected() > 0;
                if changed {
                    super::events::insert_events(&mut tx, events).await?;
                }
                tx.commit().await?;
                Ok(changed)
            }
        }
    };
}
pub(crate) use quota_impl;
