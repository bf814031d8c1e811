//! A dry run: what a real run started now would delete, without changing anything.
//!
//! It replays a run's passes against the same checks the real run makes under
//! lock, keeping what it would delete in memory: a manifest whose only holders
//! are manifests already planned for deletion is free, and so on. Entries a
//! deletion re-queues become due in the same run only without a grace period,
//! exactly as in a real run.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use berth_meta::{GcCounters, GcItem, GcKind, GcPolicy, MetaError, Metadata};

use crate::now_ms;

/// Enough to read every due entry at once in a dry run.
const ALL: u32 = 10_000_000;

/// What a run would delete, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// `(repository, digest)` of manifests.
    pub manifests: BTreeSet<(String, String)>,
    /// `(repository, digest)` of blob links.
    pub links: BTreeSet<(String, String)>,
    /// `(digest, size)` of blobs whose bytes would go.
    pub blobs: BTreeSet<(String, u64)>,
    /// Queue entries looked at.
    pub examined: u64,
}

impl Plan {
    /// The counters a real run doing exactly this would report.
    pub fn counters(&self) -> GcCounters {
        GcCounters {
            examined: self.examined,
            manifests_deleted: self.manifests.len() as u64,
            links_deleted: self.links.len() as u64,
            blobs_deleted: self.blobs.len() as u64,
            bytes_reclaimed: self.blobs.iter().map(|(_, size)| size).sum(),
        }
    }
}

/// A queue entry's key: kind aside, `(repository id, repository, digest)`.
type Key = (i64, String, String);

/// Entries queued again by a planned deletion (they are due only without grace).
#[derive(Default)]
struct Requeued {
    manifests: HashSet<Key>,
    links: HashSet<Key>,
}

pub(crate) async fn plan(meta: &dyn Metadata, policy: GcPolicy, grace: Duration) -> Result<Plan, MetaError> {
    let mut plan = Plan::default();
    // By repository id: names can repeat if a repository is deleted and pushed again.
    let mut gone_manifests: HashSet<(i64, String)> = HashSet::new();
    let mut gone_links: HashSet<(i64, String)> = HashSet::new();
    let mut requeued = Requeued::default();
    let mut planned_blobs: HashSet<String> = HashSet::new();
    let mut first = true;
    loop {
        let cutoff = now_ms() - grace.as_millis() as i64;
        let before = (gone_manifests.len(), gone_links.len());
        let manifests = due(meta, GcKind::Manifest, cutoff, first, &requeued.manifests).await?;
        requeued.manifests.clear();
        // Links re-queued by this pass's manifests are not due in this pass.
        let mut links_requeued = std::mem::take(&mut requeued.links);
        for item in &manifests {
            if gone_manifests.contains(&(item.repo_id, item.digest.clone())) {
                continue; // planned already: a real run deletes (and re-queues) once
            }
            plan.examined += 1;
            let Some(holds) = meta.gc_manifest_holds(item, policy).await? else { continue };
            let gone = |d: &str| gone_manifests.contains(&(item.repo_id, d.to_owned()));
            if !holds.free_after(gone) {
                continue;
            }
            gone_manifests.insert((item.repo_id, item.digest.clone()));
            plan.manifests.insert((item.repository.clone(), item.digest.clone()));
            for (kind, digest) in holds.queues {
                let key = (item.repo_id, item.repository.clone(), digest);
                match kind {
                    GcKind::Link => requeued.links.insert(key),
                    _ => requeued.manifests.insert(key),
                };
            }
        }
        let this_pass_links: HashSet<Key> = std::mem::take(&mut requeued.links);
        let links = due(meta, GcKind::Link, cutoff, first, &links_requeued).await?;
        links_requeued.clear();
        let mut freed_blobs: Vec<String> = Vec::new();
        let requeued_now = |i: &&GcItem| this_pass_links.contains(&(i.repo_id, i.repository.clone(), i.digest.clone()));
        for item in links.iter().filter(|i| !requeued_now(i)) {
            plan.examined += 1;
            let Some((users, cached)) = meta.gc_link_holds(item).await? else { continue };
            let free = !cached && users.iter().all(|m| gone_manifests.contains(&(item.repo_id, m.clone())));
            if free && gone_links.insert((item.repo_id, item.digest.clone())) {
                plan.links.insert((item.repository.clone(), item.digest.clone()));
                freed_blobs.push(item.digest.clone());
            }
        }
        requeued.links = this_pass_links;
        let mut blob_candidates: BTreeSet<String> =
            meta.gc_due(GcKind::Blob, now_ms(), ALL).await?.into_iter().map(|i| i.digest).collect();
        blob_candidates.extend(freed_blobs);
        for digest in blob_candidates {
            if planned_blobs.contains(&digest) {
                continue;
            }
            plan.examined += 1;
            let Some(holds) = meta.gc_blob_holds(&digest).await? else { continue };
            let free = !holds.pinned && holds.linked_in.iter().all(|r| gone_links.contains(&(*r, digest.clone())));
            if free {
                planned_blobs.insert(digest.clone());
                plan.blobs.insert((digest, holds.size));
            }
        }
        first = false;
        let cascaded = (gone_manifests.len(), gone_links.len()) != before;
        if !grace.is_zero() || !cascaded {
            return Ok(plan);
        }
    }
}

/// Due entries of `kind`: those in the queue on the first pass, plus (without a
/// grace period) those a planned deletion re-queued.
async fn due(
    meta: &dyn Metadata,
    kind: GcKind,
    cutoff: i64,
    first: bool,
    requeued: &HashSet<Key>,
) -> Result<Vec<GcItem>, MetaError> {
    let mut items = if first { meta.gc_due(kind, cutoff, ALL).await? } else { Vec::new() };
    let mut extra: Vec<&Key> = requeued.iter().collect();
    extra.sort();
    items.extend(extra.into_iter().map(|(repo_id, repository, digest)| GcItem {
        kind,
        repo_id: *repo_id,
        repository: repository.clone(),
        digest: digest.clone(),
        queued_at: cutoff,
    }));
    Ok(items)
}
