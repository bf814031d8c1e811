//! Pull counters, kept off the pull path: a manifest GET adds one to an
//! in-memory tally (one short mutex section, no I/O) and a background task
//! writes the tallies in one transaction every second and at shutdown
//! ([`Registry::flush_usage`](crate::Registry::flush_usage)). A crash loses at
//! most the last second of counts. Push counts need no batching: they are
//! written in the manifest-put transaction itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use berth_core::RepoName;
use berth_meta::{MetaError, Metadata, PullTally, now_unix};

/// How often recorded pulls are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// What was pulled: repository and, for pulls by tag, the tag.
type PullKey = (String, Option<String>);

/// Pulls recorded since the last flush: key → (count, last pull).
#[derive(Debug, Default)]
pub(crate) struct Usage {
    pending: Mutex<HashMap<PullKey, (i64, i64)>>,
}

impl Usage {
    /// Counts one pull of `repo`, by `tag` when it was one (tags count per tag too).
    pub(crate) fn record_pull(&self, repo: &RepoName, tag: Option<&str>) {
        self.add(repo.as_str().to_owned(), tag.map(str::to_owned), 1, now_unix());
    }

    fn add(&self, repo: String, tag: Option<String>, count: i64, at: i64) {
        let mut pending = self.pending.lock().expect("usage lock poisoned");
        let entry = pending.entry((repo, tag)).or_insert((0, at));
        entry.0 += count;
        entry.1 = entry.1.max(at);
    }

    /// Writes and clears what was recorded; on failure the tallies are kept
    /// for the next flush.
    pub(crate) async fn flush(&self, meta: &dyn Metadata) -> Result<usize, MetaError> {
        let taken: Vec<PullTally> = {
            let mut pending = self.pending.lock().expect("usage lock poisoned");
            pending.drain().map(|((repo, tag), (count, at))| PullTally { repo, tag, count, at }).collect()
        };
        if taken.is_empty() {
            return Ok(0);
        }
        if let Err(e) = meta.record_pulls(&taken).await {
            for t in taken {
                self.add(t.repo, t.tag, t.count, t.at);
            }
            return Err(e);
        }
        Ok(taken.len())
    }
}
