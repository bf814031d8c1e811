//! The machine's own limits, measured in the same run as the registries:
//! sha256 on one core (openssl, and the `sha2` crate berth uses), disk writes with and
//! without fsync (`dd`), and one loopback TCP stream.

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
    std::fs::remove_file(&file)?;
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
