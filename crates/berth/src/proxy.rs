//! Builds the pull-through cache from the configuration.

use std::sync::Arc;

use anyhow::Context;
use berth_access::sealed::SecretsKey;
use berth_http::AppState;
use berth_proxy::{Proxy, ProxyConfig, UpstreamSpec};
use berth_registry::Registry;

use crate::config::Config;

/// Opens the cache with the secrets key that seals upstream passwords.
pub async fn open(config: &Config, registry: Arc<Registry>) -> anyhow::Result<Arc<Proxy>> {
    let p = &config.proxy;
    let proxy_config = ProxyConfig {
        offline: p.offline,
        tag_ttl: p.tag_ttl,
        max_size: p.max_size,
        idle_expiry: (!p.idle_expiry.is_zero()).then_some(p.idle_expiry),
        spool_dir: p.spool_dir.clone().unwrap_or_else(|| config.data_dir.join("proxy-spool")),
    };
    let secrets = secrets_key(config)?;
    Proxy::open(registry, proxy_config, secrets).await.map_err(|e| anyhow::anyhow!("pull-through cache: {e}"))
}

/// Writes the configured upstreams to the database (the file wins over earlier
/// API edits of the same name) and makes sure their namespaces are projects.
pub async fn apply_config(config: &Config, state: &AppState) -> anyhow::Result<()> {
    for u in &config.proxy.upstreams {
        let spec = UpstreamSpec {
            name: Some(u.name.clone()),
            url: Some(u.url.clone()),
            priority: Some(u.priority),
            enabled: Some(u.enabled),
            namespace: u.namespace.clone(),
            mirror: Some(u.mirror),
            library_prefix: u.library_prefix,
            username: Some(u.username.clone().unwrap_or_default()),
            password: Some(u.password.clone().unwrap_or_default()),
            timeout_secs: Some(u.timeout.as_secs() as i64),
            max_concurrent: Some(u.max_concurrent),
            max_size: Some(u.max_size),
        };
        state.proxy.add_upstream(spec, true).await.map_err(|e| anyhow::anyhow!("proxy upstream {:?}: {e}", u.name))?;
    }
    if state.access.enabled() {
        let system = berth_registry::access::Actor {
            user_id: None,
            username: "system".into(),
            ip: String::new(),
            user_agent: "berth".into(),
        };
        for u in state.proxy.upstreams().iter() {
            let public = u.record.username.is_none();
            berth_http::api::projects::ensure_cache_project(state, &u.record.namespace, public, &system).await?;
        }
    }
    Ok(())
}

/// `secrets.key`, or a key kept in the data directory (one node, or nodes that
/// do not share sealed secrets), created on first start. It seals upstream
/// passwords and webhook secrets.
pub fn secrets_key(config: &Config) -> anyhow::Result<SecretsKey> {
    if let Some(text) = config.secrets.key.as_deref() {
        return SecretsKey::parse(text).map_err(|e| anyhow::anyhow!("secrets.key: {e}"));
    }
    let path = config.data_dir.join("keys").join("secrets.key");
    if !path.exists() {
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        write_private(&path, &SecretsKey::generate_text())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    SecretsKey::parse(text.trim()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
