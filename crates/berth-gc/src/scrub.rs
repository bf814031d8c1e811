//! The scrub: the blob store checked against the metadata, changing neither.
//!
//! Finds four kinds of trouble:
//! - **missing**: a blob some repository links has no bytes in the store (lost
//!   data: pulls of it fail);
//! - **corrupt** (when verifying digests): the bytes no longer hash to the
//!   blob's digest, or their size differs from the recorded one;
//! - **stale rows**: an unlinked blob row without bytes (harmless; GC drops it);
//! - **orphans**: bytes in the store that no blob row names (left by an upload
//!   committed to the store but not to the database, or by a restore of an older
//!   database); [`adopt_orphans`] hands them to the collector.
//!
//! The store is listed once (the one walk of storage berth ever does, and only
//! here); the metadata is paged in digest order. Safe while servers run: a blob
//! committed during the scrub may show up as an orphan, which is why adopting
//! one goes through the collector's checks instead of deleting it.

use std::collections::HashMap;

use berth_core::Digest;
use berth_meta::{MetaError, Metadata};
use berth_storage::{BlobStore, StorageError};
use futures_util::{StreamExt, TryStreamExt};

/// Blob rows read per page.
const PAGE: u32 = 1000;

/// What a scrub found.
#[derive(Debug, Default, Clone)]
pub struct Findings {
    pub checked: u64,
    pub bytes_verified: u64,
    pub missing: Vec<Digest>,
    pub corrupt: Vec<(Digest, String)>,
    pub stale_rows: Vec<Digest>,
    pub orphans: Vec<(Digest, u64)>,
}

impl Findings {
    /// Whether data is lost or damaged (missing or corrupt blobs).
    pub fn damaged(&self) -> bool {
        !self.missing.is_empty() || !self.corrupt.is_empty()
    }
}

/// Why a scrub could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ScrubError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("cannot list the blob store: {0}")]
    Storage(#[from] StorageError),
}

/// Checks every blob row against the store; `verify_digests` re-hashes every
/// blob's bytes. `progress(checked, total)` follows the rows.
pub async fn scrub(
    meta: &dyn Metadata,
    store: &dyn BlobStore,
    verify_digests: bool,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<Findings, ScrubError> {
    let mut stored: HashMap<Digest, u64> = store.list().try_collect::<Vec<_>>().await?.into_iter().collect();
    let total = stored.len() as u64;
    let mut findings = Findings::default();
    let mut after: Option<String> = None;
    loop {
        let page = meta.list_blobs(after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.digest.to_string());
        for row in page {
            findings.checked += 1;
            match stored.remove(&row.digest) {
                None if row.linked => findings.missing.push(row.digest),
                None => findings.stale_rows.push(row.digest),
                Some(size) if size != row.size => {
                    findings.corrupt.push((row.digest, format!("{size} bytes stored, {} recorded", row.size)));
                }
                Some(size) => {
                    if verify_digests {
                        if let Some(problem) = rehash(store, &row.digest).await {
                            findings.corrupt.push((row.digest, problem));
                        }
                        findings.bytes_verified += size;
                    }
                }
            }
            progress(findings.checked, total);
        }
    }
    findings.orphans = stored.into_iter().collect();
    findings.orphans.sort();
    Ok(findings)
}

/// Hands orphaned bytes to the collector: each gets a blob row and a queue
/// entry, and the next run deletes it unless something links it by then (an
/// upload that was committing it, say). Returns how many were adopted.
pub async fn adopt_orphans(meta: &dyn Metadata, orphans: &[(Digest, u64)]) -> Result<u64, MetaError> {
    for (digest, size) in orphans {
        meta.gc_adopt_blob(digest.as_str(), *size).await?;
    }
    Ok(orphans.len() as u64)
}

/// Streams a blob through its digest's hash; a description of what is wrong, if anything.
async fn rehash(store: &dyn BlobStore, digest: &Digest) -> Option<String> {
    let mut hasher = digest.algorithm().hasher();
    let mut stream = match store.get(digest, None).await {
        Ok(s) => s,
        Err(e) => return Some(format!("cannot read: {e}")),
    };
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => hasher.update(&bytes),
            Err(e) => return Some(format!("read failed: {e}")),
        }
    }
    let actual = hasher.finish();
    (&actual != digest).then(|| format!("bytes hash to {actual}"))
}
