//! The request-rate engine: N connections, each with one request in flight, for a fixed time.
//!
//! All connections are opened first, then every worker sends untimed warm-up requests until
//! a shared instant, then timed requests until the deadline (or until a shared request
//! budget runs out). Latency is measured per request, from sending to the last body byte.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use http::{Request, StatusCode};

use crate::cli::RateArgs;
use crate::client::{self, Body, Conn, Target};
use crate::report::Report;
use crate::stats::Latency;

/// Builds the request each worker sends, given the worker's connection.
pub type MakeRequest = Arc<dyn Fn(&Conn) -> Request<Body> + Send + Sync>;

/// A request-budget run never lasts longer than this.
const MAX_RUN: Duration = Duration::from_secs(600);

/// What one concurrency level measured.
#[derive(Debug)]
pub struct Outcome {
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub latency: Latency,
}

impl Outcome {
    /// Successful requests per second.
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

/// Runs every concurrency level of `args` and records `{name}.c{N}.*` metrics.
pub async fn measure(
    target: &Arc<Target>,
    report: &mut Report,
    name: &str,
    args: &RateArgs,
    make: MakeRequest,
    expect: StatusCode,
) -> anyhow::Result<()> {
    for &concurrency in &args.concurrency {
        let outcome = run(target, args, concurrency, Arc::clone(&make), expect).await?;
        report.add_rate(&format!("{name}.c{concurrency}"), outcome.rps(), &outcome.latency, outcome.errors);
    }
    Ok(())
}

/// One concurrency level.
pub async fn run(
    target: &Arc<Target>,
    args: &RateArgs,
    concurrency: usize,
    make: MakeRequest,
    expect: StatusCode,
) -> anyhow::Result<Outcome> {
    let mut conns = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        conns.push(target.connect().await?);
    }
    let start = Instant::now() + args.warmup;
    let end = start + args.requests.map_or(args.duration, |_| MAX_RUN);
    let budget = Arc::new(AtomicU64::new(args.requests.unwrap_or(u64::MAX)));
    let workers: Vec<_> = conns
        .into_iter()
        .map(|conn| {
            let worker = Worker { make: Arc::clone(&make), expect, start, end, budget: Arc::clone(&budget) };
            tokio::spawn(worker.run(conn))
        })
        .collect();
    let mut samples = Vec::new();
    let mut errors = 0;
    let mut finished = start;
    for worker in workers {
        let done = worker.await?;
        samples.extend_from_slice(&done.samples);
        errors += done.errors;
        finished = finished.max(done.finished);
    }
    if samples.is_empty() {
        bail!("no request succeeded ({errors} errors)");
    }
    Ok(Outcome {
        requests: samples.len() as u64,
        errors,
        seconds: finished.duration_since(start).as_secs_f64(),
        latency: Latency::from_nanos(&mut samples),
    })
}

struct Worker {
    make: MakeRequest,
    expect: StatusCode,
    start: Instant,
    end: Instant,
    budget: Arc<AtomicU64>,
}

struct Done {
    samples: Vec<u64>,
    errors: u64,
    finished: Instant,
}

impl Worker {
    async fn run(self, mut conn: Conn) -> Done {
        while Instant::now() < self.start {
            let _ = self.one(&mut conn).await;
        }
        let mut samples = Vec::with_capacity(1 << 14);
        let mut errors = 0;
        loop {
            let now = Instant::now();
            if now >= self.end || !self.take_budget() {
                break;
            }
            match self.one(&mut conn).await {
                Ok(()) => samples.push(now.elapsed().as_nanos() as u64),
                Err(_) => errors += 1,
            }
        }
        Done { samples, errors, finished: Instant::now() }
    }

    fn take_budget(&self) -> bool {
        self.budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
    }

    async fn one(&self, conn: &mut Conn) -> anyhow::Result<()> {
        let resp = conn.send((self.make)(conn)).await?;
        let status = resp.status();
        client::drain(resp.into_body(), |_| {}).await?;
        if status != self.expect {
            bail!("expected {}, got {status}", self.expect);
        }
        Ok(())
    }
}
