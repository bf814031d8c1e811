//! A SQLite VFS over the default one (`unix`) that writes each commit's WAL
//! frames with one system call.
//!
//! SQLite appends a WAL frame as two writes, its 24-byte header and then the
//! page, so a commit that changes twelve pages costs 24 `pwrite`s before its
//! sync. On a virtual machine a system call costs microseconds, and a tag
//! PUT spent more time in those writes than in its SQL. For the files SQLite
//! opens as write-ahead logs, this VFS keeps a run of consecutive writes in
//! memory and writes it out as one:
//!
//! - when the page of a commit frame (the frame whose header carries the
//!   database size) has been written: the write that completes a commit
//!   returns the outcome of the real write, so a full disk fails the commit
//!   as before, and the frames are in the file before SQLite publishes the
//!   commit in the WAL index;
//! - before any other operation on the file (read, sync, truncate, size,
//!   locks, close), so SQLite never sees the file without its own writes;
//! - when a write does not continue the run, and past [`FLUSH_AT`] bytes.
//!
//! Every other file (the database, temporary files) is the default VFS's own
//! file, untouched. Durability is unchanged: SQLite still syncs the WAL when
//! its `synchronous` setting says so, and the sync comes after the write.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, Ordering};

use rusqlite::ffi;

/// The name to open a connection with (`Connection::open_with_flags_and_vfs`).
pub const NAME: &CStr = c"berth-walvfs";

/// A run longer than this is written out even before its commit (a large
/// transaction that spills pages early). It is also the most one real write
/// takes: the default VFS writes at most 128 KiB per call (it masks the
/// length with `0x1ffff`).
pub const FLUSH_AT: usize = 64 << 10;

/// Size of a WAL frame header; bytes 4..8 hold the database size in pages
/// for a commit frame and zero otherwise.
const FRAME_HEADER: usize = 24;

/// The default VFS, which does the real work.
static REAL: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(ptr::null_mut());

/// Registers the VFS (once per process) under [`NAME`]; the default VFS stays
/// the default. Returns SQLite's result code on failure.
pub fn register() -> Result<(), c_int> {
    static REGISTERED: OnceLock<c_int> = OnceLock::new();
    let rc = *REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find initialises SQLite and returns the default
        // VFS, which lives as long as the process. The copy handed to
        // sqlite3_vfs_register is leaked, so it does too.
        unsafe {
            let real = ffi::sqlite3_vfs_find(ptr::null());
            if real.is_null() {
                return ffi::SQLITE_ERROR;
            }
            REAL.store(real, Ordering::Release);
            let mut vfs = *real;
            vfs.zName = NAME.as_ptr();
            vfs.pNext = ptr::null_mut();
            vfs.szOsFile = (HEADER + (*real).szOsFile as usize) as c_int;
            vfs.xOpen = Some(open);
            ffi::sqlite3_vfs_register(Box::leak(Box::new(vfs)), 0)
        }
    });
    if rc == ffi::SQLITE_OK { Ok(()) } else { Err(rc) }
}

/// A WAL file: our methods in front, the default VFS's file behind them.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    run: *mut Run,
}

/// Where the default VFS's file starts in the allocation SQLite makes for
/// each file (`szOsFile` bytes), aligned for any C struct.
const HEADER: usize = std::mem::size_of::<WalFile>().next_multiple_of(16);

/// The writes not yet made: `bytes` belong at file offset `start`.
#[derive(Default)]
struct Run {
    bytes: Vec<u8>,
    start: i64,
    /// The last write was the header of a commit frame.
    after_commit_header: bool,
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let real_vfs = REAL.load(Ordering::Acquire);
    // SAFETY: `register` stored the default VFS before this VFS could be used,
    // and `file` is `szOsFile` bytes, our header plus the default VFS's file.
    unsafe {
        let real_open = (*real_vfs).xOpen.expect("the default VFS opens files");
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            // Not a WAL: the default VFS's file, with its own methods.
            return real_open(real_vfs, name, file, flags, out_flags);
        }
        let wal = file.cast::<WalFile>();
        let real = file.cast::<u8>().add(HEADER).cast::<ffi::sqlite3_file>();
        (*wal).base.pMethods = ptr::null();
        (*wal).real = real;
        (*wal).run = ptr::null_mut();
        let rc = real_open(real_vfs, name, real, flags, out_flags);
        // SQLite closes a file whose open failed only if it has methods.
        if !(*real).pMethods.is_null() {
            (*wal).run = Box::into_raw(Box::default());
            (*wal).base.pMethods = &METHODS;
        }
        rc
    }
}

/// The methods of a WAL file: every one but `xWrite` writes the run out
/// first, then calls the default VFS's.
static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

/// The default VFS's file and methods behind `file` (a [`WalFile`]).
///
/// # Safety
/// `file` must be a WAL file opened by [`open`] and not yet closed.
unsafe fn real(file: *mut ffi::sqlite3_file) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    // SAFETY: per the contract, `file` is a live WalFile whose `real` file is open.
    unsafe {
        let real = (*file.cast::<WalFile>()).real;
        (real, &*(*real).pMethods)
    }
}

/// Writes the run out, as one write.
///
/// # Safety
/// As for [`real`].
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: per the contract; the run belongs to this file, and SQLite calls a
    // file's methods from one thread at a time.
    unsafe {
        let run = &mut *(*file.cast::<WalFile>()).run;
        if run.bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let (real, methods) = real(file);
        let xwrite = methods.xWrite.expect("the default VFS writes");
        let mut rc = ffi::SQLITE_OK;
        let mut offset = run.start;
        for chunk in run.bytes.chunks(FLUSH_AT) {
            // A chunk is at most FLUSH_AT bytes, far below c_int::MAX.
            rc = xwrite(real, chunk.as_ptr().cast(), chunk.len() as c_int, offset);
            #[cfg(test)]
            tests::WRITES.fetch_add(1, Ordering::Relaxed);
            if rc != ffi::SQLITE_OK {
                break;
            }
            offset += chunk.len() as i64;
        }
        run.bytes.clear();
        run.after_commit_header = false;
        rc
    }
}

unsafe extern "C" fn write(file: *mut ffi::sqlite3_file, data: *const c_void, amount: c_int, offset: i64) -> c_int {
    // SAFETY: SQLite passes a file of ours and `amount` readable bytes at `data`.
    unsafe {
        let run = &mut *(*file.cast::<WalFile>()).run;
        if !run.bytes.is_empty() && offset != run.start + run.bytes.len() as i64 {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        let run = &mut *(*file.cast::<WalFile>()).run;
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), usize::try_from(amount).unwrap_or(0));
        if run.bytes.is_empty() {
            run.start = offset;
        }
        run.bytes.extend_from_slice(bytes);
        let commit_header = bytes.len() == FRAME_HEADER && bytes[4..8] != [0; 4];
        let completes_commit = run.after_commit_header && !commit_header;
        run.after_commit_header = commit_header;
        if completes_commit || run.bytes.len() >= FLUSH_AT { flush(file) } else { ffi::SQLITE_OK }
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file of ours once; the run is freed here, after
    // its last write.
    unsafe {
        let flushed = flush(file);
        let (real, methods) = real(file);
        let closed = methods.xClose.map_or(ffi::SQLITE_OK, |xclose| xclose(real));
        let wal = file.cast::<WalFile>();
        drop(Box::from_raw((*wal).run));
        (*wal).run = ptr::null_mut();
        if flushed != ffi::SQLITE_OK { flushed } else { closed }
    }
}

/// Defines a method that writes the run out and then calls the default VFS's
/// method of the same name with the same arguments.
macro_rules! flushed_then_real {
    ($name:ident, $method:ident ( $($arg:ident : $ty:ty),* ) $(, $missing:expr)?) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: SQLite passes a file of ours and the arguments the method takes.
            unsafe {
                let rc = flush(file);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                let (real, methods) = real(file);
                match methods.$method {
                    Some(method) => method(real $(, $arg)*),
                    None => ffi::SQLITE_IOERR,
                }
            }
        }
    };
}

flushed_then_real!(read, xRead(data: *mut c_void, amount: c_int, offset: i64));
flushed_then_real!(truncate, xTruncate(size: i64));
flushed_then_real!(sync, xSync(flags: c_int));
flushed_then_real!(file_size, xFileSize(size: *mut i64));
flushed_then_real!(lock, xLock(level: c_int));
flushed_then_real!(unlock, xUnlock(level: c_int));
flushed_then_real!(check_reserved_lock, xCheckReservedLock(out: *mut c_int));
flushed_then_real!(file_control, xFileControl(op: c_int, arg: *mut c_void));
flushed_then_real!(shm_map, xShmMap(page: c_int, page_size: c_int, extend: c_int, out: *mut *mut c_void));
flushed_then_real!(shm_lock, xShmLock(offset: c_int, n: c_int, flags: c_int));
flushed_then_real!(shm_unmap, xShmUnmap(delete: c_int));
flushed_then_real!(fetch, xFetch(offset: i64, amount: c_int, out: *mut *mut c_void));
flushed_then_real!(unfetch, xUnfetch(offset: i64, page: *mut c_void));

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite passes a file of ours.
    unsafe {
        let (real, methods) = real(file);
        methods.xSectorSize.map_or(4096, |method| method(real))
    }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite passes a file of ours.
    unsafe {
        let (real, methods) = real(file);
        methods.xDeviceCharacteristics.map_or(0, |method| method(real))
    }
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: SQLite passes a file of ours.
    unsafe {
        // The run is empty here: every commit wrote it out at its commit frame,
        // before SQLite publishes the commit behind this barrier. Bytes of a
        // transaction still open are not yet covered by any commit, and the
        // next method that can report an error writes them.
        let (real, methods) = real(file);
        if let Some(method) = methods.xShmBarrier {
            method(real);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rusqlite::{Connection, OpenFlags};

    /// Real writes made by runs, across the tests of this process.
    pub(super) static WRITES: AtomicUsize = AtomicUsize::new(0);

    /// The tests share WRITES; one runs at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// A connection through the VFS, its commits synced (`FULL`) or not (`NORMAL`).
    fn open(path: &std::path::Path, synchronous: &str) -> Connection {
        super::register().unwrap();
        let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), super::NAME).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", synchronous).unwrap();
        conn
    }

    /// A new database in a temporary directory with table `t`, through the VFS.
    fn fresh(synchronous: &str) -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let conn = open(&path, synchronous);
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT);").unwrap();
        (dir, path, conn)
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_commit_is_one_write_and_readers_see_it_at_once() {
        let _serial = SERIAL.lock().unwrap();
        // Without a sync after the frames, only the commit frame writes them out.
        let (_dir, path, writer) = fresh("NORMAL");
        writer.execute_batch("CREATE INDEX t_body ON t(body);").unwrap();
        // A reader on the default VFS, as sqlx's connections are.
        let reader = Connection::open(&path).unwrap();
        let before = WRITES.load(Ordering::Relaxed);
        for i in 0..50 {
            let body = format!("{i:04}").repeat(200);
            writer.execute("INSERT INTO t (body) VALUES (?1)", [&body]).unwrap();
            assert_eq!(count(&reader), i + 1, "commit {i} is visible to another connection");
        }
        // Each commit touches three pages (six writes without the VFS).
        let writes = WRITES.load(Ordering::Relaxed) - before;
        assert_eq!(writes, 50, "one write per commit");
    }

    #[test]
    fn a_large_transaction_spills_and_rolls_back_cleanly() {
        let _serial = SERIAL.lock().unwrap();
        let (_dir, path, mut writer) = fresh("FULL");
        writer.pragma_update(None, "cache_size", 10).unwrap();
        let body = "x".repeat(3000);
        // More than FLUSH_AT of frames, spilled before the commit by the tiny cache.
        let tx = writer.transaction().unwrap();
        for _ in 0..2000 {
            tx.execute("INSERT INTO t (body) VALUES (?1)", [&body]).unwrap();
        }
        tx.rollback().unwrap();
        assert_eq!(count(&writer), 0);
        let tx = writer.transaction().unwrap();
        for _ in 0..2000 {
            tx.execute("INSERT INTO t (body) VALUES (?1)", [&body]).unwrap();
        }
        tx.commit().unwrap();
        drop(writer);
        // Reopened on the default VFS (recovering the WAL from the file alone).
        let reopened = Connection::open(&path).unwrap();
        assert_eq!(count(&reopened), 2000);
        let check: String = reopened.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
    }

    #[test]
    fn what_a_commit_wrote_survives_without_a_checkpoint() {
        let _serial = SERIAL.lock().unwrap();
        let (dir, path, writer) = fresh("NORMAL");
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        for i in 0..20 {
            writer.execute("INSERT INTO t (body) VALUES (?1)", [i.to_string()]).unwrap();
        }
        // Copy the database and its WAL while the writer is open, as a crash
        // would leave them, and recover the copy.
        let copy = dir.path().join("copy");
        std::fs::copy(&path, &copy).unwrap();
        std::fs::copy(dir.path().join("db-wal"), dir.path().join("copy-wal")).unwrap();
        let recovered = Connection::open(&copy).unwrap();
        assert_eq!(count(&recovered), 20);
        drop(writer);
    }
}
