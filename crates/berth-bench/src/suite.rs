//! The suite: every per-server measurement in a fixed order against one registry.
//!
//! A step that fails is noted and the suite goes on, so one unsupported feature does not
//! lose the other figures. The server's RSS is sampled throughout when `--pid` is given.

use std::sync::Arc;
use std::time::Duration;

use crate::cli::SuiteArgs;
use crate::client::Target;
use crate::data::Pool;
use crate::oci::Image;
use crate::push::Mode;
use crate::report::{Better, Report};
use crate::rss::{Mem, Sampler, mib};
use crate::tags::Listing;
use crate::{load, manifests, pull, push, tags};

/// Steps in the order they run.
pub const STEPS: &[&str] = &["push", "chunked", "pull", "manifest", "head", "tags", "catalog", "load"];

/// Runs every step not in `--skip`.
pub async fn run(target: &Arc<Target>, report: &mut Report, args: &SuiteArgs) -> anyhow::Result<()> {
    for skip in &args.skip {
        anyhow::ensure!(STEPS.contains(&skip.as_str()), "unknown step {skip:?} (steps: {})", STEPS.join(", "));
    }
    record_params(report, args);
    report.param("loadavg_before", loadavg());
    let pool = Pool::fresh();
    let sampler = args.target.pid.map(|pid| Sampler::start(pid, Duration::from_millis(20)));
    if let Some(pid) = args.target.pid {
        report.add("rss.start_mib", mib(Mem::read(pid)?.rss_kib), "MiB", Better::Lower);
    }
    let mut suite = Suite { target, args, pool, sampler, pushed: None, image: None };
    for &step in STEPS {
        if args.skip.iter().any(|s| s == step) {
            continue;
        }
        eprintln!("{step}:");
        if let Err(e) = suite.step(report, step).await {
            report.note(format!("step {step} failed: {e:#}"));
        }
    }
    report.param("loadavg_after", loadavg());
    if let Some(pid) = args.target.pid {
        let mem = Mem::read(pid)?;
        report.add("rss.end_mib", mib(mem.rss_kib), "MiB", Better::Lower);
        report.add("rss.peak_mib", mib(mem.hwm_kib), "MiB", Better::Lower);
    }
    Ok(())
}

/// The 1-, 5- and 15-minute load averages: other work on the machine skews every figure.
pub(crate) fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Pool id of the first blob of the suite's `nth` group of pushes (0 monolithic,
/// 1 chunked, 2 the pull's own): each group has its own ids, so no push sends
/// bytes the server already holds.
fn blob_id(args: &SuiteArgs, nth: u64) -> u64 {
    1 + nth * u64::from(args.push_repeat.max(1))
}

fn record_params(report: &mut Report, args: &SuiteArgs) {
    report.param("blob_bytes", args.size.0);
    report.param("chunk_bytes", args.chunk.0);
    report.param("concurrency", &args.rate.concurrency);
    report.param("rate_seconds", args.rate.duration.as_secs_f64());
    report.param("tags", args.tags);
}

struct Suite<'a> {
    target: &'a Arc<Target>,
    args: &'a SuiteArgs,
    pool: Pool,
    sampler: Option<Sampler>,
    /// The monolithically pushed blob and its repository, for the pull step.
    pushed: Option<(crate::data::Blob, String)>,
    /// The small image the manifest and HEAD steps use.
    image: Option<(Image, String)>,
}

impl Suite<'_> {
    fn repo(&self, name: &str) -> String {
        format!("{}/{name}", self.args.target.repo_prefix)
    }

    async fn step(&mut self, report: &mut Report, step: &str) -> anyhow::Result<()> {
        let (target, args) = (self.target, self.args);
        match step {
            "push" => {
                let repo = self.repo("push");
                let first_id = blob_id(args, 0);
                let spec = push::Spec { mode: Mode::Monolithic, size: args.size.0, repeat: args.push_repeat, first_id };
                let blob = push::measure(target, report, &self.pool, &repo, spec).await?;
                self.pushed = Some((blob, repo));
            }
            "chunked" => {
                let first_id = blob_id(args, 1);
                let spec = push::Spec {
                    mode: Mode::Chunked(args.chunk.0),
                    size: args.size.0,
                    repeat: args.push_repeat,
                    first_id,
                };
                push::measure(target, report, &self.pool, &self.repo("chunked"), spec).await?;
            }
            "pull" => {
                if self.pushed.is_none() {
                    let repo = self.repo("pull");
                    let blob = self.pool.blobs(blob_id(args, 2), 1, args.size.0).await?.remove(0);
                    crate::oci::push_monolithic(&mut target.connect().await?, &repo, &blob).await?;
                    self.pushed = Some((blob, repo));
                }
                let (blob, repo) = self.pushed.as_ref().expect("set above");
                pull::measure(target, report, repo, blob, false, args.pull_repeat).await?;
            }
            "manifest" => {
                let (image, repo) = self.image().await?;
                manifests::measure_get(target, report, &repo, &image, &args.rate).await?;
            }
            "head" => {
                let (image, repo) = self.image().await?;
                manifests::measure_head(target, report, &repo, &image, &args.rate).await?;
            }
            "tags" => {
                let repo = self.repo("tags");
                let image = Image::new(&self.pool, 2);
                tags::sequential(target, report, &repo, &image, args.tags).await?;
                tags::time_tag_listings(target, report, &repo, args.tags, args.list_samples).await?;
            }
            "catalog" => {
                let listing = Listing {
                    name: "catalog.page",
                    path: "/v2/_catalog?n=100".into(),
                    field: "repositories",
                    expect: None,
                };
                tags::time_listing(target, report, &listing, args.list_samples).await?;
            }
            "load" => {
                let repo = self.repo("load");
                load::measure(target, report, &self.pool, &repo, &args.load, self.sampler.as_ref(), 100).await?;
            }
            other => anyhow::bail!("unknown step {other}"),
        }
        Ok(())
    }

    async fn image(&mut self) -> anyhow::Result<(Image, String)> {
        if self.image.is_none() {
            let repo = self.repo("manifest");
            let image = Image::new(&self.pool, 1);
            manifests::prepare(self.target, &repo, &image).await?;
            self.image = Some((image, repo));
        }
        Ok(self.image.clone().expect("set above"))
    }
}
