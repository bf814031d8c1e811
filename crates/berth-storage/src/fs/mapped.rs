//! Sending a page-cached part of a blob straight from the page cache.
//!
//! A chunk (or the head of it) whose pages are in the page cache is mapped
//! read-only and handed to the response as it is: the socket's send copies
//! from the cache into the connection's buffers, the one copy a pull needs on
//! the server. A read into a buffer first costs a second copy of every byte.
//! 1 GiB pulls on the benchmark machine, eight each, alternating: the server's
//! CPU per GiB 0.36–0.38 s with the read, 0.29–0.30 s mapped; see BENCHMARKS.md.
//!
//! Why this is sound: a committed blob file is never written again. It is
//! written under a temporary name, fsynced, renamed into place and only ever
//! unlinked, which leaves a mapping valid; nothing truncates or rewrites it,
//! and nothing is mapped past the length it had when its download started.
//!
//! What it risks: a page is checked resident (`mincore`) when its chunk is
//! mapped. If the kernel evicts it before the bytes are sent, the next access
//! reads it from disk again; should that read fail, the kernel's own copy
//! (plain HTTP) fails the send with `EFAULT`, while a copy in user space (TLS
//! encryption) raises `SIGBUS`. Both need an I/O error on a page that was
//! cached a moment before.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

/// A chunk of a file, mapped read-only; unmapped on drop.
pub(super) struct MappedChunk {
    /// Start of the mapping (page-aligned).
    map: NonNull<c_void>,
    /// Length of the mapping.
    map_len: usize,
    /// Bytes of the mapping before the chunk (the chunk's offset in its page).
    skip: usize,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; reading it
// from any thread is as safe as reading a `&[u8]`.
unsafe impl Send for MappedChunk {}
// SAFETY: as above; `&MappedChunk` only gives out `&[u8]`.
unsafe impl Sync for MappedChunk {}

impl AsRef<[u8]> for MappedChunk {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `map` points to `map_len` readable bytes that live until
        // drop, `skip + len <= map_len`, and the file behind them is never
        // written or truncated (module docs), so the bytes do not change.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<u8>().add(self.skip), self.len) }
    }
}

impl Drop for MappedChunk {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map_cached` with this address and
        // length, and no slice of it outlives `self`.
        unsafe { libc::munmap(self.map.as_ptr(), self.map_len) };
    }
}

/// What mapping a chunk from the page cache gave.
pub(super) enum Mapped {
    /// The chunk or its head, every page of it in the page cache.
    Chunk(MappedChunk),
    /// Too little of it is in the page cache: read the chunk the other way.
    NotCached,
    /// This file cannot be mapped (the filesystem refuses `mmap`).
    Unsupported,
}

/// Maps `len` (> 0) bytes of `file` at `at`, or as many of them from the
/// start as the page cache holds whole pages of, if that is at least `min`
/// bytes. The caller keeps `at + len` within the file's length.
pub(super) fn map_cached(file: &File, at: u64, len: usize, min: usize) -> Mapped {
    if cfg!(not(target_os = "linux")) {
        return Mapped::Unsupported; // no residency check (`resident_head`) elsewhere
    }
    // SAFETY: sysconf only reads a system constant.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let skip = (at % page as u64) as usize;
    let map_len = skip + len;
    let Ok(offset) = libc::off_t::try_from(at - skip as u64) else {
        return Mapped::Unsupported;
    };
    // SAFETY: a new read-only shared mapping of an open descriptor at an
    // address the kernel picks, so it aliases no memory of ours.
    let map = unsafe {
        libc::mmap(std::ptr::null_mut(), map_len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), offset)
    };
    let Some(map) = NonNull::new(map).filter(|_| map != libc::MAP_FAILED) else {
        return Mapped::Unsupported;
    };
    let mut chunk = MappedChunk { map, map_len, skip, len };
    // The mapping stays whole (it is unmapped whole); the chunk is its cached head.
    let cached = resident_head(&chunk, page).saturating_sub(skip).min(len);
    if cached < min {
        return Mapped::NotCached;
    }
    chunk.len = cached;
    Mapped::Chunk(chunk)
}

/// Bytes from the start of the chunk's mapping that lie in pages held by the
/// page cache (whole pages; the last may end past the mapping).
#[cfg(target_os = "linux")]
fn resident_head(chunk: &MappedChunk, page: usize) -> usize {
    let mut pages = vec![0u8; chunk.map_len.div_ceil(page)];
    // SAFETY: `map` is a mapping of `map_len` bytes and `pages` has the byte
    // per page that mincore(2) writes.
    let rc = unsafe { libc::mincore(chunk.map.as_ptr(), chunk.map_len, pages.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    pages.iter().take_while(|p| *p & 1 == 1).count() * page
}

#[cfg(not(target_os = "linux"))]
fn resident_head(_chunk: &MappedChunk, _page: usize) -> usize {
    0
}
