//! Listings at scale: seed a repository with many tags and the registry with many
//! repositories (concurrent PUTs of one tiny manifest each), then time pages of each.
//!
//! Each seeded repository holds one empty OCI index, which references no blob, so a
//! single PUT creates it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use berth_core::media_type;
use bytes::Bytes;

use crate::cli::{Phase, ScaleArgs};
use crate::client::{Conn, Target};
use crate::data::Pool;
use crate::oci::{self, Image};
use crate::report::{Better, Report};
use crate::tags::{self, Listing, tag_name};

/// The name of seeded repository number `i`.
fn repo_name(prefix: &str, i: u32) -> String {
    format!("{prefix}/scale/r{i:06}")
}

/// Seeds and/or times, as `--phase` says.
pub async fn run(target: &Arc<Target>, report: &mut Report, args: &ScaleArgs) -> anyhow::Result<()> {
    report.param("scale_tags", args.tags);
    report.param("scale_repos", args.repos);
    report.param("scale_list_tags", args.list_tags);
    let repos = Repos::new(&args.target.repo_prefix);
    if args.phase != Phase::Measure {
        seed_all(target, report, args, &repos).await?;
    }
    if args.phase != Phase::Seed {
        if args.list_tags > 0 {
            let full = Listing {
                name: "scale.tags_list_small",
                path: format!("/v2/{}/tags/list", repos.small),
                field: "tags",
                expect: Some(args.list_tags as usize),
            };
            tags::time_listing(target, report, &full, args.samples).await?;
        }
        if args.tags > 0 {
            time_tag_pages(target, report, &repos.large, args).await?;
        }
        if args.repos > 0 {
            time_catalog_pages(target, report, args).await?;
        }
    }
    Ok(())
}

/// The repositories the tags are seeded into.
struct Repos {
    /// `--list-tags` tags: its full tags/list is timed.
    small: String,
    /// `--tags` tags: pages of it are timed.
    large: String,
}

impl Repos {
    fn new(prefix: &str) -> Repos {
        Repos { small: format!("{prefix}/scale-tags-small"), large: format!("{prefix}/scale-tags") }
    }
}

async fn seed_all(target: &Arc<Target>, report: &mut Report, args: &ScaleArgs, repos: &Repos) -> anyhow::Result<()> {
    let image = Arc::new(Image::new(&Pool::generate(1 << 20, 42), 0));
    let started = Instant::now();
    for (repo, count) in [(&repos.small, args.list_tags), (&repos.large, args.tags)] {
        if count == 0 {
            continue;
        }
        image.push(&mut target.connect().await?, repo, "seed").await?;
        let (image, repo) = (Arc::clone(&image), repo.clone());
        seed(target, count, args.seed_concurrency, move |mut conn, i| {
            let (image, repo) = (Arc::clone(&image), repo.clone());
            async move {
                oci::put_manifest(&mut conn, &repo, &tag_name(i), &image.manifest).await?;
                Ok(conn)
            }
        })
        .await?;
    }
    let tags = args.list_tags + args.tags;
    if tags > 0 {
        report.add(
            "scale.seed_tags.per_s",
            f64::from(tags) / started.elapsed().as_secs_f64(),
            "tags/s",
            Better::Higher,
        );
    }
    if args.repos > 0 {
        let prefix = args.target.repo_prefix.clone();
        let index = Bytes::from_static(oci::EMPTY_INDEX.as_bytes());
        let started = Instant::now();
        seed(target, args.repos, args.seed_concurrency, move |mut conn, i| {
            let (repo, index) = (repo_name(&prefix, i), index.clone());
            async move {
                oci::put_manifest_as(&mut conn, &repo, "v1", &index, media_type::OCI_INDEX).await?;
                Ok(conn)
            }
        })
        .await?;
        let rate = f64::from(args.repos) / started.elapsed().as_secs_f64();
        report.add("scale.seed_repos.per_s", rate, "repos/s", Better::Higher);
    }
    Ok(())
}

async fn time_tag_pages(target: &Arc<Target>, report: &mut Report, repo: &str, args: &ScaleArgs) -> anyhow::Result<()> {
    let pages = [
        ("scale.tags_page_first", format!("/v2/{repo}/tags/list?n=100"), args.tags),
        (
            "scale.tags_page_middle",
            format!("/v2/{repo}/tags/list?n=100&last={}", tag_name(args.tags / 2)),
            after_middle(args.tags),
        ),
    ];
    for (name, path, left) in pages {
        let listing = Listing { name, path, field: "tags", expect: Some(100.min(left as usize)) };
        tags::time_listing(target, report, &listing, args.samples).await?;
    }
    let full = Listing {
        name: "scale.tags_full",
        path: format!("/v2/{repo}/tags/list"),
        field: "tags",
        expect: Some(args.tags as usize),
    };
    tags::time_listing(target, report, &full, args.samples.min(10)).await
}

async fn time_catalog_pages(target: &Arc<Target>, report: &mut Report, args: &ScaleArgs) -> anyhow::Result<()> {
    let middle = repo_name(&args.target.repo_prefix, args.repos / 2);
    let pages = [
        ("scale.catalog_page_first", "/v2/_catalog?n=100".to_owned(), args.repos),
        ("scale.catalog_page_middle", format!("/v2/_catalog?n=100&last={middle}"), after_middle(args.repos)),
    ];
    for (name, path, left) in pages {
        let listing = Listing { name, path, field: "repositories", expect: Some(100.min(left as usize)) };
        tags::time_listing(target, report, &listing, args.samples).await?;
    }
    Ok(())
}

/// Seeded entries after number `count / 2` (the `last` of a middle page).
fn after_middle(count: u32) -> u32 {
    (count - count / 2).saturating_sub(1)
}

/// Runs `job(conn, i)` for every `i < count` on `concurrency` connections.
async fn seed<F, Fut>(target: &Arc<Target>, count: u32, concurrency: usize, job: F) -> anyhow::Result<()>
where
    F: Fn(Conn, u32) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Conn>> + Send,
{
    let next = Arc::new(AtomicU32::new(0));
    let job = Arc::new(job);
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, job, target) = (Arc::clone(&next), Arc::clone(&job), Arc::clone(target));
        workers.push(tokio::spawn(async move {
            let mut conn = target.connect().await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                if i > 0 && i % 10_000 == 0 {
                    eprintln!("  seeded {i}/{count}");
                }
                conn = job(conn, i).await?;
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    Ok(())
}
