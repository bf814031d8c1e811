//! Facts about the machine berth runs on, for `/api/system/info`.
//!
//! Read without `unsafe` and without extra services: `/etc/os-release`,
//! `uname(2)` and `statvfs(3)` through `rustix` (already in the dependency
//! tree; features `fs` and `system` only), `/proc/meminfo`, and the container
//! runtimes' own CLIs (`docker`, `containerd`) run with a short timeout when
//! they are installed. Everything here blocks: call it from `spawn_blocking`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How long a runtime's version command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Seed 000's system info object (strings empty when unknown; sizes in bytes).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SystemInfo {
    /// Distribution name (`NAME` of os-release), else the kernel's name.
    pub os: String,
    /// Distribution version (`VERSION_ID`).
    pub os_version: String,
    /// The kernel release (added by berth).
    pub kernel: String,
    pub arch: String,
    pub hostname: String,
    pub docker_version: String,
    pub containerd_version: String,
    pub cpu_cores: u64,
    pub memory_total: u64,
    /// Size and free space (for unprivileged users) of the data directory's filesystem.
    pub disk_total: u64,
    pub disk_free: u64,
}

/// Space and inodes of a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskStats {
    pub total: u64,
    pub free: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
    /// Identifies the filesystem (two paths on one filesystem share it).
    pub fsid: u64,
}

/// `statvfs` of `path`.
pub fn disk_stats(path: &Path) -> std::io::Result<DiskStats> {
    let s = rustix::fs::statvfs(path)?;
    Ok(DiskStats {
        total: s.f_blocks.saturating_mul(s.f_frsize),
        free: s.f_bavail.saturating_mul(s.f_frsize),
        inodes_total: s.f_files,
        inodes_free: s.f_favail,
        fsid: s.f_fsid,
    })
}

/// Collects everything (blocking; up to two runtime commands with timeouts).
pub fn collect(data_dir: &Path) -> SystemInfo {
    let uname = rustix::system::uname();
    let text = |s: &std::ffi::CStr| s.to_string_lossy().into_owned();
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let (name, version) = os_release(&release);
    let disk = disk_stats(data_dir).ok();
    SystemInfo {
        os: name.unwrap_or_else(|| text(uname.sysname())),
        os_version: version.unwrap_or_default(),
        kernel: text(uname.release()),
        arch: text(uname.machine()),
        hostname: text(uname.nodename()),
        docker_version: docker_version(),
        containerd_version: containerd_version(),
        cpu_cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
        memory_total: memory_total(),
        disk_total: disk.map_or(0, |d| d.total),
        disk_free: disk.map_or(0, |d| d.free),
    }
}

/// `NAME` and `VERSION_ID` of an os-release file.
pub fn os_release(text: &str) -> (Option<String>, Option<String>) {
    let value = |key: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().trim_matches('"').trim_matches('\'').to_owned())
            .filter(|v| !v.is_empty())
    };
    (value("NAME"), value("VERSION_ID"))
}

/// `MemTotal` of `/proc/meminfo` in bytes, else `sysinfo(2)`'s total RAM.
fn memory_total() -> u64 {
    let from_proc = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| meminfo_total(&t));
    from_proc.unwrap_or_else(|| {
        let info = rustix::system::sysinfo();
        u64::from(info.mem_unit).saturating_mul(info.totalram)
    })
}

pub fn meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The Docker engine's version, else the client's, else `""`.
fn docker_version() -> String {
    if let Some(v) = run(&["docker", "version", "--format", "{{.Server.Version}}"]).filter(|v| !v.is_empty()) {
        return v;
    }
    run(&["docker", "version", "--format", "{{.Client.Version}}"]).unwrap_or_default()
}

/// `containerd --version` prints `containerd <module> v1.7.2 <commit>`.
fn containerd_version() -> String {
    run(&["containerd", "--version"]).map(|out| parse_containerd(&out)).unwrap_or_default()
}

pub fn parse_containerd(out: &str) -> String {
    out.split_whitespace()
        .find(|w| w.starts_with('v') && w[1..].starts_with(|c: char| c.is_ascii_digit()))
        .map(|w| w.trim_start_matches('v').to_owned())
        .unwrap_or_default()
}

/// Runs a command with [`COMMAND_TIMEOUT`]; its trimmed stdout when it succeeds.
fn run(argv: &[&str]) -> Option<String> {
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(_)) | Err(_) => return None,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut out).ok()?;
    Some(out.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_os_release_meminfo_and_containerd() {
        let text = "PRETTY_NAME=\"Ubuntu 22.04.3 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\n";
        assert_eq!(os_release(text), (Some("Ubuntu".into()), Some("22.04".into())));
        assert_eq!(os_release(""), (None, None));
        assert_eq!(meminfo_total("MemTotal:       16318480 kB\nMemFree: 1 kB\n"), Some(16318480 * 1024));
        assert_eq!(parse_containerd("containerd github.com/containerd/containerd v1.7.2 0cae528"), "1.7.2");
        assert_eq!(parse_containerd("garbage"), "");
    }

    #[test]
    fn collects_this_machine() {
        let dir = tempfile::tempdir().unwrap();
        let info = collect(dir.path());
        assert!(!info.arch.is_empty() && !info.hostname.is_empty() && !info.os.is_empty());
        assert!(info.cpu_cores >= 1 && info.memory_total > 0);
        assert!(info.disk_total >= info.disk_free && info.disk_total > 0);
    }
}
