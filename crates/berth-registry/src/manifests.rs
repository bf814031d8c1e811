//! Manifests, tags and referrers.

use berth_core::manifest::MAX_MANIFEST_BYTES;
use berth_core::{Digest, ManifestError, ParsedManifest, Reference, RepoName, Tag};
use berth_meta::{EventActor, EventDraft, EventKind, ManifestRecord, NewManifest, Referrer};

use std::sync::Arc;

use bytes::Bytes;

use crate::{ManifestBody, Registry, RegistryError};

/// The result of storing a manifest.
#[derive(Debug, Clone)]
pub struct ManifestPut {
    pub digest: Digest,
    pub subject: Option<Digest>,
    /// Every tag now pointing at the manifest.
    pub tags: Vec<Tag>,
}

/// Referrers of a subject, after optional filtering.
#[derive(Debug, Clone)]
pub struct ReferrerList {
    pub referrers: Vec<Referrer>,
    pub filtered_by_artifact_type: bool,
}

impl Registry {
    /// Validates and stores a manifest pushed to `reference`, tagging it with the
    /// reference (if a tag) and `extra_tags` in the same transaction.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Vec<u8>,
        extra_tags: Vec<Tag>,
        actor: &EventActor,
    ) -> Result<ManifestPut, RegistryError> {
        if body.len() > MAX_MANIFEST_BYTES {
            return Err(RegistryError::ManifestTooLarge { limit: MAX_MANIFEST_BYTES });
        }
        let parsed = ParsedManifest::parse(&body, content_type).map_err(|e| match e {
            ManifestError::UnsupportedMediaType(t) => RegistryError::ManifestUnsupported(t),
            other => RegistryError::ManifestInvalid(other.to_string()),
        })?;
        let mut tags = extra_tags;
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::compute(expected.algorithm(), &body);
                if &actual != expected {
                    return Err(RegistryError::DigestInvalid(format!(
                        "manifest body has digest {actual}, not {expected}"
                    )));
                }
                actual
            }
            Reference::Tag(tag) => {
                tags.insert(0, tag.clone());
                Digest::sha256(&body)
            }
        };
        tags.dedup();
        self.store_manifest(repo, digest, parsed, body, tags, Some(actor)).await
    }

    /// Stores a manifest fetched from another registry (the pull-through cache):
    /// the body must hash to `digest` and parse, but what it references may
    /// arrive later. Tags it with `tag` when given.
    pub async fn ingest_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        content_type: Option<&str>,
        body: Vec<u8>,
        tag: Option<Tag>,
    ) -> Result<ManifestPut, RegistryError> {
        if body.len() > MAX_MANIFEST_BYTES {
            return Err(RegistryError::ManifestTooLarge { limit: MAX_MANIFEST_BYTES });
        }
        let actual = Digest::compute(digest.algorithm(), &body);
        if &actual != digest {
            return Err(RegistryError::DigestInvalid(format!("manifest body has digest {actual}, not {digest}")));
        }
        let parsed = ParsedManifest::parse(&body, content_type).map_err(|e| match e {
            ManifestError::UnsupportedMediaType(t) => RegistryError::ManifestUnsupported(t),
            other => RegistryError::ManifestInvalid(other.to_string()),
        })?;
        self.store_manifest(repo, actual, parsed, body, tag.into_iter().collect(), None).await
    }

    async fn store_manifest(
        &self,
        repo: &RepoName,
        digest: Digest,
        parsed: ParsedManifest,
        body: Vec<u8>,
        tags: Vec<Tag>,
        pushed_by: Option<&EventActor>,
    ) -> Result<ManifestPut, RegistryError> {
        // A push by a client needs its references and is an event; a manifest the
        // pull-through cache stores arrives before what it references, unannounced.
        let require_references = pushed_by.is_some();
        let events = pushed_by
            .map(|actor| {
                let mut push = EventDraft::new(EventKind::Push, actor)
                    .repository(repo.as_str())
                    .digest(digest.as_str())
                    .tag(tags.first().map(Tag::as_str))
                    .media_type(parsed.media_type.clone())
                    .size(body.len() as u64);
                push.detail = serde_json::json!({ "tags": tags.iter().map(Tag::as_str).collect::<Vec<_>>() });
                vec![push]
            })
            .unwrap_or_default();
        let annotations_json =
            parsed.annotations.as_ref().map(|a| serde_json::to_string(a).expect("string maps always serialise"));
        let manifest = NewManifest {
            digest: digest.clone(),
            media_type: parsed.media_type,
            artifact_type: parsed.artifact_type,
            subject: parsed.subject.clone(),
            annotations_json,
            payload: body,
            blob_refs: parsed.blobs.into_iter().map(|d| d.digest).collect(),
            manifest_refs: parsed.children.into_iter().map(|d| d.digest).collect(),
            require_references,
            events,
        };
        self.meta.put_manifest(repo, manifest, &tags).await?;
        self.cache.invalidate(repo);
        Ok(ManifestPut { digest, subject: parsed.subject, tags })
    }

    /// Looks a manifest up by tag or digest, from the cache when possible.
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Arc<ManifestBody>, RegistryError> {
        let key = self.cache.manifest_key(repo, &reference.to_string());
        if let Some(hit) = self.cache.manifest(&key) {
            return Ok(hit);
        }
        let found = match reference {
            Reference::Digest(d) => self.meta.manifest_by_digest(repo, d, true).await?,
            Reference::Tag(t) => self.meta.manifest_by_tag(repo, t, true).await?,
        };
        match found {
            Some(ManifestRecord { digest, media_type, payload, .. }) => {
                let body =
                    Arc::new(ManifestBody { digest, media_type, payload: Bytes::from(payload.unwrap_or_default()) });
                self.cache.put_manifest(key, body.clone());
                Ok(body)
            }
            None if self.meta.repo_exists(repo).await? => Err(RegistryError::ManifestUnknown),
            None => Err(RegistryError::NameUnknown),
        }
    }

    /// Deletes a tag (the manifest stays) or a manifest by digest (with its tags).
    pub async fn delete_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        actor: &EventActor,
    ) -> Result<(), RegistryError> {
        if !self.config.deletes_enabled {
            return Err(RegistryError::DeletesDisabled);
        }
        let event = EventDraft::new(EventKind::Delete, actor).repository(repo.as_str());
        let deleted = match reference {
            Reference::Digest(d) => self.meta.delete_manifest(repo, d, &[event.digest(d.as_str())]).await?,
            Reference::Tag(t) => self.meta.delete_tag(repo, t, &[event.tag(Some(t.as_str()))]).await?,
        };
        match deleted {
            true => {
                self.cache.invalidate(repo);
                Ok(())
            }
            false if self.meta.repo_exists(repo).await? => Err(RegistryError::ManifestUnknown),
            false => Err(RegistryError::NameUnknown),
        }
    }

    /// Deletes a whole repository: every tag, manifest and blob link (the
    /// blobs become unreferenced and are left to garbage collection).
    pub async fn delete_repository(&self, repo: &RepoName, actor: &EventActor) -> Result<(), RegistryError> {
        if !self.config.deletes_enabled {
            return Err(RegistryError::DeletesDisabled);
        }
        let event = EventDraft::new(EventKind::RepositoryDelete, actor).repository(repo.as_str());
        let deleted = self.meta.delete_repository(repo.as_str(), &[event]).await?;
        self.cache.invalidate(repo);
        if deleted { Ok(()) } else { Err(RegistryError::NameUnknown) }
    }

    /// Tags of `repo` in bytewise order, strictly after `last`, at most `limit`.
    pub async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Arc<Vec<String>>, RegistryError> {
        let key = self.cache.tag_page_key(repo, last, limit);
        if let Some(page) = self.cache.tag_page(&key) {
            return Ok(page);
        }
        if !self.meta.repo_exists(repo).await? {
            return Err(RegistryError::NameUnknown);
        }
        let page = Arc::new(self.meta.list_tags(repo, last, limit).await?);
        self.cache.put_tag_page(key, page.clone());
        Ok(page)
    }

    /// Manifests in `repo` whose subject is `subject`. An unknown repository
    /// simply has no referrers (clients probe before pushing).
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<ReferrerList, RegistryError> {
        let referrers = self.meta.list_referrers(repo, subject, artifact_type).await?;
        Ok(ReferrerList { referrers, filtered_by_artifact_type: artifact_type.is_some() })
    }
}
