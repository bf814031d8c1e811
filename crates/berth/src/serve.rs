//! `berth serve`: open storage, build the app, listen, and shut down gracefully.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use berth_http::AppState;
use berth_meta::Metadata;
use berth_registry::{Registry, RegistryConfig};

use crate::backends::{open_blob_store, open_metadata, redact};
use crate::cli::{ServeArgs, VERSION};
use crate::config::Config;
use crate::telemetry;

/// How often idle upload sessions are swept.
const UPLOAD_SWEEP_INTERVAL: Duration = Duration::from_secs(600);
/// Cache lifetime when this node is alone with its database (writes invalidate exactly).
const LOCAL_CACHE_TTL: Duration = Duration::from_secs(3600);
/// Cache lifetime when nodes share a database: bounds cross-node staleness of tags.
const SHARED_CACHE_TTL: Duration = Duration::from_secs(1);
/// How long the exit waits for upload progress records still being written.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the server until SIGTERM/SIGINT. Exit codes: 2 bad config, 1 startup failure.
pub fn run(args: ServeArgs) -> ExitCode {
    let config = match Config::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: invalid configuration: {e:#}");
            return ExitCode::from(2);
        }
    };
    let _log_guard = telemetry::init(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let addr = config.listen_addr()?;
    // The recorder goes in first, so every metric recorded from here on is kept.
    let metrics = telemetry::metrics_recorder();
    let upkeep = metrics.clone().map(telemetry::spawn_metrics_upkeep);
    ensure_writable_dir(&config.data_dir).await?;
    // Before opening anything: opening the fs store recycles staging files.
    let _locks = crate::dirlock::lock_local_stores(&config.database_url(), &config.storage_url())?;
    let meta = open_metadata(&config.database_url(), &config).await?;
    let blobs = open_blob_store(&config.storage_url(), &config).await?;
    // Every blob-store and metadata call is timed (`berth_*_operation_duration_seconds`).
    let blobs: Arc<dyn berth_storage::BlobStore> = Arc::new(berth_storage::timed::Timed::new(blobs));
    let timed_meta: Arc<dyn Metadata> = Arc::new(berth_meta::timed::Timed::new(meta.as_dyn()));
    let registry_config = RegistryConfig {
        deletes_enabled: config.registry.deletes_enabled,
        upload_expiry: config.registry.upload_expiry,
        automatic_mount: config.registry.automatic_mount,
        // Nodes sharing a database see each other's tag moves within a second.
        cache_ttl: if meta.is_shared() { SHARED_CACHE_TTL } else { LOCAL_CACHE_TTL },
    };
    let access = Arc::new(crate::access::open(&config, &meta).await?);
    let registry_config = RegistryConfig {
        // With auth on, a mount must name a `from` the caller can read.
        automatic_mount: registry_config.automatic_mount && !access.enabled(),
        ..registry_config
    };
    let registry = Arc::new(Registry::new(blobs, timed_meta.clone(), registry_config));
    let proxy = crate::proxy::open(&config, registry.clone()).await?;
    let aliases = Arc::downgrade(&proxy);
    access.set_mirror_alias(Box::new(move |name| aliases.upgrade()?.mirror_alias(name)));
    let webhooks = berth_webhooks::Webhooks::new(
        registry.clone(),
        crate::proxy::secrets_key(&config)?,
        webhook_config(&config),
        config.external_url.clone().unwrap_or_else(|| format!("http://{addr}")),
    );
    let state_access = access.clone();
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let node = node_id(local);
    let collector = Arc::new(berth_gc::Collector::new(
        registry.meta().clone(),
        registry.blob_store().clone(),
        config.gc.settings(),
    ));
    let state = AppState::new(berth_http::AppParts {
        registry: registry.clone(),
        access,
        version: env!("CARGO_PKG_VERSION"),
        full_version: crate::cli::FULL_VERSION,
        external_url: config.external_url.as_deref().map(Arc::from),
        tls: config.tls.cert.is_some(),
        rate_limits: Arc::new(rate_limits(&config)),
        proxy: proxy.clone(),
        webhooks: webhooks.clone(),
        host: Arc::new(berth_http::api::system::Host::new(
            config.data_dir.clone(),
            config.storage_url().strip_prefix("fs://").map(std::path::PathBuf::from),
            env!("BERTH_COMMIT_DATE"),
        )),
        metrics,
        http_metrics: Arc::new(berth_http::metrics::HttpMetrics::new()),
        gc: collector.clone(),
        gc_interval: config.gc.interval,
        node: Arc::from(node.as_str()),
    });
    crate::proxy::apply_config(&config, &state).await?;
    let maintenance = proxy.spawn_maintenance();
    let app = berth_http::router(state);

    let dispatcher = webhooks.spawn(node.clone());
    let usage = registry.spawn_usage_flusher();
    let search_indexer = registry.spawn_search_indexer();
    let sweeper = tokio::spawn(sweep_uploads(registry.clone(), timed_meta, node.clone()));
    let scrubbing = (!config.gc.scrub_interval.is_zero()).then(|| {
        let task =
            scrub_storage(registry.clone(), node.clone(), config.gc.scrub_interval, config.gc.scrub_verify_digests);
        tokio::spawn(task)
    });
    let collection = (!config.gc.interval.is_zero())
        .then(|| tokio::spawn(collect_garbage(collector.clone(), node.clone(), config.gc.interval)));
    let retention = (!config.retention.interval.is_zero()).then(|| {
        tokio::spawn(apply_retention(registry.clone(), state_access.clone(), node, config.retention.interval))
    });

    let handle = axum_server::Handle::new();
    // The handlers are installed before "listening" is logged: a SIGTERM right after it must not
    // find the default action (instant death) still in place.
    let signals = ShutdownSignals::install()?;
    tokio::spawn(shutdown_on_signal(signals, handle.clone(), config.registry.shutdown_timeout));
    let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let scheme = if config.tls.cert.is_some() { "https" } else { "http" };
    tracing::info!(
        version = VERSION,
        database = %redact(&config.database_url()),
        storage = %config.storage_url(),
        "listening on {local} ({scheme})"
    );
    // TCP_NODELAY: a response's last small segment must not wait for the
    // client's delayed ACK of the one before (up to 40 ms per request).
    use axum_server::accept::NoDelayAcceptor;
    match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .with_context(|| format!("cannot load TLS certificate {} / key {}", cert.display(), key.display()))?;
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls).acceptor(NoDelayAcceptor::new());
            axum_server::from_tcp(listener)?.acceptor(acceptor).handle(handle).serve(service).await?
        }
        _ => axum_server::from_tcp(listener)?.acceptor(NoDelayAcceptor::new()).handle(handle).serve(service).await?,
    }
    sweeper.abort();
    if let Some(retention) = retention {
        retention.abort();
    }
    if let Some(collection) = collection {
        collection.abort();
    }
    if let Some(scrubbing) = scrubbing {
        scrubbing.abort();
    }
    maintenance.abort();
    dispatcher.abort();
    // Queued pull events are written; everything else is already in the outbox.
    webhooks.flush().await;
    usage.abort();
    search_indexer.abort();
    if let Err(e) = registry.flush_usage().await {
        tracing::warn!(error = %e, "cannot write the last pull counters");
    }
    if let Some(upkeep) = upkeep {
        upkeep.abort();
    }
    // Acknowledged chunks whose records are still being written (embedded database);
    // bounded, so that nothing can hold the exit past what the supervisor allows.
    if tokio::time::timeout(SETTLE_TIMEOUT, registry.settle_upload_saves()).await.is_err() {
        tracing::warn!(
            "upload progress records still being written at exit; those sessions resume from their last record"
        );
    }
    meta.close().await;
    tracing::info!("shut down cleanly");
    Ok(())
}

fn webhook_config(config: &Config) -> berth_webhooks::WebhookConfig {
    let w = &config.webhooks;
    berth_webhooks::WebhookConfig {
        timeout: w.timeout,
        max_attempts: w.max_attempts.max(1),
        retry_base: w.retry_base,
        retry_max: w.retry_max,
        concurrency: w.concurrency.max(1),
        retention: w.retention,
        ..berth_webhooks::WebhookConfig::default()
    }
}

/// The request-count limiters: on with authentication (they key on identities), off otherwise.
fn rate_limits(config: &Config) -> berth_http::ratelimit::RateLimits {
    use berth_access::ratelimit::RatePolicy;
    let r = &config.rate_limit;
    if !r.enabled || config.auth.mode == "none" {
        return berth_http::ratelimit::RateLimits::default();
    }
    berth_http::ratelimit::RateLimits::new(
        Some(RatePolicy { per_hour: r.registry_per_hour, per_minute: r.registry_per_minute }),
        Some(RatePolicy { per_hour: r.api_per_hour, per_minute: r.api_per_minute }),
    )
}

/// Identifies this process among the nodes sharing a database (for leases).
fn node_id(local: std::net::SocketAddr) -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    format!("{host}:{local}:{}:{}", std::process::id(), uuid::Uuid::new_v4().simple())
}

/// Creates the data directory and proves it is writable before anything else.
async fn ensure_writable_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    tokio::fs::create_dir_all(dir).await.with_context(|| format!("cannot create data dir {}", dir.display()))?;
    let probe = dir.join(".berth-write-test");
    if let Err(e) = tokio::fs::write(&probe, b"ok").await {
        bail!("data dir {} is not writable: {e}", dir.display());
    }
    tokio::fs::remove_file(&probe).await.ok();
    Ok(())
}

/// Expires idle uploads every few minutes, on whichever node holds the lease.
async fn sweep_uploads(registry: Arc<Registry>, meta: Arc<dyn Metadata>, node: String) {
    loop {
        let lease = meta.try_lease("upload-expiry", &node, UPLOAD_SWEEP_INTERVAL.as_secs() as i64 * 2).await;
        match lease {
            Ok(true) => {}
            Ok(false) => {
                tokio::time::sleep(UPLOAD_SWEEP_INTERVAL).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not take the upload-expiry lease");
                tokio::time::sleep(UPLOAD_SWEEP_INTERVAL).await;
                continue;
            }
        }
        match registry.expire_uploads().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "discarded idle upload sessions"),
            Err(e) => tracing::warn!(error = %e, "upload expiry sweep failed"),
        }
        tokio::time::sleep(UPLOAD_SWEEP_INTERVAL).await;
    }
}

/// Runs the garbage collector every `interval`, on whichever node gets the lease
/// (a run holds it while it works; the others skip their turn).
async fn collect_garbage(collector: Arc<berth_gc::Collector>, node: String, interval: Duration) {
    let request = berth_gc::RunRequest { trigger: berth_gc::Trigger::Schedule, node, dry_run: false, grace: None };
    loop {
        tokio::time::sleep(interval).await;
        match collector.run(&request, &|_, _| {}).await {
            Ok(_) | Err(berth_gc::GcError::Busy) => {}
            Err(e) => tracing::warn!(error = %e, "scheduled garbage collection failed; the next run resumes"),
        }
    }
}

/// Scrubs the blob store against the metadata every `interval`, on one node at
/// a time (the lease outlives a scrub), and reports what it finds: metrics,
/// warnings in the log and, when anything is wrong, a `system.scrub` event.
async fn scrub_storage(registry: Arc<Registry>, node: String, interval: Duration, verify_digests: bool) {
    let ttl = interval.as_secs().max(3600) as i64;
    loop {
        tokio::time::sleep(interval).await;
        match registry.meta().try_lease("scrub", &node, ttl).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "could not take the scrub lease");
                continue;
            }
        }
        let (meta, store) = (registry.meta().as_ref(), registry.blob_store().as_ref());
        let findings = match berth_gc::scrub::scrub(meta, store, verify_digests, &|_, _| {}).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "background scrub failed");
                continue;
            }
        };
        report_scrub(&registry, &findings).await;
    }
}

async fn report_scrub(registry: &Registry, f: &berth_gc::scrub::Findings) {
    let orphaned_bytes: u64 = f.orphans.iter().map(|(_, size)| size).sum();
    for (kind, n) in [
        ("missing", f.missing.len()),
        ("corrupt", f.corrupt.len()),
        ("orphaned", f.orphans.len()),
        ("stale", f.stale_rows.len()),
    ] {
        metrics::gauge!("berth_scrub_findings", "kind" => kind).set(n as f64);
    }
    metrics::gauge!("berth_scrub_orphaned_bytes").set(orphaned_bytes as f64);
    metrics::gauge!("berth_scrub_last_run_timestamp_seconds").set(berth_meta::now_unix() as f64);
    for digest in f.missing.iter().take(20) {
        tracing::error!(%digest, "scrub: a linked blob has no bytes in the store");
    }
    for (digest, why) in f.corrupt.iter().take(20) {
        tracing::error!(%digest, why, "scrub: corrupt blob");
    }
    let clean = !f.damaged() && f.orphans.is_empty();
    tracing::info!(
        checked = f.checked,
        missing = f.missing.len(),
        corrupt = f.corrupt.len(),
        orphans = f.orphans.len(),
        orphaned_bytes,
        stale_rows = f.stale_rows.len(),
        "background scrub finished"
    );
    if clean {
        return;
    }
    let mut event = berth_meta::EventDraft::new(
        berth_meta::EventKind::Management("system.scrub".into()),
        &berth_meta::EventActor::system("scrub"),
    );
    let first = |list: Vec<String>| list.into_iter().take(100).collect::<Vec<_>>();
    event.detail = serde_json::json!({
        "checked": f.checked,
        "missing": first(f.missing.iter().map(ToString::to_string).collect()),
        "corrupt": first(f.corrupt.iter().map(|(d, why)| format!("{d}: {why}")).collect()),
        "orphans": f.orphans.len(),
        "orphaned_bytes": orphaned_bytes,
        "stale_rows": f.stale_rows.len(),
    });
    if let Err(e) = registry.meta().append_events(&[event]).await {
        tracing::warn!(error = %e, "could not record the scrub's findings");
    }
}

/// Applies every enabled retention policy every `interval`, on whichever node
/// holds the lease; each run is audited as the system.
async fn apply_retention(
    registry: Arc<Registry>,
    access: Arc<berth_registry::access::AccessService>,
    node: String,
    interval: Duration,
) {
    let ttl = interval.as_secs().max(1).saturating_mul(2) as i64;
    loop {
        tokio::time::sleep(interval).await;
        match registry.meta().try_lease("retention", &node, ttl).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "could not take the retention lease");
                continue;
            }
        }
        let projects = match registry.meta().retention_projects().await {
            Ok(projects) => projects,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list retention policies");
                continue;
            }
        };
        for project in projects {
            apply_policy(&registry, &access, &project).await;
        }
    }
}

/// One scheduled run of `project`'s policy.
async fn apply_policy(registry: &Registry, access: &berth_registry::access::AccessService, project: &str) {
    let actor = berth_meta::EventActor::system("retention");
    match registry.run_retention(project, false, berth_meta::now_unix(), &actor).await {
        Ok(report) if report.deleted_tags.is_empty() && report.deleted_manifests.is_empty() => {}
        Ok(report) => {
            tracing::info!(
                project,
                tags = report.deleted_tags.len(),
                manifests = report.deleted_manifests.len(),
                protected = report.protected.len(),
                "retention deleted what its policy does not keep"
            );
            access.audit(report.audit_draft(&berth_registry::access::Actor::system(), project)).await;
        }
        Err(e) => tracing::warn!(project, error = %e, "retention run failed"),
    }
}

/// SIGINT and SIGTERM, caught from the moment this is created.
struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?,
        })
    }
}

/// Stops accepting on SIGTERM/SIGINT and gives in-flight requests `grace` to finish.
/// Interrupted uploads stay resumable: their sessions live in the database.
async fn shutdown_on_signal(
    mut signals: ShutdownSignals,
    handle: axum_server::Handle<std::net::SocketAddr>,
    grace: Duration,
) {
    tokio::select! {
        _ = signals.interrupt.recv() => {}
        _ = signals.terminate.recv() => {}
    }
    tracing::info!(grace_secs = grace.as_secs(), "shutting down: finishing in-flight requests");
    handle.graceful_shutdown(Some(grace));
}
