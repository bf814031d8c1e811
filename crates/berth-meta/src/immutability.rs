//! Tag immutability rules: per project, a repository glob and a tag regular
//! expression. A tag they cover can be created once and then neither moved to
//! another manifest nor deleted. The backends check the rules inside the
//! transaction that writes or deletes the tag, so no concurrent change slips
//! between the check and the write.

use async_trait::async_trait;

use crate::{AuditDraft, MetaError};

/// The longest pattern accepted (and the compiled size limit below keeps
/// hostile patterns from costing much).
pub const MAX_PATTERN_LEN: usize = 256;

/// One rule as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImmutabilityRule {
    pub id: i64,
    pub project: String,
    /// Repository glob, matched against the full repository name.
    pub repository: String,
    /// Regular expression a tag must match (anchor it with `^…$` for a whole-tag match).
    pub pattern: String,
    pub created_at: i64,
}

/// Compiles a rule's pattern, as checked when rules are saved.
pub fn compile(pattern: &str) -> Result<regex::Regex, String> {
    if pattern.is_empty() || pattern.len() > MAX_PATTERN_LEN {
        return Err(format!("a pattern has 1 to {MAX_PATTERN_LEN} characters"));
    }
    regex::RegexBuilder::new(pattern).size_limit(1 << 20).build().map_err(|e| e.to_string())
}

/// The first of `tags` of `repo` that `rules` (`(repository glob, pattern)`) protect.
pub fn protected<'t>(
    rules: &[(String, String)],
    repo: &str,
    tags: impl IntoIterator<Item = &'t str>,
) -> Option<String> {
    let applicable: Vec<regex::Regex> = rules
        .iter()
        .filter(|(glob, _)| berth_core::glob::matches(glob, repo))
        .filter_map(|(_, pattern)| compile(pattern).ok())
        .collect();
    if applicable.is_empty() {
        return None;
    }
    tags.into_iter().find(|tag| applicable.iter().any(|r| r.is_match(tag))).map(str::to_owned)
}

/// Rules per project.
#[async_trait]
pub trait ImmutabilityStore: Send + Sync {
    /// A project's rules, oldest first.
    async fn immutability_rules(&self, project: &str) -> Result<Vec<ImmutabilityRule>, MetaError>;

    /// Replaces a project's rules (`(repository glob, pattern)`), audited in the same transaction.
    async fn replace_immutability_rules(
        &self,
        project: &str,
        rules: &[(String, String)],
        audit: Option<&AuditDraft>,
    ) -> Result<Vec<ImmutabilityRule>, MetaError>;
}

/// Expands the rule store and `protected_tag`, the in-transaction check, for one backend.
macro_rules! immutability_impl {
    ($ty:ty, $db:ty) => {
        use async_trait::async_trait;
        use sqlx::Row;

        use $crate::{AuditDraft, ImmutabilityRule, ImmutabilityStore, MetaError, now_unix};

        type Tx<'a> = sqlx::Transaction<'a, $db>;

        /// Refuses the change when a rule of `repo`'s project protects one of
        /// `tags`; the rules are read inside the caller's write transaction.
        pub(crate) async fn refuse_protected(
            tx: &mut Tx<'_>,
            repo: &berth_core::RepoName,
            tags: &[String],
        ) -> Result<(), MetaError> {
            if tags.is_empty() {
                return Ok(());
            }
            let rules: Vec<(String, String)> =
                sqlx::query_as("SELECT repository, pattern FROM immutable_tag_rules WHERE project = $1")
                    .bind(repo.project())
                    .fetch_all(&mut **tx)
                    .await?;
            match $crate::immutability::protected(&rules, repo.as_str(), tags.iter().map(String::as_str)) {
                Some(tag) => Err(MetaError::ImmutableTag(tag)),
                None => Ok(()),
            }
        }

        /// Refuses deleting manifest `digest` of `repo` while a protected tag points at it.
        pub(crate) async fn refuse_protected_manifest(
            tx: &mut Tx<'_>,
            repo: &berth_core::RepoName,
            digest: &str,
        ) -> Result<(), MetaError> {
            let tags: Vec<String> = sqlx::query_scalar(
                "SELECT t.name FROM tags t JOIN repositories r ON r.id = t.repo_id
                 WHERE r.name = $1 AND t.manifest_digest = $2",
            )
            .bind(repo.as_str())
            .bind(digest)
            .fetch_all(&mut **tx)
            .await?;
            refuse_protected(tx, repo, &tags).await
        }

        fn rule_row(row: &<$db as sqlx::Database>::Row) -> Result<ImmutabilityRule, MetaError> {
            Ok(ImmutabilityRule {
                id: row.try_get("id")?,
                project: row.try_get("project")?,
                repository: row.try_get("repository")?,
                pattern: row.try_get("pattern")?,
                created_at: row.try_get("created_at")?,
            })
        }

        #[async_trait]
        impl ImmutabilityStore for $ty {
            async fn immutability_rules(&self, project: &str) -> Result<Vec<ImmutabilityRule>, MetaError> {
                let rows = sqlx::query(
                    "SELECT id, project, repository, pattern, created_at FROM immutable_tag_rules
                     WHERE project = $1 ORDER BY id",
                )
                .bind(project)
                .fetch_all(&mut *self.read_conn().await?)
                .await?;
                rows.iter().map(rule_row).collect()
            }

            async fn replace_immutability_rules(
                &self,
                project: &str,
                rules: &[(String, String)],
                audit: Option<&AuditDraft>,
            ) -> Result<Vec<ImmutabilityRule>, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::query("DELETE FROM immutable_tag_rules WHERE project = $1").bind(project).execute(&mut *tx).await?;
                let now = now_unix();
                for (repository, pattern) in rules {
                    sqlx::query(
                        "INSERT INTO immutable_tag_rules (project, repository, pattern, created_at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(project)
                    .bind(repository)
                    .bind(pattern)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                if let Some(audit) = audit {
                    super::access::audit_in_tx(&mut tx, audit).await?;
                }
                tx.commit().await?;
                drop(conn); // the write lock
                self.immutability_rules(project).await
            }
        }
    };
}
pub(crate) use immutability_impl;

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(g, p)| (g.to_string(), p.to_string())).collect()
    }

    #[test]
    fn rules_match_by_repository_glob_and_tag_pattern() {
        let r = rules(&[("team/*", r"^v\d+\.\d+\.\d+$"), ("team/base", "^stable$")]);
        assert_eq!(protected(&r, "team/app", ["latest", "v1.2.3"]), Some("v1.2.3".into()));
        assert_eq!(protected(&r, "team/app", ["latest", "v1.2"]), None);
        assert_eq!(protected(&r, "team/base", ["stable"]), Some("stable".into()));
        assert_eq!(protected(&r, "other/app", ["v1.2.3"]), None);
        assert_eq!(protected(&[], "team/app", ["v1.2.3"]), None);
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(compile("(").is_err());
        assert!(compile("").is_err());
        assert!(compile(&"a".repeat(MAX_PATTERN_LEN + 1)).is_err());
        assert!(compile(r"^v\d+").is_ok());
    }
}
