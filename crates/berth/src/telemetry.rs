//! Logging setup: an env filter and text or JSON lines on stderr.
//!
//! Lines are handed to a background writer thread, so a request never waits
//! for a `write(2)` to stderr (the access log writes one line per request).

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Installs the global subscriber. `RUST_LOG` overrides the configured level.
/// Keep the returned guard alive: dropping it flushes the remaining lines.
pub fn init(config: &LogConfig) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Lossless: under a burst the request path waits rather than dropping lines.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(64 * 1024)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    if config.format == "json" {
        builder.json().init();
    } else {
        builder.with_target(false).init();
    }
    guard
}

/// Installs the Prometheus recorder behind the `metrics` facade; `/metrics`
/// renders it. `None` (and no `/metrics`) if another recorder is installed.
pub fn metrics_recorder() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "metrics are not exported");
            None
        }
    }
}
