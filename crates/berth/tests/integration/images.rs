//! The management views of the registry against the real server: seed 000's
//! `/api/images` and `/api/system`, seed 004's `/api/v1/repositories`, and the
//! batched pull counters behind them.

use crate::common::login;
use std::time::{Duration, Instant};

use berth_testkit::{BerthProcess, ImageFixture};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::common::{client, push_image, put_manifest, start};

const BIN: &str = env!("CARGO_BIN_EXE_berth");
const ADMIN_PASSWORD: &str = "admin-password-for-tests";

async fn get(c: &Client, url: String) -> (StatusCode, Value) {
    let r = c.get(url).send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

/// A management success: the envelope's `data`.
async fn data(c: &Client, url: String) -> Value {
    let (status, body) = get(c, url.clone()).await;
    assert_eq!(status, StatusCode::OK, "{url}: {body}");
    assert_eq!(body["success"], true, "{url}: {body}");
    body["data"].clone()
}

/// A management failure: status and `error.code`.
async fn failure(c: &Client, url: String) -> (StatusCode, String) {
    let (status, body) = get(c, url).await;
    assert_eq!(body["success"], false, "{body}");
    assert!(body["timestamp"].is_string(), "{body}");
    (status, body["error"]["code"].as_str().unwrap_or_default().to_owned())
}

fn names(page: &Value) -> Vec<String> {
    page["images"].as_array().unwrap().iter().map(|i| format!("{}:{}", i["name"], i["tag"]).replace('"', "")).collect()
}

fn image_size(image: &ImageFixture) -> u64 {
    (image.manifest.len() + image.blobs().map(|b| b.data.len()).sum::<usize>()) as u64
}

#[tokio::test]
async fn images_list_search_details_and_delete() {
    let berth = start();
    let (c, base) = (client(), berth.url());
    let nginx = ImageFixture::new(1, &[100, 50]);
    push_image(&c, &base, "library/nginx", &nginx, "latest").await;
    push_image(&c, &base, "library/nginx", &ImageFixture::new(2, &[10]), "1.25").await;
    push_image(&c, &base, "team/app/web", &ImageFixture::new(3, &[10]), "v1").await;
    push_image(&c, &base, "other", &ImageFixture::new(4, &[10]), "Release-X").await;

    let all = data(&c, format!("{base}/api/images")).await;
    assert_eq!(names(&all), ["library/nginx:1.25", "library/nginx:latest", "other:Release-X", "team/app/web:v1"]);
    assert_eq!(
        (&all["total"], &all["page"], &all["page_size"], &all["total_pages"]),
        (&json!(4), &json!(1), &json!(10), &json!(1))
    );
    let latest = &all["images"][1];
    assert_eq!(latest["digest"], nginx.digest.as_str());
    assert_eq!(latest["size"], image_size(&nginx), "manifest + config + layers");
    assert!(latest["created_at"].as_str().unwrap().ends_with('Z'));

    // Paging edge cases.
    for bad in ["page=0", "page=-1", "page=abc", "page_size=0", "page_size=x"] {
        assert_eq!(
            failure(&c, format!("{base}/api/images?{bad}")).await,
            (StatusCode::BAD_REQUEST, "INVALID_REQUEST".into()),
            "{bad}"
        );
    }
    let clamped = data(&c, format!("{base}/api/images?page_size=1000")).await;
    assert_eq!((&clamped["page_size"], &clamped["total"]), (&json!(100), &json!(4)));
    let beyond = data(&c, format!("{base}/api/images?page=5&page_size=2")).await;
    assert_eq!((&beyond["images"], &beyond["total"], &beyond["total_pages"]), (&json!([]), &json!(4), &json!(2)));
    let second = data(&c, format!("{base}/api/images?page=2&page_size=3")).await;
    assert_eq!(names(&second), ["team/app/web:v1"]);

    // Search: substring of name or tag, any case; short queries are prefixes.
    assert_eq!(
        failure(&c, format!("{base}/api/images/search")).await,
        (StatusCode::BAD_REQUEST, "INVALID_REQUEST".into())
    );
    assert_eq!(failure(&c, format!("{base}/api/images/search?q=")).await.0, StatusCode::BAD_REQUEST);
    let hits = data(&c, format!("{base}/api/images/search?q=NGINX")).await;
    assert_eq!(names(&hits), ["library/nginx:1.25", "library/nginx:latest"]);
    assert_eq!(hits["total"], 2);
    let hits = data(&c, format!("{base}/api/images/search?q=elease")).await;
    assert_eq!(names(&hits), ["other:Release-X"]);
    let hits = data(&c, format!("{base}/api/images/search?q=te")).await;
    assert_eq!(names(&hits), ["team/app/web:v1"]);
    let hits = data(&c, format!("{base}/api/images/search?q=nginx&page=2&page_size=1")).await;
    assert_eq!((names(&hits), &hits["total_pages"]), (vec!["library/nginx:latest".to_owned()], &json!(2)));
    assert_eq!(data(&c, format!("{base}/api/images/search?q=zzz")).await["total"], 0);

    // Details of a repository (D3), plain or %2F-encoded.
    for path in ["library/nginx", "library%2Fnginx"] {
        let repo = data(&c, format!("{base}/api/images/{path}")).await;
        assert_eq!(repo["name"], "library/nginx");
        let tags = repo["tags"].as_array().unwrap();
        assert_eq!(tags.iter().map(|t| t["tag"].as_str().unwrap()).collect::<Vec<_>>(), ["1.25", "latest"]);
        let layers = tags[1]["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[0]["digest"], nginx.layers[0].digest.as_str());
        assert_eq!(layers[0]["size"], 100);
        assert_eq!(layers[0]["mediaType"], "application/vnd.oci.image.layer.v1.tar");
        assert_eq!(tags[1]["cached"], false);
    }
    // One tag: name + tag, plain, encoded and nested.
    let host = base.trim_start_matches("http://");
    for path in ["library/nginx/latest", "library%2Fnginx/latest", "library%2Fnginx%2Flatest"] {
        let one = data(&c, format!("{base}/api/images/{path}")).await;
        assert_eq!(one["image"]["digest"], nginx.digest.as_str(), "{path}");
        assert_eq!(one["pull_cmd"], format!("docker pull {host}/library/nginx:latest"));
        assert_eq!(one["image"]["layers"].as_array().unwrap().len(), 2);
    }
    assert_eq!(data(&c, format!("{base}/api/images/team/app/web/v1")).await["image"]["name"], "team/app/web");
    for missing in ["nope", "nope/x", "library/nginx/none", "library/nginx/bad:tag", "Bad/Name/x"] {
        assert_eq!(
            failure(&c, format!("{base}/api/images/{missing}")).await,
            (StatusCode::NOT_FOUND, "IMAGE_NOT_FOUND".into()),
            "{missing}"
        );
    }

    // Deleting a tag.
    let r = c.delete(format!("{base}/api/images/library/nginx/1.25")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"success": true, "data": {"message": "Image deleted successfully", "name": "library/nginx", "tag": "1.25"}})
    );
    assert_eq!(failure(&c, format!("{base}/api/images/library/nginx/1.25")).await.1, "IMAGE_NOT_FOUND");
    let r = c.delete(format!("{base}/api/images/library/nginx/1.25")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        c.get(format!("{base}/v2/library/nginx/manifests/1.25")).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(data(&c, format!("{base}/api/images")).await["total"], 3);
}

#[tokio::test]
async fn an_index_counts_its_children_and_lists_platforms() {
    let berth = start();
    let (c, base) = (client(), berth.url());
    let (amd, arm) = (ImageFixture::new(11, &[40]), ImageFixture::new(12, &[60]));
    push_image(&c, &base, "multi/app", &amd, &amd.digest.to_string()).await;
    push_image(&c, &base, "multi/app", &arm, &arm.digest.to_string()).await;
    let index = berth_testkit::fixtures::index(&[(&amd.digest, amd.manifest.len()), (&arm.digest, arm.manifest.len())]);
    let r = put_manifest(&c, &base, "multi/app", "v1", berth_core::media_type::OCI_INDEX, index.clone()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let repo = data(&c, format!("{base}/api/images/multi/app")).await;
    let tag = &repo["tags"][0];
    assert_eq!(tag["size"], index.len() as u64 + image_size(&amd) + image_size(&arm));
    assert_eq!(tag["platforms"], json!(["linux/amd64", "linux/arm64"]));
    assert_eq!(tag["layers"], json!([]));
}

/// Polls `f` until it returns true or 10 s pass.
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut f: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn pull_counts_are_batched_flushed_and_survive_shutdown() {
    let mut berth = start();
    let (c, base) = (client(), berth.url());
    let image = ImageFixture::new(21, &[10]);
    push_image(&c, &base, "count/app", &image, "v1").await;
    push_image(&c, &base, "count/app", &image, "v1").await;
    let pull = |reference: String| c.get(format!("{base}/v2/count/app/manifests/{reference}")).send();
    for _ in 0..5 {
        assert_eq!(pull("v1".into()).await.unwrap().status(), StatusCode::OK);
    }
    for _ in 0..2 {
        assert_eq!(pull(image.digest.to_string()).await.unwrap().status(), StatusCode::OK);
    }
    // HEAD is no pull.
    c.head(format!("{base}/v2/count/app/manifests/v1")).send().await.unwrap();
    let repo_url = format!("{base}/api/v1/repositories/count/app");
    eventually("the flush", async || get(&c, repo_url.clone()).await.1["pull_count"] == 7).await;
    let tag = &data(&c, format!("{base}/api/images/count/app")).await["tags"][0];
    assert_eq!((&tag["pull_count"], &tag["push_count"]), (&json!(5), &json!(2)), "{tag}");
    assert!(tag["last_pulled_at"].as_str().unwrap().ends_with('Z'));

    // Pulls counted just before a graceful shutdown are written on the way out.
    for _ in 0..3 {
        pull("v1".into()).await.unwrap();
    }
    assert!(berth.terminate(), "clean exit");
    berth.restart();
    // A new client: the old one's pooled connections died with the process.
    let (status, repo) = get(&client(), repo_url).await;
    assert_eq!((status, &repo["pull_count"]), (StatusCode::OK, &json!(10)));
}

#[tokio::test]
async fn repositories_get_put_delete() {
    let berth = start();
    let (c, base) = (client(), berth.url());
    let image = ImageFixture::new(31, &[20]);
    push_image(&c, &base, "myapp/frontend", &image, "v1").await;
    let url = format!("{base}/api/v1/repositories/myapp/frontend");

    let (status, repo) = get(&c, url.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&repo["name"], &repo["description"], &repo["visibility"]),
        (&json!("myapp/frontend"), &json!(""), &json!("private"))
    );
    assert_eq!(repo["size"], image_size(&image));
    assert_eq!(repo["pull_count"], 0);
    assert_eq!(
        repo["tags"],
        json!([{"name": "v1", "digest": image.digest.as_str(), "size": image_size(&image), "created_at": repo["tags"][0]["created_at"]}])
    );
    for key in ["owner", "created_at", "updated_at"] {
        assert!(repo.get(key).is_some(), "{key}");
    }
    assert_eq!(get(&c, format!("{base}/api/v1/repositories/myapp%2Ffrontend")).await.0, StatusCode::OK);

    let (status, body) = get(&c, format!("{base}/api/v1/repositories/myapp/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "REPOSITORY_NOT_FOUND");
    assert_eq!(body["error"]["details"]["repository"], "myapp/nope");

    let r = c.put(&url).json(&json!({"description": "The web UI", "visibility": "public"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let repo: Value = r.json().await.unwrap();
    assert_eq!((&repo["description"], &repo["visibility"]), (&json!("The web UI"), &json!("public")));
    for bad in [json!({"visibility": "internal"}), json!({"description": 5}), json!({"colour": "red"}), json!([1])] {
        let r = c.put(&url).json(&bad).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "INVALID_REQUEST");
    }
    let r = c.put(format!("{base}/api/v1/repositories/myapp/nope")).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let r = c.delete(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(get(&c, url.clone()).await.0, StatusCode::NOT_FOUND);
    let r = c.get(format!("{base}/v2/myapp/frontend/tags/list")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        c.get(format!("{base}/v2/myapp/frontend/manifests/v1")).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(c.delete(&url).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    // The name can be pushed again from scratch.
    push_image(&c, &base, "myapp/frontend", &image, "v2").await;
    assert_eq!(get(&c, url).await.1["description"], "");
}

#[tokio::test]
async fn system_info_compatibility_and_refresh() {
    let berth = start();
    let (c, base) = (client(), berth.url());
    let info = data(&c, format!("{base}/api/system/info")).await;
    for key in ["os", "os_version", "arch", "hostname", "docker_version", "containerd_version"] {
        assert!(info[key].is_string(), "{key}: {info}");
    }
    for key in ["cpu_cores", "memory_total", "disk_total", "disk_free"] {
        assert!(info[key].as_u64().is_some_and(|n| n > 0), "{key}: {info}");
    }
    assert!(!info["os"].as_str().unwrap().is_empty() && !info["arch"].as_str().unwrap().is_empty());
    let again = data(&c, format!("{base}/api/system/refresh")).await;
    assert_eq!((&again["hostname"], &again["cpu_cores"]), (&info["hostname"], &info["cpu_cores"]));
    let compat = data(&c, format!("{base}/api/system/compatibility")).await;
    assert_eq!(compat["compatible"], true, "{compat}");
    assert_eq!(compat["errors"], json!([]));
    let warnings = compat["warnings"].as_array().unwrap();
    assert!(warnings.iter().any(|w| w.as_str().unwrap().starts_with("TLS disabled")), "{compat}");
    // The probe files are gone.
    let leftovers = std::fs::read_dir(berth.data_dir()).unwrap().filter_map(Result::ok);
    assert!(leftovers.map(|e| e.file_name().to_string_lossy().into_owned()).all(|n| !n.starts_with(".compat-")));
}

async fn create_user(c: &Client, base: &str, admin: &str, name: &str) -> String {
    let body =
        json!({"username": name, "password": format!("password-{name}"), "email": format!("{name}@example.com")});
    let r = c.post(format!("{base}/api/v1/users")).bearer_auth(admin).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    login(c, base, name, &format!("password-{name}")).await
}

async fn push_as(c: &Client, base: &str, user: &str, repo: &str, image: &ImageFixture) {
    let password = format!("password-{user}");
    for blob in image.blobs() {
        let r = c
            .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={}", blob.digest))
            .basic_auth(user, Some(&password))
            .body(blob.data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/v1"))
        .basic_auth(user, Some(&password))
        .header("content-type", berth_core::media_type::OCI_MANIFEST)
        .body(image.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// An anonymous docker pull: token from `/auth` without credentials, then the manifest.
async fn anonymous_pull(c: &Client, base: &str, repo: &str) -> StatusCode {
    let token: Value = c
        .get(format!("{base}/auth?service=berth&scope=repository:{repo}:pull"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap();
    c.get(format!("{base}/v2/{repo}/manifests/v1")).bearer_auth(token).send().await.unwrap().status()
}

#[tokio::test]
async fn authentication_visibility_and_ownership() {
    let berth = BerthProcess::start_with_auth(BIN, ADMIN_PASSWORD, &[]);
    let (c, base) = (client(), berth.url());
    let admin = login(&c, &base, "admin", ADMIN_PASSWORD).await;
    let bob = create_user(&c, &base, &admin, "bob").await;
    let carol = create_user(&c, &base, &admin, "carol").await;
    push_as(&c, &base, "bob", "bob/app", &ImageFixture::new(41, &[10])).await;
    push_as(&c, &base, "carol", "carol/app", &ImageFixture::new(42, &[10])).await;

    // Seed 000 routes: 401 AUTH_FAILED with the reason; admin-only system routes.
    let r = c.get(format!("{base}/api/images")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (&body["error"]["code"], &body["error"]["details"]["reason"]),
        (&json!("AUTH_FAILED"), &json!("no_auth_header"))
    );
    for route in ["info", "refresh", "compatibility"] {
        let r = c.get(format!("{base}/api/system/{route}")).bearer_auth(&bob).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{route}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "permission_denied");
        let r = c.get(format!("{base}/api/system/{route}")).bearer_auth(&admin).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{route}");
    }
    let r = c.get(format!("{base}/api/system/info")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Listings show what the caller may pull.
    let listed = |jwt: String| {
        let c = c.clone();
        let url = format!("{base}/api/images");
        async move { names(&c.get(url).bearer_auth(jwt).send().await.unwrap().json::<Value>().await.unwrap()["data"]) }
    };
    assert_eq!(listed(carol.clone()).await, ["carol/app:v1"]);
    assert_eq!(listed(admin.clone()).await, ["bob/app:v1", "carol/app:v1"]);
    let hidden = c.get(format!("{base}/api/images/bob/app/v1")).bearer_auth(&carol).send().await.unwrap();
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
    let repo_url = format!("{base}/api/v1/repositories/bob/app");
    let r = c.get(&repo_url).bearer_auth(&carol).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(c.get(&repo_url).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_ne!(anonymous_pull(&c, &base, "bob/app").await, StatusCode::OK);

    // The owner makes the repository public: anyone may pull it, even anonymously.
    let r = c.put(&repo_url).bearer_auth(&bob).json(&json!({"visibility": "public"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["owner"], "bob");
    assert_eq!(anonymous_pull(&c, &base, "bob/app").await, StatusCode::OK);
    assert_eq!(listed(carol.clone()).await, ["bob/app:v1", "carol/app:v1"]);
    let r = c.get(&repo_url).bearer_auth(&carol).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // …but only owners change or delete it.
    let r = c.put(&repo_url).bearer_auth(&carol).json(&json!({"description": "mine now"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "FORBIDDEN");
    assert_eq!(c.delete(&repo_url).bearer_auth(&carol).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    let r = c.delete(format!("{base}/api/images/bob/app/v1")).bearer_auth(&carol).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "permission_denied");
    // Back to private: anonymous pulls stop.
    let r = c.put(&repo_url).bearer_auth(&bob).json(&json!({"visibility": "private"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_ne!(anonymous_pull(&c, &base, "bob/app").await, StatusCode::OK);
    let r = c.delete(format!("{base}/api/images/bob/app/v1")).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(c.delete(&repo_url).bearer_auth(&bob).send().await.unwrap().status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn pull_through_cache_repositories_are_listed_as_cached() {
    let upstream = start();
    let image = ImageFixture::new(51, &[30]);
    push_image(&client(), &upstream.url(), "team/app", &image, "v1").await;
    let cache = start();
    let (c, base) = (client(), cache.url());
    let body = json!({"name": "Up", "url": upstream.url(), "priority": 1, "namespace": "up"});
    let r = c.post(format!("{base}/api/accel/upstreams")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    push_image(&c, &base, "local/app", &ImageFixture::new(52, &[10]), "v1").await;
    let r = c.get(format!("{base}/v2/up/team/app/manifests/v1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let all = data(&c, format!("{base}/api/images")).await;
    assert_eq!(names(&all), ["local/app:v1", "up/team/app:v1"]);
    assert_eq!(names(&data(&c, format!("{base}/api/images/search?q=team")).await), ["up/team/app:v1"]);
    let cached = data(&c, format!("{base}/api/images/up/team/app")).await;
    assert_eq!((&cached["cached"], &cached["tags"][0]["cached"]), (&json!(true), &json!(true)));
    assert_eq!(cached["tags"][0]["digest"], image.digest.as_str());
    assert_eq!(data(&c, format!("{base}/api/images/local/app")).await["cached"], false);
    // The pull through the cache counts for the cache repository.
    let url = format!("{base}/api/v1/repositories/up/team/app");
    eventually("the flush", async || get(&c, url.clone()).await.1["pull_count"] == 1).await;
}

#[tokio::test]
async fn management_deletes_follow_the_deletes_switch() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, "[registry]\ndeletes_enabled = false\n").unwrap();
    let berth = BerthProcess::start_with(BIN, &["--config", config.to_str().unwrap()]);
    let (c, base) = (client(), berth.url());
    push_image(&c, &base, "d/app", &ImageFixture::new(61, &[10]), "v1").await;
    let r = c.delete(format!("{base}/api/images/d/app/v1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c.delete(format!("{base}/api/v1/repositories/d/app")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(data(&c, format!("{base}/api/images")).await["total"], 1, "nothing was deleted");
}

/// The same views on PostgreSQL (pg_trgm search) and S3 (no local blob directory).
#[tokio::test]
async fn images_and_repositories_on_postgres_and_s3() {
    let Some((database_url, storage_url)) = crate::migrate::scale_out_urls() else {
        eprintln!("scale-out services not configured; skipping the PostgreSQL + S3 images test");
        return;
    };
    let keys = crate::migrate::s3_keys();
    let env: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let berth = BerthProcess::start_with_env(BIN, &["--database-url", &database_url, "--storage", &storage_url], &env);
    let (c, base) = (client(), berth.url());
    let web = ImageFixture::new(71, &[30]);
    push_image(&c, &base, "shop/web", &web, "Stable-1").await;
    push_image(&c, &base, "shop/api", &ImageFixture::new(72, &[30]), "v1").await;

    let all = data(&c, format!("{base}/api/images")).await;
    assert_eq!(names(&all), ["shop/api:v1", "shop/web:Stable-1"]);
    assert_eq!(all["images"][1]["size"], image_size(&web));
    assert_eq!(names(&data(&c, format!("{base}/api/images/search?q=TABLE")).await), ["shop/web:Stable-1"]);
    assert_eq!(names(&data(&c, format!("{base}/api/images/search?q=sh")).await).len(), 2);
    assert_eq!(names(&data(&c, format!("{base}/api/images/search?q=100%25_")).await).len(), 0);
    for _ in 0..3 {
        c.get(format!("{base}/v2/shop/web/manifests/Stable-1")).send().await.unwrap();
    }
    let url = format!("{base}/api/v1/repositories/shop/web");
    eventually("the flush", async || get(&c, url.clone()).await.1["pull_count"] == 3).await;
    let r = c.put(&url).json(&json!({"description": "shop front", "visibility": "public"})).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["visibility"], "public");
    let compat = data(&c, format!("{base}/api/system/compatibility")).await;
    assert_eq!((&compat["compatible"], &compat["errors"]), (&json!(true), &json!([])), "{compat}");
    assert_eq!(c.delete(&url).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(names(&data(&c, format!("{base}/api/images")).await), ["shop/api:v1"]);
}
