//! glibc malloc settings for a server that streams large request bodies.
//!
//! hyper reads a request body into buffers of a few hundred KiB, and the upload
//! path frees each one on its writer thread once written. With glibc's
//! defaults the trim threshold follows the mmap threshold (a few hundred KiB
//! once large blocks have been freed), so the memory freed at the top of an
//! arena goes back to the kernel at once and the next buffer faults in fresh
//! zeroed pages. Two 1 GiB pushes took 75,000 page faults and two chunked
//! ones 182,000, the faults and the page zeroing a tenth of the server's CPU.
//! With the settings below both take about 3,000. An arena then keeps up to
//! `TRIM_THRESHOLD` unused, so the number of arenas is capped too: with
//! glibc's default of eight per core, 32 pushes and 64 pulls at once peaked
//! 5–15 MiB higher than before; with four, as before.

/// Blocks from this size up are mapped on their own and unmapped when freed.
/// Setting it turns off glibc's moving threshold, which also moves the trim
/// threshold down with it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 4 << 20;

/// Free memory at the top of an arena is returned to the kernel past this
/// much: above what one upload's queue and hyper's buffers hold at once.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 8 << 20;

/// At most this many malloc arenas (glibc's default is eight per core): each
/// keeps up to [`TRIM_THRESHOLD`] it does not use.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENA_MAX: libc::c_int = 4;

/// Applies the settings; call it first thing in `main`, before any thread
/// starts. Elsewhere than on glibc it does nothing.
pub fn tune_for_streaming() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's parameters and may be
    // called at any time; a refused value (return 0) leaves the default.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
    }
}
