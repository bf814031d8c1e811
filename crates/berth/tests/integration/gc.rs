//! Online garbage collection against a real server: what goes, what stays,
//! multi-arch indexes, referrers, the dry run, the API's auth, `berth gc`, and
//! a race of pushes and deletes against a collector running every second.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_testkit::fixtures::index;
use berth_testkit::{BerthProcess, Blob, ImageFixture};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::common::{blob_files, client, push_blob, push_image, put_manifest, sha256_hex};

const BIN: &str = env!("CARGO_BIN_EXE_berth");
const OCI_INDEX: &str = berth_core::media_type::OCI_INDEX;
const OCI_MANIFEST: &str = berth_core::media_type::OCI_MANIFEST;

/// Hex names of the blob files on disk.
fn stored(berth: &BerthProcess) -> BTreeSet<String> {
    blob_files(berth.data_dir()).into_iter().map(|(_, hex)| hex).collect()
}

fn hex(blob: &Blob) -> String {
    blob.digest.encoded().to_owned()
}

async fn dry_run(c: &Client, base: &str) -> Value {
    let r = c.post(format!("{base}/api/v1/system/gc")).json(&json!({"dry_run": true, "grace_seconds": 0})).send();
    let r = r.await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Starts a real run without grace and waits for it to finish; returns the run.
async fn collect(c: &Client, base: &str) -> Value {
    let r = c.post(format!("{base}/api/v1/system/gc")).json(&json!({"grace_seconds": 0})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["run_id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status: Value = c.get(format!("{base}/api/v1/system/gc")).send().await.unwrap().json().await.unwrap();
        let run = status["runs"].as_array().unwrap().iter().find(|r| r["id"] == id).cloned().unwrap();
        if run["state"] != "running" {
            assert_eq!(run["state"], "finished", "{run}");
            return run;
        }
        assert!(Instant::now() < deadline, "run {id} did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn listed(plan: &Value, key: &str, field: &str) -> BTreeSet<String> {
    plan[key].as_array().unwrap().iter().map(|e| e[field].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn collection_frees_exactly_what_nothing_references() {
    let berth = BerthProcess::start_with_env(BIN, &[], &[("BERTH_GC__INTERVAL", "off")]);
    let (c, base) = (client(), berth.url());
    // Two images sharing a layer, a signature of the first, a two-platform index.
    let shared = Blob::random(3000, 1);
    let mut a = ImageFixture::new(11, &[1000]);
    let mut b = ImageFixture::new(12, &[2000]);
    a.layers.push(shared.clone());
    b.layers.push(shared.clone());
    let rebuild = |img: &mut ImageFixture| {
        let m = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": img.config.descriptor("application/vnd.oci.image.config.v1+json"),
            "layers": img.layers.iter().map(|l| l.descriptor("application/vnd.oci.image.layer.v1.tar")).collect::<Vec<_>>(),
        });
        img.manifest = serde_json::to_vec(&m).unwrap();
        img.digest = berth_core::Digest::sha256(&img.manifest);
    };
    rebuild(&mut a);
    rebuild(&mut b);
    push_image(&c, &base, "lib/app", &a, "a").await;
    push_image(&c, &base, "lib/app", &b, "b").await;
    let sig = ImageFixture::artifact(13, "application/vnd.example.sig", &a.digest, a.manifest.len());
    push_image(&c, &base, "lib/app", &sig, &sig.digest.to_string()).await;
    let amd = ImageFixture::new(14, &[500]);
    let arm = ImageFixture::new(15, &[600]);
    push_image(&c, &base, "lib/app", &amd, &amd.digest.to_string()).await;
    push_image(&c, &base, "lib/app", &arm, &arm.digest.to_string()).await;
    let multi = index(&[(&amd.digest, amd.manifest.len()), (&arm.digest, arm.manifest.len())]);
    let r = put_manifest(&c, &base, "lib/app", "multi", OCI_INDEX, multi.clone()).await;
    assert_eq!(r.status(), 201);
    // An abandoned layer: pushed, never referenced.
    let abandoned = Blob::random(700, 16);
    push_blob(&c, &base, "lib/app", &abandoned).await;

    // A child of a tagged index cannot be deleted on its own.
    let r = c.delete(format!("{base}/v2/lib/app/manifests/{}", amd.digest)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED");
    assert_eq!(body["errors"][0]["detail"]["reason"], "MANIFEST_REFERENCED");

    // With the configured grace (1 h) nothing is due yet.
    let r = c.post(format!("{base}/api/v1/system/gc")).json(&json!({"dry_run": true})).send().await.unwrap();
    let plan: Value = r.json().await.unwrap();
    assert_eq!((plan["manifests_deleted"].as_u64(), plan["blobs_deleted"].as_u64()), (Some(0), Some(0)), "{plan}");
    // Without grace only the abandoned layer would go: everything else is reachable.
    let plan = dry_run(&c, &base).await;
    assert_eq!(listed(&plan, "blobs", "digest"), BTreeSet::from([abandoned.digest.to_string()]), "{plan}");
    assert_eq!(plan["manifests_deleted"], 0);
    let run = collect(&c, &base).await;
    assert_eq!(run["blobs_deleted"], 1);
    assert_eq!(run["bytes_reclaimed"], 700);
    assert!(!stored(&berth).contains(&hex(&abandoned)));

    // Deleting tag `a` frees its manifest, its signature (the subject is gone), its own
    // layer and config, and the signature's blobs; the shared layer stays for `b`.
    let r = c.delete(format!("{base}/v2/lib/app/manifests/a")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let plan = dry_run(&c, &base).await;
    let expected_manifests = BTreeSet::from([a.digest.to_string(), sig.digest.to_string()]);
    assert_eq!(listed(&plan, "manifests", "digest"), expected_manifests, "{plan}");
    let mut expected_blobs: BTreeSet<String> = [&a.config, &a.layers[0]].iter().map(|b| b.digest.to_string()).collect();
    expected_blobs.extend(sig.blobs().map(|b| b.digest.to_string()));
    assert_eq!(listed(&plan, "blobs", "digest"), expected_blobs, "{plan}");
    let run = collect(&c, &base).await;
    for key in ["manifests_deleted", "links_deleted", "blobs_deleted", "bytes_reclaimed"] {
        assert_eq!(run[key], plan[key], "{key}: the run did what the dry run said");
    }
    let files = stored(&berth);
    for gone in expected_blobs.iter() {
        assert!(!files.contains(gone.strip_prefix("sha256:").unwrap()), "{gone} still stored");
    }
    assert_eq!(c.get(format!("{base}/v2/lib/app/manifests/{}", a.digest)).send().await.unwrap().status(), 404);
    // `b` still pulls, every blob verified.
    for blob in b.blobs() {
        let r = c.get(format!("{base}/v2/lib/app/blobs/{}", blob.digest)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(sha256_hex(&r.bytes().await.unwrap()), blob.digest.encoded());
    }

    // Deleting the index tag frees the index and both platform images.
    let r = c.delete(format!("{base}/v2/lib/app/manifests/multi")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let run = collect(&c, &base).await;
    assert_eq!(run["manifests_deleted"], 3, "{run}");
    for image in [&amd, &arm] {
        let r = c.get(format!("{base}/v2/lib/app/manifests/{}", image.digest)).send().await.unwrap();
        assert_eq!(r.status(), 404);
        for blob in image.blobs() {
            assert!(!stored(&berth).contains(&hex(blob)));
        }
    }
    // What is left is exactly `b`.
    let expected: BTreeSet<String> = b.blobs().map(hex).collect();
    assert_eq!(stored(&berth), expected);

    // The status shows the runs and an empty queue.
    let status: Value = c.get(format!("{base}/api/v1/system/gc")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["queue"]["blobs"], 0, "{status}");
    assert_eq!(status["settings"]["grace_seconds"], 3600);
    assert!(status["runs"].as_array().unwrap().len() >= 5);

    // Bad bodies are refused.
    for body in [json!({"dry_run": "yes"}), json!({"grace_seconds": -1}), json!({"other": 1})] {
        let r = c.post(format!("{base}/api/v1/system/gc")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
    }
}

const ADMIN_PASSWORD: &str = "gc-Admin-password-1";

#[tokio::test]
async fn only_admins_run_or_watch_the_collector() {
    let berth = BerthProcess::start_with_auth(BIN, ADMIN_PASSWORD, &[("BERTH_GC__INTERVAL", "off")]);
    let (c, base) = (client(), berth.url());
    let login = |user: &'static str, password: &'static str| crate::common::login(&c, &base, user, password);
    let admin = login("admin", ADMIN_PASSWORD).await;
    let r = c
        .post(format!("{base}/api/v1/users"))
        .bearer_auth(&admin)
        .json(&json!({"username": "plain", "password": "password-plain-1", "email": "plain@x.org"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let plain = login("plain", "password-plain-1").await;
    let url = format!("{base}/api/v1/system/gc");
    assert_eq!(c.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(c.post(&url).send().await.unwrap().status(), 401);
    assert_eq!(c.get(&url).bearer_auth(&plain).send().await.unwrap().status(), 403);
    assert_eq!(c.post(&url).bearer_auth(&plain).send().await.unwrap().status(), 403);
    assert_eq!(c.get(&url).bearer_auth(&admin).send().await.unwrap().status(), 200);
    let r = c.post(&url).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), 202);
    // The start is audited.
    let logs: Value = c
        .get(format!("{base}/api/v1/audit/logs?event_type=gc_started"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(logs.to_string().contains("system.gc"), "{logs}");
}

#[tokio::test]
async fn the_cli_collects_and_refuses_a_second_collector() {
    let mut berth = BerthProcess::start_with_env(BIN, &[], &[("BERTH_GC__INTERVAL", "off")]);
    let (c, base) = (client(), berth.url());
    let image = ImageFixture::new(21, &[4096, 8192]);
    push_image(&c, &base, "cli/app", &image, "v1").await;
    assert_eq!(c.delete(format!("{base}/v2/cli/app/manifests/v1")).send().await.unwrap().status(), 202);
    let data_dir = berth.data_dir().to_path_buf();
    let gc = |args: &[&str]| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("gc").args(args).arg("--data-dir").arg(&data_dir);
        cmd.output().unwrap()
    };
    // The server is running: the CLI works next to it.
    let dry = gc(&["--dry-run", "--grace", "0"]);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let out = String::from_utf8_lossy(&dry.stdout);
    assert!(out.contains(&format!("manifest cli/app@{}", image.digest)), "{out}");
    assert!(out.contains("would delete 1 manifests, 3 blob links, 3 blobs"), "{out}");
    assert_eq!(stored(&berth).len(), 3, "a dry run deletes nothing");
    // A lease held by another node (here: a live server's run) makes the CLI wait its turn.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", data_dir.join("berth.db").display())).await.unwrap();
    sqlx::query("INSERT INTO leases (name, holder, expires_at) VALUES ('gc', 'other-node', ?)")
        .bind(berth_meta::now_unix() + 60)
        .execute(&db)
        .await
        .unwrap();
    let busy = gc(&["--grace", "0"]);
    assert!(!busy.status.success());
    assert!(String::from_utf8_lossy(&busy.stderr).contains("already running"));
    sqlx::query("DELETE FROM leases WHERE name = 'gc'").execute(&db).await.unwrap();
    db.close().await;
    let real = gc(&["--grace", "0"]);
    assert!(real.status.success(), "{}", String::from_utf8_lossy(&real.stderr));
    let out = String::from_utf8_lossy(&real.stdout);
    assert!(out.contains("deleted 1 manifests, 3 blob links, 3 blobs"), "{out}");
    assert!(stored(&berth).is_empty());
    // The server still serves (and pushes the same content again).
    berth.restart();
    let (c, base) = (client(), berth.url());
    push_image(&c, &base, "cli/app", &image, "v1").await;
    assert_eq!(stored(&berth).len(), 3);
}

/// One client of the race: pushes images sharing layers, deletes some, and
/// remembers which tags it was told exist.
async fn race_client(
    c: Client,
    base: String,
    id: usize,
    until: Instant,
    shared: Arc<Vec<Blob>>,
) -> BTreeMap<String, Vec<Blob>> {
    let repo = format!("race/c{}", id % 5);
    let mut live: BTreeMap<String, (Vec<Blob>, String)> = BTreeMap::new();
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let seed = (id as u64) * 1_000_000 + n;
        let mut layers = vec![shared[(seed % shared.len() as u64) as usize].clone()];
        layers.push(shared[((seed / 7) % shared.len() as u64) as usize].clone());
        layers.push(Blob::random(512 + (seed % 1024) as usize, seed));
        layers.dedup_by(|a, b| a.digest == b.digest);
        let config = Blob::new(format!(r#"{{"client":{id},"n":{n}}}"#));
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": config.descriptor("application/vnd.oci.image.config.v1+json"),
            "layers": layers.iter().map(|l| l.descriptor("application/vnd.oci.image.layer.v1.tar")).collect::<Vec<_>>(),
        }))
        .unwrap();
        let mut blobs = layers.clone();
        blobs.push(config);
        // Upload everything, as a client that does not trust HEAD would, then the manifest.
        // On a loaded machine the grace period can pass between the two: the collector
        // then takes the links and the push is refused (never half-accepted). A client
        // pushes again; only acknowledged pushes must survive.
        let tag = format!("c{id}-{n}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            for blob in &blobs {
                let r = c
                    .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={}", blob.digest))
                    .body(blob.data.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201, "client {id} blob push");
            }
            let r = put_manifest(&c, &base, &repo, &tag, OCI_MANIFEST, manifest.clone()).await;
            if r.status() == 201 {
                break;
            }
            let (status, body) = (r.status(), r.text().await.unwrap());
            assert!(
                status == 400 && body.contains("MANIFEST_BLOB_UNKNOWN") && attempt < 5,
                "client {id}: {status} {body}"
            );
        }
        live.insert(tag.clone(), (blobs, berth_core::Digest::sha256(&manifest).to_string()));
        // Delete about half of what was pushed, by tag or by digest.
        if n.is_multiple_of(2) {
            let victim = live.keys().nth((seed % live.len() as u64) as usize).cloned().unwrap();
            let (_, digest) = live.remove(&victim).unwrap();
            let reference = if n.is_multiple_of(4) { digest } else { victim };
            let r = c.delete(format!("{base}/v2/{repo}/manifests/{reference}")).send().await.unwrap();
            assert_eq!(r.status(), 202, "client {id} delete");
        }
        // Pull one surviving image and verify it.
        if let Some((tag, (blobs, _))) = live.iter().nth((seed % live.len().max(1) as u64) as usize) {
            verify(&c, &base, &repo, tag, blobs).await;
        }
    }
    live.into_iter().map(|(tag, (blobs, _))| (format!("{repo}:{tag}"), blobs)).collect()
}

async fn verify(c: &Client, base: &str, repo: &str, tag: &str, blobs: &[Blob]) {
    let r = c.get(format!("{base}/v2/{repo}/manifests/{tag}")).header("accept", OCI_MANIFEST).send().await.unwrap();
    assert_eq!(r.status(), 200, "{repo}:{tag} manifest");
    for blob in blobs {
        let r = c.get(format!("{base}/v2/{repo}/blobs/{}", blob.digest)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{repo}:{tag} blob {}", blob.digest);
        assert_eq!(sha256_hex(&r.bytes().await.unwrap()), blob.digest.encoded(), "{repo}:{tag} blob bytes");
    }
}

/// Runs the race: 20 clients spread over `nodes` for `secs`; returns the
/// surviving images (every one verified) and their blobs.
async fn race(nodes: &[String], secs: u64) -> BTreeMap<String, Vec<Blob>> {
    let shared = Arc::new((0..8).map(|i| Blob::random(2048 + i * 100, 9_000 + i as u64)).collect::<Vec<_>>());
    let until = Instant::now() + Duration::from_secs(secs);
    let clients: Vec<_> = (0..20)
        .map(|id| tokio::spawn(race_client(client(), nodes[id % nodes.len()].clone(), id, until, shared.clone())))
        .collect();
    let mut survivors = BTreeMap::new();
    for handle in clients {
        survivors.extend(handle.await.unwrap());
    }
    let c = client();
    for (i, (name, blobs)) in survivors.iter().enumerate() {
        let (repo, tag) = name.split_once(':').unwrap();
        verify(&c, &nodes[i % nodes.len()], repo, tag, blobs).await;
    }
    survivors
}

fn race_secs() -> u64 {
    std::env::var("BERTH_GC_RACE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30)
}

/// 20 clients push and delete images sharing layers while the collector runs
/// every second with a 5 s grace period. Every acknowledged, still-tagged image
/// pulls and verifies, during and after. `BERTH_GC_RACE_SECS` sets the length.
#[tokio::test]
async fn pushes_and_deletes_race_a_collector_without_losing_data() {
    let berth = BerthProcess::start_with_env(BIN, &[], &[("BERTH_GC__INTERVAL", "1s"), ("BERTH_GC__GRACE", "5s")]);
    let base = berth.url();
    let survivors = race(std::slice::from_ref(&base), race_secs()).await;
    // Once the grace periods pass, the store holds exactly the survivors' blobs.
    let expected: BTreeSet<String> = survivors.values().flatten().map(hex).collect();
    let deadline = Instant::now() + Duration::from_secs(45);
    while stored(&berth) != expected {
        assert!(Instant::now() < deadline, "{} blobs stored, {} referenced", stored(&berth).len(), expected.len());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let c = client();
    let status: Value = c.get(format!("{base}/api/v1/system/gc")).send().await.unwrap().json().await.unwrap();
    assert!(status["runs"].as_array().unwrap().iter().all(|r| r["state"] != "failed"), "{status}");
    eprintln!("race: {} images survive, {} blobs stored", survivors.len(), expected.len());
}

/// The same race against two nodes sharing PostgreSQL and S3, both scheduling
/// collections every second (the lease lets one work at a time). Afterwards
/// `berth fsck` finds no missing and no orphaned blob and a dry run finds no
/// garbage left. Runs when the test services are set, as `.ci/run` does.
#[tokio::test]
async fn two_nodes_on_postgres_and_s3_race_their_collectors_without_losing_data() {
    let Some((database_url, storage_url)) = crate::migrate::scale_out_urls() else {
        eprintln!("scale-out services not configured; skipping");
        return;
    };
    let args = ["--database-url", database_url.as_str(), "--storage", storage_url.as_str()];
    let keys = crate::migrate::s3_keys();
    let mut env: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend([("BERTH_GC__INTERVAL", "1s"), ("BERTH_GC__GRACE", "5s")]);
    let nodes = [BerthProcess::start_with_env(BIN, &args, &env), BerthProcess::start_with_env(BIN, &args, &env)];
    let urls: Vec<String> = nodes.iter().map(BerthProcess::url).collect();
    let survivors = race(&urls, race_secs()).await;
    let run = |sub: &[&str]| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(sub).args(args).arg("--data-dir").arg(nodes[0].data_dir()).envs(keys.iter().cloned());
        cmd.output().unwrap()
    };
    // The last grace periods pass (two levels: manifests, then their links) and the
    // nodes' runs collect them: a dry run then finds nothing left.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let dry = run(&["gc", "--dry-run", "--grace", "0"]);
        let out = String::from_utf8_lossy(&dry.stdout).into_owned();
        if out.contains("would delete 0 manifests, 0 blob links, 0 blobs") {
            break;
        }
        assert!(Instant::now() < deadline, "garbage left: {out}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let fsck = run(&["fsck"]);
    let out = String::from_utf8_lossy(&fsck.stdout);
    assert!(fsck.status.success(), "{out}{}", String::from_utf8_lossy(&fsck.stderr));
    assert!(out.contains(" 0 missing, 0 corrupt") && out.contains("0 orphans"), "{out}");
    let c = client();
    let status: Value = c.get(format!("{}/api/v1/system/gc", urls[0])).send().await.unwrap().json().await.unwrap();
    let nodes_that_ran: BTreeSet<&str> =
        status["runs"].as_array().unwrap().iter().filter_map(|r| r["node"].as_str()).collect();
    assert!(status["runs"].as_array().unwrap().iter().all(|r| r["state"] != "failed"), "{status}");
    eprintln!("race on PostgreSQL + S3: {} images survive; recent runs by {nodes_that_ran:?}", survivors.len());
}

/// The background scrub reports missing and orphaned blobs in the metrics, and
/// `berth fsck --reclaim-orphans` hands orphans to the collector.
#[tokio::test]
async fn the_scrub_reports_missing_and_orphaned_blobs() {
    let berth =
        BerthProcess::start_with_env(BIN, &[], &[("BERTH_GC__INTERVAL", "off"), ("BERTH_GC__SCRUB_INTERVAL", "1s")]);
    let (c, base) = (client(), berth.url());
    let image = ImageFixture::new(41, &[1024, 2048]);
    push_image(&c, &base, "scrub/app", &image, "v1").await;
    // Lose a layer's bytes and leave an orphan next to them.
    let lost = &image.layers[0];
    let path = |hex: &str| berth.data_dir().join("blobs/sha256").join(&hex[..2]).join(hex);
    std::fs::remove_file(path(lost.digest.encoded())).unwrap();
    let orphan = Blob::random(777, 42);
    let orphan_path = path(orphan.digest.encoded());
    std::fs::create_dir_all(orphan_path.parent().unwrap()).unwrap();
    std::fs::write(&orphan_path, &orphan.data).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        let found =
            |kind: &str| text.lines().any(|l| l.starts_with(&format!("berth_scrub_findings{{kind=\"{kind}\"}} 1")));
        if found("missing") && found("orphaned") && text.contains("berth_scrub_orphaned_bytes 777") {
            break;
        }
        assert!(Instant::now() < deadline, "no scrub findings in /metrics:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // fsck says the same, exits 1 (data is missing) and hands the orphan to the collector.
    let out = std::process::Command::new(BIN)
        .args(["fsck", "--reclaim-orphans", "--data-dir"])
        .arg(berth.data_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("missing  {}", lost.digest)), "{text}");
    assert!(text.contains(&format!("orphan   {}", orphan.digest)), "{text}");
    collect(&c, &base).await;
    assert!(!orphan_path.exists(), "the collector deleted the adopted orphan");
    assert!(stored(&berth).contains(&hex(&image.config)), "linked blobs stay");
}
