//! Copying metadata from an embedded SQLite install into PostgreSQL
//! (`berth meta-migrate`), for moving a single node to the scaled-out setup.
//!
//! Tables are copied in keyset-paginated batches, each batch one transaction
//! with `ON CONFLICT DO NOTHING` (tags: upsert), so an interrupted copy can be
//! re-run and picks up where it stopped. Repository ids differ between the two
//! databases and are mapped by name. Upload sessions and leases are not copied:
//! clients restart interrupted uploads.

use std::collections::HashMap;

use sqlx::Row;

use crate::{MetaError, PostgresMeta, SqliteMeta};

/// Rows copied per batch (one transaction each).
const BATCH: i64 = 1000;

/// What was copied, table by table.
#[derive(Debug, Default, Clone)]
pub struct TransferReport {
    pub tables: Vec<(&'static str, u64)>,
}

/// Copies every repository, blob, visibility row, manifest, reference and tag.
/// `progress(table, rows_so_far)` is called after every batch.
pub async fn sqlite_to_postgres(
    src: &SqliteMeta,
    dst: &PostgresMeta,
    mut progress: impl FnMut(&'static str, u64),
) -> Result<TransferReport, MetaError> {
    let (mut from, to) = (src.read_conn().await?, dst.pool());
    let mut report = TransferReport::default();

    // repositories: by name; then map ids.
    let mut last = String::new();
    let mut n = 0u64;
    loop {
        let rows = sqlx::query(
            "SELECT name, project, created_at, description, visibility, updated_at, pull_count, push_count,
                    last_pulled_at FROM repositories WHERE name > ? ORDER BY name LIMIT ?",
        )
        .bind(&last)
        .bind(BATCH)
        .fetch_all(&mut *from)
        .await?;
        if rows.is_empty() {
            break;
        }
        let mut tx = to.begin().await?;
        for row in &rows {
            sqlx::query(
                "INSERT INTO repositories (name, project, created_at, description, visibility, updated_at,
                                           pull_count, push_count, last_pulled_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (name) DO UPDATE SET description = excluded.description,
                   visibility = excluded.visibility, updated_at = excluded.updated_at,
                   pull_count = excluded.pull_count, push_count = excluded.push_count,
                   last_pulled_at = excluded.last_pulled_at",
            )
            .bind(row.try_get::<String, _>("name")?)
            .bind(row.try_get::<String, _>("project")?)
            .bind(row.try_get::<i64, _>("created_at")?)
            .bind(row.try_get::<String, _>("description")?)
            .bind(row.try_get::<Option<String>, _>("visibility")?)
            .bind(row.try_get::<Option<i64>, _>("updated_at")?)
            .bind(row.try_get::<i64, _>("pull_count")?)
            .bind(row.try_get::<i64, _>("push_count")?)
            .bind(row.try_get::<Option<i64>, _>("last_pulled_at")?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        last = rows.last().expect("non-empty").try_get("name")?;
        n += rows.len() as u64;
        progress("repositories", n);
    }
    report.tables.push(("repositories", n));
    let ids = repo_id_map(src, dst).await?;

    // blobs: by digest.
    let mut last = String::new();
    let mut n = 0u64;
    loop {
        let rows = sqlx::query(
            "SELECT digest, size, created_at, last_accessed FROM blobs WHERE digest > ? ORDER BY digest LIMIT ?",
        )
        .bind(&last)
        .bind(BATCH)
        .fetch_all(&mut *from)
        .await?;
        if rows.is_empty() {
            break;
        }
        let mut tx = to.begin().await?;
        for row in &rows {
            sqlx::query(
                "INSERT INTO blobs (digest, size, created_at, last_accessed) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (digest) DO NOTHING",
            )
            .bind(row.try_get::<String, _>("digest")?)
            .bind(row.try_get::<i64, _>("size")?)
            .bind(row.try_get::<i64, _>("created_at")?)
            .bind(row.try_get::<Option<i64>, _>("last_accessed")?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        last = rows.last().expect("non-empty").try_get("digest")?;
        n += rows.len() as u64;
        progress("blobs", n);
    }
    report.tables.push(("blobs", n));

    // Per-repository tables, keyed by (repo id, …) in the source.
    for (&src_id, &dst_id) in &ids {
        n = copy_repo_rows(&mut from, to, src_id, dst_id).await?;
        progress("repository rows", n);
    }
    report.tables.push(("repository rows", count_repo_rows(&mut from).await?));

    // Access tables keep their ids (tokens, members and audit entries refer to users by id).
    for table in ACCESS_TABLES {
        let n = copy_table(&mut from, to, table).await?;
        progress(table.name, n);
        report.tables.push((table.name, n));
    }
    let (last_id, hash): (i64, String) =
        sqlx::query_as("SELECT last_id, hash FROM audit_head WHERE one = 1").fetch_one(&mut *from).await?;
    sqlx::query("UPDATE audit_head SET last_id = $1, hash = $2 WHERE one = 1 AND last_id <= $1")
        .bind(last_id)
        .bind(hash)
        .execute(to)
        .await?;
    // Identity columns were given explicit values: move their sequences past them.
    for table in [
        "users",
        "tokens",
        "audit_log",
        "events",
        "webhooks",
        "webhook_deliveries",
        "immutable_tag_rules",
        "retention_rules",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT MAX(id) FROM {table}), 1))"
        )))
        .execute(to)
        .await?;
    }
    Ok(report)
}

/// A column's type in both schemas.
#[derive(Clone, Copy)]
enum Col {
    Int,
    Text,
}

/// An access table copied row for row, keyed by `key` for paging.
struct Table {
    name: &'static str,
    key: &'static str,
    columns: &'static [(&'static str, Col)],
}

/// Tables copied row for row: access control and the pull-through cache's own records.
const ACCESS_TABLES: &[Table] = {
    use Col::{Int, Text};
    &[
        Table {
            name: "users",
            key: "id",
            columns: &[
                ("id", Int),
                ("username", Text),
                ("email", Text),
                ("password_hash", Text),
                ("role", Text),
                ("is_active", Int),
                ("must_change_password", Int),
                ("totp_secret", Text),
                ("totp_enabled", Int),
                ("recovery_codes", Text),
                ("created_at", Int),
                ("updated_at", Int),
                ("last_login", Int),
            ],
        },
        Table {
            name: "projects",
            key: "name",
            columns: &[
                ("name", Text),
                ("visibility", Text),
                ("description", Text),
                ("created_by", Int),
                ("created_at", Int),
            ],
        },
        Table {
            name: "project_members",
            key: "project || '/' || user_id",
            columns: &[("project", Text), ("user_id", Int), ("role", Text)],
        },
        Table {
            name: "tokens",
            key: "id",
            columns: &[
                ("id", Int),
                ("user_id", Int),
                ("name", Text),
                ("lookup", Text),
                ("hash", Text),
                ("permissions", Text),
                ("repositories", Text),
                ("created_at", Int),
                ("expires_at", Int),
                ("last_used", Int),
                ("revoked_at", Int),
            ],
        },
        Table {
            name: "sessions",
            key: "id",
            columns: &[
                ("id", Text),
                ("user_id", Int),
                ("ip", Text),
                ("csrf_hash", Text),
                ("created_at", Int),
                ("last_seen", Int),
                ("expires_at", Int),
                ("revoked_at", Int),
            ],
        },
        Table {
            name: "audit_log",
            key: "id",
            columns: &[
                ("id", Int),
                ("timestamp", Text),
                ("at", Int),
                ("level", Text),
                ("event", Text),
                ("action", Text),
                ("user_id", Int),
                ("username", Text),
                ("ip_address", Text),
                ("resource", Text),
                ("status", Text),
                ("detail", Text),
                ("prev_hash", Text),
                ("hash", Text),
            ],
        },
        Table { name: "settings", key: "name", columns: &[("name", Text), ("value", Text), ("updated_at", Int)] },
        Table {
            name: "upstreams",
            key: "name",
            columns: &[
                ("name", Text),
                ("url", Text),
                ("priority", Int),
                ("enabled", Int),
                ("namespace", Text),
                ("mirror", Int),
                ("library_prefix", Int),
                ("username", Text),
                ("password_sealed", Text),
                ("timeout_secs", Int),
                ("max_concurrent", Int),
                ("max_size", Int),
                ("created_at", Int),
                ("updated_at", Int),
            ],
        },
        Table {
            name: "cache_entries",
            key: "digest",
            columns: &[
                ("digest", Text),
                ("upstream", Text),
                ("size", Int),
                ("created_at", Int),
                ("last_access", Int),
                ("access_count", Int),
                ("pinned", Int),
            ],
        },
        Table {
            name: "cached_tags",
            key: "repo || ':' || tag",
            columns: &[("repo", Text), ("tag", Text), ("upstream", Text), ("digest", Text), ("validated_at", Int)],
        },
        Table {
            name: "immutable_tag_rules",
            key: "id",
            columns: &[("id", Int), ("project", Text), ("repository", Text), ("pattern", Text), ("created_at", Int)],
        },
        Table {
            name: "retention_policies",
            key: "project",
            columns: &[("project", Text), ("enabled", Int), ("untagged_hours", Int), ("updated_at", Int)],
        },
        Table {
            name: "retention_rules",
            key: "id",
            columns: &[
                ("id", Int),
                ("project", Text),
                ("repository", Text),
                ("keep_last", Int),
                ("keep_tags", Text),
                ("keep_semver", Text),
                ("keep_pulled_within_days", Int),
                ("created_at", Int),
            ],
        },
        // Usage is not copied: the destination's triggers count every row as it arrives,
        // and the limits come after the data (ACCESS_TABLES run after the registry rows).
        Table {
            name: "project_quotas",
            key: "project",
            columns: &[
                ("project", Text),
                ("storage_bytes", Int),
                ("storage_soft", Int),
                ("repositories", Int),
                ("tags", Int),
                ("soft_warned_at", Int),
                ("updated_at", Int),
            ],
        },
        Table {
            name: "events",
            key: "id",
            columns: &[
                ("id", Int),
                ("type", Text),
                ("at_ms", Int),
                ("actor", Text),
                ("ip", Text),
                ("repository", Text),
                ("digest", Text),
                ("tag", Text),
                ("media_type", Text),
                ("size", Int),
                ("detail", Text),
                ("pending", Int),
            ],
        },
        Table {
            name: "webhooks",
            key: "id",
            columns: &[
                ("id", Int),
                ("url", Text),
                ("events", Text),
                ("repository", Text),
                ("secret_sealed", Text),
                ("format", Text),
                ("enabled", Int),
                ("created_by", Text),
                ("created_at", Int),
                ("updated_at", Int),
            ],
        },
        Table {
            name: "webhook_deliveries",
            key: "id",
            columns: &[
                ("id", Int),
                ("webhook_id", Int),
                ("event_id", Int),
                ("delivery_key", Text),
                ("state", Text),
                ("attempts", Int),
                ("next_attempt_ms", Int),
                ("created_at_ms", Int),
                ("finished_at_ms", Int),
                ("last_status", Int),
                ("last_error", Text),
                ("last_latency_ms", Int),
            ],
        },
        Table {
            name: "webhook_attempts",
            key: "delivery_id * 1000000 + attempt",
            columns: &[
                ("delivery_id", Int),
                ("attempt", Int),
                ("at_ms", Int),
                ("status", Int),
                ("latency_ms", Int),
                ("error", Text),
            ],
        },
    ]
};

/// Copies `table` in key order, in batches, skipping rows already present.
async fn copy_table(from: &mut sqlx::SqliteConnection, to: &sqlx::PgPool, table: &Table) -> Result<u64, MetaError> {
    let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let select = format!(
        "SELECT {cols}, {key} AS page_key FROM {t} ORDER BY page_key LIMIT ? OFFSET ?",
        cols = names.join(", "),
        key = table.key,
        t = table.name
    );
    let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
    let insert = format!(
        "INSERT INTO {t} ({cols}) VALUES ({values}) ON CONFLICT DO NOTHING",
        t = table.name,
        cols = names.join(", "),
        values = placeholders.join(", ")
    );
    let mut n = 0u64;
    loop {
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(select.clone())).bind(BATCH).bind(n as i64).fetch_all(&mut *from).await?;
        if rows.is_empty() {
            break;
        }
        let mut tx = to.begin().await?;
        for row in &rows {
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(insert.clone()));
            for (name, col) in table.columns {
                insert = match col {
                    Col::Int => insert.bind(row.try_get::<Option<i64>, _>(*name)?),
                    Col::Text => insert.bind(row.try_get::<Option<String>, _>(*name)?),
                };
            }
            insert.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        n += rows.len() as u64;
    }
    Ok(n)
}

async fn repo_id_map(src: &SqliteMeta, dst: &PostgresMeta) -> Result<HashMap<i64, i64>, MetaError> {
    let src_rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, name FROM repositories").fetch_all(&mut *src.read_conn().await?).await?;
    let dst_rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, name FROM repositories").fetch_all(dst.pool()).await?;
    let by_name: HashMap<String, i64> = dst_rows.into_iter().map(|(id, name)| (name, id)).collect();
    Ok(src_rows.into_iter().filter_map(|(id, name)| by_name.get(&name).map(|&d| (id, d))).collect())
}

async fn count_repo_rows(from: &mut sqlx::SqliteConnection) -> Result<u64, MetaError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM repository_blobs) + (SELECT COUNT(*) FROM manifests)
              + (SELECT COUNT(*) FROM manifest_refs) + (SELECT COUNT(*) FROM tags)",
    )
    .fetch_one(&mut *from)
    .await?;
    Ok(n as u64)
}

/// Copies one repository's visibility rows, manifests, references and tags in one transaction.
async fn copy_repo_rows(
    from: &mut sqlx::SqliteConnection,
    to: &sqlx::PgPool,
    src: i64,
    dst: i64,
) -> Result<u64, MetaError> {
    let mut tx = to.begin().await?;
    let mut n = 0u64;
    let rows = sqlx::query("SELECT digest, created_at FROM repository_blobs WHERE repo_id = ?")
        .bind(src)
        .fetch_all(&mut *from)
        .await?;
    for row in &rows {
        sqlx::query(
            "INSERT INTO repository_blobs (repo_id, digest, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(dst)
        .bind(row.try_get::<String, _>("digest")?)
        .bind(row.try_get::<i64, _>("created_at")?)
        .execute(&mut *tx)
        .await?;
    }
    n += rows.len() as u64;
    let rows = sqlx::query(
        "SELECT digest, media_type, artifact_type, subject_digest, annotations, size, payload, created_at
         FROM manifests WHERE repo_id = ?",
    )
    .bind(src)
    .fetch_all(&mut *from)
    .await?;
    for row in &rows {
        sqlx::query(
            "INSERT INTO manifests
               (repo_id, digest, media_type, artifact_type, subject_digest, annotations, size, payload, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(dst)
        .bind(row.try_get::<String, _>("digest")?)
        .bind(row.try_get::<String, _>("media_type")?)
        .bind(row.try_get::<Option<String>, _>("artifact_type")?)
        .bind(row.try_get::<Option<String>, _>("subject_digest")?)
        .bind(row.try_get::<Option<String>, _>("annotations")?)
        .bind(row.try_get::<i64, _>("size")?)
        .bind(row.try_get::<Vec<u8>, _>("payload")?)
        .bind(row.try_get::<i64, _>("created_at")?)
        .execute(&mut *tx)
        .await?;
    }
    n += rows.len() as u64;
    let rows = sqlx::query("SELECT manifest_digest, child_digest, kind FROM manifest_refs WHERE repo_id = ?")
        .bind(src)
        .fetch_all(&mut *from)
        .await?;
    for row in &rows {
        sqlx::query(
            "INSERT INTO manifest_refs (repo_id, manifest_digest, child_digest, kind) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .bind(dst)
        .bind(row.try_get::<String, _>("manifest_digest")?)
        .bind(row.try_get::<String, _>("child_digest")?)
        .bind(row.try_get::<String, _>("kind")?)
        .execute(&mut *tx)
        .await?;
    }
    n += rows.len() as u64;
    let rows = sqlx::query(
        "SELECT name, manifest_digest, updated_at, pull_count, push_count, last_pulled_at FROM tags WHERE repo_id = ?",
    )
    .bind(src)
    .fetch_all(&mut *from)
    .await?;
    for row in &rows {
        sqlx::query(
            "INSERT INTO tags (repo_id, name, manifest_digest, updated_at, pull_count, push_count, last_pulled_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (repo_id, name) DO UPDATE SET manifest_digest = excluded.manifest_digest,
                                                       updated_at = excluded.updated_at,
                                                       pull_count = excluded.pull_count,
                                                       push_count = excluded.push_count,
                                                       last_pulled_at = excluded.last_pulled_at",
        )
        .bind(dst)
        .bind(row.try_get::<String, _>("name")?)
        .bind(row.try_get::<String, _>("manifest_digest")?)
        .bind(row.try_get::<i64, _>("updated_at")?)
        .bind(row.try_get::<i64, _>("pull_count")?)
        .bind(row.try_get::<i64, _>("push_count")?)
        .bind(row.try_get::<Option<i64>, _>("last_pulled_at")?)
        .execute(&mut *tx)
        .await?;
    }
    n += rows.len() as u64;
    tx.commit().await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use berth_core::{Digest, RepoName, Tag};

    use crate::{BlobIndex, ManifestStore, NewManifest, RepoStore, SqliteMeta};

    #[tokio::test]
    async fn copies_sqlite_into_postgres_and_can_rerun() {
        let Some((dst, _)) = crate::postgres::test_database().await else {
            eprintln!("BERTH_TEST_POSTGRES_URL not set; skipping the transfer test");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let src = SqliteMeta::open(&dir.path().join("berth.db")).await.unwrap();
        let repo: RepoName = "team/app".parse().unwrap();
        let config = Digest::sha256(b"config");
        src.link_blob(&repo, &config, 6, &[]).await.unwrap();
        let m = NewManifest {
            digest: Digest::sha256(b"m"),
            media_type: berth_core::media_type::OCI_MANIFEST.into(),
            artifact_type: None,
            subject: None,
            annotations_json: None,
            payload: b"m".to_vec(),
            blob_refs: vec![config.clone()],
            manifest_refs: vec![],
            require_references: true,
            events: Vec::new(),
        };
        let tag: Tag = "v1".parse().unwrap();
        src.put_manifest(&repo, m.clone(), std::slice::from_ref(&tag)).await.unwrap();
        for _ in 0..2 {
            super::sqlite_to_postgres(&src, &dst, |_, _| {}).await.unwrap();
        }
        assert!(dst.repo_exists(&repo).await.unwrap());
        assert_eq!(dst.blob_in_repo(&repo, &config).await.unwrap(), Some(6));
        let got = dst.manifest_by_tag(&repo, &tag, true).await.unwrap().unwrap();
        assert_eq!((got.digest, got.payload), (m.digest, Some(b"m".to_vec())));

        // Repository details, counters and the tag search vocabulary come along.
        use crate::{CatalogStore, PullTally, Viewer};
        src.update_repository(repo.as_str(), Some("desc"), Some("public"), 9, &[]).await.unwrap();
        let pull = PullTally { repo: repo.as_str().into(), tag: Some("v1".into()), count: 4, at: 7 };
        src.record_pulls(&[pull]).await.unwrap();
        super::sqlite_to_postgres(&src, &dst, |_, _| {}).await.unwrap();
        let (a, b) = (src.repository(repo.as_str()).await.unwrap(), dst.repository(repo.as_str()).await.unwrap());
        assert_eq!(a, b);
        assert_eq!(b.unwrap().pull_count, 4);
        let image = dst.image(repo.as_str(), "v1").await.unwrap().unwrap();
        assert_eq!((image.pull_count, image.push_count, image.last_pulled_at), (4, 1, Some(7)));
        let hits = dst.search_images("v1", Viewer::All, 0, 10).await.unwrap();
        assert_eq!(hits.total, 1);
    }

    #[tokio::test]
    async fn copies_users_tokens_and_the_audit_chain() {
        use crate::{AccessStore, AuditLog, RetentionStore};
        let Some((dst, _)) = crate::postgres::test_database().await else {
            eprintln!("BERTH_TEST_POSTGRES_URL not set; skipping the transfer test");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let src = SqliteMeta::open(&dir.path().join("berth.db")).await.unwrap();
        let draft = |event: &str| crate::AuditDraft {
            level: "info",
            event: event.into(),
            action: "test".into(),
            user_id: None,
            username: "t".into(),
            ip_address: String::new(),
            resource: String::new(),
            status: "success",
            detail: serde_json::json!({}),
        };
        let user = |name: &str| crate::NewUser {
            username: name.into(),
            email: None,
            password_hash: "h".into(),
            role: "admin".into(),
            must_change_password: false,
        };
        let alice = src.create_user(&user("alice"), &draft("user_created")).await.unwrap();
        src.ensure_project("team", Some(alice.id), &draft("project_created")).await.unwrap();
        let retain = crate::RetentionRule { repository: "team/*".into(), keep_last: Some(5), ..Default::default() };
        let policy = crate::RetentionPolicy {
            project: "team".into(),
            enabled: true,
            untagged_hours: Some(48),
            rules: vec![retain],
            updated_at: 0,
        };
        let policy = src.replace_retention_policy(&policy, None).await.unwrap();
        for _ in 0..2 {
            super::sqlite_to_postgres(&src, &dst, |_, _| {}).await.unwrap();
        }
        assert_eq!(dst.user_by_name("alice").await.unwrap().unwrap().id, alice.id);
        assert_eq!(dst.retention_policy("team").await.unwrap(), Some(policy));
        assert_eq!(
            dst.project_access("team", Some(alice.id)).await.unwrap(),
            Some(("private".into(), Some("owner".into())))
        );
        // New rows continue after the copied ids, and the chain continues from the copied head.
        let bob = dst.create_user(&user("bob"), &draft("user_created")).await.unwrap();
        assert!(bob.id > alice.id);
        let (src_head, _) = src.audit_head().await.unwrap();
        let entries = dst.audit_after(0, &crate::AuditFilter::default(), 100).await.unwrap();
        assert_eq!(entries.len() as i64, src_head + 1);
        assert_eq!(entries.last().unwrap().prev_hash, entries[entries.len() - 2].hash);
    }
}
