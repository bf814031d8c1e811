//! One implementation of [`ProxyStore`](crate::ProxyStore) for both SQL
//! dialects, written with portable SQL and `$N` placeholders like the access
//! tables (see `access_sql.rs`). Booleans are stored as 0/1 integers.

/// Expands the proxy-cache implementation for one backend type.
macro_rules! proxy_impl {
    ($ty:ty, $db:ty) => {
        use async_trait::async_trait;
        use sqlx::Row;

        use $crate::{CacheEntry, CacheTotals, CacheTouch, CachedTag, MetaError, ProxyStore, UpstreamRecord};

        type DbRow = <$db as sqlx::Database>::Row;

        const UPSTREAM_COLUMNS: &str = "name, url, priority, enabled, namespace, mirror, library_prefix, username, \
             password_sealed, timeout_secs, max_concurrent, max_size, created_at, updated_at";
        const ENTRY_COLUMNS: &str = "digest, upstream, size, created_at, last_access, access_count, pinned";
        // The repositories of one project, for the statements that empty them.
        const IN_PROJECT: &str = "(SELECT id FROM repositories WHERE project = $1)";

        fn upstream_row(row: &DbRow) -> Result<UpstreamRecord, MetaError> {
            Ok(UpstreamRecord {
                name: row.try_get("name")?,
                url: row.try_get("url")?,
                priority: row.try_get("priority")?,
                enabled: row.try_get::<i64, _>("enabled")? != 0,
                namespace: row.try_get("namespace")?,
                mirror: row.try_get::<i64, _>("mirror")? != 0,
                library_prefix: row.try_get::<i64, _>("library_prefix")? != 0,
                username: row.try_get("username")?,
                password_sealed: row.try_get("password_sealed")?,
                timeout_secs: row.try_get("timeout_secs")?,
                max_concurrent: row.try_get("max_concurrent")?,
                max_size: row.try_get("max_size")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        }

        fn entry_row(row: &DbRow) -> Result<CacheEntry, MetaError> {
            Ok(CacheEntry {
                digest: row.try_get("digest")?,
                upstream: row.try_get("upstream")?,
                size: row.try_get("size")?,
                created_at: row.try_get("created_at")?,
                last_access: row.try_get("last_access")?,
                access_count: row.try_get("access_count")?,
                pinned: row.try_get::<i64, _>("pinned")? != 0,
            })
        }

        fn entries(rows: Vec<DbRow>) -> Result<Vec<CacheEntry>, MetaError> {
            rows.iter().map(entry_row).collect()
        }

        #[async_trait]
        impl ProxyStore for $ty {
            async fn list_upstreams(&self) -> Result<Vec<UpstreamRecord>, MetaError> {
                let sql = $crate::access_sql::dyn_sql!("SELECT {UPSTREAM_COLUMNS} FROM upstreams ORDER BY priority, name");
                let rows = sqlx::query(sql).fetch_all(&mut *self.read_conn().await?).await?;
                rows.iter().map(upstream_row).collect()
            }

            async fn insert_upstream(&self, u: &UpstreamRecord) -> Result<bool, MetaError> {
                let sql = $crate::access_sql::dyn_sql!(
                    "INSERT INTO upstreams ({UPSTREAM_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                     ON CONFLICT(name) DO NOTHING"
                );
                let done = bind_upstream(sqlx::query(sql), u).execute(&mut *self.write_conn().await?).await?;
                Ok(done.rows_affected() > 0)
            }

            async fn update_upstream(&self, u: &UpstreamRecord) -> Result<bool, MetaError> {
                let sql = "UPDATE upstreams SET url = $2, priority = $3, enabled = $4, namespace = $5, mirror = $6,
                             library_prefix = $7, username = $8, password_sealed = $9, timeout_secs = $10,
                             max_concurrent = $11, max_size = $12, created_at = $13, updated_at = $14
                           WHERE name = $1";
                let done = bind_upstream(sqlx::query(sql), u).execute(&mut *self.write_conn().await?).await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_upstream(&self, name: &str) -> Result<bool, MetaError> {
                let done =
                    sqlx::query("DELETE FROM upstreams WHERE name = $1").bind(name).execute(&mut *self.write_conn().await?).await?;
                Ok(done.rows_affected() > 0)
            }

            async fn record_cache_entry(
                &self,
                digest: &str,
                upstream: &str,
                size: i64,
                now: i64,
            ) -> Result<(), MetaError> {
                sqlx::query(
                    "INSERT INTO cache_entries (digest, upstream, size, created_at, last_access, access_count, pinned)
                     VALUES ($1, $2, $3, $4, $4, 1, 0)
                     ON CONFLICT(digest) DO UPDATE SET last_access = excluded.last_access,
                                                       access_count = cache_entries.access_count + 1",
                )
                .bind(digest)
                .bind(upstream)
                .bind(size)
                .bind(now)
                .execute(&mut *self.write_conn().await?)
                .await?;
                Ok(())
            }

            async fn touch_cache_entries(&self, touches: &[CacheTouch]) -> Result<(), MetaError> {
                if touches.is_empty() {
                    return Ok(());
                }
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                for (digest, at, hits) in touches {
                    sqlx::query(
                        "UPDATE cache_entries
                         SET last_access = CASE WHEN last_access < $2 THEN $2 ELSE last_access END,
                             access_count = access_count + $3
                         WHERE digest = $1",
                    )
                    .bind(digest)
                    .bind(at)
                    .bind(hits)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn cache_entry(&self, digest: &str) -> Result<Option<CacheEntry>, MetaError> {
                let sql = $crate::access_sql::dyn_sql!("SELECT {ENTRY_COLUMNS} FROM cache_entries WHERE digest = $1");
                let row = sqlx::query(sql).bind(digest).fetch_optional(&mut *self.read_conn().await?).await?;
                row.as_ref().map(entry_row).transpose()
            }

            async fn list_cache_entries(&self, limit: i64, offset: i64) -> Result<Vec<CacheEntry>, MetaError> {
                let sql = $crate::access_sql::dyn_sql!(
                    "SELECT {ENTRY_COLUMNS} FROM cache_entries ORDER BY last_access DESC, digest LIMIT $1 OFFSET $2"
                );
                entries(sqlx::query(sql).bind(limit).bind(offset).fetch_all(&mut *self.read_conn().await?).await?)
            }

            async fn cache_totals(&self, upstream: Option<&str>) -> Result<CacheTotals, MetaError> {
                let row = sqlx::query(
                    "SELECT COUNT(*) AS entries, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes FROM cache_entries
                     WHERE ($1 IS NULL OR upstream = $1)",
                )
                .bind(upstream)
                .fetch_one(&mut *self.read_conn().await?)
                .await?;
                // SUM is NUMERIC on PostgreSQL, hence the cast.
                Ok(CacheTotals { entries: row.try_get("entries")?, bytes: row.try_get("bytes")? })
            }

            async fn eviction_candidates(
                &self,
                upstream: Option<&str>,
                limit: i64,
            ) -> Result<Vec<CacheEntry>, MetaError> {
                let sql = $crate::access_sql::dyn_sql!(
                    "SELECT {ENTRY_COLUMNS} FROM cache_entries WHERE pinned = 0 AND ($1 IS NULL OR upstream = $1)
                     ORDER BY last_access, digest LIMIT $2"
                );
                entries(sqlx::query(sql).bind(upstream).bind(limit).fetch_all(&mut *self.read_conn().await?).await?)
            }

            async fn idle_cache_entries(&self, before: i64, limit: i64) -> Result<Vec<CacheEntry>, MetaError> {
                let sql = $crate::access_sql::dyn_sql!(
                    "SELECT {ENTRY_COLUMNS} FROM cache_entries WHERE pinned = 0 AND last_access < $1
                     ORDER BY last_access, digest LIMIT $2"
                );
                entries(sqlx::query(sql).bind(before).bind(limit).fetch_all(&mut *self.read_conn().await?).await?)
            }

            async fn delete_cache_entry(&self, digest: &str) -> Result<bool, MetaError> {
                let done = sqlx::query("DELETE FROM cache_entries WHERE digest = $1")
                    .bind(digest)
                    .execute(&mut *self.write_conn().await?)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_cache_pin(&self, digest: &str, pinned: bool) -> Result<bool, MetaError> {
                let done = sqlx::query("UPDATE cache_entries SET pinned = $2 WHERE digest = $1")
                    .bind(digest)
                    .bind(i64::from(pinned))
                    .execute(&mut *self.write_conn().await?)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn cached_tag(&self, repo: &str, tag: &str) -> Result<Option<CachedTag>, MetaError> {
                let row = sqlx::query(
                    "SELECT upstream, digest, validated_at FROM cached_tags WHERE repo = $1 AND tag = $2",
                )
                .bind(repo)
                .bind(tag)
                .fetch_optional(&mut *self.read_conn().await?)
                .await?;
                row.map(|r| {
                    Ok(CachedTag {
                        upstream: r.try_get("upstream")?,
                        digest: r.try_get("digest")?,
                        validated_at: r.try_get("validated_at")?,
                    })
                })
                .transpose()
            }

            async fn put_cached_tag(&self, repo: &str, tag: &str, c: &CachedTag) -> Result<(), MetaError> {
                sqlx::query(
                    "INSERT INTO cached_tags (repo, tag, upstream, digest, validated_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT(repo, tag) DO UPDATE SET upstream = excluded.upstream, digest = excluded.digest,
                                                          validated_at = excluded.validated_at",
                )
                .bind(repo)
                .bind(tag)
                .bind(&c.upstream)
                .bind(&c.digest)
                .bind(c.validated_at)
                .execute(&mut *self.write_conn().await?)
                .await?;
                Ok(())
            }

            async fn unlink_blob_in_project(&self, project: &str, digest: &str) -> Result<u64, MetaError> {
                let sql = $crate::access_sql::dyn_sql!(
                    "DELETE FROM repository_blobs WHERE digest = $2 AND repo_id IN {IN_PROJECT}"
                );
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let done = sqlx::query(sql).bind(project).bind(digest).execute(&mut *tx).await?;
                super::collector::enqueue(&mut tx, &[($crate::GcKind::Blob, 0, digest.to_owned())]).await?;
                tx.commit().await?;
                Ok(done.rows_affected())
            }

            async fn delete_project_repositories(&self, project: &str) -> Result<u64, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE project = $1")
                    .bind(project)
                    .fetch_all(&mut *tx)
                    .await?;
                let blobs = super::collector::repo_blobs_to_queue(&mut tx, &ids).await?;
                sqlx::query("DELETE FROM cached_tags WHERE repo IN (SELECT name FROM repositories WHERE project = $1)")
                    .bind(project)
                    .execute(&mut *tx)
                    .await?;
                for table in ["tags", "manifest_refs", "manifests", "repository_blobs", "uploads"] {
                    let sql = $crate::access_sql::dyn_sql!("DELETE FROM {table} WHERE repo_id IN {IN_PROJECT}");
                    sqlx::query(sql).bind(project).execute(&mut *tx).await?;
                }
                let done =
                    sqlx::query("DELETE FROM repositories WHERE project = $1").bind(project).execute(&mut *tx).await?;
                super::collector::enqueue(&mut tx, &blobs).await?;
                tx.commit().await?;
                Ok(done.rows_affected())
            }
        }

        fn bind_upstream<'q>(
            q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
            u: &'q UpstreamRecord,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
            q.bind(&u.name)
                .bind(&u.url)
                .bind(u.priority)
                .bind(i64::from(u.enabled))
                .bind(&u.namespace)
                .bind(i64::from(u.mirror))
                .bind(i64::from(u.library_prefix))
                .bind(&u.username)
                .bind(&u.password_sealed)
                .bind(u.timeout_secs)
                .bind(u.max_concurrent)
                .bind(u.max_size)
                .bind(u.created_at)
                .bind(u.updated_at)
        }
    };
}
pub(crate) use proxy_impl;
