//! One upstream fetch per digest, read by every client that wants it.
//!
//! The fetch runs in its own task (a client hanging up does not stop it). It
//! writes what arrives to a spool file, which each reader tails at its own
//! pace, so no blob is held in memory however slow the readers are, and feeds
//! the same bytes to the blob store. The fetch hashes what arrives; readers
//! never get the final byte before the digest is verified: on a mismatch their
//! stream fails instead, so a client can never mistake corrupt content for a
//! complete blob, and the store (which checks the digest again) drops the
//! staged copy, so nothing corrupt becomes visible. Readers finish once the
//! bytes are verified, without waiting for the store's fsync.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream;
use tokio::sync::watch;

use crate::ByteStreamOut;

/// How far a fetch has got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FlightState {
    /// Looking for an upstream that has the blob.
    Starting,
    /// Bytes are arriving; `size` is the upstream's Content-Length.
    Streaming { size: Option<u64>, written: u64 },
    /// Every byte arrived and matches the digest; the store is still making it
    /// durable. Readers may finish: what they got is verified.
    Verified { size: u64 },
    /// Verified and stored.
    Done { size: u64 },
    /// The fetch failed; readers fail too.
    Failed { not_found: bool, message: String },
}

/// A fetch in progress.
#[derive(Debug)]
pub(crate) struct Flight {
    pub spool: PathBuf,
    pub state: watch::Sender<FlightState>,
}

impl Drop for Flight {
    // The last reader (or the fetch) to let go removes the spool file.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.spool);
    }
}

impl Flight {
    pub fn new(spool: PathBuf) -> Arc<Self> {
        Arc::new(Flight { spool, state: watch::Sender::new(FlightState::Starting) })
    }

    /// Waits until the upstream answered: `Ok(size)` once bytes flow (or are done).
    pub async fn started(&self) -> Result<Option<u64>, FlightState> {
        let mut rx = self.state.subscribe();
        loop {
            let state = rx.borrow_and_update().clone();
            match state {
                FlightState::Starting => {}
                FlightState::Streaming { size, .. } => return Ok(size),
                FlightState::Verified { size } | FlightState::Done { size } => return Ok(Some(size)),
                failed @ FlightState::Failed { .. } => return Err(failed),
            }
            if rx.changed().await.is_err() {
                return Err(FlightState::Failed { not_found: false, message: "fetch abandoned".into() });
            }
        }
    }

    /// Whether every byte arrived and was verified (the store may still be writing).
    pub fn is_verified(&self) -> bool {
        matches!(*self.state.borrow(), FlightState::Verified { .. })
    }

    /// Waits until the fetch is stored or failed.
    pub async fn settled(&self) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|s| matches!(s, FlightState::Done { .. } | FlightState::Failed { .. })).await;
    }

    /// A stream of the whole blob that follows the spool file as it grows.
    pub fn reader(self: &Arc<Self>) -> ByteStreamOut {
        let reader = Reader { flight: self.clone(), rx: self.state.subscribe(), file: None, pos: 0 };
        Box::pin(stream::unfold(reader, |mut r| async move {
            match r.next_chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), r)),
                Ok(None) => None,
                Err(e) => {
                    // End after reporting the error once.
                    r.pos = u64::MAX;
                    Some((Err(e), r))
                }
            }
        }))
    }
}

const READ_CHUNK: u64 = 1024 * 1024;

struct Reader {
    flight: Arc<Flight>,
    rx: watch::Receiver<FlightState>,
    file: Option<Arc<std::fs::File>>,
    pos: u64,
}

impl Reader {
    async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        if self.pos == u64::MAX {
            return Ok(None);
        }
        loop {
            let state = self.rx.borrow_and_update().clone();
            // Hold the final byte back until the digest is verified.
            let (readable, done) = match &state {
                FlightState::Starting => (0, false),
                FlightState::Streaming { written, .. } => (written.saturating_sub(1), false),
                FlightState::Verified { size } | FlightState::Done { size } => (*size, true),
                FlightState::Failed { message, .. } => {
                    // Failed before this reader sent anything (a loaded machine can finish the
                    // whole fetch first): send what arrived, final byte still held back, so the
                    // client gets the response head and a broken body, not a dropped connection.
                    if self.pos == 0 {
                        let arrived = std::fs::metadata(&self.flight.spool).map_or(0, |m| m.len());
                        if arrived > 1 {
                            let chunk = self.read((arrived - 1).min(READ_CHUNK)).await?;
                            self.pos += chunk.len() as u64;
                            return Ok(Some(chunk));
                        }
                    }
                    return Err(io::Error::other(format!("upstream fetch failed: {message}")));
                }
            };
            if self.pos < readable {
                let len = (readable - self.pos).min(READ_CHUNK);
                let chunk = self.read(len).await?;
                self.pos += chunk.len() as u64;
                return Ok(Some(chunk));
            }
            if done {
                return Ok(None);
            }
            let finished = |s: &FlightState| matches!(s, FlightState::Verified { .. } | FlightState::Done { .. });
            if self.rx.changed().await.is_err() && !finished(&self.rx.borrow()) {
                return Err(io::Error::other("upstream fetch abandoned"));
            }
        }
    }

    async fn read(&mut self, len: u64) -> io::Result<Bytes> {
        let file = match &self.file {
            Some(f) => f.clone(),
            None => {
                let f = Arc::new(std::fs::File::open(&self.flight.spool)?);
                self.file = Some(f.clone());
                f
            }
        };
        let pos = self.pos;
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; len as usize];
            let n = file.read_at(&mut buf, pos)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "spool file shorter than announced"));
            }
            buf.truncate(n);
            Ok(Bytes::from(buf))
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// Appends to the spool file from a blocking thread.
pub(crate) async fn spool_write(file: &Arc<std::fs::File>, at: u64, data: Bytes) -> io::Result<()> {
    let file = file.clone();
    tokio::task::spawn_blocking(move || file.write_all_at(&data, at)).await.map_err(io::Error::other)?
}

/// Empties (or creates) the spool directory: leftovers of a crash are garbage.
pub(crate) fn reset_spool(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}
