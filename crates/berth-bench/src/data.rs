//! Push data without holding it in memory: blobs are read cyclically out of a seeded pool.
//!
//! The pool is 64 MiB of pseudo-random bytes (wyrand), generated once per process with a
//! fresh seed, so no two runs push the same digests. A blob of any size is the pool read
//! from a per-blob offset, wrapping around; its digest is computed in a first, untimed pass
//! over the same pieces. While a push is timed the client only hands out reference-counted
//! slices of the pool, which keeps the client's share of the two cores small.

use std::time::{SystemTime, UNIX_EPOCH};

use berth_core::{Algorithm, Digest};
use bytes::Bytes;

/// Size of the pseudo-random pool: larger than any compressor's window.
pub const POOL_SIZE: usize = 64 << 20;
/// Largest piece handed to the HTTP body.
const PIECE: usize = 1 << 20;

/// Seeded pseudo-random bytes that blobs are cut from.
#[derive(Clone)]
pub struct Pool {
    bytes: Bytes,
}

impl Pool {
    /// Generates `len` bytes from `seed`.
    pub fn generate(len: usize, seed: u64) -> Pool {
        let mut state = seed;
        let mut bytes = Vec::with_capacity(len + 8);
        while bytes.len() < len {
            bytes.extend_from_slice(&wyrand(&mut state).to_le_bytes());
        }
        bytes.truncate(len);
        Pool { bytes: Bytes::from(bytes) }
    }

    /// A pool seeded from the clock and the process id.
    pub fn fresh() -> Pool {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Pool::generate(POOL_SIZE, nanos ^ (u64::from(std::process::id()) << 32))
    }

    /// Blob number `id` of `size` bytes; hashes it once (about 1 s per GiB).
    pub fn blob(&self, id: u64, size: u64) -> Blob {
        let start = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) % self.bytes.len() as u64) as usize;
        let mut blob = Blob { pool: self.bytes.clone(), start, size, digest: None };
        let mut hasher = Algorithm::Sha256.hasher();
        for piece in blob.pieces(0, size) {
            hasher.update(&piece);
        }
        blob.digest = Some(hasher.finish());
        blob
    }

    /// Several blobs, hashed on the blocking pool in parallel.
    pub async fn blobs(&self, first_id: u64, count: u64, size: u64) -> anyhow::Result<Vec<Blob>> {
        let tasks: Vec<_> = (first_id..first_id + count)
            .map(|id| {
                let pool = self.clone();
                tokio::task::spawn_blocking(move || pool.blob(id, size))
            })
            .collect();
        let mut blobs = Vec::with_capacity(tasks.len());
        for task in tasks {
            blobs.push(task.await?);
        }
        Ok(blobs)
    }

    /// Zero-copy pieces of `len` bytes starting at `offset` (wrapping), without hashing them.
    pub fn pieces(&self, offset: usize, len: u64) -> Pieces {
        Pieces { pool: self.bytes.clone(), pos: offset % self.bytes.len(), remaining: len }
    }

    /// `len` bytes starting at `offset` (wrapping), as one buffer; for small blobs.
    pub fn bytes(&self, offset: usize, len: usize) -> Bytes {
        let mut out = Vec::with_capacity(len);
        for piece in self.pieces(offset, len as u64) {
            out.extend_from_slice(&piece);
        }
        Bytes::from(out)
    }
}

/// A blob defined by an offset into the pool and a size, with its digest.
#[derive(Clone)]
pub struct Blob {
    pool: Bytes,
    start: usize,
    size: u64,
    digest: Option<Digest>,
}

impl Blob {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The blob's sha256 digest.
    pub fn digest(&self) -> &Digest {
        self.digest.as_ref().expect("Pool::blob computes the digest")
    }

    /// Zero-copy pieces covering `len` bytes from `offset` within the blob.
    pub fn pieces(&self, offset: u64, len: u64) -> Pieces {
        let pool_len = self.pool.len() as u64;
        Pieces {
            pool: self.pool.clone(),
            pos: ((self.start as u64 + offset) % pool_len) as usize,
            remaining: len.min(self.size.saturating_sub(offset)),
        }
    }
}

/// Iterator over slices of the pool (at most 1 MiB each).
pub struct Pieces {
    pool: Bytes,
    pos: usize,
    remaining: u64,
}

impl Iterator for Pieces {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.remaining == 0 {
            return None;
        }
        let until_wrap = self.pool.len() - self.pos;
        let n = (self.remaining.min(PIECE as u64) as usize).min(until_wrap);
        let piece = self.pool.slice(self.pos..self.pos + n);
        self.pos = (self.pos + n) % self.pool.len();
        self.remaining -= n as u64;
        Some(piece)
    }
}

/// wyrand: a fast 64-bit generator; statistical quality is ample for incompressible test data.
fn wyrand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0xa076_1d64_78bd_642f);
    let t = u128::from(*state) * u128::from(*state ^ 0xe703_7ed1_a0b4_28db);
    ((t >> 64) as u64) ^ (t as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_wrap_around_the_pool_and_match_the_digest() {
        let pool = Pool::generate(1000, 7);
        let blob = pool.blob(3, 2500);
        let bytes: Vec<u8> = blob.pieces(0, blob.size()).flat_map(|b| b.to_vec()).collect();
        assert_eq!(bytes.len(), 2500);
        assert_eq!(&Digest::sha256(&bytes), blob.digest());
        let tail: Vec<u8> = blob.pieces(2000, 1000).flat_map(|b| b.to_vec()).collect();
        assert_eq!(tail, bytes[2000..]);
    }

    #[test]
    fn different_ids_give_different_blobs() {
        let pool = Pool::generate(4096, 1);
        assert_ne!(pool.blob(1, 100).digest(), pool.blob(2, 100).digest());
        assert_eq!(pool.blob(1, 100).digest(), pool.blob(1, 100).digest());
    }
}
