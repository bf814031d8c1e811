//! The pull-through cache against real upstream registries on loopback: a
//! second berth with authentication on (the Docker token dance), killed,
//! corrupted and failed over. Real clients and CNCF distribution as an upstream
//! are exercised by `scripts/proxy.sh`.

use std::time::Duration;

use berth_core::Digest;
use berth_testkit::{BerthProcess, Blob, ImageFixture};
use futures_util::future::join_all;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::common::{client, push_image, put_manifest};

const PASSWORD: &str = "upstream-admin-Pw1";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_berth")
}

/// A client that sends the upstream admin's Basic credentials (for seeding).
fn admin_client() -> Client {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("admin:{PASSWORD}"));
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Basic {token}").parse().unwrap());
    Client::builder().default_headers(headers).build().unwrap()
}

/// Adds an upstream through the accelerator API and returns the `data` part.
async fn add_upstream(c: &Client, base: &str, body: Value) -> Value {
    let r = c.post(format!("{base}/api/accel/upstreams")).json(&body).send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["success"], true);
    v["data"].clone()
}

async fn stats(c: &Client, base: &str) -> Value {
    let v: Value = c.get(format!("{base}/api/accel/cache/stats")).send().await.unwrap().json().await.unwrap();
    v["data"].clone()
}

/// Stats once `entry_count` is `entries`: clients finish as soon as the bytes
/// are verified, and the entry is recorded when the store has them (at most 5 s).
async fn settled_stats(c: &Client, base: &str, entries: u64) -> Value {
    for _ in 0..50 {
        let s = stats(c, base).await;
        if s["entry_count"] == entries {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stats(c, base).await
}

async fn get(c: &Client, url: String) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let r = c.get(url).send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
}

fn cache_header(h: &reqwest::header::HeaderMap) -> &str {
    h.get("x-berth-cache").and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn pulls_through_namespace_and_mirror_mode_with_the_token_dance() {
    let upstream = BerthProcess::start_with_auth(bin(), PASSWORD, &[]);
    let seed = admin_client();
    let image = ImageFixture::new(61, &[3000, 70_000]);
    push_image(&seed, &upstream.url(), "team/app", &image, "v1").await;
    let child_a = ImageFixture::new(62, &[100]);
    let child_b = ImageFixture::new(63, &[200]);
    push_image(&seed, &upstream.url(), "team/multi", &child_a, &child_a.digest.to_string()).await;
    push_image(&seed, &upstream.url(), "team/multi", &child_b, &child_b.digest.to_string()).await;
    let index = berth_testkit::fixtures::index(&[
        (&child_a.digest, child_a.manifest.len()),
        (&child_b.digest, child_b.manifest.len()),
    ]);
    let index_digest = Digest::sha256(&index);
    let r =
        put_manifest(&seed, &upstream.url(), "team/multi", "latest", berth_core::media_type::OCI_INDEX, index).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let artifact = ImageFixture::artifact(64, "application/vnd.example.sbom", &image.digest, image.manifest.len());
    push_image(&seed, &upstream.url(), "team/app", &artifact, &artifact.digest.to_string()).await;
    // Anonymous callers cannot read the upstream's private project: the cache must log in.
    let anon = client();
    let (status, _, _) = get(&anon, format!("{}/v2/team/app/manifests/v1", upstream.url())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let cache = BerthProcess::start(bin());
    let base = cache.url();
    let c = client();
    let created = add_upstream(
        &c,
        &base,
        json!({"name": "Upstream Berth", "url": upstream.url(), "priority": 1, "namespace": "up",
               "username": "admin", "password": PASSWORD}),
    )
    .await;
    assert_eq!(created["enabled"], true);
    assert_eq!(created["has_password"], true);
    assert!(created.get("password").is_none(), "the password is never shown");

    // Namespaced path: a miss, then a hit; digest and bytes as upstream.
    let (status, h, body) = get(&c, format!("{base}/v2/up/team/app/manifests/v1")).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(cache_header(&h), "MISS");
    assert_eq!(body, image.manifest);
    assert_eq!(h["docker-content-digest"], image.digest.as_str());
    let (_, h, _) = get(&c, format!("{base}/v2/up/team/app/manifests/v1")).await;
    assert_eq!(cache_header(&h), "HIT");
    let mut fetched_bytes = 0;
    for blob in image.blobs() {
        let (status, h, body) = get(&c, format!("{base}/v2/up/team/app/blobs/{}", blob.digest)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cache_header(&h), "MISS");
        assert_eq!(Digest::sha256(&body), blob.digest);
        fetched_bytes += body.len();
        let (_, h, again) = get(&c, format!("{base}/v2/up/team/app/blobs/{}", blob.digest)).await;
        assert_eq!(cache_header(&h), "HIT");
        assert_eq!(again, body);
    }
    // Tag lists come from the upstream (v2 was never pulled), paged like local ones.
    let r = put_manifest(
        &seed,
        &upstream.url(),
        "team/app",
        "v2",
        berth_core::media_type::OCI_MANIFEST,
        image.manifest.clone(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = c.get(format!("{base}/v2/up/team/app/tags/list")).send().await.unwrap().json().await.unwrap();
    let all: Vec<&str> = v["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(all.contains(&"v1") && all.contains(&"v2"), "{v}");
    let r = c.get(format!("{base}/v2/up/team/app/tags/list?n=1")).send().await.unwrap();
    assert!(r.headers().contains_key("link"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tags"].as_array().unwrap().len(), 1);
    // A range of a cached blob.
    let layer = &image.layers[1];
    let r = c
        .get(format!("{base}/v2/up/team/app/blobs/{}", layer.digest))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &layer.data[10..20]);

    // Mirror mode: the host-less name is served from the same cache repository.
    let (status, h, body) = get(&c, format!("{base}/v2/team/app/manifests/v1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cache_header(&h), "HIT");
    assert_eq!(body, image.manifest);
    // An index through mirror mode, then its children by digest.
    let (status, h, body) = get(&c, format!("{base}/v2/team/multi/manifests/latest")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h["docker-content-digest"], index_digest.as_str());
    assert_eq!(Digest::sha256(&body), index_digest);
    for child in [&child_a, &child_b] {
        let (status, h, body) = get(&c, format!("{base}/v2/team/multi/manifests/{}", child.digest)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cache_header(&h), "MISS");
        assert_eq!(body, child.manifest);
    }
    // containerd's ns parameter picks the upstream by host and is echoed.
    let host = upstream.addr.clone();
    let r = c.get(format!("{base}/v2/team/app/manifests/v1?ns={host}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["oci-namespace"], host.as_str());
    let r = c.get(format!("{base}/v2/team/app/manifests/v1?ns=quay.io")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "no upstream serves quay.io");

    // Referrers are fetched from the upstream and listed.
    let v: Value =
        c.get(format!("{base}/v2/up/team/app/referrers/{}", image.digest)).send().await.unwrap().json().await.unwrap();
    let listed: Vec<&str> = v["manifests"].as_array().unwrap().iter().map(|m| m["digest"].as_str().unwrap()).collect();
    assert_eq!(listed, [artifact.digest.as_str()]);

    // Cached images are listed like local ones.
    let v: Value = c.get(format!("{base}/v2/_catalog")).send().await.unwrap().json().await.unwrap();
    let repos: Vec<&str> = v["repositories"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(repos.contains(&"up/team/app") && repos.contains(&"up/team/multi"), "{repos:?}");

    // Pushes into the namespace are refused; pushes elsewhere never go upstream.
    let r = c.post(format!("{base}/v2/up/team/app/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(crate::common::error_code(r).await, "DENIED");
    let local = ImageFixture::new(65, &[50]);
    push_image(&c, &base, "team/app", &local, "v1").await;
    let (_, h, body) = get(&c, format!("{base}/v2/team/app/manifests/v1")).await;
    assert_eq!(body, local.manifest, "a local repository always wins over mirror mode");
    assert_eq!(cache_header(&h), "");

    // Stats add up: every blob fetched is one entry, sizes sum.
    let s = settled_stats(&c, &base, 3).await;
    assert_eq!(s["entry_count"], 3, "{s}");
    assert_eq!(s["total_size"], fetched_bytes, "{s}");
    assert!(s["hit_count"].as_u64().unwrap() >= 5, "{s}");
    assert!(s["miss_count"].as_u64().unwrap() >= 6, "{s}");
    let v: Value = c.get(format!("{base}/api/accel/cache/entries")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["data"]["count"], 3);
    let metrics = c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("berth_proxy_hits_total"), "{metrics}");
    assert!(metrics.contains("berth_proxy_upstream_bytes_total"), "{metrics}");

    // The seed 000 pull API goes through the same path.
    let r = c.get(format!("{base}/api/accel/pull/up/team/app/manifests/v1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), image.manifest.as_slice());
    let r = c.get(format!("{base}/api/accel/pull/up/team/app/manifests/nope")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "IMAGE_NOT_FOUND");

    // Clearing the cache empties it; the next pull is a miss again.
    let v: Value = c.delete(format!("{base}/api/accel/cache")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["data"]["message"], "Cache cleared");
    assert_eq!(stats(&c, &base).await["entry_count"], 0);
    let (status, h, _) = get(&c, format!("{base}/v2/up/team/app/blobs/{}", image.layers[0].digest)).await;
    assert_eq!((status, cache_header(&h)), (StatusCode::OK, "MISS"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_share_one_upstream_fetch() {
    const CLIENTS: usize = 50;
    let upstream = BerthProcess::start(bin());
    let c = client();
    let layer = Blob::random(200 * 1024 * 1024, 71);
    crate::common::push_blob(&c, &upstream.url(), "lib/big", &layer).await;
    let cache = BerthProcess::start(bin());
    let base = cache.url();
    add_upstream(&c, &base, json!({"name": "u", "url": upstream.url(), "namespace": "up"})).await;
    // Every client hashes as it receives: nothing holds 50 copies in memory.
    let pulls = (0..CLIENTS).map(|_| {
        let url = format!("{base}/v2/up/lib/big/blobs/{}", layer.digest);
        tokio::spawn(async move {
            use sha2::Digest as _;
            let mut r = client().get(url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let mut hasher = sha2::Sha256::new();
            while let Some(chunk) = r.chunk().await.unwrap() {
                hasher.update(&chunk);
            }
            format!("sha256:{}", hex::encode(hasher.finalize()))
        })
    });
    for digest in join_all(pulls).await {
        assert_eq!(digest.unwrap(), layer.digest.as_str());
    }
    let fetches =
        upstream.log_lines().iter().filter(|l| l.contains(&format!("GET /v2/lib/big/blobs/{}", layer.digest))).count();
    assert_eq!(fetches, 1, "{CLIENTS} concurrent misses caused {fetches} upstream fetches");
    let s = settled_stats(&c, &base, 1).await;
    assert_eq!((s["entry_count"].clone(), s["total_size"].clone()), (json!(1), json!(layer.data.len())));
}

#[tokio::test]
async fn upstream_failures_serve_stale_copies_and_fail_over() {
    let mut upstream = BerthProcess::start(bin());
    let c = client();
    let image = ImageFixture::new(81, &[1000]);
    let other = ImageFixture::new(82, &[1000]);
    push_image(&c, &upstream.url(), "lib/app", &image, "v1").await;
    push_image(&c, &upstream.url(), "lib/app", &other, "v2").await;
    // Tags are revalidated on every pull (TTL 0).
    let mut cache = BerthProcess::start_with_env(bin(), &[], &[("BERTH_PROXY__TAG_TTL", "0")]);
    let base = cache.url();
    // A dead upstream of better priority in the same namespace: failover.
    add_upstream(
        &c,
        &base,
        json!({"name": "dead", "url": "http://127.0.0.1:9", "namespace": "up", "priority": 1, "timeout_secs": 2}),
    )
    .await;
    add_upstream(&c, &base, json!({"name": "live", "url": upstream.url(), "namespace": "up", "priority": 2})).await;
    let (status, h, _) = get(&c, format!("{base}/v2/up/lib/app/manifests/v1")).await;
    assert_eq!((status, cache_header(&h)), (StatusCode::OK, "MISS"));
    for blob in image.blobs() {
        assert_eq!(get(&c, format!("{base}/v2/up/lib/app/blobs/{}", blob.digest)).await.0, StatusCode::OK);
    }
    let (status, h, _) = get(&c, format!("{base}/v2/up/lib/app/manifests/v1")).await;
    assert_eq!((status, cache_header(&h)), (StatusCode::OK, "REVALIDATED"));
    let health: Value =
        c.get(format!("{base}/api/accel/upstreams/dead/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["data"]["healthy"], false);
    let health: Value =
        c.get(format!("{base}/api/accel/upstreams/live/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["data"]["status"], "healthy");

    // The upstream dies: the cached tag and its blobs still pull, marked stale.
    upstream.kill();
    let (status, h, body) = get(&c, format!("{base}/v2/up/lib/app/manifests/v1")).await;
    assert_eq!((status, cache_header(&h)), (StatusCode::OK, "STALE"));
    assert!(h["warning"].to_str().unwrap().contains("110"));
    assert_eq!(body, image.manifest);
    for blob in image.blobs() {
        let (status, _, body) = get(&c, format!("{base}/v2/up/lib/app/blobs/{}", blob.digest)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(Digest::sha256(&body), blob.digest);
    }
    // The tag list falls back to what is cached.
    let v: Value = c.get(format!("{base}/v2/up/lib/app/tags/list")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["tags"], json!(["v1"]), "{v}");
    // What was never cached fails with a clear gateway error.
    let r = c.get(format!("{base}/v2/up/lib/app/manifests/v2")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["detail"]["reason"], "UPSTREAM_ERROR", "{v}");

    // Offline: nothing is fetched, what is not cached is simply unknown.
    cache.kill();
    let offline = BerthProcess::start_with_env(bin(), &[], &[("BERTH_PROXY__OFFLINE", "true")]);
    let live = BerthProcess::start(bin());
    push_image(&c, &live.url(), "lib/app", &image, "v1").await;
    add_upstream(&c, &offline.url(), json!({"name": "live", "url": live.url(), "namespace": "up"})).await;
    let r = c.get(format!("{}/v2/up/lib/app/manifests/v1", offline.url())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["detail"]["reason"], "CACHE_OFFLINE", "{v}");
    assert!(!live.log_lines().iter().any(|l| l.contains("GET /v2/lib/app/manifests")), "offline never asks upstream");
}

#[tokio::test]
async fn corrupt_upstream_blobs_fail_the_pull_and_are_not_cached() {
    let upstream = BerthProcess::start(bin());
    let c = client();
    let image = ImageFixture::new(91, &[300_000]);
    push_image(&c, &upstream.url(), "lib/app", &image, "v1").await;
    let layer = &image.layers[0];
    let path =
        upstream.data_dir().join(format!("blobs/sha256/{}/{}", &layer.digest.encoded()[..2], layer.digest.encoded()));
    let mut bytes = std::fs::read(&path).expect("the upstream's blob file");
    bytes[1234] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let cache = BerthProcess::start(bin());
    let base = cache.url();
    add_upstream(&c, &base, json!({"name": "u", "url": upstream.url(), "namespace": "up"})).await;
    let r = c.get(format!("{base}/v2/up/lib/app/blobs/{}", layer.digest)).send().await.unwrap();
    if r.status() == StatusCode::OK {
        // The usual case: headers go out before the digest is known.
        assert!(r.bytes().await.is_err(), "the body must break off instead of completing");
    } else {
        // The fetch failed before the response began (possible on a loaded machine).
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY, "a clear gateway error otherwise");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stats(&c, &base).await["entry_count"], 0, "nothing corrupt is cached");
    let r = c.head(format!("{base}/v2/up/lib/app/blobs/{}", layer.digest)).send().await.unwrap();
    assert_ne!(r.headers().get("x-berth-cache").map(|v| v.to_str().unwrap()), Some("HIT"));
}

#[tokio::test]
async fn eviction_keeps_the_cache_under_max_size_and_spares_pins() {
    let upstream = BerthProcess::start(bin());
    let c = client();
    let blobs: Vec<Blob> = (0..6).map(|i| Blob::random(1024 * 1024, 500 + i)).collect();
    for b in &blobs {
        crate::common::push_blob(&c, &upstream.url(), "lib/data", b).await;
    }
    let limit = 3 * 1024 * 1024 + 1000;
    let cache = BerthProcess::start_with_env(bin(), &[], &[("BERTH_PROXY__MAX_SIZE", &limit.to_string())]);
    let base = cache.url();
    add_upstream(&c, &base, json!({"name": "u", "url": upstream.url(), "namespace": "up"})).await;
    let pull = |d: &Digest| get(&c, format!("{base}/v2/up/lib/data/blobs/{d}"));
    assert_eq!(pull(&blobs[0].digest).await.0, StatusCode::OK);
    settled_stats(&c, &base, 1).await;
    let r = c.put(format!("{base}/api/accel/cache/{}/pin", blobs[0].digest)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for b in &blobs[1..] {
        let (status, _, body) = pull(&b.digest).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(Digest::sha256(&body), b.digest);
        tokio::time::sleep(Duration::from_millis(1100)).await; // distinct access seconds
    }
    let s = settled_stats(&c, &base, 3).await;
    assert!(s["total_size"].as_u64().unwrap() <= limit, "{s}");
    assert_eq!(s["entry_count"], 3, "{s}");
    assert!(s["evictions"].as_u64().unwrap() >= 3, "{s}");
    let entries: Value = c.get(format!("{base}/api/accel/cache/entries")).send().await.unwrap().json().await.unwrap();
    let kept: Vec<&str> =
        entries["data"]["entries"].as_array().unwrap().iter().map(|e| e["digest"].as_str().unwrap()).collect();
    assert!(kept.contains(&blobs[0].digest.as_str()), "the pinned entry survives: {kept:?}");
    assert!(kept.contains(&blobs[5].digest.as_str()), "the newest stays: {kept:?}");
    // An evicted blob is fetched again on demand.
    let (status, h, body) = pull(&blobs[1].digest).await;
    assert_eq!((status, cache_header(&h)), (StatusCode::OK, "MISS"));
    assert_eq!(Digest::sha256(&body), blobs[1].digest);
    let metrics = c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("berth_proxy_evictions_total{reason=\"size\"}"), "{metrics}");
}

#[tokio::test]
async fn upstream_management_validates_and_answers_in_the_envelope() {
    let cache = BerthProcess::start(bin());
    let base = cache.url();
    let c = client();
    let post = |body: Value| c.post(format!("{base}/api/accel/upstreams")).json(&body).send();
    for bad in [
        json!({"url": "https://r.example"}),
        json!({"name": "x"}),
        json!({"name": "x", "url": "ftp://r.example"}),
        json!({"name": "x", "url": "not a url"}),
        json!({"name": "x", "url": "https://r.example", "namespace": "Bad NS"}),
        json!({"name": "x", "url": "https://r.example", "max_concurrent": 0}),
        json!({"name": "x", "url": "https://r.example", "surprise": 1}),
    ] {
        let r = post(bad.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["success"], false);
        assert!(v["timestamp"].is_string() && v["error"]["code"].is_string(), "{v}");
    }
    let hub =
        add_upstream(&c, &base, json!({"name": "Docker Hub", "url": "https://registry-1.docker.io", "priority": 1}))
            .await;
    assert_eq!(hub["namespace"], "docker.io");
    assert_eq!(hub["library_prefix"], true);
    assert_eq!(hub["mirror"], true);
    assert_eq!(
        post(json!({"name": "Docker Hub", "url": "https://x.example"})).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let r = c.post(format!("{base}/api/accel/upstreams/Docker%20Hub/disable")).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["enabled"], false);
    let r = c
        .put(format!("{base}/api/accel/upstreams/Docker%20Hub"))
        .json(&json!({"priority": 7, "enabled": true}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["data"]["priority"].clone(), v["data"]["enabled"].clone()), (json!(7), json!(true)));
    let v: Value = c.get(format!("{base}/api/accel/upstreams")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["data"]["count"], 1);
    for path in ["upstreams/nope/enable", "upstreams/nope/disable"] {
        assert_eq!(c.post(format!("{base}/api/accel/{path}")).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    }
    assert_eq!(
        c.get(format!("{base}/api/accel/upstreams/nope/health")).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.delete(format!("{base}/api/accel/cache/sha256:{}", "0".repeat(64))).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let r = c.delete(format!("{base}/api/accel/upstreams/Docker%20Hub")).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["message"], "Upstream deleted");
    assert_eq!(
        c.delete(format!("{base}/api/accel/upstreams/Docker%20Hub")).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let s = stats(&c, &base).await;
    assert_eq!((s["entry_count"].clone(), s["hit_rate"].clone()), (json!(0), json!(0.0)));
}

#[tokio::test]
async fn accelerator_api_needs_an_admin_when_auth_is_on() {
    let cache = BerthProcess::start_with_auth(bin(), PASSWORD, &[]);
    let base = cache.url();
    let c = client();
    let r = c.get(format!("{base}/api/accel/upstreams")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], false);
    let login: Value = c
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().expect("login token").to_owned();
    let upstream = BerthProcess::start(bin());
    let image = ImageFixture::new(99, &[500]);
    push_image(&c, &upstream.url(), "lib/app", &image, "v1").await;
    for (name, url, priority) in [("hub", "https://registry-1.docker.io".to_owned(), 5), ("local", upstream.url(), 1)] {
        let r = c
            .post(format!("{base}/api/accel/upstreams"))
            .bearer_auth(&token)
            .json(&json!({"name": name, "url": url, "priority": priority, "namespace": format!("{name}.ns")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    // An anonymous client (docker with registry-mirrors) asks a token for the name it
    // pulls; mirror mode serves it from the public cache namespace.
    for name in ["lib/app", "local.ns/lib/app"] {
        let r = c.get(format!("{base}/auth?service=berth&scope=repository:{name}:pull")).send().await.unwrap();
        let grant: Value = r.json().await.unwrap();
        let jwt = grant["token"].as_str().unwrap().to_owned();
        let r = c.get(format!("{base}/v2/{name}/manifests/v1")).bearer_auth(&jwt).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "anonymous mirror pull of {name}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), image.manifest.as_slice());
    }
    // …but cannot push there.
    let r = c.get(format!("{base}/auth?service=berth&scope=repository:lib/app:pull,push")).send().await.unwrap();
    let grant: Value = r.json().await.unwrap();
    let jwt = grant["token"].as_str().unwrap().to_owned();
    let r = c.post(format!("{base}/v2/lib/app/blobs/uploads/")).bearer_auth(&jwt).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The namespace became a public project: anonymous pulls may use the cache.
    let v: Value =
        c.get(format!("{base}/api/v1/projects/hub.ns")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["visibility"], "public", "{v}");
}

#[tokio::test]
async fn caches_into_postgres_and_s3_and_evicts_there() {
    let Some((database_url, storage_url)) = crate::migrate::scale_out_urls() else {
        eprintln!("scale-out services not configured; skipping the PostgreSQL + S3 cache test");
        return;
    };
    let upstream = BerthProcess::start(bin());
    let c = client();
    let image = ImageFixture::new(95, &[6 * 1024 * 1024, 6 * 1024 * 1024 + 7]);
    push_image(&c, &upstream.url(), "lib/app", &image, "v1").await;
    let keys = crate::migrate::s3_keys();
    let mut env: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let limit = (7 * 1024 * 1024).to_string();
    env.push(("BERTH_PROXY__MAX_SIZE", &limit));
    let cache =
        BerthProcess::start_with_env(bin(), &["--database-url", &database_url, "--storage", &storage_url], &env);
    let base = cache.url();
    add_upstream(&c, &base, json!({"name": "u", "url": upstream.url(), "namespace": "up"})).await;
    let (status, h, body) = get(&c, format!("{base}/v2/up/lib/app/manifests/v1")).await;
    assert_eq!((status, cache_header(&h)), (StatusCode::OK, "MISS"));
    assert_eq!(body, image.manifest);
    for layer in &image.layers {
        let (status, h, body) = get(&c, format!("{base}/v2/up/lib/app/blobs/{}", layer.digest)).await;
        assert_eq!((status, cache_header(&h)), (StatusCode::OK, "MISS"));
        assert_eq!(Digest::sha256(&body), layer.digest);
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let s = settled_stats(&c, &base, 1).await;
    assert_eq!(s["entry_count"], 1, "one 6 MiB layer fits under 7 MiB: {s}");
    // The survivor is served from S3; the evicted one is fetched again.
    let (_, h, body) = get(&c, format!("{base}/v2/up/lib/app/blobs/{}", image.layers[1].digest)).await;
    assert_eq!(cache_header(&h), "HIT");
    assert_eq!(Digest::sha256(&body), image.layers[1].digest);
    let (_, h, body) = get(&c, format!("{base}/v2/up/lib/app/blobs/{}", image.layers[0].digest)).await;
    assert_eq!(cache_header(&h), "MISS");
    assert_eq!(Digest::sha256(&body), image.layers[0].digest);
}
