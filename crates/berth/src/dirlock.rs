//! One `berth serve` per local store: an exclusive lock on `berth.lock` in the
//! directory of the SQLite database and in the root of the fs blob store, held
//! for as long as the server runs.
//!
//! Both keep state a server takes to be its own: the upload sessions it holds
//! in memory (on SQLite a chunk does not re-read the session's record) and the
//! staged bytes its writer threads still write behind their answers. A second
//! server on the same directory would see those half written, and opening the
//! fs store would already recycle the first server's staging files. The
//! command-line tools (`berth gc`, `berth user`, ...) run alongside a server
//! and take no lock. The kernel drops the lock when the process dies, however
//! it dies, so a crashed server never leaves a stale lock behind.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The lock file's name in each locked directory; it holds the server's PID.
const LOCK_FILE: &str = "berth.lock";

/// The locks this server holds; dropping them (or exiting) releases them.
#[derive(Debug)]
pub struct StoreLocks {
    _files: Vec<File>,
}

/// Locks the directories of the local stores among `database_url` and
/// `storage_url` (`sqlite://` and `fs://`; PostgreSQL and S3 need none).
pub fn lock_local_stores(database_url: &str, storage_url: &str) -> anyhow::Result<StoreLocks> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(path) = database_url.strip_prefix("sqlite://") {
        let parent = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty());
        dirs.push(parent.unwrap_or(Path::new(".")).to_path_buf());
    }
    if let Some(root) = storage_url.strip_prefix("fs://") {
        dirs.push(PathBuf::from(root));
    }
    let mut files = Vec::new();
    let mut locked = Vec::new();
    for dir in dirs {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let canonical = dir.canonicalize().with_context(|| format!("cannot resolve {}", dir.display()))?;
        if !locked.contains(&canonical) {
            files.extend(lock_dir(&canonical)?);
            locked.push(canonical);
        }
    }
    Ok(StoreLocks { _files: files })
}

/// Takes `dir`'s lock and writes this process's PID into it. A filesystem
/// without locks (some network mounts) gets a warning, not a refusal.
fn lock_dir(dir: &Path) -> anyhow::Result<Option<File>> {
    let path = dir.join(LOCK_FILE);
    // Not truncated on open: the holder's PID stays readable for the error below.
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            file.read_to_string(&mut holder).ok();
            let holder = holder.trim();
            let pid = if holder.is_empty() { "pid unknown".to_owned() } else { format!("pid {holder}") };
            bail!(
                "{} is in use by another `berth serve` ({pid}); one server serves a data directory \
                 (several nodes share PostgreSQL and a bucket instead)",
                dir.display()
            );
        }
        Err(TryLockError::Error(e)) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot lock the directory; make sure no other server uses it");
            return Ok(None);
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_locked_once_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        let db = format!("sqlite://{root}/berth.db");
        let fs = format!("fs://{root}");
        // The database and the blobs in one directory: one lock, not a clash with itself.
        let held = lock_local_stores(&db, &fs).unwrap();
        let recorded = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(recorded.trim(), std::process::id().to_string());
        let refused = lock_local_stores(&db, "s3://bucket").unwrap_err().to_string();
        assert!(refused.contains("in use by another `berth serve`"), "{refused}");
        assert!(refused.contains(&format!("pid {}", std::process::id())), "{refused}");
        let refused = lock_local_stores("postgres://x", &format!("fs://{root}/.")).unwrap_err().to_string();
        assert!(refused.contains("in use"), "the same directory by another spelling: {refused}");
        drop(held);
        let again = lock_local_stores(&db, &fs).unwrap();
        assert_eq!(again._files.len(), 1);
        assert_eq!(lock_local_stores("postgres://x", "s3://bucket").unwrap()._files.len(), 0);
    }
}
