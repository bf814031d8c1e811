//! Online garbage collection, as far as the database is concerned.
//!
//! Every change that may leave something unreferenced queues it (`gc_queue`) in
//! the change's own transaction: a moved or deleted tag queues the manifest it
//! pointed at, a deleted manifest queues its children, its blob links and its
//! referrers, a pushed blob queues its link (in case no manifest ever references
//! it), a removed link or repository queues the blob. The collector takes
//! entries older than the grace period and, for each, locks the row, re-checks
//! in the same transaction that nothing references it, deletes it and queues
//! what it referenced. A push that references a queued object therefore either
//! commits first (the re-check sees it and keeps the object) or waits for the
//! lock and finds the object gone (and is refused, as if it had never existed).
//!
//! Blob bytes are deleted in three steps so that a concurrent upload of the same
//! digest never loses data: the blob row is tombstoned (only when no repository
//! links it and no upload is committing it), the bytes are deleted, then the row.
//! An upload marks its digest as committing before it puts bytes in place and
//! refuses to start while a tombstone stands; a mount refuses a tombstoned blob.

use async_trait::async_trait;

use crate::MetaError;

/// What a queue entry stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GcKind {
    /// A manifest in a repository.
    Manifest,
    /// A blob's visibility in a repository (a `repository_blobs` row).
    Link,
    /// A blob's bytes.
    Blob,
}

impl GcKind {
    /// The name stored in `gc_queue.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            GcKind::Manifest => "manifest",
            GcKind::Link => "link",
            GcKind::Blob => "blob",
        }
    }
}

/// One queue entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GcItem {
    pub kind: GcKind,
    /// The repository (0 for [`GcKind::Blob`]).
    pub repo_id: i64,
    /// Its name (empty for blobs, and once the repository is gone).
    pub repository: String,
    pub digest: String,
    /// Unix milliseconds of the last time it was queued.
    pub queued_at: i64,
}

/// Which unreferenced manifests the collector may delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcPolicy {
    /// Delete manifests that no tag, index or kept referrer reaches. When false,
    /// only blobs are collected (manifests go only when deleted explicitly).
    pub delete_untagged: bool,
    /// Keep a referrer (signature, SBOM) while its subject exists.
    pub keep_referrers: bool,
}

impl Default for GcPolicy {
    fn default() -> Self {
        GcPolicy { delete_untagged: true, keep_referrers: true }
    }
}

/// Why a manifest cannot be collected now; empty means it can.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestHolds {
    /// A tag points at it, a tagged referrer refers to it, it lives in a
    /// pull-through cache repository, or the policy keeps untagged manifests.
    pub pinned: bool,
    /// Manifests of the same repository that list it as a child.
    pub parents: Vec<String>,
    /// Its subject, when it is a referrer kept because the subject exists.
    pub subject: Option<String>,
    /// What its deletion would queue (blob links, child manifests, referrers,
    /// its subject); filled by [`GcStore::gc_manifest_holds`] for dry runs.
    pub queues: Vec<(GcKind, String)>,
}

impl ManifestHolds {
    /// Collectable once the manifests in `gone` are gone (`gone` is empty for a real run).
    pub fn free_after(&self, gone: impl Fn(&str) -> bool) -> bool {
        !self.pinned && self.parents.iter().all(|p| gone(p)) && self.subject.as_deref().is_none_or(&gone)
    }
}

/// A manifest the collector deleted (or would delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedManifest {
    pub repo_id: i64,
    pub repository: String,
    pub digest: String,
    pub size: u64,
    /// Its blob links, child manifests and referrers, queued in turn.
    pub queued: Vec<(GcKind, String)>,
}

/// Why a blob's bytes cannot be deleted now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobHolds {
    pub size: u64,
    /// Repositories (ids) that link it.
    pub linked_in: Vec<i64>,
    /// An upload is committing it, or the pull-through cache holds it.
    pub pinned: bool,
}

/// A blob whose bytes the collector claimed (tombstoned) for deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedBlob {
    pub digest: String,
    pub size: u64,
}

/// Counts of queued entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcQueueStats {
    pub manifests: u64,
    pub links: u64,
    pub blobs: u64,
    /// Blobs whose bytes are being deleted (a run in progress or interrupted).
    pub tombstones: u64,
}

/// Progress counters of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcCounters {
    pub examined: u64,
    pub manifests_deleted: u64,
    pub links_deleted: u64,
    pub blobs_deleted: u64,
    pub bytes_reclaimed: u64,
}

/// A run as recorded in `gc_runs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcRun {
    pub id: i64,
    pub node: String,
    /// `schedule`, `api` or `cli`.
    pub trigger: String,
    pub dry_run: bool,
    pub grace_secs: i64,
    /// `running`, `finished` or `failed`.
    pub state: String,
    pub started_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    pub counters: GcCounters,
    pub error: Option<String>,
}

/// The collector's queue, checks and deletions.
#[async_trait]
pub trait GcStore: Send + Sync {
    /// Records bytes put in place for `digest` that nothing links (an upload
    /// whose link was refused) and queues them, so the collector deletes them
    /// unless something links the digest by then.
    async fn gc_adopt_blob(&self, digest: &str, size: u64) -> Result<(), MetaError>;

    /// Entries of `kind` queued at or before `cutoff_ms`, oldest first, at most `limit`.
    async fn gc_due(&self, kind: GcKind, cutoff_ms: i64, limit: u32) -> Result<Vec<GcItem>, MetaError>;

    /// How many entries wait, per kind, and how many tombstones stand.
    async fn gc_queue_stats(&self) -> Result<GcQueueStats, MetaError>;

    /// Queues everything nothing references (a full pass over the database, not
    /// the blob store), as queued when it was created. For installations that
    /// predate the queue, after `meta-migrate`, and as a safety net. Returns how
    /// many entries were queued.
    async fn gc_seed(&self) -> Result<u64, MetaError>;

    /// What holds a manifest (`None` when it no longer exists). Read-only.
    async fn gc_manifest_holds(&self, item: &GcItem, policy: GcPolicy) -> Result<Option<ManifestHolds>, MetaError>;

    /// Manifests of the repository that reference a linked blob (`None` when the
    /// link no longer exists); a cached blob's link is held by the cache. Read-only.
    async fn gc_link_holds(&self, item: &GcItem) -> Result<Option<(Vec<String>, bool)>, MetaError>;

    /// What holds a blob's bytes (`None` when no blob row exists). Read-only.
    async fn gc_blob_holds(&self, digest: &str) -> Result<Option<BlobHolds>, MetaError>;

    /// For each entry, in order: deletes the manifest if, under lock, nothing
    /// holds it, writes its `delete` event and queues what it referenced; drops
    /// the entry. Returns the manifests deleted. SQLite does a batch in one
    /// transaction (one fsync); PostgreSQL one transaction per entry, so row
    /// locks are never held across entries.
    async fn gc_collect_manifests(
        &self,
        items: &[GcItem],
        policy: GcPolicy,
    ) -> Result<Vec<CollectedManifest>, MetaError>;

    /// For each entry: removes the blob link if, under lock, no manifest of its
    /// repository references it, and queues the blob; drops the entry. Returns
    /// how many links went. Transactions as for [`GcStore::gc_collect_manifests`].
    async fn gc_collect_links(&self, items: &[GcItem]) -> Result<u64, MetaError>;

    /// Tombstones those of `items`' blobs that no repository links, no upload
    /// commits and the cache does not hold; drops the entries. The caller then
    /// deletes their bytes and calls [`GcStore::gc_finish_blobs`].
    async fn gc_claim_blobs(&self, items: &[GcItem]) -> Result<Vec<ClaimedBlob>, MetaError>;

    /// Tombstoned blobs (a run interrupted between claim and finish), at most `limit`.
    async fn gc_tombstones(&self, limit: u32) -> Result<Vec<ClaimedBlob>, MetaError>;

    /// Removes the rows of tombstoned blobs whose bytes are gone.
    async fn gc_finish_blobs(&self, digests: &[String]) -> Result<(), MetaError>;

    /// Marks upload `upload_id` as committing `digest`, before its bytes are put
    /// in place. False while the collector is deleting that digest's bytes.
    async fn begin_blob_commit(&self, upload_id: &str, digest: &str) -> Result<bool, MetaError>;

    /// Records the start of a run; returns its id. A real run (the caller holds
    /// the lease) marks runs left `running` by a crash as failed.
    async fn gc_start_run(&self, node: &str, trigger: &str, dry_run: bool, grace_secs: i64) -> Result<i64, MetaError>;

    /// Updates a run's counters and state (`running`, `finished`, `failed`).
    async fn gc_update_run(
        &self,
        id: i64,
        counters: &GcCounters,
        state: &str,
        error: Option<&str>,
    ) -> Result<(), MetaError>;

    /// The most recent runs, newest first.
    async fn gc_runs(&self, limit: u32) -> Result<Vec<GcRun>, MetaError>;
}

/// Expands the collector's SQL for one backend.
///
/// `$one_tx` says whether a batch of entries shares one transaction (SQLite,
/// where each commit is an fsync and a single writer excludes deadlocks) or
/// each entry gets its own (PostgreSQL, where holding row locks across entries
/// could deadlock with pushes). `$begin` starts its write transactions (`BEGIN IMMEDIATE` on SQLite, so a
/// `berth gc` process and a server never upgrade a read lock into a conflict),
/// `$for_update` is the row-lock clause (empty on SQLite, whose
/// single writer serialises transactions anyway), and `$json_list` turns the
/// JSON array bound as `$1` into a column of text values.
macro_rules! gc_impl {
    ($ty:ty, $db:ty, $one_tx:literal, $begin:literal, $for_update:literal, $json_list:literal) => {
        use async_trait::async_trait;
        use sqlx::Row;

        use $crate::gc::{
            BlobHolds, ClaimedBlob, CollectedManifest, GcCounters, GcItem, GcKind, GcPolicy, GcQueueStats, GcRun,
            GcStore, ManifestHolds,
        };
        use $crate::{EventActor, EventDraft, EventKind, MetaError, now_ms};

        type Tx<'a> = sqlx::Transaction<'a, $db>;
        type Conn = <$db as sqlx::Database>::Connection;

        /// Queues `entries` (kind, repository id, digest) as of now.
        pub(crate) async fn enqueue(tx: &mut Tx<'_>, entries: &[(GcKind, i64, String)]) -> Result<(), MetaError> {
            queue_ops(tx, entries, None).await
        }

        /// Queues `entries` and drops the processed entry `done` (unless queued
        /// again since it was read), touching queue rows in one global order so
        /// that concurrent writers never deadlock on them.
        async fn queue_ops(
            tx: &mut Tx<'_>,
            entries: &[(GcKind, i64, String)],
            done: Option<&GcItem>,
        ) -> Result<(), MetaError> {
            let mut sorted: Vec<(&str, i64, &str, bool)> =
                entries.iter().map(|(k, r, d)| (k.as_str(), *r, d.as_str(), false)).collect();
            sorted.extend(done.map(|i| (i.kind.as_str(), i.repo_id, i.digest.as_str(), true)));
            sorted.sort();
            sorted.dedup_by(|a, b| (a.0, a.1, a.2) == (b.0, b.1, b.2));
            let now = now_ms();
            for (kind, repo_id, digest, is_done) in sorted {
                if is_done {
                    let item = done.expect("a done entry came from `done`");
                    sqlx::query(
                        "DELETE FROM gc_queue WHERE kind = $1 AND repo_id = $2 AND digest = $3 AND queued_at <= $4",
                    )
                    .bind(kind)
                    .bind(repo_id)
                    .bind(digest)
                    .bind(item.queued_at)
                    .execute(&mut **tx)
                    .await?;
                    continue;
                }
                sqlx::query(
                    "INSERT INTO gc_queue (kind, repo_id, digest, queued_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (kind, repo_id, digest) DO UPDATE SET queued_at = excluded.queued_at",
                )
                .bind(kind)
                .bind(repo_id)
                .bind(digest)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        }

        /// What to queue once a manifest is gone: its blob links, its child
        /// manifests and the manifests that refer to it. Read before deleting it.
        pub(crate) async fn manifest_refs_to_queue(
            tx: &mut Tx<'_>,
            repo_id: i64,
            digest: &str,
        ) -> Result<Vec<(GcKind, String)>, MetaError> {
            let mut conn: &mut Conn = &mut *tx;
            manifest_refs_query(&mut conn, repo_id, digest).await
        }

        async fn manifest_refs_query(
            conn: &mut &mut Conn,
            repo_id: i64,
            digest: &str,
        ) -> Result<Vec<(GcKind, String)>, MetaError> {
            let rows = sqlx::query(
                "SELECT child_digest, kind FROM manifest_refs WHERE repo_id = $1 AND manifest_digest = $2
                 UNION ALL
                 SELECT digest, 'manifest' FROM manifests WHERE repo_id = $1 AND subject_digest = $2",
            )
            .bind(repo_id)
            .bind(digest)
            .fetch_all(&mut **conn)
            .await?;
            let mut queued = Vec::with_capacity(rows.len());
            for row in &rows {
                let child: String = row.try_get(0)?;
                let kind: String = row.try_get(1)?;
                let kind = if kind == "blob" { GcKind::Link } else { GcKind::Manifest };
                queued.push((kind, child));
            }
            Ok(queued)
        }

        /// Queue entries for manifests of `repo_id` that lose a tag, with their
        /// subjects: a tagged referrer holds its subject, so an untagged one may free it.
        pub(crate) async fn untagged_to_queue(
            tx: &mut Tx<'_>,
            repo_id: i64,
            digests: Vec<String>,
        ) -> Result<Vec<(GcKind, i64, String)>, MetaError> {
            let mut entries = Vec::with_capacity(digests.len());
            for digest in digests {
                let subject: Option<Option<String>> =
                    sqlx::query_scalar("SELECT subject_digest FROM manifests WHERE repo_id = $1 AND digest = $2")
                        .bind(repo_id)
                        .bind(&digest)
                        .fetch_optional(&mut **tx)
                        .await?;
                entries.extend(subject.flatten().map(|s| (GcKind::Manifest, repo_id, s)));
                entries.push((GcKind::Manifest, repo_id, digest));
            }
            Ok(entries)
        }

        /// Queue entries for the blobs linked in the repositories `repo_ids`:
        /// read before they go, queued after.
        pub(crate) async fn repo_blobs_to_queue(
            tx: &mut Tx<'_>,
            repo_ids: &[i64],
        ) -> Result<Vec<(GcKind, i64, String)>, MetaError> {
            let mut entries = Vec::new();
            for repo_id in repo_ids {
                let digests: Vec<String> = sqlx::query_scalar("SELECT digest FROM repository_blobs WHERE repo_id = $1")
                    .bind(*repo_id)
                    .fetch_all(&mut **tx)
                    .await?;
                entries.extend(digests.into_iter().map(|d| (GcKind::Blob, 0, d)));
            }
            Ok(entries)
        }

        async fn manifest_holds(
            conn: &mut Conn,
            item: &GcItem,
            policy: GcPolicy,
            lock: bool,
        ) -> Result<Option<(ManifestHolds, Option<String>, i64)>, MetaError> {
            let sql = if lock {
                concat!("SELECT subject_digest, size FROM manifests WHERE repo_id = $1 AND digest = $2", $for_update)
            } else {
                "SELECT subject_digest, size FROM manifests WHERE repo_id = $1 AND digest = $2"
            };
            let Some(row) = sqlx::query(sql).bind(item.repo_id).bind(&item.digest).fetch_optional(&mut *conn).await?
            else {
                return Ok(None);
            };
            let subject: Option<String> = row.try_get(0)?;
            let size: i64 = row.try_get(1)?;
            let pinned: bool = sqlx::query_scalar::<_, i64>(
                "SELECT CASE WHEN
                    EXISTS (SELECT 1 FROM tags WHERE repo_id = $1 AND manifest_digest = $2)
                    OR EXISTS (SELECT 1 FROM manifests m JOIN tags t ON t.repo_id = m.repo_id AND t.manifest_digest = m.digest
                               WHERE m.repo_id = $1 AND m.subject_digest = $2)
                    OR EXISTS (SELECT 1 FROM repositories r JOIN upstreams u ON u.namespace = r.project WHERE r.id = $1)
                 THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END",
            )
            .bind(item.repo_id)
            .bind(&item.digest)
            .fetch_one(&mut *conn)
            .await?
                != 0
                || !policy.delete_untagged;
            let parents: Vec<String> = sqlx::query_scalar(
                "SELECT manifest_digest FROM manifest_refs WHERE repo_id = $1 AND child_digest = $2 AND kind = 'manifest'",
            )
            .bind(item.repo_id)
            .bind(&item.digest)
            .fetch_all(&mut *conn)
            .await?;
            let kept_subject = match (&subject, policy.keep_referrers) {
                (Some(s), true) => sqlx::query_scalar::<_, String>(
                    "SELECT digest FROM manifests WHERE repo_id = $1 AND digest = $2",
                )
                .bind(item.repo_id)
                .bind(s)
                .fetch_optional(&mut *conn)
                .await?,
                _ => None,
            };
            let mut queues = Vec::new();
            if !lock {
                let mut refs_conn: &mut Conn = &mut *conn;
                queues = manifest_refs_query(&mut refs_conn, item.repo_id, &item.digest).await?;
                queues.extend(subject.clone().map(|s| (GcKind::Manifest, s)));
            }
            Ok(Some((ManifestHolds { pinned, parents, subject: kept_subject, queues }, subject, size)))
        }

        async fn link_holds(conn: &mut Conn, item: &GcItem, lock: bool) -> Result<Option<(Vec<String>, bool)>, MetaError> {
            let sql = if lock {
                concat!("SELECT 1 FROM repository_blobs WHERE repo_id = $1 AND digest = $2", $for_update)
            } else {
                "SELECT 1 FROM repository_blobs WHERE repo_id = $1 AND digest = $2"
            };
            let found: Option<i32> =
                sqlx::query_scalar(sql).bind(item.repo_id).bind(&item.digest).fetch_optional(&mut *conn).await?;
            if found.is_none() {
                return Ok(None);
            }
            let users: Vec<String> = sqlx::query_scalar(
                "SELECT manifest_digest FROM manifest_refs WHERE repo_id = $1 AND child_digest = $2 AND kind = 'blob'",
            )
            .bind(item.repo_id)
            .bind(&item.digest)
            .fetch_all(&mut *conn)
            .await?;
            let cached: Option<i32> = sqlx::query_scalar("SELECT 1 FROM cache_entries WHERE digest = $1")
                .bind(&item.digest)
                .fetch_optional(&mut *conn)
                .await?;
            Ok(Some((users, cached.is_some())))
        }

        /// Deletes the manifest if, under lock, nothing holds it; queues what it referenced.
        async fn collect_manifest_in(
            tx: &mut Tx<'_>,
            item: &GcItem,
            policy: GcPolicy,
        ) -> Result<Option<CollectedManifest>, MetaError> {
            let held = manifest_holds(tx, item, policy, true).await?;
            let Some((_, subject, size)) = held.filter(|(holds, _, _)| holds.free_after(|_| false)) else {
                queue_ops(tx, &[], Some(item)).await?;
                return Ok(None);
            };
            let repository: String = sqlx::query_scalar("SELECT name FROM repositories WHERE id = $1")
                .bind(item.repo_id)
                .fetch_one(&mut **tx)
                .await?;
            let mut queued = manifest_refs_to_queue(tx, item.repo_id, &item.digest).await?;
            // A subject that a tagged referrer held: it may be free now.
            queued.extend(subject.map(|s| (GcKind::Manifest, s)));
            sqlx::query("DELETE FROM manifests WHERE repo_id = $1 AND digest = $2")
                .bind(item.repo_id)
                .bind(&item.digest)
                .execute(&mut **tx)
                .await?;
            let event = EventDraft::new(EventKind::Delete, &EventActor::system("gc"))
                .repository(&repository)
                .digest(&item.digest)
                .size(size as u64);
            super::events::insert_events(tx, &[event]).await?;
            let entries: Vec<_> = queued.iter().map(|(k, d)| (*k, item.repo_id, d.clone())).collect();
            queue_ops(tx, &entries, Some(item)).await?;
            Ok(Some(CollectedManifest {
                repo_id: item.repo_id,
                repository,
                digest: item.digest.clone(),
                size: size as u64,
                queued,
            }))
        }

        /// Removes the blob link if, under lock, no manifest of its repository uses
        /// it (and the cache does not hold the blob); queues the blob.
        async fn collect_link_in(tx: &mut Tx<'_>, item: &GcItem) -> Result<bool, MetaError> {
            let held = link_holds(tx, item, true).await?;
            let free = matches!(&held, Some((users, cached)) if users.is_empty() && !cached);
            if free {
                sqlx::query("DELETE FROM repository_blobs WHERE repo_id = $1 AND digest = $2")
                    .bind(item.repo_id)
                    .bind(&item.digest)
                    .execute(&mut **tx)
                    .await?;
            }
            let blob = [(GcKind::Blob, 0, item.digest.clone())];
            queue_ops(tx, if free { &blob } else { &[] }, Some(item)).await?;
            Ok(free)
        }

        fn digests_json(digests: impl IntoIterator<Item = impl AsRef<str>>) -> String {
            let list: Vec<serde_json::Value> =
                digests.into_iter().map(|d| serde_json::Value::String(d.as_ref().to_owned())).collect();
            serde_json::Value::Array(list).to_string()
        }

        fn run_from_row(row: &<$db as sqlx::Database>::Row) -> Result<GcRun, MetaError> {
            Ok(GcRun {
                id: row.try_get("id")?,
                node: row.try_get("node")?,
                trigger: row.try_get("trigger")?,
                dry_run: row.try_get::<i64, _>("dry_run")? != 0,
                grace_secs: row.try_get("grace_secs")?,
                state: row.try_get("state")?,
                started_at: row.try_get("started_at")?,
                updated_at: row.try_get("updated_at")?,
                finished_at: row.try_get("finished_at")?,
                counters: GcCounters {
                    examined: row.try_get::<i64, _>("examined")? as u64,
                    manifests_deleted: row.try_get::<i64, _>("manifests_deleted")? as u64,
                    links_deleted: row.try_get::<i64, _>("links_deleted")? as u64,
                    blobs_deleted: row.try_get::<i64, _>("blobs_deleted")? as u64,
                    bytes_reclaimed: row.try_get::<i64, _>("bytes_reclaimed")? as u64,
                },
                error: row.try_get("error")?,
            })
        }

        #[async_trait]
        impl GcStore for $ty {
            async fn gc_adopt_blob(&self, digest: &str, size: u64) -> Result<(), MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::query(
                    "INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING",
                )
                .bind(digest)
                .bind(size as i64)
                .bind($crate::now_unix())
                .execute(&mut *tx)
                .await?;
                enqueue(&mut tx, &[(GcKind::Blob, 0, digest.to_owned())]).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn gc_due(&self, kind: GcKind, cutoff_ms: i64, limit: u32) -> Result<Vec<GcItem>, MetaError> {
                let rows = sqlx::query(
                    "SELECT q.repo_id, q.digest, q.queued_at, COALESCE(r.name, '') FROM gc_queue q
                     LEFT JOIN repositories r ON r.id = q.repo_id
                     WHERE q.kind = $1 AND q.queued_at <= $2
                     ORDER BY q.queued_at, q.repo_id, q.digest LIMIT $3",
                )
                .bind(kind.as_str())
                .bind(cutoff_ms)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.read_conn().await?)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(GcItem {
                            kind,
                            repo_id: row.try_get(0)?,
                            digest: row.try_get(1)?,
                            queued_at: row.try_get(2)?,
                            repository: row.try_get(3)?,
                        })
                    })
                    .collect()
            }

            async fn gc_queue_stats(&self) -> Result<GcQueueStats, MetaError> {
                let row = sqlx::query(
                    "SELECT (SELECT COUNT(*) FROM gc_queue WHERE kind = 'manifest'),
                            (SELECT COUNT(*) FROM gc_queue WHERE kind = 'link'),
                            (SELECT COUNT(*) FROM gc_queue WHERE kind = 'blob'),
                            (SELECT COUNT(*) FROM blobs WHERE deleting_since IS NOT NULL)",
                )
                .fetch_one(&mut *self.read_conn().await?)
                .await?;
                Ok(GcQueueStats {
                    manifests: row.try_get::<i64, _>(0)? as u64,
                    links: row.try_get::<i64, _>(1)? as u64,
                    blobs: row.try_get::<i64, _>(2)? as u64,
                    tombstones: row.try_get::<i64, _>(3)? as u64,
                })
            }

            async fn gc_seed(&self) -> Result<u64, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin_with(&mut *conn, $begin).await?;
                let mut queued = 0;
                // created_at columns are unix seconds; the queue keeps milliseconds.
                let statements = [
                    "INSERT INTO gc_queue (kind, repo_id, digest, queued_at)
                     SELECT 'manifest', m.repo_id, m.digest, m.created_at * 1000 FROM manifests m
                     WHERE NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo_id = m.repo_id AND t.manifest_digest = m.digest)
                       AND NOT EXISTS (SELECT 1 FROM manifest_refs r
                                       WHERE r.repo_id = m.repo_id AND r.child_digest = m.digest AND r.kind = 'manifest')
                     ON CONFLICT (kind, repo_id, digest) DO NOTHING",
                    "INSERT INTO gc_queue (kind, repo_id, digest, queued_at)
                     SELECT 'link', l.repo_id, l.digest, l.created_at * 1000 FROM repository_blobs l
                     WHERE NOT EXISTS (SELECT 1 FROM manifest_refs r
                                       WHERE r.repo_id = l.repo_id AND r.child_digest = l.digest AND r.kind = 'blob')
                     ON CONFLICT (kind, repo_id, digest) DO NOTHING",
                    "INSERT INTO gc_queue (kind, repo_id, digest, queued_at)
                     SELECT 'blob', 0, b.digest, b.created_at * 1000 FROM blobs b
                     WHERE NOT EXISTS (SELECT 1 FROM repository_blobs l WHERE l.digest = b.digest)
                     ON CONFLICT (kind, repo_id, digest) DO NOTHING",
                ];
                for sql in statements {
                    queued += sqlx::query(sql).execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                Ok(queued)
            }

            async fn gc_manifest_holds(
                &self,
                item: &GcItem,
                policy: GcPolicy,
            ) -> Result<Option<ManifestHolds>, MetaError> {
                let mut conn = self.read_conn().await?;
                Ok(manifest_holds(&mut conn, item, policy, false).await?.map(|(holds, _, _)| holds))
            }

            async fn gc_link_holds(&self, item: &GcItem) -> Result<Option<(Vec<String>, bool)>, MetaError> {
                let mut conn = self.read_conn().await?;
                link_holds(&mut conn, item, false).await
            }

            async fn gc_blob_holds(&self, digest: &str) -> Result<Option<BlobHolds>, MetaError> {
                let Some(size) = sqlx::query_scalar::<_, i64>("SELECT size FROM blobs WHERE digest = $1")
                    .bind(digest)
                    .fetch_optional(&mut *self.read_conn().await?)
                    .await?
                else {
                    return Ok(None);
                };
                let linked_in: Vec<i64> = sqlx::query_scalar("SELECT repo_id FROM repository_blobs WHERE digest = $1")
                    .bind(digest)
                    .fetch_all(&mut *self.read_conn().await?)
                    .await?;
                let pinned: i64 = sqlx::query_scalar(
                    "SELECT CASE WHEN EXISTS (SELECT 1 FROM uploads WHERE committing = $1)
                                   OR EXISTS (SELECT 1 FROM cache_entries WHERE digest = $1) THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END",
                )
                .bind(digest)
                .fetch_one(&mut *self.read_conn().await?)
                .await?;
                Ok(Some(BlobHolds { size: size as u64, linked_in, pinned: pinned != 0 }))
            }

            async fn gc_collect_manifests(
                &self,
                items: &[GcItem],
                policy: GcPolicy,
            ) -> Result<Vec<CollectedManifest>, MetaError> {
                let mut collected = Vec::new();
                for group in items.chunks(if $one_tx { items.len().max(1) } else { 1 }) {
                    let mut conn = self.write_conn().await?;
                    let mut tx = sqlx::Connection::begin_with(&mut *conn, $begin).await?;
                    for item in group {
                        collected.extend(collect_manifest_in(&mut tx, item, policy).await?);
                    }
                    tx.commit().await?;
                }
                Ok(collected)
            }

            async fn gc_collect_links(&self, items: &[GcItem]) -> Result<u64, MetaError> {
                let mut removed = 0;
                for group in items.chunks(if $one_tx { items.len().max(1) } else { 1 }) {
                    let mut conn = self.write_conn().await?;
                    let mut tx = sqlx::Connection::begin_with(&mut *conn, $begin).await?;
                    for item in group {
                        removed += u64::from(collect_link_in(&mut tx, item).await?);
                    }
                    tx.commit().await?;
                }
                Ok(removed)
            }

            async fn gc_claim_blobs(&self, items: &[GcItem]) -> Result<Vec<ClaimedBlob>, MetaError> {
                if items.is_empty() {
                    return Ok(Vec::new());
                }
                let mut digests: Vec<&str> = items.iter().map(|i| i.digest.as_str()).collect();
                digests.sort_unstable();
                digests.dedup();
                let list = digests_json(&digests);
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin_with(&mut *conn, $begin).await?;
                // Lock the rows first (sorted, so concurrent lockers never deadlock); the
                // statement below then sees every link committed before the lock.
                let lock = concat!(
                    "SELECT digest FROM blobs WHERE digest IN ",
                    $json_list,
                    " ORDER BY digest",
                    $for_update
                );
                sqlx::query(lock).bind(&list).fetch_all(&mut *tx).await?;
                let claim = concat!(
                    "UPDATE blobs SET deleting_since = $2 WHERE digest IN ",
                    $json_list,
                    " AND deleting_since IS NULL
                      AND NOT EXISTS (SELECT 1 FROM repository_blobs l WHERE l.digest = blobs.digest)
                      AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.committing = blobs.digest)
                      AND NOT EXISTS (SELECT 1 FROM cache_entries c WHERE c.digest = blobs.digest)
                     RETURNING digest, size"
                );
                let rows = sqlx::query(claim).bind(&list).bind(now_ms()).fetch_all(&mut *tx).await?;
                let mut claimed = Vec::with_capacity(rows.len());
                for row in &rows {
                    claimed.push(ClaimedBlob { digest: row.try_get(0)?, size: row.try_get::<i64, _>(1)? as u64 });
                }
                claimed.sort_by(|a, b| a.digest.cmp(&b.digest));
                let newest = items.iter().map(|i| i.queued_at).max().unwrap_or(0);
                let drop = concat!(
                    "DELETE FROM gc_queue WHERE kind = 'blob' AND repo_id = 0 AND queued_at <= $2 AND digest IN ",
                    $json_list
                );
                sqlx::query(drop).bind(&list).bind(newest).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(claimed)
            }

            async fn gc_tombstones(&self, limit: u32) -> Result<Vec<ClaimedBlob>, MetaError> {
                let rows = sqlx::query(
                    "SELECT digest, size FROM blobs WHERE deleting_since IS NOT NULL ORDER BY digest LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&mut *self.read_conn().await?)
                .await?;
                rows.iter()
                    .map(|row| Ok(ClaimedBlob { digest: row.try_get(0)?, size: row.try_get::<i64, _>(1)? as u64 }))
                    .collect()
            }

            async fn gc_finish_blobs(&self, digests: &[String]) -> Result<(), MetaError> {
                if digests.is_empty() {
                    return Ok(());
                }
                let sql =
                    concat!("DELETE FROM blobs WHERE deleting_since IS NOT NULL AND digest IN ", $json_list);
                sqlx::query(sql).bind(digests_json(digests)).execute(&mut *self.write_conn().await?).await?;
                Ok(())
            }

            async fn begin_blob_commit(&self, upload_id: &str, digest: &str) -> Result<bool, MetaError> {
                // A bookkeeping commit: the marker only matters while this process runs.
                self.mark_upload_committing(upload_id, digest).await
            }

            async fn gc_start_run(
                &self,
                node: &str,
                trigger: &str,
                dry_run: bool,
                grace_secs: i64,
            ) -> Result<i64, MetaError> {
                let now = now_ms();
                if !dry_run {
                    // The caller holds the lease: a real run still "running" was interrupted.
                    sqlx::query(
                        "UPDATE gc_runs SET state = 'failed', error = 'interrupted', finished_at = $1
                         WHERE state = 'running' AND dry_run = 0",
                    )
                    .bind(now)
                    .execute(&mut *self.write_conn().await?)
                    .await?;
                }
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO gc_runs (node, trigger, dry_run, grace_secs, state, started_at, updated_at)
                     VALUES ($1, $2, $3, $4, 'running', $5, $5) RETURNING id",
                )
                .bind(node)
                .bind(trigger)
                .bind(i64::from(dry_run))
                .bind(grace_secs)
                .bind(now)
                .fetch_one(&mut *self.write_conn().await?)
                .await?;
                Ok(id)
            }

            async fn gc_update_run(
                &self,
                id: i64,
                c: &GcCounters,
                state: &str,
                error: Option<&str>,
            ) -> Result<(), MetaError> {
                let now = now_ms();
                sqlx::query(
                    "UPDATE gc_runs SET examined = $2, manifests_deleted = $3, links_deleted = $4, blobs_deleted = $5,
                                        bytes_reclaimed = $6, state = $7, error = $8, updated_at = $9,
                                        finished_at = CASE WHEN $7 = 'running' THEN NULL ELSE $9 END
                     WHERE id = $1",
                )
                .bind(id)
                .bind(c.examined as i64)
                .bind(c.manifests_deleted as i64)
                .bind(c.links_deleted as i64)
                .bind(c.blobs_deleted as i64)
                .bind(c.bytes_reclaimed as i64)
                .bind(state)
                .bind(error)
                .bind(now)
                .execute(&mut *self.write_conn().await?)
                .await?;
                Ok(())
            }

            async fn gc_runs(&self, limit: u32) -> Result<Vec<GcRun>, MetaError> {
                let rows = sqlx::query("SELECT * FROM gc_runs ORDER BY id DESC LIMIT $1")
                    .bind(i64::from(limit))
                    .fetch_all(&mut *self.read_conn().await?)
                    .await?;
                rows.iter().map(run_from_row).collect()
            }
        }
    };
}
pub(crate) use gc_impl;
