//! The filesystem blob store (the embedded default).
//!
//! Layout under the root: `blobs/<alg>/<first two hex>/<hex>` for committed
//! blobs, `uploads/<id>` for staged data. A commit fsyncs the staged file, renames
//! it into place and fsyncs the directory, so after a crash a blob file either
//! does not exist or holds exactly the bytes its name promises.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use berth_core::{ByteRange, Digest, Hasher};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::fs;
use tokio_util::io::ReaderStream;

use crate::{AppendRest, BlobStore, ByteStream, StorageError, UploadCursor};

mod mapped;
mod read;
mod staged;
#[cfg(test)]
use staged::SYNC_EVERY;

/// Received chunks queued for the writer thread, at most (the byte budgets of
/// `staged::Writers::enter` are the real limit).
const WRITE_QUEUE: usize = 32;
/// Blobs as files under a root directory.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
    /// fsync staged data before it becomes a blob (the default). Off trades
    /// durability on power loss for speed; a process crash is safe either way.
    durable: bool,
    /// Uploads whose background flush failed.
    failed_syncs: FailedSyncs,
    /// Emptied staging files for new uploads.
    spares: std::sync::Arc<SpareFiles>,
    /// Its appends at work: large ones bypass the page cache (`O_DIRECT`)
    /// while few run at once, until the filesystem refuses.
    writers: std::sync::Arc<staged::Writers>,
    /// Direct writes that appends left running, by upload id: the next append
    /// queues its writes after them, anything else that touches that upload's
    /// staged file waits for them.
    tails: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, staged::Tail>>>,
}

impl FsStore {
    /// Opens (creating if needed) a durable store rooted at `root`.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        Self::open_with(root, true).await
    }

    /// Opens a store, choosing whether commits fsync (`durable`).
    pub async fn open_with(root: impl Into<PathBuf>, durable: bool) -> Result<Self, StorageError> {
        let root = root.into();
        fs::create_dir_all(root.join("blobs")).await?;
        fs::create_dir_all(root.join("uploads")).await?;
        let spares = std::sync::Arc::new(SpareFiles::adopt(root.join("uploads")).await?);
        let writers = std::sync::Arc::default();
        Ok(FsStore { root, durable, failed_syncs: FailedSyncs::default(), spares, writers, tails: Default::default() })
    }

    /// Where a committed blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.encoded();
        self.root.join("blobs").join(digest.algorithm().as_str()).join(&hex[..2]).join(hex)
    }

    /// Cuts the staged data of `id` back to `len` bytes.
    pub async fn truncate(&self, id: &str, len: u64) -> Result<(), StorageError> {
        if !is_safe_id(id) {
            return Err(StorageError::NotFound);
        }
        self.settle(id).await?;
        Ok(cut_to(&self.upload_path(id), len).await?)
    }

    /// The direct writes the last append of `id` left running, if any.
    fn take_tail(&self, id: &str) -> Option<staged::Tail> {
        self.tails.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id)
    }

    /// Waits for the writes the last append of `id` left running.
    async fn settle(&self, id: &str) -> Result<(), StorageError> {
        let Some(tail) = self.take_tail(id) else { return Ok(()) };
        let (failed, id) = (self.failed_syncs.clone(), id.to_owned());
        blocking(move || Ok(tail.wait(&failed, &id).map(drop)?)).await
    }

    fn upload_path(&self, id: &str) -> PathBuf {
        // Upload ids are server-generated UUIDs; refuse anything else outright.
        debug_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        self.root.join("uploads").join(id)
    }
}

/// Cuts the staged file at `path` back to `len` bytes.
async fn cut_to(path: &Path, len: u64) -> std::io::Result<()> {
    fs::OpenOptions::new().write(true).open(path).await?.set_len(len).await
}

/// Persists directory entries just made in `dir` (a rename into it, a new
/// subdirectory): a file's fsync does not cover its directory entry (see the
/// qmail `syncdir` notes).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Creates `dir` (and missing parents) and persists each new entry when
/// `durable`. Returns quickly when it exists, as it does for all but a blob
/// shard's first blob.
fn ensure_dir(dir: &Path, durable: bool) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = dir.parent().ok_or(e)?;
            ensure_dir(parent, durable)?;
            match std::fs::create_dir(dir) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
                other => other?,
            }
        }
        Err(e) => return Err(e),
    }
    if durable && let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Moves the staged file of upload `id` to `target`, all in one blocking call
/// (one thread hop per commit, not one per file operation). When `durable`,
/// the data reaches the disk before the rename and the rename before the
/// return. A blob already in place is left as it is and the staged copy dropped.
fn commit_staged(
    staged: &Path,
    target: &Path,
    durable: bool,
    failed_syncs: &FailedSyncs,
    spares: &SpareFiles,
    id: &str,
) -> Result<(), StorageError> {
    if target.try_exists()? {
        spares.recycle(staged)?;
        return Ok(());
    }
    if durable {
        // fdatasync covers the size and the blocks; the times are not needed.
        std::fs::File::open(staged)?.sync_data()?;
        // A background flush that failed earlier may have consumed the error
        // this sync would otherwise report: never publish such a file.
        if failed_syncs.take(id) {
            return Err(std::io::Error::other("an earlier flush of this upload failed").into());
        }
    }
    let dir = target.parent().expect("blob paths have a parent");
    ensure_dir(dir, durable)?;
    std::fs::rename(staged, target)?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Staging files kept for reuse, at most this many.
const SPARE_FILES: usize = 64;

/// Emptied staging files (`uploads/.spare-*`), reused for new uploads.
///
/// Dropping the staged copy of a blob the store already has, or of an
/// abandoned upload, and creating a file for the next upload costs an inode
/// each time; on ext4 without a journal, allocating one scans past every
/// recently freed inode, which took about 7 % of the CPU time of repeated small
/// pushes. A spare is renamed into place instead.
#[derive(Debug)]
struct SpareFiles {
    dir: PathBuf,
    idle: std::sync::Mutex<Vec<PathBuf>>,
    named: std::sync::atomic::AtomicU64,
}

impl SpareFiles {
    /// Takes over the spares a previous process left in `dir`. New names carry
    /// the process id and start from the clock, so they never reuse an adopted
    /// name or one that a second process on the same directory makes.
    async fn adopt(dir: PathBuf) -> Result<Self, StorageError> {
        let scan = dir.clone();
        let found = blocking(move || {
            let mut found = Vec::new();
            for entry in std::fs::read_dir(&scan)? {
                let entry = entry?;
                if entry.file_name().to_string_lossy().starts_with(".spare-") {
                    if found.len() < SPARE_FILES && entry.metadata()?.len() == 0 {
                        found.push(entry.path());
                    } else {
                        std::fs::remove_file(entry.path()).ok();
                    }
                }
            }
            Ok(found)
        })
        .await?;
        let first = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        Ok(SpareFiles {
            dir,
            idle: std::sync::Mutex::new(found),
            named: std::sync::atomic::AtomicU64::new(first as u64),
        })
    }

    fn take(&self) -> Option<PathBuf> {
        self.lock().pop()
    }

    /// Makes `path` (a staging file) a spare, or removes it when there are enough.
    fn recycle(&self, path: &Path) -> std::io::Result<()> {
        if self.lock().len() >= SPARE_FILES {
            return remove_if_present(path);
        }
        match std::fs::OpenOptions::new().write(true).open(path) {
            Ok(file) => {
                if file.set_len(0).is_err() {
                    // Not a file that can be emptied and reused; discard it all the same.
                    return remove_if_present(path);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        let n = self.named.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let spare = self.dir.join(format!(".spare-{}-{n}", std::process::id()));
        std::fs::rename(path, &spare)?;
        self.lock().push(spare);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Creates the empty staging file `path`, from a spare when there is one.
fn create_staging(path: &Path, spares: &SpareFiles) -> std::io::Result<()> {
    while let Some(spare) = spares.take() {
        match std::fs::rename(&spare, path) {
            Ok(()) => return Ok(()),
            // Taken by another process on the same directory meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
    std::fs::File::create(path).map(drop)
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Runs `work` on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work).await.map_err(std::io::Error::other)?
}

/// Uploads that lost a write after their append answered: a background flush
/// or the direct writes of a chunk's end failed (their commit must fail too).
#[derive(Debug, Clone, Default)]
struct FailedSyncs(std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>);

impl FailedSyncs {
    /// Remembers that upload `id` lost a write after its append answered.
    fn mark(&self, id: &str) {
        self.lock().insert(id.to_owned());
    }

    /// Forgets upload `id`; returns whether it had lost a write.
    fn take(&self, id: &str) -> bool {
        self.lock().remove(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Committed blobs under `blobs/<alg>/<xx>/<hex>`; files whose names are not a
/// digest (stray files, editor leftovers) are skipped.
fn walk_blobs(root: &Path) -> Vec<(Digest, u64)> {
    let mut found = Vec::new();
    let dirs = |p: &Path| std::fs::read_dir(p).into_iter().flatten().flatten();
    for alg in dirs(root) {
        for shard in dirs(&alg.path()) {
            for file in dirs(&shard.path()) {
                let name = format!("{}:{}", alg.file_name().to_string_lossy(), file.file_name().to_string_lossy());
                if let (Ok(digest), Ok(meta)) = (name.parse::<Digest>(), file.metadata()) {
                    found.push((digest, meta.len()));
                }
            }
        }
    }
    found
}

fn tokio_stream_from<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> BoxStream<'static, T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

fn is_safe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[async_trait]
impl BlobStore for FsStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        match fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream, StorageError> {
        let path = self.blob_path(digest);
        let file =
            tokio::task::spawn_blocking(move || std::fs::File::open(path)).await.map_err(std::io::Error::other)??;
        let file_len = file.metadata()?.len();
        let (start, len) = match range {
            Some(r) => (r.start, r.len()),
            None => (0, file_len),
        };
        Ok(read::chunks(file, file_len, start, len))
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        match fs::remove_file(self.blob_path(digest)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn list(&self) -> BoxStream<'_, Result<(Digest, u64), StorageError>> {
        let root = self.root.join("blobs");
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::task::spawn_blocking(move || {
            for (digest, size) in walk_blobs(&root) {
                if tx.blocking_send(Ok((digest, size))).is_err() {
                    break;
                }
            }
        });
        tokio_stream_from(rx)
    }

    async fn upload_create(&self, id: &str) -> Result<UploadCursor, StorageError> {
        if !is_safe_id(id) {
            return Err(StorageError::NotFound);
        }
        let (path, spares) = (self.upload_path(id), self.spares.clone());
        blocking(move || Ok(create_staging(&path, &spares)?)).await?;
        Ok(UploadCursor::default())
    }

    async fn upload_append(
        &self,
        id: &str,
        cursor: &UploadCursor,
        offset: u64,
        data: ByteStream,
        hasher: &mut Hasher,
    ) -> Result<(u64, UploadCursor), StorageError> {
        let (written, cursor, rest) = self.upload_append_deferred(id, cursor, offset, data, hasher.clone()).await?;
        *hasher = rest.await?;
        Ok((written, cursor))
    }

    async fn upload_append_deferred(
        &self,
        id: &str,
        _cursor: &UploadCursor,
        offset: u64,
        mut data: ByteStream,
        mut hasher: Hasher,
    ) -> Result<(u64, UploadCursor, AppendRest), StorageError> {
        if !is_safe_id(id) {
            return Err(StorageError::NotFound);
        }
        // Receive here, write on a blocking thread: the two overlap on separate
        // cores. The hashing runs on the writer (fed a copy of the hasher,
        // returned at the end) while few uploads write, else here.
        let (tx, rx) = tokio::sync::mpsc::channel(WRITE_QUEUE);
        let entry = self.writers.enter();
        let (queue_bytes, hash_in_writer) = (entry.queue_bytes, entry.hash_in_writer);
        let budget = std::sync::Arc::new(tokio::sync::Semaphore::new(queue_bytes as usize));
        let path = self.upload_path(id);
        let append = staged::Append {
            path: path.clone(),
            offset,
            durable: self.durable,
            failed_syncs: self.failed_syncs.clone(),
            id: id.to_owned(),
            writers: self.writers.clone(),
            entered: entry.counted,
            budget: budget.clone(),
            previous: self.take_tail(id),
        };
        let fed = hash_in_writer.then(|| hasher.clone());
        let writer = tokio::task::spawn_blocking(move || staged::write_queued(append, rx, fed));
        let mut written = 0u64;
        let mut failure = None;
        let mut writer_stopped = false;
        while let Some(chunk) = data.next().await {
            match chunk {
                Ok(chunk) => {
                    if !hash_in_writer {
                        hasher.update(&chunk);
                    }
                    written += chunk.len() as u64;
                    let share = u32::try_from(chunk.len()).unwrap_or(u32::MAX).min(queue_bytes);
                    let permit =
                        budget.clone().acquire_many_owned(share).await.expect("the queue budget is never closed");
                    if tx.send((chunk, permit)).await.is_err() {
                        writer_stopped = true; // it failed; `rest` has its error
                        break;
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        // The writer hashes and writes what is still queued; the answer need not wait for it.
        let tails = self.tails.clone();
        let upload = id.to_owned();
        let rest = async move {
            let outcome = writer.await.map_err(std::io::Error::other).and_then(|r| r).map(|(fed, tail)| {
                if let Some(tail) = tail {
                    tails.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(upload, tail);
                }
                fed.unwrap_or(hasher)
            });
            if outcome.is_err() {
                // Leave the staged data as it was before this append. The
                // failed writer took over the previous append's writes and
                // left none running, so there is nothing to settle first.
                cut_to(&path, offset).await.ok();
            }
            Ok(outcome?)
        };
        if let Some(e) = failure {
            rest.await.ok();
            self.truncate(id, offset).await.ok();
            return Err(e.into());
        }
        if writer_stopped {
            // The body was not all read: the writer's error is the answer.
            rest.await?;
            return Err(std::io::Error::other("the upload's writer stopped before the body ended").into());
        }
        Ok((written, UploadCursor::default(), Box::pin(rest)))
    }

    async fn upload_rollback(&self, id: &str, _cursor: &UploadCursor, len: u64) -> Result<(), StorageError> {
        self.truncate(id, len).await
    }

    async fn upload_size(&self, id: &str, _cursor: &UploadCursor) -> Result<Option<u64>, StorageError> {
        if !is_safe_id(id) {
            return Ok(None);
        }
        self.settle(id).await?;
        match fs::metadata(self.upload_path(id)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn upload_seal(&self, _id: &str, cursor: &UploadCursor) -> Result<UploadCursor, StorageError> {
        Ok(cursor.clone())
    }

    async fn upload_read(&self, id: &str, _cursor: &UploadCursor) -> Result<ByteStream, StorageError> {
        if !is_safe_id(id) {
            return Err(StorageError::NotFound);
        }
        self.settle(id).await?;
        let file = fs::File::open(self.upload_path(id)).await?;
        Ok(ReaderStream::with_capacity(file, read::READ_CHUNK).boxed())
    }

    async fn upload_commit(&self, id: &str, _cursor: &UploadCursor, digest: &Digest) -> Result<(), StorageError> {
        if !is_safe_id(id) {
            return Err(StorageError::NotFound);
        }
        self.settle(id).await?;
        let (staged, target) = (self.upload_path(id), self.blob_path(digest));
        let (durable, failed_syncs, id) = (self.durable, self.failed_syncs.clone(), id.to_owned());
        let spares = self.spares.clone();
        blocking(move || commit_staged(&staged, &target, durable, &failed_syncs, &spares, &id)).await
    }

    async fn upload_abort(&self, id: &str, _cursor: &UploadCursor) -> Result<(), StorageError> {
        if !is_safe_id(id) {
            return Ok(());
        }
        // Its outcome no longer matters, but nothing may write into the file
        // once it is a spare.
        self.settle(id).await.ok();
        self.failed_syncs.take(id);
        let (path, spares) = (self.upload_path(id), self.spares.clone());
        blocking(move || Ok(spares.recycle(&path)?)).await
    }

    /// Appends are not synced until the commit (and not at all with fsync
    /// off): after a power loss the file may lack bytes, or hold zeros, that
    /// the session's record counts.
    fn staged_data_survives_power_loss(&self) -> bool {
        false
    }

    /// A missing file proves nothing on a filesystem, so this checks that the
    /// blob tree is there and that a file can be written in the staging area.
    async fn health_check(&self) -> Result<(), StorageError> {
        static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        if !fs::metadata(self.root.join("blobs")).await?.is_dir() {
            return Err(std::io::Error::other("blobs/ is not a directory").into());
        }
        let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let probe = self.root.join("uploads").join(format!(".health-{}-{n}", std::process::id()));
        fs::write(&probe, b"ok").await?;
        fs::remove_file(&probe).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::Algorithm;
    use bytes::Bytes;

    #[tokio::test]
    async fn fs_store_passes_the_backend_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).await.unwrap();
        crate::testsuite::run_all(&store).await;
    }

    #[tokio::test]
    async fn committed_blobs_live_under_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).await.unwrap();
        let digest = Digest::sha256(b"abc");
        let cursor = store.upload_create("u1").await.unwrap();
        let mut h = digest.algorithm().hasher();
        let data = futures_util::stream::iter([Ok(bytes::Bytes::from_static(b"abc"))]).boxed();
        let (_, cursor) = store.upload_append("u1", &cursor, 0, data, &mut h).await.unwrap();
        store.upload_commit("u1", &cursor, &digest).await.unwrap();
        let path = store.blob_path(&digest);
        assert!(path.ends_with(format!("blobs/sha256/ba/{}", digest.encoded())));
        assert_eq!(std::fs::read(path).unwrap(), b"abc");
        assert!(std::fs::read_dir(dir.path().join("uploads")).unwrap().next().is_none());
    }

    #[tokio::test]
    async fn a_deferred_append_reports_failed_writes_before_or_after_it_answers() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).await.unwrap();
        let cursor = store.upload_create("u1").await.unwrap();
        // The staged file now writes to a full disk.
        let staged = dir.path().join("uploads/u1");
        std::fs::remove_file(&staged).unwrap();
        std::os::unix::fs::symlink("/dev/full", &staged).unwrap();
        // One piece: queued before the writer has tried to write it.
        let data = futures_util::stream::iter([Ok(Bytes::from(vec![1u8; 1000]))]).boxed();
        let (written, _, rest) =
            store.upload_append_deferred("u1", &cursor, 0, data, Algorithm::Sha256.hasher()).await.unwrap();
        assert_eq!(written, 1000, "answered once the body arrived");
        let failed = rest.await.expect_err("the failed write reaches the rest of the append");
        assert!(failed.to_string().contains("space"), "the disk's error: {failed}");

        // A body larger than the writer's queue: the receiving sees the writer
        // stop before the body ends, and the append answers with its error.
        let pieces: Vec<_> = (0..64).map(|_| Ok(Bytes::from(vec![2u8; 64 << 10]))).collect();
        let data = futures_util::stream::iter(pieces).boxed();
        let failed = store.upload_append_deferred("u1", &cursor, 0, data, Algorithm::Sha256.hasher()).await;
        let failed = failed.err().expect("the append fails before it answers");
        assert!(failed.to_string().contains("space"), "the disk's error: {failed}");
        std::fs::remove_file(&staged).unwrap();
    }

    #[tokio::test]
    async fn a_durable_upload_past_the_flush_interval_commits_whole() {
        // Crosses SYNC_EVERY: through the page cache (the background flusher
        // starts mid-upload) and, where the filesystem allows it, with O_DIRECT.
        for direct_io in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let store = FsStore::open(dir.path()).await.unwrap();
            if !direct_io {
                store.writers.refuse_direct_for_tests();
            }
            let chunk = Bytes::from(vec![7u8; 1 << 20]);
            let chunks = (SYNC_EVERY >> 20) + 3;
            let mut expected = Algorithm::Sha256.hasher();
            for _ in 0..chunks {
                expected.update(&chunk);
            }
            let digest = expected.finish();
            let cursor = store.upload_create("big").await.unwrap();
            let data = futures_util::stream::iter((0..chunks).map(move |_| Ok(chunk.clone()))).boxed();
            let mut h = Algorithm::Sha256.hasher();
            let (written, cursor) = store.upload_append("big", &cursor, 0, data, &mut h).await.unwrap();
            assert_eq!(written, chunks << 20);
            assert_eq!(h.finish(), digest);
            store.upload_commit("big", &cursor, &digest).await.unwrap();
            assert_eq!(store.stat(&digest).await.unwrap(), Some(chunks << 20));
            assert_eq!(std::fs::read(store.blob_path(&digest)).unwrap(), vec![7u8; (chunks << 20) as usize]);
        }
    }

    #[tokio::test]
    async fn what_follows_a_chunk_waits_for_the_writes_it_left_running() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).await.unwrap();
        let data: Vec<u8> = (0..(14usize << 20) + 12_345).map(|i| (i * 31 % 251) as u8).collect();
        let cursor = store.upload_create("chunked").await.unwrap();
        // Whether the upload's last append left direct writes running.
        let left_running = || store.tails.lock().unwrap().contains_key("chunked");
        let direct = staged::direct_supported(dir.path());
        let mut h = Algorithm::Sha256.hasher();
        let mut offset = 0;
        // Each chunk past the 8th MiB ends with direct writes still running.
        for (i, len) in [(9 << 20) + 5, (3 << 20) + 4_099, (2 << 20) + 8_241].into_iter().enumerate() {
            let pieces: Vec<_> =
                data[offset..offset + len].chunks(64 << 10).map(|p| Ok(Bytes::copy_from_slice(p))).collect();
            store
                .upload_append("chunked", &cursor, offset as u64, futures_util::stream::iter(pieces).boxed(), &mut h)
                .await
                .unwrap();
            offset += len;
            assert_eq!(left_running(), direct, "chunk {i} ended with direct writes running");
            match i {
                0 => {
                    let read: Vec<Bytes> =
                        store.upload_read("chunked", &cursor).await.unwrap().map(|c| c.unwrap()).collect().await;
                    let read = read.concat();
                    assert!(read == data[..offset], "the staged file read after chunk 1 holds all of it");
                }
                1 => assert_eq!(store.upload_size("chunked", &cursor).await.unwrap(), Some(offset as u64)),
                _ => continue,
            }
            assert!(!left_running(), "reading the staged file waited for the writes");
        }
        let digest = h.finish();
        assert_eq!(digest, Digest::sha256(&data));
        store.upload_commit("chunked", &cursor, &digest).await.unwrap();
        assert!(!left_running(), "the commit waited for the writes");
        assert!(std::fs::read(store.blob_path(&digest)).unwrap() == data, "the blob holds every byte in place");
    }

    #[tokio::test]
    async fn dropped_staging_files_are_emptied_and_reused() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let uploads = dir.path().join("uploads");
        let spares = || -> Vec<(String, u64)> {
            let mut found: Vec<_> = std::fs::read_dir(&uploads)
                .unwrap()
                .map(|e| e.unwrap())
                .filter(|e| e.file_name().to_string_lossy().starts_with(".spare-"))
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len()))
                .collect();
            found.sort();
            found
        };
        let store = FsStore::open(dir.path()).await.unwrap();
        let cursor = store.upload_create("u1").await.unwrap();
        let data = futures_util::stream::iter([Ok(Bytes::from_static(b"abc"))]).boxed();
        let mut h = Algorithm::Sha256.hasher();
        store.upload_append("u1", &cursor, 0, data, &mut h).await.unwrap();
        let inode = std::fs::metadata(uploads.join("u1")).unwrap().ino();
        store.upload_abort("u1", &cursor).await.unwrap();
        assert_eq!(store.upload_size("u1", &cursor).await.unwrap(), None);
        let kept = spares();
        assert_eq!(kept.iter().map(|(_, len)| *len).collect::<Vec<_>>(), [0], "one empty spare: {kept:?}");

        // A store opened later on the same directory reuses it.
        drop(store);
        let store = FsStore::open(dir.path()).await.unwrap();
        let cursor = store.upload_create("u2").await.unwrap();
        assert_eq!(std::fs::metadata(uploads.join("u2")).unwrap().ino(), inode, "the spare became u2");
        assert_eq!(store.upload_size("u2", &cursor).await.unwrap(), Some(0), "and starts empty");
        assert!(spares().is_empty());

        // The staged copy of a blob already stored becomes a spare too.
        let digest = Digest::sha256(b"xyz");
        for id in ["u2", "u3"] {
            let cursor = if id == "u2" { cursor.clone() } else { store.upload_create(id).await.unwrap() };
            let data = futures_util::stream::iter([Ok(Bytes::from_static(b"xyz"))]).boxed();
            store.upload_append(id, &cursor, 0, data, &mut Algorithm::Sha256.hasher()).await.unwrap();
            store.upload_commit(id, &cursor, &digest).await.unwrap();
        }
        assert_eq!(std::fs::read(store.blob_path(&digest)).unwrap(), b"xyz");
        assert_eq!(spares().len(), 1);
    }

    #[tokio::test]
    async fn path_tricks_in_upload_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).await.unwrap();
        assert!(store.upload_create("../evil").await.is_err());
        assert_eq!(store.upload_size("../../etc/passwd", &UploadCursor::default()).await.unwrap(), None);
    }
}
