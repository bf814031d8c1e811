//! Blob upload sessions: start, append (streamed or chunked), status, complete,
//! cancel, cross-repository mount and expiry.
//!
//! Each session's bytes are hashed as they arrive. The hash state lives in
//! memory; after a restart (or on another node) it is rebuilt by re-reading the
//! staged bytes, so sessions survive restarts. Chunks apply whole or not at all:
//! a failed or short chunk is truncated away before the error is returned.

use std::sync::Arc;

use berth_core::{Algorithm, ContentRange, Digest, Hasher, RepoName};
use berth_meta::NewUpload;
use futures_util::StreamExt;

use crate::{ByteStream, Registry, RegistryError};

/// In-memory state of one upload session.
#[derive(Debug)]
pub(crate) struct Session {
    hasher: Hasher,
    received: u64,
    /// Set once completed or cancelled, for requests that waited on the lock.
    closed: bool,
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

impl Registry {
    /// Opens a new upload session in `repo`, creating the repository.
    pub async fn start_upload(&self, repo: &RepoName, algorithm: Algorithm) -> Result<UploadState, RegistryError> {
        let id = uuid::Uuid::new_v4().to_string();
        self.blobs.upload_create(&id).await?;
        let upload = NewUpload { id: id.clone(), repo: repo.clone(), algorithm };
        if let Err(e) = self.meta.create_upload(&upload).await {
            self.blobs.upload_abort(&id).await.ok();
            return Err(e.into());
        }
        let session = Session { hasher: algorithm.hasher(), received: 0, closed: false };
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
            self.meta.link_blob(repo, digest, size).await?;
            return Ok(MountOutcome::Mounted { size });
        }
        Ok(MountOutcome::Started(self.start_upload(repo, digest.algorithm()).await?))
    }

    /// Stores a whole blob sent in one request (`POST ?digest=` or a single PUT).
    pub async fn put_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        declared_len: Option<u64>,
        body: ByteStream,
    ) -> Result<u64, RegistryError> {
        let repo_existed = self.meta.repo_exists(repo).await?;
        let upload = self.start_upload(repo, digest.algorithm()).await?;
        let result = async {
            self.append(repo, &upload.id, None, declared_len, body).await?;
            self.complete_upload(repo, &upload.id, digest, None).await
        }
        .await;
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
        let session = self.session(repo, id).await?;
        let state = session.lock().await;
        if state.closed {
            return Err(RegistryError::UploadUnknown);
        }
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
        let session = self.session(repo, id).await?;
        let mut state = session.lock().await;
        if state.closed {
            return Err(RegistryError::UploadUnknown);
        }
        self.append_locked(id, &mut state, range, declared_len, body).await?;
        Ok(UploadState { id: id.to_owned(), received: state.received })
    }

    async fn append_locked(
        &self,
        id: &str,
        state: &mut Session,
        range: Option<ContentRange>,
        declared_len: Option<u64>,
        body: ByteStream,
    ) -> Result<(), RegistryError> {
        let offset = state.received;
        if let Some(range) = range {
            if range.start != offset {
                return Err(RegistryError::UploadRangeInvalid { received: offset });
            }
            if declared_len.is_some_and(|len| len != range.len()) {
                return Err(RegistryError::UploadRangeInvalid { received: offset });
            }
        }
        let mut hasher = state.hasher.clone();
        let written = match self.blobs.upload_append(id, offset, body, &mut hasher).await {
            Ok(n) => n,
            Err(e) => {
                self.blobs.upload_truncate(id, offset).await.ok();
                return Err(e.into());
            }
        };
        let expected = range.map(|r| r.len()).or(declared_len);
        if expected.is_some_and(|len| len != written) {
            self.blobs.upload_truncate(id, offset).await?;
            return Err(match range {
                Some(_) => RegistryError::UploadRangeInvalid { received: offset },
                None => RegistryError::SizeInvalid(format!("Content-Length said {expected:?}, got {written} bytes")),
            });
        }
        self.meta.set_upload_received(id, offset + written).await?;
        state.received = offset + written;
        state.hasher = hasher;
        Ok(())
    }

    /// Finishes a session: appends the optional last chunk, checks the digest,
    /// commits the bytes and makes the blob visible in `repo`. Returns its size.
    pub async fn complete_upload(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        last_chunk: Option<(Option<ContentRange>, Option<u64>, ByteStream)>,
    ) -> Result<u64, RegistryError> {
        let session = self.session(repo, id).await?;
        let mut state = session.lock().await;
        if state.closed {
            return Err(RegistryError::UploadUnknown);
        }
        if let Some((range, declared_len, body)) = last_chunk {
            self.append_locked(id, &mut state, range, declared_len, body).await?;
        }
        let computed = if state.hasher.algorithm() == digest.algorithm() {
            state.hasher.clone().finish()
        } else {
            self.rehash(id, digest.algorithm(), state.received).await?
        };
        if &computed != digest {
            state.closed = true;
            self.discard(id).await;
            return Err(RegistryError::DigestInvalid(format!("uploaded content has digest {computed}, not {digest}")));
        }
        self.blobs.upload_commit(id, digest).await?;
        self.meta.link_blob(repo, digest, state.received).await?;
        state.closed = true;
        self.meta.delete_upload(id).await?;
        self.sessions.lock().unwrap().remove(id);
        Ok(state.received)
    }

    /// Cancels a session and discards its bytes.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<(), RegistryError> {
        let session = self.session(repo, id).await?;
        let mut state = session.lock().await;
        if state.closed {
            return Err(RegistryError::UploadUnknown);
        }
        state.closed = true;
        self.discard(id).await;
        Ok(())
    }

    /// Discards sessions idle for longer than the configured expiry. Returns how many.
    pub async fn expire_uploads(&self) -> Result<usize, RegistryError> {
        let cutoff = berth_meta::now_unix() - self.config.upload_expiry.as_secs() as i64;
        let stale = self.meta.stale_uploads(cutoff, 1000).await?;
        for id in &stale {
            let live = self.sessions.lock().unwrap().get(id).cloned();
            match live {
                Some(session) => {
                    let mut state = session.lock().await;
                    state.closed = true;
                    self.discard(id).await;
                }
                None => self.discard(id).await,
            }
        }
        Ok(stale.len())
    }

    async fn discard(&self, id: &str) {
        self.sessions.lock().unwrap().remove(id);
        if let Err(e) = self.meta.delete_upload(id).await {
            tracing::warn!(upload = id, error = %e, "could not delete upload record");
        }
        if let Err(e) = self.blobs.upload_abort(id).await {
            tracing::warn!(upload = id, error = %e, "could not discard staged upload data");
        }
    }

    /// The live session for `id`, loaded from metadata when this process has
    /// not seen it yet (after a restart, or a session begun on another node).
    async fn session(&self, repo: &RepoName, id: &str) -> Result<Arc<tokio::sync::Mutex<Session>>, RegistryError> {
        let upload = self.meta.get_upload(repo, id).await?.ok_or(RegistryError::UploadUnknown)?;
        if let Some(live) = self.sessions.lock().unwrap().get(id) {
            return Ok(live.clone());
        }
        let Some(staged) = self.blobs.upload_size(id).await? else {
            // The record outlived its bytes (crash between commit and cleanup).
            self.meta.delete_upload(id).await?;
            return Err(RegistryError::UploadUnknown);
        };
        if staged < upload.received {
            tracing::warn!(upload = id, staged, recorded = upload.received, "staged data lost; dropping upload");
            self.discard(id).await;
            return Err(RegistryError::UploadUnknown);
        }
        if staged > upload.received {
            // Bytes of a chunk that was never acknowledged.
            self.blobs.upload_truncate(id, upload.received).await?;
        }
        let mut hasher = upload.algorithm.hasher();
        let mut data = self.blobs.upload_read(id).await?;
        while let Some(chunk) = data.next().await {
            hasher.update(&chunk.map_err(|e| RegistryError::Internal(e.to_string()))?);
        }
        let session = Session { hasher, received: upload.received, closed: false };
        let mut sessions = self.sessions.lock().unwrap();
        Ok(sessions.entry(id.to_owned()).or_insert_with(|| Arc::new(tokio::sync::Mutex::new(session))).clone())
    }

    async fn rehash(&self, id: &str, algorithm: Algorithm, len: u64) -> Result<Digest, RegistryError> {
        let mut hasher = algorithm.hasher();
        let mut seen = 0u64;
        let mut data = self.blobs.upload_read(id).await?;
        while let Some(chunk) = data.next().await {
            let chunk = chunk.map_err(|e| RegistryError::Internal(e.to_string()))?;
            let take = chunk.len().min((len - seen) as usize);
            hasher.update(&chunk[..take]);
            seen += take as u64;
        }
        Ok(hasher.finish())
    }
}
