//! Pull events, batched off the pull path.
//!
//! A pull changes nothing, so its event need not share a transaction with
//! anything: pulls are queued in memory and written in one transaction per
//! flush (every second, and at shutdown). They are only queued while some
//! webhook subscribes to them, so a registry nobody listens to pays one atomic
//! load per pull.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use berth_core::{Digest, RepoName};
use berth_meta::{EventActor, EventDraft, EventKind};

use crate::{Registry, RegistryError};

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

impl Registry {
    /// Whether pulls are recorded as events (some webhook subscribes to them).
    pub fn set_pull_events(&self, wanted: bool) {
        self.pulls.wanted.store(wanted, Ordering::Relaxed);
    }

    /// Queues a `pull` event when anyone listens.
    pub fn record_pull_event(&self, pull: Pull<'_>, actor: &EventActor) {
        if !self.pulls.wanted.load(Ordering::Relaxed) {
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
