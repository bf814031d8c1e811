//! Manifests through the cache: local-first, revalidated by HEAD after the
//! tag TTL, stale when the upstream fails, verified and indexed on a miss.

use std::sync::Arc;

use berth_core::{Digest, Reference, Tag};
use berth_meta::{CachedTag, now_unix};
use berth_registry::{ManifestBody, RegistryError};
use berth_upstream::FetchedManifest;

use crate::{CacheStatus, Proxy, ProxyError, Route};

/// Referrers of one subject fetched per listing, at most.
const MAX_REFERRERS: usize = 256;

/// A manifest served through the cache.
#[derive(Debug)]
pub struct ProxiedManifest {
    pub body: Arc<ManifestBody>,
    pub status: CacheStatus,
}

impl Proxy {
    /// Looks `reference` up in the cache repository, fetching it on a miss.
    pub async fn manifest(&self, route: &Route, reference: &Reference) -> Result<ProxiedManifest, ProxyError> {
        let local = match self.registry.get_manifest(&route.cache_repo, reference).await {
            Ok(body) => Some(body),
            Err(RegistryError::ManifestUnknown | RegistryError::NameUnknown) => None,
            Err(e) => return Err(e.into()),
        };
        let result = match (reference, local) {
            // Content-addressed: once cached it never changes.
            (Reference::Digest(_), Some(body)) => Ok(ProxiedManifest { body, status: CacheStatus::Hit }),
            (Reference::Digest(digest), None) => self.fetch_by_digest(route, digest).await,
            (Reference::Tag(tag), local) => self.tag(route, tag, local).await,
        };
        match &result {
            Ok(m) if m.status == CacheStatus::Miss => self.stats.miss("manifest"),
            Ok(_) => self.stats.hit("manifest"),
            Err(_) => {}
        }
        result
    }

    async fn tag(
        &self,
        route: &Route,
        tag: &Tag,
        local: Option<Arc<ManifestBody>>,
    ) -> Result<ProxiedManifest, ProxyError> {
        let repo = route.cache_repo.as_str();
        if let Some(body) = &local {
            let fresh = match self.meta.cached_tag(repo, tag.as_str()).await? {
                Some(c) => c.digest == body.digest.as_str() && now_unix() - c.validated_at < self.ttl_secs(),
                None => false,
            };
            if fresh || self.config.offline {
                return Ok(ProxiedManifest { body: body.clone(), status: CacheStatus::Hit });
            }
        } else if self.config.offline {
            return Err(ProxyError::Offline);
        }
        let mut failure = None;
        let mut all_missing = true;
        for upstream in &route.candidates {
            let client = &upstream.client;
            // HEAD first: an unchanged tag costs no body.
            if let Some(body) = &local {
                match client.head_manifest(&route.remote, tag.as_str()).await {
                    Ok(Some(head)) if head.digest.as_deref() == Some(body.digest.as_str()) => {
                        self.confirm(route, tag, &upstream.record.name, &body.digest).await?;
                        return Ok(ProxiedManifest { body: body.clone(), status: CacheStatus::Revalidated });
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => continue,
                    Err(e) => {
                        all_missing = false;
                        tracing::warn!(upstream = upstream.record.name, error = %e, "manifest HEAD failed");
                        failure = Some(e.to_string());
                        continue;
                    }
                }
            }
            match client.get_manifest(&route.remote, tag.as_str()).await {
                Ok(Some(fetched)) => {
                    let body = self.store(route, fetched, None, Some(tag.clone())).await?;
                    self.confirm(route, tag, &upstream.record.name, &body.digest).await?;
                    return Ok(ProxiedManifest { body, status: CacheStatus::Miss });
                }
                Ok(None) => {}
                Err(e) => {
                    all_missing = false;
                    tracing::warn!(upstream = upstream.record.name, error = %e, "manifest GET failed");
                    failure = Some(e.to_string());
                }
            }
        }
        match local {
            // The upstream failed or no longer has the tag: serve what we have.
            Some(body) => {
                tracing::info!(repo, tag = tag.as_str(), "serving a stale cached tag");
                Ok(ProxiedManifest { body, status: CacheStatus::Stale })
            }
            None if all_missing => Err(ProxyError::NotFound),
            None => Err(ProxyError::Upstream(failure.unwrap_or_else(|| "no upstream available".into()))),
        }
    }

    async fn fetch_by_digest(&self, route: &Route, digest: &Digest) -> Result<ProxiedManifest, ProxyError> {
        if self.config.offline {
            return Err(ProxyError::Offline);
        }
        let mut failure = None;
        for upstream in &route.candidates {
            match upstream.client.get_manifest(&route.remote, digest.as_str()).await {
                Ok(Some(fetched)) => {
                    let body = self.store(route, fetched, Some(digest), None).await?;
                    return Ok(ProxiedManifest { body, status: CacheStatus::Miss });
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(upstream = upstream.record.name, error = %e, "manifest GET failed");
                    failure = Some(e.to_string());
                }
            }
        }
        Err(failure.map(ProxyError::Upstream).unwrap_or(ProxyError::NotFound))
    }

    /// Verifies a fetched manifest and indexes it into the cache repository.
    async fn store(
        &self,
        route: &Route,
        fetched: FetchedManifest,
        expected: Option<&Digest>,
        tag: Option<Tag>,
    ) -> Result<Arc<ManifestBody>, ProxyError> {
        let algorithm = expected.map(Digest::algorithm).unwrap_or(berth_core::Algorithm::Sha256);
        let actual = Digest::compute(algorithm, &fetched.body);
        if let Some(expected) = expected.filter(|e| **e != actual) {
            return Err(ProxyError::InvalidManifest(format!("body has digest {actual}, not {expected}")));
        }
        let header = fetched.digest.as_deref().filter(|h| h.starts_with(algorithm.as_str()));
        if let Some(header) = header.filter(|h| *h != actual.as_str()) {
            return Err(ProxyError::InvalidManifest(format!("body has digest {actual}, upstream said {header}")));
        }
        let media_type = fetched.media_type.as_deref();
        let put = self
            .registry
            .ingest_manifest(&route.cache_repo, &actual, media_type, fetched.body.to_vec(), tag)
            .await
            .map_err(|e| match e {
                RegistryError::ManifestInvalid(m) | RegistryError::DigestInvalid(m) => ProxyError::InvalidManifest(m),
                RegistryError::ManifestUnsupported(t) => {
                    ProxyError::InvalidManifest(format!("unsupported media type {t:?}"))
                }
                other => other.into(),
            })?;
        self.local_repos.invalidate(route.cache_repo.as_str());
        tracing::debug!(repo = route.cache_repo.as_str(), digest = %put.digest, "manifest cached");
        Ok(self.registry.get_manifest(&route.cache_repo, &Reference::Digest(put.digest)).await?)
    }

    async fn confirm(&self, route: &Route, tag: &Tag, upstream: &str, digest: &Digest) -> Result<(), ProxyError> {
        let record = CachedTag { upstream: upstream.to_owned(), digest: digest.to_string(), validated_at: now_unix() };
        Ok(self.meta.put_cached_tag(route.cache_repo.as_str(), tag.as_str(), &record).await?)
    }

    /// Fetches the upstream's referrers of `subject` that are not cached yet
    /// (OCI 1.1), so the local referrers listing includes them. Best effort:
    /// an upstream without the API or out of reach leaves what is cached.
    pub async fn sync_referrers(&self, route: &Route, subject: &Digest) {
        if self.config.offline {
            return;
        }
        for upstream in &route.candidates {
            let index = match upstream.client.referrers(&route.remote, subject.as_str()).await {
                Ok(Some(index)) => index,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(upstream = upstream.record.name, error = %e, "referrers unavailable");
                    continue;
                }
            };
            let listed: Vec<Digest> = serde_json::from_slice::<serde_json::Value>(&index)
                .ok()
                .and_then(|v| v.get("manifests").and_then(|m| m.as_array()).cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|d| d.get("digest")?.as_str()?.parse().ok())
                .take(MAX_REFERRERS)
                .collect();
            for digest in listed {
                let reference = Reference::Digest(digest.clone());
                if self.registry.get_manifest(&route.cache_repo, &reference).await.is_ok() {
                    continue;
                }
                if let Err(e) = self.fetch_by_digest(route, &digest).await {
                    tracing::debug!(%digest, error = %e, "referrer not cached");
                }
            }
            return;
        }
    }

    /// The upstream's tag list of the route's repository (`n`, `last` passed
    /// on), in bytewise order; `None` when offline or no upstream answered, so
    /// the caller lists what is cached instead.
    pub async fn upstream_tags(&self, route: &Route, n: Option<u32>, last: Option<&str>) -> Option<Vec<String>> {
        if self.config.offline {
            return None;
        }
        for upstream in &route.candidates {
            match upstream.client.tags(&route.remote, n, last).await {
                Ok(Some(body)) => {
                    let listed: serde_json::Value = serde_json::from_slice(&body).ok()?;
                    let mut tags: Vec<String> = listed
                        .get("tags")
                        .and_then(|t| t.as_array())
                        .map(|t| t.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default();
                    tags.sort();
                    return Some(tags);
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(upstream = upstream.record.name, error = %e, "tag list unavailable"),
            }
        }
        None
    }

    fn ttl_secs(&self) -> i64 {
        self.config.tag_ttl.as_secs() as i64
    }
}
