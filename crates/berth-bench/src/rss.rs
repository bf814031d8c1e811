//! A server's memory from /proc/PID/status: VmRSS now, VmHWM (peak) since it started.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cli::RssArgs;
use crate::report::{Better, Report};

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Mem {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl Mem {
    /// Reads /proc/PID/status.
    pub fn read(pid: u32) -> anyhow::Result<Mem> {
        let path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .with_context(|| format!("{path} has no {name}"))
        };
        Ok(Mem { rss_kib: field("VmRSS:")?, hwm_kib: field("VmHWM:")? })
    }
}

/// KiB in MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Polls VmRSS in the background and keeps the highest value seen since the last reset.
pub struct Sampler {
    pid: u32,
    peak_kib: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts polling every `interval`.
    pub fn start(pid: u32, interval: Duration) -> Sampler {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let peak = Arc::clone(&peak_kib);
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            while let Ok(mem) = Mem::read(pid) {
                peak.fetch_max(mem.rss_kib, Ordering::Relaxed);
                ticker.tick().await;
            }
        });
        Sampler { pid, peak_kib, task }
    }

    /// Forgets the peak so far (the next sample starts a new one).
    pub fn reset(&self) {
        let now = Mem::read(self.pid).map_or(0, |m| m.rss_kib);
        self.peak_kib.store(now, Ordering::Relaxed);
    }

    /// Highest VmRSS sampled since the last reset, in KiB.
    pub fn peak_kib(&self) -> u64 {
        let now = Mem::read(self.pid).map_or(0, |m| m.rss_kib);
        self.peak_kib.load(Ordering::Relaxed).max(now)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `rss` subcommand: sample until the process exits or the duration ends.
pub async fn watch(report: &mut Report, args: &RssArgs) -> anyhow::Result<()> {
    let first = Mem::read(args.pid)?;
    let sampler = Sampler::start(args.pid, args.interval);
    let started = Instant::now();
    let mut last = first;
    while args.duration.is_none_or(|d| started.elapsed() < d) {
        match Mem::read(args.pid) {
            Ok(mem) => last = mem,
            Err(_) => break,
        }
        tokio::time::sleep(args.interval).await;
    }
    report.add("rss.start_mib", mib(first.rss_kib), "MiB", Better::Lower);
    report.add("rss.peak_sampled_mib", mib(sampler.peak_kib()), "MiB", Better::Lower);
    report.add("rss.hwm_mib", mib(last.hwm_kib), "MiB", Better::Lower);
    Ok(())
}
