//! The S3-compatible blob store (AWS S3, MinIO, Ceph RGW, R2, versitygw, …),
//! built on `object_store`.
//!
//! Layout under the bucket prefix: `blobs/<alg>/<xx>/<hex>` for committed blobs,
//! `uploads/<id>/…` for staged data. An upload is an S3 multipart upload at
//! `uploads/<id>/data`; because S3 parts must be at least 5 MiB (but PATCH
//! chunks can be tiny), bytes that do not fill a part yet are kept as a small
//! tail object and carried into the next append. The multipart id, the finished
//! parts and the tail are the upload's [`UploadCursor`], which the registry
//! saves in the database with the offset: any node can continue the upload,
//! and an append whose cursor is not saved simply never happened. Committing
//! completes the multipart upload and copies it server-side to its digest key.

use std::sync::Arc;

use async_trait::async_trait;
use berth_core::{ByteRange, Digest, Hasher};
use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::{BlobStore, ByteStream, StorageError, UploadCursor};

/// Size of each multipart part; S3's minimum for all but the last part is 5 MiB.
const PART_SIZE: usize = 8 * 1024 * 1024;

/// Where and how to reach the bucket.
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix inside the bucket (`""` or `path/inside/bucket/`).
    pub prefix: String,
    /// Custom endpoint (`http://127.0.0.1:9000`) for S3-compatible servers.
    pub endpoint: Option<String>,
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`) instead of virtual hosts.
    pub path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// Blobs as objects in an S3-compatible bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    store: Arc<AmazonS3>,
    prefix: String,
}

/// The persisted progress of one staged upload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct S3Cursor {
    /// Multipart upload id, created with the first full part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    multipart: Option<String>,
    /// ETags of the finished parts, in order.
    #[serde(default)]
    parts: Vec<String>,
    /// The pending tail object (bytes not yet in a part) and its length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tail: Option<(String, u64)>,
    /// Bytes staged in parts and tail together.
    #[serde(default)]
    size: u64,
    /// Set once the staged data is one finished object at `uploads/<id>/data`.
    #[serde(default)]
    sealed: bool,
}

impl S3Cursor {
    fn parse(cursor: &UploadCursor) -> Result<Self, StorageError> {
        if cursor.as_str().is_empty() {
            return Ok(S3Cursor::default());
        }
        serde_json::from_str(cursor.as_str()).map_err(|e| StorageError::Io(std::io::Error::other(e)))
    }

    fn encode(&self) -> UploadCursor {
        UploadCursor(serde_json::to_string(self).expect("cursor serialises"))
    }
}

fn backend(e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound,
        other => StorageError::Unavailable(other.to_string()),
    }
}

impl S3Store {
    /// Connects to the bucket and checks that it answers.
    pub async fn connect(config: S3Config) -> Result<Self, StorageError> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_virtual_hosted_style_request(!config.path_style);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|e| StorageError::Unavailable(e.to_string()))?;
        let mut prefix = config.prefix.trim_matches('/').to_owned();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        let s3 = S3Store { store: Arc::new(store), prefix };
        s3.check().await?;
        Ok(s3)
    }

    /// Proves the bucket is reachable and the credentials work.
    async fn check(&self) -> Result<(), StorageError> {
        let probe = self.path("berth-probe");
        match self.store.head(&probe).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }

    fn path(&self, key: &str) -> Path {
        Path::from(format!("{}{key}", self.prefix))
    }

    fn blob_path(&self, digest: &Digest) -> Path {
        let hex = digest.encoded();
        self.path(&format!("blobs/{}/{}/{hex}", digest.algorithm(), &hex[..2]))
    }

    fn staging(&self, id: &str) -> Path {
        self.path(&format!("uploads/{id}/data"))
    }

    fn marker(&self, id: &str) -> Path {
        self.path(&format!("uploads/{id}/created"))
    }

    async fn put_part(&self, id: &str, cursor: &mut S3Cursor, part: Bytes) -> Result<(), StorageError> {
        let staging = self.staging(id);
        let multipart = match &cursor.multipart {
            Some(m) => m.clone(),
            None => {
                let m = self.store.create_multipart(&staging).await.map_err(backend)?;
                cursor.multipart = Some(m.clone());
                m
            }
        };
        let PartId { content_id } = self
            .store
            .put_part(&staging, &multipart, cursor.parts.len(), PutPayload::from(part))
            .await
            .map_err(backend)?;
        cursor.parts.push(content_id);
        Ok(())
    }

    async fn read_tail(&self, cursor: &S3Cursor) -> Result<BytesMut, StorageError> {
        match &cursor.tail {
            Some((key, _)) => {
                let bytes =
                    self.store.get(&Path::from(key.as_str())).await.map_err(backend)?.bytes().await.map_err(backend)?;
                Ok(BytesMut::from(bytes))
            }
            None => Ok(BytesMut::new()),
        }
    }

    /// Deletes every object staged for upload `id`.
    async fn delete_staged(&self, id: &str) -> Result<(), StorageError> {
        let prefix = self.path(&format!("uploads/{id}/"));
        let keys: Vec<_> =
            self.store.list(Some(&prefix)).map_ok(|m| m.location).try_collect().await.map_err(backend)?;
        for key in keys {
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(backend(e)),
            }
        }
        Ok(())
    }
}

fn check_id(id: &str) -> Result<(), StorageError> {
    let ok = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok { Ok(()) } else { Err(StorageError::NotFound) }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        match self.store.head(&self.blob_path(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<ByteStream, StorageError> {
        let path = self.blob_path(digest);
        if range.is_none() && self.stat(digest).await? == Some(0) {
            // Some servers reject reads of empty objects with a range; nothing to send anyway.
            return Ok(futures_util::stream::empty().boxed());
        }
        let options = GetOptions { range: range.map(|r| GetRange::Bounded(r.start..r.end + 1)), ..Default::default() };
        let result = self.store.get_opts(&path, options).await.map_err(backend)?;
        Ok(result.into_stream().map_err(std::io::Error::other).boxed())
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        match self.store.delete(&self.blob_path(digest)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }

    async fn delete_many(&self, digests: &[Digest]) -> Result<(), StorageError> {
        // object_store batches these into DeleteObjects requests of 1000 keys.
        let paths: Vec<object_store::Result<Path>> = digests.iter().map(|d| Ok(self.blob_path(d))).collect();
        let mut deleted = self.store.delete_stream(futures_util::stream::iter(paths).boxed());
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(backend(e)),
            }
        }
        Ok(())
    }

    fn list(&self) -> BoxStream<'_, Result<(Digest, u64), StorageError>> {
        let prefix = self.path("blobs/");
        let strip = self.prefix.len() + "blobs/".len();
        self.store
            .list(Some(&prefix))
            .map_err(backend)
            .try_filter_map(move |meta| {
                // blobs/<alg>/<xx>/<hex> → <alg>:<hex>
                let key = meta.location.as_ref().get(strip..).unwrap_or_default().to_owned();
                let mut parts = key.split('/');
                let digest = match (parts.next(), parts.next(), parts.next(), parts.next()) {
                    (Some(alg), Some(_), Some(hex), None) => format!("{alg}:{hex}").parse::<Digest>().ok(),
                    _ => None,
                };
                futures_util::future::ready(Ok(digest.map(|d| (d, meta.size))))
            })
            .boxed()
    }

    async fn upload_create(&self, id: &str) -> Result<UploadCursor, StorageError> {
        check_id(id)?;
        self.store.put(&self.marker(id), PutPayload::new()).await.map_err(backend)?;
        Ok(S3Cursor::default().encode())
    }

    async fn upload_append(
        &self,
        id: &str,
        cursor: &UploadCursor,
        _offset: u64,
        mut data: ByteStream,
        hasher: &mut Hasher,
    ) -> Result<(u64, UploadCursor), StorageError> {
        check_id(id)?;
        let mut next = S3Cursor::parse(cursor)?;
        if next.sealed {
            return Err(StorageError::NotFound);
        }
        let mut pending = self.read_tail(&next).await?;
        let mut written = 0u64;
        while let Some(chunk) = data.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            written += chunk.len() as u64;
            pending.extend_from_slice(&chunk);
            while pending.len() >= PART_SIZE {
                let part = pending.split_to(PART_SIZE).freeze();
                self.put_part(id, &mut next, part).await?;
            }
        }
        next.size += written;
        next.tail = None;
        if !pending.is_empty() {
            // A new key per append: the previous cursor's tail stays intact until
            // this cursor is saved, so an unsaved append changes nothing.
            let key = self.path(&format!("uploads/{id}/tail-{}-{}", next.size, uuid::Uuid::new_v4().simple()));
            let len = pending.len() as u64;
            self.store.put(&key, PutPayload::from(pending.freeze())).await.map_err(backend)?;
            next.tail = Some((key.to_string(), len));
        }
        Ok((written, next.encode()))
    }

    async fn upload_rollback(&self, _id: &str, _cursor: &UploadCursor, _len: u64) -> Result<(), StorageError> {
        // Appends never modify what an earlier cursor refers to.
        Ok(())
    }

    async fn upload_size(&self, id: &str, cursor: &UploadCursor) -> Result<Option<u64>, StorageError> {
        if check_id(id).is_err() {
            return Ok(None);
        }
        match self.store.head(&self.marker(id)).await {
            Ok(_) => Ok(Some(S3Cursor::parse(cursor)?.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn upload_seal(&self, id: &str, cursor: &UploadCursor) -> Result<UploadCursor, StorageError> {
        check_id(id)?;
        let mut c = S3Cursor::parse(cursor)?;
        if c.sealed {
            return Ok(cursor.clone());
        }
        let tail = self.read_tail(&c).await?.freeze();
        let staging = self.staging(id);
        match c.multipart.clone() {
            None => {
                self.store.put(&staging, PutPayload::from(tail)).await.map_err(backend)?;
            }
            Some(multipart) => {
                if !tail.is_empty() {
                    self.put_part(id, &mut c, tail).await?;
                }
                let parts = c.parts.iter().map(|p| PartId { content_id: p.clone() }).collect();
                self.store.complete_multipart(&staging, &multipart, parts).await.map_err(backend)?;
            }
        }
        c.sealed = true;
        c.tail = None;
        Ok(c.encode())
    }

    async fn upload_read(&self, id: &str, cursor: &UploadCursor) -> Result<ByteStream, StorageError> {
        check_id(id)?;
        let c = S3Cursor::parse(cursor)?;
        if !c.sealed {
            if c.size == 0 {
                // Nothing staged yet (a session opened on another node): nothing to read.
                return Ok(futures_util::stream::empty().boxed());
            }
            return Err(StorageError::Unavailable("S3 uploads can be read only once sealed".into()));
        }
        let result = self.store.get(&self.staging(id)).await.map_err(backend)?;
        Ok(result.into_stream().map_err(std::io::Error::other).boxed())
    }

    async fn upload_commit(&self, id: &str, cursor: &UploadCursor, digest: &Digest) -> Result<(), StorageError> {
        check_id(id)?;
        if !S3Cursor::parse(cursor)?.sealed {
            return Err(StorageError::Unavailable("upload must be sealed before commit".into()));
        }
        let target = self.blob_path(digest);
        match self.store.head(&target).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {
                self.store.copy(&self.staging(id), &target).await.map_err(backend)?;
            }
            Err(e) => return Err(backend(e)),
        }
        self.delete_staged(id).await
    }

    async fn upload_abort(&self, id: &str, cursor: &UploadCursor) -> Result<(), StorageError> {
        if check_id(id).is_err() {
            return Ok(());
        }
        let c = S3Cursor::parse(cursor).unwrap_or_default();
        if let (Some(multipart), false) = (&c.multipart, c.sealed) {
            self.store.abort_multipart(&self.staging(id), multipart).await.ok();
        }
        self.delete_staged(id).await
    }
}

/// An S3 store for tests from `BERTH_TEST_S3_ENDPOINT`, `BERTH_TEST_S3_BUCKET`,
/// `BERTH_TEST_S3_ACCESS_KEY` and `BERTH_TEST_S3_SECRET_KEY` under a fresh
/// random prefix; `None` when they are not set.
pub async fn test_store() -> Option<S3Store> {
    let endpoint = std::env::var("BERTH_TEST_S3_ENDPOINT").ok()?;
    let config = S3Config {
        bucket: std::env::var("BERTH_TEST_S3_BUCKET").unwrap_or_else(|_| "berth-test".into()),
        prefix: format!("test-{}", uuid::Uuid::new_v4().simple()),
        endpoint: Some(endpoint),
        region: "us-east-1".into(),
        path_style: true,
        access_key_id: std::env::var("BERTH_TEST_S3_ACCESS_KEY").ok(),
        secret_access_key: std::env::var("BERTH_TEST_S3_SECRET_KEY").ok(),
    };
    Some(S3Store::connect(config).await.expect("connect to test S3"))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn s3_store_passes_the_backend_suite() {
        let Some(store) = super::test_store().await else {
            eprintln!("BERTH_TEST_S3_ENDPOINT not set; skipping the S3 backend suite");
            return;
        };
        crate::testsuite::run_all(&store).await;
    }
}
