//! Mixed load: M concurrent pushes and K concurrent pulls at once, each on its own connection.
//!
//! Records the wall time, the aggregate push and pull rates, the number of failed
//! operations, and the server's peak RSS while the load ran.

use std::sync::Arc;
use std::time::Instant;

use anyhow::ensure;

use crate::cli::LoadArgs;
use crate::client::Target;
use crate::data::{Blob, Pool};
use crate::oci;
use crate::report::{Better, Report, mib_s};
use crate::rss::{Sampler, mib};

/// Runs the mixed load against `repo`; blob ids start at `first_id`.
pub async fn measure(
    target: &Arc<Target>,
    report: &mut Report,
    pool: &Pool,
    repo: &str,
    args: &LoadArgs,
    sampler: Option<&Sampler>,
    first_id: u64,
) -> anyhow::Result<()> {
    let source = pool.blobs(first_id, 1, args.pull_size.0).await?.remove(0);
    oci::push_monolithic(&mut target.connect().await?, repo, &source).await?;
    let pushes = pool.blobs(first_id + 1, u64::from(args.pushes), args.push_size.0).await?;
    report.param(
        "load",
        serde_json::json!({
            "pushes": args.pushes, "push_bytes": args.push_size.0, "pulls": args.pulls, "pull_bytes": args.pull_size.0,
        }),
    );
    if let Some(s) = sampler {
        s.reset();
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for blob in pushes {
        let (target, repo) = (Arc::clone(target), repo.to_owned());
        tasks.push(tokio::spawn(async move { push(&target, &repo, &blob).await }));
    }
    for _ in 0..args.pulls {
        let (target, repo, source) = (Arc::clone(target), repo.to_owned(), source.clone());
        tasks.push(tokio::spawn(async move { pull(&target, &repo, &source).await }));
    }
    let mut errors = 0u32;
    for task in tasks {
        if let Err(e) = task.await? {
            if errors == 0 {
                report.note(format!("mixed load: first error: {e:#}"));
            }
            errors += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let pushed = u64::from(args.pushes) * args.push_size.0;
    let pulled = u64::from(args.pulls) * args.pull_size.0;
    report.add("mixed.seconds", seconds, "s", Better::Lower);
    report.add("mixed.errors", f64::from(errors), "", Better::Lower);
    report.add("mixed.push_mib_s", mib_s(pushed, seconds), "MiB/s", Better::Higher);
    report.add("mixed.pull_mib_s", mib_s(pulled, seconds), "MiB/s", Better::Higher);
    if let Some(s) = sampler {
        report.add("mixed.peak_rss_mib", mib(s.peak_kib()), "MiB", Better::Lower);
    }
    Ok(())
}

async fn push(target: &Arc<Target>, repo: &str, blob: &Blob) -> anyhow::Result<()> {
    let mut conn = target.connect().await?;
    oci::push_monolithic(&mut conn, repo, blob).await
}

async fn pull(target: &Arc<Target>, repo: &str, blob: &Blob) -> anyhow::Result<()> {
    let n = oci::get_blob(target, repo, blob.digest(), false).await?;
    ensure!(n == blob.size(), "pulled {n} bytes, expected {}", blob.size());
    Ok(())
}
