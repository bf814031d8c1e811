//! Access control against the real server with `auth.mode = "token"`:
//! the authorization matrix (every route group × every kind of identity, from
//! one table), the Docker token flow, and attacks (forged JWTs, scope
//! escalation, path tricks, CSRF, brute force → system lock → recovery, audit
//! tampering).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use berth_access::jwt::{Claims, TokenSigner};
use berth_testkit::{BerthProcess, ImageFixture};
use reqwest::{Client, Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::common::client;

const BIN: &str = env!("CARGO_BIN_EXE_berth");
const ADMIN_PASSWORD: &str = "admin-password-for-tests";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The kinds of caller the matrix covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Anonymous,
    Guest,
    Developer,
    Maintainer,
    Owner,
    Admin,
    /// A PAT of the developer: `pull` on `team/*` only.
    ScopedToken,
    ExpiredToken,
    RevokedToken,
    DisabledUser,
    /// A user with no role anywhere.
    Outsider,
}

const EVERYONE: [Who; 11] = [
    Who::Anonymous,
    Who::Guest,
    Who::Developer,
    Who::Maintainer,
    Who::Owner,
    Who::Admin,
    Who::ScopedToken,
    Who::ExpiredToken,
    Who::RevokedToken,
    Who::DisabledUser,
    Who::Outsider,
];

/// How an identity authenticates on each surface.
#[derive(Debug, Clone, Default)]
struct Creds {
    /// `/v2` and `/auth`: Basic (user, secret).
    basic: Option<(String, String)>,
    /// `/api/v1`: an `Authorization` header value.
    api: Option<String>,
}

struct World {
    /// Kept alive for the test's duration.
    _berth: BerthProcess,
    c: Client,
    base: String,
    creds: BTreeMap<Who, Creds>,
}

impl World {
    fn v2(&self, who: Who, method: Method, path: &str) -> RequestBuilder {
        let r = self.c.request(method, format!("{}{path}", self.base));
        match &self.creds[&who].basic {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        }
    }

    fn api(&self, who: Who, method: Method, path: &str) -> RequestBuilder {
        let r = self.c.request(method, format!("{}{path}", self.base));
        match &self.creds[&who].api {
            Some(h) => r.header("authorization", h),
            None => r,
        }
    }
}

async fn login(c: &Client, base: &str, user: &str, password: &str) -> Value {
    let r = c
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "login {user}");
    r.json().await.unwrap()
}

async fn admin_jwt(c: &Client, base: &str) -> String {
    login(c, base, "admin", ADMIN_PASSWORD).await["token"].as_str().unwrap().to_owned()
}

async fn create_user(c: &Client, base: &str, admin: &str, name: &str) -> i64 {
    let r = c
        .post(format!("{base}/api/v1/users"))
        .bearer_auth(admin)
        .json(
            &json!({"username": name, "password": format!("password-{name}"), "email": format!("{name}@example.com")}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "create user {name}: {:?}", r.text().await);
    r.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

async fn push_image_as(c: &Client, base: &str, user: &str, password: &str, repo: &str, image: &ImageFixture) {
    for blob in image.blobs() {
        let r = c
            .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={}", blob.digest))
            .basic_auth(user, Some(password))
            .body(blob.data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "push blob to {repo}");
    }
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/v1"))
        .basic_auth(user, Some(password))
        .header("content-type", berth_core::media_type::OCI_MANIFEST)
        .body(image.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "push manifest to {repo}");
}

async fn create_pat(c: &Client, base: &str, jwt: &str, body: Value) -> (i64, String) {
    let r = c.post(format!("{base}/api/v1/tokens")).bearer_auth(jwt).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "create token: {:?}", r.text().await);
    let v: Value = r.json().await.unwrap();
    (v["id"].as_i64().unwrap(), v["token"].as_str().unwrap().to_owned())
}

/// A berth with users in every role on project `team` (private, holding
/// `team/app:v1`), a public project `pub` (holding `pub/app:v1`), and tokens.
async fn world() -> World {
    let berth = BerthProcess::start_with_auth(BIN, ADMIN_PASSWORD, &[]);
    let c = client();
    let base = berth.url();
    let admin = admin_jwt(&c, &base).await;
    for name in ["guest", "developer", "maintainer", "owner", "outsider", "disabled"] {
        create_user(&c, &base, &admin, name).await;
    }
    push_image_as(&c, &base, "admin", ADMIN_PASSWORD, "team/app", &ImageFixture::new(1, &[100])).await;
    push_image_as(&c, &base, "admin", ADMIN_PASSWORD, "pub/app", &ImageFixture::new(2, &[100])).await;
    for (member, role) in
        [("guest", "guest"), ("developer", "developer"), ("maintainer", "maintainer"), ("owner", "owner")]
    {
        let r = c
            .put(format!("{base}/api/v1/projects/team/members/{member}"))
            .bearer_auth(&admin)
            .json(&json!({"role": role}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "add {member}");
    }
    let r = c
        .put(format!("{base}/api/v1/projects/pub"))
        .bearer_auth(&admin)
        .json(&json!({"visibility": "public"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let dev_jwt = login(&c, &base, "developer", "password-developer").await["token"].as_str().unwrap().to_owned();
    let (_, scoped) =
        create_pat(&c, &base, &dev_jwt, json!({"name": "ci", "permissions": ["pull"], "repositories": ["team/*"]}))
            .await;
    let (revoked_id, revoked) =
        create_pat(&c, &base, &dev_jwt, json!({"name": "old", "permissions": ["pull", "push"]})).await;
    let r = c.delete(format!("{base}/api/v1/tokens/{revoked_id}")).bearer_auth(&dev_jwt).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // An expiring token from the CLI (the API refuses past expiry dates).
    let out = Command::new(BIN)
        .args([
            "token",
            "create",
            "--user",
            "developer",
            "--name",
            "short",
            "--permissions",
            "pull,push",
            "--expires",
            "1s",
        ])
        .arg("--data-dir")
        .arg(berth.data_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expired = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(expired.starts_with("berth_pat_"));

    let disabled_jwt = login(&c, &base, "disabled", "password-disabled").await["token"].as_str().unwrap().to_owned();
    let disabled_id = create_user_id(&c, &base, &admin, "disabled").await;
    let r = c
        .put(format!("{base}/api/v1/users/{disabled_id}"))
        .bearer_auth(&admin)
        .json(&json!({"is_active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let mut creds = BTreeMap::new();
    creds.insert(Who::Anonymous, Creds::default());
    for (who, name) in [
        (Who::Guest, "guest"),
        (Who::Developer, "developer"),
        (Who::Maintainer, "maintainer"),
        (Who::Owner, "owner"),
        (Who::Outsider, "outsider"),
    ] {
        let password = format!("password-{name}");
        let jwt = login(&c, &base, name, &password).await["token"].as_str().unwrap().to_owned();
        creds.insert(who, Creds { basic: Some((name.into(), password)), api: Some(format!("Bearer {jwt}")) });
    }
    creds.insert(
        Who::Admin,
        Creds { basic: Some(("admin".into(), ADMIN_PASSWORD.into())), api: Some(format!("Bearer {admin}")) },
    );
    for (who, token) in [(Who::ScopedToken, scoped), (Who::ExpiredToken, expired), (Who::RevokedToken, revoked)] {
        creds.insert(
            who,
            Creds { basic: Some(("developer".into(), token.clone())), api: Some(format!("Token {token}")) },
        );
    }
    creds.insert(
        Who::DisabledUser,
        Creds {
            basic: Some(("disabled".into(), "password-disabled".into())),
            api: Some(format!("Bearer {disabled_jwt}")),
        },
    );
    tokio::time::sleep(Duration::from_millis(1500)).await; // the CLI token expires
    World { _berth: berth, c, base, creds }
}

async fn create_user_id(c: &Client, base: &str, admin: &str, name: &str) -> i64 {
    let users: Value =
        c.get(format!("{base}/api/v1/users?limit=100")).bearer_auth(admin).send().await.unwrap().json().await.unwrap();
    users["users"].as_array().unwrap().iter().find(|u| u["username"] == name).unwrap()["id"].as_i64().unwrap()
}

/// One route of the matrix: how to call it, and the expected status per identity.
struct Route {
    name: &'static str,
    call: fn(&World, Who) -> RequestBuilder,
    expect: fn(Who) -> u16,
}

const ZERO_DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

fn bad_creds(who: Who) -> bool {
    matches!(who, Who::ExpiredToken | Who::RevokedToken | Who::DisabledUser)
}

fn routes() -> Vec<Route> {
    use Who::*;
    vec![
        Route {
            name: "GET /v2/",
            call: |w, who| w.v2(who, Method::GET, "/v2/"),
            expect: |who| if who == Anonymous || bad_creds(who) { 401 } else { 200 },
        },
        Route {
            name: "GET /v2/_catalog",
            call: |w, who| w.v2(who, Method::GET, "/v2/_catalog"),
            expect: |who| if who == Anonymous || bad_creds(who) { 401 } else { 200 },
        },
        Route {
            name: "pull private",
            call: |w, who| w.v2(who, Method::GET, "/v2/team/app/manifests/v1"),
            expect: |who| match who {
                Anonymous | ExpiredToken | RevokedToken | DisabledUser => 401,
                Outsider => 403,
                _ => 200,
            },
        },
        Route {
            name: "push private",
            call: |w, who| w.v2(who, Method::POST, "/v2/team/app/blobs/uploads/"),
            expect: |who| match who {
                Anonymous | ExpiredToken | RevokedToken | DisabledUser => 401,
                Developer | Maintainer | Owner | Admin => 202,
                _ => 403,
            },
        },
        Route {
            name: "delete private",
            call: |w, who| w.v2(who, Method::DELETE, &format!("/v2/team/app/manifests/{ZERO_DIGEST}")),
            expect: |who| match who {
                Anonymous | ExpiredToken | RevokedToken | DisabledUser => 401,
                Maintainer | Owner | Admin => 404, // allowed; nothing to delete
                _ => 403,
            },
        },
        Route {
            name: "pull public",
            call: |w, who| w.v2(who, Method::GET, "/v2/pub/app/manifests/v1"),
            expect: |who| match who {
                ExpiredToken | RevokedToken | DisabledUser => 401,
                ScopedToken => 403, // its glob is team/*
                _ => 200,
            },
        },
        Route {
            name: "push public (not a member)",
            call: |w, who| w.v2(who, Method::POST, "/v2/pub/app/blobs/uploads/"),
            expect: |who| match who {
                Anonymous | ExpiredToken | RevokedToken | DisabledUser => 401,
                Admin => 202,
                _ => 403,
            },
        },
        Route {
            name: "push to a new project",
            call: |w, who| {
                w.v2(who, Method::POST, &format!("/v2/new-{}/app/blobs/uploads/", format!("{who:?}").to_lowercase()))
            },
            expect: |who| match who {
                Anonymous | ExpiredToken | RevokedToken | DisabledUser => 401,
                ScopedToken => 403,
                _ => 202,
            },
        },
        Route {
            name: "GET /api/v1/users",
            call: |w, who| w.api(who, Method::GET, "/api/v1/users"),
            expect: |who| match who {
                Anonymous | ExpiredToken | RevokedToken | DisabledUser => 401,
                Admin => 200,
                _ => 403,
            },
        },
        Route {
            name: "GET /api/v1/audit/logs",
            call: |w, who| w.api(who, Method::GET, "/api/v1/audit/logs"),
            expect: |who| match who {
                Anonymous | ExpiredToken | RevokedToken | DisabledUser => 401,
                Admin => 200,
                _ => 403,
            },
        },
        Route {
            name: "POST /api/v1/system/lock/lock (empty reason)",
            call: |w, who| w.api(who, Method::POST, "/api/v1/system/lock/lock").json(&json!({"reason": ""})),
            expect: |who| match who {
                Anonymous | ExpiredToken | RevokedToken | DisabledUser => 401,
                Admin => 400, // allowed; the empty reason is refused
                _ => 403,
            },
        },
        Route {
            name: "GET /api/v1/auth/me",
            call: |w, who| w.api(who, Method::GET, "/api/v1/auth/me"),
            expect: |who| if who == Anonymous || bad_creds(who) { 401 } else { 200 },
        },
        Route {
            name: "GET /api/v1/tokens",
            call: |w, who| w.api(who, Method::GET, "/api/v1/tokens"),
            expect: |who| if who == Anonymous || bad_creds(who) { 401 } else { 200 },
        },
        Route {
            name: "POST /api/v1/tokens",
            call: |w, who| {
                w.api(who, Method::POST, "/api/v1/tokens").json(&json!({"name": "m", "permissions": ["pull"]}))
            },
            expect: |who| match who {
                Anonymous | ExpiredToken | RevokedToken | DisabledUser => 401,
                ScopedToken => 403, // tokens are created from a login
                _ => 201,
            },
        },
        Route {
            name: "GET /api/images/team/app/v1",
            call: |w, who| w.api(who, Method::GET, "/api/images/team/app/v1"),
            expect: |who| match who {
                Anonymous | ExpiredToken | RevokedToken | DisabledUser => 401,
                Outsider => 404, // what the caller may not pull is not there
                _ => 200,
            },
        },
        Route {
            name: "GET /api/v1/repositories/team/app",
            call: |w, who| w.api(who, Method::GET, "/api/v1/repositories/team/app"),
            expect: |who| match who {
                Anonymous | ExpiredToken | RevokedToken | DisabledUser => 401,
                Outsider => 404,
                _ => 200,
            },
        },
        Route {
            name: "PUT /api/v1/repositories/team/app",
            call: |w, who| {
                w.api(who, Method::PUT, "/api/v1/repositories/team/app").json(&json!({"description": "app"}))
            },
            expect: |who| match who {
                Anonymous | ExpiredToken | RevokedToken | DisabledUser => 401,
                Outsider => 404,
                Maintainer | Owner | Admin => 200,
                _ => 403,
            },
        },
        Route {
            name: "GET /api/system/info",
            call: |w, who| w.api(who, Method::GET, "/api/system/info"),
            expect: |who| match who {
                Anonymous | ExpiredToken | RevokedToken | DisabledUser => 401,
                Admin => 200,
                _ => 403,
            },
        },
        Route {
            name: "PUT /api/v1/projects/team",
            call: |w, who| w.api(who, Method::PUT, "/api/v1/projects/team").json(&json!({"description": "team"})),
            expect: |who| match who {
                Anonymous | ExpiredToken | RevokedToken | DisabledUser => 401,
                Owner | Admin => 200,
                _ => 403,
            },
        },
    ]
}

/// What `GET /auth` grants each identity on `team/app` when asked for everything.
fn expected_grant(who: Who) -> &'static str {
    match who {
        Who::Anonymous | Who::Outsider => "",
        Who::Guest | Who::ScopedToken => "pull",
        Who::Developer => "pull,push",
        Who::Maintainer | Who::Owner | Who::Admin => "pull,push,delete",
        Who::ExpiredToken | Who::RevokedToken | Who::DisabledUser => "401",
    }
}

/// An `application/x-www-form-urlencoded` body.
fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT has a payload");
    serde_json::from_slice(&B64.decode(payload).expect("base64url payload")).expect("JSON claims")
}

#[tokio::test]
async fn authorization_matrix() {
    let w = world().await;
    let mut failures = Vec::new();
    let mut cells = 0;
    for route in routes() {
        for who in EVERYONE {
            let got = (route.call)(&w, who).send().await.unwrap();
            let status = got.status().as_u16();
            cells += 1;
            if status != (route.expect)(who) {
                failures.push(format!("{} as {who:?}: got {status}, want {}", route.name, (route.expect)(who)));
            }
            if status == 401 && !route.name.contains("/api/") {
                assert!(
                    got.headers().contains_key("www-authenticate"),
                    "{} as {who:?}: 401 without a challenge",
                    route.name
                );
            }
        }
    }
    for who in EVERYONE {
        let r = w
            .v2(who, Method::GET, "/auth?service=berth&scope=repository:team/app:pull,push,delete")
            .send()
            .await
            .unwrap();
        cells += 1;
        let got = if r.status() == StatusCode::OK {
            let body: Value = r.json().await.unwrap();
            let claims = jwt_claims(body["token"].as_str().unwrap());
            let mut actions: Vec<String> = claims["access"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|e| e["actions"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()))
                .collect();
            actions.sort_by_key(|a| ["pull", "push", "delete"].iter().position(|x| x == a));
            actions.join(",")
        } else {
            r.status().as_u16().to_string()
        };
        if got != expected_grant(who) {
            failures.push(format!("GET /auth as {who:?}: granted {got:?}, want {:?}", expected_grant(who)));
        }
    }
    assert!(failures.is_empty(), "{} of {cells} matrix cells wrong:\n{}", failures.len(), failures.join("\n"));
    eprintln!("authorization matrix: {cells} cells checked");

    // The catalog lists only what the caller may pull.
    let outsider = catalog(&w, Who::Outsider).await;
    assert!(outsider.contains(&"pub/app".to_owned()) && !outsider.contains(&"team/app".to_owned()), "{outsider:?}");
    let guest = catalog(&w, Who::Guest).await;
    assert!(guest.contains(&"team/app".to_owned()), "{guest:?}");

    // Mounts read only from what the caller can pull: with `from`, and automatically without it.
    let layer = ImageFixture::new(1, &[100]).layers[0].digest.clone();
    for (who, from, want) in [
        (Who::Guest, Some("team/app"), 201),
        (Who::Guest, None, 201),
        (Who::Outsider, Some("team/app"), 202),
        (Who::Outsider, None, 202),
    ] {
        let from = from.map(|f| format!("&from={f}")).unwrap_or_default();
        let path = format!("/v2/new-{who:?}-mount/app/blobs/uploads/?mount={layer}{from}").to_lowercase();
        let r = w.v2(who, Method::POST, &path).send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{who:?} {path}");
    }
}

async fn catalog(w: &World, who: Who) -> Vec<String> {
    let v: Value = w.v2(who, Method::GET, "/v2/_catalog").send().await.unwrap().json().await.unwrap();
    v["repositories"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect()
}

/// The Docker token flow end to end: challenge → `/auth` → Bearer, scoped.
#[tokio::test]
async fn docker_token_flow_and_scopes() {
    let berth = BerthProcess::start_with_auth(BIN, ADMIN_PASSWORD, &[("BERTH_AUTH__AUDIT_PULLS", "true")]);
    let c = client();
    let base = berth.url();
    let r = c.get(format!("{base}/v2/team/app/tags/list")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with(&format!("Bearer realm=\"{base}/auth\",service=\"berth\"")), "{challenge}");
    assert!(challenge.contains("scope=\"repository:team/app:pull\""), "{challenge}");
    assert_eq!(crate::common::error_code(r).await, "UNAUTHORIZED");

    // A pull-only token cannot push: 401 insufficient_scope.
    let token: Value = c
        .get(format!("{base}/auth?service=berth&scope=repository:team/app:pull"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(token["expires_in"], 300);
    assert_eq!(token["token"], token["access_token"]);
    let pull_only = token["token"].as_str().unwrap();
    let r = c.post(format!("{base}/v2/team/app/blobs/uploads/")).bearer_auth(pull_only).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\"") && challenge.contains("team/app:pull,push"),
        "{challenge}"
    );
    // … nor reach another repository.
    let r = c.get(format!("{base}/v2/other/app/tags/list")).bearer_auth(pull_only).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A scoped token cannot mint a wider one.
    let r = c
        .get(format!("{base}/auth?service=berth&scope=repository:team/app:push"))
        .bearer_auth(pull_only)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Unknown service and malformed scopes are 400 UNSUPPORTED.
    let r = c.get(format!("{base}/auth?service=other")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c.get(format!("{base}/auth?service=berth&scope=repository")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // A push token works; the push is audited.
    let token: Value = c
        .get(format!("{base}/auth?service=berth&scope=repository:team/app:pull,push"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let push = token["token"].as_str().unwrap();
    let image = ImageFixture::new(7, &[64]);
    for blob in image.blobs() {
        let r = c
            .post(format!("{base}/v2/team/app/blobs/uploads/?digest={}", blob.digest))
            .bearer_auth(push)
            .body(blob.data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = c
        .put(format!("{base}/v2/team/app/manifests/latest"))
        .bearer_auth(push)
        .header("content-type", berth_core::media_type::OCI_MANIFEST)
        .body(image.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c.get(format!("{base}/v2/team/app/manifests/latest")).bearer_auth(push).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // OAuth2: password grant with a refresh token, then the refresh grant.
    let r = c
        .post(format!("{base}/auth"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("service", "berth"),
            ("scope", "repository:team/app:pull"),
            ("access_type", "offline"),
            ("client_id", "test"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let refresh = body["refresh_token"].as_str().expect("refresh_token with access_type=offline").to_owned();
    let r = c
        .post(format!("{base}/auth"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("service", "berth"),
            ("scope", "repository:team/app:pull"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let r = c
        .get(format!("{base}/v2/team/app/tags/list"))
        .bearer_auth(body["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .post(format!("{base}/auth"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("grant_type", "magic")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Seed 004's JSON login: a 24 h unscoped token usable on /v2.
    let r = c
        .post(format!("{base}/auth"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["expires_in"], 86400);
    let r = c.get(format!("{base}/v2/_catalog")).bearer_auth(body["token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r =
        c.post(format!("{base}/auth")).json(&json!({"username": "admin", "password": "wrong"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "UNAUTHORIZED");

    // The push above is in the audit log.
    let jwt = admin_jwt(&c, &base).await;
    let logs: Value = c
        .get(format!("{base}/api/v1/audit?action=repository.push"))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        logs["logs"].as_array().unwrap().iter().any(|l| l["resource"].as_str().unwrap().starts_with("team/app@")),
        "{logs}"
    );
}

/// Signs `claims` with the server's own key file, so each forged token below
/// differs from a genuine one in exactly the defect under test.
fn sign_with_server_key(berth: &BerthProcess, claims: &Value) -> String {
    let signer = TokenSigner::load_or_generate(&berth.data_dir().join("auth/token-key.pem")).expect("server key");
    signer.sign(&serde_json::from_value::<Claims>(claims.clone()).expect("claims")).unwrap()
}

#[tokio::test]
async fn forged_and_tampered_tokens_are_refused() {
    let berth = BerthProcess::start_with_auth(BIN, ADMIN_PASSWORD, &[]);
    let c = client();
    let base = berth.url();
    push_image_as(&c, &base, "admin", ADMIN_PASSWORD, "team/app", &ImageFixture::new(3, &[10])).await;
    let good: Value = c
        .get(format!("{base}/auth?service=berth&scope=repository:team/app:pull"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let good = good["token"].as_str().unwrap().to_owned();
    let pull = |token: String| {
        let c = c.clone();
        let url = format!("{base}/v2/team/app/manifests/v1");
        async move { c.get(url).bearer_auth(token).send().await.unwrap().status() }
    };
    assert_eq!(pull(good.clone()).await, StatusCode::OK, "the genuine token works");
    let claims = jwt_claims(&good);
    let now = berth_meta::now_unix();

    let mut attacks: Vec<(&str, String)> = Vec::new();
    // alg none, no signature.
    let none_header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    attacks.push(("alg none", format!("{none_header}.{}.", B64.encode(claims.to_string()))));
    // HS256 keyed with the server's public key (the classic confusion attack).
    let public = TokenSigner::load_or_generate(&berth.data_dir().join("auth/token-key.pem")).unwrap().public_key_pem();
    for secret in [public.as_bytes().to_vec(), public.trim().as_bytes().to_vec()] {
        let hs = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .unwrap();
        attacks.push(("HS256 with the public key", hs));
    }
    // Tampered payload: widen the access, keep the signature.
    let mut wider = claims.clone();
    wider["access"] = json!([{"type": "repository", "name": "team/app", "actions": ["pull", "push", "delete"]}]);
    let parts: Vec<&str> = good.split('.').collect();
    attacks.push(("tampered claims", format!("{}.{}.{}", parts[0], B64.encode(wider.to_string()), parts[2])));
    // Signed with the right key but wrong in one claim each.
    let mut expired = claims.clone();
    expired["exp"] = json!(now - 3600);
    expired["iat"] = json!(now - 7200);
    expired["nbf"] = json!(now - 7200);
    attacks.push(("expired", sign_with_server_key(&berth, &expired)));
    let mut aud = claims.clone();
    aud["aud"] = json!("another-registry");
    attacks.push(("wrong audience", sign_with_server_key(&berth, &aud)));
    let mut iss = claims.clone();
    iss["iss"] = json!("evil");
    attacks.push(("wrong issuer", sign_with_server_key(&berth, &iss)));
    let mut future = claims.clone();
    future["nbf"] = json!(now + 3600);
    attacks.push(("not yet valid", sign_with_server_key(&berth, &future)));
    // A different key entirely.
    let foreign = TokenSigner::generate().unwrap();
    attacks.push(("another key", foreign.sign(&serde_json::from_value::<Claims>(claims.clone()).unwrap()).unwrap()));
    attacks.push(("garbage", "not.a.jwt".into()));

    for (name, token) in attacks {
        assert_eq!(pull(token.clone()).await, StatusCode::UNAUTHORIZED, "/v2 accepted a token: {name}");
        let r = c.get(format!("{base}/api/v1/auth/me")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "/api accepted a token: {name}");
    }
    // A correctly signed registry token is still refused on the management API.
    let r = c.get(format!("{base}/api/v1/auth/me")).bearer_auth(&good).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Path tricks cannot reach another project's rights.
    let r = c
        .put(format!("{base}/api/v1/projects/pub"))
        .bearer_auth(admin_jwt(&c, &base).await)
        .json(&json!({"visibility": "public"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for path in [
        "/v2/pub/../team/app/manifests/v1",
        "/v2/pub/%2e%2e/team/app/manifests/v1",
        "/v2/pub%2F..%2Fteam/app/manifests/v1",
        "/v2/PUB/app/manifests/v1",
        "/v2//team/app/manifests/v1",
    ] {
        let r = c.get(format!("{base}{path}")).send().await.unwrap();
        assert!(
            matches!(r.status().as_u16(), 400 | 401 | 404),
            "{path}: anonymous got {} (must never be 200)",
            r.status()
        );
    }
}

#[tokio::test]
async fn csrf_is_required_for_cookie_sessions() {
    let berth = BerthProcess::start_with_auth(BIN, ADMIN_PASSWORD, &[]);
    let c = client();
    let base = berth.url();
    let r = c
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["must_change_password"], false, "BERTH_ADMIN_PASSWORD needs no change");
    let cookie_header = cookies.join("; ");
    let csrf = cookies.iter().find_map(|c| c.strip_prefix("berth_csrf=")).unwrap().to_owned();
    let post = |csrf: Option<&str>| {
        let mut r = c
            .post(format!("{base}/api/v1/tokens"))
            .header("cookie", &cookie_header)
            .json(&json!({"name": "ui", "permissions": ["pull"]}));
        if let Some(csrf) = csrf {
            r = r.header("x-csrf-token", csrf);
        }
        r.send()
    };
    let r = post(None).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["details"]["reason"], "csrf_missing");
    let r = post(Some("forged")).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["details"]["reason"], "csrf_invalid");
    assert_eq!(post(Some(&csrf)).await.unwrap().status(), StatusCode::CREATED);
    // Safe methods need no CSRF token.
    let r = c.get(format!("{base}/api/v1/auth/me")).header("cookie", &cookie_header).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Logout ends the session: the cookie stops working.
    let r = c
        .post(format!("{base}/api/v1/auth/logout"))
        .header("cookie", &cookie_header)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c.get(format!("{base}/api/v1/auth/me")).header("cookie", &cookie_header).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn brute_force_locks_the_system_until_recovery() {
    let berth = BerthProcess::start_with_auth(BIN, ADMIN_PASSWORD, &[]);
    let c = client();
    let base = berth.url();
    let attempt = |password: &'static str| {
        c.post(format!("{base}/api/v1/auth/login")).json(&json!({"username": "admin", "password": password})).send()
    };
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = attempt("guess").await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "login_failure");
        remaining.push(body["remaining_attempts"].as_i64().unwrap());
    }
    assert_eq!(remaining, vec![4, 3, 2]);
    // From the 4th attempt a captcha is needed; missing and wrong answers still count.
    let r = attempt("guess").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!((body["code"].as_str(), body["remaining_attempts"].as_i64()), (Some("captcha_required"), Some(1)));
    let captcha = fetch_captcha(&c, &base).await;
    let r = c
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": "guess", "captcha_id": captcha, "captcha": "000000"}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!((body["code"].as_str(), body["remaining_attempts"].as_i64()), (Some("captcha_invalid"), Some(0)));
    let status: Value = c.get(format!("{base}/api/v1/system/lock/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["is_locked"], true);
    assert_eq!(status["lock_type"], "rule_triggered");
    assert_eq!(status["locked_by_ip"], "127.0.0.1");
    // Locked: even the right password is refused.
    let r = attempt(ADMIN_PASSWORD).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "system_locked");
    // A wrong unlock fails; the recovery key printed at first start works.
    let r =
        c.post(format!("{base}/api/v1/system/lock/unlock")).json(&json!({"password": "nope"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let log = berth.log_lines().join("\n");
    let key =
        log.split_whitespace().find(|w| w.starts_with("berth_recovery_")).expect("recovery key printed").to_owned();
    let r =
        c.post(format!("{base}/api/v1/system/lock/unlock")).json(&json!({"recovery_key": key})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The failures are still counted after the unlock: the next login needs a captcha,
    // but the unlock forgave them for the lock rule, so this failure does not lock again.
    assert_eq!(attempt(ADMIN_PASSWORD).await.unwrap().json::<Value>().await.unwrap()["code"], "captcha_required");
    let status: Value = c.get(format!("{base}/api/v1/system/lock/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["is_locked"], false);
    let (id, answer) = plant_captcha(&berth).await;
    let r = c
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD, "captcha_id": id, "captcha": answer}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["lock_warning"], true, "this account had failures since its last success");
    let again: Value = attempt(ADMIN_PASSWORD).await.unwrap().json().await.unwrap();
    assert_eq!(again["lock_warning"], false, "a success clears the account's failures");

    // Manual lock by the admin; unlock with the admin password.
    let jwt = body["token"].as_str().unwrap();
    let r = c
        .post(format!("{base}/api/v1/system/lock/lock"))
        .bearer_auth(jwt)
        .json(&json!({"reason": "Maintenance mode"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .post(format!("{base}/api/v1/users"))
        .bearer_auth(jwt)
        .json(&json!({"username": "late", "password": "password-late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "management writes answer system_locked");
    // The registry is read-only while locked.
    let r = c
        .post(format!("{base}/v2/team/app/blobs/uploads/"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.unwrap()["errors"][0]["detail"]["reason"], "system_locked");
    let r = c.get(format!("{base}/v2/_catalog")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "reads keep working");
    let r = c
        .post(format!("{base}/api/v1/system/lock/unlock"))
        .json(&json!({"password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Every step is in the audit log, and the chain verifies.
    let logs: Value = c
        .get(format!("{base}/api/v1/audit/logs?page_size=100"))
        .bearer_auth(jwt)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events: Vec<&str> = logs["logs"].as_array().unwrap().iter().map(|l| l["event"].as_str().unwrap()).collect();
    for event in ["login_failure", "system_locked", "system_unlocked", "login_success", "system_unlock_failed"] {
        assert!(events.contains(&event), "audit lacks {event}: {events:?}");
    }
}

/// `GET /api/v1/auth/captcha`: checks the shape, returns the id.
async fn fetch_captcha(c: &Client, base: &str) -> String {
    let r = c.get(format!("{base}/api/v1/auth/captcha")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["expires_in"], 300);
    let image = body["image"].as_str().unwrap();
    let svg = image.strip_prefix("data:image/svg+xml;base64,").expect("an SVG data URL");
    let svg = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(svg).unwrap()).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<path") && svg.contains("<line"), "{svg}");
    assert!(!svg.contains("<text"), "the answer is drawn, never written");
    let id = body["captcha_id"].as_str().unwrap();
    assert!(id.starts_with("c_"), "{id}");
    id.to_owned()
}

/// A challenge with a known answer, written into the database the way the
/// server stores one (the test cannot read the image).
async fn plant_captcha(berth: &BerthProcess) -> (String, String) {
    let (id, answer) = ("c_planted".to_owned(), "HKT4MN".to_owned());
    let hash = berth_access::secret::hash_pat(&format!("{id}:{answer}"));
    let expires_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 300;
    let db = berth.data_dir().join("berth.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    sqlx::query("INSERT OR REPLACE INTO settings (name, value, updated_at) VALUES ($1, $2, $3)")
        .bind(format!("captcha:{id}"))
        .bind(format!("{hash}:{expires_at}"))
        .bind(expires_at as i64 - 300)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    (id, answer)
}

#[tokio::test]
async fn captcha_is_required_after_repeated_failures() {
    // A high lock limit, so the captcha rules can be walked through without locking.
    let berth = BerthProcess::start_with_auth(BIN, ADMIN_PASSWORD, &[("BERTH_AUTH__LOCK_AFTER_IP_FAILURES", "50")]);
    let c = client();
    let base = berth.url();
    let login_with = |body: Value| c.post(format!("{base}/api/v1/auth/login")).json(&body).send();
    let code_of = |body: &Value| body["code"].as_str().unwrap_or_default().to_owned();
    for _ in 0..3 {
        let r = login_with(json!({"username": "admin", "password": "guess"})).await.unwrap();
        assert_eq!(code_of(&r.json().await.unwrap()), "login_failure");
    }
    // The right password alone is no longer enough.
    let r = login_with(json!({"username": "admin", "password": ADMIN_PASSWORD})).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(code_of(&r.json().await.unwrap()), "captcha_required");
    // A wrong answer fails and burns the challenge; so does any reuse.
    let id = fetch_captcha(&c, &base).await;
    for answer in ["000000", "000000"] {
        let body = json!({"username": "admin", "password": ADMIN_PASSWORD, "captcha_id": id, "captcha": answer});
        let r = login_with(body).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(code_of(&r.json().await.unwrap()), "captcha_invalid");
    }
    let body = json!({"username": "admin", "password": ADMIN_PASSWORD, "captcha_id": "c_nope", "captcha": "AAAAAA"});
    assert_eq!(code_of(&login_with(body).await.unwrap().json().await.unwrap()), "captcha_invalid");
    // A solved challenge lets the right password in, once.
    let (id, answer) = plant_captcha(&berth).await;
    let body = json!({"username": "admin", "password": ADMIN_PASSWORD, "captcha_id": id, "captcha": answer});
    let r = login_with(body.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The success cleared the account's failures, but reusing the challenge is still refused later.
    for _ in 0..3 {
        login_with(json!({"username": "admin", "password": "guess"})).await.unwrap();
    }
    assert_eq!(code_of(&login_with(body).await.unwrap().json().await.unwrap()), "captcha_invalid");
    // The JSON `/auth` login applies the same rule, in the GhostDock envelope.
    let r = c
        .post(format!("{base}/auth"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "UNAUTHORIZED");
    assert_eq!(body["error"]["details"]["reason"], "captcha_required");
    let status: Value = c.get(format!("{base}/api/v1/system/lock/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["is_locked"], false);
}

#[tokio::test]
async fn totp_two_factor_enrolment_login_and_recovery() {
    use berth_access::totp::code_at;
    let berth = BerthProcess::start_with_auth(BIN, ADMIN_PASSWORD, &[]);
    let c = client();
    let base = berth.url();
    let admin = admin_jwt(&c, &base).await;
    let alice_id = create_user(&c, &base, &admin, "alice").await;
    let jwt = login(&c, &base, "alice", "password-alice").await["token"].as_str().unwrap().to_owned();
    let (_, pat) = create_pat(&c, &base, &jwt, json!({"name": "ci", "permissions": ["pull"]})).await;
    let post = |path: &str, auth: &str, body: Value| {
        c.post(format!("{base}/api/v1/auth/2fa/{path}")).bearer_auth(auth).json(&body).send()
    };
    let code_of = |body: &Value| body["code"].as_str().unwrap_or_default().to_owned();

    // Enrolment: only a login may start it; enabling needs no setup first to fail.
    assert_eq!(post("setup", &pat, json!({})).await.unwrap().status(), StatusCode::FORBIDDEN);
    let r = post("enable", &jwt, json!({"code": "123456"})).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "no setup yet");
    let r = post("setup", &jwt, json!({})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let setup: Value = r.json().await.unwrap();
    let secret = setup["secret"].as_str().unwrap().to_owned();
    assert!(setup["otpauth_url"].as_str().unwrap().starts_with("otpauth://totp/berth:alice?secret="));
    assert!(setup["qr_image"].is_null());
    let t0 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let code = |offset: i64| code_at(&secret, t0 + offset).unwrap();
    let r = post("enable", &jwt, json!({"code": "12345"})).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(code_of(&r.json().await.unwrap()), "otp_invalid");
    let r = post("enable", &jwt, json!({"code": code(0)})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let enabled: Value = r.json().await.unwrap();
    assert_eq!(enabled["message"], "Two-factor authentication enabled");
    let recovery: Vec<String> =
        enabled["recovery_codes"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    assert_eq!(recovery.len(), 10);
    assert_eq!(post("setup", &jwt, json!({})).await.unwrap().status(), StatusCode::BAD_REQUEST, "already on");

    // Logins need the code; a code is good once (the enabling one is used up).
    let attempt = |otp: Option<String>| {
        let mut body = json!({"username": "alice", "password": "password-alice"});
        if let Some(otp) = otp {
            body["otp"] = json!(otp);
        }
        c.post(format!("{base}/api/v1/auth/login")).json(&body).send()
    };
    let r = attempt(None).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(code_of(&r.json().await.unwrap()), "otp_required");
    assert_eq!(code_of(&attempt(Some(code(0))).await.unwrap().json().await.unwrap()), "otp_invalid", "replay");
    assert_eq!(attempt(Some(code(30))).await.unwrap().status(), StatusCode::OK);
    assert_eq!(code_of(&attempt(Some(code(30))).await.unwrap().json().await.unwrap()), "otp_invalid", "replay");
    // A recovery code works once.
    assert_eq!(attempt(Some(recovery[0].clone())).await.unwrap().status(), StatusCode::OK);
    assert_eq!(code_of(&attempt(Some(recovery[0].clone())).await.unwrap().json().await.unwrap()), "otp_invalid");

    // Basic with the password is refused on /v2; the PAT works.
    let r = c.get(format!("{base}/v2/")).basic_auth("alice", Some("password-alice")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c.get(format!("{base}/v2/")).basic_auth("alice", Some(&pat)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Disabling needs the password and a code; others need an admin.
    let r = post("disable", &jwt, json!({"password": "nope", "code": code(60)})).await.unwrap();
    assert_eq!((r.status(), code_of(&r.json().await.unwrap())), (StatusCode::UNAUTHORIZED, "login_failure".into()));
    let r = post("disable", &jwt, json!({"password": "password-alice", "code": "000000x"})).await.unwrap();
    assert_eq!((r.status(), code_of(&r.json().await.unwrap())), (StatusCode::UNAUTHORIZED, "otp_invalid".into()));
    let admin_id = login(&c, &base, "admin", ADMIN_PASSWORD).await["user"]["id"].as_i64().unwrap();
    let r = post("disable", &jwt, json!({"user_id": admin_id})).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "a user cannot disable someone else's 2FA");
    let r = post("disable", &jwt, json!({"password": "password-alice", "code": recovery[1]})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["message"], "Two-factor authentication disabled");
    assert_eq!(attempt(None).await.unwrap().status(), StatusCode::OK, "no code needed any more");
    // An admin may turn it off for another user; an unknown user is a bad request.
    assert_eq!(post("disable", &admin, json!({"user_id": 9999})).await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(post("disable", &admin, json!({"user_id": alice_id})).await.unwrap().status(), StatusCode::OK);

    let logs: Value = c
        .get(format!("{base}/api/v1/audit/logs?page_size=100"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events: Vec<&str> = logs["logs"].as_array().unwrap().iter().map(|l| l["event"].as_str().unwrap()).collect();
    for event in ["2fa_setup", "2fa_enabled", "2fa_recovery_code_used", "2fa_disabled"] {
        assert!(events.contains(&event), "audit lacks {event}: {events:?}");
    }
}

#[tokio::test]
async fn admin_ip_allowlist_is_validated_and_enforced() {
    let berth = BerthProcess::start_with_auth(BIN, ADMIN_PASSWORD, &[]);
    let c = client();
    let base = berth.url();
    let admin = admin_jwt(&c, &base).await;
    create_user(&c, &base, &admin, "bob").await;
    let bob = login(&c, &base, "bob", "password-bob").await["token"].as_str().unwrap().to_owned();
    let url = format!("{base}/api/v1/system/allowlist");
    let put = |body: Value| c.put(&url).bearer_auth(&admin).json(&body).send();

    let r = c.get(&url).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"enabled": false, "cidrs": []}));
    let r = c.get(&url).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "permission_denied");
    for bad in [json!(["10.0.0.0/33"]), json!(["not-an-ip"]), json!(["10.0.0.0/8", "::1/x"])] {
        let r = put(json!({"enabled": true, "cidrs": bad})).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid_request");
    }
    // The test client is 127.0.0.1: a list of only ::1 would lock this admin out.
    let r = put(json!({"enabled": true, "cidrs": ["::1/128"]})).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("127.0.0.1"));
    let list = json!({"enabled": true, "cidrs": ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]});
    let r = put(list.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), list);
    assert_eq!(c.get(&url).bearer_auth(&admin).send().await.unwrap().json::<Value>().await.unwrap(), list);
    // Admin endpoints keep working from an allowed address, on both surfaces.
    for path in ["/api/v1/users", "/api/v1/audit/logs", "/api/v1/audit"] {
        let r = c.get(format!("{base}{path}")).bearer_auth(&admin).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    let r = put(json!({"enabled": false, "cidrs": []})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let logs: Value = c
        .get(format!("{base}/api/v1/audit/logs?event_type=allowlist_updated"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(logs["total"], 2);
}

#[tokio::test]
async fn audit_chain_tampering_is_detected() {
    let mut berth = BerthProcess::start_with_auth(BIN, ADMIN_PASSWORD, &[]);
    let c = client();
    let base = berth.url();
    let jwt = admin_jwt(&c, &base).await;
    for name in ["alice", "bob", "carol"] {
        create_user(&c, &base, &jwt, name).await;
    }
    let export = c.get(format!("{base}/api/v1/audit/logs/export")).bearer_auth(&jwt).send().await.unwrap();
    assert!(export.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    let entries: Vec<Value> = export.json().await.unwrap();
    assert!(entries.len() >= 5, "{entries:?}");
    assert!(entries.windows(2).all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64()), "export is oldest first");
    berth.terminate();

    let verify = |berth: &BerthProcess| {
        let out = Command::new(BIN).args(["audit", "verify", "--data-dir"]).arg(berth.data_dir()).output().unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, out) = verify(&berth);
    assert!(ok, "{out}");
    assert!(out.contains("intact"), "{out}");

    // Rewrite who created a user in entry 4, as someone with database access might.
    let db = berth.data_dir().join("berth.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    sqlx::query("UPDATE audit_log SET username = 'mallory' WHERE id = 4").execute(&pool).await.unwrap();
    let (ok, out) = verify(&berth);
    assert!(!ok, "tampering went unnoticed: {out}");
    assert!(out.contains("entry 4"), "{out}");
    // Undo, then delete the newest entry: the head no longer matches.
    sqlx::query("UPDATE audit_log SET username = 'admin' WHERE id = 4").execute(&pool).await.unwrap();
    assert!(verify(&berth).0);
    sqlx::query("DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)").execute(&pool).await.unwrap();
    let (ok, out) = verify(&berth);
    assert!(!ok && out.contains("broken"), "{out}");
    pool.close().await;
}

#[tokio::test]
async fn first_start_generates_an_admin_password_that_must_change() {
    let berth = BerthProcess::start_with_env(BIN, &[], &[("BERTH_AUTH__MODE", "token")]);
    let log = berth.log_lines().join("\n");
    let password =
        log.lines().find_map(|l| l.trim().strip_prefix("password: ")).expect("generated password printed").to_owned();
    let c = client();
    let body = login(&c, &berth.url(), "admin", &password).await;
    assert_eq!(body["must_change_password"], true);
    // Anonymous access to /v2/ is challenged.
    let r = c.get(format!("{}/v2/", berth.url())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Passwords never reach the log pipeline (only the one-time banner on stderr).
    let secret_lines: Vec<&str> = log.lines().filter(|l| l.contains(&password)).collect();
    assert_eq!(secret_lines.len(), 1, "{secret_lines:?}");
}

#[tokio::test]
async fn rate_limits_count_manifests_not_blobs() {
    let berth = BerthProcess::start_with_auth(
        BIN,
        ADMIN_PASSWORD,
        &[
            ("BERTH_RATE_LIMIT__ENABLED", "true"),
            ("BERTH_RATE_LIMIT__REGISTRY_PER_MINUTE", "5"),
            ("BERTH_RATE_LIMIT__API_PER_MINUTE", "3"),
        ],
    );
    let c = client();
    let base = berth.url();
    let catalog = || c.get(format!("{base}/v2/_catalog")).basic_auth("admin", Some(ADMIN_PASSWORD)).send();
    for i in 0..5 {
        let r = catalog().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "request {i}");
        assert_eq!(r.headers()["x-ratelimit-limit"], "1000");
        assert_eq!(
            r.headers()["x-ratelimit-remaining"].to_str().unwrap(),
            (4 - i).to_string(),
            "the burst is the tighter budget"
        );
        assert!(r.headers().contains_key("x-ratelimit-reset"));
    }
    let r = catalog().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(crate::common::error_code(r).await, "TOOMANYREQUESTS");
    // Blob requests are not counted: a pull of many layers is never throttled.
    for _ in 0..10 {
        let r = c
            .head(format!("{base}/v2/any/thing/blobs/{ZERO_DIGEST}"))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    // Anonymous callers are counted by IP, separately from the user.
    assert_eq!(c.get(format!("{base}/v2/_catalog")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    // The API counts every request per IP.
    for _ in 0..3 {
        let r = c.get(format!("{base}/api/v1/system/lock/status")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = c.get(format!("{base}/api/v1/system/lock/status")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "rate_limit_exceeded");
}

/// Nodes sharing PostgreSQL keep the token key in it, sealed with `secrets.key`;
/// two nodes with the same key honour each other's tokens; without the key a
/// node refuses to start.
#[tokio::test]
async fn shared_token_key_is_sealed_in_the_database() {
    let Some((meta, db_url)) = berth_meta::postgres::test_database().await else {
        eprintln!("BERTH_TEST_POSTGRES_URL not set; skipping");
        return;
    };
    let key = "11".repeat(32);
    let env = [("BERTH_SECRETS__KEY", key.as_str())];
    let a = BerthProcess::start_with_env(
        BIN,
        &["--database-url", &db_url],
        &[("BERTH_AUTH__MODE", "token"), ("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD), env[0]],
    );
    let b = BerthProcess::start_with_env(
        BIN,
        &["--database-url", &db_url],
        &[("BERTH_AUTH__MODE", "token"), ("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD), env[0]],
    );
    use berth_meta::AccessStore as _;
    let stored = meta.setting("token_signing_key_pkcs8").await.unwrap().expect("key row");
    assert!(stored.starts_with("sealed:v1:"), "stored in clear: {}", &stored[..20.min(stored.len())]);
    // A token from node A works on node B.
    let c = client();
    let token: Value = c
        .get(format!("{}/auth?service=berth&scope=repository:x/y:pull", a.url()))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = c.get(format!("{}/v2/", b.url())).bearer_auth(token["token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Without the key (or with another one) a node does not start, and says why.
    for bad in [None, Some("22".repeat(32))] {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--database-url", &db_url, "--data-dir"])
            .arg(tempfile::tempdir().unwrap().path())
            .env("BERTH_AUTH__MODE", "token")
            .env_remove("BERTH_SECRETS__KEY");
        if let Some(bad) = &bad {
            cmd.env("BERTH_SECRETS__KEY", bad);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && text.contains("secrets.key"), "{text}");
    }
}

/// `berth user …` and `berth token …` on the server's own database, while it runs.
#[tokio::test]
async fn cli_manages_users_and_tokens() {
    use std::io::Write as _;
    let berth = BerthProcess::start_with_auth(BIN, ADMIN_PASSWORD, &[]);
    let c = client();
    let base = berth.url();
    let cli = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(BIN)
            .args(args)
            .arg("--data-dir")
            .arg(berth.data_dir())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = cli(&["user", "add", "alice", "--password-stdin"], Some("password-alice\n"));
    assert!(ok, "{out}{err}");
    let body = login(&c, &base, "alice", "password-alice").await;
    assert_eq!(body["must_change_password"], false);
    let (ok, _, err) = cli(&["user", "add", "alice", "--password-stdin"], Some("password-alice\n"));
    assert!(!ok && err.contains("exists"), "{err}");
    let (ok, _, err) = cli(&["user", "add", "bob", "--password-stdin"], Some("short\n"));
    assert!(!ok, "a too-short password is refused: {err}");

    let (ok, out, _) = cli(&["user", "passwd", "alice"], None);
    assert!(ok);
    let generated = out.lines().find_map(|l| l.strip_prefix("password: ")).expect("new password printed").to_owned();
    let body = login(&c, &base, "alice", &generated).await;
    assert_eq!(body["must_change_password"], true);

    let (ok, token, err) =
        cli(&["token", "create", "--user", "alice", "--name", "ci", "--permissions", "pull,push"], None);
    assert!(ok, "{err}");
    let token = token.trim().to_owned();
    let r = c.get(format!("{base}/v2/")).basic_auth("alice", Some(&token)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (ok, _, err) = cli(&["token", "create", "--user", "alice", "--name", "x", "--permissions", "admin"], None);
    assert!(!ok, "unknown permission refused: {err}");

    let (ok, _, err) = cli(&["user", "disable", "alice"], None);
    assert!(ok, "{err}");
    let r = c
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "alice", "password": generated}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "inactive_user");
    let (ok, _, err) = cli(&["user", "disable", "admin"], None);
    assert!(!ok && err.contains("admin"), "the last admin cannot be disabled: {err}");

    // Every CLI change is in the audit log as the actor `cli`.
    let jwt = admin_jwt(&c, &base).await;
    let logs: Value =
        c.get(format!("{base}/api/v1/audit?user=cli")).bearer_auth(&jwt).send().await.unwrap().json().await.unwrap();
    let actions: Vec<&str> = logs["logs"].as_array().unwrap().iter().map(|l| l["action"].as_str().unwrap()).collect();
    for action in ["user.create", "user.password", "token.create", "user.update"] {
        assert!(actions.contains(&action), "{actions:?}");
    }
}

/// Wrong Basic passwords on `/v2` count towards the account lockout like failed logins.
#[tokio::test]
async fn basic_auth_failures_lock_the_account_too() {
    let berth = BerthProcess::start_with_auth(BIN, ADMIN_PASSWORD, &[("BERTH_AUTH__ACCOUNT_LOCK_AFTER", "3")]);
    let c = client();
    let base = berth.url();
    let probe = |password: &'static str| c.get(format!("{base}/v2/")).basic_auth("admin", Some(password)).send();
    assert_eq!(probe(ADMIN_PASSWORD).await.unwrap().status(), StatusCode::OK);
    // A different wrong password each time (a verified one would come from the cache).
    for password in ["guess-1", "guess-2", "guess-3"] {
        assert_eq!(probe(password).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    // Locked: the right password no longer works on a fresh verification…
    let r = c.get(format!("{base}/v2/")).basic_auth("admin", Some("guess-4")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // … and the failures are visible to the login rules (same counters).
    let r = c
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
