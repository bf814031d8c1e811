//! Which cache repository and upstreams serve a `/v2` name.
//!
//! Two ways in: a name whose first segment is an upstream's namespace
//! (`docker.io/library/nginx`), and mirror mode, where a name that does not
//! exist locally (`library/nginx`, or `nginx` for Docker Hub) goes to the
//! mirror upstream of best priority, or to the one whose host matches
//! containerd's `ns` parameter. Either way the content is cached under
//! `<namespace>/<remote name>`; every enabled upstream of that namespace is
//! tried in priority order.

use std::sync::Arc;

use berth_core::RepoName;

use crate::upstreams::host_namespace;
use crate::{Proxy, ProxyError, Upstream};

/// Where a proxied read goes.
#[derive(Debug, Clone)]
pub struct Route {
    /// The local repository holding the cached content.
    pub cache_repo: RepoName,
    /// The upstream namespace (first segment of `cache_repo`).
    pub namespace: String,
    /// The repository name upstream.
    pub remote: String,
    /// Enabled upstreams of the namespace, by priority.
    pub candidates: Vec<Arc<Upstream>>,
}

impl Proxy {
    /// Whether any upstream is configured at all (the `/v2` fast path skips the cache otherwise).
    pub fn is_active(&self) -> bool {
        !self.upstreams().is_empty()
    }

    /// Whether `name` lies in an upstream's namespace, where pushes are refused.
    pub fn namespace_of(&self, name: &str) -> Option<String> {
        let first = name.split('/').next()?;
        self.upstreams().iter().find(|u| u.record.namespace == first).map(|u| u.record.namespace.clone())
    }

    /// The route of a read of `name`, or `None` when it is served locally as usual.
    /// `ns` is containerd's `?ns=` parameter.
    pub async fn route(&self, name: &str, ns: Option<&str>) -> Result<Option<Route>, ProxyError> {
        let upstreams = self.upstreams();
        if upstreams.is_empty() {
            return Ok(None);
        }
        if let Some(namespace) = self.namespace_of(name) {
            let rest = name.get(namespace.len() + 1..).unwrap_or_default();
            let first = upstreams.iter().find(|u| u.record.namespace == namespace);
            let remote = first.map(|u| u.remote_name(rest)).unwrap_or_else(|| rest.to_owned());
            let cache_name = format!("{namespace}/{remote}");
            return Ok(Some(self.route_in(&upstreams, &namespace, remote, &cache_name)?));
        }
        // Mirror mode: only for names that are not local repositories.
        let chosen = match ns.map(host_namespace) {
            Some(wanted) => upstreams
                .iter()
                .find(|u| u.record.enabled && (u.record.namespace == wanted || u.host_namespace() == wanted)),
            None => upstreams.iter().find(|u| u.record.enabled && u.record.mirror),
        };
        let Some(chosen) = chosen.cloned() else { return Ok(None) };
        if self.exists_locally(name).await? {
            return Ok(None);
        }
        let remote = chosen.remote_name(name);
        let cache_name = format!("{}/{remote}", chosen.record.namespace);
        Ok(Some(self.route_in(&upstreams, &chosen.record.namespace, remote, &cache_name)?))
    }

    fn route_in(
        &self,
        upstreams: &[Arc<Upstream>],
        namespace: &str,
        remote: String,
        cache_name: &str,
    ) -> Result<Route, ProxyError> {
        let cache_repo: RepoName =
            cache_name.parse().map_err(|e| ProxyError::Invalid(format!("bad repository name {cache_name:?}: {e}")))?;
        let candidates =
            upstreams.iter().filter(|u| u.record.enabled && u.record.namespace == namespace).cloned().collect();
        Ok(Route { cache_repo, namespace: namespace.to_owned(), remote, candidates })
    }

    /// The cache repository mirror mode would serve `name` from (without
    /// checking whether `name` exists locally): for authorization, which judges
    /// a pull of a name of no project by the cache repository's project.
    pub fn mirror_alias(&self, name: &str) -> Option<String> {
        let upstreams = self.upstreams();
        if self.namespace_of(name).is_some() {
            return None;
        }
        let chosen = upstreams.iter().find(|u| u.record.enabled && u.record.mirror)?;
        Some(format!("{}/{}", chosen.record.namespace, chosen.remote_name(name)))
    }

    /// Forgets what was memoised about `name` after a local write created or
    /// changed it, so mirror mode never shadows a repository just pushed.
    pub fn forget_local(&self, name: &str) {
        self.local_repos.invalidate(name);
    }

    async fn exists_locally(&self, name: &str) -> Result<bool, ProxyError> {
        if let Some(known) = self.local_repos.get(name) {
            return Ok(known);
        }
        let Ok(repo) = name.parse::<RepoName>() else { return Ok(false) };
        let exists = self.meta.repo_exists(&repo).await?;
        self.local_repos.insert(name.to_owned(), exists);
        Ok(exists)
    }
}
