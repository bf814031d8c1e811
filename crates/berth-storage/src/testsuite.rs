//! One behavioural test suite that every [`BlobStore`] backend must pass.
//!
//! Backends call [`run_all`] from their own tests, so fs, memory and (later) S3
//! are held to exactly the same contract.

use berth_core::{ByteRange, Digest};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use crate::{BlobStore, ByteStream};

fn chunks(parts: &[&[u8]]) -> ByteStream {
    let owned: Vec<_> = parts.iter().map(|p| Ok(Bytes::copy_from_slice(p))).collect();
    futures_util::stream::iter(owned).boxed()
}

async fn collect(stream: ByteStream) -> Vec<u8> {
    let parts: Vec<Bytes> = stream.try_collect().await.unwrap();
    parts.concat()
}

/// Runs every check against `store`. Panics on the first violation.
pub async fn run_all(store: &dyn BlobStore) {
    staged_upload_commits_under_digest(store).await;
    ranges_and_missing_blobs(store).await;
    truncate_undoes_an_append(store).await;
    abort_discards_staged_data(store).await;
    commit_of_existing_blob_deduplicates(store).await;
}

async fn staged_upload_commits_under_digest(store: &dyn BlobStore) {
    let body = b"hello, berth";
    let digest = Digest::sha256(body);
    store.upload_create("suite-1").await.unwrap();
    let mut hasher = digest.algorithm().hasher();
    let n = store.upload_append("suite-1", 0, chunks(&[b"hello, ", b"berth"]), &mut hasher).await.unwrap();
    assert_eq!(n, body.len() as u64);
    assert_eq!(hasher.finish(), digest);
    assert_eq!(store.upload_size("suite-1").await.unwrap(), Some(n));
    assert_eq!(collect(store.upload_read("suite-1").await.unwrap()).await, body);
    assert_eq!(store.stat(&digest).await.unwrap(), None, "not visible before commit");
    store.upload_commit("suite-1", &digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(n));
    assert_eq!(store.upload_size("suite-1").await.unwrap(), None, "staging is gone");
    assert_eq!(collect(store.get(&digest, None).await.unwrap()).await, body);
}

async fn ranges_and_missing_blobs(store: &dyn BlobStore) {
    let digest = Digest::sha256(b"hello, berth");
    let r = ByteRange { start: 7, end: 11 };
    assert_eq!(collect(store.get(&digest, Some(r)).await.unwrap()).await, b"berth");
    let missing = Digest::sha256(b"never stored");
    assert!(matches!(store.get(&missing, None).await, Err(e) if e.is_not_found()));
    assert_eq!(store.stat(&missing).await.unwrap(), None);
    store.delete(&missing).await.unwrap();
    store.delete(&digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), None);
}

async fn truncate_undoes_an_append(store: &dyn BlobStore) {
    store.upload_create("suite-2").await.unwrap();
    let mut h = berth_core::Algorithm::Sha256.hasher();
    store.upload_append("suite-2", 0, chunks(&[b"abc"]), &mut h).await.unwrap();
    store.upload_append("suite-2", 3, chunks(&[b"defgh"]), &mut h).await.unwrap();
    store.upload_truncate("suite-2", 3).await.unwrap();
    assert_eq!(store.upload_size("suite-2").await.unwrap(), Some(3));
    let mut h = berth_core::Algorithm::Sha256.hasher();
    store.upload_append("suite-2", 3, chunks(&[b"d"]), &mut h).await.unwrap();
    assert_eq!(collect(store.upload_read("suite-2").await.unwrap()).await, b"abcd");
    store.upload_abort("suite-2").await.unwrap();
}

async fn abort_discards_staged_data(store: &dyn BlobStore) {
    store.upload_create("suite-3").await.unwrap();
    store.upload_abort("suite-3").await.unwrap();
    assert_eq!(store.upload_size("suite-3").await.unwrap(), None);
    store.upload_abort("suite-3").await.unwrap();
}

async fn commit_of_existing_blob_deduplicates(store: &dyn BlobStore) {
    let digest = Digest::sha256(b"same");
    for id in ["suite-4", "suite-5"] {
        store.upload_create(id).await.unwrap();
        let mut h = digest.algorithm().hasher();
        store.upload_append(id, 0, chunks(&[b"same"]), &mut h).await.unwrap();
        store.upload_commit(id, &digest).await.unwrap();
        assert_eq!(store.upload_size(id).await.unwrap(), None);
    }
    assert_eq!(store.stat(&digest).await.unwrap(), Some(4));
    store.delete(&digest).await.unwrap();
}
