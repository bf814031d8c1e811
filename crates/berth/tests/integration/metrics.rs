//! Monitoring: `/metrics` parsed as Prometheus would, `/api/v1/health` (and
//! `/health`) against a real storage outage, `/api/v1/metrics`, and the
//! Grafana dashboard's queries against what berth exports.

use crate::common::login;
use std::collections::BTreeSet;

use berth_testkit::{Blob, ImageFixture};
use prometheus_parse::{HistogramCount, Scrape, Value as Sample};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::common::{client, push_blob, push_image, start};

const ADMIN_PASSWORD: &str = "admin-password-for-metrics";
const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/grafana/berth-dashboard.json");

async fn scrape(c: &Client, base: &str) -> Scrape {
    let r = c.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = r.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid Prometheus text format")
}

fn matches(labels: &prometheus_parse::Labels, want: &[(&str, &str)]) -> bool {
    want.iter().all(|(k, v)| labels.get(k) == Some(*v))
}

/// The sum of every scalar sample of `name` whose labels include `want`.
fn value(s: &Scrape, name: &str, want: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && matches(&x.labels, want))
        .map(|x| match x.value {
            Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v) => v,
            _ => panic!("{name} is not a scalar"),
        })
        .sum()
}

/// The buckets of the one histogram series of `name` with exactly these labels.
fn buckets(s: &Scrape, name: &str, want: &[(&str, &str)]) -> Vec<HistogramCount> {
    let series: Vec<_> = s.samples.iter().filter(|x| x.metric == name && matches(&x.labels, want)).collect();
    assert_eq!(series.len(), 1, "one {name} series for {want:?}");
    match &series[0].value {
        Sample::Histogram(b) => b.clone(),
        other => panic!("{name} is not a histogram: {other:?}"),
    }
}

/// Checks that buckets are cumulative and returns the `+Inf` count.
fn cumulative_total(b: &[HistogramCount]) -> f64 {
    let mut b = b.to_vec();
    b.sort_by(|x, y| x.less_than.total_cmp(&y.less_than));
    assert!(b.len() > 5, "real buckets, not a summary: {b:?}");
    assert!(b.windows(2).all(|w| w[0].count <= w[1].count), "cumulative: {b:?}");
    let last = b.last().unwrap();
    assert!(last.less_than.is_infinite(), "ends with +Inf: {b:?}");
    last.count
}

fn requests(s: &Scrape, endpoint: &str, method: &str, status: &str) -> f64 {
    value(
        s,
        "berth_http_requests_total",
        &[("surface", "registry"), ("endpoint", endpoint), ("method", method), ("status", status)],
    )
}

#[tokio::test]
async fn counters_bytes_and_histograms_follow_traffic() {
    let berth = start();
    let (c, base) = (client(), berth.url());
    let before = scrape(&c, &base).await;
    let blob = Blob::random(300 * 1024, 7);

    // A chunked push: POST, PATCH, PUT.
    let r = c.post(format!("{base}/v2/meter/app/blobs/uploads/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let r = c.patch(format!("{base}{location}")).body(blob.data.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = c.put(format!("{base}{location}{sep}digest={}", blob.digest)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // A pull, a 404 and paths no route knows.
    let r = c.get(format!("{base}/v2/meter/app/blobs/{}", blob.digest)).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), blob.data.len());
    let r = c.get(format!("{base}/v2/meter/app/manifests/missing")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(c.get(format!("{base}/v2/meter/app/nothing/here")).send().await.unwrap().status(), 404);
    assert_eq!(c.get(format!("{base}/no/such/route")).send().await.unwrap().status(), 404);
    assert_eq!(c.get(format!("{base}/api/v1/health")).send().await.unwrap().status(), 200);

    let after = scrape(&c, &base).await;
    let delta = |f: &dyn Fn(&Scrape) -> f64| f(&after) - f(&before);
    assert_eq!(delta(&|s| requests(s, "upload_start", "POST", "202")), 1.0);
    assert_eq!(delta(&|s| requests(s, "upload_patch", "PATCH", "202")), 1.0);
    assert_eq!(delta(&|s| requests(s, "upload_put", "PUT", "201")), 1.0);
    assert_eq!(delta(&|s| requests(s, "blob_get", "GET", "200")), 1.0);
    assert_eq!(delta(&|s| requests(s, "manifest_get", "GET", "404")), 1.0);
    assert_eq!(delta(&|s| requests(s, "unmatched", "GET", "404")), 1.0);
    let other = [("surface", "other"), ("endpoint", "unmatched"), ("status", "404")];
    assert_eq!(delta(&|s| value(s, "berth_http_requests_total", &other)), 1.0);
    let health = [("surface", "ghostdock"), ("endpoint", "/api/v1/health"), ("method", "GET"), ("status", "200")];
    assert_eq!(delta(&|s| value(s, "berth_http_requests_total", &health)), 1.0);
    // No raw path ever becomes a label.
    for sample in after.samples.iter().filter(|x| x.metric == "berth_http_requests_total") {
        let endpoint = sample.labels.get("endpoint").unwrap();
        assert!(!endpoint.contains("meter/app") && !endpoint.contains("no/such"), "raw path label {endpoint}");
    }

    let size = blob.data.len() as f64;
    let bytes_in = delta(&|s| value(s, "berth_http_request_bytes_total", &[("surface", "registry")]));
    let bytes_out = delta(&|s| value(s, "berth_http_response_bytes_total", &[("surface", "registry")]));
    assert!(bytes_in >= size, "bytes in {bytes_in} < {size}");
    assert!(bytes_out >= size, "bytes out {bytes_out} < {size}");

    // Histograms: real buckets, cumulative, `+Inf` = `_count` = the requests counted.
    for (endpoint, method) in [("blob_get", "GET"), ("upload_patch", "PATCH"), ("manifest_get", "GET")] {
        let labels = [("surface", "registry"), ("endpoint", endpoint)];
        let total = cumulative_total(&buckets(&after, "berth_http_request_duration_seconds", &labels));
        let count = value(&after, "berth_http_request_duration_seconds_count", &labels);
        let counted = value(&after, "berth_http_requests_total", &[labels[0], labels[1], ("method", method)]);
        assert_eq!((total, count), (counted, counted), "{endpoint}");
    }
    let commits = [("op", "upload_commit")];
    assert!(cumulative_total(&buckets(&after, "berth_storage_operation_duration_seconds", &commits)) >= 1.0);
    let links = [("op", "finish_upload")];
    assert!(cumulative_total(&buckets(&after, "berth_db_operation_duration_seconds", &links)) >= 1.0);
    assert_eq!(value(&after, "berth_uploads_in_flight", &[]), 0.0);
    assert_eq!(value(&after, "berth_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
}

#[tokio::test]
async fn uploads_in_flight_counts_open_upload_requests() {
    let berth = start();
    let (c, base) = (client(), berth.url());
    let r = c.post(format!("{base}/v2/meter/slow/blobs/uploads/")).send().await.unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    // A PATCH whose body arrives in two parts, with a scrape in between.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    let patch = tokio::spawn(c.patch(format!("{base}{location}")).body(body).send());
    tx.send(Ok(vec![1; 4096])).await.unwrap();
    let mut seen = 0.0;
    for _ in 0..50 {
        seen = value(&scrape(&c, &base).await, "berth_uploads_in_flight", &[]);
        if seen == 1.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen, 1.0, "the open PATCH is in flight");
    tx.send(Ok(vec![2; 4096])).await.unwrap();
    drop(tx);
    assert_eq!(patch.await.unwrap().unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(value(&scrape(&c, &base).await, "berth_uploads_in_flight", &[]), 0.0);
}

#[tokio::test]
async fn health_checks_storage_for_real() {
    let berth = start();
    let (c, base) = (client(), berth.url());
    let image = ImageFixture::new(31, &[2048, 1000]);
    push_image(&c, &base, "team/web", &image, "v1").await;
    let r = c
        .put(format!("{base}/v2/team/web/manifests/latest"))
        .header("content-type", berth_core::media_type::OCI_MANIFEST);
    assert_eq!(r.body(image.manifest.clone()).send().await.unwrap().status(), StatusCode::CREATED);

    let r = c.get(format!("{base}/api/v1/health")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["services"], json!({"database": "healthy", "storage": "healthy", "auth": "healthy"}));
    assert_eq!((body["metrics"]["repositories"].as_i64(), body["metrics"]["images"].as_i64()), (Some(1), Some(2)));
    assert!(body["metrics"]["users"].is_i64());
    let stored: usize = image.blobs().map(|b| b.data.len()).sum();
    assert_eq!(stored, 2048 + 1000 + image.config.data.len());
    let kib = format!("{:.1}", stored as f64 / 1024.0);
    assert_eq!(body["metrics"]["storage_used"], format!("{}KB", kib.strip_suffix(".0").unwrap_or(&kib)));
    let r = c.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // The blob tree disappears (a lost mount): storage is down, the database is not.
    let blobs = berth.data_dir().join("blobs");
    let moved = berth.data_dir().join("blobs.unmounted");
    std::fs::rename(&blobs, &moved).unwrap();
    let r = c.get(format!("{base}/api/v1/health")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["services"], json!({"database": "healthy", "storage": "unhealthy", "auth": "healthy"}));
    assert_eq!(body["metrics"]["images"], 2, "counts still come from the database");
    let r = c.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert_eq!((body["success"].as_bool(), body["error"]["code"].as_str()), (Some(false), Some("INTERNAL_ERROR")));

    std::fs::rename(&moved, &blobs).unwrap();
    assert_eq!(c.get(format!("{base}/api/v1/health")).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(c.get(format!("{base}/health")).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn api_v1_metrics_reports_what_was_done() {
    let berth = start();
    let (c, base) = (client(), berth.url());
    let image = ImageFixture::new(41, &[5000, 7000]);
    push_image(&c, &base, "shop/cart", &image, "v1").await;
    push_blob(&c, &base, "shop/other", &image.layers[0]).await; // the same blob in a second repository
    for _ in 0..3 {
        let r = c.get(format!("{base}/v2/shop/cart/manifests/v1")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = c.get(format!("{base}/v2/shop/cart/manifests/v2")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c.head(format!("{base}/v2/shop/cart/manifests/v1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Requests so far: 3 blob POSTs + 1 manifest PUT, 1 blob POST, 3 GETs, 1 404, 1 HEAD.
    let made = 3 + 1 + 1 + 3 + 1 + 1;

    let r = c.get(format!("{base}/api/v1/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["requests"], json!({"total": made, "success": made - 1, "errors": 1}));
    assert_eq!(m["registry"], json!({"pulls": 3, "pushes": 1, "repositories": 2, "images": 1}));
    let size: usize = image.blobs().map(|b| b.data.len()).sum();
    assert_eq!(m["storage"], json!({"total_size": size, "blob_count": 3, "manifest_count": 1}));
    let p = &m["performance"];
    let (avg, p95, p99) =
        (p["avg_response_time"].as_u64(), p["p95_response_time"].as_u64(), p["p99_response_time"].as_u64());
    let (avg, p95, p99) = (avg.expect("integer ms"), p95.expect("integer ms"), p99.expect("integer ms"));
    assert!(p95 <= p99 && avg <= p99 + 1, "avg {avg}, p95 {p95}, p99 {p99}");
    let at =
        time::OffsetDateTime::parse(m["timestamp"].as_str().unwrap(), &time::format_description::well_known::Rfc3339);
    assert!(at.is_ok(), "timestamp is RFC 3339: {m}");
}

#[tokio::test]
async fn api_v1_metrics_is_for_admins() {
    let berth = berth_testkit::BerthProcess::start_with_auth(env!("CARGO_BIN_EXE_berth"), ADMIN_PASSWORD, &[]);
    let (c, base) = (client(), berth.url());
    let url = format!("{base}/api/v1/metrics");
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "UNAUTHORIZED");
    let admin = login(&c, &base, "admin", ADMIN_PASSWORD).await;
    let r = c
        .post(format!("{base}/api/v1/users"))
        .bearer_auth(&admin)
        .json(&json!({"username": "viewer", "password": "viewer-password-1", "email": "v@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let user = login(&c, &base, "viewer", "viewer-password-1").await;
    let r = c.get(&url).bearer_auth(&user).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "FORBIDDEN");
    let r = c.get(&url).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert!(body["requests"]["errors"].as_u64().unwrap() >= 2, "the 401 and the 403: {body}");
    // Health needs no credentials, and counts the users.
    let body: Value = c.get(format!("{base}/api/v1/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!((body["status"].as_str(), body["metrics"]["users"].as_i64()), (Some("healthy"), Some(2)));
}

/// Every metric name a PromQL expression mentions (`berth_…` and `process_…`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let word_start = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if word_start && (expr[i..].starts_with("berth_") || expr[i..].starts_with("process_")) {
            let end =
                expr[i..].find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_')).map_or(expr.len(), |n| i + n);
            names.insert(expr[i..end].to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

#[tokio::test]
async fn grafana_dashboard_queries_what_berth_exports() {
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).expect("valid JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let exprs: Vec<(String, String)> = panels
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_owned();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap_or_default().to_owned()))
        })
        .collect();
    let used: BTreeSet<String> = exprs.iter().flat_map(|(_, e)| metric_names(e)).collect();
    let query = |needle: &str| exprs.iter().any(|(_, e)| e.contains(needle));
    for needle in [
        "berth_http_requests_total",
        "histogram_quantile(0.5",
        "histogram_quantile(0.95",
        "histogram_quantile(0.99",
        "berth_http_request_duration_seconds_bucket",
        "berth_http_request_bytes_total",
        "berth_http_response_bytes_total",
        "berth_uploads_in_flight",
        "berth_storage_operation_duration_seconds_bucket",
        "berth_db_operation_duration_seconds_bucket",
        "berth_proxy_hits_total",
        "berth_proxy_misses_total",
        "berth_webhook_deliveries_total",
        "status=~\"5..\"",
    ] {
        assert!(query(needle), "no panel queries {needle}");
    }

    // Every berth-emitted name the dashboard uses exists in a live scrape after some traffic
    // (the proxy's and the webhooks' counters appear once those features run).
    let berth = start();
    let (c, base) = (client(), berth.url());
    push_image(&c, &base, "dash/app", &ImageFixture::new(5, &[100]), "v1").await;
    c.get(format!("{base}/v2/dash/app/manifests/v1")).send().await.unwrap();
    let exported: BTreeSet<String> = scrape(&c, &base).await.samples.iter().map(|s| s.metric.clone()).collect();
    let elsewhere = ["berth_proxy_hits_total", "berth_proxy_misses_total", "berth_webhook_deliveries_total"];
    for name in used.iter().filter(|n| !elsewhere.contains(&n.as_str())) {
        let base_name = ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        assert!(
            exported.contains(name) || exported.contains(base_name),
            "the dashboard queries {name}, which berth does not export"
        );
    }
}

#[tokio::test]
async fn health_probes_are_never_rate_limited() {
    let env = [("BERTH_RATE_LIMIT__ENABLED", "true"), ("BERTH_RATE_LIMIT__API_PER_MINUTE", "2")];
    let berth = berth_testkit::BerthProcess::start_with_auth(env!("CARGO_BIN_EXE_berth"), ADMIN_PASSWORD, &env);
    let (c, base) = (client(), berth.url());
    for probe in 0..5 {
        let r = c.get(format!("{base}/api/v1/health")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "probe {probe}");
    }
    // Other API paths keep their limit.
    let statuses: Vec<u16> =
        futures_util::future::join_all((0..3).map(|_| c.get(format!("{base}/api/v1/metrics")).send()))
            .await
            .into_iter()
            .map(|r| r.unwrap().status().as_u16())
            .collect();
    assert!(statuses.contains(&429), "the per-minute budget of 2 applies to /api/v1/metrics: {statuses:?}");
}
