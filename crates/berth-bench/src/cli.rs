//! Command-line interface: one subcommand per measurement, plus the suite that runs them all.
//!
//! Sizes take binary units (`1GiB`, `16MiB`, `64M`, `512k`, or plain bytes) and durations
//! take `ms`, `s` or `m` (`500ms`, `5s`; a plain number is seconds).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Benchmarks an OCI registry over HTTP.
#[derive(Debug, Parser)]
#[command(name = "berth-bench", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub output: OutputArgs,
    /// Tokio worker threads of the benchmark client (the server shares the same cores).
    #[arg(long, global = true, default_value_t = 2)]
    pub threads: usize,
    #[command(subcommand)]
    pub command: Command,
}

/// Where and under which name results are recorded.
#[derive(Debug, Args, Clone)]
pub struct OutputArgs {
    /// Write machine-readable results to FILE (JSON).
    #[arg(long, global = true, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Name of the system under test, recorded in the JSON (`berth`, `distribution-2.8.2`, ...).
    #[arg(long, global = true, default_value = "target")]
    pub label: String,
    /// Round number, recorded in the JSON (A/B rounds of scripts/bench.sh).
    #[arg(long, global = true, default_value_t = 1)]
    pub round: u32,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Push one blob, monolithic (POST + PUT) or chunked (`--chunk`).
    Push(PushArgs),
    /// Pull a blob (pushed first) with a streamed GET; one untimed warm-up pull.
    Pull(PullArgs),
    /// GET one manifest by tag and by digest at each concurrency.
    Manifest(RateCmdArgs),
    /// HEAD one blob at each concurrency.
    Head(RateCmdArgs),
    /// Create N tags with sequential manifest PUTs, then time tags/list.
    Tags(TagsArgs),
    /// Seed many tags and repositories concurrently, then time listing pages.
    Scale(ScaleArgs),
    /// Concurrent pushes and pulls at once; errors and peak server RSS.
    Load(LoadCmdArgs),
    /// Run push, chunked, pull, manifest, head, tags, catalog and load in order.
    Suite(SuiteArgs),
    /// berth's garbage collection: reclaim rate of N untagged blobs, pushes with and without a busy collector.
    Gc(GcArgs),
    /// GET or HEAD any path at each concurrency (for the baseline server).
    Rate(RawRateArgs),
    /// Sample a process's RSS and report the peak.
    Rss(RssArgs),
    /// Wait until GET /v2/ answers; time to ready since a start stamp, and idle RSS.
    WaitReady(WaitReadyArgs),
    /// A minimal hyper server answering every request with a fixed 417-byte body, except
    /// uploads, which it hashes and drops (the ceilings for small GETs and for pushes).
    BaselineServer(BaselineArgs),
    /// The machine's limits: sha256 (openssl and Rust), dd with and without fsync, loopback TCP.
    Machine(MachineArgs),
    /// Combine result files: medians with min–max, ratios, and issue 3's targets.
    Summarize(SummarizeArgs),
    /// Print a TCP port on 127.0.0.1 that was free a moment ago.
    FreePort,
}

/// The registry under test.
#[derive(Debug, Args, Clone)]
pub struct TargetArgs {
    /// Registry base URL (plain HTTP), e.g. http://127.0.0.1:5000.
    #[arg(long, env = "BENCH_URL")]
    pub url: String,
    /// User name for HTTP Basic authentication.
    #[arg(long, env = "BENCH_USER")]
    pub user: Option<String>,
    /// Password for HTTP Basic authentication.
    #[arg(long, env = "BENCH_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// The server's PID: its RSS is sampled from /proc/PID/status.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Repository namespace for everything the benchmark creates.
    #[arg(long, default_value = "bench")]
    pub repo_prefix: String,
}

#[derive(Debug, Args, Clone)]
pub struct PushArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Blob size.
    #[arg(long, default_value = "1GiB")]
    pub size: ByteSize,
    /// Push in PATCHes of this size instead of one PUT.
    #[arg(long)]
    pub chunk: Option<ByteSize>,
    /// Timed pushes (each of a different blob); the median is reported.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
}

#[derive(Debug, Args, Clone)]
pub struct PullArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Blob size.
    #[arg(long, default_value = "1GiB")]
    pub size: ByteSize,
    /// Hash the body and compare with the digest (bounds the rate by the client's sha256).
    #[arg(long)]
    pub verify: bool,
    /// Timed pulls; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: u32,
}

/// How long and how wide a request-rate measurement runs.
#[derive(Debug, Args, Clone)]
pub struct RateArgs {
    /// Connections (one request in flight on each), a comma-separated list.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    pub concurrency: Vec<usize>,
    /// Measuring time per concurrency level.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop after this many requests instead of after `--duration`.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Untimed requests before measuring, per concurrency level.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub warmup: Duration,
}

#[derive(Debug, Args, Clone)]
pub struct RateCmdArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub rate: RateArgs,
}

#[derive(Debug, Args, Clone)]
pub struct RawRateArgs {
    /// Base URL of the server, e.g. http://127.0.0.1:9000.
    #[arg(long)]
    pub url: String,
    /// Request path.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// GET or HEAD.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Metric name prefix (`baseline` gives `baseline.c64.rps`).
    #[arg(long, default_value = "rate")]
    pub name: String,
    #[command(flatten)]
    pub rate: RateArgs,
}

#[derive(Debug, Args, Clone)]
pub struct TagsArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Tags to create, one PUT after another on one connection.
    #[arg(long, default_value_t = 10_000)]
    pub count: u32,
    /// Timed tags/list requests (full list and an `n=100` page).
    #[arg(long, default_value_t = 20)]
    pub samples: u32,
}

#[derive(Debug, Args, Clone)]
pub struct ScaleArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Tags to seed in one repository whose pages are timed (0: skip).
    #[arg(long, default_value_t = 100_000)]
    pub tags: u32,
    /// Tags to seed in a second repository whose full tags/list is timed (0: skip).
    #[arg(long, default_value_t = 10_000)]
    pub list_tags: u32,
    /// Repositories to seed, each with one tagged manifest (0: skip).
    #[arg(long, default_value_t = 100_000)]
    pub repos: u32,
    /// Connections used for seeding.
    #[arg(long, default_value_t = 32)]
    pub seed_concurrency: usize,
    /// Timed requests per listing.
    #[arg(long, default_value_t = 50)]
    pub samples: u32,
    /// Seed, time the listings, or both (seed with one server, time after a restart).
    #[arg(long, value_enum, default_value = "both")]
    pub phase: Phase,
}

/// Which part of `scale` to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    Seed,
    Measure,
    Both,
}

/// Shape of the mixed load.
#[derive(Debug, Args, Clone)]
pub struct LoadArgs {
    /// Concurrent pushes.
    #[arg(long, default_value_t = 32)]
    pub pushes: u32,
    /// Size of each pushed blob.
    #[arg(long, default_value = "64MiB")]
    pub push_size: ByteSize,
    /// Concurrent pulls (of a blob pushed beforehand).
    #[arg(long, default_value_t = 64)]
    pub pulls: u32,
    /// Size of the pulled blob.
    #[arg(long, default_value = "64MiB")]
    pub pull_size: ByteSize,
}

#[derive(Debug, Args, Clone)]
pub struct LoadCmdArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(Debug, Args, Clone)]
pub struct SuiteArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Size of the pushed and pulled blob.
    #[arg(long, default_value = "1GiB")]
    pub size: ByteSize,
    /// PATCH size of the chunked push.
    #[arg(long, default_value = "16MiB")]
    pub chunk: ByteSize,
    /// Timed pushes of each kind (monolithic, chunked), each of a fresh blob;
    /// the median is reported.
    #[arg(long, default_value_t = 3)]
    pub push_repeat: u32,
    /// Timed pulls.
    #[arg(long, default_value_t = 3)]
    pub pull_repeat: u32,
    #[command(flatten)]
    pub rate: RateArgs,
    /// Sequential tag PUTs (the tags/list measurements list them).
    #[arg(long, default_value_t = 10_000)]
    pub tags: u32,
    /// Timed requests per listing.
    #[arg(long, default_value_t = 20)]
    pub list_samples: u32,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Steps to leave out: push, chunked, pull, manifest, head, tags, catalog, load.
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct GcArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Blobs to seed, untag and reclaim in one run (configs and layers; 0: skip the reclaim).
    #[arg(long, default_value_t = 100_000)]
    pub blobs: u64,
    /// Size of each layer blob (each image also has a small JSON config blob).
    #[arg(long, default_value = "16KiB")]
    pub blob_size: ByteSize,
    /// Layer blobs per image.
    #[arg(long, default_value_t = 4)]
    pub layers: u32,
    /// Repositories the images are spread over.
    #[arg(long, default_value_t = 100)]
    pub repos: u32,
    /// Connections for seeding, untagging and the timed pushes.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// How often the timed run's status is polled. Every poll costs the server four COUNTs over
    /// the queue (about 18 ms each at 100k entries on SQLite), so polls are not free.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub poll: Duration,
    /// How often the runs started during pushes (and the untimed drains) are polled.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub busy_poll: Duration,
    /// Give up on one run after this long.
    #[arg(long, default_value = "60m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Images pushed in each arm of the push comparison (0: skip the comparison).
    #[arg(long, default_value_t = 1000)]
    pub push_images: u32,
    /// Images untagged before every arm: the collector's backlog in the arms with collection.
    #[arg(long, default_value_t = 2000)]
    pub churn_images: u32,
    /// A/B rounds of the comparison (each: an arm without collection, then one with).
    #[arg(long, default_value_t = 2)]
    pub rounds: u32,
    /// Grace period of the runs while pushes go on (whole seconds, at least 1).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub busy_grace: Duration,
    /// Seed only (push and untag), measure only (collect what a seed run left, then the push
    /// comparison; give both the same --data-seed and sizes), or both.
    #[arg(long, value_enum, default_value = "both")]
    pub phase: Phase,
    /// Seed of the pseudo-random data (default: fresh each run); a measure run needs its seed run's.
    #[arg(long)]
    pub data_seed: Option<u64>,
}

#[derive(Debug, Args, Clone)]
pub struct RssArgs {
    /// Process to watch.
    #[arg(long)]
    pub pid: u32,
    /// Sampling interval.
    #[arg(long, default_value = "20ms", value_parser = parse_duration)]
    pub interval: Duration,
    /// Stop after this long (default: when the process exits).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

#[derive(Debug, Args, Clone)]
pub struct WaitReadyArgs {
    /// Base URL of the registry.
    #[arg(long)]
    pub url: String,
    /// When the server was started, in microseconds since the Unix epoch (bash: ${EPOCHREALTIME/./}).
    #[arg(long)]
    pub since_us: Option<u64>,
    /// The server's PID: fail early if it exits, and report its idle RSS.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Wait this long after ready before reading the idle RSS.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Give up after this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Metric name prefix (`ready` gives `ready.ms`; `ready_seeded` for a seeded data dir).
    #[arg(long, default_value = "ready")]
    pub name: String,
}

#[derive(Debug, Args, Clone)]
pub struct BaselineArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9417")]
    pub listen: String,
}

#[derive(Debug, Args, Clone)]
pub struct MachineArgs {
    /// Scratch directory for the test files (on the disk the registries use).
    #[arg(long)]
    pub dir: PathBuf,
    /// Size of the hashed and written files.
    #[arg(long, default_value = "1GiB")]
    pub size: ByteSize,
    /// Bytes sent over one loopback TCP connection.
    #[arg(long, default_value = "4GiB")]
    pub loopback_size: ByteSize,
}

#[derive(Debug, Args, Clone)]
pub struct SummarizeArgs {
    /// Result files written with --json, and zb's saved output (`<label>.r<round>.zb.txt`).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Write the summary as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the summary as Markdown here (it is printed either way).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Exit non-zero when any run left a note (a failed step, a short listing).
    #[arg(long)]
    pub strict: bool,
}

/// A byte count parsed from `1GiB`, `16MiB`, `64M`, `512k` or plain digits (units are binary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().map_err(|_| format!("invalid size {s:?}"))?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            other => return Err(format!("unknown size unit {other:?} (use KiB, MiB or GiB)")),
        };
        n.checked_mul(1 << shift).map(ByteSize).ok_or_else(|| format!("size {s:?} is too large"))
    }
}

/// Parses `500ms`, `5s`, `2m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        other => return Err(format!("unknown duration unit {other:?} (use ms, s or m)")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!("1GiB".parse(), Ok(ByteSize(1 << 30)));
        assert_eq!("16MiB".parse(), Ok(ByteSize(16 << 20)));
        assert_eq!("64M".parse(), Ok(ByteSize(64 << 20)));
        assert_eq!("512k".parse(), Ok(ByteSize(512 << 10)));
        assert_eq!("417".parse(), Ok(ByteSize(417)));
        assert!("1TiB".parse::<ByteSize>().is_err());
        assert!("MiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("5h").is_err());
    }
}
