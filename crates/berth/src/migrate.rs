//! `berth storage-migrate` and `berth meta-migrate`: moving a single-node install
//! to the scaled-out setup (PostgreSQL + S3), resumably and verified.

use std::process::ExitCode;

use anyhow::{Context, bail};
use berth_storage::BlobStore;
use futures_util::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};

use crate::backends::{MetaBackend, open_blob_store, open_metadata, redact};
use crate::cli::{MigrateArgs, ServeArgs};
use crate::config::Config;

/// Which migration to run.
pub enum Kind {
    Storage,
    Meta,
}

pub fn run(kind: Kind, args: MigrateArgs) -> ExitCode {
    let serve_args = ServeArgs { config: args.config.clone(), ..Default::default() };
    let config = match Config::load(&serve_args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: invalid configuration: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        match kind {
            Kind::Storage => storage(&args, &config).await,
            Kind::Meta => meta(&args, &config).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let template = format!("{{elapsed_precise}} [{{wide_bar}}] {{pos}}/{{len}} {what} {{msg}}");
    bar.set_style(ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> "));
    bar
}

/// Copies every blob, skipping those already present with the right size.
async fn storage(args: &MigrateArgs, config: &Config) -> anyhow::Result<()> {
    let from = open_blob_store(&args.from, config).await.context("source")?;
    let to = open_blob_store(&args.to, config).await.context("destination")?;
    eprintln!("listing blobs in {} …", args.from);
    let blobs: Vec<(berth_core::Digest, u64)> = from.list().try_collect().await?;
    let total: u64 = blobs.iter().map(|(_, s)| s).sum();
    let bar = bar(blobs.len() as u64, "blobs");
    let (mut copied, mut skipped, mut bytes) = (0u64, 0u64, 0u64);
    for (digest, size) in &blobs {
        if to.stat(digest).await? == Some(*size) {
            skipped += 1;
        } else {
            copy_blob(from.as_ref(), to.as_ref(), digest).await.with_context(|| format!("copying {digest}"))?;
            copied += 1;
            bytes += size;
        }
        bar.set_message(format!("({} MiB of {} MiB copied)", bytes >> 20, total >> 20));
        bar.inc(1);
    }
    bar.finish();
    eprintln!(
        "storage-migrate: {copied} blobs copied ({bytes} bytes), {skipped} already present, all digests verified"
    );
    Ok(())
}

/// Streams one blob into the destination through the digest check.
async fn copy_blob(from: &dyn BlobStore, to: &dyn BlobStore, digest: &berth_core::Digest) -> anyhow::Result<()> {
    let id = uuid::Uuid::new_v4().to_string();
    let cursor = to.upload_create(&id).await?;
    let mut hasher = digest.algorithm().hasher();
    let data = from.get(digest, None).await?;
    let (_, cursor) = to.upload_append(&id, &cursor, 0, data.boxed(), &mut hasher).await?;
    let computed = hasher.finish();
    if &computed != digest {
        to.upload_abort(&id, &cursor).await.ok();
        bail!("source blob {digest} is corrupt: its bytes hash to {computed}");
    }
    let sealed = to.upload_seal(&id, &cursor).await?;
    to.upload_commit(&id, &sealed, digest).await?;
    Ok(())
}

/// Copies all metadata from SQLite into PostgreSQL.
async fn meta(args: &MigrateArgs, config: &Config) -> anyhow::Result<()> {
    let from = open_metadata(&args.from, config).await.context("source")?;
    let to = open_metadata(&args.to, config).await.context("destination")?;
    let (MetaBackend::Sqlite(src), MetaBackend::Postgres(dst)) = (&from, &to) else {
        bail!("meta-migrate copies sqlite:// into postgres:// (got {} → {})", args.from, redact(&args.to));
    };
    let bar = ProgressBar::new_spinner();
    let report = berth_meta::transfer::sqlite_to_postgres(src, dst, |table, n| {
        bar.set_message(format!("{table}: {n} rows"));
        bar.tick();
    })
    .await?;
    bar.finish_and_clear();
    for (table, n) in &report.tables {
        eprintln!("meta-migrate: {table}: {n} rows");
    }
    // The collector's queue is not copied (its rows name source ids): queue afresh
    // whatever is unreferenced, as `berth gc --full` would.
    let queued = berth_meta::GcStore::gc_seed(dst).await?;
    eprintln!("meta-migrate: queued {queued} unreferenced entries for garbage collection");
    from.close().await;
    to.close().await;
    eprintln!("meta-migrate: done; start berth with --database-url {}", redact(&args.to));
    Ok(())
}
