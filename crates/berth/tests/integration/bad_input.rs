//! Malformed input on `/v2`, table-driven: every case is one raw HTTP request
//! (so paths reach berth exactly as written, `%2e%2e` and `//` included) with the
//! status, OCI error code and headers it must get. After the table, the test
//! checks that none of the rejected requests stored anything.

use std::collections::BTreeSet;
use std::time::Duration;

use berth_core::media_type::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use berth_testkit::{Blob, ImageFixture};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{self, client, push_image, sha256_hex};

/// A request body as sent on the wire.
#[derive(Clone)]
enum ReqBody {
    Empty,
    /// Sent with `Content-Length` (unless the case sets its own).
    Bytes(Vec<u8>),
    /// Sent with `Transfer-Encoding: chunked` and no length.
    Chunked(Vec<u8>),
}

/// One row of the table.
struct Case {
    what: String,
    method: &'static str,
    /// Request target exactly as sent: path and query, never normalised.
    target: String,
    headers: Vec<(String, String)>,
    body: ReqBody,
    status: u16,
    /// `errors[0].code`; `None` = not checked (success, HEAD, or no code specified).
    code: Option<&'static str>,
    /// How many entries `errors` must have.
    error_count: Option<usize>,
    /// Response headers that must be present with exactly this value.
    expect_headers: Vec<(&'static str, String)>,
}

fn case(
    what: impl Into<String>,
    method: &'static str,
    target: impl Into<String>,
    status: u16,
    code: Option<&'static str>,
) -> Case {
    Case {
        what: what.into(),
        method,
        target: target.into(),
        headers: Vec::new(),
        body: ReqBody::Empty,
        status,
        code,
        error_count: None,
        expect_headers: Vec::new(),
    }
}

impl Case {
    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = ReqBody::Bytes(body.into());
        self
    }

    fn chunked(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = ReqBody::Chunked(body.into());
        self
    }

    /// A manifest body with its `Content-Type`.
    fn manifest(self, media_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.header("Content-Type", media_type).body(body)
    }

    fn expect(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.expect_headers.push((name, value.into()));
        self
    }

    fn errors(mut self, n: usize) -> Self {
        self.error_count = Some(n);
        self
    }
}

/// A response read off the socket.
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request over a fresh connection, byte for byte as given,
/// and reads the whole response. The body is written concurrently with reading,
/// so an early answer (413 before the body is read) is still seen.
async fn raw_request(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &ReqBody,
) -> RawResponse {
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let payload = match body {
        ReqBody::Empty => {
            if matches!(method, "PUT" | "POST" | "PATCH") && !has("content-length") {
                head.push_str("Content-Length: 0\r\n");
            }
            Vec::new()
        }
        ReqBody::Bytes(b) => {
            if !has("content-length") {
                head.push_str(&format!("Content-Length: {}\r\n", b.len()));
            }
            b.clone()
        }
        ReqBody::Chunked(b) => {
            head.push_str("Transfer-Encoding: chunked\r\n");
            let mut out = Vec::with_capacity(b.len() + 1024);
            for piece in b.chunks(64 * 1024) {
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            out
        }
    };
    head.push_str("\r\n");

    let stream = TcpStream::connect(addr).await.expect("connect to berth");
    let (mut rd, mut wr) = stream.into_split();
    // The writer hands its half back so the socket is not half-closed before
    // the answer is read (hyper drops half-closed connections).
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        wr.write_all(&payload).await?;
        wr.flush().await?;
        Ok::<_, std::io::Error>(wr)
    });
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match rd.read_buf(&mut raw).await {
                Ok(0) => break,
                Ok(_) => {}
                // A reset after the answer arrived (the server did not read our body).
                Err(_) if !raw.is_empty() => break,
                Err(e) => panic!("{method} {target}: read failed: {e}"),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "{method} {target}: no complete answer in 30 s");
    let _ = writer.await;
    parse_response(&raw, method == "HEAD").unwrap_or_else(|| panic!("{method} {target}: unparsable answer {raw:?}"))
}

fn parse_response(raw: &[u8], head_request: bool) -> Option<RawResponse> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if head_request {
        rest.to_vec()
    } else if chunked {
        decode_chunked(rest)?
    } else {
        match headers.iter().find(|(k, _)| k == "content-length") {
            Some((_, len)) => rest.get(..len.parse::<usize>().ok()?)?.to_vec(),
            None => rest.to_vec(),
        }
    };
    Some(RawResponse { status, headers, body })
}

fn decode_chunked(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Checks one answer against its case; returns what is wrong, if anything.
fn check(case: &Case, r: &RawResponse) -> Vec<String> {
    let mut problems = Vec::new();
    if r.status != case.status {
        problems.push(format!("status {} (want {})", r.status, case.status));
    }
    if r.header("docker-distribution-api-version") != Some("registry/2.0") {
        problems.push(format!("Docker-Distribution-API-Version is {:?}", r.header("docker-distribution-api-version")));
    }
    for (name, want) in &case.expect_headers {
        if r.header(name) != Some(want.as_str()) {
            problems.push(format!("{name}: {:?} (want {want:?})", r.header(name)));
        }
    }
    if case.method == "HEAD" {
        if !r.body.is_empty() {
            problems.push(format!("HEAD answer has a {}-byte body", r.body.len()));
        }
        return problems;
    }
    if r.status >= 400 {
        // Every /v2 error is {"errors":[{"code","message","detail"}, …]}.
        let body: Option<Value> = serde_json::from_slice(&r.body).ok();
        let errors = body
            .as_ref()
            .and_then(|b| b["errors"].as_array())
            .filter(|e| !e.is_empty() && e.iter().all(|e| e["code"].is_string()));
        match errors {
            None => problems.push("body is not an OCI error list".to_owned()),
            Some(errors) => {
                let first = errors[0]["code"].as_str().unwrap_or_default();
                if let Some(code) = case.code
                    && first != code
                {
                    problems.push(format!("code {first} (want {code})"));
                }
                if let Some(n) = case.error_count
                    && errors.len() != n
                {
                    problems.push(format!("{} error entries (want {n})", errors.len()));
                }
                if let Some(code) = case.code
                    && first == code
                    && errors.iter().any(|e| e["code"] != code)
                {
                    problems.push("error entries have mixed codes".to_owned());
                }
            }
        }
    } else if case.code.is_some() {
        problems.push("an error code was expected".to_owned());
    }
    problems
}

/// A valid OCI manifest over `config` and `layers` (descriptors), with an annotation
/// so each call yields distinct bytes.
fn manifest_json(config: &Value, layers: &[Value], note: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
        "annotations": {"note": note},
    }))
    .unwrap()
}

/// A descriptor of a blob nobody pushes.
fn unknown_descriptor(seed: u64) -> Value {
    Blob::random(64, 9_000 + seed).descriptor("application/vnd.oci.image.layer.v1.tar")
}

#[tokio::test]
async fn malformed_requests_are_rejected_and_store_nothing() {
    let server = common::start();
    let base = server.url();
    let addr = server.addr.clone();
    let c = client();

    // --- Setup: one image in good/app:v1, two upload sessions.
    let image = ImageFixture::new(41, &[1000, 2000]);
    push_image(&c, &base, "good/app", &image, "v1").await;
    let layer = &image.layers[0];
    let size = layer.data.len();
    let config_desc = image.config.descriptor("application/vnd.oci.image.config.v1+json");
    let layer_descs: Vec<Value> =
        image.layers.iter().map(|l| l.descriptor("application/vnd.oci.image.layer.v1.tar")).collect();

    let open_session = |c: reqwest::Client, base: String| async move {
        let r = c.post(format!("{base}/v2/good/app/blobs/uploads/")).send().await.unwrap();
        assert_eq!(r.status(), 202);
        r.headers()["docker-upload-uuid"].to_str().unwrap().to_owned()
    };
    let first_chunk = Blob::random(10, 1).data;
    let second_chunk = Blob::random(10, 2).data;
    let whole = Blob::new([first_chunk.clone(), second_chunk.clone()].concat());
    // `resumable` gets first_chunk now; the table probes it, then completes it.
    let resumable = open_session(c.clone(), base.clone()).await;
    // `doomed` gets first_chunk now; the table closes it with a wrong digest.
    let doomed = open_session(c.clone(), base.clone()).await;
    for id in [&resumable, &doomed] {
        let r = c
            .patch(format!("{base}/v2/good/app/blobs/uploads/{id}"))
            .header("content-range", "0-9")
            .body(first_chunk.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let up = |id: &str| format!("/v2/good/app/blobs/uploads/{id}");

    // Content that must never become visible.
    let never = Blob::random(777, 3);
    let other = Blob::random(778, 4);
    let doomed_claim = Blob::random(10, 5); // what `doomed` is closed with
    let fresh_manifest = manifest_json(&config_desc, &layer_descs, "fresh");
    let fresh_digest = format!("sha256:{}", sha256_hex(&fresh_manifest));
    let unknown1_desc = unknown_descriptor(1);
    let unknown2_desc = unknown_descriptor(2);
    let missing_blobs_manifest =
        manifest_json(&config_desc, &[unknown1_desc.clone(), unknown2_desc.clone()], "missing");
    let all_missing_manifest = manifest_json(&unknown1_desc, std::slice::from_ref(&unknown2_desc), "all-missing");
    let absent_child = Blob::random(99, 6).digest;
    let index_missing_child = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": absent_child, "size": 99}],
    }))
    .unwrap();
    let schema1 = br#"{"schemaVersion":1,"name":"good/app","tag":"rejected","architecture":"amd64","fsLayers":[],"history":[],"signatures":[]}"#.to_vec();
    let deep_array = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_object = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","x":{}1{}}}"#,
        r#"{"a":"#.repeat(10_000),
        "}".repeat(10_000)
    );
    let huge = {
        // 5 MiB of valid-looking JSON: a manifest with a huge annotation.
        let mut m = String::from_utf8(manifest_json(&config_desc, &layer_descs, "")).unwrap();
        let pad = "x".repeat(5 * 1024 * 1024);
        m = m.replace(r#""note":"""#, &format!(r#""note":"{pad}""#));
        m.into_bytes()
    };

    let hex64 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let bad_digests: Vec<(&str, String)> = vec![
        ("not hex", "sha256:nothexnothexnothexnothexnothexnothexnothexnothexnothexnothexno".into()),
        ("too short", format!("sha256:{}", &hex64[..63])),
        ("too long", format!("sha256:{hex64}0")),
        ("uppercase hex", format!("sha256:{}", hex64.to_uppercase())),
        ("uppercase algorithm", format!("SHA256:{hex64}")),
        ("md5", "md5:d41d8cd98f00b204e9800998ecf8427e".into()),
        ("sha512 with 64 hex", format!("sha512:{hex64}")),
        ("no algorithm", format!(":{hex64}")),
        ("no encoding", "sha256:".into()),
        ("no colon", hex64.into()),
        ("dot-dot", "sha256:%2e%2e".into()),
    ];
    let long_name = "a".repeat(256);
    let max_name = "a".repeat(255);
    let long_tag = "t".repeat(129);
    let random_uuid = "0b3ba3a0-4f3e-4a7e-9c36-5a4b0f0d2f11";
    let allow_manifest = "GET, HEAD, PUT, DELETE";

    let mut cases: Vec<Case> = Vec::new();

    // --- Repository names → 400 NAME_INVALID.
    for (what, name) in [
        ("uppercase", "Upper/app"),
        ("uppercase second component", "good/App"),
        ("raw ..", ".."),
        ("raw . component", "./a"),
        ("raw .. in the middle", "good/../app"),
        ("empty component", "a//b"),
        ("leading separator", "/a"),
        ("trailing separator", "a/"),
        ("leading dash", "-a"),
        ("trailing dash", "a-"),
        ("leading underscore", "_a"),
        ("triple underscore", "a___b"),
        ("%2e%2e", "%2e%2e"),
        ("%2E%2E path trick", "%2E%2E/%2e%2e/etc"),
        ("..%2F.. path trick", "..%2F..%2Fetc"),
        ("encoded empty component", "a%2F%2Fb"),
        ("encoded space", "a%20b"),
        ("encoded NUL", "a%00b"),
        ("non-ASCII", "caf%C3%A9"),
        ("invalid UTF-8", "a%FFb"),
        ("reserved _catalog as a name", "_catalog"),
        ("256 characters", long_name.as_str()),
    ] {
        cases.push(case(
            format!("name {what}: tags/list"),
            "GET",
            format!("/v2/{name}/tags/list"),
            400,
            Some("NAME_INVALID"),
        ));
    }
    for (what, name) in [
        ("uppercase", "Bad/name"),
        ("%2e%2e", "%2e%2e"),
        ("empty component", "a//b"),
        ("256 characters", long_name.as_str()),
    ] {
        cases.push(case(
            format!("name {what}: upload POST"),
            "POST",
            format!("/v2/{name}/blobs/uploads/"),
            400,
            Some("NAME_INVALID"),
        ));
        cases.push(
            case(
                format!("name {what}: monolithic POST"),
                "POST",
                format!("/v2/{name}/blobs/uploads/?digest={}", never.digest),
                400,
                Some("NAME_INVALID"),
            )
            .body(never.data.clone()),
        );
        cases.push(
            case(
                format!("name {what}: manifest PUT"),
                "PUT",
                format!("/v2/{name}/manifests/v1"),
                400,
                Some("NAME_INVALID"),
            )
            .manifest(OCI_MANIFEST, image.manifest.clone()),
        );
        cases.push(case(
            format!("name {what}: blob GET"),
            "GET",
            format!("/v2/{name}/blobs/{}", layer.digest),
            400,
            Some("NAME_INVALID"),
        ));
    }
    cases.push(case(
        "255-character name is valid (unknown)",
        "GET",
        format!("/v2/{max_name}/tags/list"),
        404,
        Some("NAME_UNKNOWN"),
    ));
    cases.push(case("%2F-encoded name is accepted", "GET", "/v2/good%2Fapp/tags/list", 200, None));

    // --- Digests in paths and queries → 400 DIGEST_INVALID.
    for (what, d) in &bad_digests {
        cases.push(case(
            format!("blob GET digest {what}"),
            "GET",
            format!("/v2/good/app/blobs/{d}"),
            400,
            Some("DIGEST_INVALID"),
        ));
        cases.push(
            case(
                format!("monolithic POST ?digest= {what}"),
                "POST",
                format!("/v2/rejected/digest/blobs/uploads/?digest={d}"),
                400,
                Some("DIGEST_INVALID"),
            )
            .body(never.data.clone()),
        );
    }
    for (what, d) in bad_digests.iter().take(6) {
        cases.push(case(format!("blob HEAD digest {what}"), "HEAD", format!("/v2/good/app/blobs/{d}"), 400, None));
        cases.push(case(
            format!("blob DELETE digest {what}"),
            "DELETE",
            format!("/v2/good/app/blobs/{d}"),
            400,
            Some("DIGEST_INVALID"),
        ));
        cases.push(case(
            format!("manifest GET digest {what}"),
            "GET",
            format!("/v2/good/app/manifests/{d}"),
            400,
            Some("DIGEST_INVALID"),
        ));
        cases.push(case(
            format!("referrers digest {what}"),
            "GET",
            format!("/v2/good/app/referrers/{d}"),
            400,
            Some("DIGEST_INVALID"),
        ));
        cases.push(
            case(
                format!("closing PUT ?digest= {what}"),
                "PUT",
                format!("{}?digest={d}", up(&resumable)),
                400,
                Some("DIGEST_INVALID"),
            )
            .body(second_chunk.clone()),
        );
        cases.push(
            case(
                format!("manifest PUT by digest {what}"),
                "PUT",
                format!("/v2/good/app/manifests/{d}"),
                400,
                Some("DIGEST_INVALID"),
            )
            .manifest(OCI_MANIFEST, fresh_manifest.clone()),
        );
    }
    cases.push(case(
        "mount= md5 digest",
        "POST",
        "/v2/rejected/digest/blobs/uploads/?mount=md5:d41d8cd98f00b204e9800998ecf8427e&from=good/app",
        400,
        Some("DIGEST_INVALID"),
    ));
    cases.push(case(
        "digest-algorithm=md5",
        "POST",
        "/v2/rejected/digest/blobs/uploads/?digest-algorithm=md5",
        400,
        Some("DIGEST_INVALID"),
    ));
    cases.push(case(
        "well-formed but unknown blob",
        "GET",
        format!("/v2/good/app/blobs/{}", never.digest),
        404,
        Some("BLOB_UNKNOWN"),
    ));

    // --- Uploads whose bytes do not match the digest.
    cases.push(
        case(
            "monolithic POST, body does not match ?digest= (new repo)",
            "POST",
            format!("/v2/rejected/blob/blobs/uploads/?digest={}", never.digest),
            400,
            Some("DIGEST_INVALID"),
        )
        .body(other.data.clone()),
    );
    cases.push(
        case(
            "monolithic POST, body does not match ?digest= (existing repo)",
            "POST",
            format!("/v2/good/app/blobs/uploads/?digest={}", never.digest),
            400,
            Some("DIGEST_INVALID"),
        )
        .body(other.data.clone()),
    );
    cases.push(case(
        "monolithic POST, empty body for a non-empty digest",
        "POST",
        format!("/v2/good/app/blobs/uploads/?digest={}", never.digest),
        400,
        Some("DIGEST_INVALID"),
    ));
    cases.push(
        case(
            "monolithic POST, chunked body does not match",
            "POST",
            format!("/v2/good/app/blobs/uploads/?digest={}", never.digest),
            400,
            Some("DIGEST_INVALID"),
        )
        .chunked(other.data.clone()),
    );
    cases.push(
        case(
            "closing PUT, content does not match ?digest=",
            "PUT",
            format!("{}?digest={}", up(&doomed), doomed_claim.digest),
            400,
            Some("DIGEST_INVALID"),
        )
        .header("Content-Range", "10-19")
        .body(second_chunk.clone()),
    );
    cases.push(case(
        "session closed by a digest mismatch is gone",
        "GET",
        up(&doomed),
        404,
        Some("BLOB_UPLOAD_UNKNOWN"),
    ));

    // --- Chunk ranges on the `resumable` session (10 bytes received).
    let range_9 = || vec![("range", "0-9".to_owned())];
    for (what, content_range, body) in [
        ("malformed Content-Range", "garbage", second_chunk.clone()),
        ("Content-Range without end", "10-", second_chunk.clone()),
        ("Content-Range end before start", "19-10", second_chunk.clone()),
        ("Content-Range with letters", "ten-nineteen", second_chunk.clone()),
        ("out of order: first chunk again", "0-9", first_chunk.clone()),
        ("out of order: gap", "20-29", second_chunk.clone()),
        ("out of order: overlap", "5-14", second_chunk.clone()),
        ("Content-Range longer than body", "10-29", second_chunk.clone()),
        ("Content-Range shorter than body", "10-14", second_chunk.clone()),
    ] {
        let mut c = case(format!("PATCH {what}"), "PATCH", up(&resumable), 416, Some("BLOB_UPLOAD_INVALID"))
            .header("Content-Range", content_range)
            .header("Content-Type", "application/octet-stream")
            .body(body);
        for (k, v) in range_9() {
            c = c.expect(k, v);
        }
        cases.push(c.expect("docker-upload-uuid", resumable.clone()));
    }
    cases.push(
        case(
            "closing PUT with an out-of-order final chunk",
            "PUT",
            format!("{}?digest={}", up(&resumable), whole.digest),
            416,
            Some("BLOB_UPLOAD_INVALID"),
        )
        .header("Content-Range", "0-9")
        .body(first_chunk.clone())
        .expect("range", "0-9"),
    );
    cases.push(
        case(
            "closing PUT with a malformed final Content-Range",
            "PUT",
            format!("{}?digest={}", up(&resumable), whole.digest),
            416,
            Some("BLOB_UPLOAD_INVALID"),
        )
        .header("Content-Range", "bytes")
        .body(second_chunk.clone())
        .expect("range", "0-9"),
    );
    cases.push(case("closing PUT without digest", "PUT", up(&resumable), 400, Some("DIGEST_INVALID")));
    cases.push(
        case("closing PUT without digest, with the last chunk", "PUT", up(&resumable), 400, Some("DIGEST_INVALID"))
            .header("Content-Range", "10-19")
            .body(second_chunk.clone()),
    );
    cases.push(
        case(
            "session of another repository",
            "PATCH",
            format!("/v2/good/other/blobs/uploads/{resumable}"),
            404,
            Some("BLOB_UPLOAD_UNKNOWN"),
        )
        .header("Content-Range", "10-19")
        .body(second_chunk.clone()),
    );
    cases.push(
        case("session survives: status", "GET", up(&resumable), 204, None)
            .expect("range", "0-9")
            .expect("docker-upload-uuid", resumable.clone())
            .expect("location", up(&resumable)),
    );
    cases.push(
        case("session survives: next chunk", "PATCH", up(&resumable), 202, None)
            .header("Content-Range", "10-19")
            .header("Content-Type", "application/octet-stream")
            .body(second_chunk.clone())
            .expect("range", "0-19"),
    );
    cases.push(
        case("session survives: close", "PUT", format!("{}?digest={}", up(&resumable), whole.digest), 201, None)
            .expect("docker-content-digest", whole.digest.to_string()),
    );
    cases.push(case("completed session is gone", "GET", up(&resumable), 404, Some("BLOB_UPLOAD_UNKNOWN")));
    cases.push(
        case("completed blob is whole", "HEAD", format!("/v2/good/app/blobs/{}", whole.digest), 200, None)
            .expect("content-length", "20"),
    );

    // --- Unknown upload sessions → 404 BLOB_UPLOAD_UNKNOWN.
    for (what, id) in [
        ("random UUID", random_uuid.to_owned()),
        ("not a UUID", "not-a-uuid".to_owned()),
        ("number", "12345".to_owned()),
        ("raw ..", "..".to_owned()),
        ("%2e%2e", "%2e%2e".to_owned()),
        ("300 characters", "f".repeat(300)),
    ] {
        cases.push(case(format!("upload status, {what}"), "GET", up(&id), 404, Some("BLOB_UPLOAD_UNKNOWN")));
        cases.push(
            case(format!("upload PATCH, {what}"), "PATCH", up(&id), 404, Some("BLOB_UPLOAD_UNKNOWN"))
                .body(never.data.clone()),
        );
        cases.push(
            case(
                format!("upload PUT, {what}"),
                "PUT",
                format!("{}?digest={}", up(&id), never.digest),
                404,
                Some("BLOB_UPLOAD_UNKNOWN"),
            )
            .body(never.data.clone()),
        );
        cases.push(case(format!("upload DELETE, {what}"), "DELETE", up(&id), 404, Some("BLOB_UPLOAD_UNKNOWN")));
    }
    cases.push(
        case(
            "PATCH with malformed Content-Range on an unknown session",
            "PATCH",
            up(random_uuid),
            404,
            Some("BLOB_UPLOAD_UNKNOWN"),
        )
        .header("Content-Range", "garbage")
        .body(never.data.clone()),
    );

    // --- Ranges on blob GET.
    let blob_path = format!("/v2/good/app/blobs/{}", layer.digest);
    let star = format!("bytes */{size}");
    for (what, range) in [
        ("malformed", "garbage".to_owned()),
        ("letters", "bytes=a-b".to_owned()),
        ("empty spec", "bytes=".to_owned()),
        ("lone dash", "bytes=-".to_owned()),
        ("end before start", "bytes=9-2".to_owned()),
        ("starts at size", format!("bytes={size}-")),
        ("beyond the end", format!("bytes={}-{}", size + 10, size + 20)),
        ("empty suffix", "bytes=-0".to_owned()),
    ] {
        cases.push(
            case(format!("Range {what}"), "GET", &blob_path, 416, None)
                .header("Range", range)
                .expect("content-range", star.clone()),
        );
    }
    cases.push(
        case("Range satisfiable", "GET", &blob_path, 206, None)
            .header("Range", "bytes=0-9")
            .expect("content-range", format!("bytes 0-9/{size}")),
    );
    cases.push(case("Range of another unit is ignored", "GET", &blob_path, 200, None).header("Range", "items=0-9"));

    // --- Manifests.
    let put = |what: &str, reference: &str, status: u16, code: &'static str| {
        case(format!("manifest PUT: {what}"), "PUT", format!("/v2/good/app/manifests/{reference}"), status, Some(code))
    };
    cases.push(put("invalid JSON", "rejected", 400, "MANIFEST_INVALID").manifest(OCI_MANIFEST, "{"));
    cases.push(put("JSON array", "rejected", 400, "MANIFEST_INVALID").manifest(OCI_MANIFEST, "[]"));
    cases.push(put("JSON string", "rejected", 400, "MANIFEST_INVALID").manifest(OCI_MANIFEST, r#""x""#));
    cases.push(put("JSON null", "rejected", 400, "MANIFEST_INVALID").manifest(OCI_MANIFEST, "null"));
    cases.push(put("empty body", "rejected", 400, "MANIFEST_INVALID").manifest(OCI_MANIFEST, ""));
    cases.push(
        put("docker schema1 (signed)", "rejected", 415, "MANIFEST_INVALID")
            .manifest("application/vnd.docker.distribution.manifest.v1+prettyjws", schema1.clone()),
    );
    cases.push(
        put("docker schema1", "rejected", 415, "MANIFEST_INVALID")
            .manifest("application/vnd.docker.distribution.manifest.v1+json", schema1.clone()),
    );
    cases.push(put("unknown media type", "rejected", 415, "MANIFEST_INVALID").manifest(
        "application/vnd.example.thing+json",
        br#"{"schemaVersion":2,"mediaType":"application/vnd.example.thing+json"}"#.to_vec(),
    ));
    cases.push(put("schemaVersion 1 with an OCI media type", "rejected", 400, "MANIFEST_INVALID").manifest(
        OCI_MANIFEST,
        String::from_utf8(fresh_manifest.clone()).unwrap().replace(r#""schemaVersion":2"#, r#""schemaVersion":1"#),
    ));
    cases.push(
        put("Content-Type index, body image manifest", "rejected", 400, "MANIFEST_INVALID")
            .manifest(OCI_INDEX, fresh_manifest.clone()),
    );
    cases.push(
        put("Content-Type Docker, body OCI", "rejected", 400, "MANIFEST_INVALID")
            .manifest(DOCKER_MANIFEST, fresh_manifest.clone()),
    );
    cases.push(put("5 MiB with Content-Length", "rejected", 413, "SIZE_INVALID").manifest(OCI_MANIFEST, huge.clone()));
    cases.push(
        put("5 MiB chunked", "rejected", 413, "SIZE_INVALID")
            .header("Content-Type", OCI_MANIFEST)
            .chunked(huge.clone()),
    );
    cases
        .push(put("10k nested arrays", "rejected", 400, "MANIFEST_INVALID").manifest(OCI_MANIFEST, deep_array.clone()));
    cases.push(
        put("10k nested objects", "rejected", 400, "MANIFEST_INVALID").manifest(OCI_MANIFEST, deep_object.clone()),
    );
    cases.push(put("missing config", "rejected", 400, "MANIFEST_INVALID").manifest(
        OCI_MANIFEST,
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": layer_descs})).unwrap(),
    ));
    cases.push(put("config with a malformed digest", "rejected", 400, "MANIFEST_INVALID").manifest(
        OCI_MANIFEST,
        manifest_json(
            &json!({"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:nothex", "size": 2}),
            &[],
            "bad-digest",
        ),
    ));
    cases.push(
        put("index without manifests", "rejected", 400, "MANIFEST_INVALID")
            .manifest(OCI_INDEX, serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX})).unwrap()),
    );
    cases.push(
        put("two layers never pushed", "rejected", 400, "MANIFEST_BLOB_UNKNOWN")
            .manifest(OCI_MANIFEST, missing_blobs_manifest.clone())
            .errors(2),
    );
    cases.push(
        put("config and layer never pushed", "rejected", 400, "MANIFEST_BLOB_UNKNOWN")
            .manifest(OCI_MANIFEST, all_missing_manifest.clone())
            .errors(2),
    );
    cases.push(
        case(
            "manifest PUT: blobs only in another repository (new repo)",
            "PUT",
            "/v2/rejected/manifest/manifests/v1",
            400,
            Some("MANIFEST_BLOB_UNKNOWN"),
        )
        .manifest(OCI_MANIFEST, image.manifest.clone())
        .errors(3),
    );
    cases.push(
        put("index with an absent child", "rejected", 400, "MANIFEST_BLOB_UNKNOWN")
            .manifest(OCI_INDEX, index_missing_child.clone())
            .errors(1),
    );
    cases.push(
        put("by digest, body hashes differently", &image.digest.to_string(), 400, "DIGEST_INVALID")
            .manifest(OCI_MANIFEST, fresh_manifest.clone()),
    );
    for (what, tag) in [
        ("leading dash", "-bad".to_owned()),
        ("leading dot", ".bad".to_owned()),
        ("129 characters", long_tag.clone()),
        ("space", "bad%20tag".to_owned()),
        ("%2e%2e", "%2e%2e".to_owned()),
        ("non-ASCII", "t%C3%A9".to_owned()),
    ] {
        cases.push(
            put(&format!("invalid tag, {what}"), &tag, 400, "MANIFEST_INVALID")
                .manifest(OCI_MANIFEST, fresh_manifest.clone()),
        );
        cases.push(case(
            format!("manifest GET invalid tag, {what}"),
            "GET",
            format!("/v2/good/app/manifests/{tag}"),
            404,
            Some("MANIFEST_UNKNOWN"),
        ));
        cases.push(case(
            format!("manifest HEAD invalid tag, {what}"),
            "HEAD",
            format!("/v2/good/app/manifests/{tag}"),
            404,
            None,
        ));
    }
    cases.push(
        case(
            "manifest PUT: invalid extra ?tag=",
            "PUT",
            format!("/v2/good/app/manifests/{fresh_digest}?tag=ok&tag=-bad"),
            400,
            Some("MANIFEST_INVALID"),
        )
        .manifest(OCI_MANIFEST, fresh_manifest.clone()),
    );

    // --- Unknown things → 404.
    cases.push(case(
        "tags/list of an unknown repository",
        "GET",
        "/v2/nobody/here/tags/list",
        404,
        Some("NAME_UNKNOWN"),
    ));
    cases.push(case(
        "manifest GET in an unknown repository",
        "GET",
        "/v2/nobody/here/manifests/v1",
        404,
        Some("NAME_UNKNOWN"),
    ));
    cases.push(case("manifest HEAD in an unknown repository", "HEAD", "/v2/nobody/here/manifests/v1", 404, None));
    cases.push(case(
        "manifest DELETE in an unknown repository",
        "DELETE",
        "/v2/nobody/here/manifests/v1",
        404,
        Some("NAME_UNKNOWN"),
    ));
    cases.push(case(
        "blob GET in an unknown repository",
        "GET",
        format!("/v2/nobody/here/blobs/{}", layer.digest),
        404,
        Some("BLOB_UNKNOWN"),
    ));
    cases.push(case("unknown tag", "GET", "/v2/good/app/manifests/nope", 404, Some("MANIFEST_UNKNOWN")));

    // --- Pagination → 400 PAGINATION_NUMBER_INVALID.
    for n in ["-1", "abc", "1.5", "0x10"] {
        for path in ["/v2/good/app/tags/list", "/v2/_catalog"] {
            cases.push(case(
                format!("{path} n={n}"),
                "GET",
                format!("{path}?n={n}"),
                400,
                Some("PAGINATION_NUMBER_INVALID"),
            ));
        }
    }

    // --- Wrong methods → 405 UNSUPPORTED with Allow.
    for (method, path, allow) in [
        ("POST", "/v2/good/app/manifests/v1".to_owned(), allow_manifest),
        ("PATCH", "/v2/good/app/manifests/v1".to_owned(), allow_manifest),
        ("PATCH", blob_path.clone(), "GET, HEAD, DELETE"),
        ("PUT", blob_path.clone(), "GET, HEAD, DELETE"),
        ("POST", blob_path.clone(), "GET, HEAD, DELETE"),
        ("DELETE", "/v2/_catalog".to_owned(), "GET"),
        ("POST", "/v2/_catalog".to_owned(), "GET"),
        ("PUT", "/v2/good/app/tags/list".to_owned(), "GET"),
        ("DELETE", "/v2/good/app/tags/list".to_owned(), "GET"),
        ("POST", "/v2/".to_owned(), "GET, HEAD"),
        ("DELETE", "/v2/".to_owned(), "GET, HEAD"),
        ("BREW", "/v2/".to_owned(), "GET, HEAD"),
        ("GET", "/v2/good/app/blobs/uploads/".to_owned(), "POST"),
        ("PUT", "/v2/good/app/blobs/uploads/".to_owned(), "POST"),
        ("POST", up(random_uuid), "GET, PATCH, PUT, DELETE"),
        ("DELETE", format!("/v2/good/app/referrers/{}", image.digest), "GET"),
    ] {
        cases.push(case(format!("{method} {path}"), method, path, 405, Some("UNSUPPORTED")).expect("allow", allow));
    }

    // --- Unknown /v2 paths → 404.
    for path in [
        "/v2/foo",
        "/v2/good/app",
        "/v2/good/app/unknown/x",
        "/v2/good/app/manifests/",
        "/v2/good/app/blobs/",
        "/v2/_catalog/extra",
        "/v2/good/app/tags",
        "/v2/good/app/_oci/x",
    ] {
        cases.push(case(format!("unknown path {path}"), "GET", path, 404, None));
    }

    // --- Run the table.
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    for case in &cases {
        let r = raw_request(&addr, case.method, &case.target, &case.headers, &case.body).await;
        let problems = check(case, &r);
        if !problems.is_empty() {
            let mut target = case.target.clone();
            target.truncate(120);
            let mut body = String::from_utf8_lossy(&r.body).into_owned();
            body.truncate(300);
            failures.push(format!(
                "- {}: {} {target}\n    {}\n    body: {body}",
                case.what,
                case.method,
                problems.join("; ")
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    eprintln!("{} bad-input cases in {:?}", cases.len(), started.elapsed());

    // --- Nothing was stored.
    let r = c.get(format!("{base}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200, "server is still up");
    let catalog: Value = c.get(format!("{base}/v2/_catalog")).send().await.unwrap().json().await.unwrap();
    assert_eq!(catalog, json!({"repositories": ["good/app"]}), "only the setup's repository exists");
    let tags: Value = c.get(format!("{base}/v2/good/app/tags/list")).send().await.unwrap().json().await.unwrap();
    assert_eq!(tags, json!({"name": "good/app", "tags": ["v1"]}));
    let r = c.get(format!("{base}/v2/good/app/manifests/v1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), image.manifest.as_slice());
    for repo in ["good/app", "rejected/blob", "rejected/digest"] {
        for d in [&never.digest, &other.digest, &doomed_claim.digest] {
            let r = c.head(format!("{base}/v2/{repo}/blobs/{d}")).send().await.unwrap();
            assert_eq!(r.status(), 404, "rejected blob {d} is not visible in {repo}");
        }
    }
    let rejected_manifests =
        [&fresh_manifest, &missing_blobs_manifest, &all_missing_manifest, &index_missing_child, &schema1, &huge];
    for body in rejected_manifests {
        let d = format!("sha256:{}", sha256_hex(body));
        let r = c.head(format!("{base}/v2/good/app/manifests/{d}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "rejected manifest {d} is not visible");
    }
    let r = c.head(format!("{base}/v2/rejected/manifest/manifests/{}", image.digest)).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // On disk: exactly the setup's blobs and the one completed upload; no staged data.
    let on_disk: BTreeSet<String> = common::blob_files(server.data_dir()).into_iter().map(|(_, hex)| hex).collect();
    let expected: BTreeSet<String> = image.blobs().chain([&whole]).map(|b| b.digest.encoded().to_owned()).collect();
    assert_eq!(on_disk, expected, "blobs/ holds exactly the accepted blobs");
    // Emptied staging files kept for reuse (`.spare-*`) hold nothing.
    let staged: Vec<_> = std::fs::read_dir(server.data_dir().join("uploads"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with(".spare-") || e.metadata().unwrap().len() > 0)
        .map(|e| e.file_name())
        .collect();
    assert!(staged.is_empty(), "no staged upload data is left: {staged:?}");
}
