//! Blob upload sessions: start, append (streamed or chunked), status, complete,
//! cancel, cross-repository mount and expiry.
//!
//! Each session's bytes are hashed as they arrive. After every accepted chunk the
//! offset, the serialized hash state and the blob store's cursor are saved in
//! one metadata row, so a restarted process or another node continues the
//! session exactly where it stood (sessions saved without a hash state are
//! rebuilt by re-reading the staged bytes). Chunks apply whole or not at all: a
//! failed or short chunk is rolled back before the error is returned.

use std::sync::Arc;

use berth_core::{Algorithm, ContentRange, Digest, Hasher, RepoName};
use berth_meta::{EventActor, EventDraft, EventKind, NewUpload, UploadProgress};
use berth_storage::{AppendRest, UploadCursor};
use futures_util::StreamExt;

use crate::{ByteStream, Registry, RegistryError};

/// In-memory state of one upload session.
#[derive(Debug)]
pub(crate) struct Session {
    hasher: Hasher,
    received: u64,
    /// The blob store's cursor as of `received`.
    cursor: UploadCursor,
    /// Set once completed or cancelled, for requests that waited on the lock.
    closed: bool,
    /// False until loaded from the session's metadata row.
    loaded: bool,
    /// The repository the session belongs to, once loaded.
    repo: Option<RepoName>,
    /// The work still running behind the last acknowledged chunk, where only
    /// this process changes its sessions' records (see `append_locked`): its
    /// progress record being written, maybe after its last bytes are hashed
    /// and written. It yields the hasher fed every byte.
    saving: Option<tokio::task::JoinHandle<Result<Hasher, Behind>>>,
}

/// Why the work behind an acknowledged chunk did not finish.
#[derive(Debug)]
enum Behind {
    /// The blob store could not write the chunk's last bytes: they are gone.
    Lost(berth_storage::StorageError),
    /// The progress record was not written (`None`: another writer changed it first).
    NotSaved(Option<berth_meta::MetaError>),
}

/// When a chunk's request may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Once the body has arrived: the store finishes hashing and writing it
    /// while the answer travels and the client's next request comes in.
    Received,
    /// Once every byte is hashed: the caller goes on to use the hash.
    Hashed,
}

impl Session {
    /// A session as its record (or its creation) describes it.
    fn loaded(hasher: Hasher, received: u64, cursor: UploadCursor, repo: &RepoName) -> Self {
        Session { hasher, received, cursor, closed: false, loaded: true, repo: Some(repo.clone()), saving: None }
    }

    /// Waits for the work behind the last acknowledged chunk, if any. If its
    /// record was not written, the session is reloaded from the record before
    /// its next use, which cuts off the staged bytes past it. If its bytes
    /// could not be written, that error is returned: the session has lost
    /// bytes it acknowledged.
    async fn settle_save(&mut self, id: &str) -> Result<(), berth_storage::StorageError> {
        let Some(saving) = self.saving.take() else { return Ok(()) };
        match saving.await {
            Ok(Ok(hasher)) => {
                self.hasher = hasher;
                Ok(())
            }
            Ok(Err(Behind::Lost(e))) => {
                tracing::error!(upload = id, error = %e, "writing an acknowledged upload chunk failed");
                self.loaded = false;
                Err(e)
            }
            Ok(Err(Behind::NotSaved(error))) => {
                let error = error.map_or_else(|| "changed by another writer".to_owned(), |e| e.to_string());
                tracing::warn!(upload = id, %error, "saving an upload's progress failed; reloading it");
                self.loaded = false;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(upload = id, error = %e, "saving an upload's progress failed; reloading it");
                self.loaded = false;
                Ok(())
            }
        }
    }

    fn unloaded() -> Self {
        Session {
            hasher: Algorithm::Sha256.hasher(),
            received: 0,
            cursor: UploadCursor::default(),
            closed: false,
            loaded: false,
            repo: None,
            saving: None,
        }
    }
}

/// Where an upload session stands.
#[derive(Debug, Clone)]
pub struct UploadState {
    pub id: String,
    /// Bytes received so far.
    pub received: u64,
}

/// What a mount request achieved.
#[derive(Debug)]
pub enum MountOutcome {
    /// The blob is now visible in the target repository.
    Mounted { size: u64 },
    /// Nothing to mount: a fresh upload session was opened instead.
    Started(UploadState),
}

/// How long a commit waits for the collector to finish deleting the same digest.
const COLLECTION_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl Registry {
    /// Opens a new upload session in `repo`, creating the repository.
    pub async fn start_upload(
        &self,
        repo: &RepoName,
        algorithm: Algorithm,
        actor: &EventActor,
    ) -> Result<UploadState, RegistryError> {
        let id = uuid::Uuid::new_v4().to_string();
        let cursor = self.blobs.upload_create(&id).await?;
        let upload =
            NewUpload { id: id.clone(), repo: repo.clone(), algorithm, cursor: cursor.0.clone(), actor: actor.clone() };
        if let Err(e) = self.meta.create_upload(&upload).await {
            self.blobs.upload_abort(&id, &cursor).await.ok();
            return Err(e.into());
        }
        let session = Session::loaded(algorithm.hasher(), 0, cursor, repo);
        self.sessions.lock().unwrap().insert(id.clone(), Arc::new(tokio::sync::Mutex::new(session)));
        Ok(UploadState { id, received: 0 })
    }

    /// Mounts `digest` into `repo` from `from`, or from anywhere when `from` is
    /// absent and automatic mounting is on; otherwise starts an upload.
    pub async fn mount_or_start(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
        actor: &EventActor,
    ) -> Result<MountOutcome, RegistryError> {
        let size = match from {
            Some(from) => self.meta.blob_in_repo(from, digest).await?,
            None if self.config.automatic_mount => self.meta.find_blob(digest).await?,
            None => None,
        };
        // Only mount bytes the store really has.
        if let Some(size) = size
            && self.blobs.stat(digest).await? == Some(size)
        {
            let mut mounted = blob_event(EventKind::BlobMount, actor, repo, digest, size);
            mounted.detail = serde_json::json!({ "from": from.map(RepoName::as_str) });
            // None: the collector took it since; the client uploads it instead.
            if let Some(size) = self.meta.mount_blob(repo, digest, &[mounted]).await? {
                return Ok(MountOutcome::Mounted { size });
            }
        }
        Ok(MountOutcome::Started(self.start_upload(repo, digest.algorithm(), actor).await?))
    }

    /// Stores a whole blob sent in one request (`POST ?digest=` or a single PUT).
    pub async fn put_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        declared_len: Option<u64>,
        body: ByteStream,
        actor: &EventActor,
    ) -> Result<u64, RegistryError> {
        let repo_existed = self.meta.repo_exists(repo).await?;
        let upload = self.start_upload(repo, digest.algorithm(), actor).await?;
        let result = self.complete_upload(repo, &upload.id, digest, Some((None, declared_len, body)), actor).await;
        if result.is_err() {
            self.cancel_upload(repo, &upload.id).await.ok();
            // A refused push must not leave behind the repository it created.
            if !repo_existed {
                self.meta.delete_repo_if_empty(repo).await.ok();
            }
        }
        result
    }

    /// Where session `id` of `repo` stands.
    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<UploadState, RegistryError> {
        let session = self.session_handle(id);
        let mut state = session.lock().await;
        self.load_current(repo, id, &mut state).await?;
        Ok(UploadState { id: id.to_owned(), received: state.received })
    }

    /// Appends a chunk. With `range`, the chunk must start exactly at the current
    /// offset and have exactly the range's length; `declared_len` (the request's
    /// Content-Length) must match what arrived.
    pub async fn append(
        &self,
        repo: &RepoName,
        id: &str,
        range: Option<ContentRange>,
        declared_len: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadState, RegistryError> {
        let session = self.session_handle(id);
        let mut state = session.lock().await;
        self.load_current(repo, id, &mut state).await?;
        self.append_locked(repo, id, &mut state, range, declared_len, body, Answer::Received).await?;
        Ok(UploadState { id: id.to_owned(), received: state.received })
    }

    #[allow(clippy::too_many_arguments)]
    async fn append_locked(
        &self,
        repo: &RepoName,
        id: &str,
        state: &mut Session,
        range: Option<ContentRange>,
        declared_len: Option<u64>,
        body: ByteStream,
        answer: Answer,
    ) -> Result<(), RegistryError> {
        let offset = state.received;
        // Refused before a byte is read when the chunk's size is known.
        if let Some(len) = declared_len.or(range.map(|r| r.len())) {
            self.check_storage_quota(repo, offset + len).await?;
        }
        if let Some(range) = range {
            if range.start != offset {
                return Err(RegistryError::UploadRangeInvalid { received: offset });
            }
            if declared_len.is_some_and(|len| len != range.len()) {
                return Err(RegistryError::UploadRangeInvalid { received: offset });
            }
        }
        let (written, cursor, rest) =
            self.blobs.upload_append_deferred(id, &state.cursor, offset, body, state.hasher.clone()).await?;
        let expected = range.map(|r| r.len()).or(declared_len);
        if expected.is_some_and(|len| len != written) {
            rest.await.ok();
            self.blobs.upload_rollback(id, &state.cursor, offset).await?;
            return Err(match range {
                Some(_) => RegistryError::UploadRangeInvalid { received: offset },
                None => RegistryError::SizeInvalid(format!("Content-Length said {expected:?}, got {written} bytes")),
            });
        }
        let received = offset + written;
        if self.meta.sessions_private_to_this_process() {
            // Nobody else reads the record before this process's next request
            // on the session, which waits for it (`load_current`): the chunk is
            // acknowledged while it is written. It is not synced either way
            // (a bookkeeping commit), so a crash could already lose it; the
            // next load then finds more staged bytes than recorded, cuts them
            // off, and the client resumes from the recorded offset. A chunk
            // answered once received has its last bytes hashed and written
            // behind the answer too, before its record.
            let hashed: AppendRest = match answer {
                Answer::Received => rest,
                Answer::Hashed => {
                    let hasher = rest.await?;
                    state.hasher = hasher.clone();
                    Box::pin(std::future::ready(Ok(hasher)))
                }
            };
            state.saving = Some(self.save_behind(id, offset, received, cursor.0.clone(), hashed));
            state.received = received;
            state.cursor = cursor;
            return Ok(());
        }
        let hasher = rest.await?;
        let progress = UploadProgress { received, hash_state: hasher.state(), cursor: cursor.0.clone() };
        match self.meta.save_upload_progress(id, offset, &progress).await {
            Ok(true) => {}
            Ok(false) => {
                // Another request (maybe on another node) appended first: this chunk is out of order.
                self.blobs.upload_rollback(id, &state.cursor, offset).await.ok();
                state.loaded = false;
                return Err(RegistryError::UploadRangeInvalid { received: offset });
            }
            Err(e) => {
                self.blobs.upload_rollback(id, &state.cursor, offset).await.ok();
                return Err(e.into());
            }
        }
        state.received = received;
        state.hasher = hasher;
        state.cursor = cursor;
        Ok(())
    }

    /// Saves the progress of a chunk of `id` that moved it from `offset` to
    /// `received`, in a task of its own, once `hashed` yields the hasher fed
    /// every byte. The task yields that hasher.
    fn save_behind(
        &self,
        id: &str,
        offset: u64,
        received: u64,
        cursor: String,
        hashed: AppendRest,
    ) -> tokio::task::JoinHandle<Result<Hasher, Behind>> {
        let (meta, id) = (self.meta.clone(), id.to_owned());
        tokio::spawn(async move {
            let hasher = hashed.await.map_err(Behind::Lost)?;
            let progress = UploadProgress { received, hash_state: hasher.state(), cursor };
            match meta.save_upload_progress(&id, offset, &progress).await {
                Ok(true) => Ok(hasher),
                Ok(false) => Err(Behind::NotSaved(None)),
                Err(e) => Err(Behind::NotSaved(Some(e))),
            }
        })
    }

    /// Finishes a session: appends the optional last chunk, checks the digest,
    /// commits the bytes and makes the blob visible in `repo`. Returns its size.
    pub async fn complete_upload(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        last_chunk: Option<(Option<ContentRange>, Option<u64>, ByteStream)>,
        actor: &EventActor,
    ) -> Result<u64, RegistryError> {
        let session = self.session_handle(id);
        let mut state = session.lock().await;
        self.load_current(repo, id, &mut state).await?;
        if let Some((range, declared_len, body)) = last_chunk {
            self.append_locked(repo, id, &mut state, range, declared_len, body, Answer::Hashed).await?;
        }
        let sealed = self.blobs.upload_seal(id, &state.cursor).await?;
        let computed = if state.hasher.algorithm() == digest.algorithm() {
            state.hasher.clone().finish()
        } else {
            self.rehash(id, &sealed, digest.algorithm(), state.received).await?
        };
        if &computed != digest {
            state.closed = true;
            state.cursor = sealed;
            self.discard(id, &state.cursor).await;
            return Err(RegistryError::DigestInvalid(format!("uploaded content has digest {computed}, not {digest}")));
        }
        if let Err(e) = self.claim_commit(id, digest).await {
            state.closed = true;
            self.discard(id, &sealed).await;
            return Err(e);
        }
        if let Err(e) = self.blobs.upload_commit(id, &sealed, digest).await {
            // The staged data may already be sealed; the client must start over.
            state.closed = true;
            self.discard(id, &sealed).await;
            return Err(e.into());
        }
        let pushed = blob_event(EventKind::BlobPush, actor, repo, digest, state.received);
        if let Err(e) = self.meta.finish_upload(id, repo, digest, state.received, &[pushed]).await {
            // The bytes are in place but nothing links them (a quota refused the
            // link, say): the collector decides whether anything else needs them.
            state.closed = true;
            self.discard(id, &sealed).await;
            if let Err(adopt) = self.meta.gc_adopt_blob(digest.as_str(), state.received).await {
                tracing::warn!(%digest, error = %adopt, "unlinked blob bytes left for berth fsck to report");
            }
            return Err(e.into());
        }
        state.closed = true;
        self.sessions.lock().unwrap().remove(id);
        Ok(state.received)
    }

    /// Marks the session as committing `digest` before its bytes go in place, so
    /// the garbage collector leaves that digest alone. While the collector is
    /// deleting an earlier copy's bytes this waits for it to finish.
    async fn claim_commit(&self, id: &str, digest: &Digest) -> Result<(), RegistryError> {
        let deadline = tokio::time::Instant::now() + COLLECTION_WAIT;
        while !self.meta.begin_blob_commit(id, digest.as_str()).await? {
            if tokio::time::Instant::now() >= deadline {
                return Err(RegistryError::Unavailable(format!(
                    "blob {digest} is being garbage-collected; push it again in a moment"
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Cancels a session and discards its bytes.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<(), RegistryError> {
        let session = self.session_handle(id);
        let mut state = session.lock().await;
        self.load_current(repo, id, &mut state).await?;
        state.closed = true;
        self.discard(id, &state.cursor).await;
        Ok(())
    }

    /// Discards sessions idle for longer than the configured expiry. Returns how many.
    pub async fn expire_uploads(&self) -> Result<usize, RegistryError> {
        let cutoff = berth_meta::now_unix() - self.config.upload_expiry.as_secs() as i64;
        let stale = self.meta.stale_uploads(cutoff, 1000).await?;
        for (id, cursor) in &stale {
            let session = self.session_handle(id);
            let mut state = session.lock().await;
            state.settle_save(id).await.ok();
            state.closed = true;
            self.discard(id, &UploadCursor(cursor.clone())).await;
        }
        Ok(stale.len())
    }

    /// Waits for the progress records still being written behind acknowledged
    /// chunks (see `append_locked`), so that a server shutting down keeps every
    /// chunk it answered. Call it once no request is running.
    pub async fn settle_upload_saves(&self) {
        let sessions: Vec<_> = self.sessions.lock().unwrap().iter().map(|(id, s)| (id.clone(), s.clone())).collect();
        for (id, session) in sessions {
            // A failure is logged; the record then holds what survived.
            session.lock().await.settle_save(&id).await.ok();
        }
    }

    async fn discard(&self, id: &str, cursor: &UploadCursor) {
        self.sessions.lock().unwrap().remove(id);
        if let Err(e) = self.meta.delete_upload(id).await {
            tracing::warn!(upload = id, error = %e, "could not delete upload record");
        }
        if let Err(e) = self.blobs.upload_abort(id, cursor).await {
            tracing::warn!(upload = id, error = %e, "could not discard staged upload data");
        }
    }

    /// This process's lock and cached state for session `id` (possibly not loaded yet).
    fn session_handle(&self, id: &str) -> Arc<tokio::sync::Mutex<Session>> {
        let mut sessions = self.sessions.lock().unwrap();
        sessions.entry(id.to_owned()).or_insert_with(|| Arc::new(tokio::sync::Mutex::new(Session::unloaded()))).clone()
    }

    /// Brings `state` (locked) up to date with the session's metadata row. The
    /// row is the truth: another node, or this process before a restart, may have
    /// moved the session on since `state` was cached. Where only this process
    /// changes its sessions' records (the embedded database), a state it loaded
    /// (and saved since) is as current as the row, and the row is not read again.
    async fn load_current(&self, repo: &RepoName, id: &str, state: &mut Session) -> Result<(), RegistryError> {
        if state.settle_save(id).await.is_err() {
            // The client was told it had sent bytes the store lost: it must start over.
            state.closed = true;
            let cursor = state.cursor.clone();
            self.discard(id, &cursor).await;
            return Err(RegistryError::UploadUnknown);
        }
        if self.meta.sessions_private_to_this_process()
            && state.loaded
            && !state.closed
            && state.repo.as_ref() == Some(repo)
        {
            return Ok(());
        }
        let upload = match self.meta.get_upload(repo, id).await? {
            Some(upload) if !state.closed => upload,
            _ => {
                state.closed = true;
                self.sessions.lock().unwrap().remove(id);
                return Err(RegistryError::UploadUnknown);
            }
        };
        let cursor = UploadCursor(upload.cursor.clone());
        if state.loaded && state.received == upload.received && state.cursor == cursor {
            return Ok(());
        }
        let Some(staged) = self.blobs.upload_size(id, &cursor).await? else {
            // The record outlived its bytes (crash between commit and cleanup).
            state.closed = true;
            self.meta.delete_upload(id).await?;
            self.sessions.lock().unwrap().remove(id);
            return Err(RegistryError::UploadUnknown);
        };
        if staged < upload.received {
            tracing::warn!(upload = id, staged, recorded = upload.received, "staged data lost; dropping upload");
            state.closed = true;
            self.discard(id, &cursor).await;
            return Err(RegistryError::UploadUnknown);
        }
        if staged > upload.received {
            // Bytes of a chunk that was never acknowledged.
            self.blobs.upload_rollback(id, &cursor, upload.received).await?;
        }
        // A session saved before this process started, on a store whose staged
        // bytes may not have survived a power loss, is hashed again from those
        // bytes: a saved hash state of bytes the file lost would let the
        // commit publish the file under a digest it does not have.
        let trusted = self.blobs.staged_data_survives_power_loss() || upload.updated_at > self.started_at;
        let restored =
            upload.hash_state.as_deref().filter(|_| trusted).and_then(|s| Hasher::from_state(upload.algorithm, s));
        let hasher = match restored {
            Some(hasher) => hasher,
            // Nothing received yet (a session opened on another node): nothing to re-read.
            None if upload.received == 0 => upload.algorithm.hasher(),
            None => self.rehash_staged(id, &cursor, upload.algorithm.hasher(), upload.received).await?,
        };
        *state = Session::loaded(hasher, upload.received, cursor, repo);
        Ok(())
    }

    /// Re-hashes the first `len` staged bytes (sessions saved without hash state).
    async fn rehash_staged(
        &self,
        id: &str,
        cursor: &UploadCursor,
        mut hasher: Hasher,
        len: u64,
    ) -> Result<Hasher, RegistryError> {
        let mut seen = 0u64;
        let mut data = self.blobs.upload_read(id, cursor).await?;
        while let Some(chunk) = data.next().await {
            let chunk = chunk.map_err(|e| RegistryError::Internal(e.to_string()))?;
            let take = chunk.len().min((len - seen) as usize);
            hasher.update(&chunk[..take]);
            seen += take as u64;
        }
        Ok(hasher)
    }

    async fn rehash(
        &self,
        id: &str,
        sealed: &UploadCursor,
        algorithm: Algorithm,
        len: u64,
    ) -> Result<Digest, RegistryError> {
        Ok(self.rehash_staged(id, sealed, algorithm.hasher(), len).await?.finish())
    }
}

/// A blob event in `repo`.
pub(crate) fn blob_event(
    kind: EventKind,
    actor: &EventActor,
    repo: &RepoName,
    digest: &Digest,
    size: u64,
) -> EventDraft {
    EventDraft::new(kind, actor).repository(repo.as_str()).digest(digest.as_str()).size(size)
}

#[cfg(test)]
mod tests {
    use berth_meta::{Metadata, SqliteMeta};
    use bytes::Bytes;

    use super::*;

    /// A request body made of `pieces`.
    fn body_of(pieces: impl IntoIterator<Item = Bytes>) -> ByteStream {
        let pieces: Vec<_> = pieces.into_iter().map(Ok).collect();
        futures_util::stream::iter(pieces).boxed()
    }

    #[tokio::test]
    async fn settling_writes_the_record_of_every_acknowledged_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn Metadata> = Arc::new(SqliteMeta::open_with(&dir.path().join("t.db"), false).await.unwrap());
        assert!(meta.sessions_private_to_this_process(), "the case where records are written behind the answer");
        let blobs = Arc::new(berth_storage::memory::MemoryStore::new());
        let registry = Registry::new(blobs, meta.clone(), crate::RegistryConfig::default());
        let repo: RepoName = "library/app".parse().unwrap();
        let upload = registry.start_upload(&repo, Algorithm::Sha256, &EventActor::system("test")).await.unwrap();
        let chunk = body_of([Bytes::from(vec![7u8; 1000])]);
        let state = registry.append(&repo, &upload.id, None, Some(1000), chunk).await.unwrap();
        assert_eq!(state.received, 1000);

        registry.settle_upload_saves().await;
        let session = registry.session_handle(&upload.id);
        assert!(session.lock().await.saving.is_none(), "no record is still being written");
        let record = meta.get_upload(&repo, &upload.id).await.unwrap().unwrap();
        assert_eq!(record.received, 1000, "the record holds the acknowledged chunk");
    }

    /// A registry on the embedded database and the filesystem store (staged
    /// uploads under `dir/blobs/uploads`), without fsync.
    async fn registry_on_disk(dir: &std::path::Path) -> (Registry, Arc<dyn Metadata>) {
        let meta: Arc<dyn Metadata> = Arc::new(SqliteMeta::open_with(&dir.join("t.db"), false).await.unwrap());
        let blobs = Arc::new(berth_storage::FsStore::open_with(dir.join("blobs"), false).await.unwrap());
        (Registry::new(blobs, meta.clone(), crate::RegistryConfig::default()), meta)
    }

    #[tokio::test]
    async fn a_chunk_whose_bytes_fail_after_the_answer_ends_its_session() {
        let dir = tempfile::tempdir().unwrap();
        let (registry, meta) = registry_on_disk(dir.path()).await;
        let repo: RepoName = "library/app".parse().unwrap();
        let upload = registry.start_upload(&repo, Algorithm::Sha256, &EventActor::system("test")).await.unwrap();
        let chunk = || body_of([Bytes::from(vec![7u8; 1000])]);
        registry.append(&repo, &upload.id, None, Some(1000), chunk()).await.unwrap();

        // The staged file now writes to a full disk. The chunk is one piece,
        // queued before the store tries to write it: the answer comes first.
        let staged = dir.path().join("blobs/uploads").join(&upload.id);
        registry.upload_status(&repo, &upload.id).await.unwrap();
        std::fs::remove_file(&staged).unwrap();
        std::os::unix::fs::symlink("/dev/full", &staged).unwrap();
        let state = registry.append(&repo, &upload.id, None, Some(1000), chunk()).await.unwrap();
        assert_eq!(state.received, 2000, "answered once the body arrived");

        let next = registry.upload_status(&repo, &upload.id).await;
        assert!(matches!(next, Err(RegistryError::UploadUnknown)), "the session lost acknowledged bytes: {next:?}");
        assert!(meta.get_upload(&repo, &upload.id).await.unwrap().is_none(), "its record is gone");
        assert!(std::fs::symlink_metadata(&staged).is_err(), "and its staged data");
    }

    #[tokio::test]
    async fn chunks_answered_before_their_records_commit_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (registry, meta) = registry_on_disk(dir.path()).await;
        let repo: RepoName = "library/app".parse().unwrap();
        let actor = EventActor::system("test");
        let upload = registry.start_upload(&repo, Algorithm::Sha256, &actor).await.unwrap();
        let data: Vec<u8> = (0..9 * 1024 * 1024 + 17).map(|i| (i % 241) as u8).collect();
        let mut offset = 0;
        for size in [3 * 1024 * 1024, 5 * 1024 * 1024 + 3, 1, 1024 * 1024 + 13] {
            let body = body_of(data[offset..offset + size].chunks(100_000).map(Bytes::copy_from_slice));
            let state = registry.append(&repo, &upload.id, None, Some(size as u64), body).await.unwrap();
            offset += size;
            assert_eq!(state.received, offset as u64);
        }
        let status = registry.upload_status(&repo, &upload.id).await.unwrap();
        assert_eq!(status.received, offset as u64, "a status waits for every record");
        let record = meta.get_upload(&repo, &upload.id).await.unwrap().unwrap();
        assert_eq!(record.received, offset as u64, "the last chunk's record is written");
        let restored = Hasher::from_state(Algorithm::Sha256, record.hash_state.as_deref().unwrap()).unwrap();
        assert_eq!(restored.finish(), Digest::sha256(&data[..offset]), "with the hash state of every byte");

        let last = body_of([Bytes::copy_from_slice(&data[offset..])]);
        registry.append(&repo, &upload.id, None, None, last).await.unwrap();
        let digest = Digest::sha256(&data);
        let size = registry.complete_upload(&repo, &upload.id, &digest, None, &actor).await.unwrap();
        assert_eq!(size, data.len() as u64);
        assert!(meta.get_upload(&repo, &upload.id).await.unwrap().is_none(), "the session is over");
    }
}
