//! Eviction and the cache's management operations.
//!
//! Only blobs are evicted (manifests are small and live in the database). An
//! evicted blob is unlinked from every cache repository; its bytes are deleted
//! only when no repository links it any more, so a blob that a local image
//! shares is never lost. Pinned entries are never evicted.

use berth_meta::{CacheEntry, now_unix};

use crate::{CacheStats, Proxy, ProxyError};

/// Entries looked at per eviction round.
const BATCH: i64 = 100;

impl Proxy {
    /// Writes batched access records.
    pub(crate) async fn flush_touches(&self) {
        let touches = self.stats.take_touches();
        if let Err(e) = self.meta.touch_cache_entries(&touches).await {
            tracing::warn!(error = %e, "cannot record cache accesses");
        }
    }

    /// Statistics for `GET /api/accel/cache/stats`.
    pub async fn stats(&self) -> Result<CacheStats, ProxyError> {
        let totals = self.meta.cache_totals(None).await?;
        Ok(self.stats.snapshot(totals.bytes as u64, self.config.max_size, totals.entries as u64))
    }

    /// Cached blobs, most recently used first.
    pub async fn entries(&self, limit: i64, offset: i64) -> Result<Vec<CacheEntry>, ProxyError> {
        self.flush_touches().await;
        Ok(self.meta.list_cache_entries(limit, offset).await?)
    }

    /// Pins (never evicted) or unpins an entry; false when absent.
    pub async fn pin(&self, digest: &str, pinned: bool) -> Result<bool, ProxyError> {
        Ok(self.meta.set_cache_pin(digest, pinned).await?)
    }

    /// Removes one cached blob; false when it is not cached.
    pub async fn delete_entry(&self, digest: &str) -> Result<bool, ProxyError> {
        match self.meta.cache_entry(digest).await? {
            Some(entry) => {
                self.evict(&entry, "manual").await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Empties the cache: every cache repository and every cached blob.
    pub async fn clear(&self) -> Result<u64, ProxyError> {
        for ns in &self.namespaces() {
            for repo in self.repos_in(ns).await? {
                if let Ok(name) = repo.parse() {
                    self.registry.invalidate(&name);
                }
            }
            self.meta.delete_project_repositories(ns).await?;
        }
        let mut cleared = 0;
        loop {
            let batch = self.meta.list_cache_entries(BATCH, 0).await?;
            if batch.is_empty() {
                break;
            }
            for entry in &batch {
                self.evict(entry, "manual").await?;
                cleared += 1;
            }
        }
        self.local_repos.invalidate_all();
        tracing::info!(cleared, "cache cleared");
        Ok(cleared)
    }

    /// Keeps the cache under its size limits and drops idle entries.
    pub(crate) async fn enforce_limits(&self) -> Result<(), ProxyError> {
        if self.config.max_size > 0 {
            self.shrink(None, self.config.max_size as i64).await?;
        }
        for upstream in self.upstreams().iter().filter(|u| u.record.max_size > 0) {
            self.shrink(Some(&upstream.record.name), upstream.record.max_size).await?;
        }
        if let Some(idle) = self.config.idle_expiry {
            let before = now_unix() - idle.as_secs() as i64;
            loop {
                let idle = self.meta.idle_cache_entries(before, BATCH).await?;
                if idle.is_empty() {
                    break;
                }
                for entry in &idle {
                    self.evict(entry, "idle").await?;
                }
            }
        }
        Ok(())
    }

    async fn shrink(&self, upstream: Option<&str>, limit: i64) -> Result<(), ProxyError> {
        let mut bytes = self.meta.cache_totals(upstream).await?.bytes;
        if bytes <= limit {
            return Ok(());
        }
        self.flush_touches().await;
        while bytes > limit {
            let candidates = self.meta.eviction_candidates(upstream, BATCH).await?;
            let busy = {
                let flights = self.flights.lock().expect("flights lock");
                candidates.iter().filter(|e| flights.contains_key(&e.digest)).count()
            };
            if candidates.len() == busy {
                break; // everything left is pinned or being fetched
            }
            for entry in &candidates {
                if bytes <= limit {
                    break;
                }
                self.evict(entry, "size").await?;
                bytes -= entry.size;
            }
        }
        Ok(())
    }

    async fn evict(&self, entry: &CacheEntry, reason: &'static str) -> Result<(), ProxyError> {
        let Ok(digest) = entry.digest.parse::<berth_core::Digest>() else {
            self.meta.delete_cache_entry(&entry.digest).await?;
            return Ok(());
        };
        let holders = self.meta.repos_with_blob(&digest, 10_000).await?;
        for ns in &self.namespaces() {
            self.meta.unlink_blob_in_project(ns, &entry.digest).await?;
        }
        for repo in holders.iter().filter_map(|r| r.parse().ok()) {
            self.registry.invalidate(&repo);
        }
        self.meta.delete_cache_entry(&entry.digest).await?;
        // The collector's protocol, at once: only a blob nothing links or commits loses its bytes.
        let item = berth_meta::GcItem {
            kind: berth_meta::GcKind::Blob,
            repo_id: 0,
            repository: String::new(),
            digest: entry.digest.clone(),
            queued_at: berth_meta::now_ms(),
        };
        let claimed = self.meta.gc_claim_blobs(&[item]).await?;
        if !claimed.is_empty() {
            self.registry.blob_store().delete(&digest).await.map_err(berth_registry::RegistryError::from)?;
            self.meta.gc_finish_blobs(std::slice::from_ref(&entry.digest)).await?;
        }
        self.stats.evicted(reason, entry.size as u64);
        let mut event =
            berth_meta::EventDraft::new(berth_meta::EventKind::CacheEvict, &berth_meta::EventActor::system("proxy"))
                .digest(entry.digest.as_str())
                .size(entry.size as u64);
        event.detail = serde_json::json!({ "reason": reason, "upstream": entry.upstream });
        self.meta.append_events(&[event]).await?;
        tracing::debug!(digest = entry.digest, size = entry.size, reason, "cache entry evicted");
        Ok(())
    }

    /// Every upstream namespace, once each.
    fn namespaces(&self) -> Vec<String> {
        let mut namespaces: Vec<String> = self.upstreams().iter().map(|u| u.record.namespace.clone()).collect();
        namespaces.sort();
        namespaces.dedup();
        namespaces
    }

    async fn repos_in(&self, namespace: &str) -> Result<Vec<String>, ProxyError> {
        let prefix = format!("{namespace}/");
        let mut names = Vec::new();
        let mut last = prefix.clone();
        loop {
            let page = self.meta.list_repos(Some(&last), 1000).await?;
            let in_ns: Vec<String> = page.iter().take_while(|n| n.starts_with(&prefix)).cloned().collect();
            let more = in_ns.len() == page.len() && !page.is_empty();
            if let Some(l) = in_ns.last() {
                last = l.clone();
            }
            names.extend(in_ns);
            if !more {
                return Ok(names);
            }
        }
    }
}
