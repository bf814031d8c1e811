//! The PostgreSQL metadata backend, for several berth nodes sharing one database.
//!
//! Same tables and semantics as the SQLite backend (see `migrations/postgres`),
//! with names and digests in the "C" collation so listings are bytewise. Every
//! multi-row change is one transaction; concurrent writers from several nodes
//! rely on `ON CONFLICT` upserts rather than read-then-write.

use std::str::FromStr;
use std::time::Duration;

use berth_core::{Digest, RepoName, Tag};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use crate::{EventActor, EventDraft, EventKind, GcKind, MetaError, NewManifest, NewUpload, UploadProgress, now_unix};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "registry", include_str!("../migrations/postgres/0001_registry.sql")),
    (2, "upload_progress", include_str!("../migrations/postgres/0002_upload_progress.sql")),
    (3, "leases", include_str!("../migrations/postgres/0003_leases.sql")),
    (4, "access", include_str!("../migrations/postgres/0004_access.sql")),
    (5, "proxy", include_str!("../migrations/postgres/0005_proxy.sql")),
    (6, "repository_details", include_str!("../migrations/postgres/0006_repository_details.sql")),
    (7, "events", include_str!("../migrations/postgres/0007_events.sql")),
    (8, "immutability", include_str!("../migrations/postgres/0008_immutability.sql")),
    (9, "gc", include_str!("../migrations/postgres/0009_gc.sql")),
    (10, "retention", include_str!("../migrations/postgres/0010_retention.sql")),
    (11, "quotas", include_str!("../migrations/postgres/0011_quotas.sql")),
];

/// Metadata in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresMeta {
    pool: PgPool,
}

impl PostgresMeta {
    /// Marks upload `upload_id` as committing `digest`, unless the collector is
    /// deleting that digest's bytes (false).
    pub(crate) async fn mark_upload_committing(&self, upload_id: &str, digest: &str) -> Result<bool, MetaError> {
        let mut tx = self.pool.begin().await?;
        let row: Option<Option<i64>> =
            sqlx::query_scalar("SELECT deleting_since FROM blobs WHERE digest = $1 FOR SHARE")
                .bind(digest)
                .fetch_optional(&mut *tx)
                .await?;
        if matches!(row, Some(Some(_))) {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query("UPDATE uploads SET committing = $1 WHERE id = $2")
            .bind(digest)
            .bind(upload_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Connects to `url` (`postgres://user:pass@host:port/db`) and migrates the schema.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, MetaError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        crate::migrate::migrator(MIGRATIONS).run(&pool).await?;
        Ok(PostgresMeta { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A connection for reading.
    pub(crate) async fn read_conn(&self) -> Result<sqlx::pool::PoolConnection<Postgres>, MetaError> {
        Ok(self.pool.acquire().await?)
    }

    /// A connection for writing (any: PostgreSQL takes concurrent writers).
    pub(crate) async fn write_conn(&self) -> Result<sqlx::pool::PoolConnection<Postgres>, MetaError> {
        Ok(self.pool.acquire().await?)
    }

    /// The pool, for listeners and leases that need their own connections.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The references of a manifest that repository `repo_id` does not hold, in
/// the manifest's order: two statements for any number of references. The rows
/// found are share-locked (in digest order) so the collector cannot remove
/// them before the manifest that needs them commits.
async fn missing_references(
    tx: &mut Transaction<'_, Postgres>,
    repo_id: i64,
    blobs: &[Digest],
    manifests: &[Digest],
) -> Result<Vec<Digest>, MetaError> {
    let mut missing = Vec::new();
    let checks = [
        (
            blobs,
            "SELECT digest FROM repository_blobs WHERE repo_id = $1 AND digest = ANY($2) ORDER BY digest FOR SHARE",
        ),
        (manifests, "SELECT digest FROM manifests WHERE repo_id = $1 AND digest = ANY($2) ORDER BY digest FOR SHARE"),
    ];
    for (wanted, sql) in checks {
        if wanted.is_empty() {
            continue;
        }
        let digests: Vec<&str> = wanted.iter().map(Digest::as_str).collect();
        let present: std::collections::HashSet<String> =
            sqlx::query_scalar(sql).bind(repo_id).bind(&digests).fetch_all(&mut **tx).await?.into_iter().collect();
        missing.extend(wanted.iter().filter(|d| !present.contains(d.as_str())).cloned());
    }
    Ok(missing)
}

/// Where each of `tags` (of repository `repo_id`) points now, in one statement.
async fn current_targets(
    tx: &mut Transaction<'_, Postgres>,
    repo_id: i64,
    tags: &[Tag],
) -> Result<Vec<(String, String)>, MetaError> {
    if tags.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = tags.iter().map(Tag::as_str).collect();
    let targets =
        sqlx::query_as("SELECT name, manifest_digest FROM tags WHERE repo_id = $1 AND name = ANY($2) ORDER BY name")
            .bind(repo_id)
            .bind(names)
            .fetch_all(&mut **tx)
            .await?;
    Ok(targets)
}

/// Finds or creates a repository inside a write transaction.
/// A new repository gets a `repository.create` event by `actor` (none without one).
async fn ensure_repo(
    tx: &mut Transaction<'_, Postgres>,
    repo: &RepoName,
    actor: Option<&EventActor>,
) -> Result<i64, MetaError> {
    let created = sqlx::query(
        "INSERT INTO repositories (name, project, created_at) VALUES ($1, $2, $3) ON CONFLICT(name) DO NOTHING",
    )
    .bind(repo.as_str())
    .bind(repo.project())
    .bind(now_unix())
    .execute(&mut **tx)
    .await?
    .rows_affected()
        > 0;
    if let Some(actor) = actor.filter(|_| created) {
        let create = EventDraft::new(EventKind::RepositoryCreate, actor).repository(repo.as_str());
        events::insert_events(tx, &[create]).await?;
    }
    let id: i64 = sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
        .bind(repo.as_str())
        .fetch_one(&mut **tx)
        .await?;
    Ok(id)
}

/// The writes the registry tables' shared code leaves to each dialect (see `registry_sql.rs`):
/// upsert transactions, so that several nodes can run them at once.
impl PostgresMeta {
    /// Stores a manifest and points `tags` at it
    /// (see [`ManifestStore::put_manifest`](crate::ManifestStore::put_manifest)).
    async fn tuned_put_manifest(&self, repo: &RepoName, m: NewManifest, tags: &[Tag]) -> Result<(), MetaError> {
        let now = now_unix();
        let mut tx = self.pool.begin().await?;
        let repo_id = ensure_repo(&mut tx, repo, m.events.first().map(|e| &e.actor)).await?;
        if m.require_references {
            let missing = missing_references(&mut tx, repo_id, &m.blob_refs, &m.manifest_refs).await?;
            if !missing.is_empty() {
                return Err(MetaError::MissingReferences(missing));
            }
        }
        sqlx::query(
            "INSERT INTO manifests
               (repo_id, digest, media_type, artifact_type, subject_digest, annotations, size, payload, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT(repo_id, digest) DO NOTHING",
        )
        .bind(repo_id)
        .bind(m.digest.as_str())
        .bind(&m.media_type)
        .bind(&m.artifact_type)
        .bind(m.subject.as_ref().map(|s| s.as_str()))
        .bind(&m.annotations_json)
        .bind(m.payload.len() as i64)
        .bind(&m.payload)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let (children, kinds): (Vec<&str>, Vec<&str>) = m
            .blob_refs
            .iter()
            .map(|d| (d.as_str(), "blob"))
            .chain(m.manifest_refs.iter().map(|d| (d.as_str(), "manifest")))
            .unzip();
        if !children.is_empty() {
            sqlx::query(
                "INSERT INTO manifest_refs (repo_id, manifest_digest, child_digest, kind)
                 SELECT $1, $2, child, kind FROM UNNEST($3::TEXT[], $4::TEXT[]) AS r(child, kind)
                 ON CONFLICT DO NOTHING",
            )
            .bind(repo_id)
            .bind(m.digest.as_str())
            .bind(children)
            .bind(kinds)
            .execute(&mut *tx)
            .await?;
        }
        // Pushes count; manifests stored by the pull-through cache do not.
        let pushes = i64::from(m.require_references);
        // A protected tag is written once, and again only with the same manifest.
        let current = current_targets(&mut tx, repo_id, tags).await?;
        let (moving, moved): (Vec<String>, Vec<String>) =
            current.into_iter().filter(|(_, target)| target != m.digest.as_str()).unzip();
        immutable::refuse_protected(&mut tx, repo, &moving).await?;
        // Tags, then the repository row below, each in a fixed order: the order pull-count
        // flushes lock them in too, so concurrent writers never deadlock (PostgreSQL).
        let mut ordered: Vec<&Tag> = tags.iter().collect();
        ordered.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        for tag in ordered {
            sqlx::query(
                "INSERT INTO tags (repo_id, name, manifest_digest, updated_at, push_count) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT(repo_id, name) DO UPDATE SET manifest_digest = excluded.manifest_digest,
                                                          updated_at = excluded.updated_at,
                                                          push_count = tags.push_count + excluded.push_count",
            )
            .bind(repo_id)
            .bind(tag.as_str())
            .bind(m.digest.as_str())
            .bind(now)
            .bind(pushes)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE repositories SET push_count = push_count + $1 WHERE id = $2")
            .bind(pushes)
            .bind(repo_id)
            .execute(&mut *tx)
            .await?;
        // What the moved tags pointed at may be garbage now; so may a manifest pushed
        // without a tag, unless an index or a tagged referrer comes to hold it.
        let mut queued = collector::untagged_to_queue(&mut tx, repo_id, moved).await?;
        if tags.is_empty() && m.require_references {
            queued.push((GcKind::Manifest, repo_id, m.digest.to_string()));
        }
        collector::enqueue(&mut tx, &queued).await?;
        events::insert_events(&mut tx, &m.events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records blob `digest` and makes it visible in `repo`
    /// (see [`BlobIndex::link_blob`](crate::BlobIndex::link_blob)), ending upload
    /// session `finished_upload` in the same transaction if given.
    async fn tuned_link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        events: &[EventDraft],
        finished_upload: Option<&str>,
    ) -> Result<(), MetaError> {
        let mut tx = self.pool.begin().await?;
        let now = now_unix();
        let repo_id = ensure_repo(&mut tx, repo, events.first().map(|e| &e.actor)).await?;
        sqlx::query("INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT(digest) DO NOTHING")
            .bind(digest.as_str())
            .bind(size as i64)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO repository_blobs (repo_id, digest, created_at) VALUES ($1, $2, $3)
             ON CONFLICT(repo_id, digest) DO NOTHING",
        )
        .bind(repo_id)
        .bind(digest.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // Until a manifest references it, the link is garbage once the grace period ends.
        collector::enqueue(&mut tx, &[(GcKind::Link, repo_id, digest.to_string())]).await?;
        events::insert_events(&mut tx, events).await?;
        if let Some(upload) = finished_upload {
            sqlx::query("DELETE FROM uploads WHERE id = $1").bind(upload).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Opens an upload session
    /// (see [`UploadStore::create_upload`](crate::UploadStore::create_upload)).
    async fn tuned_create_upload(&self, upload: &NewUpload) -> Result<(), MetaError> {
        let now = now_unix();
        let mut tx = self.pool.begin().await?;
        let repo_id = ensure_repo(&mut tx, &upload.repo, Some(&upload.actor)).await?;
        sqlx::query(
            "INSERT INTO uploads (id, repo_id, received, algorithm, started_at, updated_at, cursor)\n             VALUES ($1, $2, 0, $3, $4, $5, $6)",
        )
        .bind(&upload.id)
        .bind(repo_id)
        .bind(upload.algorithm.as_str())
        .bind(now)
        .bind(now)
        .bind(&upload.cursor)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records an upload's progress unless another request moved it first.
    async fn tuned_save_upload_progress(
        &self,
        id: &str,
        expected_received: u64,
        progress: &UploadProgress,
    ) -> Result<bool, MetaError> {
        let done = sqlx::query("UPDATE uploads SET received = $1, hash_state = $2, cursor = $3, updated_at = $4 WHERE id = $5 AND received = $6")
            .bind(progress.received as i64)
            .bind(&progress.hash_state)
            .bind(&progress.cursor)
            .bind(now_unix())
            .bind(id)
            .bind(expected_received as i64)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends an upload session.
    async fn tuned_delete_upload(&self, id: &str) -> Result<bool, MetaError> {
        let done = sqlx::query("DELETE FROM uploads WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }
}

/// A fresh, empty database on the server named by `BERTH_TEST_POSTGRES_URL`, for tests.
///
/// Returns `None` when the variable is unset, so `cargo test` without PostgreSQL
/// still runs everything else.
pub async fn test_database() -> Option<(PostgresMeta, String)> {
    let url = std::env::var("BERTH_TEST_POSTGRES_URL").ok()?;
    let admin = PgPoolOptions::new().max_connections(1).connect(&url).await.expect("connect to test postgres");
    let name = format!("berth_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.expect("create db");
    admin.close().await;
    let mut options = PgConnectOptions::from_str(&url).expect("test url");
    options = options.database(&name);
    let db_url = format!("{}/{name}", url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base));
    let pool = PgPoolOptions::new().max_connections(8).connect_with(options).await.expect("connect test db");
    crate::migrate::migrator(MIGRATIONS).run(&pool).await.expect("migrate");
    Some((PostgresMeta { pool }, db_url))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn postgres_passes_the_backend_suite() {
        let Some((meta, _)) = super::test_database().await else {
            eprintln!("BERTH_TEST_POSTGRES_URL not set; skipping the PostgreSQL backend suite");
            return;
        };
        crate::testsuite::run_all(&meta).await;
    }

    /// Run with `cargo test -p berth-meta --release -- --ignored --nocapture scale`.
    #[tokio::test]
    #[ignore = "seeds 100k repositories"]
    async fn postgres_search_at_100k_repositories() {
        let Some((meta, _)) = super::test_database().await else {
            eprintln!("BERTH_TEST_POSTGRES_URL not set; skipping");
            return;
        };
        let n = crate::testsuite::SCALE_REPOS;
        let mut tx = meta.pool.begin().await.unwrap();
        for sql in [
            "INSERT INTO repositories (name, project, created_at)
             SELECT 'proj' || (i % 1000) || '/app-' || i, 'proj' || (i % 1000), 0 FROM generate_series(1, $1) AS i",
            "INSERT INTO manifests (repo_id, digest, media_type, size, payload, created_at)
             SELECT id, 'sha256:' || lpad(id::text, 64, '0'), 'application/vnd.oci.image.manifest.v1+json', 2,
                    '\\x7b7d'::bytea, 0
             FROM repositories WHERE $1 > 0",
            "INSERT INTO tags (repo_id, name, manifest_digest, updated_at)
             SELECT r.id, 'v' || (split_part(r.name, '-', 2)::bigint % 500), m.digest, 0
             FROM repositories r JOIN manifests m ON m.repo_id = r.id WHERE $1 > 0",
        ] {
            sqlx::query(sql).bind(n).execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
        sqlx::query("ANALYZE").execute(&meta.pool).await.unwrap();
        crate::testsuite::search_at_scale(&meta, std::time::Duration::from_millis(500)).await;
    }
}

/// Users, projects, tokens, sessions, settings and the audit log (shared SQL).
mod access {
    crate::access_sql::access_impl!(super::PostgresMeta, sqlx::Postgres);
}

/// Upstreams and cache bookkeeping of the pull-through cache (shared SQL).
mod proxy {
    crate::proxy_sql::proxy_impl!(super::PostgresMeta, sqlx::Postgres);
}

/// The event log, webhooks and deliveries (shared SQL).
mod events {
    crate::events_sql::events_impl!(
        super::PostgresMeta,
        sqlx::Postgres,
        "(SELECT jsonb_array_elements_text($1::jsonb)::bigint)"
    );
}

/// Image listings, search, repository details and usage counters (shared SQL;
/// search through the `pg_trgm` and byte-order indexes of migration 0006).
mod catalog {
    crate::catalog_sql::catalog_impl!(
        super::PostgresMeta,
        sqlx::Postgres,
        super::MIGRATIONS,
        crate::catalog_sql::SearchSql {
            repo_substring: "SELECT id FROM repositories WHERE name ILIKE $4",
            repo_prefix: "SELECT id FROM repositories WHERE name COLLATE \"C\" >= $4 AND name COLLATE \"C\" < $5",
            tag_substring: "SELECT id FROM tag_names WHERE name ILIKE $4",
            // pg_trgm's GIN indexes keep up by themselves.
            backlog: None,
            tag_prefix: "SELECT id FROM tag_names
                         WHERE lower(name) COLLATE \"C\" >= $4 AND lower(name) COLLATE \"C\" < $5",
            trigram_form: crate::catalog::ilike_substring,
            explain: "EXPLAIN",
            // Test tables are tiny: make the planner show the index it would use at scale.
            explain_setup: &["SET LOCAL enable_seqscan = off"],
            plan_column: 0,
        }
    );
}

/// Repositories, blobs, manifests, tags, leases and upload sessions (shared SQL
/// around the tuned writes above).
mod registry {
    crate::registry_sql::registry_impl!(super::PostgresMeta, sqlx::Postgres, " FOR SHARE", false);
}

/// Tag immutability rules and the in-transaction check (shared SQL).
pub(crate) mod immutable {
    crate::immutability::immutability_impl!(super::PostgresMeta, sqlx::Postgres);
}

/// The garbage collector's queue, checks and deletions (shared SQL).
pub(crate) mod collector {
    crate::gc::gc_impl!(
        super::PostgresMeta,
        sqlx::Postgres,
        false,
        "BEGIN",
        " FOR UPDATE",
        "(SELECT jsonb_array_elements_text($1::jsonb))"
    );
}

/// Retention policies and the reads that evaluate them (shared SQL).
mod retention {
    crate::retention::retention_impl!(super::PostgresMeta, sqlx::Postgres);
}

/// Project quotas: limits and the usage triggers keep (shared SQL).
mod quotas {
    crate::quota::quota_impl!(super::PostgresMeta, sqlx::Postgres);
}
