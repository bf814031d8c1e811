//! Request metrics: one middleware feeds Prometheus (`GET /metrics`) and the
//! in-process figures of `GET /api/v1/metrics`.
//!
//! Labels stay bounded: `surface` is one of [`Surface`]; `endpoint` is a name,
//! never a raw path (for `/v2` the [`crate::v2::endpoint::OciEndpoint`]
//! operation such as `manifest_get`, elsewhere axum's route template such as
//! `/api/v1/users/{id}`, and `unmatched` when no route matched); `method` is one
//! of the standard methods or `other`; `status` is the numeric code.
//!
//! The request path stays cheap: every label is a `&'static str`, and labelled
//! handles are looked up in small read-mostly maps (no allocation once a label
//! combination has been seen). Bodies are wrapped, never buffered: bytes are
//! counted as frames pass. Durations are the time until the response head is
//! ready (a blob download's transfer time is not in them).

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Gauge, Histogram};

use crate::access_log::RequestInfo;

/// `berth_http_requests_total{surface,endpoint,method,status}`.
pub const REQUESTS_TOTAL: &str = "berth_http_requests_total";
/// `berth_http_request_duration_seconds{surface,endpoint}` (histogram).
pub const REQUEST_DURATION: &str = "berth_http_request_duration_seconds";
/// `berth_http_request_bytes_total{surface}`: request body bytes received.
pub const REQUEST_BYTES: &str = "berth_http_request_bytes_total";
/// `berth_http_response_bytes_total{surface}`: response body bytes sent.
pub const RESPONSE_BYTES: &str = "berth_http_response_bytes_total";
/// `berth_uploads_in_flight`: blob upload requests (`POST`/`PATCH`/`PUT` on
/// `/v2/<name>/blobs/uploads/…`) currently being received.
pub const UPLOADS_IN_FLIGHT: &str = "berth_uploads_in_flight";

/// Which API surface a path belongs to (API.md D1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Surface {
    Registry,
    Auth,
    Management,
    Security,
    GhostDock,
    Kubernetes,
    Metrics,
    Other,
}

impl Surface {
    const ALL: [Surface; 8] = [
        Surface::Registry,
        Surface::Auth,
        Surface::Management,
        Surface::Security,
        Surface::GhostDock,
        Surface::Kubernetes,
        Surface::Metrics,
        Surface::Other,
    ];

    /// The surface serving `path`.
    pub fn of(path: &str) -> Surface {
        if path == "/v2" || path.starts_with("/v2/") {
            return Surface::Registry;
        }
        if path == "/auth" {
            return Surface::Auth;
        }
        if path == "/metrics" {
            return Surface::Metrics;
        }
        if path.starts_with("/oapis/") {
            return Surface::Kubernetes;
        }
        if let Some(v1) = path.strip_prefix("/api/v1/") {
            let security = ["auth/", "system/", "audit/logs"].iter().any(|p| v1.starts_with(p));
            return if security { Surface::Security } else { Surface::GhostDock };
        }
        if path == "/health" || path.starts_with("/api/") {
            return Surface::Management;
        }
        Surface::Other
    }

    /// The `surface` label value.
    pub fn label(self) -> &'static str {
        match self {
            Surface::Registry => "registry",
            Surface::Auth => "auth",
            Surface::Management => "management",
            Surface::Security => "security",
            Surface::GhostDock => "ghostdock",
            Surface::Kubernetes => "k8s",
            Surface::Metrics => "metrics",
            Surface::Other => "other",
        }
    }
}

/// The `method` label value.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The `status` label value: the code as text, built once per process.
fn status_label(status: StatusCode) -> &'static str {
    static CODES: OnceLock<Vec<String>> = OnceLock::new();
    let codes = CODES.get_or_init(|| (100..600).map(|c: u16| c.to_string()).collect());
    codes.get(usize::from(status.as_u16()).wrapping_sub(100)).map(String::as_str).unwrap_or("other")
}

type RequestKey = (Surface, &'static str, &'static str, StatusCode);

/// Everything the metrics middleware records, shared by all requests.
pub struct HttpMetrics {
    started_at: SystemTime,
    requests: RwLock<HashMap<RequestKey, Counter>>,
    durations: RwLock<HashMap<(Surface, &'static str), Histogram>>,
    /// Route templates as `&'static str` (bounded by the number of routes).
    templates: RwLock<HashSet<&'static str>>,
    bytes_in: Vec<Counter>,
    bytes_out: Vec<Counter>,
    uploads_in_flight: Gauge,
    /// What `GET /api/v1/metrics` reports.
    pub summary: Summary,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetrics").field("summary", &self.summary).finish_non_exhaustive()
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpMetrics {
    /// Registers the unlabelled handles with the installed recorder (install it first).
    pub fn new() -> Self {
        let per_surface = |name: &'static str| -> Vec<Counter> {
            Surface::ALL.iter().map(|s| metrics::counter!(name, "surface" => s.label())).collect()
        };
        HttpMetrics {
            started_at: SystemTime::now(),
            requests: RwLock::default(),
            durations: RwLock::default(),
            templates: RwLock::default(),
            bytes_in: per_surface(REQUEST_BYTES),
            bytes_out: per_surface(RESPONSE_BYTES),
            uploads_in_flight: metrics::gauge!(UPLOADS_IN_FLIGHT),
            summary: Summary::default(),
        }
    }

    /// When this process started counting (the "since" of every figure).
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    fn request_counter(&self, key: RequestKey) -> Counter {
        if let Some(c) = self.requests.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return c.clone();
        }
        let (surface, endpoint, method, status) = key;
        let counter = metrics::counter!(REQUESTS_TOTAL,
            "surface" => surface.label(), "endpoint" => endpoint, "method" => method, "status" => status_label(status));
        self.requests.write().unwrap_or_else(|e| e.into_inner()).entry(key).or_insert(counter).clone()
    }

    fn duration_histogram(&self, surface: Surface, endpoint: &'static str) -> Histogram {
        let key = (surface, endpoint);
        if let Some(h) = self.durations.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return h.clone();
        }
        let histogram = metrics::histogram!(REQUEST_DURATION, "surface" => surface.label(), "endpoint" => endpoint);
        self.durations.write().unwrap_or_else(|e| e.into_inner()).entry(key).or_insert(histogram).clone()
    }

    /// A route template as a `&'static str`; each distinct template is leaked
    /// once, and there are only as many as the router has routes.
    fn intern(&self, template: &str) -> &'static str {
        if let Some(t) = self.templates.read().unwrap_or_else(|e| e.into_inner()).get(template) {
            return t;
        }
        let mut templates = self.templates.write().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = templates.get(template) {
            return t;
        }
        let leaked: &'static str = Box::leak(template.to_owned().into_boxed_str());
        templates.insert(leaked);
        leaked
    }
}

/// Response bodies up to this size are counted when the response is made
/// (they go out with its head); longer ones as they are sent.
const COUNT_AT_ONCE: u64 = 64 * 1024;

/// The outermost middleware: counts, times, measures and logs every request
/// (the access log is [`crate::access_log`]).
pub async fn observe(State(m): State<Arc<HttpMetrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let surface = Surface::of(request.uri().path());
    let method = request.method().clone();
    let uri = request.uri().clone();
    let template = match surface {
        Surface::Registry => None,
        _ => request.extensions().get::<MatchedPath>().map(|p| m.intern(p.as_str())),
    };
    let _upload =
        (surface == Surface::Registry && is_upload(&method, uri.path())).then(|| InFlight::enter(&m.uploads_in_flight));
    let request = if http_body::Body::is_end_stream(request.body()) {
        request
    } else {
        let counter = m.bytes_in[surface as usize].clone();
        request.map(|body| Body::new(Counted { inner: body, counter }))
    };

    let mut response = next.run(request).await;

    let elapsed = started.elapsed();
    let status = response.status();
    let info = response.extensions_mut().remove::<RequestInfo>().unwrap_or_default();
    crate::access_log::log(&method, uri.path(), &response, elapsed, &info);
    let endpoint = match surface {
        Surface::Registry => Some(info.operation).filter(|o| !o.is_empty()),
        _ => template,
    }
    .unwrap_or("unmatched");
    m.request_counter((surface, endpoint, method_label(&method), status)).increment(1);
    m.duration_histogram(surface, endpoint).record(elapsed.as_secs_f64());
    m.summary.record(surface, endpoint, status, elapsed);
    let counter = &m.bytes_out[surface as usize];
    // A small body of known length is counted now; anything else as its frames pass.
    match http_body::Body::size_hint(response.body()).exact().filter(|&len| len <= COUNT_AT_ONCE) {
        Some(len) => {
            counter.increment(len);
            response
        }
        None => {
            let counter = counter.clone();
            response.map(|body| Body::new(Counted { inner: body, counter }))
        }
    }
}

/// A blob upload request: `POST`, `PATCH` or `PUT` under `/blobs/uploads`.
fn is_upload(method: &Method, path: &str) -> bool {
    matches!(*method, Method::POST | Method::PATCH | Method::PUT) && path.contains("/blobs/uploads")
}

/// Holds one unit of a gauge while alive (also when the request is dropped midway).
struct InFlight(Gauge);

impl InFlight {
    fn enter(gauge: &Gauge) -> Self {
        gauge.increment(1.0);
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// A body that adds the length of every data frame to a counter as it passes.
struct Counted {
    inner: Body,
    counter: Counter,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.counter.increment(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

// ---- in-process summary (`GET /api/v1/metrics`) ----

/// Request totals and a latency histogram since the process started.
#[derive(Debug, Default)]
pub struct Summary {
    total: AtomicU64,
    success: AtomicU64,
    errors: AtomicU64,
    pulls: AtomicU64,
    pushes: AtomicU64,
    latency: LatencyHistogram,
}

/// A copy of the [`Summary`] counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummarySnapshot {
    pub total: u64,
    /// Answers below 400.
    pub success: u64,
    /// Answers of 400 and above (client and server errors).
    pub errors: u64,
    /// Successful manifest GETs on `/v2` (one per image pulled by a client).
    pub pulls: u64,
    /// Successful manifest PUTs on `/v2` (one per image or tag pushed).
    pub pushes: u64,
    pub avg_ms: u64,
    pub p95_ms: u64,
    pub p99_ms: u64,
}

impl Summary {
    fn record(&self, surface: Surface, endpoint: &str, status: StatusCode, elapsed: std::time::Duration) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let outcome = if status.as_u16() < 400 { &self.success } else { &self.errors };
        outcome.fetch_add(1, Ordering::Relaxed);
        if surface == Surface::Registry {
            match endpoint {
                "manifest_get" if status == StatusCode::OK => self.pulls.fetch_add(1, Ordering::Relaxed),
                "manifest_put" if status == StatusCode::CREATED => self.pushes.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
        }
        self.latency.record(elapsed.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    /// The figures now.
    pub fn snapshot(&self) -> SummarySnapshot {
        let ms = |us: u64| (us + 500) / 1000;
        SummarySnapshot {
            total: self.total.load(Ordering::Relaxed),
            success: self.success.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            pulls: self.pulls.load(Ordering::Relaxed),
            pushes: self.pushes.load(Ordering::Relaxed),
            avg_ms: ms(self.latency.mean()),
            p95_ms: ms(self.latency.quantile(0.95)),
            p99_ms: ms(self.latency.quantile(0.99)),
        }
    }
}

/// Sub-buckets per power of two: values land in buckets at most 1/16 (6.25 %) wide.
const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// Largest power of two kept apart (2^40 µs is about 12 days); longer lands in the last bucket.
const MAX_EXP: u32 = 40;
const BUCKETS: usize = SUB + (MAX_EXP as usize - SUB_BITS as usize + 1) * SUB;

/// A log-linear histogram of microseconds with atomic buckets: lock-free
/// recording, quantiles within one bucket's width (≤ 6.25 %).
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram").field("count", &self.count.load(Ordering::Relaxed)).finish()
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    fn index(us: u64) -> usize {
        if us < SUB as u64 {
            return us as usize;
        }
        let exp = (63 - us.leading_zeros()).min(MAX_EXP);
        if exp == MAX_EXP && us >= 2 << MAX_EXP {
            return BUCKETS - 1;
        }
        let mantissa = ((us >> (exp - SUB_BITS)) as usize) & (SUB - 1);
        SUB + (exp - SUB_BITS) as usize * SUB + mantissa
    }

    /// The largest value bucket `i` holds.
    fn upper_bound(i: usize) -> u64 {
        if i < SUB {
            return i as u64;
        }
        let exp = (i - SUB) / SUB + SUB_BITS as usize;
        let mantissa = ((i - SUB) % SUB + SUB) as u64;
        ((mantissa + 1) << (exp - SUB_BITS as usize)) - 1
    }

    /// Records one value in microseconds.
    pub fn record(&self, us: u64) {
        self.buckets[Self::index(us)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(us, Ordering::Relaxed);
    }

    /// The mean in microseconds (0 when empty).
    pub fn mean(&self) -> u64 {
        self.sum.load(Ordering::Relaxed).checked_div(self.count.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// The smallest bucket bound at or below which at least `q` of the values lie
    /// (0 when empty).
    pub fn quantile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::upper_bound(i);
            }
        }
        Self::upper_bound(BUCKETS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surfaces_follow_the_path_prefixes() {
        let cases = [
            ("/v2/", Surface::Registry),
            ("/v2/library/nginx/manifests/latest", Surface::Registry),
            ("/auth", Surface::Auth),
            ("/health", Surface::Management),
            ("/api/accel/upstreams", Surface::Management),
            ("/api/v1/auth/login", Surface::Security),
            ("/api/v1/system/lock/status", Surface::Security),
            ("/api/v1/audit/logs", Surface::Security),
            ("/api/v1/audit", Surface::GhostDock),
            ("/api/v1/users/3", Surface::GhostDock),
            ("/api/v1/health", Surface::GhostDock),
            ("/oapis/image.theriseunion.io/v1alpha1/namespaces/x/repositories", Surface::Kubernetes),
            ("/metrics", Surface::Metrics),
            ("/v2x", Surface::Other),
            ("/", Surface::Other),
        ];
        for (path, surface) in cases {
            assert_eq!(Surface::of(path), surface, "{path}");
        }
    }

    #[test]
    fn status_labels_are_the_codes() {
        assert_eq!(status_label(StatusCode::OK), "200");
        assert_eq!(status_label(StatusCode::from_u16(599).unwrap()), "599");
        assert_eq!(status_label(StatusCode::from_u16(999).unwrap()), "other");
    }

    #[test]
    fn buckets_are_ordered_and_contain_their_values() {
        for i in 1..BUCKETS {
            assert!(LatencyHistogram::upper_bound(i) > LatencyHistogram::upper_bound(i - 1), "bucket {i}");
        }
        for us in [0, 1, 15, 16, 17, 31, 32, 100, 999, 1_000, 123_456, 1 << 39, (2 << 39) - 1] {
            let i = LatencyHistogram::index(us);
            assert!(us <= LatencyHistogram::upper_bound(i), "{us} in bucket {i}");
            assert!(i == 0 || us > LatencyHistogram::upper_bound(i - 1), "{us} belongs to bucket {i}");
            let width =
                LatencyHistogram::upper_bound(i) - if i == 0 { 0 } else { LatencyHistogram::upper_bound(i - 1) };
            assert!(width as f64 <= (us as f64 / 16.0).max(1.0) * 2.0, "{us}: bucket {i} too wide ({width})");
        }
        assert_eq!(LatencyHistogram::index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_come_from_the_recorded_values() {
        let h = LatencyHistogram::default();
        assert_eq!((h.quantile(0.99), h.mean()), (0, 0));
        // 1..=1000 ms: p95 is 950 ms, p99 990 ms, the mean 500.5 ms.
        for ms in 1..=1000u64 {
            h.record(ms * 1000);
        }
        let within = |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 * 0.0625;
        assert!(within(h.quantile(0.95), 950_000), "p95 {}", h.quantile(0.95));
        assert!(within(h.quantile(0.99), 990_000), "p99 {}", h.quantile(0.99));
        assert!(h.quantile(0.95) >= 950_000 && h.quantile(0.99) >= 990_000, "never under the true value");
        assert_eq!(h.mean(), 500_500);
        assert!(within(h.quantile(1.0), 1_000_000));
    }

    #[test]
    fn summary_counts_outcomes_pulls_and_pushes() {
        let s = Summary::default();
        let ms = std::time::Duration::from_millis(2);
        s.record(Surface::Registry, "manifest_get", StatusCode::OK, ms);
        s.record(Surface::Registry, "manifest_get", StatusCode::NOT_FOUND, ms);
        s.record(Surface::Registry, "manifest_put", StatusCode::CREATED, ms);
        s.record(Surface::Registry, "blob_get", StatusCode::OK, ms);
        s.record(Surface::GhostDock, "manifest_get", StatusCode::OK, ms);
        let snap = s.snapshot();
        assert_eq!((snap.total, snap.success, snap.errors), (5, 4, 1));
        assert_eq!((snap.pulls, snap.pushes), (1, 1));
        assert_eq!((snap.avg_ms, snap.p95_ms, snap.p99_ms), (2, 2, 2));
    }

    #[tokio::test]
    async fn counted_bodies_pass_and_count_every_byte() {
        use http_body_util::BodyExt as _;
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let counter = metrics::with_local_recorder(&recorder, || metrics::counter!("test_bytes_total"));
        let body = Body::from_stream(futures_util::stream::iter(
            [Bytes::from_static(b"abc"), Bytes::from_static(b"defgh")].map(Ok::<_, std::io::Error>),
        ));
        let body = Body::new(Counted { inner: body, counter });
        assert_eq!(body.collect().await.unwrap().to_bytes(), Bytes::from_static(b"abcdefgh"));
        assert!(handle.render().contains("test_bytes_total 8"), "{}", handle.render());
    }

    /// The middleware's own cost per request: a trivial route served in process
    /// with and without it. Ignored (a measurement, not a check); run with
    /// `cargo test --release -p berth-http -- --ignored --nocapture middleware_cost`.
    #[tokio::test]
    #[ignore]
    async fn middleware_cost() {
        use tower::ServiceExt as _;
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let m = Arc::new(metrics::with_local_recorder(&recorder, HttpMetrics::new));
        let route = || axum::Router::new().route("/api/v1/users/{id}", axum::routing::get(|| async { "ok" }));
        let bare = route();
        let tracked = route().layer(axum::middleware::from_fn_with_state(m.clone(), observe));
        const N: u32 = 200_000;
        let mut per_request = Vec::new();
        for (name, app) in [("bare", bare.clone()), ("tracked", tracked.clone()), ("bare", bare), ("tracked", tracked)]
        {
            let started = Instant::now();
            for _ in 0..N {
                let request = Request::get("/api/v1/users/7").body(Body::empty()).unwrap();
                let response = app.clone().oneshot(request).await.unwrap();
                axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
            }
            let ns = started.elapsed().as_nanos() as f64 / f64::from(N);
            println!("{name}: {ns:.0} ns/request");
            per_request.push(ns);
        }
        println!("middleware cost: {:.0} ns/request", per_request[3] - per_request[2]);
        assert_eq!(m.summary.snapshot().total, u64::from(N) * 2);
    }
}
