//! berth's pull-through cache (the accelerator, API.md §5.2).
//!
//! Upstream registries are data ([`upstreams`]). A `/v2` read that names an
//! upstream's namespace (`docker.io/library/nginx`), or in mirror mode a
//! repository that does not exist locally (`library/nginx`), is [routed](route)
//! to a *cache repository* `<namespace>/<remote name>`: an ordinary repository,
//! so cached images show up in every listing. Manifests are fetched, verified
//! and indexed synchronously ([`manifests`]); blobs stream to every waiting
//! client while they are written to the store, through one upstream fetch per
//! digest ([`flight`]), and become visible only once their digest is verified.
//! Cached tags are served without asking the upstream for `tag_ttl`, then
//! revalidated with a HEAD; when the upstream fails the cached copy is served,
//! marked stale. Blobs are evicted least recently used first ([`evict`]).

mod blobs;
pub mod config;
mod error;
mod evict;
mod flight;
mod manifests;
pub mod route;

mod stats;
pub mod upstreams;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use berth_access::sealed::SecretsKey;
use berth_meta::Metadata;
use berth_registry::Registry;

pub use blobs::ProxiedBlob;
pub use config::ProxyConfig;
pub use error::ProxyError;
pub use manifests::ProxiedManifest;
pub use route::Route;
pub use stats::CacheStats;
pub use upstreams::{Upstream, UpstreamSpec, UpstreamUpdate};

/// Where a proxied response came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from the cache without asking the upstream.
    Hit,
    /// Fetched from the upstream just now.
    Miss,
    /// Served from the cache after the upstream confirmed it.
    Revalidated,
    /// Served from the cache because the upstream could not confirm it.
    Stale,
}

impl CacheStatus {
    /// The `X-Berth-Cache` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::Stale => "STALE",
        }
    }
}

/// The pull-through cache service.
pub struct Proxy {
    registry: Arc<Registry>,
    meta: Arc<dyn Metadata>,
    config: ProxyConfig,
    secrets: SecretsKey,
    /// Upstreams by priority, reloaded from the database after every change.
    upstreams: RwLock<Arc<Vec<Arc<Upstream>>>>,
    /// Blob fetches in progress, by digest.
    flights: Mutex<HashMap<String, Arc<flight::Flight>>>,
    /// Whether a repository exists locally (mirror mode must not shadow it).
    local_repos: moka::sync::Cache<String, bool>,
    stats: stats::Stats,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Proxy {
    /// Opens the cache: clears leftover spool files and loads the upstreams.
    pub async fn open(
        registry: Arc<Registry>,
        config: ProxyConfig,
        secrets: SecretsKey,
    ) -> Result<Arc<Self>, ProxyError> {
        flight::reset_spool(&config.spool_dir).map_err(|e| {
            ProxyError::Internal(format!("cannot prepare the spool directory {}: {e}", config.spool_dir.display()))
        })?;
        let meta = registry.meta().clone();
        let proxy = Arc::new(Proxy {
            registry,
            meta,
            config,
            secrets,
            upstreams: RwLock::new(Arc::new(Vec::new())),
            flights: Mutex::new(HashMap::new()),
            local_repos: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(LOCAL_REPO_TTL).build(),
            stats: stats::Stats::default(),
        });
        proxy.reload().await?;
        Ok(proxy)
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Runs the background work: batched access records, eviction, idle expiry.
    pub fn spawn_maintenance(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let proxy = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(MAINTENANCE_INTERVAL);
            loop {
                ticker.tick().await;
                proxy.flush_touches().await;
                if let Err(e) = proxy.enforce_limits().await {
                    tracing::warn!(error = %e, "cache eviction failed");
                }
                // Upstreams changed by another node show up here.
                if let Err(e) = proxy.reload().await {
                    tracing::warn!(error = %e, "cannot reload upstreams");
                }
            }
        })
    }
}

/// How long "this repository exists locally" is remembered.
const LOCAL_REPO_TTL: Duration = Duration::from_secs(2);
/// How often access records are written and limits enforced.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(5);

/// A stream of bytes sent to a client.
pub(crate) type ByteStreamOut = berth_registry::ByteStream;
