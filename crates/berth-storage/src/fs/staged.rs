//! Writing an upload's staged file, on a blocking thread (which also hashes
//! while few uploads run, see [`write_queued`]).
//!
//! The first [`DIRECT_AFTER`] bytes of an upload go through the page cache.
//! Past that, whole aligned blocks are written with `O_DIRECT`: a large layer
//! then costs no copy into the page cache, no page-cache memory to allocate
//! (on a virtual machine whose host backs guest memory on first touch, fresh
//! page-cache pages came in at about 230 MB/s, a quarter of the push rate),
//! does not evict what pulls keep hot, and leaves the commit's fsync little to do.
//! Small blobs (configs, layers of a few MB) stay in the cache, where the first
//! pull finds them.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use berth_core::Hasher;
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
/// direct writer holds up to three [`DIRECT_CHUNK`] buffers and may queue
/// [`DIRECT_QUEUE_BYTES`] more: 32 concurrent pushes of 64 MiB all writing
/// directly peaked 10–20 MiB higher, above the node's memory target, and with
/// that many uploads the disk is the limit, not the copies.
const DIRECT_WRITERS_MAX: usize = 2;

/// Extra received bytes a direct writer may queue, so that receiving does not
/// stall whenever hashing or the disk falls behind for a moment (monolithic
/// 1 GiB pushes: 577 → 722 MiB/s when the request task hashed; 617–646 without
/// it and 841–890 with it once the writer thread hashed).
const DIRECT_QUEUE_BYTES: usize = 2 << 20;
/// Idle direct-write buffers kept for reuse (a fresh one costs page faults);
/// a direct writer uses three (filled, queued, being written).
const IDLE_DIRECT_BUFFERS: usize = 4;
static DIRECT_BUFFERS: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// Received bytes queued for the writer thread, at most: what an upload holds
/// in memory while the disk is slower than the network. A count of chunks alone
/// let 32 durable uploads hold 8 chunks of up to 400 KiB each (over 100 MiB)
/// while fsyncs ran; a chunk larger than this budget takes all of it. A large
/// upload with few others at once may queue more ([`DIRECT_QUEUE_BYTES`]).
const WRITE_QUEUE_BYTES: u32 = 512 * 1024;
/// The budget of an upload that starts while more than [`BUSY_WRITERS`] others
/// are writing: the disk is shared then, and the hashing too, so a deeper queue
/// adds memory and no speed (32 concurrent pushes of 64 MiB).
const BUSY_WRITE_QUEUE_BYTES: u32 = 256 * 1024;
/// Appends writing at once above which new ones get [`BUSY_WRITE_QUEUE_BYTES`].
const BUSY_WRITERS: usize = 8;
/// Appends writing at once up to which each hashes on its writer thread, so
/// receiving and hashing overlap (a lone 1 GiB push: 630–810 → 810–970 MiB/s
/// with fsync off). With more, the request tasks hash: at most one per worker
/// thread runs, and the others' bytes wait in their sockets rather than in
/// memory (with 32 concurrent pushes, writer threads hashing all at once
/// peaked 10–30 MiB higher).
const HASH_IN_WRITER_MAX: usize = 2;

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
    /// Counts this append in `writers` (see [`Writers::enter`]).
    pub entered: Counted,
    /// The queue's byte budget, which a lone large upload enlarges.
    pub budget: Arc<tokio::sync::Semaphore>,
    /// The writes the upload's previous append left running: this append's
    /// writes queue on the same thread, after them.
    pub previous: Option<Tail>,
}

/// Hashes and writes the queued chunks of one append at its offset. When
/// `durable`, a companion thread flushes what went through the page cache every
/// [`SYNC_EVERY`] bytes *while writing continues*, so the disk works during the
/// upload and the final fsync before the commit is short.
///
/// Given a `hasher`, hashes here rather than on the request's task: that task
/// then only receives, and receiving, hashing and the disk overlap.
///
/// Returns the hasher, fed every byte, and the direct writes still running
/// (see [`Tail`]).
pub(super) fn write_queued(
    mut append: Append,
    mut queue: Queue,
    hasher: Option<Hasher>,
) -> io::Result<(Option<Hasher>, Option<Tail>)> {
    let _counted_until_written = &append.entered;
    let previous = append.previous.take();
    let adopted = previous.is_some();
    let written = write_chunks(&append, previous, &mut queue, hasher);
    if written.is_err() && adopted {
        // The error may be the previous append's, whose bytes the session
        // already counts: its commit must fail.
        append.failed_syncs.mark(&append.id);
    }
    written
}

fn write_chunks(
    append: &Append,
    previous: Option<Tail>,
    queue: &mut Queue,
    mut hasher: Option<Hasher>,
) -> io::Result<(Option<Hasher>, Option<Tail>)> {
    let (path, offset) = (append.path.as_path(), append.offset);
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let mut writer = StagedWriter { file, pos: offset, direct: None };
    // Started at the first flush: most appends never reach one, and a thread
    // each would cost more than the small upload itself.
    let mut syncer: Option<Syncer> = None;
    // Count from the last sync boundary of the whole upload, not of this append:
    // chunked uploads (many small appends) then flush as they go, like monolithic
    // ones, instead of leaving the whole blob to the final fsync.
    let mut unsynced = offset % SYNC_EVERY;
    // The permit returns the chunk's share of the queue budget once it is written.
    // Decided once, where the append crosses the threshold (or at its start
    // past it): an upload that stayed in the cache because others were writing
    // does not switch, with its buffers, when the others end.
    let mut direct_decided = false;
    if let Some(Tail(thread)) = previous {
        // The previous append's writes may still run: this one's queue on the
        // same thread, after them, so neither the disk nor this thread waits
        // from chunk to chunk.
        append.budget.add_permits(DIRECT_QUEUE_BYTES);
        writer.direct = Some(Direct { pending: AlignedBuf::take(), thread });
        direct_decided = true;
    }
    while let Some((chunk, _budget)) = queue.blocking_recv() {
        if let Some(hasher) = &mut hasher {
            hasher.update(&chunk);
        }
        if !direct_decided && writer.pos + chunk.len() as u64 > DIRECT_AFTER {
            direct_decided = true;
            writer.try_direct(path, &append.writers, &append.budget)?;
        }
        unsynced += writer.write(&chunk)?;
        if append.durable && unsynced >= SYNC_EVERY {
            let syncer = match &mut syncer {
                Some(syncer) => syncer,
                None => syncer.insert(Syncer::start(writer.file.try_clone()?)),
            };
            syncer.request();
            unsynced = 0;
        }
    }
    let tail = writer.finish_later()?;
    // Do not wait for a flush still running: the next chunk of a chunked upload
    // can arrive meanwhile, and the commit's own fsync covers everything. A failed
    // background flush is remembered and fails that commit.
    if let Some(syncer) = syncer {
        syncer.detach(append.failed_syncs.clone(), append.id.clone());
    }
    Ok((hasher, tail))
}

/// The last direct writes of an append, and its last partial block after
/// them, still running when the append has hashed every byte. The append
/// answers without them: its `PATCH` then overlaps them with the response and
/// the client's next request instead of waiting a millisecond or two with the
/// disk alone at work. The upload's next append queues its own writes on the
/// same thread, after them; any other use of the staged file waits for them
/// first ([`Tail::wait`]). They write in offset order, so the file never holds
/// a byte past one not yet written: after a crash it is only shorter than the
/// session's record, which drops the session.
pub(super) struct Tail(DirectThread);

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tail")
    }
}

impl Tail {
    /// Waits for the writes; returns how many bytes bypassed the page cache.
    /// A failure marks upload `id` in `failed`, like a failed background flush,
    /// so that its commit refuses to make the blob visible.
    pub(super) fn wait(mut self, failed: &FailedSyncs, id: &str) -> io::Result<u64> {
        let outcome = self.0.finish();
        if let Err(e) = &outcome {
            tracing::error!(upload = id, error = %e, "writing the end of an upload chunk failed");
            failed.mark(id);
        }
        outcome
    }
}

/// Writes bytes at increasing offsets of one file: through the page cache,
/// or, once [`StagedWriter::try_direct`] succeeded, in aligned blocks that a
/// thread of their own writes past it (only the partial blocks at either end
/// go through the cache).
struct StagedWriter {
    /// The file opened normally.
    file: File,
    /// File offset of the next byte.
    pos: u64,
    direct: Option<Direct>,
}

/// Block-aligned bytes waiting for the direct writer thread; they belong at
/// the staged writer's `pos`.
struct Direct {
    pending: AlignedBuf,
    thread: DirectThread,
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

/// How an append runs, chosen from how many are writing when it starts.
pub(super) struct Entry {
    /// Counts the append in [`Writers`] until dropped.
    pub counted: Counted,
    /// The byte budget of its queue to the writer thread.
    pub queue_bytes: u32,
    /// Whether its writer thread hashes (else the request's task does).
    pub hash_in_writer: bool,
}

impl Writers {
    /// Counts an append from its start, before its writer thread runs, so that
    /// a burst of uploads sees itself, and chooses its queue and where it hashes.
    pub(super) fn enter(&self) -> Entry {
        let counted = Counted::new(&self.active);
        let writing = self.active.load(Ordering::Relaxed);
        Entry {
            counted,
            queue_bytes: if writing > BUSY_WRITERS { BUSY_WRITE_QUEUE_BYTES } else { WRITE_QUEUE_BYTES },
            hash_in_writer: writing <= HASH_IN_WRITER_MAX,
        }
    }
}

#[cfg(test)]
impl Writers {
    pub(super) fn refuse_direct_for_tests(&self) {
        self.direct_refused.store(true, Ordering::Relaxed);
    }
}

/// Counts one in a counter while it lives.
pub(super) struct Counted(Arc<AtomicUsize>);

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
    /// refuses it now, or more than [`DIRECT_WRITERS_MAX`] uploads are writing.
    fn try_direct(&mut self, path: &Path, writers: &Arc<Writers>, budget: &tokio::sync::Semaphore) -> io::Result<()> {
        if writers.direct_refused.load(Ordering::Relaxed) || writers.active.load(Ordering::Relaxed) > DIRECT_WRITERS_MAX
        {
            return Ok(());
        }
        let Some(counted) = Counted::at_most(&writers.direct, DIRECT_WRITERS_MAX) else { return Ok(()) };
        match open_direct(path) {
            Ok(direct) => {
                budget.add_permits(DIRECT_QUEUE_BYTES);
                let thread = DirectThread::start(direct, self.file.try_clone()?, writers.clone(), counted);
                self.direct = Some(Direct { pending: AlignedBuf::take(), thread });
            }
            Err(e) if e.raw_os_error() == Some(EINVAL) => refuse_direct(&writers.direct_refused, &e),
            // Anything else shows again on the normal write that follows.
            Err(_) => {}
        }
        Ok(())
    }

    /// Writes `data`; returns how many of its bytes went through the page cache.
    fn write(&mut self, mut data: &[u8]) -> io::Result<u64> {
        let Some(direct) = &mut self.direct else {
            self.file.write_all_at(data, self.pos)?;
            self.pos += data.len() as u64;
            return Ok(data.len() as u64);
        };
        let mut cached = 0;
        if direct.pending.is_empty() {
            // Direct writes start at a block boundary: the rest of the current
            // block goes through the cache, on the direct thread, after the
            // writes queued before it (a previous append's may still run).
            let head = (DIRECT_ALIGN - (self.pos % DIRECT_ALIGN as u64) as usize) % DIRECT_ALIGN;
            let head = head.min(data.len());
            if head > 0 {
                let mut buf = AlignedBuf::take();
                buf.extend(&data[..head]);
                direct.thread.write(buf, self.pos)?;
                self.pos += head as u64;
                cached += head as u64;
                data = &data[head..];
            }
        }
        while !data.is_empty() {
            let taken = direct.pending.extend(data);
            data = &data[taken..];
            if direct.pending.is_full() {
                let full = std::mem::replace(&mut direct.pending, AlignedBuf::take());
                direct.thread.write(full, self.pos)?;
                self.pos += DIRECT_CHUNK as u64;
            }
        }
        Ok(cached)
    }

    /// Hands the bytes still pending to the direct writer thread, which writes
    /// them after the blocks before them, and returns that thread's work.
    fn finish_later(self) -> io::Result<Option<Tail>> {
        let Some(mut direct) = self.direct else { return Ok(None) };
        if !direct.pending.is_empty() {
            direct.thread.write(direct.pending, self.pos)?;
        }
        Ok(Some(Tail(direct.thread)))
    }
}

/// A thread that writes full [`AlignedBuf`]s with `O_DIRECT` while the staged
/// writer hashes and fills the next: the disk's time is not the hasher's.
/// Dropping it waits for the writes queued, so none lands after a failed
/// append has been cut back.
struct DirectThread {
    buffers: Option<std::sync::mpsc::SyncSender<(AlignedBuf, u64)>>,
    thread: Option<std::thread::JoinHandle<io::Result<u64>>>,
}

impl DirectThread {
    /// `direct` and `cached` are the same file, opened with and without
    /// `O_DIRECT`; `slot` counts the thread among the direct writers until its
    /// last write, which may come after its append has answered ([`Tail`]).
    fn start(direct: File, cached: File, writers: Arc<Writers>, slot: Counted) -> DirectThread {
        // One buffer queued while one is written: the staged writer fills a third.
        let (buffers, queued) = std::sync::mpsc::sync_channel::<(AlignedBuf, u64)>(1);
        let thread = std::thread::spawn(move || {
            let _slot = slot;
            let mut direct_bytes = 0;
            let mut use_direct = true;
            for (buf, at) in queued {
                let data = buf.filled();
                // The last piece of an append may end in a partial block,
                // which only the cache can write.
                let whole_blocks = data.len() % DIRECT_ALIGN == 0;
                let done = if use_direct && whole_blocks {
                    write_direct(&direct, data, at, &writers.direct_refused)?
                } else {
                    0
                };
                if done < data.len() {
                    if whole_blocks {
                        // Refused, or a short write off the block size: the
                        // rest of this append goes through the cache.
                        use_direct = false;
                    }
                    cached.write_all_at(&data[done..], at + done as u64)?;
                }
                direct_bytes += done as u64;
            }
            Ok(direct_bytes)
        });
        DirectThread { buffers: Some(buffers), thread: Some(thread) }
    }

    fn write(&mut self, buf: AlignedBuf, at: u64) -> io::Result<()> {
        let sent = self.buffers.as_ref().is_some_and(|buffers| buffers.send((buf, at)).is_ok());
        if !sent {
            // The thread stopped on an error: report that one.
            self.finish()?;
            return Err(io::Error::other("the direct writer stopped"));
        }
        Ok(())
    }

    /// Waits for the queued writes; returns the bytes written directly.
    fn finish(&mut self) -> io::Result<u64> {
        self.buffers = None;
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| io::Error::other("the direct writer panicked"))?,
            None => Ok(0),
        }
    }
}

impl Drop for DirectThread {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Writes `data` (whole blocks) at `at` with `O_DIRECT`; returns how much was
/// written before the filesystem refused (`EINVAL`) or wrote a short piece
/// that is not whole blocks, after which the rest must go through the cache.
fn write_direct(file: &File, data: &[u8], at: u64, refused: &AtomicBool) -> io::Result<usize> {
    let mut done = 0;
    while done < data.len() {
        match file.write_at(&data[done..], at + done as u64) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) if n % DIRECT_ALIGN == 0 => done += n,
            Ok(n) => return Ok(done + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(EINVAL) => {
                refuse_direct(refused, &e);
                return Ok(done);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(done)
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
                failed.mark(&id);
            }
        });
    }
}

/// Whether the filesystem of `dir` takes `O_DIRECT` (tests assert the direct
/// path ran only where it can).
#[cfg(test)]
pub(super) fn direct_supported(dir: &Path) -> bool {
    let probe = dir.join("probe");
    std::fs::write(&probe, b"").unwrap();
    open_direct(&probe).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::{Algorithm, Digest};

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
            entered: writers.enter().counted,
            budget: budget.clone(),
            previous: None,
        };
        let writer = tokio::task::spawn_blocking(move || write_queued(append, rx, Some(Algorithm::Sha256.hasher())));
        let sent: Vec<u8> = chunks.iter().flat_map(|chunk| chunk.iter().copied()).collect();
        for chunk in chunks {
            let permit = budget.clone().acquire_many_owned(chunk.len() as u32).await.unwrap();
            tx.send((chunk, permit)).await.unwrap();
        }
        drop(tx);
        let (hasher, tail) = writer.await.unwrap().unwrap();
        assert_eq!(hasher.unwrap().finish(), Digest::sha256(&sent), "the hasher was fed every byte, in order");
        tail.map_or(0, |tail| tail.wait(&FailedSyncs::default(), "test").unwrap())
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

    /// An empty staging file in a directory of its own (kept while the guard lives).
    fn empty_staged_file() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staged");
        std::fs::write(&path, b"").unwrap();
        (dir, path)
    }

    #[tokio::test]
    async fn a_large_append_bypasses_the_cache_and_keeps_every_byte_in_place() {
        let (dir, path) = empty_staged_file();
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
        let (dir, path) = empty_staged_file();
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
        let (_dir, path) = empty_staged_file();
        let data = pattern(DIRECT_AFTER as usize + 2 * DIRECT_CHUNK);
        let writers = Arc::new(Writers::default());
        let _others: Vec<_> = (0..DIRECT_WRITERS_MAX).map(|_| Counted::new(&writers.active)).collect();
        let direct = append(&path, 0, cut(&data, &[65_536]), &writers).await;
        assert_eq!(direct, 0);
        assert!(std::fs::read(&path).unwrap() == data);
    }

    #[test]
    fn a_refused_direct_write_lands_through_the_cache_and_turns_direct_off() {
        let (_dir, path) = empty_staged_file();
        let Ok(direct) = open_direct(&path) else { return }; // nothing to refuse here
        let writers = Arc::new(Writers::default());
        let data = pattern(2 * DIRECT_CHUNK);
        let cached = std::fs::File::options().write(true).open(&path).unwrap();
        let mut thread = DirectThread::start(direct, cached, writers.clone(), Counted::new(&writers.direct));
        for (i, piece) in data.chunks(DIRECT_CHUNK).enumerate() {
            let mut buf = AlignedBuf::take();
            buf.extend(piece);
            // One byte off the block size: O_DIRECT answers EINVAL.
            thread.write(buf, 1 + (i * DIRECT_CHUNK) as u64).unwrap();
        }
        assert_eq!(thread.finish().unwrap(), 0, "nothing was written directly");
        assert!(writers.direct_refused.load(Ordering::Relaxed), "the store stops trying");
        let written = std::fs::read(&path).unwrap();
        assert_eq!(written[0], 0);
        assert!(written[1..] == data[..], "every byte in place through the cache");
    }
}
