//! Streaming a committed blob out of its file.
//!
//! Each chunk is made when the response asks for the next one, the cheapest
//! way the page cache allows, all on the polling task:
//!
//! - A large chunk whose pages are all cached is mapped and sent as it is
//!   (`mapped.rs`): the socket's send is the only copy on the server.
//! - A smaller one (a config, a short range, where three system calls would
//!   cost more than the copy) is read into a pooled buffer with `RWF_NOWAIT`,
//!   which makes the kernel copy from the cache or refuse, never wait for the
//!   disk.
//! - A chunk that needs the disk goes to the blocking pool.
//!
//! Reading on the polling task means the bytes go to the socket from the core
//! that just touched them, with no thread hand-off (a 1 GiB pull on the
//! benchmark machine: medians 1.85 → 2.19 GiB/s over six alternating rounds,
//! against a blocking reader thread that stayed one chunk ahead).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;

use super::mapped::{self, Mapped};
use crate::ByteStream;

/// Bytes read per chunk into a buffer when streaming a blob out.
pub(super) const READ_CHUNK: usize = 256 * 1024;
/// Bytes mapped per chunk by a download running alone or with a few others.
/// Larger chunks take fewer system calls and socket wake-ups (1 GiB pulls on
/// the benchmark machine, server CPU per GiB over eight pulls: 0.34–0.37 s with
/// 512 KiB, 0.31–0.33 s with 1 MiB, 0.29–0.30 s with 2 MiB, 0.285–0.29 s with
/// 4 MiB).
const MAPPED_CHUNK: usize = 4 << 20;
/// What the mapped chunks of all downloads together aim to stay under, one
/// chunk each: a mapped chunk's pages count in the server's RSS until it is
/// sent, and each download holds one or two. 32 pushes and 64 pulls of 64 MiB
/// at once, three runs each: file-backed RSS (the binary's code included)
/// peaked at 60–76 MiB with 4 MiB chunks up to [`BUSY_DOWNLOADS`] downloads and
/// at 34–39 MiB with this budget; the whole RSS at 53–55 MiB, against 63–70
/// with every chunk read into a buffer.
const MAPPED_BUDGET: usize = 16 << 20;
/// Chunks shorter than this are read rather than mapped.
const MIN_MAPPED: usize = 64 * 1024;
/// The chunk (read or mapped) while more than [`BUSY_DOWNLOADS`] downloads run
/// at once. Each holds a chunk or two (being sent, and the next one read); with that many
/// sharing the cores, a smaller chunk costs no throughput and halves the memory
/// (64 pulls of 64 MiB: peak RSS 74–98 → 58–66 MiB), while one download
/// alone keeps the larger chunk (3.2 against 3.1 GiB/s with 128 KiB).
const BUSY_READ_CHUNK: usize = 128 * 1024;
/// Downloads at once above which they read [`BUSY_READ_CHUNK`]s.
const BUSY_DOWNLOADS: usize = 16;
/// Downloads streaming right now.
static DOWNLOADS: AtomicUsize = AtomicUsize::new(0);

/// Streams `len` bytes of `file` (`file_len` bytes long when opened) from
/// `start`, one mapping or pooled buffer per chunk; it goes to the response
/// without another copy and is unmapped or back in its pool once sent.
pub(super) fn chunks(file: File, file_len: u64, start: u64, len: u64) -> ByteStream {
    chunks_with(file, file_len, start, len, Paths { map: true, cache_reads: true })
}

/// Which ways of reading from the page cache on the task a download tries; a
/// kernel or filesystem that refuses one turns it off (and tests pick them).
#[derive(Debug, Clone, Copy)]
struct Paths {
    /// Map large cached chunks.
    map: bool,
    /// Read cached chunks with `RWF_NOWAIT`.
    cache_reads: bool,
}

fn chunks_with(file: File, file_len: u64, start: u64, len: u64, paths: Paths) -> ByteStream {
    // Nothing is mapped past `file_len` (a file shorter than promised ends in
    // the blocking read's error).
    let download =
        Download { file: Arc::new(file), file_len, pos: start, left: len, paths, _counted: Counted::start() };
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
    /// The file's length when the download started.
    file_len: u64,
    /// Offset of the next chunk.
    pos: u64,
    /// Bytes still to send.
    left: u64,
    paths: Paths,
    _counted: Counted,
}

impl Download {
    async fn next_chunk(&mut self) -> io::Result<Bytes> {
        let downloads = DOWNLOADS.load(Ordering::Relaxed);
        let busy = downloads > BUSY_DOWNLOADS;
        let mapped_max =
            if busy { BUSY_READ_CHUNK } else { (MAPPED_BUDGET / downloads.max(1)).clamp(READ_CHUNK, MAPPED_CHUNK) };
        if let Some(chunk) = self.mapped_chunk(mapped_max) {
            return Ok(chunk);
        }
        let mut buf = ReadBuffer::take(if busy { BUSY_READ_CHUNK } else { READ_CHUNK });
        let want = usize::try_from(self.left).unwrap_or(usize::MAX).min(buf.capacity());
        let cached = if self.paths.cache_reads {
            read_cached(&self.file, &mut buf.space()[..want], self.pos)
        } else {
            Cached::Missed
        };
        if let Cached::Unsupported = cached {
            self.paths.cache_reads = false;
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

    /// The next chunk (at most `max` bytes), mapped, if the page cache holds
    /// enough of it from its start to be worth mapping.
    fn mapped_chunk(&mut self, max: usize) -> Option<Bytes> {
        let in_file = self.file_len.saturating_sub(self.pos);
        let want = usize::try_from(self.left.min(in_file)).unwrap_or(usize::MAX).min(max);
        if !self.paths.map || want < MIN_MAPPED {
            return None;
        }
        match mapped::map_cached(&self.file, self.pos, want, MIN_MAPPED) {
            Mapped::Chunk(chunk) => {
                let len = chunk.as_ref().len();
                self.pos += len as u64;
                self.left -= len as u64;
                Some(Bytes::from_owner(chunk))
            }
            Mapped::NotCached => None,
            Mapped::Unsupported => {
                self.paths.map = false;
                None
            }
        }
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

    /// Mapped and read chunks, read chunks only, blocking reads only.
    const ALL_PATHS: [Paths; 3] = [
        Paths { map: true, cache_reads: true },
        Paths { map: false, cache_reads: true },
        Paths { map: false, cache_reads: false },
    ];

    #[tokio::test]
    async fn mapped_cached_and_blocking_reads_stream_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let len = MAPPED_CHUNK + 3 * READ_CHUNK + 1234;
        let (path, bytes) = blob_file(dir.path(), len);
        let ranges = [
            (0, len),
            (5, len - 5),
            (READ_CHUNK as u64 - 1, 2),
            (4095, MIN_MAPPED + 2), // mapped from the page before, across page ends
            (len as u64 - 1, 1),
        ];
        for paths in ALL_PATHS {
            for (start, n) in ranges {
                let file = File::open(&path).unwrap();
                let (got, _) = collect(chunks_with(file, len as u64, start, n as u64, paths)).await.unwrap();
                assert_eq!(got, &bytes[start as usize..start as usize + n], "{paths:?} at {start}+{n}");
            }
        }
        let (_, mapped) = collect(chunks(File::open(&path).unwrap(), len as u64, 0, len as u64)).await.unwrap();
        assert_eq!(mapped, 2, "a file just written is cached: a chunk per MAPPED_CHUNK, the last one short");
        let read = Paths { map: false, cache_reads: true };
        let (_, read) =
            collect(chunks_with(File::open(&path).unwrap(), len as u64, 0, len as u64, read)).await.unwrap();
        assert_eq!(read, len.div_ceil(READ_CHUNK), "a chunk per READ_CHUNK, the last one short");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_cached_chunk_or_its_cached_head_is_mapped_and_an_evicted_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = blob_file(dir.path(), 3 * MIN_MAPPED);
        let file = File::open(&path).unwrap();
        match mapped::map_cached(&file, 4097, MIN_MAPPED, MIN_MAPPED) {
            Mapped::Chunk(chunk) => assert!(chunk.as_ref() == &bytes[4097..4097 + MIN_MAPPED], "the chunk's bytes"),
            Mapped::NotCached => panic!("a file just written is in the page cache"),
            Mapped::Unsupported => panic!("mmap refused on {}", dir.path().display()),
        }
        // tmpfs keeps every page in memory; elsewhere, clean pages that nothing
        // maps leave the cache on POSIX_FADV_DONTNEED.
        if rustix::fs::statfs(dir.path()).unwrap().f_type != 0x0102_1994 {
            file.sync_all().unwrap();
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
            assert!(matches!(mapped::map_cached(&file, 0, MIN_MAPPED, 1), Mapped::NotCached));
            // Cache it all again, then evict the last third: a chunk asking
            // for all of it maps the cached head, as long as that is at least `min`.
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut vec![0; bytes.len()], 0).unwrap();
            let tail = std::num::NonZeroU64::new(MIN_MAPPED as u64);
            rustix::fs::fadvise(&file, 2 * MIN_MAPPED as u64, tail, rustix::fs::Advice::DontNeed).unwrap();
            match mapped::map_cached(&file, 10, 3 * MIN_MAPPED - 10, MIN_MAPPED) {
                Mapped::Chunk(chunk) => {
                    let got = chunk.as_ref();
                    assert_eq!(got.len(), 2 * MIN_MAPPED - 10, "the cached head, up to the evicted tail");
                    assert!(got == &bytes[10..2 * MIN_MAPPED], "the head's bytes");
                }
                _ => panic!("the cached head is mapped"),
            }
            assert!(matches!(mapped::map_cached(&file, 10, 3 * MIN_MAPPED - 10, 2 * MIN_MAPPED), Mapped::NotCached));
        }
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
        for paths in ALL_PATHS {
            let file = File::open(&path).unwrap();
            let chunks: Vec<io::Result<Bytes>> =
                chunks_with(file, bytes.len() as u64, 0, bytes.len() as u64 + 100, paths).collect().await;
            let (last, sent) = chunks.split_last().unwrap();
            let sent: usize = sent.iter().map(|c| c.as_ref().unwrap().len()).sum();
            assert_eq!(sent, bytes.len(), "{paths:?}: every byte the file has, then");
            assert_eq!(last.as_ref().unwrap_err().kind(), io::ErrorKind::UnexpectedEof, "{paths:?}");
        }
    }
}
