//! Webhooks against real HTTP receivers started by the test: signatures,
//! CloudEvents, retries across a receiver outage and a crash of berth, test
//! pings, redelivery, and a slow receiver that must not slow anything else.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use berth_testkit::{BerthProcess, ImageFixture};
use hmac::{KeyInit, Mac};
use reqwest::Client;
use serde_json::{Value, json};

use crate::common::{client, push_blob, push_image, put_manifest};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_berth")
}

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    /// What the receiver answered.
    status: u16,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

#[derive(Default)]
struct ReceiverState {
    got: Mutex<Vec<Received>>,
    status: AtomicU16,
    delay_ms: AtomicU64,
}

/// An HTTP server on loopback that records every POST and answers with a
/// settable status after a settable delay.
struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    async fn start() -> Receiver {
        let state = Arc::new(ReceiverState { status: AtomicU16::new(200), ..Default::default() });
        async fn record(State(s): State<Arc<ReceiverState>>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
            let delay = s.delay_ms.load(Ordering::Relaxed);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let status = s.status.load(Ordering::Relaxed);
            s.got.lock().unwrap().push(Received { path: uri.path().to_owned(), headers, body, status });
            StatusCode::from_u16(status).unwrap()
        }
        let app = axum::Router::new().route("/{*path}", axum::routing::post(record)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, state }
    }

    fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::Relaxed);
    }

    fn set_delay(&self, delay: Duration) {
        self.state.delay_ms.store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    fn got(&self, path: &str) -> Vec<Received> {
        self.state.got.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }

    fn delivered(&self, path: &str) -> Vec<Received> {
        self.got(path).into_iter().filter(|r| (200..300).contains(&r.status)).collect()
    }
}

/// Polls `done` every 100 ms for up to `limit`; panics with `what` on timeout.
async fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_webhook(c: &Client, base: &str, body: Value) -> Value {
    let r = c.post(format!("{base}/api/v1/webhooks")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201, "create webhook {body}");
    r.json().await.unwrap()
}

fn hmac_sha256_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// RFC 3339 with a `T`, seconds and a `Z` or offset: the CloudEvents `time` form.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && (s.ends_with('Z') || s[19..].contains('+') || s[19..].contains('-'))
        && s[..4].bytes().all(|c| c.is_ascii_digit())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliveries_are_signed_and_survive_an_outage_and_a_crash() {
    let receiver = Receiver::start().await;
    receiver.set_status(503);
    let mut berth = BerthProcess::start_with_env(
        bin(),
        &[],
        &[
            ("BERTH_WEBHOOKS__RETRY_BASE", "1"),
            ("BERTH_WEBHOOKS__RETRY_MAX", "2"),
            ("BERTH_WEBHOOKS__MAX_ATTEMPTS", "1000"),
        ],
    );
    let c = client();
    let base = berth.url();

    // Bad input is refused with seed 004's shape.
    for (body, why) in [
        (json!({"url": "ftp://x/y", "events": ["push"]}), "scheme"),
        (json!({"url": "not a url", "events": ["push"]}), "url"),
        (json!({"events": ["push"]}), "missing url"),
        (json!({"url": format!("{}/a", receiver.url)}), "missing events"),
        (json!({"url": format!("{}/a", receiver.url), "events": []}), "empty events"),
        (json!({"url": format!("{}/a", receiver.url), "events": ["nope"]}), "unknown event"),
        (json!({"url": format!("{}/a", receiver.url), "events": ["push"], "format": "xml"}), "format"),
        (json!({"url": format!("{}/a", receiver.url), "events": ["push"], "repository": "Team/*"}), "glob"),
        (json!({"url": format!("{}/a", receiver.url), "events": ["push"], "colour": "red"}), "unknown field"),
    ] {
        let r = c.post(format!("{base}/api/v1/webhooks")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{why}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "INVALID_REQUEST", "{why}");
    }
    let r = c.post(format!("{base}/api/v1/webhooks")).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Pages whose offset would overflow are refused, not a crash (found by schemathesis).
    for page in ["0", "-1", "x", "576460752303423489", "1000000001"] {
        let r = c.get(format!("{base}/api/v1/webhooks?page={page}&limit=171538")).send().await.unwrap();
        assert_eq!(r.status(), 400, "page={page}");
    }
    let r = c.get(format!("{base}/api/v1/webhooks?page=1000000000&limit=1000")).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["data"].as_array().map(Vec::len), v["pagination"]["limit"].as_i64()), (Some(0), Some(100)));
    let r =
        c.get(format!("{base}/api/accel/cache/entries?page=576460752303423489&page_size=1000")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for id in ["999", "abc", "-1"] {
        let r = c.get(format!("{base}/api/v1/webhooks/{id}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{id}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "NOT_FOUND");
    }

    let secret = "s3cret-for-the-test";
    let a = create_webhook(
        &c,
        &base,
        json!({"url": format!("{}/a", receiver.url), "events": ["push", "delete"], "repository": "team/*", "secret": secret}),
    )
    .await;
    assert_eq!((a["signed"].as_bool(), a["format"].as_str()), (Some(true), Some("berth")));
    assert!(a.get("secret").is_none(), "the secret is never shown: {a}");
    let b = create_webhook(
        &c,
        &base,
        json!({"url": format!("{}/b", receiver.url), "events": ["*"], "format": "cloudevents"}),
    )
    .await;
    assert_eq!(b["repository"], "*", "repository defaults to *");
    let list: Value = c.get(format!("{base}/api/v1/webhooks?limit=1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["pagination"], json!({"page": 1, "limit": 1, "total": 2, "pages": 2}));
    assert_eq!(list["data"][0]["id"], a["id"]);

    // Three pushes and a delete in team/app, one push elsewhere.
    let image = ImageFixture::new(7, &[1024, 2048]);
    for tag in ["v1", "v2", "v3"] {
        push_image(&c, &base, "team/app", &image, tag).await;
    }
    push_image(&c, &base, "other/app", &image, "v1").await;
    let r = c.delete(format!("{base}/v2/team/app/manifests/v3")).send().await.unwrap();
    assert_eq!(r.status(), 202);

    // The receiver is down: attempts fail and are retried.
    wait_for(Duration::from_secs(30), "failed attempts", || receiver.got("/a").len() >= 6).await;
    let a_id = a["id"].as_i64().unwrap();
    let history: Value =
        c.get(format!("{base}/api/v1/webhooks/{a_id}/deliveries")).send().await.unwrap().json().await.unwrap();
    assert_eq!(history["pagination"]["total"], 4, "three pushes and a delete match team/*: {history}");
    let first = &history["data"][0];
    assert_eq!(first["state"], "pending");
    assert!(first["attempts"].as_i64().unwrap() >= 1 || history["data"][1]["attempts"].as_i64().unwrap() >= 1);

    // berth crashes with deliveries pending, comes back, and the receiver recovers.
    berth.restart();
    receiver.set_status(200);
    wait_for(Duration::from_secs(60), "every delivery to /a", || receiver.delivered("/a").len() >= 4).await;
    let count_at_b =
        |event: &str| receiver.delivered("/b").iter().filter(|r| r.json()["data"]["event"] == event).count();
    let all_at_b = || count_at_b("push") >= 4 && count_at_b("delete") >= 1 && count_at_b("repository.create") >= 2;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !all_at_b() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        all_at_b(),
        "every registry event at /b: push {}, delete {}, repository.create {}",
        count_at_b("push"),
        count_at_b("delete"),
        count_at_b("repository.create")
    );

    // /a: exactly the four events, once each, signed, in berth's format.
    tokio::time::sleep(Duration::from_secs(2)).await; // nothing more may arrive
    let delivered = receiver.delivered("/a");
    assert_eq!(delivered.len(), 4, "one success per delivery");
    let mut seen = HashSet::new();
    let mut kinds = Vec::new();
    for r in &delivered {
        assert!(seen.insert(r.header("x-berth-delivery").to_owned()), "delivery ids are unique");
        let expected = format!("sha256={}", hmac_sha256_hex(secret.as_bytes(), &r.body));
        assert_eq!(r.header("x-berth-signature"), expected, "signature over the exact body");
        assert_eq!(r.header("content-type"), "application/json");
        let v = r.json();
        assert_eq!(v["repository"], "team/app");
        assert_eq!(r.header("x-berth-event"), v["event"].as_str().unwrap());
        assert_eq!(v["delivery"], r.header("x-berth-delivery"));
        kinds.push(format!("{}:{}", v["event"].as_str().unwrap(), v["tag"].as_str().unwrap_or("")));
        if v["event"] == "push" {
            assert_eq!(v["digest"], image.digest.as_str());
            assert_eq!(v["size"], image.manifest.len());
        }
        assert!(is_rfc3339(v["timestamp"].as_str().unwrap()), "{v}");
    }
    kinds.sort();
    assert_eq!(kinds, ["delete:v3", "push:v1", "push:v2", "push:v3"]);
    // Every failed attempt belonged to a delivery that later succeeded, and
    // the history records at least every attempt that finished before the crash.
    let successful: HashSet<String> = delivered.iter().map(|r| r.header("x-berth-delivery").to_owned()).collect();
    let all_a = receiver.got("/a");
    assert!(all_a.iter().all(|r| successful.contains(r.header("x-berth-delivery"))));
    let history: Value =
        c.get(format!("{base}/api/v1/webhooks/{a_id}/deliveries")).send().await.unwrap().json().await.unwrap();
    let recorded: i64 = history["data"].as_array().unwrap().iter().map(|d| d["attempts"].as_i64().unwrap()).sum();
    assert!(history["data"].as_array().unwrap().iter().all(|d| d["state"] == "delivered"), "{history}");
    assert!(recorded <= all_a.len() as i64 && recorded >= all_a.len() as i64 - 4, "{recorded} vs {}", all_a.len());
    let one = history["data"][0]["id"].as_i64().unwrap();
    let detail: Value =
        c.get(format!("{base}/api/v1/webhooks/{a_id}/deliveries/{one}")).send().await.unwrap().json().await.unwrap();
    let log = detail["attempt_log"].as_array().unwrap();
    assert_eq!(log.len() as i64, detail["attempts"].as_i64().unwrap());
    assert_eq!(log.last().unwrap()["status"], 200);

    // /b: CloudEvents 1.0 structured mode, every event, management and registry alike.
    let mut ids = HashSet::new();
    let mut types: HashMap<String, usize> = HashMap::new();
    for r in receiver.delivered("/b") {
        assert!(r.header("content-type").starts_with("application/cloudevents+json"), "{}", r.header("content-type"));
        assert!(r.header("x-berth-signature").is_empty(), "no secret, no signature");
        let v = r.json();
        assert_eq!(v["specversion"], "1.0");
        for attr in ["id", "source", "type"] {
            assert!(v[attr].as_str().is_some_and(|s| !s.is_empty()), "required attribute {attr}: {v}");
        }
        assert!(v["type"].as_str().unwrap().starts_with("io.berth."));
        assert!(is_rfc3339(v["time"].as_str().unwrap()), "{v}");
        assert_eq!(v["datacontenttype"], "application/json");
        assert_eq!(format!("io.berth.{}", v["data"]["event"].as_str().unwrap()), v["type"].as_str().unwrap());
        assert!(ids.insert(v["id"].as_str().unwrap().to_owned()), "one delivery per event: {v}");
        *types.entry(v["data"]["event"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(types.get("push"), Some(&4), "{types:?}");
    assert_eq!(types.get("delete"), Some(&1), "{types:?}");
    assert_eq!(types.get("repository.create"), Some(&2), "{types:?}");
    assert!(types.get("blob.push").is_some_and(|n| *n >= image.blobs().count()), "{types:?}");

    // A test ping is delivered now, signed, and kept in the history.
    let r = c.post(format!("{base}/api/v1/webhooks/{a_id}/test")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["delivered"].as_bool(), v["status_code"].as_i64(), v["error"].as_str()),
        (Some(true), Some(200), Some(""))
    );
    let ping = receiver.delivered("/a").into_iter().find(|r| r.json()["event"] == "ping").expect("ping");
    assert_eq!(ping.header("x-berth-signature"), format!("sha256={}", hmac_sha256_hex(secret.as_bytes(), &ping.body)));
    receiver.set_status(500);
    let v: Value = c.post(format!("{base}/api/v1/webhooks/{a_id}/test")).send().await.unwrap().json().await.unwrap();
    assert_eq!((v["delivered"].as_bool(), v["status_code"].as_i64()), (Some(false), Some(500)));
    assert!(v["error"].as_str().unwrap().contains("500"), "{v}");
    receiver.set_status(200);

    // Redelivery sends the same event again with the same delivery id.
    let key = history["data"][0]["delivery"].as_str().unwrap().to_owned();
    let r = c.post(format!("{base}/api/v1/webhooks/{a_id}/deliveries/{one}/redeliver")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    wait_for(Duration::from_secs(20), "the redelivery", || {
        receiver.delivered("/a").iter().filter(|r| r.header("x-berth-delivery") == key).count() == 2
    })
    .await;

    // Pulls (GET, not HEAD) are events too, once a webhook wants them (within a poll interval).
    create_webhook(
        &c,
        &base,
        json!({"url": format!("{}/c", receiver.url), "events": ["pull"], "repository": "team/*"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let url = format!("{base}/v2/team/app/manifests/v1");
    assert_eq!(c.head(&url).send().await.unwrap().status(), 200);
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    wait_for(Duration::from_secs(20), "the pull event", || !receiver.delivered("/c").is_empty()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pulls = receiver.delivered("/c");
    assert_eq!(pulls.len(), 1, "one GET, one event; HEAD is not a pull");
    let v = pulls[0].json();
    assert_eq!((v["event"].as_str(), v["tag"].as_str()), (Some("pull"), Some("v1")));
    assert_eq!(v["digest"], image.digest.as_str());

    // Updating and deleting.
    let r = c
        .put(format!("{base}/api/v1/webhooks/{a_id}"))
        .json(&json!({"enabled": false, "secret": ""}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["enabled"].as_bool(), v["signed"].as_bool(), v["url"].as_str()),
        (Some(false), Some(false), a["url"].as_str())
    );
    let before = receiver.got("/a").len();
    push_image(&c, &base, "team/app", &image, "v4").await;
    let b_id = b["id"].as_i64().unwrap();
    wait_for(Duration::from_secs(20), "the v4 push at /b", || {
        receiver.delivered("/b").iter().any(|r| r.json()["data"]["tag"] == "v4")
    })
    .await;
    assert_eq!(receiver.got("/a").len(), before, "a disabled webhook gets nothing");
    let r = c.delete(format!("{base}/api/v1/webhooks/{b_id}")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = c.delete(format!("{base}/api/v1/webhooks/{b_id}")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_receiver_slows_neither_pushes_nor_other_webhooks() {
    const PUSHES: usize = 1000;
    let slow = Receiver::start().await;
    slow.set_delay(Duration::from_secs(2));
    let fast = Receiver::start().await;
    let berth = BerthProcess::start(bin());
    let c = client();
    let base = berth.url();
    let image = ImageFixture::new(11, &[512]);
    for repo in ["quiet/app", "loud/app", "calm/app"] {
        for blob in image.blobs() {
            push_blob(&c, &base, repo, blob).await;
        }
    }
    let push_tags = |repo: &'static str| {
        let (c, base, manifest) = (c.clone(), base.clone(), image.manifest.clone());
        async move {
            let start = Instant::now();
            for i in 0..PUSHES {
                let r = put_manifest(
                    &c,
                    &base,
                    repo,
                    &format!("t{i}"),
                    berth_core::media_type::OCI_MANIFEST,
                    manifest.clone(),
                )
                .await;
                assert_eq!(r.status(), 201);
            }
            start.elapsed()
        }
    };
    let quiet = push_tags("quiet/app").await;
    create_webhook(&c, &base, json!({"url": format!("{}/slow", slow.url), "events": ["push"], "repository": "loud/*"}))
        .await;
    let loud = push_tags("loud/app").await;
    // The same again into a repository no webhook matches, while the slow one's backlog waits:
    // what the first two phases differ by beyond the webhook (a bigger database, machine noise).
    let calm = push_tags("calm/app").await;
    // Another webhook, added while the slow one has a backlog of ~1000, gets its events at once.
    create_webhook(&c, &base, json!({"url": format!("{}/fast", fast.url), "events": ["push"], "repository": "busy/*"}))
        .await;
    for blob in image.blobs() {
        push_blob(&c, &base, "busy/app", blob).await;
    }
    let busy = push_tags("busy/app").await;
    let started = Instant::now();
    wait_for(Duration::from_secs(90), "every push at the fast receiver", || fast.delivered("/fast").len() >= PUSHES)
        .await;
    let fast_done = started.elapsed();
    let slow_got = slow.got("/slow").len();
    println!(
        "{PUSHES} manifest pushes: {:.2} s without webhooks, {:.2} s with a 2 s receiver, {:.2} s after it \
         unmatched, {:.2} s with a fast one too; the fast receiver had all {PUSHES} events {:.1} s after the \
         last push, the slow one {slow_got}",
        quiet.as_secs_f64(),
        loud.as_secs_f64(),
        calm.as_secs_f64(),
        busy.as_secs_f64(),
        fast_done.as_secs_f64()
    );
    // Generous bounds (a debug build on a shared machine): the point is the
    // order of magnitude. A blocking delivery would take 2000 s.
    assert!(loud < quiet.mul_f64(1.5) + Duration::from_secs(3), "pushes slowed: {loud:?} vs {quiet:?}");
    assert!(slow_got < PUSHES / 4, "the slow receiver cannot have kept up ({slow_got})");
    assert_eq!(fast.delivered("/fast").len(), PUSHES, "once each");
}
