//! Seed 000's system API (API.md §5.3, info part; admin only): host facts,
//! cached after the first call and re-collected by `/api/system/refresh`, and
//! the checks that decide whether berth can run safely here.
//!
//! Local checks concern the data directory (SQLite, the pull-through spool,
//! temporary files) and, with the `fs` store, the blob directory. With S3 there
//! is no local blob directory: the blob store is checked through its own API.

use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::response::Response;
use berth_core::Digest;
use serde_json::json;
use tokio::sync::Mutex;

use super::envelope::{Failure, Needs, ok, require};
use crate::AppState;
use crate::hostinfo::{self, DiskStats, SystemInfo};

type Answer = Result<Response, Failure>;

/// Free space below this is an error (writes will fail soon) …
const DISK_ERROR_BYTES: u64 = 256 << 20;
/// … below this, or below [`DISK_WARN_PERCENT`] of the filesystem, a warning.
const DISK_WARN_BYTES: u64 = 2 << 30;
const DISK_WARN_PERCENT: u64 = 5;
/// Free inodes below this are an error, below the percentage a warning.
const INODE_ERROR: u64 = 1_000;
const INODE_WARN_PERCENT: u64 = 5;

/// Where berth keeps local files, and the cached host facts.
#[derive(Debug)]
pub struct Host {
    /// The data directory (always local).
    pub data_dir: PathBuf,
    /// The blob directory of the `fs` store; `None` on S3.
    pub blob_dir: Option<PathBuf>,
    /// The build's commit date (unix seconds): the clock cannot be earlier.
    pub built_at: i64,
    info: Mutex<Option<SystemInfo>>,
}

impl Host {
    /// `commit_date` is `YYYY-MM-DD` (unparsable: 2026-01-01).
    pub fn new(data_dir: PathBuf, blob_dir: Option<PathBuf>, commit_date: &str) -> Self {
        let fallback = time::Date::from_calendar_date(2026, time::Month::January, 1).expect("valid date");
        let built_at = time::format_description::parse_borrowed::<2>("[year]-[month]-[day]")
            .ok()
            .and_then(|format| time::Date::parse(commit_date, &format).ok())
            .unwrap_or(fallback)
            .midnight()
            .assume_utc()
            .unix_timestamp();
        Host { data_dir, blob_dir, built_at, info: Mutex::new(None) }
    }

    /// The host facts, collected once and then served from memory.
    async fn info(&self, refresh: bool) -> Result<SystemInfo, Failure> {
        let mut cached = self.info.lock().await;
        if let (false, Some(info)) = (refresh, cached.as_ref()) {
            return Ok(info.clone());
        }
        let dir = self.data_dir.clone();
        let info = tokio::task::spawn_blocking(move || hostinfo::collect(&dir)).await.map_err(Failure::internal)?;
        *cached = Some(info.clone());
        Ok(info)
    }
}

/// `GET /api/system/info`.
pub async fn info(State(state): State<AppState>, request: Request) -> Answer {
    let (parts, _) = request.into_parts();
    require(&state, &parts, Needs::Admin).await?;
    Ok(ok(state.host.info(false).await?))
}

/// `GET /api/system/refresh`: collects again.
pub async fn refresh(State(state): State<AppState>, request: Request) -> Answer {
    let (parts, _) = request.into_parts();
    require(&state, &parts, Needs::Admin).await?;
    Ok(ok(state.host.info(true).await?))
}

/// `GET /api/system/compatibility`.
pub async fn compatibility(State(state): State<AppState>, request: Request) -> Answer {
    let (parts, _) = request.into_parts();
    require(&state, &parts, Needs::Admin).await?;
    let mut report = Report::default();
    check_dirs(&state.host, &mut report).await;
    check_clock(state.host.built_at, &mut report);
    check_metadata(&state, &mut report).await;
    check_blob_store(&state, &mut report).await;
    if !state.tls {
        report.warnings.push("TLS disabled: berth serves plain HTTP (fine behind a TLS proxy)".into());
    }
    let compatible = report.errors.is_empty();
    Ok(ok(json!({ "compatible": compatible, "warnings": report.warnings, "errors": report.errors })))
}

#[derive(Debug, Default)]
struct Report {
    warnings: Vec<String>,
    errors: Vec<String>,
}

/// Space, inodes, atomic rename and fsync of the data (and blob) directory.
async fn check_dirs(host: &Host, report: &mut Report) {
    let mut dirs = vec![("data directory", host.data_dir.clone())];
    if let Some(blobs) = host.blob_dir.as_ref().filter(|b| **b != host.data_dir) {
        dirs.push(("blob directory", blobs.clone()));
    }
    let mut seen = Vec::new();
    for (label, dir) in dirs {
        let probe = dir.clone();
        let stats = tokio::task::spawn_blocking(move || hostinfo::disk_stats(&probe)).await;
        match stats {
            Ok(Ok(stats)) if !seen.contains(&stats.fsid) => {
                seen.push(stats.fsid);
                check_space(label, &dir, &stats, report);
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => report.errors.push(format!("{label} {}: cannot read filesystem stats: {e}", dir.display())),
            Err(e) => report.errors.push(format!("{label}: {e}")),
        }
        let probe = dir.clone();
        match tokio::task::spawn_blocking(move || rename_and_fsync(&probe)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => report.errors.push(format!("{label} {}: atomic rename/fsync failed: {e}", dir.display())),
            Err(e) => report.errors.push(format!("{label}: {e}")),
        }
    }
}

fn check_space(label: &str, dir: &Path, s: &DiskStats, report: &mut Report) {
    let dir = dir.display();
    if s.free < DISK_ERROR_BYTES {
        report.errors.push(format!("{label} {dir}: only {} MiB free", s.free >> 20));
    } else if s.free < DISK_WARN_BYTES || s.free.saturating_mul(100) < s.total.saturating_mul(DISK_WARN_PERCENT) {
        report.warnings.push(format!("{label} {dir}: low disk space ({} MiB free)", s.free >> 20));
    }
    // Filesystems without an inode limit (btrfs, some overlays) report zero.
    if s.inodes_total > 0 {
        if s.inodes_free < INODE_ERROR {
            report.errors.push(format!("{label} {dir}: only {} inodes free", s.inodes_free));
        } else if s.inodes_free.saturating_mul(100) < s.inodes_total.saturating_mul(INODE_WARN_PERCENT) {
            report.warnings.push(format!("{label} {dir}: few inodes left ({} free)", s.inodes_free));
        }
    }
}

/// Writes, fsyncs and renames a temporary file over another, then fsyncs the
/// directory: the sequence every blob and upload commit relies on.
fn rename_and_fsync(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let id = uuid::Uuid::new_v4();
    let (tmp, target) = (dir.join(format!(".compat-{id}.tmp")), dir.join(format!(".compat-{id}")));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(b"berth")?;
        file.sync_all()?;
        std::fs::write(&target, b"old")?;
        std::fs::rename(&tmp, &target)?;
        std::fs::File::open(dir)?.sync_all()?;
        if std::fs::read(&target)? != b"berth" {
            return Err(std::io::Error::other("renamed file has the wrong content"));
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_file(&target);
    result
}

/// Token expiry, upload expiry and the audit chain need a sane clock.
fn check_clock(built_at: i64, report: &mut Report) {
    let now = berth_meta::now_unix();
    if now < built_at {
        report.errors.push(format!(
            "system clock ({}) is earlier than this build's date ({})",
            berth_meta::rfc3339(now),
            berth_meta::rfc3339(built_at)
        ));
    }
}

async fn check_metadata(state: &AppState, report: &mut Report) {
    match state.registry.meta().schema_versions().await {
        Ok((applied, known)) if applied < known => {
            report.errors.push(format!("metadata database is at schema {applied}, this build needs {known}"))
        }
        Ok((applied, known)) if applied > known => report
            .warnings
            .push(format!("metadata database schema {applied} is newer than this build's {known} (mixed versions?)")),
        Ok(_) => {}
        Err(e) => report.errors.push(format!("metadata database unreachable: {e}")),
    }
}

/// A `stat` of a blob that does not exist: a HEAD on S3, a metadata read on disk.
async fn check_blob_store(state: &AppState, report: &mut Report) {
    let probe = Digest::sha256(b"berth compatibility probe");
    if let Err(e) = state.registry.blob_store().stat(&probe).await {
        report.errors.push(format!("blob store unreachable: {e}"));
    }
}
