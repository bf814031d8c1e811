//! Garbage collection (issue 8): how fast berth's online collector reclaims, and what a
//! busy collector costs concurrent pushes. Needs berth's `/api/v1/system/gc` (admin; the
//! benchmark runs berth with auth off) and tag deletes enabled.
//!
//! **Reclaim.** Seeds `--blobs` blobs as images (one small, unique JSON config blob plus
//! `--layers` layer blobs of `--blob-size` each, and a manifest under a tag), spread over
//! `--repos` repositories and pushed on `--concurrency` connections; then deletes every tag
//! (`DELETE /v2/<repo>/manifests/<tag>`). Nothing references the images any more, so one run
//! with grace 0 (`POST /api/v1/system/gc {"grace_seconds":0}`) deletes every manifest, blob
//! link and blob. The run is followed by polling `GET /api/v1/system/gc` every `--poll`:
//! the wall time is from the POST until the poll that sees the run `finished` (so it is
//! late by at most one poll interval), the server's own time is `finished_at - started_at`
//! (whole seconds in the API, so ±1 s). blobs/s and GB/s (10^9 bytes) divide the run's own
//! `blobs_deleted` and `bytes_reclaimed` by the wall time. Each poll makes the server count the
//! queue (four `COUNT(*)`s, ~18 ms on SQLite at 100k entries), hence the 1 s default. The queue counts seen by the polls
//! split the run into its phases (manifests, then links, then blob bytes). Afterwards the
//! figure is checked: the queue and tombstones must be empty, a dry run with grace 0 must find
//! nothing, the run must have deleted exactly the blobs seeded (the server must be fresh), and
//! a sample of the seeded blobs must answer 404; anything else is noted.
//!
//! `--phase seed` stops after untagging and `--phase measure` starts at the run (give both the
//! same `--data-seed` and sizes, so the second knows the digests): scripts/bench.sh seeds on a
//! berth with fsync off and measures after restarting it with the defaults, as for `scale`.
//! The data written is the same; seeding 100k blobs durably only takes longer.
//!
//! **Push throughput with and without a busy collector.** Alternating arms, A (no collection)
//! then B (collection), `--rounds` times, each pushing `--push-images` fresh images of the same
//! shape on `--concurrency` connections; the medians are reported. Before *every* arm the same
//! backlog is made: at least `--churn-images` images (the previous arm's, topped up with fresh
//! untimed pushes) are untagged, then the benchmark waits out `--busy-grace`, so both arms start
//! with the same queue and the same live data. During B one task starts runs back to back
//! (`grace_seconds` = `--busy-grace`, a 409 "already running" is retried) until the pushes are
//! done. The grace is not 0 on purpose: with grace 0 a run may delete the link of a layer
//! that was just pushed before its manifest arrives, which a real deployment prevents with its
//! grace period; with a grace the runs collect the backlog in stages (manifests, then links and
//! bytes a grace later), as a scheduled collector would. During A nothing collects. After each
//! arm, untimed, a grace-0 run drains the queue. B's `reclaimed_fraction` (blobs deleted by runs
//! started during B over the backlog's blobs) below 1 means the collector still had work when
//! the pushes ended, i.e. it was busy throughout; close to 1 means it may have run dry early.
//! Push errors are counted, never retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use berth_core::{Digest, media_type};
use bytes::Bytes;
use http::{Method, StatusCode, header};
use serde_json::Value;

use crate::cli::{GcArgs, Phase};
use crate::client::{self, Conn, Target};
use crate::data::Pool;
use crate::oci;
use crate::report::{Better, Report, mib_s};
use crate::stats::{Latency, median};

const API: &str = "/api/v1/system/gc";

/// Runs the reclaim measurement and the push comparison, as the arguments say.
pub async fn run(target: &Arc<Target>, report: &mut Report, args: &GcArgs) -> anyhow::Result<()> {
    ensure!(args.layers >= 1, "--layers must be at least 1");
    let shape = Arc::new(Shape::new(args));
    report.param(
        "gc",
        serde_json::json!({
            "blobs": args.blobs, "blob_bytes": args.blob_size.0, "layers": args.layers, "repos": args.repos,
            "concurrency": args.concurrency, "poll_ms": args.poll.as_millis() as u64,
            "busy_poll_ms": args.busy_poll.as_millis() as u64,
            "push_images": args.push_images, "churn_images": args.churn_images, "rounds": args.rounds,
            "busy_grace_s": args.busy_grace.as_secs(), "phase": format!("{:?}", args.phase).to_lowercase(),
        }),
    );
    report.param("loadavg_before", crate::suite::loadavg());
    let mut conn = target.connect().await?;
    let status = get_status(&mut conn).await.context("GET /api/v1/system/gc (is this berth with GC?)")?;
    if status["settings"]["interval_seconds"].as_u64().unwrap_or(0) != 0 {
        report.note("scheduled collection is on (BERTH_GC__INTERVAL=off makes the figures reproducible)");
    }
    if args.blobs > 0 {
        reclaim(target, report, args, &shape).await?;
    }
    if args.push_images > 0 && args.rounds > 0 && args.phase != Phase::Seed {
        push_comparison(target, report, args, &shape).await?;
    }
    report.param("loadavg_after", crate::suite::loadavg());
    Ok(())
}

/// What every image looks like, and where its bytes come from.
struct Shape {
    pool: Pool,
    /// Distinguishes this run's configs from any earlier run's.
    nonce: u64,
    layers: u32,
    layer_bytes: u64,
    repos: u32,
    prefix: String,
    /// Next image id (ids are never reused within a run).
    next: AtomicU64,
}

/// One image: its blobs (config first) and its manifest.
struct GcImage {
    repo: String,
    tag: String,
    blobs: Vec<Bytes>,
    manifest: Bytes,
}

impl GcImage {
    fn bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.len() as u64).sum::<u64>() + self.manifest.len() as u64
    }

    async fn push(&self, conn: &mut Conn) -> anyhow::Result<()> {
        for blob in &self.blobs {
            oci::push_bytes(conn, &self.repo, blob).await?;
        }
        oci::put_manifest(conn, &self.repo, &self.tag, &self.manifest).await
    }
}

impl Shape {
    fn new(args: &GcArgs) -> Shape {
        let pool = args.data_seed.map_or_else(Pool::fresh, |seed| Pool::generate(crate::data::POOL_SIZE, seed));
        let nonce = u64::from_le_bytes(pool.bytes(0, 8)[..].try_into().expect("8 bytes"));
        Shape {
            pool,
            nonce,
            layers: args.layers,
            layer_bytes: args.blob_size.0,
            repos: args.repos.max(1),
            prefix: args.target.repo_prefix.clone(),
            next: AtomicU64::new(0),
        }
    }

    /// Blobs per image (the config and the layers).
    fn blobs_per_image(&self) -> u64 {
        u64::from(self.layers) + 1
    }

    /// Reserves `count` image ids.
    fn reserve(&self, count: u64) -> std::ops::Range<u64> {
        let first = self.next.fetch_add(count, Ordering::Relaxed);
        first..first + count
    }

    /// Image `id` with its own config and layers. A layer is the pool read from an offset
    /// that is distinct for every layer of the run (an odd multiplier is a bijection modulo
    /// the pool's power-of-two size), so no two blobs share a digest.
    fn image(&self, id: u64) -> GcImage {
        let config = Bytes::from(format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"config":{{"Labels":{{"bench":"{:016x}-{id}"}}}}}}"#,
            self.nonce
        ));
        let mut blobs = vec![config];
        for j in 0..u64::from(self.layers) {
            let n = id * u64::from(self.layers) + j;
            let offset = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) as usize;
            blobs.push(self.pool.bytes(offset, self.layer_bytes as usize));
        }
        let descriptor = |media: &str, b: &Bytes| {
            format!(r#"{{"mediaType":"{media}","digest":"{}","size":{}}}"#, Digest::sha256(b).as_str(), b.len())
        };
        let layers: Vec<String> =
            blobs[1..].iter().map(|b| descriptor("application/vnd.oci.image.layer.v1.tar+gzip", b)).collect();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{}]}}"#,
            media_type::OCI_MANIFEST,
            descriptor("application/vnd.oci.image.config.v1+json", &blobs[0]),
            layers.join(",")
        );
        GcImage {
            repo: format!("{}/gc/r{:04}", self.prefix, id % u64::from(self.repos)),
            tag: format!("i{id:08}"),
            blobs,
            manifest: Bytes::from(manifest),
        }
    }
}

// ---- reclaim ------------------------------------------------------------------------------

async fn reclaim(target: &Arc<Target>, report: &mut Report, args: &GcArgs, shape: &Arc<Shape>) -> anyhow::Result<()> {
    let images = args.blobs.div_ceil(shape.blobs_per_image());
    let ids = shape.reserve(images);
    let blobs = images * shape.blobs_per_image();
    if args.phase != Phase::Measure {
        seed(target, report, args, shape, ids.clone()).await?;
    }
    if args.phase != Phase::Seed {
        collect_seeded(target, report, args, shape, ids, blobs).await?;
    }
    Ok(())
}

/// Pushes the images `ids`, then deletes their tags.
async fn seed(
    target: &Arc<Target>,
    report: &mut Report,
    args: &GcArgs,
    shape: &Arc<Shape>,
    ids: std::ops::Range<u64>,
) -> anyhow::Result<()> {
    let images = ids.end - ids.start;
    let blobs = images * shape.blobs_per_image();
    eprintln!("gc: seeding {images} images ({blobs} blobs) on {} connections", args.concurrency);
    let started = Instant::now();
    let pushed = Arc::new(AtomicU64::new(0));
    let (s, p) = (Arc::clone(shape), Arc::clone(&pushed));
    for_each(target, ids.clone(), args.concurrency, "pushed", move |mut conn, id| {
        let (s, p) = (Arc::clone(&s), Arc::clone(&p));
        async move {
            let image = s.image(id);
            image.push(&mut conn).await?;
            p.fetch_add(image.bytes(), Ordering::Relaxed);
            Ok(conn)
        }
    })
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let pushed = pushed.load(Ordering::Relaxed);
    report.add("gc.seed.images", images as f64, "images", Better::None);
    report.add("gc.seed.blobs", blobs as f64, "blobs", Better::None);
    report.add("gc.seed.bytes_gb", pushed as f64 / 1e9, "GB", Better::None);
    report.add("gc.seed.seconds", seconds, "s", Better::Lower);
    report.add("gc.seed.blobs_per_s", blobs as f64 / seconds, "blobs/s", Better::Higher);

    eprintln!("gc: deleting {images} tags");
    let started = Instant::now();
    let s = Arc::clone(shape);
    for_each(target, ids.clone(), args.concurrency, "untagged", move |mut conn, id| {
        let s = Arc::clone(&s);
        async move {
            let image = s.image_ref(id);
            delete_tag(&mut conn, &image.0, &image.1).await?;
            Ok(conn)
        }
    })
    .await?;
    report.add("gc.untag.per_s", images as f64 / started.elapsed().as_secs_f64(), "tags/s", Better::Higher);
    Ok(())
}

/// One run with grace 0 over the seeded, untagged images; timed and verified.
async fn collect_seeded(
    target: &Arc<Target>,
    report: &mut Report,
    args: &GcArgs,
    shape: &Arc<Shape>,
    ids: std::ops::Range<u64>,
    blobs: u64,
) -> anyhow::Result<()> {
    let mut conn = target.connect().await?;
    let queued = get_status(&mut conn).await?;
    report.param("gc_queue_before", queued["queue"].clone());
    eprintln!("gc: collecting (grace 0), queue {}", queued["queue"]);
    let before = op_times(&mut conn).await;
    let outcome = collect(&mut conn, 0, args.poll, args.timeout, true).await?;
    let after = op_times(&mut conn).await;
    let run = &outcome.run;
    let blobs_deleted = run_u64(run, "blobs_deleted");
    let bytes = run_u64(run, "bytes_reclaimed");
    let seconds = outcome.wall.as_secs_f64();
    report.add("gc.reclaim.seconds", seconds, "s", Better::Lower);
    if let Some(server) = outcome.server_seconds {
        report.add("gc.reclaim.server_seconds", server, "s", Better::Lower);
    }
    report.add("gc.reclaim.manifests_deleted", run_u64(run, "manifests_deleted") as f64, "", Better::None);
    report.add("gc.reclaim.links_deleted", run_u64(run, "links_deleted") as f64, "", Better::None);
    report.add("gc.reclaim.blobs_deleted", blobs_deleted as f64, "blobs", Better::None);
    report.add("gc.reclaim.bytes_gb", bytes as f64 / 1e9, "GB", Better::None);
    report.add("gc.reclaim.blobs_per_s", blobs_deleted as f64 / seconds, "blobs/s", Better::Higher);
    report.add("gc.reclaim.gb_s", bytes as f64 / 1e9 / seconds, "GB/s", Better::Higher);
    report.add("gc.reclaim.mib_s", mib_s(bytes, seconds), "MiB/s", Better::Higher);
    for (name, at) in outcome.phases.split() {
        report.add(format!("gc.reclaim.phase_{name}_s"), at, "s", Better::Lower);
    }
    // Where the server spent the run: summed latencies of its database and blob-store calls.
    for (op, (sum, count)) in &after {
        let (sum0, count0) = before.get(op).copied().unwrap_or_default();
        let calls = count - count0;
        if calls >= 1.0 && (op.contains("gc_") || op.contains("delete")) {
            report.add(format!("gc.reclaim.op.{op}.calls"), calls, "calls", Better::None);
            report.add(format!("gc.reclaim.op.{op}.sum_s"), sum - sum0, "s", Better::None);
        }
    }
    verify(target, report, shape, ids, blobs, blobs_deleted).await
}

impl Shape {
    /// The repository and tag of image `id`, without building it.
    fn image_ref(&self, id: u64) -> (String, String) {
        (format!("{}/gc/r{:04}", self.prefix, id % u64::from(self.repos)), format!("i{id:08}"))
    }
}

/// Checks that the run left nothing: queue, tombstones, a dry run, the count, a sample of blobs.
async fn verify(
    target: &Arc<Target>,
    report: &mut Report,
    shape: &Shape,
    ids: std::ops::Range<u64>,
    seeded: u64,
    deleted: u64,
) -> anyhow::Result<()> {
    let mut conn = target.connect().await?;
    let status = get_status(&mut conn).await?;
    let left = queue_total(&status);
    report.add("gc.reclaim.queue_left", left as f64, "entries", Better::Lower);
    if left != 0 {
        report.note(format!("the queue is not empty after the run: {}", status["queue"]));
    }
    let plan = dry_run(&mut conn).await?;
    let planned = ["manifests_deleted", "links_deleted", "blobs_deleted"].map(|k| run_u64(&plan, k));
    report.add("gc.reclaim.dry_run_left", planned.iter().sum::<u64>() as f64, "entries", Better::Lower);
    if planned.iter().any(|&n| n != 0) {
        report.note(format!("a dry run after the run still finds manifests, links, blobs: {planned:?}"));
    }
    if deleted != seeded {
        report.note(format!("the run deleted {deleted} blobs, {seeded} were seeded (was the server fresh?)"));
    }
    // A sample of seeded blobs, spread over the range: each must be gone.
    let count = ids.end - ids.start;
    let step = (count / 16).max(1);
    let mut present = 0;
    let mut checked = 0;
    for id in ids.step_by(step as usize).take(16) {
        let image = shape.image(id);
        for blob in &image.blobs {
            let path = format!("/v2/{}/blobs/{}", image.repo, Digest::sha256(blob).as_str());
            let req = conn.request(Method::HEAD, &path).body(client::empty())?;
            checked += 1;
            if conn.fetch(req).await?.status != StatusCode::NOT_FOUND {
                present += 1;
            }
        }
    }
    report.add("gc.reclaim.sampled_blobs_left", f64::from(present), "blobs", Better::Lower);
    if present != 0 {
        report.note(format!("{present} of {checked} sampled blobs still answer HEAD after the run"));
    }
    Ok(())
}

// ---- push throughput with and without a busy collector ------------------------------------

/// What one arm measured.
struct Arm {
    images_s: f64,
    mib_s: f64,
    errors: u64,
    latency: Latency,
    busy: Option<Busy>,
}

async fn push_comparison(
    target: &Arc<Target>,
    report: &mut Report,
    args: &GcArgs,
    shape: &Arc<Shape>,
) -> anyhow::Result<()> {
    let mut conn = target.connect().await?;
    let mut tagged: Vec<u64> = Vec::new();
    let mut arms: Vec<(bool, Arm)> = Vec::new();
    let grace = args.busy_grace.as_secs().max(1);
    for round in 1..=args.rounds {
        for with_gc in [false, true] {
            let name = if with_gc { "with_gc" } else { "no_gc" };
            // The same backlog before every arm: untag at least --churn-images images.
            let top_up = u64::from(args.churn_images).saturating_sub(tagged.len() as u64);
            if top_up > 0 {
                let ids = shape.reserve(top_up);
                let s = Arc::clone(shape);
                for_each(target, ids.clone(), args.concurrency, "pushed", move |mut conn, id| {
                    let s = Arc::clone(&s);
                    async move {
                        s.image(id).push(&mut conn).await?;
                        Ok(conn)
                    }
                })
                .await?;
                tagged.extend(ids);
            }
            let churn = std::mem::take(&mut tagged);
            let backlog_blobs = churn.len() as u64 * shape.blobs_per_image();
            let s = Arc::clone(shape);
            let churn_ids = Arc::new(churn);
            let list = Arc::clone(&churn_ids);
            for_each(target, 0..list.len() as u64, args.concurrency, "untagged", move |mut conn, i| {
                let (s, list) = (Arc::clone(&s), Arc::clone(&list));
                async move {
                    let (repo, tag) = s.image_ref(list[i as usize]);
                    delete_tag(&mut conn, &repo, &tag).await?;
                    Ok(conn)
                }
            })
            .await?;
            tokio::time::sleep(Duration::from_secs(grace) + Duration::from_millis(200)).await;
            eprintln!("gc: round {round} {name}: pushing {} images, backlog {backlog_blobs} blobs", args.push_images);
            let ids = shape.reserve(u64::from(args.push_images));
            let mut arm = push_arm(target, shape, ids.clone(), args, with_gc.then_some(grace)).await?;
            if let Some(busy) = &mut arm.busy {
                busy.backlog_blobs = backlog_blobs;
            }
            tagged.extend(ids);
            // Untimed: drain the queue so the next arm starts like this one did.
            collect(&mut conn, 0, args.busy_poll, args.timeout, false).await?;
            let prefix = format!("gc.push.{name}.r{round}");
            report.add(format!("{prefix}.images_s"), arm.images_s, "images/s", Better::Higher);
            report.add(format!("{prefix}.mib_s"), arm.mib_s, "MiB/s", Better::Higher);
            report.add(format!("{prefix}.p95_ms"), arm.latency.p95_ms, "ms", Better::Lower);
            if let Some(b) = &arm.busy {
                report.add(format!("{prefix}.gc_runs"), b.runs as f64, "runs", Better::None);
                report.add(format!("{prefix}.gc_blobs_deleted"), b.blobs_deleted as f64, "blobs", Better::None);
                report.add(format!("{prefix}.reclaimed_fraction"), b.fraction(), "", Better::None);
            }
            arms.push((with_gc, arm));
        }
    }
    let pick = |gc: bool, f: fn(&Arm) -> f64| -> Vec<f64> {
        arms.iter().filter(|(g, _)| *g == gc).map(|(_, a)| f(a)).collect()
    };
    for (gc, name) in [(false, "no_gc"), (true, "with_gc")] {
        let prefix = format!("gc.push.{name}");
        report.add(format!("{prefix}.images_s"), median(&pick(gc, |a| a.images_s)), "images/s", Better::Higher);
        report.add(format!("{prefix}.mib_s"), median(&pick(gc, |a| a.mib_s)), "MiB/s", Better::Higher);
        report.add(format!("{prefix}.p50_ms"), median(&pick(gc, |a| a.latency.p50_ms)), "ms", Better::Lower);
        report.add(format!("{prefix}.p95_ms"), median(&pick(gc, |a| a.latency.p95_ms)), "ms", Better::Lower);
        report.add(format!("{prefix}.errors"), pick(gc, |a| a.errors as f64).iter().sum(), "", Better::Lower);
    }
    let with_gc = median(&pick(true, |a| a.images_s));
    let no_gc = median(&pick(false, |a| a.images_s));
    report.add("gc.push.with_gc_ratio", with_gc / no_gc, "x", Better::Higher);
    let fractions = pick(true, |a| a.busy.as_ref().map_or(f64::NAN, Busy::fraction));
    report.add("gc.push.with_gc.reclaimed_fraction", median(&fractions), "", Better::None);
    let errors: u64 = arms.iter().map(|(_, a)| a.errors).sum();
    if errors > 0 {
        report.note(format!("{errors} image pushes failed during the push comparison"));
    }
    Ok(())
}

/// Pushes the images `ids` on `--concurrency` connections; with `gc_grace`, runs the
/// collector back to back meanwhile.
async fn push_arm(
    target: &Arc<Target>,
    shape: &Arc<Shape>,
    ids: std::ops::Range<u64>,
    args: &GcArgs,
    gc_grace: Option<u64>,
) -> anyhow::Result<Arm> {
    // Built before the clock starts: the client's share of the cores stays small.
    let images: Arc<Vec<GcImage>> = Arc::new(ids.map(|id| shape.image(id)).collect());
    let bytes: u64 = images.iter().map(GcImage::bytes).sum();
    let stop = Arc::new(AtomicBool::new(false));
    let driver = gc_grace.map(|grace| {
        let (target, stop, poll, timeout) = (Arc::clone(target), Arc::clone(&stop), args.busy_poll, args.timeout);
        tokio::spawn(async move { drive(&target, grace, poll, timeout, &stop).await })
    });
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (target, images, next) = (Arc::clone(target), Arc::clone(&images), Arc::clone(&next));
        workers.push(tokio::spawn(async move {
            let mut conn = target.connect().await?;
            let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0u64, None);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(image) = images.get(i) else { break };
                let at = Instant::now();
                match image.push(&mut conn).await {
                    Ok(()) => latencies.push(at.elapsed()),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            anyhow::Ok((latencies, errors, first_error))
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for worker in workers {
        let (l, e, first) = worker.await??;
        latencies.extend(l);
        errors += e;
        if let Some(e) = first {
            eprintln!("  push error: {e:#}");
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let busy = match driver {
        Some(d) => Some(d.await??),
        None => None,
    };
    let ok = images.len() as u64 - errors;
    Ok(Arm {
        images_s: ok as f64 / seconds,
        mib_s: mib_s(bytes * ok / images.len().max(1) as u64, seconds),
        errors,
        latency: Latency::from_durations(&latencies),
        busy,
    })
}

/// What the collector did while the pushes of an arm ran.
#[derive(Default)]
struct Busy {
    runs: u64,
    blobs_deleted: u64,
    backlog_blobs: u64,
}

impl Busy {
    fn fraction(&self) -> f64 {
        self.blobs_deleted as f64 / self.backlog_blobs.max(1) as f64
    }
}

/// Starts runs back to back until `stop`, then lets the last one finish.
async fn drive(
    target: &Arc<Target>,
    grace: u64,
    poll: Duration,
    timeout: Duration,
    stop: &AtomicBool,
) -> anyhow::Result<Busy> {
    let mut conn = target.connect().await?;
    let mut busy = Busy::default();
    while !stop.load(Ordering::Relaxed) {
        let Some(id) = start_run(&mut conn, grace).await? else {
            tokio::time::sleep(poll).await;
            continue;
        };
        let run = wait_run(&mut conn, id, poll, timeout, |_, _| {}).await?;
        busy.runs += 1;
        busy.blobs_deleted += run_u64(&run, "blobs_deleted");
    }
    Ok(busy)
}

// ---- the GC API ---------------------------------------------------------------------------

/// `berth_{db,storage}_operation_duration_seconds` from `/metrics`: (sum, count) per
/// `db.<op>` / `storage.<op>`; empty when the endpoint is off or refuses.
async fn op_times(conn: &mut Conn) -> std::collections::BTreeMap<String, (f64, f64)> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(req) = conn.request(Method::GET, "/metrics").body(client::empty()) else { return out };
    let Ok(resp) = conn.fetch(req).await else { return out };
    if resp.status != StatusCode::OK {
        return out;
    }
    for line in String::from_utf8_lossy(&resp.body).lines() {
        let Some((key, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        for (kind, prefix) in
            [("db", "berth_db_operation_duration_seconds_"), ("storage", "berth_storage_operation_duration_seconds_")]
        {
            let Some(rest) = key.strip_prefix(prefix) else { continue };
            let Some((field, labels)) = rest.split_once('{') else { continue };
            let Some(op) = labels.strip_prefix("op=\"").and_then(|l| l.split('"').next()) else { continue };
            let entry = out.entry(format!("{kind}.{op}")).or_insert((0.0, 0.0));
            match field {
                "sum" => entry.0 = value,
                "count" => entry.1 = value,
                _ => {}
            }
        }
    }
    out
}

async fn get_status(conn: &mut Conn) -> anyhow::Result<Value> {
    let req = conn.request(Method::GET, API).body(client::empty())?;
    let resp = conn.fetch(req).await?.expect(StatusCode::OK, "GET /api/v1/system/gc")?;
    Ok(serde_json::from_slice(&resp.body)?)
}

async fn post(conn: &mut Conn, body: Value) -> anyhow::Result<client::Fetched> {
    let body = Bytes::from(body.to_string());
    let req = conn
        .request(Method::POST, API)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .body(client::full(body))?;
    conn.fetch(req).await
}

/// Starts a real run; `None` when one is already running (409).
async fn start_run(conn: &mut Conn, grace_seconds: u64) -> anyhow::Result<Option<i64>> {
    let resp = post(conn, serde_json::json!({ "grace_seconds": grace_seconds })).await?;
    if resp.status == StatusCode::CONFLICT {
        return Ok(None);
    }
    let resp = resp.expect(StatusCode::ACCEPTED, "POST /api/v1/system/gc")?;
    let body: Value = serde_json::from_slice(&resp.body)?;
    body["run_id"].as_i64().map(Some).context("POST /api/v1/system/gc answered no run_id")
}

async fn dry_run(conn: &mut Conn) -> anyhow::Result<Value> {
    let resp = post(conn, serde_json::json!({ "dry_run": true, "grace_seconds": 0 })).await?;
    let resp = resp.expect(StatusCode::OK, "POST /api/v1/system/gc (dry run)")?;
    Ok(serde_json::from_slice(&resp.body)?)
}

/// Polls until run `id` is no longer running; calls `seen` with every status and the time
/// since the call. Returns the run's record.
async fn wait_run(
    conn: &mut Conn,
    id: i64,
    poll: Duration,
    timeout: Duration,
    mut seen: impl FnMut(&Value, Duration),
) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        let status = get_status(conn).await?;
        seen(&status, started.elapsed());
        let runs = status["runs"].as_array().context("status has no runs")?;
        let Some(run) = runs.iter().find(|r| r["id"].as_i64() == Some(id)) else {
            bail!("run {id} is not among the recent runs");
        };
        match run["state"].as_str() {
            Some("running") => {}
            Some("finished") => return Ok(run.clone()),
            other => bail!("run {id} ended {other:?}: {}", run["error"]),
        }
        if started.elapsed() > timeout {
            bail!("run {id} still running after {timeout:?}");
        }
        tokio::time::sleep(poll).await;
    }
}

/// One finished run, timed.
struct Collected {
    run: Value,
    wall: Duration,
    server_seconds: Option<f64>,
    phases: Phases,
}

/// Starts a run (waiting out a running one) and follows it to the end.
async fn collect(
    conn: &mut Conn,
    grace: u64,
    poll: Duration,
    timeout: Duration,
    log: bool,
) -> anyhow::Result<Collected> {
    let waited = Instant::now();
    let (id, started) = loop {
        let started = Instant::now();
        if let Some(id) = start_run(conn, grace).await? {
            break (id, started);
        }
        ensure!(waited.elapsed() < timeout, "another run kept the collector busy for {timeout:?}");
        tokio::time::sleep(poll).await;
    };
    let mut phases = Phases::default();
    let mut last_log = Duration::ZERO;
    let run = wait_run(conn, id, poll, timeout, |status, _| {
        let at = started.elapsed();
        phases.observe(&status["queue"], at);
        if log && at >= last_log + Duration::from_secs(10) {
            last_log = at;
            eprintln!("  {:>5.0} s: queue {}", at.as_secs_f64(), status["queue"]);
        }
    })
    .await?;
    let wall = started.elapsed();
    phases.total = Some(wall.as_secs_f64());
    let server_seconds = match (rfc3339_secs(&run["started_at"]), rfc3339_secs(&run["finished_at"])) {
        (Some(a), Some(b)) => Some((b - a) as f64),
        _ => None,
    };
    Ok(Collected { run, wall, server_seconds, phases })
}

/// When the polls first saw each kind of queue entry gone.
#[derive(Default)]
struct Phases {
    manifests: Option<f64>,
    links: Option<f64>,
    total: Option<f64>,
}

impl Phases {
    fn observe(&mut self, queue: &Value, at: Duration) {
        let n = |k: &str| queue[k].as_u64().unwrap_or(u64::MAX);
        if self.manifests.is_none() && n("manifests") == 0 {
            self.manifests = Some(at.as_secs_f64());
        }
        if self.links.is_none() && n("manifests") == 0 && n("links") == 0 {
            self.links = Some(at.as_secs_f64());
        }
    }

    /// Phase lengths: manifests, links, blobs (each to the poll resolution).
    fn split(&self) -> Vec<(&'static str, f64)> {
        let (Some(m), Some(l), Some(t)) = (self.manifests, self.links, self.total) else {
            return Vec::new();
        };
        vec![("manifests", m), ("links", (l - m).max(0.0)), ("blobs", (t - l).max(0.0))]
    }
}

fn run_u64(run: &Value, key: &str) -> u64 {
    run[key].as_u64().unwrap_or(0)
}

fn queue_total(status: &Value) -> u64 {
    ["manifests", "links", "blobs", "tombstones"].iter().map(|k| run_u64(&status["queue"], k)).sum()
}

async fn delete_tag(conn: &mut Conn, repo: &str, tag: &str) -> anyhow::Result<()> {
    let req = conn.request(Method::DELETE, &format!("/v2/{repo}/manifests/{tag}")).body(client::empty())?;
    conn.fetch(req).await?.expect(StatusCode::ACCEPTED, "DELETE tag")?;
    Ok(())
}

/// Runs `job(conn, id)` for every id of `ids` on `concurrency` connections; fails on the first error.
async fn for_each<F, Fut>(
    target: &Arc<Target>,
    ids: std::ops::Range<u64>,
    concurrency: usize,
    verb: &'static str,
    job: F,
) -> anyhow::Result<()>
where
    F: Fn(Conn, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Conn>> + Send,
{
    let next = Arc::new(AtomicU64::new(ids.start));
    let (end, total) = (ids.end, ids.end - ids.start);
    let progress = (total / 10).max(10_000);
    let job = Arc::new(job);
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, job, target) = (Arc::clone(&next), Arc::clone(&job), Arc::clone(target));
        workers.push(tokio::spawn(async move {
            let mut conn = target.connect().await?;
            loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if id >= end {
                    return anyhow::Ok(());
                }
                let done = id - ids.start;
                if done > 0 && done.is_multiple_of(progress) {
                    eprintln!("  {verb} {done}/{total}");
                }
                conn = job(conn, id).await?;
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    Ok(())
}

/// Unix seconds of `YYYY-MM-DDTHH:MM:SS...Z` (the API's timestamps, always UTC).
fn rfc3339_secs(value: &Value) -> Option<i64> {
    let s = value.as_str()?;
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn parses_the_api_timestamps() {
        assert_eq!(rfc3339_secs(&Value::from("1970-01-01T00:00:00Z")), Some(0));
        assert_eq!(rfc3339_secs(&Value::from("2000-03-01T00:00:01Z")), Some(951_868_801));
        assert_eq!(rfc3339_secs(&Value::from("2026-11-23T21:44:31Z")), Some(1_795_470_271));
        assert_eq!(rfc3339_secs(&Value::Null), None);
    }

    #[test]
    fn images_are_valid_and_distinct() {
        let args =
            crate::cli::Cli::try_parse_from(["berth-bench", "gc", "--url", "http://127.0.0.1:1", "--layers", "3"])
                .expect("parses");
        let crate::cli::Command::Gc(args) = args.command else { panic!("gc") };
        let shape = Shape::new(&args);
        let (a, b) = (shape.image(1), shape.image(2));
        assert_eq!(a.blobs.len(), 4);
        assert_eq!(a.blobs[1].len() as u64, args.blob_size.0);
        let mut digests: Vec<Digest> = a.blobs.iter().chain(&b.blobs).map(|x| Digest::sha256(x)).collect();
        digests.sort_by(|x, y| x.as_str().cmp(y.as_str()));
        digests.dedup();
        assert_eq!(digests.len(), 8);
        berth_core::ParsedManifest::parse(&a.manifest, Some(media_type::OCI_MANIFEST)).expect("valid manifest");
        assert_ne!(a.repo, b.repo);
        assert_eq!((a.repo.clone(), a.tag.clone()), shape.image_ref(1));
    }
}
