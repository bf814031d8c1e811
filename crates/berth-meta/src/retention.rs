//! Retention policies: per project, rules saying which tags of which
//! repositories to keep, and how long untagged manifests may stay. This module
//! stores policies and answers the indexed reads their evaluation needs (one
//! project's repositories, one repository's tags newest first, manifests that
//! could go once untagged); deciding what goes is `berth_registry::retention`.

use async_trait::async_trait;
use berth_core::RepoName;

use crate::{AuditDraft, MetaError};

/// One retention rule: what it keeps in the repositories its glob matches.
/// A tag is kept when any criterion that is set keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionRule {
    /// Repository glob, matched against the full repository name (`*` crosses `/`).
    pub repository: String,
    /// Keep the newest N tags by push time.
    pub keep_last: Option<i64>,
    /// Keep tags whose name matches this regular expression.
    pub keep_tags: Option<String>,
    /// Keep semantic-version tags (a leading `v` allowed) within this range (`>=1.2, <2`).
    pub keep_semver: Option<String>,
    /// Keep tags pulled or pushed within this many days.
    pub keep_pulled_within_days: Option<i64>,
}

/// A project's retention policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionPolicy {
    pub project: String,
    /// Evaluated by the scheduler (an explicit run works either way).
    pub enabled: bool,
    /// Untagged manifests older than this many hours are deleted (`None`: kept).
    pub untagged_hours: Option<i64>,
    /// In the order given.
    pub rules: Vec<RetentionRule>,
    /// Unix seconds of the last change (set by the store).
    pub updated_at: i64,
}

/// A tag as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionTag {
    pub name: String,
    /// The digest of the manifest it points at.
    pub digest: String,
    /// Unix seconds of the last push that wrote it.
    pub pushed_at: i64,
    /// Unix seconds of the last pull through it (`None`: never pulled).
    pub last_pulled_at: Option<i64>,
}

/// Retention policies and the reads that evaluate them.
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// A project's policy, `None` when it never had one.
    async fn retention_policy(&self, project: &str) -> Result<Option<RetentionPolicy>, MetaError>;

    /// Replaces a project's policy and rules (`updated_at` is set to now),
    /// audited in the same transaction.
    async fn replace_retention_policy(
        &self,
        policy: &RetentionPolicy,
        audit: Option<&AuditDraft>,
    ) -> Result<RetentionPolicy, MetaError>;

    /// Projects whose policy is enabled, sorted.
    async fn retention_projects(&self) -> Result<Vec<String>, MetaError>;

    /// Names of a project's repositories, sorted.
    async fn project_repositories(&self, project: &str) -> Result<Vec<String>, MetaError>;

    /// Tags of `repo`, newest push first (ties by name).
    async fn retention_tags(&self, repo: &RepoName) -> Result<Vec<RetentionTag>, MetaError>;

    /// Digests (sorted) of manifests of `repo` created before `created_before`
    /// (unix seconds) that no other manifest of `repo` lists as a child and that
    /// are not referrers of a subject still present: the ones that may go once
    /// no tag points at them.
    async fn retention_manifests(&self, repo: &RepoName, created_before: i64) -> Result<Vec<String>, MetaError>;
}

/// One project's repositories (index `repositories_project`).
pub(crate) const REPOSITORIES_SQL: &str = "SELECT name FROM repositories WHERE project = $1 ORDER BY name";

/// One repository's tags, newest push first (index `tags_pushed`).
pub(crate) const TAGS_SQL: &str = "SELECT t.name, t.manifest_digest, t.updated_at, t.last_pulled_at FROM tags t
     WHERE t.repo_id = (SELECT id FROM repositories WHERE name = $1)
     ORDER BY t.updated_at DESC, t.name";

/// One repository's manifests that may go once untagged (primary keys and `manifest_refs_child`).
pub(crate) const MANIFESTS_SQL: &str = "SELECT m.digest FROM manifests m
     WHERE m.repo_id = (SELECT id FROM repositories WHERE name = $1) AND m.created_at < $2
       AND NOT EXISTS (SELECT 1 FROM manifest_refs r
                       WHERE r.repo_id = m.repo_id AND r.child_digest = m.digest AND r.kind = 'manifest')
       AND (m.subject_digest IS NULL
            OR NOT EXISTS (SELECT 1 FROM manifests s WHERE s.repo_id = m.repo_id AND s.digest = m.subject_digest))
     ORDER BY m.digest";

/// Expands [`RetentionStore`] for one backend.
macro_rules! retention_impl {
    ($ty:ty, $db:ty) => {
        use async_trait::async_trait;
        use berth_core::RepoName;
        use sqlx::Row;

        use $crate::{AuditDraft, MetaError, RetentionPolicy, RetentionRule, RetentionStore, RetentionTag, now_unix};

        type Tx<'a> = sqlx::Transaction<'a, $db>;

        fn rule_row(row: &<$db as sqlx::Database>::Row) -> Result<RetentionRule, MetaError> {
            Ok(RetentionRule {
                repository: row.try_get("repository")?,
                keep_last: row.try_get("keep_last")?,
                keep_tags: row.try_get("keep_tags")?,
                keep_semver: row.try_get("keep_semver")?,
                keep_pulled_within_days: row.try_get("keep_pulled_within_days")?,
            })
        }

        async fn insert_rules(tx: &mut Tx<'_>, project: &str, rules: &[RetentionRule]) -> Result<(), MetaError> {
            let now = now_unix();
            for rule in rules {
                sqlx::query(
                    "INSERT INTO retention_rules (project, repository, keep_last, keep_tags, keep_semver,
                                                  keep_pulled_within_days, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(project)
                .bind(&rule.repository)
                .bind(rule.keep_last)
                .bind(&rule.keep_tags)
                .bind(&rule.keep_semver)
                .bind(rule.keep_pulled_within_days)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        }

        #[async_trait]
        impl RetentionStore for $ty {
            async fn retention_policy(&self, project: &str) -> Result<Option<RetentionPolicy>, MetaError> {
                let head = sqlx::query(
                    "SELECT enabled, untagged_hours, updated_at FROM retention_policies WHERE project = $1",
                )
                .bind(project)
                .fetch_optional(&mut *self.read_conn().await?)
                .await?;
                let Some(head) = head else {
                    return Ok(None);
                };
                let rows = sqlx::query(
                    "SELECT repository, keep_last, keep_tags, keep_semver, keep_pulled_within_days
                     FROM retention_rules WHERE project = $1 ORDER BY id",
                )
                .bind(project)
                .fetch_all(&mut *self.read_conn().await?)
                .await?;
                Ok(Some(RetentionPolicy {
                    project: project.to_owned(),
                    enabled: head.try_get::<i64, _>("enabled")? != 0,
                    untagged_hours: head.try_get("untagged_hours")?,
                    rules: rows.iter().map(rule_row).collect::<Result<_, _>>()?,
                    updated_at: head.try_get("updated_at")?,
                }))
            }

            async fn replace_retention_policy(
                &self,
                policy: &RetentionPolicy,
                audit: Option<&AuditDraft>,
            ) -> Result<RetentionPolicy, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                // Rules go with their policy (ON DELETE CASCADE).
                sqlx::query("DELETE FROM retention_policies WHERE project = $1")
                    .bind(&policy.project)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO retention_policies (project, enabled, untagged_hours, updated_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&policy.project)
                .bind(i64::from(policy.enabled))
                .bind(policy.untagged_hours)
                .bind(now_unix())
                .execute(&mut *tx)
                .await?;
                insert_rules(&mut tx, &policy.project, &policy.rules).await?;
                if let Some(audit) = audit {
                    super::access::audit_in_tx(&mut tx, audit).await?;
                }
                tx.commit().await?;
                drop(conn); // the write lock
                let stored = self.retention_policy(&policy.project).await?;
                stored.ok_or_else(|| MetaError::Corrupt("retention policy vanished after its write".into()))
            }

            async fn retention_projects(&self) -> Result<Vec<String>, MetaError> {
                Ok(sqlx::query_scalar("SELECT project FROM retention_policies WHERE enabled = 1 ORDER BY project")
                    .fetch_all(&mut *self.read_conn().await?)
                    .await?)
            }

            async fn project_repositories(&self, project: &str) -> Result<Vec<String>, MetaError> {
                Ok(sqlx::query_scalar($crate::retention::REPOSITORIES_SQL)
                    .bind(project)
                    .fetch_all(&mut *self.read_conn().await?)
                    .await?)
            }

            async fn retention_tags(&self, repo: &RepoName) -> Result<Vec<RetentionTag>, MetaError> {
                let rows = sqlx::query($crate::retention::TAGS_SQL)
                    .bind(repo.as_str())
                    .fetch_all(&mut *self.read_conn().await?)
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok(RetentionTag {
                            name: row.try_get("name")?,
                            digest: row.try_get("manifest_digest")?,
                            pushed_at: row.try_get("updated_at")?,
                            last_pulled_at: row.try_get("last_pulled_at")?,
                        })
                    })
                    .collect()
            }

            async fn retention_manifests(
                &self,
                repo: &RepoName,
                created_before: i64,
            ) -> Result<Vec<String>, MetaError> {
                Ok(sqlx::query_scalar($crate::retention::MANIFESTS_SQL)
                    .bind(repo.as_str())
                    .bind(created_before)
                    .fetch_all(&mut *self.read_conn().await?)
                    .await?)
            }
        }
    };
}
pub(crate) use retention_impl;
