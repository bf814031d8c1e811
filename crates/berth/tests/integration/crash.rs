//! Crash safety: SIGKILL the server while pushes are in flight, restart it on
//! the same data dir, and check that every acknowledged write survived, every
//! blob file holds the bytes its name promises, and interrupted upload sessions
//! either resume correctly or are cleanly unknown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_core::media_type::OCI_MANIFEST;
use berth_testkit::{Blob, ImageFixture};
use reqwest::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::common::{self, blob_files, client, sha256_hex};

/// What a blob-upload task achieved before the server died.
#[derive(Debug)]
struct Upload {
    what: &'static str,
    repo: String,
    blob: Blob,
    /// Session URL path, once the POST was answered.
    location: Option<String>,
    /// Bytes the server acknowledged with a 202.
    acked_bytes: u64,
    /// A 201 arrived for the whole blob.
    acked: bool,
    /// An HTTP answer nobody expected (a connection failure is expected, not this).
    unexpected: Option<String>,
}

impl Upload {
    fn new(what: &'static str, repo: &str, blob: Blob) -> Self {
        Upload { what, repo: repo.to_owned(), blob, location: None, acked_bytes: 0, acked: false, unexpected: None }
    }
}

/// What a manifest-push task achieved before the server died.
#[derive(Debug)]
struct ManifestPush {
    repo: String,
    tag: String,
    image: ImageFixture,
    acked: bool,
    unexpected: Option<String>,
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// Sends a request; `Err(None)` = connection failed (the server is gone),
/// `Err(Some(msg))` = answered with another status than `want`.
async fn send(req: reqwest::RequestBuilder, want: u16) -> Result<reqwest::Response, Option<String>> {
    let r = req.send().await.map_err(|_| None)?;
    if r.status().as_u16() == want {
        Ok(r)
    } else {
        let status = r.status();
        Err(Some(format!("status {status} (want {want}): {}", r.text().await.unwrap_or_default())))
    }
}

/// Opens a session; returns its location path.
async fn open_session(c: &Client, base: &str, u: &mut Upload) -> Result<String, Option<String>> {
    let r = send(c.post(format!("{base}/v2/{}/blobs/uploads/", u.repo)), 202).await?;
    let location = header(&r, "location");
    u.location = Some(location.clone());
    Ok(location)
}

/// Chunked upload: PATCHes of `chunk` bytes with Content-Range, `pause` between them.
async fn chunked(
    c: Client,
    base: String,
    mut u: Upload,
    chunk: usize,
    pause: Duration,
    acked: Arc<AtomicUsize>,
) -> Upload {
    let result = async {
        let location = open_session(&c, &base, &mut u).await?;
        for (i, piece) in u.blob.data.chunks(chunk).enumerate() {
            let start = i * chunk;
            let end = start + piece.len() - 1;
            send(
                c.patch(format!("{base}{location}"))
                    .header("content-type", "application/octet-stream")
                    .header("content-range", format!("{start}-{end}"))
                    .body(piece.to_vec()),
                202,
            )
            .await?;
            u.acked_bytes = end as u64 + 1;
            tokio::time::sleep(pause).await;
        }
        send(c.put(format!("{base}{location}?digest={}", u.blob.digest)), 201).await?;
        u.acked = true;
        acked.fetch_add(1, Ordering::SeqCst);
        Ok::<_, Option<String>>(())
    }
    .await;
    u.unexpected = result.err().flatten();
    u
}

/// Single `POST ?digest=` with the whole blob.
async fn monolithic(c: Client, base: String, mut u: Upload, acked: Arc<AtomicUsize>) -> Upload {
    let r = send(
        c.post(format!("{base}/v2/{}/blobs/uploads/?digest={}", u.repo, u.blob.digest))
            .header("content-type", "application/octet-stream")
            .body(u.blob.data.clone()),
        201,
    )
    .await;
    match r {
        Ok(_) => {
            u.acked = true;
            acked.fetch_add(1, Ordering::SeqCst);
        }
        Err(e) => u.unexpected = e,
    }
    u
}

/// `POST` then one `PUT ?digest=` carrying the whole blob.
async fn post_put(c: Client, base: String, mut u: Upload, acked: Arc<AtomicUsize>) -> Upload {
    let result = async {
        let location = open_session(&c, &base, &mut u).await?;
        send(
            c.put(format!("{base}{location}?digest={}", u.blob.digest))
                .header("content-type", "application/octet-stream")
                .body(u.blob.data.clone()),
            201,
        )
        .await?;
        u.acked = true;
        acked.fetch_add(1, Ordering::SeqCst);
        Ok::<_, Option<String>>(())
    }
    .await;
    u.unexpected = result.err().flatten();
    u
}

/// Writes a request announcing `body_len` bytes but sends only `sent`, then
/// waits for the connection to die. Returns the status line if (wrongly) answered.
async fn stalled_request(addr: &str, head: String, sent: &[u8], stalled: Arc<AtomicUsize>) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream.write_all(head.as_bytes()).await.ok()?;
    stream.write_all(sent).await.ok()?;
    stream.flush().await.ok()?;
    stalled.fetch_add(1, Ordering::SeqCst);
    let mut answer = Vec::new();
    // Holds the socket open (never half-closed) until the server is killed.
    let _ = stream.read_to_end(&mut answer).await;
    (!answer.is_empty()).then(|| String::from_utf8_lossy(&answer[..answer.len().min(200)]).into())
}

fn request_head(method: &str, addr: &str, target: &str, headers: &[(&str, String)]) -> String {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head + "\r\n"
}

/// One acknowledged chunk of `first` bytes, then a PATCH with the rest whose
/// body stops at 3/4: the server is killed in the middle of receiving it.
async fn stalled_chunk(
    c: Client,
    base: String,
    addr: String,
    mut u: Upload,
    first: usize,
    stalled: Arc<AtomicUsize>,
) -> Upload {
    let result = async {
        let location = open_session(&c, &base, &mut u).await?;
        send(
            c.patch(format!("{base}{location}"))
                .header("content-range", format!("0-{}", first - 1))
                .body(u.blob.data[..first].to_vec()),
            202,
        )
        .await?;
        u.acked_bytes = first as u64;
        let rest = &u.blob.data[first..];
        let head = request_head(
            "PATCH",
            &addr,
            &location,
            &[
                ("Content-Type", "application/octet-stream".into()),
                ("Content-Length", rest.len().to_string()),
                ("Content-Range", format!("{first}-{}", u.blob.data.len() - 1)),
            ],
        );
        let answer = stalled_request(&addr, head, &rest[..rest.len() * 3 / 4], stalled).await;
        Err::<(), _>(answer.map(|a| format!("stalled PATCH was answered: {a}")))
    }
    .await;
    u.unexpected = result.err().flatten();
    u
}

/// `POST`, then a closing `PUT ?digest=` with the whole blob whose body stops at 3/4.
async fn stalled_put(c: Client, base: String, addr: String, mut u: Upload, stalled: Arc<AtomicUsize>) -> Upload {
    let result = async {
        let location = open_session(&c, &base, &mut u).await?;
        let target = format!("{location}?digest={}", u.blob.digest);
        let head = request_head(
            "PUT",
            &addr,
            &target,
            &[("Content-Type", "application/octet-stream".into()), ("Content-Length", u.blob.data.len().to_string())],
        );
        let data = &u.blob.data;
        let answer = stalled_request(&addr, head, &data[..data.len() * 3 / 4], stalled).await;
        Err::<(), _>(answer.map(|a| format!("stalled PUT was answered: {a}")))
    }
    .await;
    u.unexpected = result.err().flatten();
    u
}

/// Pushes image after image into `repo` (blobs, then the manifest under a tag
/// of its own) until the server dies, so a push is in flight at the kill.
async fn push_manifests(
    c: Client,
    base: String,
    repo: String,
    task: u64,
    acked: Arc<AtomicUsize>,
) -> Vec<ManifestPush> {
    let mut pushes = Vec::new();
    for round in 0..200 {
        let mut m = ManifestPush {
            repo: repo.clone(),
            tag: format!("t{task}-r{round}"),
            image: ImageFixture::new(600 + 1000 * task + round, &[16 * 1024 + task as usize]),
            acked: false,
            unexpected: None,
        };
        let result = async {
            for blob in m.image.blobs() {
                send(
                    c.post(format!("{base}/v2/{}/blobs/uploads/?digest={}", m.repo, blob.digest))
                        .body(blob.data.clone()),
                    201,
                )
                .await?;
            }
            send(
                c.put(format!("{base}/v2/{}/manifests/{}", m.repo, m.tag))
                    .header("content-type", OCI_MANIFEST)
                    .body(m.image.manifest.clone()),
                201,
            )
            .await?;
            m.acked = true;
            acked.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Option<String>>(())
        }
        .await;
        m.unexpected = result.err().flatten();
        let go_on = m.acked;
        pushes.push(m);
        if !go_on {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    pushes
}

/// (a): every file under blobs/ hashes to its name. Returns how many there are.
fn verify_blob_files(data_dir: &std::path::Path) -> usize {
    let files = blob_files(data_dir);
    for (path, name) in &files {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&sha256_hex(&bytes), name, "{path:?} holds other bytes than its name says");
    }
    files.len()
}

/// GETs a blob; `None` if not visible. Panics if visible with the wrong bytes.
async fn fetch_verified_blob(c: &Client, base: &str, repo: &str, blob: &Blob) -> Option<Vec<u8>> {
    let r = c.get(format!("{base}/v2/{repo}/blobs/{}", blob.digest)).send().await.unwrap();
    if r.status() == 404 {
        return None;
    }
    assert_eq!(r.status(), 200, "blob {} in {repo}", blob.digest);
    let bytes = r.bytes().await.unwrap().to_vec();
    assert_eq!(
        format!("sha256:{}", sha256_hex(&bytes)),
        blob.digest.to_string(),
        "blob {} in {repo} is served with bytes of another digest",
        blob.digest
    );
    assert_eq!(bytes, blob.data);
    Some(bytes)
}

/// Where a session stands after the restart: `Some(received)` or `None` if unknown.
async fn session_status(c: &Client, base: &str, location: &str) -> Option<u64> {
    let r = c.get(format!("{base}{location}")).send().await.unwrap();
    match r.status().as_u16() {
        204 => {
            let range = header(&r, "range");
            let end: u64 = range
                .strip_prefix("0-")
                .and_then(|e| e.parse().ok())
                .unwrap_or_else(|| panic!("{location}: bad Range {range:?}"));
            // `0-0` means empty here: no chunk in these tests is a single byte.
            Some(if end == 0 { 0 } else { end + 1 })
        }
        404 => {
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["errors"][0]["code"], "BLOB_UPLOAD_UNKNOWN", "{location}");
            None
        }
        other => panic!("{location}: status {other} after restart (want 204 or 404)"),
    }
}

/// Sends the rest of a blob from `received` on and closes the session; checks the result.
async fn finish_session(c: &Client, base: &str, location: &str, received: u64, blob: &Blob) {
    let len = blob.data.len() as u64;
    if received < len {
        let r = c
            .patch(format!("{base}{location}"))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{received}-{}", len - 1))
            .body(blob.data[received as usize..].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "resume PATCH {location}: {:?}", r.text().await);
        assert_eq!(header(&r, "range"), format!("0-{}", len - 1));
    }
    let r = c.put(format!("{base}{location}?digest={}", blob.digest)).send().await.unwrap();
    assert_eq!(r.status(), 201, "resume PUT {location}: {:?}", r.text().await);
    assert_eq!(header(&r, "docker-content-digest"), blob.digest.to_string());
}

#[tokio::test]
async fn sigkill_during_concurrent_pushes_loses_nothing_acknowledged() {
    let started = Instant::now();
    let mut server = common::start();
    let base = server.url();
    let addr = server.addr.clone();
    let c = client();
    let acked_blobs = Arc::new(AtomicUsize::new(0));
    let acked_manifests = Arc::new(AtomicUsize::new(0));
    let stalled = Arc::new(AtomicUsize::new(0));
    const MIB: usize = 1024 * 1024;

    let mut uploads: Vec<JoinHandle<Upload>> = Vec::new();
    let blob = |seed: u64, len: usize| Blob::random(len, 500 + seed);
    // Fast chunked uploads: done long before the kill.
    for i in 0..3 {
        let u = Upload::new("fast chunked", "crash/chunked", blob(i, MIB + 1000 * i as usize));
        uploads.push(tokio::spawn(chunked(
            c.clone(),
            base.clone(),
            u,
            256 * 1024,
            Duration::ZERO,
            acked_blobs.clone(),
        )));
    }
    // Slow chunked uploads: still sending chunks when the server dies.
    for i in 3..5 {
        let u = Upload::new("slow chunked", "crash/chunked", blob(i, 4 * MIB + 17));
        uploads.push(tokio::spawn(chunked(
            c.clone(),
            base.clone(),
            u,
            256 * 1024,
            Duration::from_millis(300),
            acked_blobs.clone(),
        )));
    }
    for i in 5..7 {
        let u = Upload::new("monolithic POST", "crash/mono", blob(i, 3 * MIB - 5));
        uploads.push(tokio::spawn(monolithic(c.clone(), base.clone(), u, acked_blobs.clone())));
    }
    let u = Upload::new("POST + PUT", "crash/mono", blob(7, 2 * MIB + 3));
    uploads.push(tokio::spawn(post_put(c.clone(), base.clone(), u, acked_blobs.clone())));
    // Killed mid-body: a chunk PATCH and a closing PUT.
    let u = Upload::new("stalled chunk", "crash/stalled", blob(8, 3 * MIB));
    uploads.push(tokio::spawn(stalled_chunk(c.clone(), base.clone(), addr.clone(), u, MIB, stalled.clone())));
    let u = Upload::new("stalled PUT", "crash/stalled", blob(9, 2 * MIB + 100));
    uploads.push(tokio::spawn(stalled_put(c.clone(), base.clone(), addr.clone(), u, stalled.clone())));

    // Eight pushers, each pushing image after image until the server dies.
    let mut manifests: Vec<JoinHandle<Vec<ManifestPush>>> = Vec::new();
    for task in 0..8u64 {
        let repo = format!("crash/app{}", task % 3);
        manifests.push(tokio::spawn(push_manifests(c.clone(), base.clone(), repo, task, acked_manifests.clone())));
    }

    // Kill once some pushes are acknowledged and others are surely in flight.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && !(acked_blobs.load(Ordering::SeqCst) >= 4
            && acked_manifests.load(Ordering::SeqCst) >= 10
            && stalled.load(Ordering::SeqCst) >= 2)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the server put some of the stalled bodies on disk.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();
    let killed_at = started.elapsed();

    let mut uploads_done = Vec::new();
    for t in uploads {
        uploads_done.push(t.await.unwrap());
    }
    let mut manifests_done = Vec::new();
    for t in manifests {
        manifests_done.extend(t.await.unwrap());
    }
    for u in &uploads_done {
        assert!(u.unexpected.is_none(), "{} {}: {:?}", u.what, u.blob.digest, u.unexpected);
    }
    for m in &manifests_done {
        assert!(m.unexpected.is_none(), "{}:{}: {:?}", m.repo, m.tag, m.unexpected);
    }
    let acked_uploads = uploads_done.iter().filter(|u| u.acked).count();
    let interrupted = uploads_done.iter().filter(|u| !u.acked && u.location.is_some()).count();
    let acked_pushes = manifests_done.iter().filter(|m| m.acked).count();
    let cut_pushes = manifests_done.len() - acked_pushes;
    assert!(
        acked_uploads >= 1 && interrupted >= 2 && acked_pushes >= 1 && cut_pushes >= 1,
        "the kill must land mid-push: {acked_uploads} uploads acknowledged, {interrupted} interrupted, \
         {acked_pushes} manifests acknowledged, {cut_pushes} cut off"
    );

    server.restart();
    let base = server.url();

    // (a) Every blob file holds the bytes its name promises.
    verify_blob_files(server.data_dir());

    // (b) Everything acknowledged is served byte for byte.
    for u in uploads_done.iter().filter(|u| u.acked) {
        let got = fetch_verified_blob(&c, &base, &u.repo, &u.blob).await;
        assert!(got.is_some(), "acknowledged {} blob {} is lost", u.what, u.blob.digest);
    }
    for m in manifests_done.iter().filter(|m| m.acked) {
        let r = c.get(format!("{base}/v2/{}/manifests/{}", m.repo, m.tag)).send().await.unwrap();
        assert_eq!(r.status(), 200, "acknowledged manifest {}:{} is lost", m.repo, m.tag);
        assert_eq!(header(&r, "docker-content-digest"), m.image.digest.to_string());
        assert_eq!(r.bytes().await.unwrap().as_ref(), m.image.manifest.as_slice());
        for blob in m.image.blobs() {
            let got = fetch_verified_blob(&c, &base, &m.repo, blob).await;
            assert!(got.is_some(), "blob {} of {}:{} is lost", blob.digest, m.repo, m.tag);
        }
    }

    // (c) Interrupted sessions resume from where they were, or are unknown.
    let mut resumed = 0;
    for u in uploads_done.iter().filter(|u| !u.acked) {
        let Some(location) = &u.location else { continue };
        // A 404 (BLOB_UPLOAD_UNKNOWN, checked by session_status) is the other legal answer.
        if let Some(received) = session_status(&c, &base, location).await {
            assert!(
                received >= u.acked_bytes && received <= u.blob.data.len() as u64,
                "{} {location}: {received} bytes after restart, {} were acknowledged",
                u.what,
                u.acked_bytes
            );
            finish_session(&c, &base, location, received, &u.blob).await;
            let got = fetch_verified_blob(&c, &base, &u.repo, &u.blob).await;
            assert!(got.is_some(), "resumed blob {} is not visible", u.blob.digest);
            resumed += 1;
        }
    }

    // (d) No visible blob or manifest has bytes that do not match its digest.
    for u in &uploads_done {
        fetch_verified_blob(&c, &base, &u.repo, &u.blob).await;
    }
    for m in &manifests_done {
        for blob in m.image.blobs() {
            fetch_verified_blob(&c, &base, &m.repo, blob).await;
        }
        let r = c.get(format!("{base}/v2/{}/manifests/{}", m.repo, m.tag)).send().await.unwrap();
        if r.status() == 200 {
            assert_eq!(r.bytes().await.unwrap().as_ref(), m.image.manifest.as_slice());
        } else {
            assert_eq!(r.status(), 404);
        }
    }
    let files = verify_blob_files(server.data_dir());
    eprintln!(
        "killed at {killed_at:?}: {acked_uploads} uploads and {acked_pushes} manifests acknowledged, \
         {interrupted} sessions interrupted ({resumed} resumed), {cut_pushes} manifest pushes cut off; \
         {files} blob files verified; total {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn chunked_upload_resumes_after_kill_from_its_acknowledged_bytes() {
    let started = Instant::now();
    let mut server = common::start();
    let base = server.url();
    let addr = server.addr.clone();
    let c = client();
    let blob = Blob::random(3_000_000, 4242);
    let (c1, c2) = (600_000usize, 1_200_000usize);

    let r = c.post(format!("{base}/v2/crash/resume/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let location = header(&r, "location");
    let id = header(&r, "docker-upload-uuid");
    for (start, end) in [(0, c1), (c1, c2)] {
        let r = c
            .patch(format!("{base}{location}"))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{start}-{}", end - 1))
            .body(blob.data[start..end].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        assert_eq!(header(&r, "range"), format!("0-{}", end - 1));
    }

    // A third chunk that never finishes arriving: its first MiB reaches the
    // staged file, but was never acknowledged.
    let rest = &blob.data[c2..];
    let head = request_head(
        "PATCH",
        &addr,
        &location,
        &[
            ("Content-Type", "application/octet-stream".into()),
            ("Content-Length", rest.len().to_string()),
            ("Content-Range", format!("{c2}-{}", blob.data.len() - 1)),
        ],
    );
    let partial = rest[..1_300_000].to_vec();
    let stalled = tokio::spawn({
        let addr = addr.clone();
        async move { stalled_request(&addr, head, &partial, Arc::default()).await }
    });
    let staged = server.data_dir().join("uploads").join(&id);
    let staged_len = || std::fs::metadata(&staged).map(|m| m.len()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while staged_len() <= c2 as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill();
    assert_eq!(stalled.await.unwrap(), None, "the stalled PATCH was never answered");
    assert!(
        staged_len() > c2 as u64,
        "unacknowledged bytes of the third chunk reached the staged file ({} bytes)",
        staged_len()
    );

    server.restart();
    let base = server.url();
    let r = c.get(format!("{base}{location}")).send().await.unwrap();
    assert_eq!(r.status(), 204, "the session survives the restart");
    assert_eq!(header(&r, "range"), format!("0-{}", c2 - 1), "only acknowledged bytes count");
    assert_eq!(header(&r, "docker-upload-uuid"), id);
    assert_eq!(staged_len(), c2 as u64, "unacknowledged bytes were dropped");

    let r = c
        .patch(format!("{base}{location}"))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("{c2}-{}", blob.data.len() - 1))
        .body(rest.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), format!("0-{}", blob.data.len() - 1));
    let r = c.put(format!("{base}{location}?digest={}", blob.digest)).send().await.unwrap();
    assert_eq!(r.status(), 201, "the digest of the whole blob matches: {:?}", r.text().await);
    fetch_verified_blob(&c, &base, "crash/resume", &blob).await.expect("the resumed blob is visible");
    assert_eq!(verify_blob_files(server.data_dir()), 1);
    assert!(!staged.exists(), "the completed session's staged file is gone");
    eprintln!("resume after kill: {:?}", started.elapsed());
}

/// A power loss can leave a staged file that lacks acknowledged bytes (zeros
/// where the page cache held them) under a session record that survived. The
/// restarted server must not trust the saved hash state for it: the commit
/// checks the digest against the bytes the file really holds.
#[tokio::test]
async fn a_session_resumed_after_a_restart_is_checked_against_its_staged_bytes() {
    use std::os::unix::fs::FileExt;
    let mut server = common::start();
    let base = server.url();
    let c = client();
    let blob = Blob::random(2_000_000, 4343);
    let r = c.post(format!("{base}/v2/crash/lost/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let location = header(&r, "location");
    let id = header(&r, "docker-upload-uuid");
    let r = c
        .patch(format!("{base}{location}"))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("0-{}", blob.data.len() - 1))
        .body(blob.data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    server.kill();
    // What a power loss may leave: the length recorded, some bytes never written.
    let staged = std::fs::OpenOptions::new().write(true).open(server.data_dir().join("uploads").join(&id)).unwrap();
    staged.write_all_at(&[0u8; 100_000], 500_000).unwrap();
    drop(staged);

    server.restart();
    let (c, base) = (client(), server.url()); // no connection of the killed server
    let r = c.put(format!("{base}{location}?digest={}", blob.digest)).send().await.unwrap();
    assert_eq!(r.status(), 400, "the staged bytes do not have the blob's digest");
    assert_eq!(common::error_code(r).await, "DIGEST_INVALID");
    let r = c.head(format!("{base}/v2/crash/lost/blobs/{}", blob.digest)).send().await.unwrap();
    assert_eq!(r.status(), 404, "no blob was published with the wrong bytes");
    assert_eq!(verify_blob_files(server.data_dir()), 0);
}
