//! `berth-bench`: measures an OCI registry over HTTP (see `berth-bench --help`).
//!
//! Every subcommand prints a table on stdout (progress on stderr) and, with `--json FILE`,
//! writes its metrics for `berth-bench summarize`. scripts/bench.sh drives the full
//! comparison with the peers.

mod baseline;
mod cli;
mod client;
mod data;
mod gc;
mod load;
mod machine;
mod manifests;
mod oci;
mod pull;
mod push;
mod rate;
mod ready;
mod report;
mod rss;
mod scale;
mod stats;
mod suite;
mod summarize;
mod tags;
mod targets;
mod upload_sink;
mod zb;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use cli::{Cli, Command, TargetArgs};
use client::Target;
use report::Report;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = &cli.output;
    let url = command_url(&cli.command);
    let mut report = Report::new(&out.label, out.round, url.as_deref());
    match &cli.command {
        Command::Push(a) => {
            let target = connect(&a.target)?;
            let mode = a.chunk.map_or(push::Mode::Monolithic, |c| push::Mode::Chunked(c.0));
            let spec = push::Spec { mode, size: a.size.0, repeat: a.repeat, first_id: 1 };
            let repo = format!("{}/push", a.target.repo_prefix);
            push::measure(&target, &mut report, &data::Pool::fresh(), &repo, spec).await?;
        }
        Command::Pull(a) => {
            let target = connect(&a.target)?;
            let repo = format!("{}/pull", a.target.repo_prefix);
            let blob = data::Pool::fresh().blobs(1, 1, a.size.0).await?.remove(0);
            oci::push_monolithic(&mut target.connect().await?, &repo, &blob).await?;
            pull::measure(&target, &mut report, &repo, &blob, a.verify, a.repeat).await?;
        }
        Command::Manifest(a) | Command::Head(a) => {
            let target = connect(&a.target)?;
            let repo = format!("{}/manifest", a.target.repo_prefix);
            let image = oci::Image::new(&data::Pool::fresh(), 1);
            manifests::prepare(&target, &repo, &image).await?;
            if matches!(cli.command, Command::Manifest(_)) {
                manifests::measure_get(&target, &mut report, &repo, &image, &a.rate).await?;
            } else {
                manifests::measure_head(&target, &mut report, &repo, &image, &a.rate).await?;
            }
        }
        Command::Tags(a) => {
            let target = connect(&a.target)?;
            let repo = format!("{}/tags", a.target.repo_prefix);
            let image = oci::Image::new(&data::Pool::fresh(), 2);
            tags::sequential(&target, &mut report, &repo, &image, a.count).await?;
            tags::time_tag_listings(&target, &mut report, &repo, a.count, a.samples).await?;
        }
        Command::Scale(a) => scale::run(&connect(&a.target)?, &mut report, a).await?,
        Command::Load(a) => {
            let target = connect(&a.target)?;
            let sampler = a.target.pid.map(|pid| rss::Sampler::start(pid, std::time::Duration::from_millis(20)));
            let repo = format!("{}/load", a.target.repo_prefix);
            load::measure(&target, &mut report, &data::Pool::fresh(), &repo, &a.load, sampler.as_ref(), 100).await?;
        }
        Command::Suite(a) => suite::run(&connect(&a.target)?, &mut report, a).await?,
        Command::Gc(a) => gc::run(&connect(&a.target)?, &mut report, a).await?,
        Command::Rate(a) => {
            let target = Target::new(&a.url, None, None)?;
            let method: http::Method = a.method.parse()?;
            let path = a.path.clone();
            let make: rate::MakeRequest =
                Arc::new(move |conn| conn.request(method.clone(), &path).body(client::empty()).expect("valid request"));
            rate::measure(&target, &mut report, &a.name, &a.rate, make, http::StatusCode::OK).await?;
        }
        Command::Rss(a) => rss::watch(&mut report, a).await?,
        Command::WaitReady(a) => ready::wait(&mut report, a).await?,
        Command::BaselineServer(a) => return baseline::serve(a).await,
        Command::Machine(a) => machine::measure(&mut report, a).await?,
        Command::Summarize(a) => return summarize::run(a),
        Command::FreePort => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            println!("{}", listener.local_addr()?.port());
            return Ok(());
        }
    }
    report.finish(out.json.as_deref())
}

fn connect(args: &TargetArgs) -> anyhow::Result<Arc<Target>> {
    Target::new(&args.url, args.user.as_deref(), args.password.as_deref())
}

/// The URL a command measures, for the report header.
fn command_url(command: &Command) -> Option<String> {
    let target = match command {
        Command::Push(a) => &a.target,
        Command::Pull(a) => &a.target,
        Command::Manifest(a) | Command::Head(a) => &a.target,
        Command::Tags(a) => &a.target,
        Command::Scale(a) => &a.target,
        Command::Load(a) => &a.target,
        Command::Suite(a) => &a.target,
        Command::Gc(a) => &a.target,
        Command::Rate(a) => return Some(a.url.clone()),
        Command::WaitReady(a) => return Some(a.url.clone()),
        _ => return None,
    };
    Some(target.url.clone())
}
