//! What serving costs the machine beyond the work itself: memory handed back
//! to the kernel and asked for again while bytes stream through.

use berth_testkit::Blob;
use reqwest::{Client, StatusCode};

use crate::common::{client, push_blob, start};

/// Minor page faults of process `pid` so far (`/proc/PID/stat`, field 10).
fn minor_faults(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("procfs");
    // The command name (field 2) may hold spaces; the fields after it do not.
    let after_name = &stat[stat.rfind(')').expect("a command name") + 2..];
    after_name.split(' ').nth(7).and_then(|f| f.parse().ok()).expect("a fault count")
}

/// Pushes `blob` in PATCHes of `chunk` bytes and a closing PUT.
async fn push_chunked(c: &Client, base: &str, repo: &str, blob: &Blob, chunk: usize) {
    let r = c.post(format!("{base}/v2/{repo}/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mut location = r.headers()["location"].to_str().unwrap().to_owned();
    for (i, part) in blob.data.chunks(chunk).enumerate() {
        let start = i * chunk;
        let r = c
            .patch(format!("{base}{location}"))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{start}-{}", start + part.len() - 1))
            .body(part.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "PATCH at {start}");
        location = r.headers()["location"].to_str().unwrap().to_owned();
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = c.put(format!("{base}{location}{sep}digest={}", blob.digest)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn streamed_uploads_reuse_freed_buffers_instead_of_faulting_in_fresh_pages() {
    let server = start();
    let pid = server.pid().expect("running");
    let (c, base) = (client(), server.url());
    push_blob(&c, &base, "mem/warm-up", &Blob::random(8 << 20, 1)).await;

    let before = minor_faults(pid);
    push_blob(&c, &base, "mem/whole", &Blob::random(64 << 20, 2)).await;
    push_chunked(&c, &base, "mem/chunked", &Blob::random(64 << 20, 3), 8 << 20).await;
    let faults = minor_faults(pid) - before;
    // 128 MiB is 32,768 pages. With glibc's default thresholds the body
    // buffers hyper frees are trimmed back to the kernel and faulted in again,
    // about one fault per 10 KiB received (14,000 here, against 2,500 tuned).
    assert!(faults < 6_000, "{faults} page faults in the server for 128 MiB pushed");
}
