//! Blob push throughput, monolithic or chunked.

use std::sync::Arc;
use std::time::Instant;

use crate::client::Target;
use crate::data::{Blob, Pool};
use crate::oci;
use crate::report::{Better, Report, mib_s};
use crate::stats::median;

/// How a blob is uploaded.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// POST, then one PUT with the whole blob.
    Monolithic,
    /// POST, PATCHes of this many bytes, then an empty PUT.
    Chunked(u64),
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Monolithic => "monolithic",
            Mode::Chunked(_) => "chunked",
        }
    }
}

/// What to push.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub mode: Mode,
    /// Bytes per blob.
    pub size: u64,
    /// Timed pushes, each of a fresh blob; the median is reported.
    pub repeat: u32,
    /// Pool id of the first blob (later ones follow).
    pub first_id: u64,
}

/// Pushes the blobs of `spec` and records `push.{mode}.mib_s` (the median).
///
/// Returns the last blob pushed, so a pull can reuse it.
pub async fn measure(
    target: &Arc<Target>,
    report: &mut Report,
    pool: &Pool,
    repo: &str,
    spec: Spec,
) -> anyhow::Result<Blob> {
    let mut rates = Vec::new();
    let mut last = None;
    for i in 0..u64::from(spec.repeat.max(1)) {
        let blob = pool.blobs(spec.first_id + i, 1, spec.size).await?.remove(0);
        let mut conn = target.connect().await?;
        let started = Instant::now();
        match spec.mode {
            Mode::Monolithic => oci::push_monolithic(&mut conn, repo, &blob).await?,
            Mode::Chunked(chunk) => oci::push_chunked(&mut conn, repo, &blob, chunk).await?,
        }
        rates.push(mib_s(spec.size, started.elapsed().as_secs_f64()));
        last = Some(blob);
    }
    report.add(format!("push.{}.mib_s", spec.mode.name()), median(&rates), "MiB/s", Better::Higher);
    Ok(last.expect("at least one push"))
}
