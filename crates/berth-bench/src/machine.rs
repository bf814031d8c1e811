//! The machine's own limits, measured in the same run as the registries:
//! sha256 on one core (openssl, and the `sha2` crate berth uses), disk writes with and
//! without fsync (`dd`), and one loopback TCP stream, plain and in the two shapes that
//! bound a registry: a receiver that hashes every byte (a push with no HTTP and no
//! disk) and a page-cached file sent with `sendfile` (a pull with no HTTP and no copy
//! through user space).

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::cli::MachineArgs;
use crate::data::Pool;
use crate::report::{Better, Report, gib_s, mib_s};

/// Runs every measurement; a missing tool becomes a note, not a failure.
pub async fn measure(report: &mut Report, args: &MachineArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    let size = args.size.0;
    report.param("file_bytes", size);
    let pool = Pool::generate(crate::data::POOL_SIZE, 1);
    let sha = tokio::task::spawn_blocking({
        let pool = pool.clone();
        move || sha256_rust(&pool, size)
    });
    report.add("machine.sha256_rust.gib_s", sha.await?, "GiB/s", Better::Higher);
    let file = args.dir.join("sha256-input.bin");
    write_file(&file, &pool, size)?;
    match timed(Command::new("openssl").args(["dgst", "-sha256"]).arg(&file)) {
        Ok(s) => report.add("machine.sha256_openssl.gib_s", gib_s(size, s), "GiB/s", Better::Higher),
        Err(e) => report.note(format!("openssl dgst: {e:#}")),
    }
    let sent = tokio::task::spawn_blocking({
        let file = file.clone();
        move || sendfile_loopback(&file, size)
    });
    match sent.await? {
        Ok(g) => report.add("machine.sendfile_loopback.gib_s", g, "GiB/s", Better::Higher),
        Err(e) => report.note(format!("sendfile loopback: {e:#}")),
    }
    std::fs::remove_file(&file)?;
    let hashed = tokio::task::spawn_blocking(move || hashed_loopback(&pool, size));
    report.add("machine.hashed_loopback.mib_s", hashed.await??, "MiB/s", Better::Higher);
    let mib = (size >> 20).max(1).to_string();
    for (name, fsync) in [("machine.dd_fsync.mib_s", true), ("machine.dd_nofsync.mib_s", false)] {
        let out = args.dir.join("dd.bin");
        let mut dd = Command::new("dd");
        dd.arg("if=/dev/zero").arg(format!("of={}", out.display())).args(["bs=1M", &format!("count={mib}")]);
        if fsync {
            dd.arg("conv=fsync");
        }
        match timed(&mut dd) {
            Ok(s) => report.add(name, mib_s(size, s), "MiB/s", Better::Higher),
            Err(e) => report.note(format!("dd: {e:#}")),
        }
        // Flush what the page-cache write left dirty before anything else is measured.
        let _ = Command::new("sync").status();
        let _ = std::fs::remove_file(&out);
    }
    let loopback = loopback(args.loopback_size.0).await?;
    report.add("machine.loopback.gib_s", loopback, "GiB/s", Better::Higher);
    Ok(())
}

/// Hashes `size` bytes (the pool, repeated) on this thread.
fn sha256_rust(pool: &Pool, size: u64) -> f64 {
    let blob = pool.bytes(0, crate::data::POOL_SIZE);
    let started = Instant::now();
    let mut hasher = berth_core::Algorithm::Sha256.hasher();
    let mut left = size;
    while left > 0 {
        let n = left.min(blob.len() as u64) as usize;
        hasher.update(&blob[..n]);
        left -= n as u64;
    }
    std::hint::black_box(hasher.finish());
    gib_s(size, started.elapsed().as_secs_f64())
}

fn write_file(path: &Path, pool: &Pool, size: u64) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    for piece in pool.pieces(0, size) {
        file.write_all(&piece)?;
    }
    file.flush()?;
    Ok(())
}

/// Runs a command to completion (output discarded) and returns its wall time in seconds.
fn timed(cmd: &mut Command) -> anyhow::Result<f64> {
    let started = Instant::now();
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(seconds)
}

/// Sends `size` bytes over one TCP connection on 127.0.0.1; returns GiB/s.
async fn loopback(size: u64) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let reader = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            match stream.read(&mut buf).await? {
                0 => return anyhow::Ok(total),
                n => total += n as u64,
            }
        }
    });
    let buf = vec![0x5au8; 1 << 20];
    let mut stream = TcpStream::connect(addr).await?;
    let started = Instant::now();
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        stream.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    stream.shutdown().await?;
    drop(stream);
    let received = reader.await??;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(received == size, "loopback received {received} of {size} bytes");
    Ok(gib_s(size, seconds))
}

/// A push's ceiling on this machine: `size` bytes over one loopback TCP stream,
/// every byte hashed (sha256, as a registry must before it answers) and nothing
/// stored. The receiver reads and hashes on two threads, as berth does; MiB/s.
fn hashed_loopback(pool: &Pool, size: u64) -> anyhow::Result<f64> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let receiver = std::thread::spawn(move || -> anyhow::Result<u64> {
        let (mut stream, _) = listener.accept()?;
        let (full, hashing) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let (empty, reusing) = std::sync::mpsc::channel::<Vec<u8>>();
        let hasher = std::thread::spawn(move || {
            let mut hasher = berth_core::Algorithm::Sha256.hasher();
            let mut total = 0u64;
            for buf in hashing {
                hasher.update(&buf);
                total += buf.len() as u64;
                empty.send(buf).ok();
            }
            std::hint::black_box(hasher.finish());
            total
        });
        loop {
            let mut buf = reusing.try_recv().unwrap_or_else(|_| Vec::with_capacity(HASHED_READ));
            buf.resize(HASHED_READ, 0);
            let n = std::io::Read::read(&mut stream, &mut buf)?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            full.send(buf)?;
        }
        drop(full);
        joined(hasher, "hashing")
    });
    let mut stream = std::net::TcpStream::connect(addr)?;
    let started = Instant::now();
    for piece in pool.pieces(0, size) {
        stream.write_all(&piece)?;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let received = joined(receiver, "receiving")??;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(received == size, "hashed loopback received {received} of {size} bytes");
    Ok(mib_s(size, seconds))
}

/// What the hashing receiver reads at a time (hyper's reads are no larger).
const HASHED_READ: usize = 256 << 10;

/// A pull's ceiling on this machine: `path` (read once first, so it is in the
/// page cache) sent over one loopback TCP stream by `sendfile(2)`, which
/// `std::io::copy` uses from a file to a socket on Linux, and read in 1 MiB
/// pieces; GiB/s.
fn sendfile_loopback(path: &Path, size: u64) -> anyhow::Result<f64> {
    std::io::copy(&mut std::fs::File::open(path)?, &mut std::io::sink())?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut file = std::fs::File::open(path)?;
    let sender = std::thread::spawn(move || -> anyhow::Result<u64> {
        let (mut stream, _) = listener.accept()?;
        Ok(std::io::copy(&mut file, &mut stream)?)
    });
    let mut stream = std::net::TcpStream::connect(addr)?;
    let started = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut received = 0u64;
    loop {
        match std::io::Read::read(&mut stream, &mut buf)? {
            0 => break,
            n => received += n as u64,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let sent = joined(sender, "sending")??;
    anyhow::ensure!(received == size && sent == size, "sendfile loopback moved {sent}/{received} of {size} bytes");
    Ok(gib_s(size, seconds))
}

/// Waits for a measuring thread; its panic becomes an error naming its `role`.
fn joined<T>(thread: std::thread::JoinHandle<T>, role: &str) -> anyhow::Result<T> {
    thread.join().map_err(|_| anyhow::anyhow!("the {role} thread panicked"))
}
