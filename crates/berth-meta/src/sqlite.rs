//! The SQLite metadata backend (the embedded default).
//!
//! WAL mode with one writer connection and a few readers ([`conns`]): readers never
//! block the writer, and serialising writes in-process avoids `SQLITE_BUSY`. The
//! writes on every push path run on a second writer connection of their own
//! thread ([`thread`]), only while they hold the first, so writes stay serial.
//! By default (`synchronous=FULL`) every acknowledged transaction survives a
//! power loss; `durable = false` (`synchronous=NORMAL`) still survives process
//! crashes and never corrupts the database, but a power loss may undo the last
//! transactions.

use std::path::Path;
use std::time::Duration;

use berth_core::{Digest, RepoName, Tag};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};

use crate::{EventActor, EventDraft, EventKind, MetaError, NewManifest, NewUpload, UploadProgress, now_unix};

mod batch;
mod conns;
mod thread;

use conns::{ReadConnection, Readers, WriteConnection, WriteLock};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "registry", include_str!("../migrations/sqlite/0001_registry.sql")),
    (2, "upload_progress", include_str!("../migrations/sqlite/0002_upload_progress.sql")),
    (3, "leases", include_str!("../migrations/sqlite/0003_leases.sql")),
    (4, "access", include_str!("../migrations/sqlite/0004_access.sql")),
    (5, "proxy", include_str!("../migrations/sqlite/0005_proxy.sql")),
    (6, "repository_details", include_str!("../migrations/sqlite/0006_repository_details.sql")),
    (7, "events", include_str!("../migrations/sqlite/0007_events.sql")),
    (8, "immutability", include_str!("../migrations/sqlite/0008_immutability.sql")),
    (9, "gc", include_str!("../migrations/sqlite/0009_gc.sql")),
    (10, "retention", include_str!("../migrations/sqlite/0010_retention.sql")),
    (11, "quotas", include_str!("../migrations/sqlite/0011_quotas.sql")),
    (12, "search_backlog", include_str!("../migrations/sqlite/0012_search_backlog.sql")),
];

/// sqlx read connections.
const READERS: usize = 4;

/// Metadata in a SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteMeta {
    /// The write lock, with the sqlx writer connection ([`conns`]).
    writer: WriteLock,
    reader: std::sync::Arc<Readers>,
    /// Runs the hot writes, holding `writer` meanwhile ([`thread`]).
    thread: std::sync::Arc<thread::WriterThread>,
    /// Commits are synced to disk (`synchronous=FULL`).
    durable: bool,
    /// Group commit of the hot acknowledged writes ([`WalSync`]).
    wal: std::sync::Arc<WalSync>,
}

/// Counts an acknowledged write in flight until dropped (when commits are durable).
struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize, bool);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// Group commit for the busiest acknowledged writes (blob links, manifests).
///
/// With `synchronous=FULL` every commit fsyncs the WAL while it holds the
/// single writer connection, so concurrent pushes queue behind each other's
/// fsyncs. These writes instead commit without waiting for the disk, release
/// the writer, and then wait here: one `fdatasync` of the WAL covers every
/// commit that finished before it began, and the writer runs the next
/// transactions meanwhile. Nothing is acknowledged before its frames are on
/// disk. Frames that SQLite checkpointed into the database before the sync
/// were synced by the checkpoint itself (it syncs the WAL before and the
/// database after), and a WAL file that is gone was checkpointed on close.
#[derive(Debug)]
struct WalSync {
    /// The `-wal` file next to the database.
    path: std::path::PathBuf,
    /// Group-committed transactions so far.
    committed: std::sync::atomic::AtomicU64,
    /// How many of them are known to be on disk; held while syncing.
    synced: tokio::sync::Mutex<u64>,
    /// `fdatasync` calls made (fewer than commits when they were grouped).
    syncs: std::sync::atomic::AtomicU64,
    /// Acknowledged writes in flight; one alone is not grouped.
    in_flight: std::sync::atomic::AtomicUsize,
}

impl WalSync {
    /// Returns once the caller's commit (just finished) is on disk.
    async fn wait_durable(&self) -> Result<(), MetaError> {
        use std::sync::atomic::Ordering::SeqCst;
        let mine = self.committed.fetch_add(1, SeqCst) + 1;
        let mut synced = self.synced.lock().await;
        if *synced >= mine {
            return Ok(());
        }
        let covered = self.committed.load(SeqCst);
        let path = self.path.clone();
        let flushed = tokio::task::spawn_blocking(move || match std::fs::File::open(&path) {
            Ok(wal) => wal.sync_data(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        flushed.map_err(|e| MetaError::Database(sqlx::Error::Io(e)))?;
        self.syncs.fetch_add(1, SeqCst);
        *synced = covered;
        Ok(())
    }
}

impl SqliteMeta {
    /// Opens (creating and migrating if needed) the database at `path`, with
    /// every commit synced to disk.
    pub async fn open(path: &Path) -> Result<Self, MetaError> {
        Self::open_with(path, true).await
    }

    /// Opens the database, choosing whether commits are synced to disk (`durable`).
    pub async fn open_with(path: &Path, durable: bool) -> Result<Self, MetaError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if durable { SqliteSynchronous::Full } else { SqliteSynchronous::Normal })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = conns::write_lock(&options).await?;
        crate::migrate::migrator(MIGRATIONS).run(&mut *conns::write_connection(&writer).await?).await?;
        let reader = std::sync::Arc::new(Readers::new(options, READERS));
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        let wal = WalSync {
            path: wal_path.into(),
            committed: Default::default(),
            synced: Default::default(),
            syncs: Default::default(),
            in_flight: Default::default(),
        };
        let thread = std::sync::Arc::new(thread::WriterThread::start(path, durable)?);
        Ok(SqliteMeta { writer, reader, thread, durable, wal: std::sync::Arc::new(wal) })
    }

    /// Runs `job` (one transaction) on the writer thread as an acknowledged
    /// write. Alone, it commits with its own fsync as usual; while other such
    /// writes are in flight it is group-committed ([`WalSync`]).
    async fn hot_write<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut rusqlite::Connection) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, MetaError> {
        use std::sync::atomic::Ordering::SeqCst;
        let grouped = self.durable && self.wal.in_flight.fetch_add(1, SeqCst) > 0;
        let _done = InFlight(&self.wal.in_flight, self.durable);
        let written = self.locked_write(grouped, job).await?;
        if grouped {
            self.wal.wait_durable().await?;
        }
        Ok(written)
    }

    /// Marks upload `upload_id` as committing `digest`, unless the collector is
    /// deleting that digest's bytes (false).
    pub(crate) async fn mark_upload_committing(&self, upload_id: &str, digest: &str) -> Result<bool, MetaError> {
        let (upload_id, digest) = (upload_id.to_owned(), digest.to_owned());
        self.bookkeeping_write(move |conn| batch::mark_upload_committing(conn, &upload_id, &digest)).await
    }

    /// Runs `job` (one transaction) on the writer thread as a bookkeeping
    /// commit: upload sessions and commit markers, which no acknowledged
    /// response depends on.
    ///
    /// Such a commit does not wait for the disk (`synchronous=NORMAL`). The WAL
    /// is appended in order, so the next durable commit (a blob link, a
    /// manifest, a tag) syncs these frames with its own; a process crash loses
    /// nothing, and a power loss can only forget an unfinished upload session,
    /// whose client then starts that blob over. On the single SQLite writer
    /// this takes three of the four fsyncs of a blob push off the serial path.
    async fn bookkeeping_write<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut rusqlite::Connection) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, MetaError> {
        self.locked_write(true, job).await
    }

    /// Runs `job` on the writer thread while holding the write lock; a
    /// `relaxed` job commits without waiting for the disk.
    async fn locked_write<T: Send + 'static>(
        &self,
        relaxed: bool,
        job: impl FnOnce(&mut rusqlite::Connection) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, MetaError> {
        // The job takes the lock with it: it stays held until the job is done
        // on the writer thread, even if this request is dropped meanwhile.
        let lock = self.writer.clone().lock_owned().await;
        self.thread
            .run(relaxed, move |conn| {
                let _lock = lock;
                job(conn)
            })
            .await
    }

    /// Holds the write lock, for a write through sqlx.
    pub(crate) async fn write_conn(&self) -> Result<WriteConnection, MetaError> {
        conns::write_connection(&self.writer).await
    }

    /// A read connection (also for bulk exports, `meta-migrate`).
    pub(crate) async fn read_conn(&self) -> Result<ReadConnection<'_>, MetaError> {
        self.reader.get().await
    }

    /// Closes the writer thread's connection and the sqlx connections, flushing the WAL.
    pub async fn close(&self) {
        self.thread.close().await;
        self.reader.close().await;
        conns::close_writer(&self.writer).await;
    }
}

/// Creates a repository (known not to exist). A new repository gets a
/// `repository.create` event by `actor` (none without one).
async fn create_repo(
    tx: &mut Transaction<'_, Sqlite>,
    repo: &RepoName,
    actor: Option<&EventActor>,
) -> Result<i64, MetaError> {
    let id: i64 =
        sqlx::query_scalar("INSERT INTO repositories (name, project, created_at) VALUES (?, ?, ?) RETURNING id")
            .bind(repo.as_str())
            .bind(repo.project())
            .bind(now_unix())
            .fetch_one(&mut **tx)
            .await?;
    if let Some(actor) = actor {
        let create = EventDraft::new(EventKind::RepositoryCreate, actor).repository(repo.as_str());
        events::insert_events(tx, &[create]).await?;
    }
    Ok(id)
}

/// Finds or creates a repository inside a write transaction.
/// A new repository gets a `repository.create` event by `actor` (none without one).
async fn ensure_repo(
    tx: &mut Transaction<'_, Sqlite>,
    repo: &RepoName,
    actor: Option<&EventActor>,
) -> Result<i64, MetaError> {
    let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
        .bind(repo.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    match existing {
        Some(id) => Ok(id),
        None => create_repo(tx, repo, actor).await,
    }
}

/// The writes the registry tables' shared code leaves to each dialect (see
/// `registry_sql.rs`): statement batches on the writer thread ([`batch`]).
impl SqliteMeta {
    /// Stores a manifest and points `tags` at it
    /// (see [`ManifestStore::put_manifest`](crate::ManifestStore::put_manifest)).
    async fn tuned_put_manifest(&self, repo: &RepoName, m: NewManifest, tags: &[Tag]) -> Result<(), MetaError> {
        let (repo, tags) = (repo.clone(), tags.to_vec());
        self.hot_write(move |conn| batch::put_manifest(conn, &repo, &m, &tags)).await
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
        let (repo, digest, events) = (repo.clone(), digest.clone(), events.to_vec());
        let finished_upload = finished_upload.map(str::to_owned);
        self.hot_write(move |conn| batch::link_blob(conn, &repo, &digest, size, &events, finished_upload.as_deref()))
            .await
    }

    /// Opens an upload session
    /// (see [`UploadStore::create_upload`](crate::UploadStore::create_upload)).
    async fn tuned_create_upload(&self, upload: &NewUpload) -> Result<(), MetaError> {
        // A bookkeeping commit: after a power loss the client starts the blob over.
        let upload = upload.clone();
        self.bookkeeping_write(move |conn| batch::create_upload(conn, &upload)).await
    }

    /// Records an upload's progress unless another request moved it first.
    async fn tuned_save_upload_progress(
        &self,
        id: &str,
        expected_received: u64,
        progress: &UploadProgress,
    ) -> Result<bool, MetaError> {
        // Progress of an unfinished upload is a bookkeeping commit. Its chunk's
        // bytes are not fsynced either until the final PUT, and an fsync per PATCH
        // would queue behind the blob's own background flush. After a power loss
        // a client resumes from an older offset (the 416 says which); nothing
        // acknowledged as a blob is lost.
        let (id, progress) = (id.to_owned(), progress.clone());
        self.bookkeeping_write(move |conn| batch::save_upload_progress(conn, &id, expected_received, &progress)).await
    }

    /// Ends an upload session.
    async fn tuned_delete_upload(&self, id: &str) -> Result<bool, MetaError> {
        // A bookkeeping commit: a session that comes back after a power loss
        // expires like any abandoned one.
        let id = id.to_owned();
        self.bookkeeping_write(move |conn| batch::delete_upload(conn, &id)).await
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::*;
    use crate::BlobIndex;

    /// Concurrent pushes share WAL syncs: links that commit while a sync is
    /// running are covered by the next one, and each returns only once a sync
    /// covered it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn group_commit_shares_wal_syncs() {
        use std::sync::atomic::Ordering::SeqCst;
        let dir = tempfile::tempdir().unwrap();
        let meta = SqliteMeta::open(&dir.path().join("berth.db")).await.unwrap();
        let repo: RepoName = "group/commit".parse().unwrap();
        // Hold the writer so that every link below is in flight at once.
        let busy = meta.write_conn().await.unwrap();
        let pushes: Vec<_> = (0..64)
            .map(|i| {
                let (meta, repo) = (meta.clone(), repo.clone());
                tokio::spawn(async move {
                    let digest = Digest::sha256(format!("blob {i}").as_bytes());
                    meta.link_blob(&repo, &digest, 1, &[]).await.unwrap();
                    digest
                })
            })
            .collect();
        while meta.wal.in_flight.load(SeqCst) < 64 {
            tokio::task::yield_now().await;
        }
        // Stand for a long sync: the writer commits every grouped link meanwhile,
        // and none of them may return before a sync.
        let syncing = meta.wal.synced.lock().await;
        drop(busy);
        while meta.wal.committed.load(SeqCst) < 63 {
            tokio::task::yield_now().await;
        }
        let returned = pushes.iter().filter(|p| p.is_finished()).count();
        assert!(returned <= 1, "{returned} links returned before their sync (only the first, alone, syncs itself)");
        drop(syncing);
        let mut linked = Vec::new();
        for push in pushes {
            linked.push(push.await.unwrap());
        }
        let (grouped, syncs) = (meta.wal.committed.load(SeqCst), meta.wal.syncs.load(SeqCst));
        assert_eq!(grouped, 63, "all but the first link were grouped");
        assert_eq!(*meta.wal.synced.lock().await, grouped, "every grouped commit is covered by a sync");
        assert_eq!(syncs, 1, "{grouped} links committed during a sync need one more");
        assert_eq!(meta.wal.in_flight.load(SeqCst), 0);
        for digest in &linked {
            assert_eq!(meta.blob_in_repo(&repo, digest).await.unwrap(), Some(1));
        }
    }

    #[tokio::test]
    async fn sqlite_passes_the_backend_suite() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqliteMeta::open(&dir.path().join("berth.db")).await.unwrap();
        crate::testsuite::run_all(&meta).await;
    }

    /// Retention reads one project's repositories and one repository's rows
    /// through indexes: no query plan scans a whole table.
    #[tokio::test]
    async fn retention_reads_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqliteMeta::open(&dir.path().join("berth.db")).await.unwrap();
        for (sql, index) in [
            (crate::retention::REPOSITORIES_SQL, "repositories_project"),
            (crate::retention::TAGS_SQL, "tags_pushed"),
            (crate::retention::MANIFESTS_SQL, "manifest_refs_repo_child"),
        ] {
            let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .bind("p/r")
                .bind(0_i64)
                .fetch_all(&mut *meta.read_conn().await.unwrap())
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>(3))
                .collect();
            assert!(plan.iter().all(|step| !step.starts_with("SCAN")), "{sql}: {plan:?}");
            assert!(plan.iter().any(|step| step.contains(index)), "{sql}: {plan:?}");
        }
    }

    /// Run with `cargo test -p berth-meta --release -- --ignored --nocapture scale`.
    #[tokio::test]
    #[ignore = "seeds 100k repositories (about a minute in debug builds)"]
    async fn sqlite_search_at_100k_repositories() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqliteMeta::open_with(&dir.path().join("berth.db"), false).await.unwrap();
        let n = crate::testsuite::SCALE_REPOS;
        let mut conn = meta.write_conn().await.unwrap();
        let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
        for sql in [
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
             INSERT INTO repositories (name, project, created_at)
             SELECT 'proj' || (i % 1000) || '/app-' || i, 'proj' || (i % 1000), 0 FROM n",
            "INSERT INTO manifests (repo_id, digest, media_type, size, payload, created_at)
             SELECT id, 'sha256:' || printf('%064d', id), 'application/vnd.oci.image.manifest.v1+json', 2, x'7b7d', 0
             FROM repositories WHERE ? > 0",
            "INSERT INTO tags (repo_id, name, manifest_digest, updated_at)
             SELECT r.id, 'v' || (CAST(substr(r.name, instr(r.name, '-') + 1) AS INTEGER) % 500), m.digest, 0
             FROM repositories r JOIN manifests m ON m.repo_id = r.id WHERE ? > 0",
        ] {
            sqlx::query(sql).bind(n).execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
        sqlx::query("ANALYZE").execute(&mut *conn).await.unwrap();
        drop(conn);
        crate::testsuite::search_at_scale(&meta, Duration::from_millis(500)).await;
    }

    #[tokio::test]
    async fn reopening_keeps_data_and_skips_applied_migrations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.db");
        let repo: RepoName = "a/b".parse().unwrap();
        let meta = SqliteMeta::open(&path).await.unwrap();
        meta.link_blob(&repo, &Digest::sha256(b"x"), 1, &[]).await.unwrap();
        meta.close().await;
        let meta = SqliteMeta::open(&path).await.unwrap();
        assert_eq!(meta.blob_in_repo(&repo, &Digest::sha256(b"x")).await.unwrap(), Some(1));
    }
}

/// Repositories, blobs, manifests, tags, leases and upload sessions (shared SQL
/// around the tuned writes above). Upload sessions are private to this process:
/// one berth server serves the embedded database, and `berth gc`, `berth user`
/// and the other tools that may open it alongside never change a session.
mod registry {
    crate::registry_sql::registry_impl!(super::SqliteMeta, sqlx::Sqlite, "", true);
}

/// Users, projects, tokens, sessions, settings and the audit log (shared SQL).
mod access {
    crate::access_sql::access_impl!(super::SqliteMeta, sqlx::Sqlite);
}

/// Upstreams and cache bookkeeping of the pull-through cache (shared SQL).
mod proxy {
    crate::proxy_sql::proxy_impl!(super::SqliteMeta, sqlx::Sqlite);
}

/// The event log, webhooks and deliveries (shared SQL).
mod events {
    crate::events_sql::events_impl!(super::SqliteMeta, sqlx::Sqlite, "(SELECT value FROM json_each($1))");
}

/// Image listings, search, repository details and usage counters (shared SQL;
/// search through the FTS5 trigram tables of migration 0006).
mod catalog {
    crate::catalog_sql::catalog_impl!(
        super::SqliteMeta,
        sqlx::Sqlite,
        super::MIGRATIONS,
        crate::catalog_sql::SearchSql {
            repo_substring: "SELECT rowid FROM repositories_fts WHERE repositories_fts MATCH $4",
            repo_prefix: "SELECT id FROM repositories WHERE name >= $4 AND name < $5",
            // Names not yet indexed (migration 0012) match by `instr` on the
            // phrase's text: tag names are ASCII, where `lower` folds as the
            // trigram tokenizer does.
            tag_substring: "SELECT rowid FROM tag_names_fts WHERE tag_names_fts MATCH $4
                            UNION ALL
                            SELECT id FROM tag_names
                             WHERE id > (SELECT indexed FROM search_backlog WHERE name = 'tag_names_fts')
                               AND instr(lower(name), replace(substr($4, 2, length($4) - 2), '\"\"', '\"')) > 0",
            backlog: Some(crate::catalog_sql::SearchBacklog {
                waiting: "SELECT COUNT(*) FROM tag_names
                               WHERE id > (SELECT indexed FROM search_backlog WHERE name = 'tag_names_fts')",
                index: &[
                    "INSERT INTO tag_names_fts (rowid, name)
                 SELECT id, name FROM tag_names
                  WHERE id > (SELECT indexed FROM search_backlog WHERE name = 'tag_names_fts') ORDER BY id",
                    "UPDATE search_backlog SET indexed = (SELECT COALESCE(MAX(id), 0) FROM tag_names)
                  WHERE name = 'tag_names_fts'",
                ],
            }),
            tag_prefix: "SELECT id FROM tag_names WHERE lower(name) >= $4 AND lower(name) < $5",
            trigram_form: crate::catalog::fts5_phrase,
            explain: "EXPLAIN QUERY PLAN",
            explain_setup: &[],
            plan_column: 3,
        }
    );
}

/// Tag immutability rules and the in-transaction check (shared SQL).
pub(crate) mod immutable {
    crate::immutability::immutability_impl!(super::SqliteMeta, sqlx::Sqlite);
}

/// The garbage collector's queue, checks and deletions (shared SQL).
pub(crate) mod collector {
    crate::gc::gc_impl!(
        super::SqliteMeta,
        sqlx::Sqlite,
        true,
        "BEGIN IMMEDIATE",
        "",
        "(SELECT value FROM json_each($1))"
    );
}

/// Retention policies and the reads that evaluate them (shared SQL).
mod retention {
    crate::retention::retention_impl!(super::SqliteMeta, sqlx::Sqlite);
}

/// Project quotas: limits and the usage triggers keep (shared SQL).
mod quotas {
    crate::quota::quota_impl!(super::SqliteMeta, sqlx::Sqlite);
}
