//! The OCI distribution-spec **v1.1.1** conformance suite, replayed against the
//! real berth binary.
//!
//! The official suite (a Ginkgo test) cannot be built here, so this test is
//! written independently from the documented checklist
//! (`/work/shared/spec/oci-conformance.md` §3–§5): the same 79 specs, in the
//! same order, against one server and one namespace, with the same requests,
//! test data shapes and assertions (including the alternatives the suite
//! accepts, and nothing more lenient). Environment equivalent:
//! `OCI_TEST_PULL=1 OCI_TEST_PUSH=1 OCI_TEST_CONTENT_DISCOVERY=1
//! OCI_TEST_CONTENT_MANAGEMENT=1 OCI_AUTOMATIC_CROSSMOUNT=1`, no
//! `OCI_TAG_NAME`/`OCI_TAG_LIST`, default teardown order (manifests before
//! blobs). Every failure message names the category, the checklist number and
//! the spec's description string.

use std::collections::BTreeMap;

use reqwest::header::HeaderMap;
use reqwest::{Client, Method, RequestBuilder};
use serde::Serialize;
use serde_json::Value;

use crate::common::{self, sha256_hex};

const MANIFEST_MT: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_MT: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG_MT: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_MT: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const EMPTY_MT: &str = "application/vnd.oci.empty.v1+json";
const OCTET: &str = "application/octet-stream";
const EMPTY_JSON_DIGEST: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
/// sha256("hello world"): never pushed.
const DUMMY_DIGEST: &str = "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
/// An invalid tag: the suite expects 404 for it, not 400.
const NONEXISTENT_MANIFEST: &str = ".INVALID_MANIFEST_NAME";
const ARTIFACT_A: &str = "application/vnd.nhl.peanut.butter.bagel";
const ARTIFACT_B: &str = "application/vnd.nba.strawberry.jam.croissant";
const INDEX_ARTIFACT: &str = "application/vnd.food.stand";
const ANNOTATION_KEY: &str = "org.opencontainers.conformance.test";
const NUM_WORKFLOWS: usize = 16;
/// `OCI_AUTOMATIC_CROSSMOUNT=1`.
const AUTOMATIC_CROSSMOUNT: Option<bool> = Some(true);
const USER_AGENT: &str = "distribution-spec-conformance-tests";
const VALID_ERROR_CODES: [&str; 15] = [
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "MANIFEST_UNVERIFIED",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "TAG_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
];

/// Fails the test naming the v1.1.1 spec that broke.
macro_rules! check {
    ($t:expr, $n:expr, $spec:expr, $cond:expr, $($arg:tt)+) => {
        assert!(
            $cond,
            "v1.1.1 conformance spec FAILED: {} #{} \"{}\": {}",
            $t.cat,
            $n,
            $spec,
            format!($($arg)+)
        )
    };
}

// ---------------------------------------------------------------------------
// Test data (§3)
// ---------------------------------------------------------------------------

/// A piece of content and its sha256 digest (computed independently of berth).
#[derive(Debug, Clone)]
struct Content {
    data: Vec<u8>,
    digest: String,
}

impl Content {
    fn new(data: impl Into<Vec<u8>>) -> Self {
        let data = data.into();
        Content { digest: format!("sha256:{}", sha256_hex(&data)), data }
    }

    fn descriptor(&self, media_type: &str) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: self.digest.clone(),
            size: self.data.len(),
            data: None,
            new_unspecified_field: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    /// `None`: absent; `Some(Value::Null)`: an explicit JSON `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    new_unspecified_field: Option<Value>,
}

#[derive(Serialize)]
struct ImageConfig {
    author: String,
    architecture: &'static str,
    os: &'static str,
    rootfs: RootFs,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<&'static str>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<&'static str, &'static str>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    media_type: &'static str,
    artifact_type: &'static str,
    manifests: Vec<Descriptor>,
    subject: Descriptor,
    annotations: BTreeMap<&'static str, &'static str>,
}

/// Tab-indented JSON, like Go's `json.MarshalIndent(v, "", "\t")`.
fn tab_json<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::with_indent(b"\t"));
    v.serialize(&mut ser).expect("serialize");
    out
}

fn annotation(value: &'static str) -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([(ANNOTATION_KEY, value)])
}

/// Standard base64 with padding (what Go does for `[]byte` fields).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// xorshift64*, seeded from the clock: every run gets fresh config digests.
struct Rng(u64);

impl Rng {
    fn from_clock() -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        Rng((nanos ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    fn seeded(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 56) as u8).collect()
    }

    fn letters(&mut self, n: usize) -> String {
        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        (0..n).map(|_| LETTERS[(self.next() % LETTERS.len() as u64) as usize] as char).collect()
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from_digit((self.next() % 16) as u32, 16).unwrap()).collect()
    }
}

struct Data {
    configs: Vec<Content>,
    /// The suite's fixed 168-byte gzip tarball; here any 168 gzip-looking bytes.
    layer: Content,
    manifests: Vec<Content>,
    /// No `mediaType`, config = configs[1], `layers: []`.
    empty_layer_manifest: Content,
    /// 42 seeded-random bytes (streamed upload, then cross-mounted).
    blob_a: Content,
    /// 42 bytes uploaded in two chunks (regenerated if the registry asks for bigger chunks).
    blob_b: Content,
    empty_json: Content,
    ref_blob_a: Content,
    ref_blob_b: Content,
    refs_a_config: Content,
    refs_a_layer: Content,
    refs_b_config: Content,
    refs_b_layer: Content,
    refs_c_layer: Content,
    refs_index: Content,
    /// Expected referrer annotation value for each referrer digest.
    annotations: BTreeMap<String, &'static str>,
}

impl Data {
    fn generate(rng: &mut Rng) -> Self {
        let configs: Vec<Content> = (0..NUM_WORKFLOWS)
            .map(|_| {
                Content::new(tab_json(&ImageConfig {
                    author: rng.letters(16),
                    architecture: "amd64",
                    os: "linux",
                    rootfs: RootFs { kind: "layers", diff_ids: vec![] },
                }))
            })
            .collect();
        // gzip magic, deflate, no flags, mtime 0, xfl 0, OS unix; then filler.
        let mut layer = vec![0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03];
        layer.extend(Rng::seeded(168).bytes(168 - layer.len()));
        let layer = Content::new(layer);
        let image_manifest = |config: &Content| Manifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MT),
            artifact_type: None,
            config: Descriptor {
                data: Some(base64(&config.data)),
                new_unspecified_field: Some(Value::String(base64(b"hello world"))),
                ..config.descriptor(CONFIG_MT)
            },
            layers: vec![Descriptor { new_unspecified_field: Some(Value::Null), ..layer.descriptor(LAYER_MT) }],
            subject: None,
            annotations: None,
        };
        let manifests: Vec<Content> = configs.iter().map(|c| Content::new(tab_json(&image_manifest(c)))).collect();
        let empty_layer_manifest =
            Content::new(tab_json(&Manifest { media_type: None, layers: vec![], ..image_manifest(&configs[1]) }));

        let blob_a = Content::new(Rng::seeded(0xA).bytes(42));
        let blob_b = Content::new(Rng::seeded(0xB).bytes(42));
        let empty_json = Content::new(b"{}".to_vec());
        let ref_blob_a = Content::new(b"NHL Peanut Butter on my NHL bagel".to_vec());
        let ref_blob_b = Content::new(b"NBA Strawberry Jam on my NBA croissant".to_vec());
        let subject_of = |m: &Content| m.descriptor(MANIFEST_MT);
        let config_artifact = |blob: &Content, artifact_type: &'static str, note: &'static str| {
            Content::new(tab_json(&Manifest {
                schema_version: 2,
                media_type: Some(MANIFEST_MT),
                artifact_type: None,
                config: blob.descriptor(artifact_type),
                layers: vec![empty_json.descriptor(EMPTY_MT)],
                subject: Some(subject_of(&manifests[4])),
                annotations: Some(annotation(note)),
            }))
        };
        let layer_artifact =
            |blob: &Content, artifact_type: &'static str, subject: &Content, note: Option<&'static str>| {
                Content::new(tab_json(&Manifest {
                    schema_version: 2,
                    media_type: Some(MANIFEST_MT),
                    artifact_type: Some(artifact_type),
                    config: empty_json.descriptor(EMPTY_MT),
                    layers: vec![blob.descriptor(artifact_type)],
                    subject: Some(subject_of(subject)),
                    annotations: note.map(annotation),
                }))
            };
        let refs_a_config = config_artifact(&ref_blob_a, ARTIFACT_A, "test config a");
        let refs_b_config = config_artifact(&ref_blob_b, ARTIFACT_B, "test config b");
        let refs_a_layer = layer_artifact(&ref_blob_a, ARTIFACT_A, &manifests[4], Some("test layer a"));
        let refs_b_layer = layer_artifact(&ref_blob_b, ARTIFACT_B, &manifests[4], Some("test layer b"));
        let refs_c_layer = layer_artifact(&ref_blob_b, ARTIFACT_B, &manifests[3], None);
        let refs_index = Content::new(tab_json(&Index {
            schema_version: 2,
            media_type: INDEX_MT,
            artifact_type: INDEX_ARTIFACT,
            manifests: vec![refs_a_config.descriptor(MANIFEST_MT), refs_a_layer.descriptor(MANIFEST_MT)],
            subject: subject_of(&manifests[4]),
            annotations: annotation("test index"),
        }));
        let annotations = BTreeMap::from([
            (refs_a_config.digest.clone(), "test config a"),
            (refs_a_layer.digest.clone(), "test layer a"),
            (refs_index.digest.clone(), "test index"),
            (refs_b_config.digest.clone(), "test config b"),
            (refs_b_layer.digest.clone(), "test layer b"),
        ]);
        Data {
            configs,
            layer,
            manifests,
            empty_layer_manifest,
            blob_a,
            blob_b,
            empty_json,
            ref_blob_a,
            ref_blob_b,
            refs_a_config,
            refs_a_layer,
            refs_b_config,
            refs_b_layer,
            refs_c_layer,
            refs_index,
            annotations,
        }
    }
}

// ---------------------------------------------------------------------------
// Client plumbing (reggie-like)
// ---------------------------------------------------------------------------

/// A fully read response.
struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap_or("<non-ascii>"))
    }

    fn location(&self) -> String {
        self.header("location").unwrap_or_default().to_owned()
    }

    fn is_2xx(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Status and (start of) body, for failure messages.
    fn brief(&self) -> String {
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(400)]).into_owned();
        format!("status {} body {body:?}", self.status)
    }

    fn json(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// `GetRelativeLocation()`: the path and query of a Location, scheme and host dropped.
fn relative(location: &str) -> String {
    match location.strip_prefix("http://").or_else(|| location.strip_prefix("https://")) {
        Some(rest) => rest.find('/').map_or_else(|| "/".to_owned(), |i| rest[i..].to_owned()),
        None => location.to_owned(),
    }
}

/// Adds a query parameter to a (relative) location that may already carry a query.
fn with_query(location: &str, key: &str, value: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}{key}={}", query_escape(value))
}

struct Suite {
    c: Client,
    base: String,
    ns: String,
    xns: String,
    cat: &'static str,
    passed: usize,
    skipped: usize,
    summary: Vec<String>,
}

impl Suite {
    fn begin(&mut self, cat: &'static str) {
        self.cat = cat;
        self.passed = 0;
        self.skipped = 0;
        println!("== {cat}");
    }

    fn end(&mut self) {
        let line = format!("{}: {} passed, {} skipped", self.cat, self.passed, self.skipped);
        println!("{line}");
        self.summary.push(line);
    }

    fn ok(&mut self, n: u32, spec: &str) {
        self.passed += 1;
        println!("  ok    #{n} {spec}");
    }

    /// Like [`Suite::ok`], noting which of the accepted alternatives berth took.
    fn ok_with(&mut self, n: u32, spec: &str, detail: &str) {
        self.passed += 1;
        println!("  ok    #{n} {spec} [{detail}]");
    }

    fn skip(&mut self, n: u32, spec: &str, why: &str) {
        self.skipped += 1;
        println!("  skip  #{n} {spec} ({why})");
    }

    fn warn(&self, n: u32, spec: &str, what: &str) {
        println!("  WARNING #{n} {spec}: {what}");
    }

    /// A request to `OCI_ROOT_URL` + `path` (a path with optional query).
    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.c.request(method, format!("{}{path}", self.base))
    }

    fn ns_path(&self, rest: &str) -> String {
        format!("/v2/{}/{rest}", self.ns)
    }

    async fn send(rb: RequestBuilder) -> Resp {
        let r = rb.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.expect("response body").to_vec();
        Resp { status, headers, body }
    }

    async fn call(&self, method: Method, path: &str) -> Resp {
        Self::send(self.req(method, path)).await
    }

    /// "POST+PUT(x)": POST (status not asserted) then a monolithic PUT to its Location.
    async fn post_put(&self, blob: &Content) -> Resp {
        let post = self.call(Method::POST, &self.ns_path("blobs/uploads/")).await;
        let put = with_query(&relative(&post.location()), "digest", &blob.digest);
        Self::send(self.req(Method::PUT, &put).header("content-type", OCTET).body(blob.data.clone())).await
    }

    async fn put_manifest(&self, reference: &str, media_type: &str, m: &Content) -> Resp {
        let path = self.ns_path(&format!("manifests/{reference}"));
        Self::send(self.req(Method::PUT, &path).header("content-type", media_type).body(m.data.clone())).await
    }

    /// GET or HEAD of a manifest with `Accept: <OCI manifest>`.
    async fn manifest_with_accept(&self, method: Method, reference: &str) -> Resp {
        let path = self.ns_path(&format!("manifests/{reference}"));
        Self::send(self.req(method, &path).header("accept", MANIFEST_MT)).await
    }

    async fn tags(&self, query: &str) -> Resp {
        self.call(Method::GET, &self.ns_path(&format!("tags/list{query}"))).await
    }

    /// A referrers response: status, exact Content-Type, JSON index; returns its `manifests`.
    fn referrers_entries(&self, n: u32, spec: &str, r: &Resp) -> Vec<Value> {
        check!(self, n, spec, r.status == 200, "want 200, got {}", r.brief());
        check!(
            self,
            n,
            spec,
            r.header("content-type") == Some(INDEX_MT),
            "Content-Type {:?}, want exactly {INDEX_MT:?}",
            r.header("content-type")
        );
        let index =
            r.json().unwrap_or_else(|e| panic!("v1.1.1 #{n} \"{spec}\": body is not JSON ({e}): {}", r.brief()));
        check!(self, n, spec, index["schemaVersion"] == 2, "schemaVersion of {index}");
        check!(self, n, spec, index["mediaType"] == INDEX_MT, "mediaType of {index}");
        index["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("v1.1.1 #{n} \"{spec}\": no manifests in {index}"))
    }

    /// Every entry carries exactly one annotation: the conformance key, with its manifest's value.
    fn check_annotations(&self, n: u32, spec: &str, d: &Data, entries: &[Value]) {
        for e in entries {
            let digest = e["digest"].as_str().unwrap_or_default();
            let want = d.annotations.get(digest).copied();
            check!(self, n, spec, want.is_some(), "unexpected referrer {e}");
            let got = e["annotations"].as_object();
            check!(self, n, spec, got.is_some_and(|a| a.len() == 1), "want exactly 1 annotation in {e}");
            check!(
                self,
                n,
                spec,
                e["annotations"][ANNOTATION_KEY] == want.unwrap(),
                "want {ANNOTATION_KEY}={want:?} in {e}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------

#[tokio::test]
async fn oci_distribution_spec_v1_1_1_conformance() {
    let server = common::start();
    let mut rng = Rng::from_clock();
    let mut d = Data::generate(&mut rng);
    let xns = format!("conformance-{}-{}-{}-{}-{}", rng.hex(8), rng.hex(4), rng.hex(4), rng.hex(4), rng.hex(12));
    let mut t = Suite {
        c: Client::builder().user_agent(USER_AGENT).build().expect("client"),
        base: server.url(),
        ns: "conformance/v111".to_owned(),
        xns,
        cat: "",
        passed: 0,
        skipped: 0,
        summary: Vec::new(),
    };
    pull(&mut t, &d).await;
    push(&mut t, &mut d).await;
    content_discovery(&mut t, &d).await;
    content_management(&mut t, &d).await;
    println!("v1.1.1 conformance (OCI_AUTOMATIC_CROSSMOUNT=1):");
    for line in &t.summary {
        println!("  {line}");
    }
}

async fn pull(t: &mut Suite, d: &Data) {
    t.begin("Pull");

    let s = "Setup / Populate registry with test blob";
    for (n, i) in [(1, 0), (2, 1)] {
        let r = t.post_put(&d.configs[i]).await;
        check!(t, n, s, r.is_2xx(), "PUT configs[{i}]: {}", r.brief());
        t.ok(n, s);
    }
    let s = "Setup / Populate registry with test layer";
    let r = t.post_put(&d.layer).await;
    check!(t, 3, s, r.is_2xx(), "PUT layer: {}", r.brief());
    t.ok(3, s);
    let s = "Setup / Populate registry with test manifest";
    let r = t.put_manifest("tagtest0", MANIFEST_MT, &d.manifests[0]).await;
    check!(t, 4, s, r.is_2xx(), "PUT manifests[0] as tagtest0: {}", r.brief());
    t.ok(4, s);
    let r = t.put_manifest(&d.manifests[1].digest, MANIFEST_MT, &d.manifests[1]).await;
    check!(t, 5, s, r.is_2xx(), "PUT manifests[1] by digest: {}", r.brief());
    t.ok(5, s);
    t.skip(6, "Setup / Get tag name from environment", "setup ran: OCI_TAG_NAME etc. unset");

    let s = "HEAD request to nonexistent blob should result in 404 response";
    let r = t.call(Method::HEAD, &t.ns_path(&format!("blobs/{DUMMY_DIGEST}"))).await;
    check!(t, 7, s, r.status == 404, "{}", r.brief());
    t.ok(7, s);
    let s = "HEAD request to existing blob should yield 200";
    let r = t.call(Method::HEAD, &t.ns_path(&format!("blobs/{}", d.configs[0].digest))).await;
    check!(t, 8, s, r.status == 200, "{}", r.brief());
    if let Some(dcd) = r.header("docker-content-digest") {
        check!(t, 8, s, dcd == d.configs[0].digest, "Docker-Content-Digest {dcd} != {}", d.configs[0].digest);
    }
    t.ok(8, s);
    let s = "GET nonexistent blob should result in 404 response";
    let r = t.call(Method::GET, &t.ns_path(&format!("blobs/{DUMMY_DIGEST}"))).await;
    check!(t, 9, s, r.status == 404, "{}", r.brief());
    t.ok(9, s);
    let s = "GET request to existing blob URL should yield 200";
    let r = t.call(Method::GET, &t.ns_path(&format!("blobs/{}", d.configs[0].digest))).await;
    check!(t, 10, s, r.status == 200, "{}", r.brief());
    t.ok(10, s);

    let s = "HEAD request to nonexistent manifest should return 404";
    let r = t.call(Method::HEAD, &t.ns_path(&format!("manifests/{NONEXISTENT_MANIFEST}"))).await;
    check!(t, 11, s, r.status == 404, "{}", r.brief());
    t.ok(11, s);
    for (n, s, reference, want) in [
        (
            12,
            "HEAD request to manifest[0] path (digest) should yield 200 response",
            d.manifests[0].digest.as_str(),
            &d.manifests[0],
        ),
        (
            13,
            "HEAD request to manifest[1] path (digest) should yield 200 response",
            d.manifests[1].digest.as_str(),
            &d.manifests[1],
        ),
        (14, "HEAD request to manifest path (tag) should yield 200 response", "tagtest0", &d.manifests[0]),
    ] {
        let r = t.manifest_with_accept(Method::HEAD, reference).await;
        check!(t, n, s, r.status == 200, "HEAD {reference}: {}", r.brief());
        if let Some(dcd) = r.header("docker-content-digest") {
            check!(t, n, s, dcd == want.digest, "Docker-Content-Digest {dcd} != {}", want.digest);
        }
        t.ok(n, s);
    }
    let s = "GET nonexistent manifest should return 404";
    let r = t.call(Method::GET, &t.ns_path(&format!("manifests/{NONEXISTENT_MANIFEST}"))).await;
    check!(t, 15, s, r.status == 404, "{}", r.brief());
    t.ok(15, s);
    for (n, s, reference) in [
        (16, "GET request to manifest[0] path (digest) should yield 200 response", d.manifests[0].digest.as_str()),
        (17, "GET request to manifest[1] path (digest) should yield 200 response", d.manifests[1].digest.as_str()),
        (18, "GET request to manifest path (tag) should yield 200 response", "tagtest0"),
    ] {
        let r = t.manifest_with_accept(Method::GET, reference).await;
        check!(t, n, s, r.status == 200, "GET {reference}: {}", r.brief());
        t.ok(n, s);
    }

    let s = "400 response body should contain OCI-conforming JSON message";
    let r = Suite::send(
        t.req(Method::GET, &t.ns_path("manifests/sha256:totallywrong"))
            .header("content-type", MANIFEST_MT)
            .body("blablabla"),
    )
    .await;
    check!(t, 19, s, r.status == 400 || r.status == 404, "want 400 or 404, got {}", r.brief());
    if r.status == 400 {
        let body = r.json();
        check!(t, 19, s, body.is_ok(), "400 body is not JSON: {}", r.brief());
        let body = body.unwrap();
        let errors = body["errors"].as_array();
        check!(t, 19, s, errors.is_some_and(|e| !e.is_empty()), "no errors[] in {body}");
        let code = body["errors"][0]["code"].as_str().unwrap_or_default();
        check!(t, 19, s, VALID_ERROR_CODES.contains(&code), "errors[0].code {code:?} is not a spec code");
    }
    t.ok_with(19, s, &format!("{}", r.status));

    // Teardown, manifests first (OCI_DELETE_MANIFEST_BEFORE_BLOBS default).
    for (n, s, i) in [(20, "Delete manifest[0] created in setup", 0), (21, "Delete manifest[1] created in setup", 1)] {
        let r = t.call(Method::DELETE, &t.ns_path(&format!("manifests/{}", d.manifests[i].digest))).await;
        check!(t, n, s, r.is_2xx() || r.status == 405, "want 2xx or 405, got {}", r.brief());
        t.ok_with(n, s, &r.status.to_string());
    }
    for (n, s, blob) in [
        (22, "Delete config[0] blob created in setup", &d.configs[0]),
        (23, "Delete config[1] blob created in setup", &d.configs[1]),
        (24, "Delete layer blob created in setup", &d.layer),
    ] {
        let r = t.call(Method::DELETE, &t.ns_path(&format!("blobs/{}", blob.digest))).await;
        check!(t, n, s, r.is_2xx() || r.status == 404 || r.status == 405, "want 2xx, 404 or 405, got {}", r.brief());
        t.ok_with(n, s, &r.status.to_string());
    }
    t.end();
}

async fn push(t: &mut Suite, d: &mut Data) {
    t.begin("Push");

    // Blob Upload Streamed
    let s = "PATCH request with blob in body should yield 202 response";
    let post = t.call(Method::POST, &t.ns_path("blobs/uploads/")).await;
    check!(t, 25, s, !post.location().is_empty(), "POST gave no Location: {}", post.brief());
    let r = Suite::send(
        t.req(Method::PATCH, &relative(&post.location())).header("content-type", OCTET).body(d.blob_a.data.clone()),
    )
    .await;
    check!(t, 25, s, r.status == 202, "streamed PATCH: {}", r.brief());
    t.ok(25, s);
    let s = "PUT request to session URL with digest should yield 201 response";
    let put = with_query(&relative(&r.location()), "digest", &d.blob_a.digest);
    let r = Suite::send(t.req(Method::PUT, &put).header("content-type", OCTET).header("content-length", "0").body(""))
        .await;
    check!(t, 26, s, r.status == 201, "{}", r.brief());
    check!(t, 26, s, !r.location().is_empty(), "no Location");
    t.ok(26, s);

    // Blob Upload Monolithic
    let s = "GET nonexistent blob should result in 404 response";
    let r = t.call(Method::GET, &t.ns_path(&format!("blobs/{DUMMY_DIGEST}"))).await;
    check!(t, 27, s, r.status == 404, "{}", r.brief());
    t.ok(27, s);
    let s = "POST request with digest and blob should yield a 201 or 202";
    let c1 = &d.configs[1].clone();
    let path = with_query(&t.ns_path("blobs/uploads/"), "digest", &c1.digest);
    let r = Suite::send(t.req(Method::POST, &path).header("content-type", OCTET).body(c1.data.clone())).await;
    check!(t, 28, s, !r.location().is_empty(), "no Location: {}", r.brief());
    check!(t, 28, s, r.status == 201 || r.status == 202, "want 201 or 202, got {}", r.brief());
    let single_post = r.status;
    t.ok_with(28, s, &format!("{single_post}"));
    let s = "GET request to blob URL from prior request should yield 200 or 404 based on response code";
    let r = t.call(Method::GET, &t.ns_path(&format!("blobs/{}", c1.digest))).await;
    let want = if single_post == 202 { 404 } else { 200 };
    check!(t, 29, s, r.status == want, "single POST gave {single_post}, so GET must be {want}, got {}", r.brief());
    t.ok(29, s);
    let s = "POST request should yield a session ID";
    let post = t.call(Method::POST, &t.ns_path("blobs/uploads/")).await;
    check!(t, 30, s, post.status == 202, "{}", post.brief());
    t.ok(30, s);
    let s = "PUT upload of a blob should yield a 201 Response";
    let put = with_query(&relative(&post.location()), "digest", &c1.digest);
    let r = Suite::send(t.req(Method::PUT, &put).header("content-type", OCTET).body(c1.data.clone())).await;
    check!(t, 31, s, r.status == 201, "{}", r.brief());
    check!(t, 31, s, !r.location().is_empty(), "no Location");
    t.ok(31, s);
    let s = "GET request to existing blob should yield 200 response";
    let r = t.call(Method::GET, &t.ns_path(&format!("blobs/{}", c1.digest))).await;
    check!(t, 32, s, r.status == 200, "{}", r.brief());
    t.ok(32, s);
    let s = "PUT upload of a layer blob should yield a 201 Response";
    let r = t.post_put(&d.layer).await;
    check!(t, 33, s, r.status == 201, "{}", r.brief());
    check!(t, 33, s, !r.location().is_empty(), "no Location");
    t.ok(33, s);
    let s = "GET request to existing layer should yield 200 response";
    let r = t.call(Method::GET, &t.ns_path(&format!("blobs/{}", d.layer.digest))).await;
    check!(t, 34, s, r.status == 200, "{}", r.brief());
    t.ok(34, s);

    // Blob Upload Chunked
    let empty_post = |t: &Suite| {
        Suite::send(t.req(Method::POST, &t.ns_path("blobs/uploads/")).header("content-length", "0").body(""))
    };
    let s = "Out-of-order blob upload should return 416";
    let post = empty_post(t).await;
    check!(t, 35, s, !post.location().is_empty(), "POST gave no Location: {}", post.brief());
    let mut first_len = 22;
    if let Some(min) = post.header("oci-chunk-min-length").and_then(|m| m.parse::<usize>().ok())
        && min > first_len
    {
        d.blob_b = Content::new(Rng::seeded(0xB).bytes(2 * min - 2));
        first_len = min;
    }
    let blob_b = d.blob_b.clone();
    let (chunk1, chunk2) = blob_b.data.split_at(first_len);
    let range1 = format!("0-{}", first_len - 1);
    let range2 = format!("{first_len}-{}", blob_b.data.len() - 1);
    let patch = |t: &Suite, location: &str, range: &str, chunk: &[u8]| {
        Suite::send(
            t.req(Method::PATCH, &relative(location))
                .header("content-type", OCTET)
                .header("content-range", range)
                .body(chunk.to_vec()),
        )
    };
    let r = patch(t, &post.location(), &range2, chunk2).await;
    check!(t, 35, s, r.status == 416, "PATCH Content-Range {range2} first: {}", r.brief());
    t.ok(35, s);
    let s = "PATCH request with first chunk should return 202";
    let post = empty_post(t).await;
    check!(t, 36, s, !post.location().is_empty(), "POST gave no Location: {}", post.brief());
    let prev_location = post.location();
    let r = patch(t, &prev_location, &range1, chunk1).await;
    check!(t, 36, s, r.status == 202, "{}", r.brief());
    check!(t, 36, s, r.header("range") == Some(range1.as_str()), "Range {:?}, want {range1:?}", r.header("range"));
    t.ok(36, s);
    let s = "Retry previous blob chunk should return 416";
    let r = patch(t, &prev_location, &range1, chunk1).await;
    check!(t, 37, s, r.status == 416, "re-PATCH {range1} to the POST's Location: {}", r.brief());
    t.ok(37, s);
    let s = "Get on stale blob upload should return 204 with a range and location";
    let r = t.call(Method::GET, &relative(&prev_location)).await;
    check!(t, 38, s, r.status == 204, "GET the POST's Location: {}", r.brief());
    check!(t, 38, s, !r.location().is_empty(), "no Location");
    check!(t, 38, s, r.header("range") == Some(range1.as_str()), "Range {:?}, want {range1:?}", r.header("range"));
    t.ok(38, s);
    let s = "PATCH request with second chunk should return 202";
    let r = patch(t, &r.location(), &range2, chunk2).await;
    check!(t, 39, s, r.status == 202, "{}", r.brief());
    check!(t, 39, s, !r.location().is_empty(), "no Location");
    t.ok(39, s);
    let s = "PUT request with digest should return 201";
    let put = with_query(&relative(&r.location()), "digest", &blob_b.digest);
    let r = Suite::send(t.req(Method::PUT, &put).header("content-length", "0").body("")).await;
    check!(t, 40, s, r.status == 201, "{}", r.brief());
    check!(t, 40, s, !r.location().is_empty(), "no Location");
    t.ok(40, s);

    // Cross-Repository Blob Mount
    let xuploads = format!("/v2/{}/blobs/uploads/", t.xns);
    let s = "Cross-mounting of a blob without the from argument should yield session id";
    let r = t.call(Method::POST, &with_query(&xuploads, "mount", DUMMY_DIGEST)).await;
    check!(t, 41, s, r.status == 202, "{}", r.brief());
    check!(t, 41, s, !r.location().is_empty(), "no Location");
    t.ok(41, s);
    let s = "POST request to mount another repository's blob should return 201 or 202";
    let mount_from = with_query(&with_query(&xuploads, "mount", &d.blob_a.digest), "from", &t.ns);
    let r = t.call(Method::POST, &mount_from).await;
    check!(t, 42, s, r.status == 201 || r.status == 202, "{}", r.brief());
    let mounted = r.status == 201;
    let mount_location = relative(&r.location());
    t.ok_with(42, s, &format!("{}", r.status));
    let s = "GET request to test digest within cross-mount namespace should return 200";
    if mounted {
        let want = format!("/v2/{}/blobs/{}", t.xns, d.blob_a.digest);
        check!(t, 43, s, mount_location == want, "mount Location {mount_location:?}, want {want:?}");
        let r = t.call(Method::GET, &mount_location).await;
        check!(t, 43, s, r.status == 200, "{}", r.brief());
        t.ok(43, s);
    } else {
        t.skip(43, s, "#42 was 202");
    }
    let s = "Cross-mounting of nonexistent blob should yield session id";
    if mounted {
        t.skip(44, s, "#42 was 201");
    } else {
        let prefix = format!("/v2/{}/blobs/uploads/", t.xns);
        check!(t, 44, s, mount_location.starts_with(&prefix), "Location {mount_location:?} not under {prefix}");
        t.ok(44, s);
    }
    let auto = with_query(&xuploads, "mount", &d.blob_a.digest);
    for (n, s, enabled, want) in [
        (45, "Cross-mounting without from, and automatic content discovery enabled should return a 201", true, 201),
        (46, "Cross-mounting without from, and automatic content discovery disabled should return a 202", false, 202),
    ] {
        if mounted && AUTOMATIC_CROSSMOUNT == Some(enabled) {
            let r = t.call(Method::POST, &auto).await;
            check!(t, n, s, r.status == want, "want {want}, got {}", r.brief());
            t.ok(n, s);
        } else {
            t.skip(n, s, &format!("OCI_AUTOMATIC_CROSSMOUNT={AUTOMATIC_CROSSMOUNT:?}, #42 mounted: {mounted}"));
        }
    }

    // Manifest Upload
    let s = "GET nonexistent manifest should return 404";
    let r = t.call(Method::GET, &t.ns_path(&format!("manifests/{NONEXISTENT_MANIFEST}"))).await;
    check!(t, 47, s, r.status == 404, "{}", r.brief());
    t.ok(47, s);
    let s = "PUT should accept a manifest upload";
    for tag in ["test0", "test1", "test2", "test3"] {
        let r = t.put_manifest(tag, MANIFEST_MT, &d.manifests[1]).await;
        check!(t, 48, s, r.status == 201, "PUT {tag}: {}", r.brief());
        check!(t, 48, s, !r.location().is_empty(), "PUT {tag}: no Location");
    }
    t.ok(48, s);
    let s = "Registry should accept a manifest upload with no layers";
    let r = t.put_manifest("emptylayer", MANIFEST_MT, &d.empty_layer_manifest).await;
    let empty_layer_pushed = r.status == 201;
    if empty_layer_pushed {
        check!(t, 49, s, !r.location().is_empty(), "no Location");
    } else {
        t.warn(49, s, &format!("manifest with no layers not accepted: {}", r.brief()));
    }
    t.ok_with(49, s, &format!("{}", r.status));
    let s = "GET request to manifest URL (digest) should yield 200 response";
    let r = t.manifest_with_accept(Method::GET, &d.manifests[1].digest).await;
    check!(t, 50, s, r.status == 200, "{}", r.brief());
    t.ok(50, s);

    // Teardown
    let s = "Delete manifest created in tests";
    let mut doomed = vec![&d.manifests[1]];
    if empty_layer_pushed {
        doomed.push(&d.empty_layer_manifest);
    }
    let mut statuses = Vec::new();
    for m in doomed {
        let r = t.call(Method::DELETE, &t.ns_path(&format!("manifests/{}", m.digest))).await;
        check!(t, 51, s, r.is_2xx() || r.status == 405, "DELETE {}: {}", m.digest, r.brief());
        statuses.push(r.status);
    }
    t.ok_with(51, s, &format!("{statuses:?}"));
    for (n, s, blob) in
        [(52, "Delete config blob created in tests", c1), (53, "Delete layer blob created in setup", &d.layer)]
    {
        let r = t.call(Method::DELETE, &t.ns_path(&format!("blobs/{}", blob.digest))).await;
        check!(t, n, s, r.is_2xx() || r.status == 404 || r.status == 405, "want 2xx, 404 or 405, got {}", r.brief());
        t.ok_with(n, s, &r.status.to_string());
    }
    t.end();
}

async fn content_discovery(t: &mut Suite, d: &Data) {
    t.begin("Content Discovery");

    let s = "Setup / Populate registry with test blob";
    let r = t.post_put(&d.configs[2]).await;
    check!(t, 54, s, r.is_2xx(), "{}", r.brief());
    t.ok(54, s);
    let s = "Setup / Populate registry with test layer";
    let r = t.post_put(&d.layer).await;
    check!(t, 55, s, r.is_2xx(), "{}", r.brief());
    t.ok(55, s);
    let s = "Setup / Populate registry with test tags";
    for tag in ["test0", "test1", "test2", "test3"] {
        let r = t.put_manifest(tag, MANIFEST_MT, &d.manifests[2]).await;
        check!(t, 56, s, r.is_2xx(), "PUT {tag}: {}", r.brief());
    }
    t.tags("").await; // status not asserted by the suite
    t.ok(56, s);
    t.skip(57, "Setup / Populate registry with test tags (no push)", "OCI_TAG_LIST unset");

    let s = "Setup / References setup";
    check!(t, 58, s, d.empty_json.digest == EMPTY_JSON_DIGEST, "empty JSON digest {}", d.empty_json.digest);
    for blob in [&d.empty_json, &d.ref_blob_a] {
        let r = t.post_put(blob).await;
        check!(t, 58, s, r.is_2xx(), "PUT blob {}: {}", blob.digest, r.brief());
    }
    let put_referrer = async |t: &Suite, what: &str, media_type: &str, m: &Content, subject: &Content| {
        let r = t.put_manifest(&m.digest, media_type, m).await;
        check!(t, 58, s, r.is_2xx(), "PUT {what}: {}", r.brief());
        check!(
            t,
            58,
            s,
            r.header("oci-subject") == Some(subject.digest.as_str()),
            "PUT {what}: OCI-Subject {:?}, want {}",
            r.header("oci-subject"),
            subject.digest
        );
    };
    let m4 = &d.manifests[4];
    put_referrer(t, "refsA config artifact", MANIFEST_MT, &d.refs_a_config, m4).await;
    put_referrer(t, "refsA layer artifact", MANIFEST_MT, &d.refs_a_layer, m4).await;
    put_referrer(t, "refs index (with subject)", INDEX_MT, &d.refs_index, m4).await;
    for blob in [&d.configs[4], &d.layer] {
        let r = t.post_put(blob).await;
        check!(t, 58, s, r.is_2xx(), "PUT blob {}: {}", blob.digest, r.brief());
    }
    let r = t.put_manifest("tagtest0", MANIFEST_MT, m4).await;
    check!(t, 58, s, r.is_2xx(), "PUT manifests[4] as tagtest0: {}", r.brief());
    let r = t.post_put(&d.ref_blob_b).await;
    check!(t, 58, s, r.is_2xx(), "PUT blob {}: {}", d.ref_blob_b.digest, r.brief());
    put_referrer(t, "refsB config artifact", MANIFEST_MT, &d.refs_b_config, m4).await;
    put_referrer(t, "refsB layer artifact", MANIFEST_MT, &d.refs_b_layer, m4).await;
    put_referrer(t, "refsC layer artifact (subject never pushed)", MANIFEST_MT, &d.refs_c_layer, &d.manifests[3]).await;
    t.ok(58, s);

    // Listing tags
    let tag_list = |t: &Suite, n: u32, s: &str, r: &Resp| -> Vec<String> {
        check!(t, n, s, r.status == 200, "{}", r.brief());
        let body = r.json().unwrap_or_else(|e| panic!("v1.1.1 #{n} \"{s}\": tags body is not JSON ({e})"));
        let tags = body["tags"].as_array().unwrap_or_else(|| panic!("v1.1.1 #{n} \"{s}\": no tags in {body}"));
        tags.iter().map(|t| t.as_str().unwrap_or_default().to_owned()).collect()
    };
    let s = "GET request to list tags should yield 200 response";
    let all = tag_list(t, 59, s, &t.tags("").await);
    // Stricter than v1.1.1, which only counts: the tags pushed so far are all listed.
    for tag in ["tagtest0", "test0", "test1", "test2", "test3"] {
        check!(t, 59, s, all.iter().any(|x| x == tag), "{tag} missing from {all:?}");
    }
    t.ok(59, s);
    let k = all.len() / 2;
    let s = "GET number of tags should be limitable by `n` query parameter";
    let page = tag_list(t, 60, s, &t.tags(&format!("?n={k}")).await);
    check!(t, 60, s, page.len() == k, "?n={k} returned {page:?}");
    t.ok(60, s);
    let s = "GET start of tag is set by `last` query parameter";
    let page = tag_list(t, 61, s, &t.tags(&format!("?n={k}")).await);
    check!(t, 61, s, page.len() == k && k > 0, "?n={k} returned {page:?}");
    let last = &page[k - 1];
    let r = t.tags(&format!("?n={k}&last={}", query_escape(last))).await;
    let next = tag_list(t, 61, s, &r);
    // Stricter than v1.1.1 (its checks re-test the first page; fixed later):
    // the next page holds up to k tags, all sorting after `last`.
    check!(t, 61, s, next.len() <= k && next.iter().all(|x| x > last), "after {last:?}: {next:?}");
    t.ok(61, s);

    // Listing referrers
    let s = "GET request to nonexistent blob should result in empty 200 response";
    let r = t.call(Method::GET, &t.ns_path(&format!("referrers/{DUMMY_DIGEST}"))).await;
    let entries = t.referrers_entries(62, s, &r);
    check!(t, 62, s, entries.is_empty(), "want 0 referrers, got {entries:?}");
    t.ok(62, s);
    let s = "GET request to existing blob should yield 200";
    let r = t.call(Method::GET, &t.ns_path(&format!("referrers/{}", m4.digest))).await;
    let entries = t.referrers_entries(63, s, &r);
    check!(t, 63, s, entries.len() == 5, "want exactly 5 referrers, got {}: {entries:?}", entries.len());
    check!(t, 63, s, entries[0]["digest"] != entries[1]["digest"], "duplicate entries: {entries:?}");
    t.check_annotations(63, s, d, &entries);
    t.ok(63, s);
    let s = "GET request to existing blob with filter should yield 200";
    let path = with_query(&t.ns_path(&format!("referrers/{}", m4.digest)), "artifactType", ARTIFACT_A);
    let r = t.call(Method::GET, &path).await;
    let entries = t.referrers_entries(64, s, &r);
    if let Some(applied) = r.header("oci-filters-applied") {
        check!(t, 64, s, applied == "artifactType", "OCI-Filters-Applied {applied:?}");
        check!(t, 64, s, entries.len() == 2, "want exactly 2 filtered referrers, got {entries:?}");
        t.check_annotations(64, s, d, &entries);
        t.ok_with(64, s, "filtered: OCI-Filters-Applied: artifactType");
    } else {
        check!(t, 64, s, entries.len() == 5, "unfiltered: want 5 referrers, got {entries:?}");
        t.warn(64, s, "filtering by artifactType is not applied");
        t.ok_with(64, s, "unfiltered");
    }
    let s = "GET request to missing manifest should yield 200";
    let r = t.call(Method::GET, &t.ns_path(&format!("referrers/{}", d.manifests[3].digest))).await;
    let entries = t.referrers_entries(65, s, &r);
    check!(t, 65, s, entries.len() == 1, "want exactly 1 referrer, got {entries:?}");
    check!(t, 65, s, entries[0]["digest"] == d.refs_c_layer.digest.as_str(), "want refsC, got {entries:?}");
    t.ok(65, s);

    // Teardown
    let deletable = |r: &Resp| r.is_2xx() || r.status == 404 || r.status == 405;
    let refs = [&d.refs_a_config, &d.refs_a_layer, &d.refs_b_config, &d.refs_b_layer, &d.refs_c_layer];
    let s = "Delete created manifest & associated tags";
    let mut statuses = Vec::new();
    for m in [&d.refs_index, &d.manifests[2], m4].into_iter().chain(refs) {
        let r = t.call(Method::DELETE, &t.ns_path(&format!("manifests/{}", m.digest))).await;
        check!(t, 66, s, deletable(&r), "DELETE {}: {}", m.digest, r.brief());
        statuses.push(r.status);
    }
    t.ok_with(66, s, &format!("{statuses:?}"));
    for (n, s, blob) in [
        (67, "Delete config blob created in tests", &d.configs[2]),
        (68, "Delete layer blob created in setup", &d.layer),
    ] {
        let r = t.call(Method::DELETE, &t.ns_path(&format!("blobs/{}", blob.digest))).await;
        check!(t, n, s, deletable(&r), "{}", r.brief());
        t.ok_with(n, s, &r.status.to_string());
    }
    let s = "References teardown";
    let mut statuses = Vec::new();
    for m in [&d.refs_index, m4].into_iter().chain(refs) {
        let r = t.call(Method::DELETE, &t.ns_path(&format!("manifests/{}", m.digest))).await;
        check!(t, 69, s, deletable(&r), "DELETE manifest {} again: {}", m.digest, r.brief());
        statuses.push(r.status);
    }
    for blob in [&d.configs[4], &d.ref_blob_a, &d.ref_blob_b, &d.empty_json] {
        let r = t.call(Method::DELETE, &t.ns_path(&format!("blobs/{}", blob.digest))).await;
        check!(t, 69, s, deletable(&r), "DELETE blob {}: {}", blob.digest, r.brief());
        statuses.push(r.status);
    }
    t.ok_with(69, s, &format!("manifests then blobs: {statuses:?}"));
    t.end();
}

async fn content_management(t: &mut Suite, d: &Data) {
    t.begin("Content Management");

    let s = "Setup / Populate registry with test config blob";
    let r = t.post_put(&d.configs[3]).await;
    check!(t, 70, s, r.is_2xx(), "{}", r.brief());
    t.ok(70, s);
    let s = "Setup / Populate registry with test layer";
    let r = t.post_put(&d.layer).await;
    check!(t, 71, s, r.is_2xx(), "{}", r.brief());
    t.ok(71, s);
    let s = "Setup / Populate registry with test tag";
    let r = t.put_manifest("tagtest0", MANIFEST_MT, &d.manifests[3]).await;
    check!(t, 72, s, r.is_2xx(), "{}", r.brief());
    t.ok(72, s);
    let tag_count = |t: &Suite, n: u32, s: &str, r: &Resp| -> usize {
        let body = r.json();
        check!(t, n, s, body.is_ok(), "tags body is not JSON: {}", r.brief());
        let body = body.unwrap();
        body["tags"].as_array().map_or(0, Vec::len)
    };
    let s = "Setup / Check how many tags there are before anything gets deleted";
    let r = t.tags("").await;
    check!(t, 73, s, r.status == 200, "{}", r.brief());
    let num_tags = tag_count(t, 73, s, &r);
    t.ok(73, s);

    let s = "DELETE request to manifest tag should return 202, unless tag deletion is disallowed (400/405)";
    let r = t.call(Method::DELETE, &t.ns_path("manifests/tagtest0")).await;
    check!(t, 74, s, [202, 400, 405].contains(&r.status), "want 202, 400 or 405, got {}", r.brief());
    if r.status == 400 {
        let code = r.json().ok().and_then(|b| b["errors"][0]["code"].as_str().map(str::to_owned));
        check!(t, 74, s, code.as_deref() == Some("UNSUPPORTED"), "400 must be UNSUPPORTED: {}", r.brief());
    }
    t.ok_with(74, s, &format!("{}", r.status));
    let s = "DELETE request to manifest (digest) should yield 202 response unless already deleted";
    let m3 = &d.manifests[3];
    let r = t.call(Method::DELETE, &t.ns_path(&format!("manifests/{}", m3.digest))).await;
    check!(t, 75, s, r.status == 202 || r.status == 404, "want 202 or 404, got {}", r.brief());
    t.ok_with(75, s, &format!("{}", r.status));
    let s = "GET request to deleted manifest URL should yield 404 response, unless delete is disallowed";
    let r = t.call(Method::GET, &t.ns_path(&format!("manifests/{}", m3.digest))).await;
    check!(t, 76, s, r.status == 404 || r.status == 200, "want 404 (or 200), got {}", r.brief());
    t.ok_with(76, s, &format!("{}", r.status));
    let s = "GET request to tags list should reflect manifest deletion";
    let r = t.tags("").await;
    let want = num_tags.checked_sub(1);
    check!(t, 77, s, want.is_some(), "no tags were listed in #73");
    let want = want.unwrap();
    if r.status == 404 {
        check!(t, 77, s, want == 0, "404 with {want} tags expected to remain");
    } else {
        check!(t, 77, s, r.status == 200, "{}", r.brief());
        let got = tag_count(t, 77, s, &r);
        check!(t, 77, s, got == want, "want {want} tags, got {}", r.brief());
    }
    t.ok_with(77, s, &format!("{} -> {want} tags", r.status));

    let s = "DELETE request to blob URL should yield 202 response";
    let mut statuses = Vec::new();
    for blob in [&d.configs[3], &d.layer] {
        let r = t.call(Method::DELETE, &t.ns_path(&format!("blobs/{}", blob.digest))).await;
        check!(
            t,
            78,
            s,
            [202, 404, 405].contains(&r.status),
            "DELETE {}: want 202, 404 or 405, got {}",
            blob.digest,
            r.brief()
        );
        statuses.push(r.status);
    }
    let layer_delete = statuses[1];
    t.ok_with(78, s, &format!("{statuses:?}"));
    let s = "GET request to deleted blob URL should yield 404 response";
    if layer_delete == 405 {
        t.skip(79, s, "blob deletion disallowed (405)");
    } else {
        let r = t.call(Method::GET, &t.ns_path(&format!("blobs/{}", d.configs[3].digest))).await;
        check!(t, 79, s, r.status == 404, "{}", r.brief());
        t.ok(79, s);
    }
    t.end();
}
