//! `berth import --from /var/lib/registry`: moving from CNCF distribution
//! (registry:2) to berth in one command.
//!
//! Reads distribution's filesystem layout (`docker/registry/v2/…`):
//! `repositories/<name>/_layers/<alg>/<hex>/link` (blobs linked into a
//! repository), `_manifests/revisions/<alg>/<hex>/link` (its manifests) and
//! `_manifests/tags/<tag>/current/link`, with the bytes under
//! `blobs/<alg>/<2 hex>/<hex>/data`. Everything goes through the registry
//! service like a push: every blob is re-hashed while it streams in, every
//! manifest is parsed and its references checked, and nothing is visible
//! before it is verified. What is already in berth is skipped, so an
//! interrupted import is simply run again. The source is only read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use berth_core::{Digest, Reference, RepoName, Tag};
use berth_meta::EventActor;
use berth_registry::{MountOutcome, Registry, RegistryConfig};
use indicatif::{ProgressBar, ProgressStyle};

use crate::backends::{open_blob_store, open_metadata};
use crate::cli::ImportArgs;
use crate::config::Config;

pub fn run(args: ImportArgs) -> ExitCode {
    let config = match Config::load(&args.serve) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: invalid configuration: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(import(&args, &config)) {
        Ok(report) if report.failures.is_empty() => ExitCode::SUCCESS,
        Ok(report) => {
            eprintln!("berth import: {} problems:", report.failures.len());
            for f in report.failures.iter().take(50) {
                eprintln!("  {f}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What distribution's layout says one repository holds.
#[derive(Debug, Default)]
struct SourceRepo {
    blobs: Vec<Digest>,
    manifests: Vec<Digest>,
    tags: BTreeMap<String, Digest>,
}

#[derive(Debug, Default)]
struct Report {
    repositories: u64,
    blobs_imported: u64,
    blobs_present: u64,
    bytes: u64,
    manifests_imported: u64,
    manifests_present: u64,
    tags: u64,
    failures: Vec<String>,
}

/// The `docker/registry/v2` directory under `from` (or `from` itself).
fn layout_root(from: &Path) -> anyhow::Result<PathBuf> {
    for candidate in [from.join("docker/registry/v2"), from.to_owned()] {
        if candidate.join("repositories").is_dir() && candidate.join("blobs").is_dir() {
            return Ok(candidate);
        }
    }
    bail!(
        "{} is not a distribution storage directory (expected docker/registry/v2/{{repositories,blobs}} in it)",
        from.display()
    )
}

/// Reads a `link` file: one digest.
fn read_link(path: &Path) -> anyhow::Result<Digest> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.trim().parse().map_err(|e| anyhow::anyhow!("{}: not a digest ({e})", path.display()))
}

/// `<dir>/<alg>/<hex>/link` digests (distribution's `_layers` and `revisions`).
fn links_under(dir: &Path, failures: &mut Vec<String>) -> Vec<Digest> {
    let mut found = Vec::new();
    let Ok(algorithms) = std::fs::read_dir(dir) else { return found };
    for alg in algorithms.flatten() {
        let Ok(entries) = std::fs::read_dir(alg.path()) else { continue };
        for entry in entries.flatten() {
            let link = entry.path().join("link");
            if link.is_file() {
                match read_link(&link) {
                    Ok(d) => found.push(d),
                    Err(e) => failures.push(format!("{e:#}")),
                }
            }
        }
    }
    found.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    found
}

/// Every repository under `repositories/`, by name.
fn scan(root: &Path, failures: &mut Vec<String>) -> anyhow::Result<BTreeMap<String, SourceRepo>> {
    let mut repos = BTreeMap::new();
    let mut pending = vec![root.join("repositories")];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !path.is_dir() || name.starts_with('_') {
                continue;
            }
            if path.join("_manifests").is_dir() || path.join("_layers").is_dir() {
                let repo_name = path
                    .strip_prefix(root.join("repositories"))
                    .expect("under repositories/")
                    .to_string_lossy()
                    .replace(std::path::MAIN_SEPARATOR, "/");
                let mut repo = SourceRepo {
                    blobs: links_under(&path.join("_layers"), failures),
                    manifests: links_under(&path.join("_manifests/revisions"), failures),
                    tags: BTreeMap::new(),
                };
                if let Ok(tags) = std::fs::read_dir(path.join("_manifests/tags")) {
                    for tag in tags.flatten() {
                        let link = tag.path().join("current/link");
                        match read_link(&link) {
                            Ok(d) => {
                                repo.tags.insert(tag.file_name().to_string_lossy().into_owned(), d);
                            }
                            Err(e) => failures.push(format!("{repo_name}: tag {:?}: {e:#}", tag.file_name())),
                        }
                    }
                }
                repos.insert(repo_name, repo);
            }
            // Repositories nest (`library/nginx` lives in `library/`).
            pending.push(path);
        }
    }
    Ok(repos)
}

fn data_path(root: &Path, digest: &Digest) -> PathBuf {
    let hex = digest.encoded();
    root.join("blobs").join(digest.algorithm().as_str()).join(&hex[..2]).join(hex).join("data")
}

/// The media type a stored manifest declares, or the one its fields imply.
fn media_type(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    if let Some(t) = v.get("mediaType").and_then(|t| t.as_str()) {
        return t.to_owned();
    }
    if v.get("manifests").is_some() {
        berth_core::media_type::OCI_INDEX.to_owned()
    } else {
        berth_core::media_type::OCI_MANIFEST.to_owned()
    }
}

fn is_index(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.get("manifests").is_some())
}

async fn import(args: &ImportArgs, config: &Config) -> anyhow::Result<Report> {
    let root = layout_root(&args.from)?;
    let mut report = Report::default();
    eprintln!("reading {} …", root.display());
    let repos = scan(&root, &mut report.failures)?;
    let meta = open_metadata(&config.database_url(), config).await?;
    let blobs = open_blob_store(&config.storage_url(), config).await?;
    let registry_config = RegistryConfig { automatic_mount: true, ..RegistryConfig::default() };
    let registry = Arc::new(Registry::new(blobs, meta.as_dyn(), registry_config));
    let actor = EventActor::system("import");

    let total_bytes: u64 = repos
        .values()
        .flat_map(|r| &r.blobs)
        .filter_map(|d| std::fs::metadata(data_path(&root, d)).ok())
        .map(|m| m.len())
        .sum();
    let bar = ProgressBar::new(total_bytes);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    for (name, source) in &repos {
        let Ok(repo) = name.parse::<RepoName>() else {
            report.failures.push(format!("{name}: not a valid repository name, skipped"));
            continue;
        };
        bar.set_message(name.clone());
        report.repositories += 1;
        for digest in &source.blobs {
            match import_blob(&registry, &root, &repo, digest, &actor).await {
                Ok(Some(size)) => {
                    report.blobs_imported += 1;
                    report.bytes += size;
                    bar.inc(size);
                }
                Ok(None) => {
                    report.blobs_present += 1;
                    bar.inc(std::fs::metadata(data_path(&root, digest)).map(|m| m.len()).unwrap_or(0));
                }
                Err(e) => report.failures.push(format!("{name}: blob {digest}: {e:#}")),
            }
        }
        // Image manifests first: an index needs its children in the repository.
        let mut manifests = Vec::new();
        for digest in &source.manifests {
            match std::fs::read(data_path(&root, digest)) {
                Ok(body) => manifests.push((digest.clone(), body)),
                Err(e) => report.failures.push(format!("{name}: manifest {digest}: cannot read its data: {e}")),
            }
        }
        manifests.sort_by_key(|(_, body)| is_index(body));
        for (digest, body) in &manifests {
            if registry.meta().manifest_by_digest(&repo, digest, false).await?.is_some() {
                report.manifests_present += 1;
                continue;
            }
            let reference = Reference::Digest(digest.clone());
            match registry.put_manifest(&repo, &reference, Some(&media_type(body)), body.clone(), vec![], &actor).await
            {
                Ok(_) => report.manifests_imported += 1,
                Err(e) => report.failures.push(format!("{name}: manifest {digest}: {e}")),
            }
        }
        for (tag, digest) in &source.tags {
            let Ok(tag) = tag.parse::<Tag>() else {
                report.failures.push(format!("{name}: tag {tag:?} is not a valid tag, skipped"));
                continue;
            };
            let current = registry.meta().manifest_by_tag(&repo, &tag, false).await?;
            if current.is_some_and(|m| &m.digest == digest) {
                report.tags += 1;
                continue;
            }
            let Some((_, body)) = manifests.iter().find(|(d, _)| d == digest) else {
                report.failures.push(format!("{name}:{tag} points at {digest}, which is not among its manifests"));
                continue;
            };
            let reference = Reference::Tag(tag.clone());
            match registry.put_manifest(&repo, &reference, Some(&media_type(body)), body.clone(), vec![], &actor).await
            {
                Ok(_) => report.tags += 1,
                Err(e) => report.failures.push(format!("{name}:{tag}: {e}")),
            }
        }
    }
    bar.finish_and_clear();
    meta.close().await;
    eprintln!(
        "berth import: {} repositories, {} blobs imported ({} bytes, every digest verified), {} already present, \
         {} manifests imported, {} already present, {} tags",
        report.repositories,
        report.blobs_imported,
        report.bytes,
        report.blobs_present,
        report.manifests_imported,
        report.manifests_present,
        report.tags
    );
    Ok(report)
}

/// Streams one blob into `repo` through the digest check; `None` when it was
/// already there. A blob another repository holds is mounted, not copied.
async fn import_blob(
    registry: &Registry,
    root: &Path,
    repo: &RepoName,
    digest: &Digest,
    actor: &EventActor,
) -> anyhow::Result<Option<u64>> {
    if registry.meta().blob_in_repo(repo, digest).await?.is_some() {
        return Ok(None);
    }
    if registry.meta().find_blob(digest).await?.is_some() {
        match registry.mount_or_start(repo, digest, None, actor).await? {
            MountOutcome::Mounted { .. } => return Ok(None),
            MountOutcome::Started(upload) => registry.cancel_upload(repo, &upload.id).await?,
        }
    }
    let path = data_path(root, digest);
    let file = tokio::fs::File::open(&path).await.with_context(|| format!("cannot open {}", path.display()))?;
    let len = file.metadata().await?.len();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
    registry.put_blob(repo, digest, Some(len), Box::pin(stream), actor).await?;
    Ok(Some(len))
}
