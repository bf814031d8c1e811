//! Time to ready: from a start stamp taken just before the server was spawned to the
//! first answer to GET /v2/ (200, or 401 when authentication is on); then the idle RSS.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use http::{Method, StatusCode};

use crate::cli::WaitReadyArgs;
use crate::client::{self, Target};
use crate::report::{Better, Report};
use crate::rss::{Mem, mib};

/// How often GET /v2/ is retried while the server starts.
const POLL: Duration = Duration::from_millis(2);

/// Waits for the server and records `{name}.ms` and `{name}.idle_rss_mib`.
pub async fn wait(report: &mut Report, args: &WaitReadyArgs) -> anyhow::Result<()> {
    let target = Target::new(&args.url, None, None)?;
    let deadline = Instant::now() + args.timeout;
    loop {
        if probe(&target).await {
            break;
        }
        if let Some(pid) = args.pid.filter(|&pid| Mem::read(pid).is_err()) {
            bail!("process {pid} exited before {} answered", args.url);
        }
        if Instant::now() > deadline {
            bail!("{} did not answer GET /v2/ within {:?}", args.url, args.timeout);
        }
        tokio::time::sleep(POLL).await;
    }
    let now_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as u64;
    if let Some(since) = args.since_us {
        let ms = now_us.saturating_sub(since) as f64 / 1000.0;
        report.add(format!("{}.ms", args.name), ms, "ms", Better::Lower);
    }
    if let Some(pid) = args.pid {
        tokio::time::sleep(args.settle).await;
        let mem = Mem::read(pid)?;
        report.add(format!("{}.idle_rss_mib", args.name), mib(mem.rss_kib), "MiB", Better::Lower);
    }
    Ok(())
}

async fn probe(target: &std::sync::Arc<Target>) -> bool {
    let Ok(mut conn) = target.connect().await else {
        return false;
    };
    let Ok(req) = target.request(Method::GET, "/v2/").body(client::empty()) else {
        return false;
    };
    matches!(conn.fetch(req).await, Ok(r) if r.status == StatusCode::OK || r.status == StatusCode::UNAUTHORIZED)
}
