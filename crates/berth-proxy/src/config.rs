//! Settings of the pull-through cache.

use std::path::PathBuf;
use std::time::Duration;

/// Knobs of the cache as a whole (upstreams are data, see [`crate::upstreams`]).
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Serve only what is cached; never contact an upstream.
    pub offline: bool,
    /// A cached tag is served without asking the upstream for this long.
    pub tag_ttl: Duration,
    /// Bytes of cached blobs above which the least recently used go; 0 = no limit.
    pub max_size: u64,
    /// Cached blobs not pulled for this long are evicted; `None` = never.
    pub idle_expiry: Option<Duration>,
    /// Where blobs being fetched are spooled for the clients reading along.
    pub spool_dir: PathBuf,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            offline: false,
            tag_ttl: Duration::from_secs(300),
            max_size: 0,
            idle_expiry: None,
            spool_dir: std::env::temp_dir().join("berth-proxy-spool"),
        }
    }
}
