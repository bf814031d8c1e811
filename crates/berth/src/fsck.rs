//! `berth fsck`: checks the blob store against the metadata, never changing either.
//!
//! Reports four kinds of trouble:
//! - **missing**: a blob some repository links has no bytes in the store (lost
//!   data: pulls of it fail);
//! - **corrupt** (with `--verify-digests`): the bytes no longer hash to the
//!   blob's digest, or their size differs from the recorded one;
//! - **stale rows**: an unlinked blob row without bytes (harmless; GC drops it);
//! - **orphans**: bytes in the store that no blob row names (left by an upload
//!   that was committed to the store but not to the database, or by a restore
//!   of an older database); space that garbage collection can reclaim.
//!
//! The store is listed once (its listing is the one walk of storage berth ever
//! does, and only here); the metadata is paged in digest order. Safe to run
//! while servers run: a blob committed during the run may show up as an orphan.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Context;
use berth_core::Digest;
use berth_storage::BlobStore;
use futures_util::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};

use crate::backends::{open_blob_store, open_metadata};
use crate::cli::FsckArgs;
use crate::config::Config;

/// Blob rows read per page.
const PAGE: u32 = 1000;

#[derive(Debug, Default)]
struct Findings {
    checked: u64,
    bytes_verified: u64,
    missing: Vec<Digest>,
    corrupt: Vec<(Digest, String)>,
    stale_rows: Vec<Digest>,
    orphans: Vec<(Digest, u64)>,
}

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
            if f.missing.is_empty() && f.corrupt.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
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
    let mut stored: HashMap<Digest, u64> =
        store.list().try_collect::<Vec<_>>().await.context("cannot list the blob store")?.into_iter().collect();
    let bar = ProgressBar::new(stored.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} blobs ETA {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut findings = Findings::default();
    let mut after: Option<String> = None;
    loop {
        let page = meta.as_dyn().list_blobs(after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.digest.to_string());
        for row in page {
            findings.checked += 1;
            match stored.remove(&row.digest) {
                None if row.linked => findings.missing.push(row.digest),
                None => findings.stale_rows.push(row.digest),
                Some(size) if size != row.size => {
                    findings.corrupt.push((row.digest, format!("{size} bytes stored, {} recorded", row.size)));
                }
                Some(size) => {
                    if args.verify_digests {
                        if let Some(problem) = rehash(store.as_ref(), &row.digest).await {
                            findings.corrupt.push((row.digest, problem));
                        }
                        findings.bytes_verified += size;
                    }
                    bar.inc(1);
                }
            }
        }
    }
    bar.finish_and_clear();
    findings.orphans = stored.into_iter().collect();
    findings.orphans.sort();
    meta.close().await;
    Ok(findings)
}

/// Streams a blob through its digest's hash; a description of what is wrong, if anything.
async fn rehash(store: &dyn BlobStore, digest: &Digest) -> Option<String> {
    let mut hasher = digest.algorithm().hasher();
    let mut stream = match store.get(digest, None).await {
        Ok(s) => s,
        Err(e) => return Some(format!("cannot read: {e}")),
    };
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => hasher.update(&bytes),
            Err(e) => return Some(format!("read failed: {e}")),
        }
    }
    let actual = hasher.finish();
    (&actual != digest).then(|| format!("bytes hash to {actual}"))
}
