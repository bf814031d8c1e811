//! berth's online garbage collector.
//!
//! The metadata database queues whatever may have become unreferenced, in the
//! same transaction as the change that did it (see `berth_meta::gc`). A run
//! drains that queue: manifests first (deleting one queues what it referenced),
//! then blob links, then blob bytes, which go in batches (S3 `DeleteObjects`,
//! 1000 keys a request) through a tombstone so a concurrent upload of the same
//! digest never loses its bytes. Entries younger than the grace period wait, so
//! a push that is still uploading layers it will reference keeps them. Nothing
//! walks the blob store. The queue is the checkpoint: an interrupted run leaves
//! the rest queued and its tombstones are finished first by the next run.
//!
//! Exactly one run at a time across all nodes: a run holds the `gc` lease and
//! renews it as it goes. A dry run holds nothing and changes nothing.

mod plan;
mod run;
pub mod scrub;

use std::sync::Arc;
use std::time::Duration;

use berth_meta::{GcCounters, GcPolicy, MetaError, Metadata};
use berth_storage::{BlobStore, StorageError};

pub use plan::Plan;

/// The lease a run holds.
pub const LEASE: &str = "gc";

/// How long a lease lasts without renewal; a run renews it every batch.
const LEASE_TTL_SECS: i64 = 60;

/// How a collector behaves.
#[derive(Debug, Clone, Copy)]
pub struct GcSettings {
    /// How long a queued object stays before it may go.
    pub grace: Duration,
    /// Which manifests may go.
    pub policy: GcPolicy,
    /// Queue entries read (and blobs deleted) per batch.
    pub batch: u32,
    /// Batches (and manifest or link checks) in flight at once.
    pub concurrency: usize,
}

impl Default for GcSettings {
    fn default() -> Self {
        GcSettings { grace: Duration::from_secs(3600), policy: GcPolicy::default(), batch: 1000, concurrency: 4 }
    }
}

/// Who started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Api,
    Cli,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Api => "api",
            Trigger::Cli => "cli",
        }
    }
}

/// One run's parameters.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub trigger: Trigger,
    /// This process's name among the nodes (the lease holder).
    pub node: String,
    pub dry_run: bool,
    /// Overrides the configured grace period.
    pub grace: Option<Duration>,
}

/// What a run did (or, dry, would do).
#[derive(Debug, Clone)]
pub struct Report {
    pub run_id: i64,
    pub counters: GcCounters,
    pub elapsed: Duration,
    /// A dry run's exact plan.
    pub plan: Option<Plan>,
}

/// A real run that holds the lease and has its record; see [`Collector::finish`].
#[derive(Debug)]
pub struct Started {
    pub run_id: i64,
    node: String,
    grace: Duration,
    at: std::time::Instant,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// Another node (or process) is running the collector.
    #[error("garbage collection is already running elsewhere")]
    Busy,
    /// The lease expired mid-run (the database was unreachable for a minute).
    #[error("lost the garbage-collection lease; the run stopped and the next one resumes")]
    LeaseLost,
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("blob store: {0}")]
    Storage(#[from] StorageError),
}

/// Progress as a run goes: counters so far and entries still due.
pub type ProgressFn = dyn Fn(&GcCounters, u64) + Send + Sync;

/// The collector over one metadata database and blob store.
#[derive(Debug, Clone)]
pub struct Collector {
    meta: Arc<dyn Metadata>,
    blobs: Arc<dyn BlobStore>,
    settings: GcSettings,
}

impl Collector {
    pub fn new(meta: Arc<dyn Metadata>, blobs: Arc<dyn BlobStore>, settings: GcSettings) -> Self {
        Collector { meta, blobs, settings }
    }

    /// The settings runs use by default.
    pub fn settings(&self) -> &GcSettings {
        &self.settings
    }

    /// Runs once: dry (read-only, returns the plan) or for real (under the lease).
    pub async fn run(&self, request: &RunRequest, progress: &ProgressFn) -> Result<Report, GcError> {
        if request.dry_run {
            return self.dry_run(request, request.grace.unwrap_or(self.settings.grace)).await;
        }
        let started = self.start(request).await?;
        self.finish(started, progress).await
    }

    /// Starts a real run: takes the lease and records the run, or answers
    /// [`GcError::Busy`]. Then [`Collector::finish`] does the work (in the
    /// background, for the API).
    pub async fn start(&self, request: &RunRequest) -> Result<Started, GcError> {
        let grace = request.grace.unwrap_or(self.settings.grace);
        if !self.meta.try_lease(LEASE, &request.node, LEASE_TTL_SECS).await? {
            return Err(GcError::Busy);
        }
        let run_id = match self
            .meta
            .gc_start_run(&request.node, request.trigger.as_str(), false, grace.as_secs() as i64)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                self.meta.try_lease(LEASE, &request.node, -1).await.ok();
                return Err(e.into());
            }
        };
        Ok(Started { run_id, node: request.node.clone(), grace, at: std::time::Instant::now() })
    }

    /// Does a started run's work, records how it ended and releases the lease.
    pub async fn finish(&self, started: Started, progress: &ProgressFn) -> Result<Report, GcError> {
        let Started { run_id, node, grace, at } = started;
        let mut counters = GcCounters::default();
        let outcome = self.collect(&node, grace, &mut counters, run_id, progress).await;
        let (state, error) = match &outcome {
            Ok(()) => ("finished", None),
            Err(e) => ("failed", Some(e.to_string())),
        };
        if let Err(e) = self.meta.gc_update_run(run_id, &counters, state, error.as_deref()).await {
            tracing::warn!(error = %e, "could not record the end of the garbage-collection run");
        }
        // Release the lease so the next run (any node) need not wait for it to expire.
        self.meta.try_lease(LEASE, &node, -1).await.ok();
        outcome?;
        let elapsed = at.elapsed();
        tracing::info!(
            run = run_id,
            manifests = counters.manifests_deleted,
            links = counters.links_deleted,
            blobs = counters.blobs_deleted,
            bytes = counters.bytes_reclaimed,
            elapsed_ms = elapsed.as_millis() as u64,
            "garbage collection finished"
        );
        Ok(Report { run_id, counters, elapsed, plan: None })
    }

    async fn dry_run(&self, request: &RunRequest, grace: Duration) -> Result<Report, GcError> {
        let started = std::time::Instant::now();
        let run_id =
            self.meta.gc_start_run(&request.node, request.trigger.as_str(), true, grace.as_secs() as i64).await?;
        let planned = plan::plan(self.meta.as_ref(), self.settings.policy, grace).await;
        let counters = planned.as_ref().map(Plan::counters).unwrap_or_default();
        let (state, error) = match &planned {
            Ok(_) => ("finished", None),
            Err(e) => ("failed", Some(e.to_string())),
        };
        self.meta.gc_update_run(run_id, &counters, state, error.as_deref()).await.ok();
        Ok(Report { run_id, counters, elapsed: started.elapsed(), plan: Some(planned?) })
    }
}

/// Unix milliseconds now.
fn now_ms() -> i64 {
    berth_meta::now_ms()
}
