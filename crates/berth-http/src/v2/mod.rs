//! The OCI Distribution (`/v2`) surface.

mod blobs;
pub mod endpoint;
mod listing;
mod manifests;
mod proxied;
mod uploads;

use std::io;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use berth_core::{Digest, RepoName};
use berth_registry::ByteStream;
use futures_util::TryStreamExt;

use crate::AppState;
use crate::access_log::RequestInfo;
use crate::error::ApiError;
use endpoint::OciEndpoint;

pub(crate) type ApiResult = Result<Response, ApiError>;

/// The header every `/v2` response carries.
const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

/// Everything a `/v2` handler needs from the request.
pub(crate) struct V2Request {
    pub method: Method,
    pub headers: HeaderMap,
    /// Decoded query pairs, in order (keys may repeat).
    pub query: Vec<(String, String)>,
    /// Who is asking, for the events the request causes (set once authorized).
    pub actor: berth_meta::EventActor,
}

impl V2Request {
    /// The first value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of query parameter `key`.
    pub fn params<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.query.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The request's Content-Length, if it sent one.
    pub fn content_length(&self) -> Option<u64> {
        self.header(header::CONTENT_LENGTH).and_then(|v| v.trim().parse().ok())
    }

    /// Whether the request carries a body (a non-zero length or chunked encoding).
    pub fn has_body(&self) -> bool {
        match self.content_length() {
            Some(len) => len > 0,
            None => self.headers.contains_key(header::TRANSFER_ENCODING),
        }
    }
}

/// A request body as a byte stream for the registry service.
pub(crate) fn body_stream(body: Body) -> ByteStream {
    Box::pin(body.into_data_stream().map_err(io::Error::other))
}

/// Entry point for every `/v2…` request.
pub async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let raw_path = parts.uri.path();
    let rest = raw_path.strip_prefix("/v2").unwrap_or(raw_path);
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let decoded = percent_encoding::percent_decode_str(rest).decode_utf8_lossy();
    let query =
        parts.uri.query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    // Only authentication and rate limits need the client's address as text.
    let ip = if state.access.enabled() { crate::auth::client_ip(&parts.extensions) } else { String::new() };
    let mut request =
        V2Request { method: parts.method, headers: parts.headers, query, actor: berth_meta::EventActor::default() };

    let mut info = RequestInfo::default();
    let mut rate = None;
    let result = match OciEndpoint::parse(&decoded) {
        Some(mut endpoint) => {
            info.endpoint = endpoint.name();
            info.operation = endpoint.operation(&request.method);
            // Rights are judged on the name asked for (a client's token is scoped to it;
            // mirror-mode names borrow their cache repository's pull right), then the
            // cache may rewrite the name to the repository it serves from.
            let (route, authorized) = match authorize(&state, &endpoint, &mut request, &ip).await {
                Ok(principal) => match proxied::route(&state, &mut endpoint, &request).await {
                    Ok(route) => (route, Ok(principal)),
                    Err(e) => (None, Err(e)),
                },
                Err(e) => (None, Err(e)),
            };
            rate = counted(&endpoint, &request.method)
                .then(|| {
                    let key = match &authorized {
                        Ok(p) if p.user.is_some() => format!("user:{}", p.user_id().unwrap_or_default()),
                        _ => format!("ip:{ip}"),
                    };
                    crate::ratelimit::check_registry(&state, &key)
                })
                .flatten();
            let authorized = match rate {
                Some(decision) if !decision.allowed => {
                    let mut e = ApiError::new(
                        axum::http::StatusCode::TOO_MANY_REQUESTS,
                        berth_core::ErrorCode::TooManyRequests,
                    );
                    e = e.header(header::RETRY_AFTER, decision.retry_after_secs.max(1).to_string());
                    Err(e)
                }
                _ => authorized,
            };
            match authorized {
                Ok(principal) => {
                    request.actor = event_actor(&state, &principal, &ip, &request, &parts.extensions);
                    // Changes are audited once they succeed (auth off: nobody to account for).
                    let audit = audit_event(&endpoint, &request.method, state.access.config().audit_pulls)
                        .filter(|_| state.access.enabled())
                        .map(|event| (event, crate::auth::actor(&principal, &ip, &request.headers)));
                    let writes = matches!(request.method, Method::PUT | Method::POST | Method::PATCH);
                    let result = dispatch(&state, endpoint, request, body, &mut info, &principal, route).await;
                    if let Some(repo) =
                        info.repo.as_deref().filter(|_| writes && result.is_ok() && state.proxy.is_active())
                    {
                        state.proxy.forget_local(repo);
                    }
                    if let Some(((event, action), actor)) = audit.filter(|_| result.is_ok()) {
                        let resource =
                            format!("{}@{}", info.repo.as_deref().unwrap_or(""), info.digest.as_deref().unwrap_or(""));
                        state.access.audit(actor.draft(event, action, &resource)).await;
                    }
                    result
                }
                Err(e) => Err(e),
            }
        }
        None => {
            info.operation = "unmatched";
            Err(ApiError::not_found_endpoint())
        }
    };
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    response.headers_mut().insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    if let Some(decision) = &rate {
        crate::ratelimit::add_headers(response.headers_mut(), decision);
    }
    response.extensions_mut().insert(info);
    response
}

/// The actor of the events a request causes. Reads cause none unless pull
/// events are wanted, so they skip building it (two strings per request);
/// writes always record the client's address, even with authentication off.
fn event_actor(
    state: &AppState,
    principal: &berth_registry::access::Principal,
    ip: &str,
    request: &V2Request,
    extensions: &axum::http::Extensions,
) -> berth_meta::EventActor {
    let read = matches!(request.method, Method::GET | Method::HEAD);
    if read && !state.registry.pull_events_wanted() {
        return berth_meta::EventActor::default();
    }
    let ip = match ip {
        "" if !read => crate::auth::client_ip(extensions),
        known => known.to_owned(),
    };
    berth_meta::EventActor::new(principal.username(), ip)
}

/// What the endpoint needs, checked against the caller's rights; a push to a
/// new project creates the project (owned by the pusher) first.
async fn authorize(
    state: &AppState,
    endpoint: &OciEndpoint,
    req: &mut V2Request,
    ip: &str,
) -> Result<berth_registry::access::Principal, ApiError> {
    use crate::auth::Need;
    use OciEndpoint as E;
    if !state.access.enabled() {
        // auth.mode = none: nothing to check, and nothing to spend per request.
        return Ok(berth_registry::access::Principal::anonymous());
    }
    let m = &req.method;
    let (need, repo) = match endpoint {
        E::Ping => (Need::Nothing, None),
        E::Base => (Need::Authenticated, None),
        E::Catalog => (Need::Catalog, None),
        E::TagsList { name } | E::Referrers { name, .. } => (Need::Pull, Some(name.as_str())),
        E::Manifest { name, .. } | E::Blob { name, .. } => {
            let need = match *m {
                Method::GET | Method::HEAD => Need::Pull,
                Method::DELETE => Need::Delete,
                _ => Need::Push,
            };
            (need, Some(name.as_str()))
        }
        E::UploadStart { name } | E::Upload { name, .. } => (Need::Push, Some(name.as_str())),
    };
    // A malformed name is refused before anything else, so path tricks
    // (`pub/../team/app`) can never be judged against the wrong project.
    if let Some(repo) = repo.filter(|_| state.access.enabled()) {
        repo.parse::<RepoName>().map_err(ApiError::name_invalid)?;
    }
    let base = crate::auth::external_base(state.external_url.as_deref(), state.tls, &req.headers);
    let principal = crate::auth::authorize_v2(&state.access, &base, &req.headers, ip, need, repo).await?;
    if !state.access.enabled() {
        return Ok(principal);
    }
    // While the system is locked the registry is read-only (or closed, if configured).
    let writes = matches!(need, Need::Push | Need::Delete);
    if (writes || (need != Need::Nothing && state.access.config().lock_blocks_pulls))
        && state.access.is_locked().await.map_err(ApiError::unavailable)?
    {
        return Err(ApiError::new(axum::http::StatusCode::FORBIDDEN, berth_core::ErrorCode::Denied)
            .message("the system is locked")
            .detail(serde_json::json!({ "reason": "system_locked" })));
    }
    if let (Need::Push, Some(repo)) = (need, repo) {
        let actor = crate::auth::actor(&principal, ip, &req.headers);
        state.access.ensure_project(repo, &actor).await.map_err(ApiError::unavailable)?;
    }
    // A cross-repository mount may only read from a repository the caller can pull;
    // otherwise it falls back to a plain upload session, as the spec allows.
    if let E::UploadStart { .. } = endpoint {
        match (req.param("mount").map(str::to_owned), req.param("from").map(str::to_owned)) {
            (Some(_), Some(from)) => {
                let source_viewer = mount_source_viewer(&principal);
                let readable = state.access.repo_perms(&source_viewer, &from).await.map(|p| p.pull).unwrap_or(false);
                if !readable {
                    req.query.retain(|(k, _)| k != "mount" && k != "from");
                }
            }
            (Some(mount), None) => {
                // Automatic mount: only from a repository the caller could pull the blob from.
                if let Some(from) = readable_source(state, &principal, &mount).await {
                    req.query.push(("from".into(), from));
                }
            }
            _ => {}
        }
    }
    Ok(principal)
}

/// Whose rights decide which repositories a mount may read from. A scoped
/// registry token is judged by its user's own rights: clients scope their token
/// for the target repository (the challenge names only that one), and the blob
/// only becomes visible in a repository the token may already push to.
fn mount_source_viewer(principal: &berth_registry::access::Principal) -> berth_registry::access::Principal {
    use berth_registry::access::{Principal, Restriction};
    match &principal.restriction {
        Restriction::Scoped(_) if principal.user.is_some() => {
            Principal { restriction: Restriction::Full, ..principal.clone() }
        }
        _ => principal.clone(),
    }
}

/// A repository holding `digest` that the caller may pull, for an automatic mount.
async fn readable_source(
    state: &AppState,
    principal: &berth_registry::access::Principal,
    digest: &str,
) -> Option<String> {
    let principal = &mount_source_viewer(principal);
    let digest: Digest = digest.parse().ok()?;
    let candidates = state.access.meta().repos_with_blob(&digest, 20).await.ok()?;
    for repo in candidates {
        if state.access.repo_perms(principal, &repo).await.is_ok_and(|p| p.pull) {
            return Some(repo);
        }
    }
    None
}

/// Whether a request counts against the rate limit (API.md C13): manifests,
/// the catalog, tag lists and upload starts; never blob transfers.
fn counted(endpoint: &OciEndpoint, method: &Method) -> bool {
    match endpoint {
        OciEndpoint::Manifest { .. } | OciEndpoint::Catalog | OciEndpoint::TagsList { .. } => true,
        OciEndpoint::UploadStart { .. } => *method == Method::POST,
        _ => false,
    }
}

/// The audit event of a successful `/v2` change, if it is one.
fn audit_event(endpoint: &OciEndpoint, method: &Method, pulls: bool) -> Option<(&'static str, &'static str)> {
    match (endpoint, method) {
        (OciEndpoint::Manifest { .. }, &Method::GET) if pulls => Some(("image_pulled", "repository.pull")),
        (OciEndpoint::Manifest { .. }, &Method::PUT) => Some(("image_pushed", "repository.push")),
        (OciEndpoint::Manifest { .. }, &Method::DELETE) => Some(("manifest_deleted", "repository.delete")),
        (OciEndpoint::Blob { .. }, &Method::DELETE) => Some(("blob_deleted", "repository.delete")),
        _ => None,
    }
}

async fn dispatch(
    state: &AppState,
    endpoint: OciEndpoint,
    req: V2Request,
    body: Body,
    info: &mut RequestInfo,
    principal: &berth_registry::access::Principal,
    route: Option<berth_proxy::Route>,
) -> ApiResult {
    use OciEndpoint as E;
    let m = req.method.clone();
    if let Some(route) = route {
        return dispatch_proxied(state, endpoint, &req, info, &route).await;
    }
    match endpoint {
        E::Base => {
            only(&m, &[Method::GET, Method::HEAD], "GET, HEAD")?;
            Ok(listing::base(state))
        }
        E::Ping => {
            only(&m, &[Method::GET, Method::HEAD], "GET, HEAD")?;
            Ok(listing::ping())
        }
        E::Catalog => {
            only(&m, &[Method::GET], "GET")?;
            listing::catalog(state, &req, principal).await
        }
        E::TagsList { name } => {
            only(&m, &[Method::GET], "GET")?;
            let repo = repo_name(&name, info)?;
            listing::tags(state, &repo, &req).await
        }
        E::Referrers { name, digest } => {
            only(&m, &[Method::GET], "GET")?;
            let repo = repo_name(&name, info)?;
            let digest = digest_param(&digest, info)?;
            listing::referrers(state, &repo, &digest, &req).await
        }
        E::Manifest { name, reference } => {
            let repo = repo_name(&name, info)?;
            info.digest = Some(reference.clone());
            match m {
                Method::GET | Method::HEAD => manifests::get(state, &repo, &reference, &req).await,
                Method::PUT => manifests::put(state, &repo, &reference, &req, body).await,
                Method::DELETE => manifests::delete(state, &repo, &reference, &req).await,
                _ => Err(ApiError::method_not_allowed("GET, HEAD, PUT, DELETE")),
            }
        }
        E::Blob { name, digest } => {
            only(&m, &[Method::GET, Method::HEAD, Method::DELETE], "GET, HEAD, DELETE")?;
            let repo = repo_name(&name, info)?;
            let digest = digest_param(&digest, info)?;
            blobs::handle(state, &repo, &digest, &req).await
        }
        E::UploadStart { name } => {
            only(&m, &[Method::POST], "POST")?;
            let repo = repo_name(&name, info)?;
            uploads::start(state, &repo, &req, body, info).await
        }
        E::Upload { name, id } => {
            let repo = repo_name(&name, info)?;
            match m {
                Method::GET => uploads::status(state, &repo, &id).await,
                Method::PATCH => uploads::patch(state, &repo, &id, &req, body).await,
                Method::PUT => uploads::finish(state, &repo, &id, &req, body, info).await,
                Method::DELETE => uploads::cancel(state, &repo, &id).await,
                _ => Err(ApiError::method_not_allowed("GET, PATCH, PUT, DELETE")),
            }
        }
    }
}

/// A read served through the pull-through cache (the endpoint names the cache repository).
async fn dispatch_proxied(
    state: &AppState,
    endpoint: OciEndpoint,
    req: &V2Request,
    info: &mut RequestInfo,
    route: &berth_proxy::Route,
) -> ApiResult {
    use OciEndpoint as E;
    let mut response = match endpoint {
        E::Manifest { name, reference } => {
            repo_name(&name, info)?;
            info.digest = Some(reference.clone());
            proxied::manifest(state, route, &reference, req).await?
        }
        E::Blob { name, digest } => {
            repo_name(&name, info)?;
            let digest = digest_param(&digest, info)?;
            proxied::blob(state, route, &digest, req).await?
        }
        E::TagsList { name } => {
            let repo = repo_name(&name, info)?;
            listing::proxied_tags(state, &repo, route, req).await?
        }
        E::Referrers { name, digest } => {
            let repo = repo_name(&name, info)?;
            let digest = digest_param(&digest, info)?;
            // The upstream's referrers are fetched into the cache, then listed locally.
            state.proxy.sync_referrers(route, &digest).await;
            listing::referrers(state, &repo, &digest, req).await?
        }
        _ => return Err(ApiError::not_found_endpoint()),
    };
    if let Some(ns) = req.param("ns").and_then(|ns| HeaderValue::from_str(ns).ok()) {
        response.headers_mut().insert("oci-namespace", ns);
    }
    Ok(response)
}

fn only(method: &Method, allowed: &[Method], allow_header: &'static str) -> Result<(), ApiError> {
    if allowed.contains(method) { Ok(()) } else { Err(ApiError::method_not_allowed(allow_header)) }
}

fn repo_name(name: &str, info: &mut RequestInfo) -> Result<RepoName, ApiError> {
    info.repo = Some(name.to_owned());
    name.parse().map_err(ApiError::name_invalid)
}

fn digest_param(digest: &str, info: &mut RequestInfo) -> Result<Digest, ApiError> {
    info.digest = Some(digest.to_owned());
    digest.parse().map_err(ApiError::digest_invalid)
}

/// `Range` value of an upload that has received `received` bytes.
pub(crate) fn upload_range(received: u64) -> String {
    format!("0-{}", received.saturating_sub(1))
}

/// Adds `X-Berth-Quota-Warning` to a push's answer while the project is over its
/// soft storage limit. A failure to tell only loses the warning, never the push.
async fn with_quota_warning(state: &AppState, repo: &RepoName, mut response: Response) -> Response {
    match state.registry.quota_warning(repo).await {
        Ok(Some(warning)) => {
            if let Ok(value) = axum::http::HeaderValue::from_str(&warning) {
                response.headers_mut().insert("x-berth-quota-warning", value);
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot check the project's soft quota"),
    }
    response
}
