//! Writing an upload's staged file, on a blocking thread.
//!
//! The first [`DIRECT_AFTER`] bytes of an upload go through the page cache.
//! Past that, whole aligned blocks are written with `O_DIRECT`: a large layer
//! then costs no copy into the page cache, no page-cache memory to allocate
//! (on a virtual machine whose host backs guest memory on first touch, fresh
//! page-cache pages came in at about 230 MB/s, a quarter of the push rate),
//! does not evict what pulls keep hot, and leaves the commit's fsync little to do.
//! Small blobs (configs, manifests' layers of a few MB) stay in the cache, where
//! the first pull finds them.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use std::os::unix::fs::FileExt;

use super::FailedSyncs;

/// With durable writes, flush to disk every this many bytes written through the
/// page cache, so the final fsync before the commit has little left to do.
pub(super) const SYNC_EVERY: u64 = 64 * 1024 * 1024;
/// An upload's bytes before this offset go through the page cache; later ones
/// are written with `O_DIRECT` where the filesystem allows it.
const DIRECT_AFTER: u64 = 8 << 20;
/// Alignment of `O_DIRECT` buffers, offsets and lengths: the largest logical
/// block size in common use.
const DIRECT_ALIGN: usize = 4096;
/// Bytes per `O_DIRECT` write. On this project's benchmark machine one writer
/// made 1.1 GB/s with 512 KiB writes and 1.3 GB/s with 1 MiB.
const DIRECT_CHUNK: usize = 1 << 20;
/// Uploads that write directly at once, at most, and only while no more than
/// this many uploads are writing at all; others go through the page cache. A
/// direct writer holds a [`DIRECT_CHUNK`] buffer and may queue
/// [`DIRECT_QUEUE_BYTES`] more: 32 concurrent pushes of 64 MiB all writing
/// directly peaked 10–20 MiB higher, above the node's memory target, and with
/// that many uploads the disk is the limit, not the copies.
const DIRECT_WRITERS_MAX: usize = 2;

/// Extra received bytes a direct writer may queue: while it waits for the
/// disk, the receiving side keeps hashing instead of stalling (monolithic
/// 1 GiB pushes: 577 → 722 MiB/s).
const DIRECT_QUEUE_BYTES: usize = 2 << 20;
/// Idle direct-write buffers kept for reuse (a fresh one costs page faults).
const IDLE_DIRECT_BUFFERS: usize = DIRECT_WRITERS_MAX;
static DIRECT_BUFFERS: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// Chunks queued for the writer, each holding its share of the queue budget.
pub(super) type Queue = tokio::sync::mpsc::Receiver<(Bytes, tokio::sync::OwnedSemaphorePermit)>;

/// Where and how one append writes.
pub(super) struct Append {
    pub path: std::path::PathBuf,
    pub offset: u64,
    pub durable: bool,
    pub failed_syncs: FailedSyncs,
    pub id: String,
    pub writers: Arc<Writers>,
    /// The queue's byte budget, which a lone large upload enlarges.
    pub budget: Arc<tokio::sync::Semaphore>,
}

/// Writes the queued chunks of one append at its offset. When `durable`, a
/// companion thread flushes what went through the page cache every
/// [`SYNC_EVERY`] bytes *while writing continues*, so the disk works during the
/// upload and the final fsync before the commit is short.
///
/// Returns how many bytes bypassed the page cache.
pub(super) fn write_queued(append: Append, mut queue: Queue) -> io::Result<u64> {
    let file = std::fs::OpenOptions::new().write(true).open(&append.path)?;
    let _counted = Counted::new(&append.writers.active);
    let mut writer = StagedWriter { file, pos: append.offset, direct: None, direct_bytes: 0 };
    // Started at the first flush: most appends never reach one, and a thread
    // each would cost more than the small upload itself.
    let mut syncer: Option<Syncer> = None;
    // Count from the last sync boundary of the whole upload, not of this append:
    // chunked uploads (many small appends) then flush as they go, like monolithic
    // ones, instead of leaving the whole blob to the final fsync.
    let mut unsynced = append.offset % SYNC_EVERY;
    // The permit returns the chunk's share of the queue budget once it is written.
    while let Some((chunk, _budget)) = queue.blocking_recv() {
        if writer.direct.is_none() && writer.pos + chunk.len() as u64 > DIRECT_AFTER {
            writer.try_direct(&append.path, &append.writers, &append.budget);
        }
        unsynced += writer.write(&chunk, &append.writers.direct_refused)?;
        if append.durable && unsynced >= SYNC_EVERY {
            let syncer = match &mut syncer {
                Some(syncer) => syncer,
                None => syncer.insert(Syncer::start(writer.file.try_clone()?)),
            };
            syncer.request();
            unsynced = 0;
        }
    }
    let direct_bytes = writer.finish(&append.writers.direct_refused)?;
    // Do not wait for a flush still running: the next chunk of a chunked upload
    // can arrive meanwhile, and the commit's own fsync covers everything. A failed
    // background flush is remembered and fails that commit.
    if let Some(syncer) = syncer {
        syncer.detach(append.failed_syncs, append.id);
    }
    Ok(direct_bytes)
}

/// Writes bytes at increasing offsets of one file: through the page cache,
/// or, once [`StagedWriter::try_direct`] succeeded, in aligned blocks that
/// bypass it (only the partial blocks at either end go through the cache).
struct StagedWriter {
    /// The file opened normally.
    file: File,
    /// File offset of the next byte.
    pos: u64,
    direct: Option<Direct>,
    /// Bytes written with `O_DIRECT`.
    direct_bytes: u64,
}

/// The same file opened with `O_DIRECT`, and the block-aligned bytes waiting
/// for it; they belong at the writer's `pos`.
struct Direct {
    file: File,
    pending: AlignedBuf,
    _counted: Counted,
}

/// The appends of one store at work, for deciding which write directly.
#[derive(Debug, Default)]
pub(super) struct Writers {
    /// Appends writing right now, directly or not.
    active: Arc<AtomicUsize>,
    /// Appends writing with `O_DIRECT` right now.
    direct: Arc<AtomicUsize>,
    /// Set once the filesystem refused `O_DIRECT`: no append tries it again.
    direct_refused: AtomicBool,
}

#[cfg(test)]
impl Writers {
    pub(super) fn refuse_direct_for_tests(&self) {
        self.direct_refused.store(true, Ordering::Relaxed);
    }
}

/// Counts one in a counter while it lives.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(counter: &Arc<AtomicUsize>) -> Counted {
        counter.fetch_add(1, Ordering::Relaxed);
        Counted(counter.clone())
    }

    /// Counts one more, unless the counter is at `max` already.
    fn at_most(counter: &Arc<AtomicUsize>, max: usize) -> Option<Counted> {
        counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Counted(counter.clone()))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl StagedWriter {
    /// Switches to `O_DIRECT` unless the filesystem refused it before or
    /// refuses it now, or [`DIRECT_WRITERS_MAX`] uploads write directly already.
    fn try_direct(&mut self, path: &Path, writers: &Writers, budget: &tokio::sync::Semaphore) {
        if writers.direct_refused.load(Ordering::Relaxed) {
            return;
        }
        if writers.active.load(Ordering::Relaxed) > DIRECT_WRITERS_MAX {
            return;
        }
        let Some(counted) = Counted::at_most(&writers.direct, DIRECT_WRITERS_MAX) else { return };
        match open_direct(path) {
            Ok(file) => {
                budget.add_permits(DIRECT_QUEUE_BYTES);
                self.direct = Some(Direct { file, pending: AlignedBuf::take(), _counted: counted });
            }
            Err(e) if e.raw_os_error() == Some(EINVAL) => refuse_direct(&writers.direct_refused, &e),
            // Anything else shows again on the normal write that follows.
            Err(_) => {}
        }
    }

    /// Writes `data`; returns how many of its bytes went through the page cache.
    fn write(&mut self, mut data: &[u8], refused: &AtomicBool) -> io::Result<u64> {
        let mut cached = 0;
        if self.direct.as_ref().is_some_and(|direct| direct.pending.is_empty()) {
            // Direct writes start at a block boundary: the rest of the current
            // block goes through the cache.
            let head = (DIRECT_ALIGN - (self.pos % DIRECT_ALIGN as u64) as usize) % DIRECT_ALIGN;
            let head = head.min(data.len());
            self.file.write_all_at(&data[..head], self.pos)?;
            self.pos += head as u64;
            cached += head as u64;
            data = &data[head..];
        }
        while !data.is_empty() {
            let Some(direct) = &mut self.direct else {
                self.file.write_all_at(data, self.pos)?;
                self.pos += data.len() as u64;
                return Ok(cached + data.len() as u64);
            };
            let taken = direct.pending.extend(data);
            data = &data[taken..];
            if direct.pending.is_full() {
                cached += self.flush_direct(refused)?;
            }
        }
        Ok(cached)
    }

    /// Writes the pending whole blocks with `O_DIRECT`, advancing `pos`. If the
    /// filesystem refuses (`EINVAL`: alignment it does not accept), writes them
    /// through the cache instead and stays there; returns the bytes that took
    /// that way.
    fn flush_direct(&mut self, refused: &AtomicBool) -> io::Result<u64> {
        let Some(direct) = &mut self.direct else { return Ok(0) };
        let blocks = direct.pending.len() / DIRECT_ALIGN * DIRECT_ALIGN;
        let bytes = &direct.pending.filled()[..blocks];
        let mut done = 0;
        while done < bytes.len() {
            match direct.file.write_at(&bytes[done..], self.pos + done as u64) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) if n % DIRECT_ALIGN == 0 => done += n,
                // A short write that is not whole blocks leaves the next one unaligned.
                Ok(n) => {
                    done += n;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(EINVAL) => {
                    refuse_direct(refused, &e);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        let rest = &direct.pending.filled()[done..];
        let cached = if done < blocks {
            // Finish through the cache, and write there from now on.
            self.file.write_all_at(rest, self.pos + done as u64)?;
            let cached = rest.len();
            self.direct_bytes += done as u64;
            self.pos += direct.pending.len() as u64;
            self.direct = None;
            cached as u64
        } else {
            self.pos += blocks as u64;
            self.direct_bytes += blocks as u64;
            direct.pending.keep_tail(blocks);
            0
        };
        Ok(cached)
    }

    /// Writes what is still pending: whole blocks directly, the partial last
    /// block through the cache.
    fn finish(mut self, refused: &AtomicBool) -> io::Result<u64> {
        self.flush_direct(refused)?;
        if let Some(direct) = &mut self.direct {
            self.file.write_all_at(direct.pending.filled(), self.pos)?;
        }
        Ok(self.direct_bytes)
    }
}

const EINVAL: i32 = rustix::io::Errno::INVAL.raw_os_error();

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let direct = rustix::fs::OFlags::DIRECT.bits() as i32;
    std::fs::OpenOptions::new().write(true).custom_flags(direct).open(path)
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> io::Result<File> {
    Err(io::Error::from_raw_os_error(EINVAL))
}

/// Stops using `O_DIRECT` on this store after the filesystem refused it
/// (tmpfs on older kernels, some network filesystems).
fn refuse_direct(refused: &AtomicBool, e: &io::Error) {
    if !refused.swap(true, Ordering::Relaxed) {
        tracing::info!(error = %e, "the blob filesystem refuses O_DIRECT; large uploads go through the page cache");
    }
}

/// A [`DIRECT_CHUNK`]-byte buffer whose start is [`DIRECT_ALIGN`]-aligned,
/// from a small pool; dropping it returns it. Safe code cannot ask the
/// allocator for alignment, so the buffer starts at the first aligned byte of
/// a slightly larger allocation.
struct AlignedBuf {
    mem: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn take() -> AlignedBuf {
        let pooled = DIRECT_BUFFERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let mem = pooled.unwrap_or_else(|| vec![0; DIRECT_CHUNK + DIRECT_ALIGN]);
        let start = mem.as_ptr().align_offset(DIRECT_ALIGN);
        AlignedBuf { mem, start, len: 0 }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn is_full(&self) -> bool {
        self.len == DIRECT_CHUNK
    }

    fn filled(&self) -> &[u8] {
        &self.mem[self.start..self.start + self.len]
    }

    /// Copies in as much of `data` as fits; returns how much that was.
    fn extend(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(DIRECT_CHUNK - self.len);
        let at = self.start + self.len;
        self.mem[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }

    /// Drops the first `written` bytes, moving the rest (less than a block) to the front.
    fn keep_tail(&mut self, written: usize) {
        self.mem.copy_within(self.start + written..self.start + self.len, self.start);
        self.len -= written;
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let mut idle = DIRECT_BUFFERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < IDLE_DIRECT_BUFFERS {
            idle.push(std::mem::take(&mut self.mem));
        }
    }
}

/// A thread that runs `fdatasync` on request, coalescing requests that arrive
/// while a sync is in progress.
struct Syncer {
    requests: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<io::Result<()>>,
}

impl Syncer {
    fn start(file: File) -> Self {
        let (requests, pending) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::spawn(move || {
            while pending.recv().is_ok() {
                file.sync_data()?;
            }
            Ok(())
        });
        Syncer { requests, thread }
    }

    /// Asks for a sync unless one is already queued.
    fn request(&self) {
        let _ = self.requests.try_send(());
    }

    /// Lets outstanding syncs finish in the background; a failure marks upload `id`
    /// in `failed` so its commit refuses to make the blob visible.
    fn detach(self, failed: FailedSyncs, id: String) {
        drop(self.requests);
        let thread = self.thread;
        std::thread::spawn(move || {
            if !matches!(thread.join(), Ok(Ok(()))) {
                tracing::error!(upload = id.as_str(), "background fdatasync failed");
                failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends `chunks` at `offset` of the file at `path` through [`write_queued`];
    /// returns the bytes that bypassed the page cache.
    async fn append(path: &Path, offset: u64, chunks: Vec<Bytes>, writers: &Arc<Writers>) -> u64 {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let budget = Arc::new(tokio::sync::Semaphore::new(1 << 30));
        let append = Append {
            path: path.to_owned(),
            offset,
            durable: true,
            failed_syncs: FailedSyncs::default(),
            id: "test".into(),
            writers: writers.clone(),
            budget: budget.clone(),
        };
        let writer = tokio::task::spawn_blocking(move || write_queued(append, rx));
        for chunk in chunks {
            let permit = budget.clone().acquire_many_owned(chunk.len() as u32).await.unwrap();
            tx.send((chunk, permit)).await.unwrap();
        }
        drop(tx);
        writer.await.unwrap().unwrap()
    }

    /// Pseudo-random bytes, so a misplaced block shows.
    fn pattern(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// Cuts `data` into chunks of the sizes in `sizes`, repeated.
    fn cut(data: &[u8], sizes: &[usize]) -> Vec<Bytes> {
        let (mut chunks, mut at) = (Vec::new(), 0);
        for size in sizes.iter().cycle() {
            if at == data.len() {
                break;
            }
            let end = (at + size).min(data.len());
            chunks.push(Bytes::copy_from_slice(&data[at..end]));
            at = end;
        }
        chunks
    }

    fn direct_supported(dir: &Path) -> bool {
        let probe = dir.join("probe");
        std::fs::write(&probe, b"").unwrap();
        open_direct(&probe).is_ok()
    }

    #[tokio::test]
    async fn a_large_append_bypasses_the_cache_and_keeps_every_byte_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staged");
        std::fs::write(&path, b"").unwrap();
        let data = pattern(DIRECT_AFTER as usize + 3 * DIRECT_CHUNK + 12_345);
        // Odd sizes: no chunk boundary falls on a block boundary.
        let chunks = cut(&data, &[1, 4095, 100_003, 65_537, 777_777]);
        let writers = Arc::new(Writers::default());
        let direct = append(&path, 0, chunks, &writers).await;
        assert!(std::fs::read(&path).unwrap() == data, "the file holds exactly the bytes sent");
        if direct_supported(dir.path()) {
            assert!(!writers.direct_refused.load(Ordering::Relaxed), "O_DIRECT was not refused");
            let past = data.len() as u64 - DIRECT_AFTER;
            assert!(direct + 2 * DIRECT_CHUNK as u64 > past, "{direct} of the {past} bytes past the threshold");
        } else {
            assert_eq!(direct, 0);
        }
    }

    #[tokio::test]
    async fn appends_at_unaligned_offsets_across_the_threshold_join_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staged");
        std::fs::write(&path, b"").unwrap();
        let data = pattern(DIRECT_AFTER as usize + 5 * DIRECT_CHUNK + 999);
        let writers = Arc::new(Writers::default());
        // PATCH-sized appends that start and end mid-block, one across the threshold.
        let ends = [3_000_001, DIRECT_AFTER as usize - 17, DIRECT_AFTER as usize + DIRECT_CHUNK + 5, data.len()];
        let mut start = 0;
        let mut direct = 0;
        for end in ends {
            direct += append(&path, start as u64, cut(&data[start..end], &[262_147, 9]), &writers).await;
            start = end;
        }
        assert!(std::fs::read(&path).unwrap() == data, "the file holds exactly the bytes sent");
        assert_eq!(direct > 0, direct_supported(dir.path()));
    }

    #[tokio::test]
    async fn with_many_uploads_at_once_all_go_through_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staged");
        std::fs::write(&path, b"").unwrap();
        let data = pattern(DIRECT_AFTER as usize + 2 * DIRECT_CHUNK);
        let writers = Arc::new(Writers::default());
        let _others: Vec<_> = (0..DIRECT_WRITERS_MAX).map(|_| Counted::new(&writers.active)).collect();
        let direct = append(&path, 0, cut(&data, &[65_536]), &writers).await;
        assert_eq!(direct, 0);
        assert!(std::fs::read(&path).unwrap() == data);
    }
}
