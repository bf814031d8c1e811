//! A real run: drain what is due, under the lease.

use std::time::{Duration, Instant};

use berth_core::Digest;
use berth_meta::{ClaimedBlob, GcCounters, GcKind};

use crate::{Collector, GcError, LEASE, LEASE_TTL_SECS, ProgressFn, now_ms};

/// Renew the lease when it is older than this (a third of its life).
const RENEW_AFTER: Duration = Duration::from_secs(LEASE_TTL_SECS as u64 / 3);

/// How often a run's progress is written to its record (the status API reads it).
const RECORD_EVERY: Duration = Duration::from_secs(1);

/// Where a run stands, shared by its phases.
struct Pass<'a> {
    node: &'a str,
    run_id: i64,
    counters: &'a mut GcCounters,
    progress: &'a ProgressFn,
    renewed: Instant,
    /// When the run's record was last updated.
    recorded: Instant,
    /// Entries queued when the run started, for the progress estimate.
    queued_at_start: u64,
}

impl Pass<'_> {
    /// Reports progress, records it and keeps the lease alive.
    async fn checkpoint(&mut self, collector: &Collector) -> Result<(), GcError> {
        let remaining = self.queued_at_start.saturating_sub(self.counters.examined);
        (self.progress)(self.counters, remaining);
        if self.renewed.elapsed() >= RENEW_AFTER {
            if !collector.meta.try_lease(LEASE, self.node, LEASE_TTL_SECS).await? {
                return Err(GcError::LeaseLost);
            }
            self.renewed = Instant::now();
        }
        if self.recorded.elapsed() >= RECORD_EVERY {
            collector.meta.gc_update_run(self.run_id, self.counters, "running", None).await?;
            self.recorded = Instant::now();
        }
        Ok(())
    }
}

impl Collector {
    /// Finishes interrupted deletions, then drains due entries: manifests, links,
    /// blobs. With no grace period, deletions cascade within the run until
    /// nothing more is due.
    pub(crate) async fn collect(
        &self,
        node: &str,
        grace: Duration,
        counters: &mut GcCounters,
        run_id: i64,
        progress: &ProgressFn,
    ) -> Result<(), GcError> {
        let stats = self.meta.gc_queue_stats().await?;
        let mut pass = Pass {
            node,
            run_id,
            counters,
            progress,
            renewed: Instant::now(),
            recorded: Instant::now(),
            queued_at_start: stats.manifests + stats.links + stats.blobs,
        };
        self.finish_tombstones(&mut pass).await?;
        loop {
            let cutoff = now_ms() - grace.as_millis() as i64;
            let before = *pass.counters;
            self.collect_manifests(cutoff, &mut pass).await?;
            self.collect_links(cutoff, &mut pass).await?;
            self.collect_blobs(&mut pass).await?;
            let cascaded = pass.counters.manifests_deleted > before.manifests_deleted
                || pass.counters.links_deleted > before.links_deleted;
            if !grace.is_zero() || !cascaded {
                return Ok(());
            }
        }
    }

    /// Deletes the bytes of blobs tombstoned by an interrupted run.
    async fn finish_tombstones(&self, pass: &mut Pass<'_>) -> Result<(), GcError> {
        loop {
            let tombstones = self.meta.gc_tombstones(self.settings.batch).await?;
            if tombstones.is_empty() {
                return Ok(());
            }
            let (blobs, bytes) = self.delete_claimed(&tombstones).await?;
            pass.counters.blobs_deleted += blobs;
            pass.counters.bytes_reclaimed += bytes;
            pass.checkpoint(self).await?;
        }
    }

    async fn collect_manifests(&self, cutoff: i64, pass: &mut Pass<'_>) -> Result<(), GcError> {
        loop {
            let due = self.meta.gc_due(GcKind::Manifest, cutoff, self.settings.batch).await?;
            if due.is_empty() {
                return Ok(());
            }
            let mut batches = Vec::new();
            for chunk in due.chunks(self.chunk_len(due.len())) {
                batches.push(self.meta.gc_collect_manifests(chunk, self.settings.policy));
            }
            let collected: Vec<_> = futures_util::future::try_join_all(batches).await?.into_iter().flatten().collect();
            pass.counters.examined += due.len() as u64;
            pass.counters.manifests_deleted += collected.len() as u64;
            for m in &collected {
                tracing::debug!(repository = m.repository, digest = m.digest, "collected manifest");
            }
            pass.checkpoint(self).await?;
        }
    }

    async fn collect_links(&self, cutoff: i64, pass: &mut Pass<'_>) -> Result<(), GcError> {
        loop {
            let due = self.meta.gc_due(GcKind::Link, cutoff, self.settings.batch).await?;
            if due.is_empty() {
                return Ok(());
            }
            let mut batches = Vec::new();
            for chunk in due.chunks(self.chunk_len(due.len())) {
                batches.push(self.meta.gc_collect_links(chunk));
            }
            let removed: u64 = futures_util::future::try_join_all(batches).await?.into_iter().sum();
            pass.counters.examined += due.len() as u64;
            pass.counters.links_deleted += removed;
            pass.checkpoint(self).await?;
        }
    }

    /// Blobs have no grace period of their own: one is queued once its last link
    /// went, and links had theirs.
    async fn collect_blobs(&self, pass: &mut Pass<'_>) -> Result<(), GcError> {
        let batch = self.settings.batch.max(1);
        let in_flight = self.settings.concurrency.max(1);
        loop {
            let due = self.meta.gc_due(GcKind::Blob, now_ms(), batch * in_flight as u32).await?;
            if due.is_empty() {
                return Ok(());
            }
            pass.counters.examined += due.len() as u64;
            // Each batch claims, deletes and finishes on its own, so one batch's
            // storage round trip overlaps the next one's claim.
            let mut batches = Vec::new();
            for chunk in due.chunks(batch as usize) {
                batches.push(self.reclaim_batch(chunk));
            }
            for (blobs, bytes) in futures_util::future::try_join_all(batches).await? {
                pass.counters.blobs_deleted += blobs;
                pass.counters.bytes_reclaimed += bytes;
            }
            pass.checkpoint(self).await?;
        }
    }

    /// Claims one batch of due blobs, deletes their bytes and their rows;
    /// returns (blobs, bytes) reclaimed.
    async fn reclaim_batch(&self, items: &[berth_meta::GcItem]) -> Result<(u64, u64), GcError> {
        let claimed = self.meta.gc_claim_blobs(items).await?;
        self.delete_claimed(&claimed).await
    }

    /// Deletes claimed (tombstoned) blobs' bytes, then their rows.
    async fn delete_claimed(&self, claimed: &[ClaimedBlob]) -> Result<(u64, u64), GcError> {
        if claimed.is_empty() {
            return Ok((0, 0));
        }
        let digests: Vec<Digest> = claimed.iter().filter_map(|c| c.digest.parse().ok()).collect();
        self.blobs.delete_many(&digests).await?;
        let rows: Vec<String> = claimed.iter().map(|c| c.digest.clone()).collect();
        self.meta.gc_finish_blobs(&rows).await?;
        let bytes = claimed.iter().map(|c| c.size).sum::<u64>();
        metrics::counter!("berth_gc_blobs_deleted_total").increment(claimed.len() as u64);
        metrics::counter!("berth_gc_bytes_reclaimed_total").increment(bytes);
        Ok((claimed.len() as u64, bytes))
    }

    /// Entries per call so that `concurrency` calls share a batch of `len`.
    fn chunk_len(&self, len: usize) -> usize {
        len.div_ceil(self.settings.concurrency.max(1)).max(1)
    }
}
