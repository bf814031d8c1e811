//! Counters of the cache: kept here for `/api/accel/cache/stats` and exported
//! to Prometheus through the `metrics` facade.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_meta::{CacheTouch, now_unix};
use serde::Serialize;

/// What `GET /api/accel/cache/stats` shows.
#[derive(Debug, Clone, Serialize)]
pub struct CacheStats {
    pub total_size: u64,
    pub max_size: u64,
    pub entry_count: u64,
    pub hit_count: u64,
    pub miss_count: u64,
    /// hits / (hits + misses), 0 when there were none.
    pub hit_rate: f64,
    pub bytes_from_upstream: u64,
    pub evictions: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    hits: AtomicU64,
    misses: AtomicU64,
    upstream_bytes: AtomicU64,
    evictions: AtomicU64,
    /// Accesses not yet written: digest → (last access, hits).
    touches: Mutex<HashMap<String, (i64, i64)>>,
}

impl Stats {
    pub fn hit(&self, kind: &'static str) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("berth_proxy_hits_total", "kind" => kind).increment(1);
    }

    pub fn miss(&self, kind: &'static str) {
        self.misses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("berth_proxy_misses_total", "kind" => kind).increment(1);
    }

    pub fn upstream_bytes(&self, upstream: &str, n: u64) {
        self.upstream_bytes.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("berth_proxy_upstream_bytes_total", "upstream" => upstream.to_owned()).increment(n);
    }

    pub fn corrupt(&self) {
        metrics::counter!("berth_proxy_corrupt_blobs_total").increment(1);
    }

    pub fn evicted(&self, reason: &'static str, bytes: u64) {
        self.evictions.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("berth_proxy_evictions_total", "reason" => reason).increment(1);
        metrics::counter!("berth_proxy_evicted_bytes_total", "reason" => reason).increment(bytes);
    }

    /// A blob served from the cache: a hit, and an access for the LRU order.
    pub fn blob_hit(&self, digest: &str) {
        self.hit("blob");
        self.touch(digest);
    }

    /// Notes an access to a cached blob; written to the database in batches.
    fn touch(&self, digest: &str) {
        let mut touches = self.touches.lock().expect("touches lock");
        let entry = touches.entry(digest.to_owned()).or_insert((0, 0));
        *entry = (now_unix(), entry.1 + 1);
    }

    pub fn take_touches(&self) -> Vec<CacheTouch> {
        let mut touches = self.touches.lock().expect("touches lock");
        touches.drain().map(|(digest, (at, hits))| (digest, at, hits)).collect()
    }

    pub fn snapshot(&self, total_size: u64, max_size: u64, entry_count: u64) -> CacheStats {
        let hit_count = self.hits.load(Ordering::Relaxed);
        let miss_count = self.misses.load(Ordering::Relaxed);
        let all = hit_count + miss_count;
        CacheStats {
            total_size,
            max_size,
            entry_count,
            hit_count,
            miss_count,
            hit_rate: if all == 0 { 0.0 } else { hit_count as f64 / all as f64 },
            bytes_from_upstream: self.upstream_bytes.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}
