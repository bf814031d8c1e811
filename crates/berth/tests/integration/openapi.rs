//! `/api/openapi.json` documents exactly the management routes berth serves.
//!
//! The router and the document are built by the same calls (`routes.rs`), so a
//! route cannot be registered undocumented; this test proves the rest: every
//! documented operation is served (never the router's empty 404 or a 405),
//! every other method on a documented path is refused with 405, and the only
//! routes registered outside that list are the registry protocol and `/auth`.

use reqwest::Method;
use serde_json::Value;

use crate::common::client;
use berth_testkit::BerthProcess;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_berth")
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// A concrete URL for a documented path (`{id}` → `1`, `{path}` → `a/b/manifests/latest`, …).
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{id}" | "{delivery}" => "1".to_owned(),
            "{path}" => "library/app/manifests/latest".to_owned(),
            "{repository}" => "library/app".to_owned(),
            "{digest}" => format!("sha256:{}", "a".repeat(64)),
            s if s.starts_with('{') => "example".to_owned(),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_documented_operation_is_served_and_nothing_else() {
    // Authentication on and no credentials: every handler answers without changing anything.
    let berth = BerthProcess::start_with_auth(bin(), "openapi-Admin-1", &[]);
    let c = client();
    let base = berth.url();
    let r = c.get(format!("{base}/api/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 40, "only {} paths documented", paths.len());

    let mut operation_ids = std::collections::HashSet::new();
    let mut checked = 0;
    for (path, item) in paths {
        assert!(path.starts_with("/api/") || path == "/health" || path == "/metrics", "{path}");
        let url = format!("{base}{}", concrete(path));
        for method in METHODS {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = c.request(m.clone(), &url).send().await.unwrap();
            let status = response.status();
            let body = response.bytes().await.unwrap();
            match item.get(method) {
                Some(operation) => {
                    let id = operation["operationId"].as_str().expect("operationId");
                    assert!(operation_ids.insert(id.to_owned()), "operationId {id} used twice");
                    assert!(operation["responses"].as_object().is_some_and(|r| !r.is_empty()), "{id}: no responses");
                    assert_ne!(status, 405, "{method} {path} is documented but not served");
                    assert!(
                        !(status == 404 && body.is_empty()),
                        "{method} {path} is documented but the router has no such route"
                    );
                    checked += 1;
                }
                None => assert_eq!(status, 405, "{method} {path} is served but not documented"),
            }
        }
    }
    assert!(checked >= 65, "only {checked} operations checked");

    // A path nobody registered gets the router's empty 404.
    let r = c.get(format!("{base}/api/v1/no-such-thing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.bytes().await.unwrap().is_empty());
}

/// Routes registered outside the documented list are the registry protocol only.
#[test]
fn only_protocol_routes_are_registered_outside_the_documented_list() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../berth-http/src");
    let mut outside = Vec::new();
    for entry in walk(&src) {
        if entry.ends_with("routes.rs") || entry.ends_with("openapi.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&entry).unwrap();
        // Unit tests build routers of their own.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (i, line) in code.lines().enumerate() {
            if let Some(at) = line.find(".route(\"") {
                let path = line[at + 8..].split('"').next().unwrap().to_owned();
                outside.push((path, format!("{}:{}", entry.display(), i + 1)));
            }
        }
    }
    let mut paths: Vec<&str> = outside.iter().map(|(p, _)| p.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["/auth", "/v2", "/v2/", "/v2/{*path}"], "undocumented routes: {outside:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}
