//! Blob pull throughput: one streamed GET at a time, page-cached on the server.

use std::sync::Arc;
use std::time::Instant;

use anyhow::ensure;

use crate::client::Target;
use crate::data::Blob;
use crate::oci;
use crate::report::{Better, Report, gib_s};
use crate::stats::median;

/// Pulls `blob` (already pushed to `repo`) once untimed, then `repeat` times; records `pull.gib_s`.
pub async fn measure(
    target: &Arc<Target>,
    report: &mut Report,
    repo: &str,
    blob: &Blob,
    verify: bool,
    repeat: u32,
) -> anyhow::Result<()> {
    // The warm-up pull brings the blob into the page cache (and the server's caches).
    let n = oci::get_blob(target, repo, blob.digest(), verify).await?;
    ensure!(n == blob.size(), "GET blob returned {n} bytes, expected {}", blob.size());
    let mut rates = Vec::new();
    for _ in 0..repeat.max(1) {
        let started = Instant::now();
        oci::get_blob(target, repo, blob.digest(), verify).await?;
        rates.push(gib_s(blob.size(), started.elapsed().as_secs_f64()));
    }
    report.param("pull_verify", verify);
    report.add("pull.gib_s", median(&rates), "GiB/s", Better::Higher);
    Ok(())
}
