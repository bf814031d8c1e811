//! One implementation of the registry tables' stores ([`RepoStore`](crate::RepoStore),
//! [`BlobIndex`](crate::BlobIndex), [`ManifestStore`](crate::ManifestStore),
//! [`JobLeases`](crate::JobLeases), [`UploadStore`](crate::UploadStore)) for both SQL
//! dialects, in portable SQL with `$N` placeholders (see `access_sql.rs`).
//!
//! The writes on the push path are the exception: each backend tunes them for its
//! engine and provides them as inherent methods, which the expansion calls:
//!
//! - `tuned_put_manifest(repo, manifest, tags)`,
//! - `tuned_link_blob(repo, digest, size, events, finished_upload)`, which also ends
//!   the upload session `finished_upload` in the same transaction when given,
//! - `tuned_create_upload(upload)`,
//! - `tuned_save_upload_progress(id, expected_received, progress)`,
//! - `tuned_delete_upload(id)`.
//!
//! SQLite runs them as statement batches on its writer thread (`sqlite/batch.rs`);
//! PostgreSQL as upsert transactions that several nodes can run at once. The
//! backend's module also provides `ensure_repo(tx, repo, actor)` (the repository's
//! id, created if missing) and the `immutable`, `collector` and `events` modules.

use berth_core::Digest;

use crate::MetaError;

/// A digest read back from the database.
pub(crate) fn parse_digest(s: &str) -> Result<Digest, MetaError> {
    s.parse().map_err(|_| MetaError::Corrupt(format!("bad digest {s:?}")))
}

/// Expands the registry tables' stores for one backend type.
///
/// `$for_share` is the row-lock clause that keeps a blob from being tombstoned
/// between a mount's check and its link (`" FOR SHARE"`; empty on SQLite, whose
/// single writer serialises transactions anyway). `$private_sessions` is
/// [`UploadStore::sessions_private_to_this_process`](crate::UploadStore::sessions_private_to_this_process).
macro_rules! registry_impl {
    ($ty:ty, $db:ty, $for_share:literal, $private_sessions:literal) => {
        use std::str::FromStr;

        use async_trait::async_trait;
        use berth_core::{Algorithm, Digest, RepoName, Tag};
        use sqlx::Row;

        use super::{collector, ensure_repo, events, immutable};
        use $crate::registry_sql::parse_digest;
        use $crate::{
            BlobIndex, BlobRow, EventDraft, GcKind, JobLeases, ManifestRecord, ManifestStore, MetaError, NewManifest,
            NewUpload, Referrer, RepoStore, Upload, UploadProgress, UploadStore, now_unix,
        };

        type DbRow = <$db as sqlx::Database>::Row;

        #[async_trait]
        impl RepoStore for $ty {
            async fn repo_exists(&self, repo: &RepoName) -> Result<bool, MetaError> {
                let found: Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
                    .bind(repo.as_str())
                    .fetch_optional(&mut *self.read_conn().await?)
                    .await?;
                Ok(found.is_some())
            }

            async fn list_repos(&self, last: Option<&str>, limit: u32) -> Result<Vec<String>, MetaError> {
                let names = sqlx::query_scalar("SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2")
                    .bind(last.unwrap_or(""))
                    .bind(i64::from(limit))
                    .fetch_all(&mut *self.read_conn().await?)
                    .await?;
                Ok(names)
            }

            async fn delete_repo_if_empty(&self, repo: &RepoName) -> Result<bool, MetaError> {
                let done = sqlx::query(
                    "DELETE FROM repositories WHERE name = $1
                       AND NOT EXISTS (SELECT 1 FROM manifests WHERE repo_id = repositories.id)
                       AND NOT EXISTS (SELECT 1 FROM tags WHERE repo_id = repositories.id)
                       AND NOT EXISTS (SELECT 1 FROM repository_blobs WHERE repo_id = repositories.id)
                       AND NOT EXISTS (SELECT 1 FROM uploads WHERE repo_id = repositories.id)",
                )
                .bind(repo.as_str())
                .execute(&mut *self.write_conn().await?)
                .await?;
                Ok(done.rows_affected() > 0)
            }
        }

        /// Runs `delete` (by repository name `$1` and digest `$2`) in `tx` and, if it
        /// removed a row, queues `queued` for the collector and writes `events` (queue
        /// rows are always locked last: PostgreSQL lock order); then commits.
        async fn delete_then_queue(
            mut tx: sqlx::Transaction<'_, $db>,
            delete: &'static str,
            repo: &RepoName,
            digest: &Digest,
            queued: &[(GcKind, i64, String)],
            events: &[EventDraft],
        ) -> Result<bool, MetaError> {
            let done = sqlx::query(delete).bind(repo.as_str()).bind(digest.as_str()).execute(&mut *tx).await?;
            let deleted = done.rows_affected() > 0;
            if deleted {
                collector::enqueue(&mut tx, queued).await?;
                events::insert_events(&mut tx, events).await?;
            }
            tx.commit().await?;
            Ok(deleted)
        }

        #[async_trait]
        impl BlobIndex for $ty {
            async fn blob_in_repo(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>, MetaError> {
                let size: Option<i64> = sqlx::query_scalar(
                    "SELECT b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
                     WHERE rb.repo_id = (SELECT id FROM repositories WHERE name = $1) AND rb.digest = $2",
                )
                .bind(repo.as_str())
                .bind(digest.as_str())
                .fetch_optional(&mut *self.read_conn().await?)
                .await?;
                Ok(size.map(|s| s as u64))
            }

            async fn find_blob(&self, digest: &Digest) -> Result<Option<u64>, MetaError> {
                let size: Option<i64> = sqlx::query_scalar(
                    "SELECT size FROM blobs
                     WHERE digest = $1 AND EXISTS (SELECT 1 FROM repository_blobs WHERE digest = $1)",
                )
                .bind(digest.as_str())
                .fetch_optional(&mut *self.read_conn().await?)
                .await?;
                Ok(size.map(|s| s as u64))
            }

            async fn list_blobs(&self, after: Option<&str>, limit: u32) -> Result<Vec<BlobRow>, MetaError> {
                let rows = sqlx::query(
                    "SELECT b.digest, b.size,
                            CASE WHEN EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)
                                 THEN 1 ELSE 0 END AS linked
                     FROM blobs b WHERE b.digest > $1 ORDER BY b.digest LIMIT $2",
                )
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(&mut *self.read_conn().await?)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(BlobRow {
                            digest: parse_digest(row.try_get("digest")?)?,
                            size: row.try_get::<i64, _>("size")? as u64,
                            linked: row.try_get::<i32, _>("linked")? != 0,
                        })
                    })
                    .collect()
            }

            async fn repos_with_blob(&self, digest: &Digest, limit: u32) -> Result<Vec<String>, MetaError> {
                let names = sqlx::query_scalar(
                    "SELECT r.name FROM repository_blobs b JOIN repositories r ON r.id = b.repo_id
                     WHERE b.digest = $1 ORDER BY r.name LIMIT $2",
                )
                .bind(digest.as_str())
                .bind(i64::from(limit))
                .fetch_all(&mut *self.read_conn().await?)
                .await?;
                Ok(names)
            }

            async fn link_blob(
                &self,
                repo: &RepoName,
                digest: &Digest,
                size: u64,
                events: &[EventDraft],
            ) -> Result<(), MetaError> {
                self.tuned_link_blob(repo, digest, size, events, None).await
            }

            async fn mount_blob(
                &self,
                repo: &RepoName,
                digest: &Digest,
                events: &[EventDraft],
            ) -> Result<Option<u64>, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                // Locked so the collector cannot tombstone it between this check and the link.
                let row: Option<(i64, Option<i64>)> =
                    sqlx::query_as(concat!("SELECT size, deleting_since FROM blobs WHERE digest = $1", $for_share))
                        .bind(digest.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some((size, None)) = row else {
                    return Ok(None);
                };
                let repo_id = ensure_repo(&mut tx, repo, events.first().map(|e| &e.actor)).await?;
                sqlx::query(
                    "INSERT INTO repository_blobs (repo_id, digest, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT(repo_id, digest) DO NOTHING",
                )
                .bind(repo_id)
                .bind(digest.as_str())
                .bind(now_unix())
                .execute(&mut *tx)
                .await?;
                collector::enqueue(&mut tx, &[(GcKind::Link, repo_id, digest.to_string())]).await?;
                events::insert_events(&mut tx, events).await?;
                tx.commit().await?;
                Ok(Some(size as u64))
            }

            async fn unlink_blob(
                &self,
                repo: &RepoName,
                digest: &Digest,
                events: &[EventDraft],
            ) -> Result<bool, MetaError> {
                let mut conn = self.write_conn().await?;
                let tx = sqlx::Connection::begin(&mut *conn).await?;
                let delete = "DELETE FROM repository_blobs
                     WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2";
                let queued = [(GcKind::Blob, 0, digest.to_string())];
                delete_then_queue(tx, delete, repo, digest, &queued, events).await
            }
        }

        fn manifest_record(row: &DbRow, with_payload: bool) -> Result<ManifestRecord, MetaError> {
            Ok(ManifestRecord {
                digest: parse_digest(row.try_get("digest")?)?,
                media_type: row.try_get("media_type")?,
                size: row.try_get::<i64, _>("size")? as u64,
                payload: if with_payload { Some(row.try_get("payload")?) } else { None },
            })
        }

        /// The manifest that `sql` finds by repository name (`$1`) and `key` (`$2`).
        async fn find_manifest(
            meta: &$ty,
            sql: &'static str,
            repo: &RepoName,
            key: &str,
            with_payload: bool,
        ) -> Result<Option<ManifestRecord>, MetaError> {
            let row =
                sqlx::query(sql).bind(repo.as_str()).bind(key).fetch_optional(&mut *meta.read_conn().await?).await?;
            row.map(|r| manifest_record(&r, with_payload)).transpose()
        }

        #[async_trait]
        impl ManifestStore for $ty {
            async fn put_manifest(&self, repo: &RepoName, m: NewManifest, tags: &[Tag]) -> Result<(), MetaError> {
                self.tuned_put_manifest(repo, m, tags).await
            }

            async fn manifest_by_digest(
                &self,
                repo: &RepoName,
                digest: &Digest,
                with_payload: bool,
            ) -> Result<Option<ManifestRecord>, MetaError> {
                let sql = if with_payload {
                    "SELECT digest, media_type, size, payload FROM manifests
                     WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2"
                } else {
                    "SELECT digest, media_type, size FROM manifests
                     WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2"
                };
                find_manifest(self, sql, repo, digest.as_str(), with_payload).await
            }

            async fn manifest_by_tag(
                &self,
                repo: &RepoName,
                tag: &Tag,
                with_payload: bool,
            ) -> Result<Option<ManifestRecord>, MetaError> {
                let sql = if with_payload {
                    "SELECT m.digest, m.media_type, m.size, m.payload FROM tags t
                     JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.manifest_digest
                     WHERE t.repo_id = (SELECT id FROM repositories WHERE name = $1) AND t.name = $2"
                } else {
                    "SELECT m.digest, m.media_type, m.size FROM tags t
                     JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.manifest_digest
                     WHERE t.repo_id = (SELECT id FROM repositories WHERE name = $1) AND t.name = $2"
                };
                find_manifest(self, sql, repo, tag.as_str(), with_payload).await
            }

            async fn delete_manifest(
                &self,
                repo: &RepoName,
                digest: &Digest,
                events: &[EventDraft],
            ) -> Result<bool, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                immutable::refuse_protected_manifest(&mut tx, repo, digest.as_str()).await?;
                let repo_id: Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
                    .bind(repo.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                // What it references, read before the cascade removes it and queued after the
                // delete: queue rows are always locked last (PostgreSQL lock order).
                let queued: Vec<(GcKind, i64, String)> = match repo_id {
                    Some(repo_id) => {
                        // A child of an index stays while the index does: deleting it would break the index.
                        let parent: Option<String> = sqlx::query_scalar(
                            "SELECT manifest_digest FROM manifest_refs
                             WHERE repo_id = $1 AND child_digest = $2 AND kind = 'manifest' LIMIT 1",
                        )
                        .bind(repo_id)
                        .bind(digest.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                        if let Some(parent) = parent {
                            return Err(MetaError::ReferencedByIndex(parent));
                        }
                        let mut queued = collector::manifest_refs_to_queue(&mut tx, repo_id, digest.as_str()).await?;
                        let subject: Option<Option<String>> = sqlx::query_scalar(
                            "SELECT subject_digest FROM manifests WHERE repo_id = $1 AND digest = $2",
                        )
                        .bind(repo_id)
                        .bind(digest.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                        queued.extend(subject.flatten().map(|s| (GcKind::Manifest, s)));
                        queued.into_iter().map(|(kind, d)| (kind, repo_id, d)).collect()
                    }
                    None => Vec::new(),
                };
                // Tags and refs go with it through ON DELETE CASCADE.
                let delete = "DELETE FROM manifests
                     WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2";
                delete_then_queue(tx, delete, repo, digest, &queued, events).await
            }

            async fn delete_tag(&self, repo: &RepoName, tag: &Tag, events: &[EventDraft]) -> Result<bool, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                immutable::refuse_protected(&mut tx, repo, &[tag.as_str().to_owned()]).await?;
                let target: Option<(i64, String)> = sqlx::query_as(
                    "DELETE FROM tags WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND name = $2
                     RETURNING repo_id, manifest_digest",
                )
                .bind(repo.as_str())
                .bind(tag.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let deleted = target.is_some();
                if let Some((repo_id, digest)) = target {
                    // The manifest may be garbage now (queue rows are locked last).
                    let queued = collector::untagged_to_queue(&mut tx, repo_id, vec![digest]).await?;
                    collector::enqueue(&mut tx, &queued).await?;
                    events::insert_events(&mut tx, events).await?;
                }
                tx.commit().await?;
                Ok(deleted)
            }

            async fn list_tags(
                &self,
                repo: &RepoName,
                last: Option<&str>,
                limit: Option<u32>,
            ) -> Result<Vec<String>, MetaError> {
                let tags = sqlx::query_scalar(
                    "SELECT name FROM tags WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND name > $2
                     ORDER BY name LIMIT $3",
                )
                .bind(repo.as_str())
                .bind(last.unwrap_or(""))
                // No limit is the largest one: both dialects take it.
                .bind(limit.map_or(i64::MAX, i64::from))
                .fetch_all(&mut *self.read_conn().await?)
                .await?;
                Ok(tags)
            }

            async fn list_referrers(
                &self,
                repo: &RepoName,
                subject: &Digest,
                artifact_type: Option<&str>,
            ) -> Result<Vec<Referrer>, MetaError> {
                let rows = sqlx::query(
                    "SELECT digest, media_type, size, artifact_type, annotations FROM manifests
                     WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND subject_digest = $2
                       AND (CAST($3 AS TEXT) IS NULL OR artifact_type = $3)
                     ORDER BY created_at, digest",
                )
                .bind(repo.as_str())
                .bind(subject.as_str())
                .bind(artifact_type)
                .fetch_all(&mut *self.read_conn().await?)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(Referrer {
                            digest: parse_digest(row.try_get("digest")?)?,
                            media_type: row.try_get("media_type")?,
                            size: row.try_get::<i64, _>("size")? as u64,
                            artifact_type: row.try_get("artifact_type")?,
                            annotations_json: row.try_get("annotations")?,
                        })
                    })
                    .collect()
            }
        }

        #[async_trait]
        impl JobLeases for $ty {
            async fn try_lease(&self, job: &str, holder: &str, ttl_secs: i64) -> Result<bool, MetaError> {
                let now = now_unix();
                let done = sqlx::query(
                    "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
                     ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                     WHERE leases.expires_at < $4 OR leases.holder = excluded.holder",
                )
                .bind(job)
                .bind(holder)
                .bind(now + ttl_secs)
                .bind(now)
                .execute(&mut *self.write_conn().await?)
                .await?;
                Ok(done.rows_affected() > 0)
            }
        }

        #[async_trait]
        impl UploadStore for $ty {
            async fn create_upload(&self, upload: &NewUpload) -> Result<(), MetaError> {
                self.tuned_create_upload(upload).await
            }

            async fn get_upload(&self, repo: &RepoName, id: &str) -> Result<Option<Upload>, MetaError> {
                let row = sqlx::query(
                    "SELECT id, received, algorithm, started_at, updated_at, hash_state, cursor FROM uploads
                     WHERE id = $1 AND repo_id = (SELECT id FROM repositories WHERE name = $2)",
                )
                .bind(id)
                .bind(repo.as_str())
                .fetch_optional(&mut *self.read_conn().await?)
                .await?;
                row.map(|row| {
                    let algorithm: String = row.try_get("algorithm")?;
                    Ok(Upload {
                        id: row.try_get("id")?,
                        received: row.try_get::<i64, _>("received")? as u64,
                        algorithm: Algorithm::from_str(&algorithm)
                            .map_err(|_| MetaError::Corrupt(algorithm.clone()))?,
                        started_at: row.try_get("started_at")?,
                        updated_at: row.try_get("updated_at")?,
                        hash_state: row.try_get("hash_state")?,
                        cursor: row.try_get("cursor")?,
                    })
                })
                .transpose()
            }

            async fn save_upload_progress(
                &self,
                id: &str,
                expected_received: u64,
                progress: &UploadProgress,
            ) -> Result<bool, MetaError> {
                self.tuned_save_upload_progress(id, expected_received, progress).await
            }

            async fn delete_upload(&self, id: &str) -> Result<bool, MetaError> {
                self.tuned_delete_upload(id).await
            }

            async fn finish_upload(
                &self,
                id: &str,
                repo: &RepoName,
                digest: &Digest,
                size: u64,
                events: &[EventDraft],
            ) -> Result<(), MetaError> {
                self.tuned_link_blob(repo, digest, size, events, Some(id)).await
            }

            async fn stale_uploads(&self, before: i64, limit: u32) -> Result<Vec<(String, String)>, MetaError> {
                let rows =
                    sqlx::query_as("SELECT id, cursor FROM uploads WHERE updated_at < $1 ORDER BY updated_at LIMIT $2")
                        .bind(before)
                        .bind(i64::from(limit))
                        .fetch_all(&mut *self.read_conn().await?)
                        .await?;
                Ok(rows)
            }

            fn sessions_private_to_this_process(&self) -> bool {
                $private_sessions
            }
        }
    };
}
pub(crate) use registry_impl;
