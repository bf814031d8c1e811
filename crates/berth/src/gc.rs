//! `berth gc`: one garbage-collection run against the configured backends,
//! safe while servers run (it takes the same lease their scheduled runs take).
//!
//! `--full` first queues everything nothing references, found by a pass over
//! the database (never the blob store): for installations from before the
//! queue existed, after `meta-migrate`, or as a safety net.

use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::backends::{open_blob_store, open_metadata};
use crate::cli::GcArgs;
use crate::config::{Config, parse_duration};

pub fn run(args: GcArgs) -> ExitCode {
    let config = match Config::load(&args.serve) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: invalid configuration: {e:#}");
            return ExitCode::from(2);
        }
    };
    let grace = match args.grace.as_deref().map(parse_duration).transpose() {
        Ok(grace) => grace,
        Err(e) => {
            eprintln!("berth: --grace: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(collect(&args, &config, grace)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn collect(args: &GcArgs, config: &Config, grace: Option<Duration>) -> anyhow::Result<()> {
    let meta = open_metadata(&config.database_url(), config).await?.as_dyn();
    let store = open_blob_store(&config.storage_url(), config).await?;
    if args.full {
        let queued = meta.gc_seed().await?;
        eprintln!("queued {queued} unreferenced entries from a pass over the database");
    }
    let collector = berth_gc::Collector::new(meta.clone(), store, config.gc.settings());
    let node = format!("cli-{}-{}", hostname(), std::process::id());
    let request = berth_gc::RunRequest { trigger: berth_gc::Trigger::Cli, node, dry_run: args.dry_run, grace };
    let queue = meta.gc_queue_stats().await?;
    let bar = ProgressBar::new(queue.manifests + queue.links + queue.blobs + queue.tombstones);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} queued entries ETA {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let progress = {
        let bar = bar.clone();
        move |c: &berth_meta::GcCounters, _remaining: u64| {
            bar.set_position(c.examined.min(bar.length().unwrap_or(u64::MAX)));
            bar.set_message(format!("{} reclaimed", human_bytes(c.bytes_reclaimed)));
        }
    };
    let report = collector.run(&request, &progress).await;
    bar.finish_and_clear();
    let report = match report {
        Err(berth_gc::GcError::Busy) => {
            anyhow::bail!("a garbage collection is already running (another node or process)")
        }
        other => other?,
    };
    let c = report.counters;
    if let Some(plan) = &report.plan {
        for (repo, digest) in &plan.manifests {
            println!("manifest {repo}@{digest}");
        }
        for (repo, digest) in &plan.links {
            println!("link     {repo} {digest}");
        }
        for (digest, size) in &plan.blobs {
            println!("blob     {digest} ({size} bytes)");
        }
    }
    let verb = if args.dry_run { "would delete" } else { "deleted" };
    let secs = report.elapsed.as_secs_f64().max(1e-3);
    println!(
        "berth gc: {} entries examined; {verb} {} manifests, {} blob links, {} blobs ({}) in {:.1}s ({:.0} blobs/s, {}/s)",
        c.examined,
        c.manifests_deleted,
        c.links_deleted,
        c.blobs_deleted,
        human_bytes(c.bytes_reclaimed),
        secs,
        c.blobs_deleted as f64 / secs,
        human_bytes((c.bytes_reclaimed as f64 / secs) as u64),
    );
    let left = meta.gc_queue_stats().await?;
    let waiting = left.manifests + left.links + left.blobs;
    if waiting > 0 {
        println!("{waiting} entries stay queued until their grace period ends");
    }
    Ok(())
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "localhost".into())
}
