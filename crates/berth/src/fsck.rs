//! `berth fsck`: the scrub (`berth_gc::scrub`) run once from the command line,
//! reporting missing, corrupt (`--verify-digests`) and orphaned blobs and stale
//! rows; it changes nothing unless `--reclaim-orphans` hands orphans to the
//! garbage collector. Safe while servers run.

use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::backends::{open_blob_store, open_metadata};
use crate::cli::FsckArgs;
use crate::config::Config;

use berth_gc::scrub::Findings;

pub fn run(args: FsckArgs) -> ExitCode {
    let config = match Config::load(&args.serve) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: invalid configuration: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(fsck(&args, &config)) {
        Ok(f) => {
            report(&f);
            if f.damaged() { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn report(f: &Findings) {
    for d in &f.missing {
        println!("missing  {d}");
    }
    for (d, why) in &f.corrupt {
        println!("corrupt  {d}: {why}");
    }
    for d in &f.stale_rows {
        println!("stale    {d}");
    }
    for (d, size) in &f.orphans {
        println!("orphan   {d} ({size} bytes)");
    }
    let orphan_bytes: u64 = f.orphans.iter().map(|(_, s)| s).sum();
    println!(
        "berth fsck: {} blobs checked ({} bytes re-hashed), {} missing, {} corrupt, {} stale rows, {} orphans ({} bytes)",
        f.checked,
        f.bytes_verified,
        f.missing.len(),
        f.corrupt.len(),
        f.stale_rows.len(),
        f.orphans.len(),
        orphan_bytes
    );
}

async fn fsck(args: &FsckArgs, config: &Config) -> anyhow::Result<Findings> {
    let meta = open_metadata(&config.database_url(), config).await?;
    let store = open_blob_store(&config.storage_url(), config).await?;
    eprintln!("listing the blob store …");
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} blobs ETA {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let progress = {
        let bar = bar.clone();
        move |checked: u64, total: u64| {
            bar.set_length(total.max(checked));
            bar.set_position(checked);
        }
    };
    let findings = berth_gc::scrub::scrub(meta.as_dyn().as_ref(), store.as_ref(), args.verify_digests, &progress)
        .await
        .context("scrub")?;
    bar.finish_and_clear();
    if args.reclaim_orphans && !findings.orphans.is_empty() {
        let adopted = berth_gc::scrub::adopt_orphans(meta.as_dyn().as_ref(), &findings.orphans).await?;
        eprintln!("handed {adopted} orphans to the garbage collector (its next run deletes them)");
    }
    meta.close().await;
    Ok(findings)
}
