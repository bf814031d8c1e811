//! One behavioural test suite that every [`BlobStore`] backend must pass.
//!
//! Backends call [`run_all`] from their own tests, so fs, memory and S3 are held
//! to exactly the same contract. Uploads here always thread the cursor the
//! store returned, the way the registry persists it between requests.

use berth_core::{Algorithm, ByteRange, Digest};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use crate::{BlobStore, ByteStream, UploadCursor};

fn chunks(parts: &[&[u8]]) -> ByteStream {
    let owned: Vec<_> = parts.iter().map(|p| Ok(Bytes::copy_from_slice(p))).collect();
    futures_util::stream::iter(owned).boxed()
}

async fn collect(stream: ByteStream) -> Vec<u8> {
    let parts: Vec<Bytes> = stream.try_collect().await.unwrap();
    parts.concat()
}

/// Appends `parts` as one request and returns the new cursor.
async fn append(store: &dyn BlobStore, id: &str, cursor: &UploadCursor, offset: u64, parts: &[&[u8]]) -> UploadCursor {
    let mut h = Algorithm::Sha256.hasher();
    let (n, cursor) = store.upload_append(id, cursor, offset, chunks(parts), &mut h).await.unwrap();
    assert_eq!(n, parts.iter().map(|p| p.len() as u64).sum::<u64>());
    cursor
}

/// Runs every check against `store`. Panics on the first violation.
pub async fn run_all(store: &dyn BlobStore) {
    staged_upload_commits_under_digest(store).await;
    ranges_and_missing_blobs(store).await;
    rollback_undoes_an_append(store).await;
    abort_discards_staged_data(store).await;
    commit_of_existing_blob_deduplicates(store).await;
    many_appends_of_odd_sizes_reassemble(store).await;
    empty_blob(store).await;
    fresh_upload_reads_empty(store).await;
    delete_many_removes_a_batch(store).await;
    deferred_appends_stage_and_hash_every_byte(store).await;
}

/// Garbage collection deletes in batches (S3: DeleteObjects); missing blobs are fine.
async fn delete_many_removes_a_batch(store: &dyn BlobStore) {
    let mut digests = Vec::new();
    for i in 0..25 {
        let body = format!("batch blob {i}");
        let digest = Digest::sha256(body.as_bytes());
        let id = format!("suite-batch-{i}");
        let cursor = store.upload_create(&id).await.unwrap();
        let cursor = append(store, &id, &cursor, 0, &[body.as_bytes()]).await;
        let sealed = store.upload_seal(&id, &cursor).await.unwrap();
        store.upload_commit(&id, &sealed, &digest).await.unwrap();
        digests.push(digest);
    }
    let keep = digests.pop().unwrap();
    digests.push(Digest::sha256(b"never stored"));
    store.delete_many(&digests).await.unwrap();
    for digest in &digests {
        assert_eq!(store.stat(digest).await.unwrap(), None, "{digest} deleted");
    }
    assert!(store.stat(&keep).await.unwrap().is_some(), "blobs outside the batch stay");
    store.delete_many(&digests).await.unwrap();
    store.delete(&keep).await.unwrap();
}

/// A session opened on one node and continued on another is re-read (to rebuild
/// its hash) before any byte was appended: that read must succeed, empty.
async fn fresh_upload_reads_empty(store: &dyn BlobStore) {
    let cursor = store.upload_create("suite-fresh").await.unwrap();
    assert_eq!(store.upload_size("suite-fresh", &cursor).await.unwrap(), Some(0));
    assert!(collect(store.upload_read("suite-fresh", &cursor).await.unwrap()).await.is_empty());
    store.upload_abort("suite-fresh", &cursor).await.unwrap();
}

async fn staged_upload_commits_under_digest(store: &dyn BlobStore) {
    let body = b"hello, berth";
    let digest = Digest::sha256(body);
    let cursor = store.upload_create("suite-1").await.unwrap();
    let mut hasher = digest.algorithm().hasher();
    let (n, cursor) =
        store.upload_append("suite-1", &cursor, 0, chunks(&[b"hello, ", b"berth"]), &mut hasher).await.unwrap();
    assert_eq!(n, body.len() as u64);
    assert_eq!(hasher.finish(), digest);
    assert_eq!(store.upload_size("suite-1", &cursor).await.unwrap(), Some(n));
    assert_eq!(store.stat(&digest).await.unwrap(), None, "not visible before commit");
    let cursor = store.upload_seal("suite-1", &cursor).await.unwrap();
    assert_eq!(collect(store.upload_read("suite-1", &cursor).await.unwrap()).await, body);
    store.upload_commit("suite-1", &cursor, &digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(n));
    let listed: Vec<(Digest, u64)> = store.list().try_collect().await.unwrap();
    assert!(listed.contains(&(digest.clone(), n)), "list() shows committed blobs: {listed:?}");
    assert_eq!(store.upload_size("suite-1", &cursor).await.unwrap(), None, "staging is gone");
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

async fn rollback_undoes_an_append(store: &dyn BlobStore) {
    let c0 = store.upload_create("suite-2").await.unwrap();
    let c1 = append(store, "suite-2", &c0, 0, &[b"abc"]).await;
    let _discarded = append(store, "suite-2", &c1, 3, &[b"defgh"]).await;
    store.upload_rollback("suite-2", &c1, 3).await.unwrap();
    assert_eq!(store.upload_size("suite-2", &c1).await.unwrap(), Some(3));
    let c2 = append(store, "suite-2", &c1, 3, &[b"d"]).await;
    let sealed = store.upload_seal("suite-2", &c2).await.unwrap();
    assert_eq!(collect(store.upload_read("suite-2", &sealed).await.unwrap()).await, b"abcd");
    store.upload_abort("suite-2", &sealed).await.unwrap();
}

async fn abort_discards_staged_data(store: &dyn BlobStore) {
    let c = store.upload_create("suite-3").await.unwrap();
    let c = append(store, "suite-3", &c, 0, &[b"some bytes"]).await;
    store.upload_abort("suite-3", &c).await.unwrap();
    assert_eq!(store.upload_size("suite-3", &c).await.unwrap(), None);
    store.upload_abort("suite-3", &c).await.unwrap();
}

async fn commit_of_existing_blob_deduplicates(store: &dyn BlobStore) {
    let digest = Digest::sha256(b"same");
    for id in ["suite-4", "suite-5"] {
        let c = store.upload_create(id).await.unwrap();
        let c = append(store, id, &c, 0, &[b"same"]).await;
        let c = store.upload_seal(id, &c).await.unwrap();
        store.upload_commit(id, &c, &digest).await.unwrap();
        assert_eq!(store.upload_size(id, &c).await.unwrap(), None);
    }
    assert_eq!(store.stat(&digest).await.unwrap(), Some(4));
    store.delete(&digest).await.unwrap();
}

/// Chunks smaller and larger than any backend's part size, over several appends.
async fn many_appends_of_odd_sizes_reassemble(store: &dyn BlobStore) {
    let data: Vec<u8> = (0..13 * 1024 * 1024 + 7).map(|i| (i * 31 % 251) as u8).collect();
    let digest = Digest::sha256(&data);
    let mut cursor = store.upload_create("suite-6").await.unwrap();
    let mut offset = 0usize;
    for size in [1, 1000, 3 * 1024 * 1024, 5 * 1024 * 1024 + 3, 17, 4 * 1024 * 1024 + 100] {
        let end = (offset + size).min(data.len());
        let pieces: Vec<&[u8]> = data[offset..end].chunks(64 * 1024).collect();
        cursor = append(store, "suite-6", &cursor, offset as u64, &pieces).await;
        offset = end;
    }
    let rest: Vec<&[u8]> = data[offset..].chunks(100_000).collect();
    cursor = append(store, "suite-6", &cursor, offset as u64, &rest).await;
    assert_eq!(store.upload_size("suite-6", &cursor).await.unwrap(), Some(data.len() as u64));
    let cursor = store.upload_seal("suite-6", &cursor).await.unwrap();
    store.upload_commit("suite-6", &cursor, &digest).await.unwrap();
    let got = collect(store.get(&digest, None).await.unwrap()).await;
    assert!(got == data, "blob reassembled from odd-sized appends");
    let r = ByteRange { start: 5 * 1024 * 1024 - 2, end: 5 * 1024 * 1024 + 2 };
    assert_eq!(collect(store.get(&digest, Some(r)).await.unwrap()).await, &data[r.start as usize..=r.end as usize]);
    store.delete(&digest).await.unwrap();
}

async fn empty_blob(store: &dyn BlobStore) {
    let digest = Digest::sha256(b"");
    let c = store.upload_create("suite-7").await.unwrap();
    let c = store.upload_seal("suite-7", &c).await.unwrap();
    store.upload_commit("suite-7", &c, &digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), Some(0));
    assert!(collect(store.get(&digest, None).await.unwrap()).await.is_empty());
    store.delete(&digest).await.unwrap();
}

/// Appends that answer before they finish (a chunked upload's `PATCH`es): each
/// one's rest yields the hasher fed every byte, and the next append starts once
/// it has. Large enough for the filesystem's direct writes to run behind.
async fn deferred_appends_stage_and_hash_every_byte(store: &dyn BlobStore) {
    let data: Vec<u8> = (0..21 * 1024 * 1024 + 8).map(|i| (i * 7 % 253) as u8).collect();
    let digest = Digest::sha256(&data);
    let mut cursor = store.upload_create("suite-8").await.unwrap();
    let mut hasher = Algorithm::Sha256.hasher();
    let mut offset = 0usize;
    for size in [9 * 1024 * 1024 + 3, 12 * 1024 * 1024, 5] {
        let pieces: Vec<&[u8]> = data[offset..offset + size].chunks(256 * 1024 + 1).collect();
        let (n, next, rest) =
            store.upload_append_deferred("suite-8", &cursor, offset as u64, chunks(&pieces), hasher).await.unwrap();
        assert_eq!(n, size as u64, "the answer counts every byte received");
        hasher = rest.await.unwrap();
        offset += size;
        assert_eq!(store.upload_size("suite-8", &next).await.unwrap(), Some(offset as u64));
        cursor = next;
    }
    assert_eq!(hasher.finish(), digest, "the hasher saw every byte, in order");
    let cursor = store.upload_seal("suite-8", &cursor).await.unwrap();
    store.upload_commit("suite-8", &cursor, &digest).await.unwrap();
    assert!(collect(store.get(&digest, None).await.unwrap()).await == data, "every byte staged in order");
    store.delete(&digest).await.unwrap();
}
