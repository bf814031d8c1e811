//! Upstream registries as data: validation, defaults, sealed credentials, and
//! the clients built from them.

use std::sync::Arc;
use std::time::Duration;

use berth_meta::{UpstreamRecord, now_unix};
use berth_upstream::{UpstreamClient, UpstreamConfig};
use serde::{Deserialize, Serialize};

use crate::{Proxy, ProxyError};

/// The sealing context of upstream passwords (binds a ciphertext to its use).
const PASSWORD_CONTEXT: &str = "upstream-password";
const DEFAULT_TIMEOUT_SECS: i64 = 30;
const DEFAULT_MAX_CONCURRENT: i64 = 16;

/// An upstream with its HTTP client.
#[derive(Debug)]
pub struct Upstream {
    pub record: UpstreamRecord,
    pub client: UpstreamClient,
}

/// An upstream to add (seed 000's `name`, `url`, `priority`, `enabled`, plus berth's fields).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    pub name: Option<String>,
    pub url: Option<String>,
    pub priority: Option<i64>,
    pub enabled: Option<bool>,
    pub namespace: Option<String>,
    pub mirror: Option<bool>,
    pub library_prefix: Option<bool>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub timeout_secs: Option<i64>,
    pub max_concurrent: Option<i64>,
    pub max_size: Option<i64>,
}

/// Fields to change on an upstream; absent ones stay.
pub type UpstreamUpdate = UpstreamSpec;

/// An upstream as the API shows it: never the password.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamView {
    pub name: String,
    pub url: String,
    pub priority: i64,
    pub enabled: bool,
    pub namespace: String,
    pub mirror: bool,
    pub library_prefix: bool,
    pub username: Option<String>,
    pub has_password: bool,
    pub timeout_secs: i64,
    pub max_concurrent: i64,
    pub max_size: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&UpstreamRecord> for UpstreamView {
    fn from(r: &UpstreamRecord) -> Self {
        UpstreamView {
            name: r.name.clone(),
            url: r.url.clone(),
            priority: r.priority,
            enabled: r.enabled,
            namespace: r.namespace.clone(),
            mirror: r.mirror,
            library_prefix: r.library_prefix,
            username: r.username.clone(),
            has_password: r.password_sealed.is_some(),
            timeout_secs: r.timeout_secs,
            max_concurrent: r.max_concurrent,
            max_size: r.max_size,
            created_at: berth_meta::rfc3339(r.created_at),
            updated_at: berth_meta::rfc3339(r.updated_at),
        }
    }
}

/// Health of an upstream: `GET {url}/v2/` answers 200 or 401.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamHealth {
    pub name: String,
    pub healthy: bool,
    pub status: &'static str,
    /// The HTTP status, or the error when there was none.
    pub detail: String,
}

/// Docker Hub's registry hosts, whose namespace is `docker.io`.
fn is_docker_hub(host: &str) -> bool {
    matches!(host, "docker.io" | "registry-1.docker.io" | "index.docker.io" | "registry.hub.docker.com")
}

/// The canonical namespace of a registry host (`ns` parameter or URL host).
pub fn host_namespace(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    if is_docker_hub(&host) { "docker.io".into() } else { host.replace(':', "-") }
}

/// `host[:port]` of an upstream URL.
fn url_host(url: &str) -> Result<String, ProxyError> {
    let parsed = url::Url::parse(url).map_err(|e| ProxyError::Invalid(format!("bad url {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ProxyError::Invalid(format!("url {url:?} must be http or https")));
    }
    let host = parsed.host_str().ok_or_else(|| ProxyError::Invalid(format!("url {url:?} has no host")))?;
    Ok(match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

/// Whether `ns` is usable as the first segment of repository names.
fn valid_namespace(ns: &str) -> bool {
    format!("{ns}/x").parse::<berth_core::RepoName>().is_ok() && !ns.contains('/')
}

impl Upstream {
    /// The URL host, for matching containerd's `ns` parameter.
    pub fn host_namespace(&self) -> String {
        url_host(&self.record.url).map(|h| host_namespace(&h)).unwrap_or_default()
    }

    /// Repository name upstream for a name asked for in mirror mode.
    pub fn remote_name(&self, name: &str) -> String {
        if self.record.library_prefix && !name.contains('/') { format!("library/{name}") } else { name.to_owned() }
    }
}

impl Proxy {
    /// Every upstream by priority.
    pub fn upstreams(&self) -> Arc<Vec<Arc<Upstream>>> {
        self.upstreams.read().expect("upstreams lock").clone()
    }

    /// One upstream by name.
    pub fn upstream(&self, name: &str) -> Option<Arc<Upstream>> {
        self.upstreams().iter().find(|u| u.record.name == name).cloned()
    }

    /// Re-reads the upstreams from the database and rebuilds their clients
    /// (keeping the clients of unchanged ones, with their tokens and permits).
    pub async fn reload(&self) -> Result<(), ProxyError> {
        let records = self.meta.list_upstreams().await?;
        let current = self.upstreams();
        let mut next = Vec::with_capacity(records.len());
        for record in records {
            if let Some(same) = current.iter().find(|u| u.record == record) {
                next.push(same.clone());
                continue;
            }
            match self.client_for(&record) {
                Ok(client) => next.push(Arc::new(Upstream { record, client })),
                Err(e) => tracing::warn!(upstream = record.name, error = %e, "upstream skipped"),
            }
        }
        *self.upstreams.write().expect("upstreams lock") = Arc::new(next);
        Ok(())
    }

    fn client_for(&self, r: &UpstreamRecord) -> Result<UpstreamClient, ProxyError> {
        let password = match &r.password_sealed {
            Some(sealed) => Some(
                String::from_utf8(
                    self.secrets
                        .open(PASSWORD_CONTEXT, sealed)
                        .map_err(|e| ProxyError::Internal(format!("cannot decrypt the password: {e}")))?,
                )
                .map_err(|_| ProxyError::Internal("password is not UTF-8".into()))?,
            ),
            None => None,
        };
        let timeout = Duration::from_secs(r.timeout_secs.max(1) as u64);
        UpstreamClient::new(UpstreamConfig {
            name: r.name.clone(),
            url: r.url.clone(),
            username: r.username.clone(),
            password,
            timeout,
            read_timeout: timeout.max(Duration::from_secs(60)),
            max_concurrent: r.max_concurrent.max(1) as usize,
            ..UpstreamConfig::default()
        })
        .map_err(|e| ProxyError::Invalid(e.to_string()))
    }

    /// Adds an upstream; an existing one of the same name is replaced when `replace`.
    pub async fn add_upstream(&self, spec: UpstreamSpec, replace: bool) -> Result<UpstreamView, ProxyError> {
        let name = spec.name.clone().map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        let name = name.ok_or_else(|| ProxyError::Invalid("name is required".into()))?;
        if name.len() > 128 || name.chars().any(|c| c.is_control() || c == '/') {
            return Err(ProxyError::Invalid("name must be 1-128 characters without '/'".into()));
        }
        let url = spec.url.clone().ok_or_else(|| ProxyError::Invalid("url is required".into()))?;
        let now = now_unix();
        let blank = UpstreamRecord {
            name: name.clone(),
            url: url.clone(),
            priority: 1,
            enabled: true,
            namespace: String::new(),
            mirror: true,
            library_prefix: false,
            username: None,
            password_sealed: None,
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            max_size: 0,
            created_at: now,
            updated_at: now,
        };
        let record = self.apply(blank, spec)?;
        let stored = if replace {
            let existing = self.meta.list_upstreams().await?.into_iter().find(|u| u.name == name);
            match existing {
                Some(old) => {
                    let record = UpstreamRecord { created_at: old.created_at, ..record };
                    self.meta.update_upstream(&record).await?;
                    record
                }
                None => {
                    self.meta.insert_upstream(&record).await?;
                    record
                }
            }
        } else {
            if !self.meta.insert_upstream(&record).await? {
                return Err(ProxyError::Invalid(format!("an upstream named {name:?} already exists")));
            }
            record
        };
        self.reload().await?;
        tracing::info!(upstream = stored.name, url = stored.url, namespace = stored.namespace, "upstream saved");
        Ok(UpstreamView::from(&stored))
    }

    /// Changes fields of an upstream.
    pub async fn update_upstream(&self, name: &str, update: UpstreamUpdate) -> Result<UpstreamView, ProxyError> {
        if update.name.as_deref().is_some_and(|n| n != name) {
            return Err(ProxyError::Invalid("an upstream cannot be renamed".into()));
        }
        let current = self.upstream(name).map(|u| u.record.clone());
        let current = match current {
            Some(c) => c,
            None => self
                .meta
                .list_upstreams()
                .await?
                .into_iter()
                .find(|u| u.name == name)
                .ok_or(ProxyError::UnknownUpstream)?,
        };
        let record = UpstreamRecord { updated_at: now_unix(), ..self.apply(current, update)? };
        if !self.meta.update_upstream(&record).await? {
            return Err(ProxyError::UnknownUpstream);
        }
        self.reload().await?;
        Ok(UpstreamView::from(&record))
    }

    /// Removes an upstream (what it cached stays, served from its namespace).
    pub async fn delete_upstream(&self, name: &str) -> Result<(), ProxyError> {
        if !self.meta.delete_upstream(name).await? {
            return Err(ProxyError::UnknownUpstream);
        }
        self.reload().await
    }

    /// Checks `GET {url}/v2/`.
    pub async fn upstream_health(&self, name: &str) -> Result<UpstreamHealth, ProxyError> {
        let upstream = self.upstream(name).ok_or(ProxyError::UnknownUpstream)?;
        let (healthy, detail) = match upstream.client.ping().await {
            Ok(status) => (status == 200 || status == 401, format!("HTTP {status}")),
            Err(e) => (false, e.to_string()),
        };
        let status = if healthy { "healthy" } else { "unhealthy" };
        Ok(UpstreamHealth { name: name.to_owned(), healthy, status, detail })
    }

    /// Applies the fields of `spec` that are present to `r`, validating them.
    fn apply(&self, mut r: UpstreamRecord, spec: UpstreamSpec) -> Result<UpstreamRecord, ProxyError> {
        if let Some(url) = spec.url {
            let url = url.trim().trim_end_matches('/').to_owned();
            url_host(&url)?;
            r.url = url;
        }
        let host = url_host(&r.url)?;
        if let Some(p) = spec.priority {
            if !(0..=1_000_000).contains(&p) {
                return Err(ProxyError::Invalid("priority must be between 0 and 1000000".into()));
            }
            r.priority = p;
        }
        if let Some(e) = spec.enabled {
            r.enabled = e;
        }
        if let Some(m) = spec.mirror {
            r.mirror = m;
        }
        match spec.namespace {
            Some(ns) => r.namespace = ns.trim().to_ascii_lowercase(),
            None if r.namespace.is_empty() => r.namespace = host_namespace(&host),
            None => {}
        }
        if !valid_namespace(&r.namespace) {
            return Err(ProxyError::Invalid(format!(
                "namespace {:?} is not a valid repository path component",
                r.namespace
            )));
        }
        r.library_prefix = spec.library_prefix.unwrap_or(r.library_prefix || r.namespace == "docker.io");
        if let Some(u) = spec.username {
            r.username = Some(u).filter(|u| !u.is_empty());
        }
        if let Some(p) = spec.password {
            r.password_sealed =
                Some(p).filter(|p| !p.is_empty()).map(|p| self.secrets.seal(PASSWORD_CONTEXT, p.as_bytes()));
        }
        if let Some(t) = spec.timeout_secs {
            if !(1..=3600).contains(&t) {
                return Err(ProxyError::Invalid("timeout_secs must be between 1 and 3600".into()));
            }
            r.timeout_secs = t;
        }
        if let Some(c) = spec.max_concurrent {
            if !(1..=1024).contains(&c) {
                return Err(ProxyError::Invalid("max_concurrent must be between 1 and 1024".into()));
            }
            r.max_concurrent = c;
        }
        if let Some(s) = spec.max_size {
            if s < 0 {
                return Err(ProxyError::Invalid("max_size must not be negative".into()));
            }
            r.max_size = s;
        }
        self.client_for(&r)?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_from_hosts() {
        assert_eq!(host_namespace("registry-1.docker.io"), "docker.io");
        assert_eq!(host_namespace("index.docker.io"), "docker.io");
        assert_eq!(host_namespace("ghcr.io"), "ghcr.io");
        assert_eq!(host_namespace("127.0.0.1:5000"), "127.0.0.1-5000");
        assert!(valid_namespace("127.0.0.1-5000"));
        assert!(valid_namespace("docker.io"));
        assert!(!valid_namespace("Docker Hub"));
        assert!(!valid_namespace("a/b"));
    }
}
