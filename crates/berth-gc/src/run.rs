//! A real run: drain what is due, under the lease.

use std::time::{Duration, Instant};

use berth_core::Digest;
use berth_meta::{ClaimedBlob, GcCounters, GcKind};

use crate::{Collector, GcError, LEASE, LEASE_TTL_SECS, ProgressFn, now_ms};

/// Renew the lease when it is older than this (a third of its life).
const RENEW_AFTER: Duration = Duration::from_secs(LEASE_TTL_SECS as u64 / 3);

/// Where a run stands, shared by its phases.
struct Pass<'a> {
    node: &'a str,
    run_id: i64,
    counters: &'a mut GcCounters,
    progress: &'a ProgressFn,
    renewed: Instant,
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
            collector.meta.gc_update_run(self.run_id, self.counters, "running", None).await?;
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
            self.delete_bytes(&tombstones, pass).await?;
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
            let mut claims = Vec::new();
            for chunk in due.chunks(batch as usize) {
                claims.push(self.meta.gc_claim_blobs(chunk));
            }
            let claimed: Vec<ClaimedBlob> =
                futures_util::future::try_join_all(claims).await?.into_iter().flatten().collect();
            self.delete_bytes(&claimed, pass).await?;
        }
    }

    /// Entries per call so that `concurrency` calls share a batch of `len`.
    fn chunk_len(&self, len: usize) -> usize {
        len.div_ceil(self.settings.concurrency.max(1)).max(1)
    }

    /// Deletes tombstoned blobs' bytes in parallel batches, then their rows.
    async fn delete_bytes(&self, claimed: &[ClaimedBlob], pass: &mut Pass<'_>) -> Result<(), GcError> {
        for group in claimed.chunks(self.settings.batch.max(1) as usize * self.settings.concurrency.max(1)) {
            let batches: Vec<Vec<Digest>> = group
                .chunks(self.settings.batch.max(1) as usize)
                .map(|chunk| chunk.iter().filter_map(|c| c.digest.parse().ok()).collect())
                .collect();
            let mut deletes = Vec::new();
            for digests in &batches {
                deletes.push(self.blobs.delete_many(digests));
            }
            futures_util::future::try_join_all(deletes).await?;
            let digests: Vec<String> = group.iter().map(|c| c.digest.clone()).collect();
            self.meta.gc_finish_blobs(&digests).await?;
            let bytes = group.iter().map(|c| c.size).sum::<u64>();
            pass.counters.blobs_deleted += group.len() as u64;
            pass.counters.bytes_reclaimed += bytes;
            metrics::counter!("berth_gc_blobs_deleted_total").increment(group.len() as u64);
            metrics::counter!("berth_gc_bytes_reclaimed_total").increment(bytes);
            pass.checkpoint(self).await?;
        }
        Ok(())
    }
}
