//! One implementation of [`CatalogStore`](crate::CatalogStore) for both SQL
//! dialects (portable SQL with `$N` placeholders, as in `access_sql.rs`). Only
//! the search predicates differ: each backend passes its own index-backed
//! fragments (FTS5 `MATCH` on SQLite, `pg_trgm` `ILIKE` on PostgreSQL).

/// SQL fragments of one dialect's search; `$4` (and `$5`) are the search args.
pub(crate) struct SearchSql {
    /// Repository ids whose name contains `$4` (the dialect's trigram form).
    pub repo_substring: &'static str,
    /// Repository ids whose name is in `[$4, $5)` (a prefix range).
    pub repo_prefix: &'static str,
    /// `tag_names` ids whose name contains `$4`.
    pub tag_substring: &'static str,
    /// Names indexed in batches; `None` where the indexes keep up by themselves.
    pub backlog: Option<SearchBacklog>,
    /// `tag_names` ids whose lowercase name is in `[$4, $5)`.
    pub tag_prefix: &'static str,
    /// The trigram form of a lowercase query.
    pub trigram_form: fn(&str) -> String,
    /// `EXPLAIN QUERY PLAN` or `EXPLAIN`.
    pub explain: &'static str,
    /// Statements run before explaining, in the same transaction.
    pub explain_setup: &'static [&'static str],
    /// Where the plan text is in an explain row.
    pub plan_column: usize,
}

/// Names that reach a search index in batches.
pub(crate) struct SearchBacklog {
    /// Counts the names waiting.
    pub waiting: &'static str,
    /// Statements (one transaction) that index the names added since they last ran.
    pub index: &'static [&'static str],
}

/// The columns of an image row; `t` = tags, `m` = its manifest, `r` = repository.
pub(crate) const IMAGE_COLUMNS: &str = "r.name AS repo, t.name AS tag, t.manifest_digest AS digest, m.media_type,
    CAST(m.size
      + COALESCE((SELECT SUM(b.size) FROM manifest_refs x JOIN blobs b ON b.digest = x.child_digest
                  WHERE x.repo_id = t.repo_id AND x.manifest_digest = t.manifest_digest AND x.kind = 'blob'), 0)
      + COALESCE((SELECT SUM(c.size) FROM manifest_refs x JOIN manifests c ON c.repo_id = x.repo_id AND c.digest = x.child_digest
                  WHERE x.repo_id = t.repo_id AND x.manifest_digest = t.manifest_digest AND x.kind = 'manifest'), 0)
      + COALESCE((SELECT SUM(b.size) FROM manifest_refs x
                  JOIN manifest_refs y ON y.repo_id = x.repo_id AND y.manifest_digest = x.child_digest AND y.kind = 'blob'
                  JOIN blobs b ON b.digest = y.child_digest
                  WHERE x.repo_id = t.repo_id AND x.manifest_digest = t.manifest_digest AND x.kind = 'manifest'), 0)
      AS BIGINT) AS size,
    t.updated_at AS created_at, t.pull_count, t.push_count, t.last_pulled_at,
    CAST(CASE WHEN EXISTS (SELECT 1 FROM upstreams u WHERE u.namespace = r.project) THEN 1 ELSE 0 END AS BIGINT) AS cached";

/// The image rows of a `page(repo_id, name)` CTE, in listing order.
pub(crate) fn page_rows() -> String {
    format!(
        "SELECT {IMAGE_COLUMNS} FROM page p
         JOIN repositories r ON r.id = p.repo_id
         JOIN tags t ON t.repo_id = p.repo_id AND t.name = p.name
         JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.manifest_digest
         ORDER BY r.name, t.name"
    )
}

/// Rows `r` the viewer `$1` (a user id, NULL = everything) may pull.
pub(crate) const VISIBLE: &str = "($1 IS NULL
    OR NOT EXISTS (SELECT 1 FROM projects p WHERE p.name = r.project)
    OR EXISTS (SELECT 1 FROM project_members pm WHERE pm.project = r.project AND pm.user_id = $1)
    OR COALESCE(r.visibility, (SELECT p.visibility FROM projects p WHERE p.name = r.project)) = 'public')";

/// Expands the catalog implementation for one backend type, with its search fragments.
macro_rules! catalog_impl {
    ($ty:ty, $db:ty, $migrations:expr, $search:expr) => {
        use async_trait::async_trait;
        use sqlx::Row;

        use $crate::access_sql::dyn_sql;
        use $crate::catalog::SearchArgs;
        use $crate::catalog_sql::{IMAGE_COLUMNS, SearchSql, VISIBLE, page_rows};
        use $crate::{CatalogStore, ImagePage, ImageRow, MetaError, PullTally, RepositoryRecord, Viewer};

        type DbRow = <$db as sqlx::Database>::Row;

        const SEARCH: SearchSql = $search;

        fn image_row(row: &DbRow) -> Result<ImageRow, MetaError> {
            Ok(ImageRow {
                repo: row.try_get("repo")?,
                tag: row.try_get("tag")?,
                digest: row.try_get("digest")?,
                media_type: row.try_get("media_type")?,
                size: row.try_get("size")?,
                created_at: row.try_get("created_at")?,
                pull_count: row.try_get("pull_count")?,
                push_count: row.try_get("push_count")?,
                last_pulled_at: row.try_get("last_pulled_at")?,
                cached: row.try_get::<i64, _>("cached")? != 0,
            })
        }

        /// The `hits(repo_id, name)` CTE of a search: tags of matching
        /// repositories plus tags with a matching name.
        fn hits_cte(args: &SearchArgs) -> String {
            let (repos, tags) = match args {
                SearchArgs::Substring(_) => (SEARCH.repo_substring, SEARCH.tag_substring),
                SearchArgs::Prefix(..) => (SEARCH.repo_prefix, SEARCH.tag_prefix),
            };
            format!(
                "WITH hits AS (
                   SELECT t.repo_id, t.name FROM tags t WHERE t.repo_id IN ({repos})
                   UNION
                   SELECT t.repo_id, t.name FROM tags t
                   WHERE t.name IN (SELECT name FROM tag_names WHERE id IN ({tags})))"
            )
        }

        /// Pages over cheap keys first and computes the image columns (sizes
        /// are correlated subqueries) for the page's rows only.
        fn search_sql(args: &SearchArgs) -> String {
            format!(
                "{}, page AS (
                   SELECT h.repo_id, h.name FROM hits h JOIN repositories r ON r.id = h.repo_id
                   WHERE {VISIBLE} ORDER BY r.name, h.name LIMIT $2 OFFSET $3)
                 {}",
                hits_cte(args),
                page_rows()
            )
        }

        type DbQuery<'q> = sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>;

        fn bind_search<'q>(query: DbQuery<'q>, args: &SearchArgs) -> DbQuery<'q> {
            match args {
                SearchArgs::Substring(s) => query.bind(s.as_str()),
                SearchArgs::Prefix(low, high) => query.bind(low.as_str()).bind(high.as_str()),
            }
        }

        #[async_trait]
        impl CatalogStore for $ty {
            async fn list_images(&self, viewer: Viewer, offset: i64, limit: i64) -> Result<ImagePage, MetaError> {
                let rows = page_rows();
                let sql = dyn_sql!(
                    "WITH page AS (
                       SELECT t.repo_id, t.name FROM repositories r JOIN tags t ON t.repo_id = r.id
                       WHERE {VISIBLE} ORDER BY r.name, t.name LIMIT $2 OFFSET $3)
                     {rows}"
                );
                let rows = sqlx::query(sql)
                    .bind(viewer.user_id())
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *self.read_conn().await?)
                    .await?;
                // An index-only COUNT over the tags primary key (see the module docs).
                let count = dyn_sql!(
                    "SELECT COUNT(*) FROM tags t JOIN repositories r ON r.id = t.repo_id WHERE {VISIBLE}"
                );
                let total: i64 = sqlx::query_scalar(count).bind(viewer.user_id()).fetch_one(&mut *self.read_conn().await?).await?;
                Ok(ImagePage { images: rows.iter().map(image_row).collect::<Result<_, _>>()?, total })
            }

            async fn search_images(
                &self,
                query: &str,
                viewer: Viewer,
                offset: i64,
                limit: i64,
            ) -> Result<ImagePage, MetaError> {
                let args = SearchArgs::new(query, SEARCH.trigram_form);
                let sql = search_sql(&args);
                let rows = bind_search(
                    sqlx::query(dyn_sql!("{sql}")).bind(viewer.user_id()).bind(limit).bind(offset),
                    &args,
                )
                .fetch_all(&mut *self.read_conn().await?)
                .await?;
                let count = format!(
                    "{} SELECT COUNT(*) FROM hits h JOIN repositories r ON r.id = h.repo_id WHERE {VISIBLE}",
                    hits_cte(&args)
                );
                // `$2`/`$3` are unused by the count: bind them anyway so every
                // statement takes the same arguments.
                let total: i64 = bind_search(
                    sqlx::query(dyn_sql!("{count} AND $2 >= 0 AND $3 >= 0"))
                        .bind(viewer.user_id())
                        .bind(limit)
                        .bind(offset),
                    &args,
                )
                .fetch_one(&mut *self.read_conn().await?)
                .await?
                .try_get(0)?;
                Ok(ImagePage { images: rows.iter().map(image_row).collect::<Result<_, _>>()?, total })
            }

            async fn repo_images(&self, repo: &str) -> Result<Vec<ImageRow>, MetaError> {
                let sql = dyn_sql!(
                    "SELECT {IMAGE_COLUMNS} FROM repositories r
                     JOIN tags t ON t.repo_id = r.id
                     JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.manifest_digest
                     WHERE r.name = $1 ORDER BY t.name"
                );
                let rows = sqlx::query(sql).bind(repo).fetch_all(&mut *self.read_conn().await?).await?;
                rows.iter().map(image_row).collect()
            }

            async fn image(&self, repo: &str, tag: &str) -> Result<Option<ImageRow>, MetaError> {
                let sql = dyn_sql!(
                    "SELECT {IMAGE_COLUMNS} FROM repositories r
                     JOIN tags t ON t.repo_id = r.id
                     JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.manifest_digest
                     WHERE r.name = $1 AND t.name = $2"
                );
                let row = sqlx::query(sql).bind(repo).bind(tag).fetch_optional(&mut *self.read_conn().await?).await?;
                row.as_ref().map(image_row).transpose()
            }

            async fn repository(&self, repo: &str) -> Result<Option<RepositoryRecord>, MetaError> {
                let row = sqlx::query(
                    "SELECT r.name, r.project, r.description, r.visibility, p.visibility AS project_visibility,
                       COALESCE((SELECT u.username FROM users u WHERE u.id = p.created_by),
                                (SELECT u.username FROM project_members pm JOIN users u ON u.id = pm.user_id
                                 WHERE pm.project = r.project AND pm.role = 'owner' ORDER BY pm.user_id LIMIT 1))
                         AS owner,
                       r.created_at, COALESCE(r.updated_at, r.created_at) AS updated_at,
                       r.pull_count, r.push_count, r.last_pulled_at,
                       CAST(COALESCE((SELECT SUM(size) FROM manifests WHERE repo_id = r.id), 0)
                          + COALESCE((SELECT SUM(b.size) FROM blobs b WHERE b.digest IN
                              (SELECT child_digest FROM manifest_refs WHERE repo_id = r.id AND kind = 'blob')), 0)
                         AS BIGINT) AS size
                     FROM repositories r LEFT JOIN projects p ON p.name = r.project
                     WHERE r.name = $1",
                )
                .bind(repo)
                .fetch_optional(&mut *self.read_conn().await?)
                .await?;
                row.map(|row| {
                    Ok(RepositoryRecord {
                        name: row.try_get("name")?,
                        project: row.try_get("project")?,
                        description: row.try_get("description")?,
                        visibility: row.try_get("visibility")?,
                        project_visibility: row.try_get("project_visibility")?,
                        owner: row.try_get("owner")?,
                        created_at: row.try_get("created_at")?,
                        updated_at: row.try_get("updated_at")?,
                        size: row.try_get("size")?,
                        pull_count: row.try_get("pull_count")?,
                        push_count: row.try_get("push_count")?,
                        last_pulled_at: row.try_get("last_pulled_at")?,
                    })
                })
                .transpose()
            }

            async fn repo_visibility(&self, repo: &str) -> Result<Option<String>, MetaError> {
                let found: Option<Option<String>> =
                    sqlx::query_scalar("SELECT visibility FROM repositories WHERE name = $1")
                        .bind(repo)
                        .fetch_optional(&mut *self.read_conn().await?)
                        .await?;
                Ok(found.flatten())
            }

            async fn update_repository(
                &self,
                repo: &str,
                description: Option<&str>,
                visibility: Option<&str>,
                at: i64,
                events: &[$crate::EventDraft],
            ) -> Result<bool, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let done = sqlx::query(
                    "UPDATE repositories SET description = COALESCE($2, description),
                       visibility = COALESCE($3, visibility), updated_at = $4
                     WHERE name = $1",
                )
                .bind(repo)
                .bind(description)
                .bind(visibility)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                let updated = done.rows_affected() > 0;
                if updated {
                    super::events::insert_events(&mut tx, events).await?;
                }
                tx.commit().await?;
                Ok(updated)
            }

            async fn delete_repository(&self, repo: &str, events: &[$crate::EventDraft]) -> Result<bool, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                if let Ok(name) = repo.parse::<berth_core::RepoName>() {
                    let tags: Vec<String> = sqlx::query_scalar(
                        "SELECT t.name FROM tags t JOIN repositories r ON r.id = t.repo_id WHERE r.name = $1",
                    )
                    .bind(repo)
                    .fetch_all(&mut *tx)
                    .await?;
                    super::immutable::refuse_protected(&mut tx, &name, &tags).await?;
                }
                let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
                    .bind(repo)
                    .fetch_all(&mut *tx)
                    .await?;
                let blobs = super::collector::repo_blobs_to_queue(&mut tx, &ids).await?;
                // Manifests, their references, tags, blob links and uploads cascade.
                let done = sqlx::query("DELETE FROM repositories WHERE name = $1").bind(repo).execute(&mut *tx).await?;
                sqlx::query("DELETE FROM cached_tags WHERE repo = $1").bind(repo).execute(&mut *tx).await?;
                let deleted = done.rows_affected() > 0;
                if deleted {
                    // Its blobs may be garbage now (queue rows are locked last).
                    super::collector::enqueue(&mut tx, &blobs).await?;
                    super::events::insert_events(&mut tx, events).await?;
                }
                tx.commit().await?;
                Ok(deleted)
            }

            async fn record_pulls(&self, pulls: &[PullTally]) -> Result<(), MetaError> {
                if pulls.is_empty() {
                    return Ok(());
                }
                // Rows are locked in one global order, tags before repositories and
                // each sorted, the order pushes lock them in: concurrent flushes on
                // other nodes and concurrent pushes (PostgreSQL) can then wait on each
                // other but never deadlock.
                let mut tagged: Vec<&PullTally> = pulls.iter().filter(|p| p.tag.is_some()).collect();
                tagged.sort_by(|a, b| (&a.repo, &a.tag).cmp(&(&b.repo, &b.tag)));
                let mut per_repo: std::collections::BTreeMap<&str, (i64, i64)> = std::collections::BTreeMap::new();
                for pull in pulls {
                    let entry = per_repo.entry(pull.repo.as_str()).or_insert((0, 0));
                    entry.0 += pull.count;
                    entry.1 = entry.1.max(pull.at);
                }
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                for pull in tagged {
                    sqlx::query(
                        "UPDATE tags SET pull_count = pull_count + $2,
                           last_pulled_at = CASE WHEN last_pulled_at IS NULL OR last_pulled_at < $3
                                                 THEN $3 ELSE last_pulled_at END
                         WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND name = $4",
                    )
                    .bind(&pull.repo)
                    .bind(pull.count)
                    .bind(pull.at)
                    .bind(&pull.tag)
                    .execute(&mut *tx)
                    .await?;
                }
                for (repo, (count, at)) in per_repo {
                    sqlx::query(
                        "UPDATE repositories SET pull_count = pull_count + $2,
                           last_pulled_at = CASE WHEN last_pulled_at IS NULL OR last_pulled_at < $3
                                                 THEN $3 ELSE last_pulled_at END
                         WHERE name = $1",
                    )
                    .bind(repo)
                    .bind(count)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn schema_versions(&self) -> Result<(i64, i64), MetaError> {
                let applied: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = $1")
                        .bind(true)
                        .fetch_one(&mut *self.read_conn().await?)
                        .await?;
                let known = $migrations.iter().map(|(version, _, _)| *version).max().unwrap_or(0);
                Ok((applied.unwrap_or(0), known))
            }

            async fn index_search_backlog(&self) -> Result<u64, MetaError> {
                let Some(backlog) = &SEARCH.backlog else {
                    return Ok(0);
                };
                let waiting: i64 = sqlx::query_scalar(backlog.waiting).fetch_one(&mut *self.read_conn().await?).await?;
                if waiting == 0 {
                    return Ok(0);
                }
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                for sql in backlog.index {
                    sqlx::query(*sql).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(waiting.unsigned_abs())
            }

            async fn explain_search(&self, query: &str) -> Result<Vec<String>, MetaError> {
                let args = SearchArgs::new(query, SEARCH.trigram_form);
                let sql = format!("{} {}", SEARCH.explain, search_sql(&args));
                let mut conn = self.read_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                for setup in SEARCH.explain_setup {
                    sqlx::query(dyn_sql!("{setup}")).execute(&mut *tx).await?;
                }
                let rows = bind_search(sqlx::query(dyn_sql!("{sql}")).bind(Some(1_i64)).bind(10_i64).bind(0_i64), &args)
                    .fetch_all(&mut *tx)
                    .await?;
                rows.iter().map(|row| Ok(row.try_get::<String, _>(SEARCH.plan_column)?)).collect()
            }
        }
    };
}
pub(crate) use catalog_impl;
