//! Retention policies: a dry run lists exactly what the real run then deletes,
//! the tags left are exactly those the rules keep, immutable tags survive,
//! old untagged manifests go; bad input, strangers and unknown projects are
//! refused; the scheduler applies enabled policies only.
//!
//! Push and pull times are whole seconds, so the tests age tags and manifests
//! by writing timestamps straight into the server's SQLite file.

use crate::common::login;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_testkit::{BerthProcess, ImageFixture};
use reqwest::Client;
use serde_json::{Value, json};

use crate::common::{client, push_image};

const BIN: &str = env!("CARGO_BIN_EXE_berth");
const DAY: i64 = 86_400;

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A server whose scheduler never runs, so only explicit runs delete.
fn start_unscheduled() -> BerthProcess {
    BerthProcess::start_with_env(BIN, &[], &[("BERTH_RETENTION__INTERVAL", "off")])
}

async fn open_db(berth: &BerthProcess) -> sqlx::SqlitePool {
    let path = berth.data_dir().join("berth.db");
    sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap()
}

/// Sets when `repo:tag` was last pushed (and pulled, if given).
async fn age_tag(db: &sqlx::SqlitePool, repo: &str, tag: &str, pushed: i64, pulled: Option<i64>) {
    let done = sqlx::query(
        "UPDATE tags SET updated_at = $1, last_pulled_at = $2
         WHERE repo_id = (SELECT id FROM repositories WHERE name = $3) AND name = $4",
    )
    .bind(pushed)
    .bind(pulled)
    .bind(repo)
    .bind(tag)
    .execute(db)
    .await
    .unwrap();
    assert_eq!(done.rows_affected(), 1, "{repo}:{tag}");
}

/// Sets when every manifest of `repo` was created, but for `except`.
async fn age_manifests(db: &sqlx::SqlitePool, repo: &str, created: i64, except: &str) {
    sqlx::query(
        "UPDATE manifests SET created_at = $1
         WHERE repo_id = (SELECT id FROM repositories WHERE name = $2) AND digest <> $3",
    )
    .bind(created)
    .bind(repo)
    .bind(except)
    .execute(db)
    .await
    .unwrap();
}

async fn tags(c: &Client, base: &str, repo: &str) -> Vec<String> {
    let v: Value = c.get(format!("{base}/v2/{repo}/tags/list")).send().await.unwrap().json().await.unwrap();
    v["tags"].as_array().map(|t| t.iter().map(|s| s.as_str().unwrap().to_owned()).collect()).unwrap_or_default()
}

async fn run(c: &Client, base: &str, project: &str, dry_run: bool) -> Value {
    let r = c
        .post(format!("{base}/api/v1/projects/{project}/retention/run"))
        .json(&json!({ "dry_run": dry_run }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// A report's lists as sorted `repo:tag@digest` / `repo@digest` lines.
fn lines(report: &Value, key: &str) -> Vec<String> {
    let mut out: Vec<String> = report[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| match i["tag"].as_str() {
            Some(tag) => format!("{}:{tag}@{}", i["repository"].as_str().unwrap(), i["digest"].as_str().unwrap()),
            None => format!("{}@{}", i["repository"].as_str().unwrap(), i["digest"].as_str().unwrap()),
        })
        .collect();
    out.sort();
    out
}

fn sorted(items: &[String]) -> Vec<String> {
    let mut v = items.to_vec();
    v.sort();
    v
}

/// The report without its `dry_run` flag.
fn plan(report: &Value) -> [Vec<String>; 3] {
    [lines(report, "deleted_tags"), lines(report, "deleted_manifests"), lines(report, "protected")]
}

#[tokio::test]
async fn dry_run_lists_exactly_what_the_run_deletes() {
    let berth = start_unscheduled();
    let (c, base) = (client(), berth.url());
    let img: Vec<ImageFixture> = (0..9).map(|i| ImageFixture::new(900 + i, &[64])).collect();
    let tagged = [
        (0, "v1.0.0"),
        (1, "v1.2.0"),
        (1, "v1.5.3"),
        (2, "v2.0.0"),
        (2, "1.9.9-rc.1"),
        (3, "latest"),
        (3, "stable"),
        (3, "dev-3"),
        (4, "dev-1"),
        (4, "dev-2"),
        (5, "old-pulled"),
    ];
    for (i, tag) in tagged {
        push_image(&c, &base, "team/app", &img[i], tag).await;
    }
    // Untagged: 6 (old), 7 (recent), and referrers of 1 (stays) and of 4 (goes with 4, next run).
    push_image(&c, &base, "team/app", &img[6], img[6].digest.as_str()).await;
    push_image(&c, &base, "team/app", &img[7], img[7].digest.as_str()).await;
    let sig1 = ImageFixture::artifact(911, "application/x-sig", &img[1].digest, img[1].manifest.len());
    let sig4 = ImageFixture::artifact(914, "application/x-sig", &img[4].digest, img[4].manifest.len());
    push_image(&c, &base, "team/app", &sig1, sig1.digest.as_str()).await;
    push_image(&c, &base, "team/app", &sig4, sig4.digest.as_str()).await;
    // No rule matches team/other: its tags stay, its old untagged manifest goes.
    push_image(&c, &base, "team/other", &img[8], "x").await;
    push_image(&c, &base, "team/other", &img[6], img[6].digest.as_str()).await;
    // Another project's policy-less repository is never touched.
    push_image(&c, &base, "else/app", &img[6], img[6].digest.as_str()).await;

    let db = open_db(&berth).await;
    let t = now();
    // Push times, newest first: latest, dev-3, then the rest, all a month old.
    let order = [
        "latest",
        "dev-3",
        "dev-2",
        "v2.0.0",
        "1.9.9-rc.1",
        "stable",
        "v1.5.3",
        "dev-1",
        "v1.2.0",
        "old-pulled",
        "v1.0.0",
    ];
    for (i, tag) in order.iter().enumerate() {
        let pulled = (*tag == "old-pulled").then_some(t - DAY);
        age_tag(&db, "team/app", tag, t - 30 * DAY - i as i64 * 3600, pulled).await;
    }
    age_manifests(&db, "team/app", t - 30 * DAY, img[7].digest.as_str()).await;
    age_manifests(&db, "team/other", t - 30 * DAY, "").await;
    age_manifests(&db, "else/app", t - 30 * DAY, "").await;
    db.close().await;

    let r = c
        .put(format!("{base}/api/v1/projects/team/immutability"))
        .json(&json!({"rules": [{"pattern": r"^v1\.0\.0$"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let policy = json!({
        "enabled": true,
        "untagged_hours": 24,
        "rules": [
            {"repository": "team/app", "keep_last": 2, "keep_semver": ">=1.2, <2"},
            {"repository": "team/app", "keep_tags": "^stable$", "keep_pulled_within_days": 7},
        ],
    });
    let r = c.put(format!("{base}/api/v1/projects/team/retention")).json(&policy).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let stored: Value = r.json().await.unwrap();
    assert_eq!(stored["rules"][1]["keep_pulled_within_days"], 7);
    assert_eq!(stored["rules"][1]["keep_last"], Value::Null);
    let got: Value =
        c.get(format!("{base}/api/v1/projects/team/retention")).send().await.unwrap().json().await.unwrap();
    assert_eq!(got, stored);

    let tag = |name: &str, i: usize| format!("team/app:{name}@{}", img[i].digest);
    let manifest = |repo: &str, digest: &berth_core::Digest| format!("{repo}@{digest}");
    let expected = [
        sorted(&[tag("v2.0.0", 2), tag("1.9.9-rc.1", 2), tag("dev-1", 4), tag("dev-2", 4)]),
        sorted(&[
            manifest("team/app", &img[2].digest),
            manifest("team/app", &img[4].digest),
            manifest("team/app", &img[6].digest),
            manifest("team/other", &img[6].digest),
        ]),
        vec![tag("v1.0.0", 0)],
    ];
    let dry = run(&c, &base, "team", true).await;
    assert_eq!(dry["dry_run"], true);
    assert_eq!(plan(&dry), expected);
    assert_eq!(tags(&c, &base, "team/app").await.len(), 11, "a dry run deletes nothing");

    let real = run(&c, &base, "team", false).await;
    assert_eq!(real["dry_run"], false);
    assert_eq!(plan(&real), plan(&dry), "the run deletes exactly what the dry run listed");
    assert_eq!(
        tags(&c, &base, "team/app").await,
        ["dev-3", "latest", "old-pulled", "stable", "v1.0.0", "v1.2.0", "v1.5.3"]
    );
    assert_eq!(tags(&c, &base, "team/other").await, ["x"]);
    let head = |repo: &str, digest: &berth_core::Digest| {
        let url = format!("{base}/v2/{repo}/manifests/{digest}");
        let c = c.clone();
        async move { c.head(url).send().await.unwrap().status().as_u16() }
    };
    for (repo, digest, status) in [
        ("team/app", &img[2].digest, 404),
        ("team/app", &img[4].digest, 404),
        ("team/app", &img[6].digest, 404),
        ("team/other", &img[6].digest, 404),
        ("team/app", &img[7].digest, 200),
        ("team/app", &sig1.digest, 200),
        ("team/app", &sig4.digest, 200),
        ("else/app", &img[6].digest, 200),
    ] {
        assert_eq!(head(repo, digest).await, status, "{repo}@{digest}");
    }

    // The referrer whose subject just went is next.
    let again = run(&c, &base, "team", true).await;
    let next = [vec![], vec![manifest("team/app", &sig4.digest)], vec![tag("v1.0.0", 0)]];
    assert_eq!(plan(&again), next);
    assert_eq!(plan(&run(&c, &base, "team", false).await), next);
    assert_eq!(head("team/app", &sig4.digest).await, 404);
    assert_eq!(plan(&run(&c, &base, "team", true).await), [vec![], vec![], vec![tag("v1.0.0", 0)]]);

    // Deletes were events like any other (webhooks see them), by the retention component.
    let db = open_db(&berth).await;
    let deletes: Vec<String> =
        sqlx::query_scalar("SELECT actor FROM events WHERE type = 'delete'").fetch_all(&db).await.unwrap();
    db.close().await;
    assert_eq!(deletes.len(), 4 + 5, "4 tags, then 4 + 1 manifests");
    assert!(deletes.iter().all(|a| a == "berth:retention"), "{deletes:?}");
}

#[tokio::test]
async fn bad_policies_and_unknown_projects_are_refused() {
    let berth = start_unscheduled();
    let (c, base) = (client(), berth.url());
    let url = format!("{base}/api/v1/projects/team/retention");
    let v: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        v,
        json!({"project": "team", "enabled": false, "untagged_hours": null, "rules": [], "updated_at": null})
    );
    for (body, why) in [
        (json!({"enabled": true, "rules": [{"keep_tags": "("}]}), "bad regex"),
        (json!({"enabled": true, "rules": [{"keep_semver": ">=banana"}]}), "bad semver range"),
        (json!({"enabled": true, "rules": [{"keep_last": 0}]}), "keep_last 0"),
        (json!({"enabled": true, "rules": [{"keep_pulled_within_days": -3}]}), "negative days"),
        (json!({"enabled": true, "rules": [{"repository": "team/*"}]}), "a rule keeping nothing"),
        (json!({"enabled": true, "rules": [{"repository": "other/*", "keep_last": 1}]}), "glob outside"),
        (json!({"enabled": true, "untagged_hours": 0, "rules": []}), "untagged_hours 0"),
        (json!({"enabled": true, "rules": [{"keep_last": 1, "colour": "red"}]}), "unknown field"),
        (json!({"rules": []}), "missing enabled"),
        (json!({"enabled": "yes", "rules": []}), "enabled not a bool"),
    ] {
        let r = c.put(&url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{why}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "INVALID_REQUEST", "{why}");
    }
    assert_eq!(c.get(&url).send().await.unwrap().json::<Value>().await.unwrap()["rules"], json!([]));

    let run_url = format!("{url}/run");
    for (query, body) in [("", None), ("?dry_run=maybe", None), ("?dry_run=true", Some(json!({"dry_run": false})))] {
        let mut request = c.post(format!("{run_url}{query}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        assert_eq!(request.send().await.unwrap().status(), 400, "run{query}");
    }
    let r = c.post(format!("{run_url}?dry_run=true")).send().await.unwrap();
    assert_eq!(r.status(), 200, "a project without a policy keeps everything");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"dry_run": true, "deleted_tags": [], "deleted_manifests": [], "protected": []}));

    let bad = format!("{base}/api/v1/projects/Bad..Name/retention");
    assert_eq!(c.get(&bad).send().await.unwrap().status(), 404);
    let r = c.put(&bad).json(&json!({"enabled": true, "rules": []})).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(c.post(format!("{bad}/run?dry_run=true")).send().await.unwrap().status(), 404);
}

const ADMIN_PASSWORD: &str = "retention-Admin-1";

#[tokio::test]
async fn only_owners_and_admins_change_or_run_policies() {
    let berth = BerthProcess::start_with_auth(BIN, ADMIN_PASSWORD, &[("BERTH_RETENTION__INTERVAL", "off")]);
    let (c, base) = (client(), berth.url());
    let admin = login(&c, &base, "admin", ADMIN_PASSWORD).await;
    for name in ["dev", "boss", "outsider"] {
        let r = c
            .post(format!("{base}/api/v1/users"))
            .bearer_auth(&admin)
            .json(&json!({"username": name, "password": format!("password-{name}"), "email": format!("{name}@x.org")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let image = ImageFixture::new(950, &[32]);
    for blob in image.blobs() {
        let r = c
            .post(format!("{base}/v2/team/app/blobs/uploads/?digest={}", blob.digest))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .body(blob.data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = c
        .put(format!("{base}/v2/team/app/manifests/v1"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("content-type", berth_core::media_type::OCI_MANIFEST)
        .body(image.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for (member, role) in [("dev", "developer"), ("boss", "owner")] {
        let r = c
            .put(format!("{base}/api/v1/projects/team/members/{member}"))
            .bearer_auth(&admin)
            .json(&json!({"role": role}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let dev = login(&c, &base, "dev", "password-dev").await;
    let boss = login(&c, &base, "boss", "password-boss").await;
    let outsider = login(&c, &base, "outsider", "password-outsider").await;
    let url = format!("{base}/api/v1/projects/team/retention");
    let policy = json!({"enabled": true, "rules": [{"keep_last": 5}]});

    assert_eq!(c.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(c.put(&url).json(&policy).send().await.unwrap().status(), 401);
    let r = c.put(&url).bearer_auth(&dev).json(&policy).send().await.unwrap();
    assert_eq!(r.status(), 403, "a developer may not change the policy");
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "FORBIDDEN");
    let r = c.post(format!("{url}/run?dry_run=true")).bearer_auth(&dev).send().await.unwrap();
    assert_eq!(r.status(), 403, "nor run it");
    assert_eq!(c.get(&url).bearer_auth(&outsider).send().await.unwrap().status(), 404, "strangers see nothing");
    let r = c.put(&url).bearer_auth(&outsider).json(&policy).send().await.unwrap();
    assert_eq!(r.status(), 403);

    assert_eq!(c.put(&url).bearer_auth(&boss).json(&policy).send().await.unwrap().status(), 200);
    let v: Value = c.get(&url).bearer_auth(&dev).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["rules"][0]["keep_last"], 5, "members read the policy");
    let r = c.post(format!("{url}/run")).bearer_auth(&admin).json(&json!({"dry_run": false})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.post(format!("{url}/run?dry_run=false")).bearer_auth(&boss).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .put(format!("{base}/api/v1/projects/nosuch/retention"))
        .bearer_auth(&admin)
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "projects exist once created");

    let logs: Value = c
        .get(format!("{base}/api/v1/audit/logs?page_size=100"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events: Vec<(&str, &str)> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["event"].as_str().unwrap(), l["username"].as_str().unwrap()))
        .collect();
    assert!(events.contains(&("retention_updated", "boss")), "{events:?}");
    assert_eq!(events.iter().filter(|(e, _)| *e == "retention_run").count(), 2, "real runs are audited, dry ones not");
}

#[tokio::test]
async fn the_scheduler_applies_enabled_policies() {
    let berth = BerthProcess::start_with_env(BIN, &[], &[("BERTH_RETENTION__INTERVAL", "1s")]);
    let (c, base) = (client(), berth.url());
    let image = ImageFixture::new(960, &[32]);
    for repo in ["sched/app", "idle/app"] {
        for tag in ["a", "b", "c"] {
            push_image(&c, &base, repo, &image, tag).await;
        }
    }
    let db = open_db(&berth).await;
    for repo in ["sched/app", "idle/app"] {
        for (i, tag) in ["a", "b", "c"].iter().enumerate() {
            age_tag(&db, repo, tag, now() - DAY * (3 - i as i64), None).await;
        }
    }
    db.close().await;
    for (project, enabled) in [("sched", true), ("idle", false)] {
        let body = json!({"enabled": enabled, "rules": [{"keep_last": 1}]});
        let r = c.put(format!("{base}/api/v1/projects/{project}/retention")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tags(&c, &base, "sched/app").await.len() > 1 {
        assert!(std::time::Instant::now() < deadline, "the scheduler did not apply the policy");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(tags(&c, &base, "sched/app").await, ["c"], "the newest push stays");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(tags(&c, &base, "idle/app").await, ["a", "b", "c"], "a disabled policy waits for explicit runs");
    // The scheduled run left nothing for a manual one.
    let r = c.post(format!("{base}/api/v1/projects/sched/retention/run?dry_run=true")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["deleted_tags"], json!([]));
}
