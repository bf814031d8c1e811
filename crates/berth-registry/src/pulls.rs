//! Manifest pulls, recorded off the pull path: counted for the usage figures
//! (see `usage.rs`) and, while some webhook subscribes to them, queued as
//! `pull` events.
//!
//! A pull changes nothing, so its event need not share a transaction with
//! anything: events are queued in memory and written in one transaction per
//! flush (every second, and at shutdown). A registry nobody listens to pays one
//! atomic load per pull for them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use berth_core::{Digest, Reference, RepoName};
use berth_meta::{EventActor, EventDraft, EventKind};

use crate::{ManifestBody, Registry, RegistryError};

/// Pulls waiting beyond this are dropped (and counted): a stalled database must
/// not turn into unbounded memory.
const MAX_QUEUED: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct PullQueue {
    wanted: AtomicBool,
    queued: Mutex<Vec<EventDraft>>,
    dropped: AtomicU64,
}

/// One manifest pull.
#[derive(Debug, Clone, Copy)]
pub struct Pull<'a> {
    pub repo: &'a RepoName,
    /// The tag asked for, if the pull was by tag.
    pub tag: Option<&'a str>,
    pub digest: &'a Digest,
    pub media_type: &'a str,
    pub size: u64,
}

impl<'a> Pull<'a> {
    /// The pull of `manifest` from `repo` by `reference`.
    pub fn of(repo: &'a RepoName, reference: &'a Reference, manifest: &'a ManifestBody) -> Self {
        let tag = match reference {
            Reference::Tag(tag) => Some(tag.as_str()),
            Reference::Digest(_) => None,
        };
        Pull {
            repo,
            tag,
            digest: &manifest.digest,
            media_type: &manifest.media_type,
            size: manifest.payload.len() as u64,
        }
    }
}

impl Registry {
    /// Whether pulls are recorded as events (some webhook subscribes to them).
    pub fn set_pull_events(&self, wanted: bool) {
        self.pulls.wanted.store(wanted, Ordering::Relaxed);
    }

    /// Whether pull events are being recorded, so callers can skip preparing them.
    pub fn pull_events_wanted(&self) -> bool {
        self.pulls.wanted.load(Ordering::Relaxed)
    }

    /// Counts a manifest pull (in memory; see [`Registry::flush_usage`]) and
    /// queues its `pull` event when anyone listens.
    pub fn record_pull(&self, pull: Pull<'_>, actor: &EventActor) {
        self.usage.record_pull(pull.repo, pull.tag);
        if !self.pull_events_wanted() {
            return;
        }
        let event = EventDraft::new(EventKind::Pull, actor)
            .repository(pull.repo.as_str())
            .digest(pull.digest.as_str())
            .tag(pull.tag)
            .media_type(pull.media_type)
            .size(pull.size);
        let mut queued = self.pulls.queued.lock().unwrap();
        if queued.len() < MAX_QUEUED {
            queued.push(event);
        } else {
            self.pulls.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes the queued pull events in one transaction. Returns how many.
    pub async fn flush_pull_events(&self) -> Result<usize, RegistryError> {
        let batch = std::mem::take(&mut *self.pulls.queued.lock().unwrap());
        let dropped = self.pulls.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "pull events dropped: the queue was full");
        }
        if batch.is_empty() {
            return Ok(0);
        }
        self.meta.append_events(&batch).await?;
        Ok(batch.len())
    }
}
