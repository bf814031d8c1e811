//! Streaming a committed blob out of its file.
//!
//! Each chunk is read when the response asks for the next one. A chunk the
//! page cache holds whole or in part (a blob pulled or pushed recently: the
//! common case) is copied right on the polling task with `RWF_NOWAIT`, which
//! makes the kernel copy from the cache or refuse, never wait for the disk.
//! The buffer then goes to the socket from the core that just filled it, with
//! no thread hand-off (a 1 GiB pull on the benchmark machine: medians 1.85 →
//! 2.19 GiB/s over six alternating rounds, against a blocking reader thread
//! that stayed one chunk ahead). Only chunks that need the disk go to the
//! blocking pool.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;

use crate::ByteStream;

/// Bytes read from disk per chunk when streaming a blob out.
pub(super) const READ_CHUNK: usize = 256 * 1024;
/// The chunk while more than [`BUSY_DOWNLOADS`] downloads run at once. Each
/// holds a chunk or two (being sent, and the next one read); with that many
/// sharing the cores, a smaller chunk costs no throughput and halves the memory
/// (64 pulls of 64 MiB: peak RSS 74–98 → 58–66 MiB), while one download
/// alone keeps the larger chunk (3.2 against 3.1 GiB/s with 128 KiB).
const BUSY_READ_CHUNK: usize = 128 * 1024;
/// Downloads at once above which they read [`BUSY_READ_CHUNK`]s.
const BUSY_DOWNLOADS: usize = 16;
/// Downloads streaming right now.
static DOWNLOADS: AtomicUsize = AtomicUsize::new(0);

/// Streams `len` bytes of `file` from `start`, one pooled buffer per chunk; a
/// buffer goes to the response without another copy and back to its pool once
/// sent.
pub(super) fn chunks(file: File, start: u64, len: u64) -> ByteStream {
    chunks_with(file, start, len, CacheReads::Try)
}

/// Whether a download tries reading from the page cache on its task.
#[derive(Debug, Clone, Copy, PartialEq)]
enum CacheReads {
    Try,
    /// The kernel or filesystem refused `RWF_NOWAIT`, or a test wants the
    /// blocking path: every chunk goes to the blocking pool.
    Off,
}

fn chunks_with(file: File, start: u64, len: u64, cache_reads: CacheReads) -> ByteStream {
    let download = Download { file: Arc::new(file), pos: start, left: len, cache_reads, _counted: Counted::start() };
    futures_util::stream::unfold(download, |mut download| async move {
        if download.left == 0 {
            return None;
        }
        let chunk = download.next_chunk().await;
        if chunk.is_err() {
            download.left = 0; // the error ends the stream
        }
        Some((chunk, download))
    })
    .boxed()
}

/// One blob being streamed out.
struct Download {
    file: Arc<File>,
    /// Offset of the next chunk.
    pos: u64,
    /// Bytes still to send.
    left: u64,
    cache_reads: CacheReads,
    _counted: Counted,
}

impl Download {
    async fn next_chunk(&mut self) -> io::Result<Bytes> {
        let busy = DOWNLOADS.load(Ordering::Relaxed) > BUSY_DOWNLOADS;
        let mut buf = ReadBuffer::take(if busy { BUSY_READ_CHUNK } else { READ_CHUNK });
        let want = usize::try_from(self.left).unwrap_or(usize::MAX).min(buf.capacity());
        let cached = match self.cache_reads {
            CacheReads::Try => read_cached(&self.file, &mut buf.space()[..want], self.pos),
            CacheReads::Off => Cached::Missed,
        };
        if let Cached::Unsupported = cached {
            self.cache_reads = CacheReads::Off;
        }
        let buf = match cached {
            Cached::Read(n) => {
                buf.filled = n;
                buf
            }
            Cached::Missed | Cached::Unsupported => {
                let (file, pos) = (self.file.clone(), self.pos);
                tokio::task::spawn_blocking(move || read_blocking(&file, buf, want, pos))
                    .await
                    .map_err(io::Error::other)??
            }
        };
        self.pos += buf.filled as u64;
        self.left -= buf.filled as u64;
        Ok(Bytes::from_owner(buf))
    }
}

/// What a read from the page cache alone gave.
enum Cached {
    /// This many bytes (at least one), maybe fewer than asked.
    Read(usize),
    /// Nothing: the first page is not cached, or the file ends here (the
    /// blocking read tells which).
    Missed,
    /// Nothing, and this kernel or filesystem does not read without waiting.
    Unsupported,
}

#[cfg(target_os = "linux")]
fn read_cached(file: &File, into: &mut [u8], at: u64) -> Cached {
    use rustix::io::{Errno, ReadWriteFlags, preadv2};
    match preadv2(file, &mut [io::IoSliceMut::new(into)], at, ReadWriteFlags::NOWAIT) {
        Ok(0) => Cached::Missed,
        Ok(n) => Cached::Read(n),
        Err(Errno::AGAIN | Errno::INTR) => Cached::Missed,
        // EOPNOTSUPP / EINVAL for a flag it does not know; anything else (EIO)
        // the blocking read meets again and reports.
        Err(Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS) => Cached::Unsupported,
        Err(_) => Cached::Missed,
    }
}

#[cfg(not(target_os = "linux"))]
fn read_cached(_file: &File, _into: &mut [u8], _at: u64) -> Cached {
    Cached::Unsupported
}

/// Reads up to `want` bytes at `at`, waiting for the disk if it must.
fn read_blocking(file: &File, mut buf: ReadBuffer, want: usize, at: u64) -> io::Result<ReadBuffer> {
    let n = loop {
        match file.read_at(&mut buf.space()[..want], at) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "blob shorter than expected"));
    }
    buf.filled = n;
    Ok(buf)
}

/// Counts a download in [`DOWNLOADS`] while it lives.
struct Counted;

impl Counted {
    fn start() -> Counted {
        DOWNLOADS.fetch_add(1, Ordering::Relaxed);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        DOWNLOADS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Idle read buffers kept for reuse, at most [`IDLE_READ_BUFFERS`] of each
/// size: reading into memory that was used before costs no page faults, where
/// a fresh buffer costs the kernel zeroing every page of it (a tenth of a
/// pull's CPU time).
static READ_BUFFERS: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
/// The same for [`BUSY_READ_CHUNK`]s.
static BUSY_READ_BUFFERS: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
/// Enough for the downloads of a busy node at once, small next to their sockets' buffers.
const IDLE_READ_BUFFERS: usize = 32;

/// A read buffer of [`READ_CHUNK`] or [`BUSY_READ_CHUNK`] bytes from its pool,
/// its first `filled` bytes read from the blob; dropping it returns it. The
/// memory stays initialized from one use to the next, so a read needs no
/// clearing first.
struct ReadBuffer {
    memory: Vec<u8>,
    filled: usize,
}

impl ReadBuffer {
    fn pool(capacity: usize) -> &'static std::sync::Mutex<Vec<Vec<u8>>> {
        if capacity == BUSY_READ_CHUNK { &BUSY_READ_BUFFERS } else { &READ_BUFFERS }
    }

    fn take(capacity: usize) -> ReadBuffer {
        let pooled = Self::pool(capacity).lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        ReadBuffer { memory: pooled.unwrap_or_else(|| vec![0; capacity]), filled: 0 }
    }

    fn capacity(&self) -> usize {
        self.memory.len()
    }

    /// The whole buffer, to read into.
    fn space(&mut self) -> &mut [u8] {
        &mut self.memory
    }
}

impl AsRef<[u8]> for ReadBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.memory[..self.filled]
    }
}

impl Drop for ReadBuffer {
    fn drop(&mut self) {
        let memory = std::mem::take(&mut self.memory);
        let mut idle = Self::pool(memory.len()).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < IDLE_READ_BUFFERS {
            idle.push(memory);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(stream: ByteStream) -> io::Result<(Vec<u8>, usize)> {
        let chunks: Vec<io::Result<Bytes>> = stream.collect().await;
        let mut out = Vec::new();
        let count = chunks.len();
        for chunk in chunks {
            out.extend_from_slice(&chunk?);
        }
        Ok((out, count))
    }

    fn blob_file(dir: &std::path::Path, len: usize) -> (std::path::PathBuf, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let path = dir.join("blob");
        std::fs::write(&path, &bytes).unwrap();
        (path, bytes)
    }

    #[tokio::test]
    async fn cached_and_blocking_reads_stream_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let len = 3 * READ_CHUNK + 1234;
        let (path, bytes) = blob_file(dir.path(), len);
        for cache_reads in [CacheReads::Try, CacheReads::Off] {
            for (start, n) in [(0, len), (5, len - 5), (READ_CHUNK as u64 - 1, 2), (len as u64 - 1, 1)] {
                let file = File::open(&path).unwrap();
                let (got, _) = collect(chunks_with(file, start, n as u64, cache_reads)).await.unwrap();
                assert_eq!(got, &bytes[start as usize..start as usize + n], "{cache_reads:?} at {start}+{n}");
            }
        }
        let (_, chunk_count) = collect(chunks(File::open(&path).unwrap(), 0, len as u64)).await.unwrap();
        assert_eq!(chunk_count, 4, "a chunk per READ_CHUNK, the last one short");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_cached_chunk_is_read_without_the_blocking_pool() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = blob_file(dir.path(), READ_CHUNK);
        let file = File::open(&path).unwrap();
        let mut into = vec![0; READ_CHUNK];
        match read_cached(&file, &mut into, 0) {
            Cached::Read(n) => assert_eq!(&into[..n], &bytes[..n]),
            // tmpfs does not read with RWF_NOWAIT; ext4, XFS and btrfs do.
            Cached::Unsupported if rustix::fs::statfs(dir.path()).unwrap().f_type == 0x0102_1994 => {}
            Cached::Unsupported => panic!("RWF_NOWAIT refused on a filesystem that has it"),
            Cached::Missed => panic!("a file just written is in the page cache"),
        }
        assert!(matches!(read_cached(&file, &mut into, READ_CHUNK as u64), Cached::Missed | Cached::Unsupported));
    }

    #[tokio::test]
    async fn a_file_shorter_than_promised_ends_the_stream_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = blob_file(dir.path(), READ_CHUNK + 10);
        for cache_reads in [CacheReads::Try, CacheReads::Off] {
            let file = File::open(&path).unwrap();
            let chunks: Vec<io::Result<Bytes>> =
                chunks_with(file, 0, bytes.len() as u64 + 100, cache_reads).collect().await;
            let (last, sent) = chunks.split_last().unwrap();
            let sent: usize = sent.iter().map(|c| c.as_ref().unwrap().len()).sum();
            assert_eq!(sent, bytes.len(), "{cache_reads:?}: every byte the file has, then");
            assert_eq!(last.as_ref().unwrap_err().kind(), io::ErrorKind::UnexpectedEof, "{cache_reads:?}");
        }
    }
}
