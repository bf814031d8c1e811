//! Logging setup: an env filter and text or JSON lines on stderr.
//!
//! Lines are batched for a background writer thread ([`crate::logwriter`]),
//! so a request never waits for a `write(2)` to stderr.

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Installs the global subscriber. `RUST_LOG` overrides the configured level.
/// Keep the returned guard alive: dropping it flushes the remaining lines.
pub fn init(config: &LogConfig) -> crate::logwriter::FlushGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = crate::logwriter::stderr();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    if config.format == "json" {
        builder.json().with_timer(crate::logformat::CachedUtc).init();
    } else {
        builder.event_format(crate::logformat::TextFormat::new()).init();
    }
    guard
}

/// Bucket bounds (seconds) of every `*_duration_seconds` histogram: 0.5 ms to
/// one minute, dense where manifest and metadata calls land.
const DURATION_BUCKETS: [f64; 17] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// How often histogram samples are folded into buckets and process figures refreshed.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the Prometheus recorder behind the `metrics` facade; `/metrics`
/// renders it. `None` (and no `/metrics`) if another recorder is installed.
pub fn metrics_recorder() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), &DURATION_BUCKETS)
        .expect("non-empty buckets");
    match builder.install_recorder() {
        Ok(handle) => {
            describe_metrics();
            metrics::gauge!("berth_build_info", "version" => env!("CARGO_PKG_VERSION"), "commit" => env!("BERTH_GIT_COMMIT"))
                .set(1.0);
            Some(handle)
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics are not exported");
            None
        }
    }
}

/// Help texts of berth's own metrics (shown as `# HELP` lines).
fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("berth_http_requests_total", "HTTP requests by surface, endpoint name, method and status");
    describe_histogram!(
        "berth_http_request_duration_seconds",
        Unit::Seconds,
        "Time until the response head is ready, by surface and endpoint"
    );
    describe_counter!("berth_http_request_bytes_total", Unit::Bytes, "Request body bytes received, by surface");
    describe_counter!("berth_http_response_bytes_total", Unit::Bytes, "Response body bytes sent, by surface");
    describe_gauge!("berth_uploads_in_flight", "Blob upload requests currently being received");
    describe_histogram!(
        "berth_storage_operation_duration_seconds",
        Unit::Seconds,
        "Blob store call latency by operation"
    );
    describe_histogram!(
        "berth_db_operation_duration_seconds",
        Unit::Seconds,
        "Metadata database call latency by operation"
    );
    describe_gauge!(
        "berth_scrub_findings",
        "Blobs the last background scrub found, by kind (missing, corrupt, orphaned, stale)"
    );
    describe_gauge!(
        "berth_scrub_orphaned_bytes",
        Unit::Bytes,
        "Bytes in the blob store no blob row names (last scrub)"
    );
    describe_gauge!("berth_scrub_last_run_timestamp_seconds", Unit::Seconds, "When the last background scrub finished");
    describe_counter!("berth_gc_blobs_deleted_total", "Blobs whose bytes the collector deleted (this node's runs)");
    describe_counter!(
        "berth_gc_bytes_reclaimed_total",
        Unit::Bytes,
        "Bytes the collector reclaimed (this node's runs)"
    );
    describe_gauge!("berth_build_info", "Always 1; the labels carry berth's version and commit");
    describe_gauge!("process_resident_memory_bytes", Unit::Bytes, "Resident set size");
    describe_gauge!("process_cpu_seconds_total", Unit::Seconds, "User and system CPU time used");
    describe_gauge!("process_open_fds", "Open file descriptors");
    describe_gauge!("process_threads", "OS threads");
    describe_gauge!("process_start_time_seconds", Unit::Seconds, "Start time of the process since the Unix epoch");
}

/// Folds recent histogram samples into their buckets (so they never pile up when
/// nobody scrapes) and refreshes the process figures, every few seconds.
pub fn spawn_metrics_upkeep(handle: metrics_exporter_prometheus::PrometheusHandle) -> tokio::task::JoinHandle<()> {
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    metrics::gauge!("process_start_time_seconds").set(started.as_secs_f64());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            tick.tick().await;
            handle.run_upkeep();
            record_process_metrics();
        }
    })
}

/// Reads this process's figures from `/proc` (Linux; elsewhere nothing is recorded).
fn record_process_metrics() {
    /// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on Linux).
    const TICKS_PER_SEC: f64 = 100.0;
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        };
        if let Some(kib) = field("VmRSS:") {
            metrics::gauge!("process_resident_memory_bytes").set(kib * 1024.0);
        }
        if let Some(threads) = field("Threads:") {
            metrics::gauge!("process_threads").set(threads);
        }
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let cpu = (ticks(11) + ticks(12)) as f64 / TICKS_PER_SEC;
        metrics::gauge!("process_cpu_seconds_total").set(cpu);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("process_open_fds").set(fds.count() as f64);
    }
}
