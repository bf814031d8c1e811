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
    let (from, to) = (src.reader_pool(), dst.pool());
    let mut report = TransferReport::default();

    // repositories: by name; then map ids.
    let mut last = String::new();
    let mut n = 0u64;
    loop {
        let rows =
            sqlx::query("SELECT name, project, created_at FROM repositories WHERE name > ? ORDER BY name LIMIT ?")
                .bind(&last)
                .bind(BATCH)
                .fetch_all(from)
                .await?;
        if rows.is_empty() {
            break;
        }
        let mut tx = to.begin().await?;
        for row in &rows {
            sqlx::query(
                "INSERT INTO repositories (name, project, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            )
            .bind(row.try_get::<String, _>("name")?)
            .bind(row.try_get::<String, _>("project")?)
            .bind(row.try_get::<i64, _>("created_at")?)
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
        .fetch_all(from)
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
        n = copy_repo_rows(from, to, src_id, dst_id).await?;
        progress("repository rows", n);
    }
    report.tables.push(("repository rows", count_repo_rows(from).await?));
    Ok(report)
}

async fn repo_id_map(src: &SqliteMeta, dst: &PostgresMeta) -> Result<HashMap<i64, i64>, MetaError> {
    let src_rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, name FROM repositories").fetch_all(src.reader_pool()).await?;
    let dst_rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, name FROM repositories").fetch_all(dst.pool()).await?;
    let by_name: HashMap<String, i64> = dst_rows.into_iter().map(|(id, name)| (name, id)).collect();
    Ok(src_rows.into_iter().filter_map(|(id, name)| by_name.get(&name).map(|&d| (id, d))).collect())
}

async fn count_repo_rows(from: &sqlx::SqlitePool) -> Result<u64, MetaError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM repository_blobs) + (SELECT COUNT(*) FROM manifests)
              + (SELECT COUNT(*) FROM manifest_refs) + (SELECT COUNT(*) FROM tags)",
    )
    .fetch_one(from)
    .await?;
    Ok(n as u64)
}

/// Copies one repository's visibility rows, manifests, references and tags in one transaction.
async fn copy_repo_rows(from: &sqlx::SqlitePool, to: &sqlx::PgPool, src: i64, dst: i64) -> Result<u64, MetaError> {
    let mut tx = to.begin().await?;
    let mut n = 0u64;
    let rows = sqlx::query("SELECT digest, created_at FROM repository_blobs WHERE repo_id = ?")
        .bind(src)
        .fetch_all(from)
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
    .fetch_all(from)
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
        .fetch_all(from)
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
    let rows = sqlx::query("SELECT name, manifest_digest, updated_at FROM tags WHERE repo_id = ?")
        .bind(src)
        .fetch_all(from)
        .await?;
    for row in &rows {
        sqlx::query(
            "INSERT INTO tags (repo_id, name, manifest_digest, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (repo_id, name) DO UPDATE SET manifest_digest = excluded.manifest_digest,
                                                       updated_at = excluded.updated_at",
        )
        .bind(dst)
        .bind(row.try_get::<String, _>("name")?)
        .bind(row.try_get::<String, _>("manifest_digest")?)
        .bind(row.try_get::<i64, _>("updated_at")?)
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
        src.link_blob(&repo, &config, 6).await.unwrap();
        let m = NewManifest {
            digest: Digest::sha256(b"m"),
            media_type: berth_core::media_type::OCI_MANIFEST.into(),
            artifact_type: None,
            subject: None,
            annotations_json: None,
            payload: b"m".to_vec(),
            blob_refs: vec![config.clone()],
            manifest_refs: vec![],
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
    }
}
