//! Sending one request to the upstream: a concurrency slot, a deadline for
//! the response headers, authentication, and retries.
//!
//! [`Transport::execute`] returns whatever status the last attempt got;
//! turning statuses into results is the caller's business.

use std::sync::Arc;
use std::time::Duration;

use http::header::{ACCEPT, AUTHORIZATION};
use http::{HeaderValue, Method};
use reqwest::{Response, Url};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::debug;

use crate::auth::Auth;
use crate::config::UpstreamConfig;
use crate::error::UpstreamError;
use crate::retry;

/// How long an idle pooled connection is kept for reuse.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// One request as an operation describes it.
pub(crate) struct Request {
    pub method: Method,
    pub url: Url,
    pub accept: Option<&'static str>,
    /// Token scope (`repository:<name>:pull`); `None` sends no credentials at all.
    pub scope: Option<String>,
}

impl Request {
    /// `upstream <name>: <METHOD> <path>`, for errors: no query, no secrets.
    pub fn context(&self, upstream: &str) -> String {
        format!("upstream {upstream}: {} {}", self.method, self.url.path())
    }
}

/// A response and the concurrency slot it occupies until dropped.
pub(crate) struct Exchange {
    pub response: Response,
    pub permit: OwnedSemaphorePermit,
}

/// The shared state behind an `UpstreamClient`.
pub(crate) struct Transport {
    pub config: UpstreamConfig,
    pub http: reqwest::Client,
    pub auth: Auth,
    /// The upstream's base URL; only its own 401s start an authentication dance.
    pub base: Url,
    permits: Arc<Semaphore>,
}

impl Transport {
    pub fn new(config: UpstreamConfig, base: Url) -> Result<Self, UpstreamError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| UpstreamError::Connect(format!("upstream {}: cannot set up HTTP client: {e}", config.name)))?;
        // Zero permits would hang every request forever; one is the least that works.
        let permits = Arc::new(Semaphore::new(config.max_concurrent.clamp(1, Semaphore::MAX_PERMITS)));
        Ok(Self { auth: Auth::new(&config), http, base, permits, config })
    }

    /// Sends `request`, answering authentication challenges and retrying
    /// retryable failures. Any status may come back.
    pub async fn execute(&self, request: &Request) -> Result<Exchange, UpstreamError> {
        let mut attempt = 0;
        loop {
            let delay = match self.attempt(request, attempt).await {
                Ok(exchange) => {
                    let response = &exchange.response;
                    match retry::delay_for_status(response.status(), response.headers(), attempt) {
                        Some(delay) if attempt < self.config.retries => delay,
                        _ => return Ok(exchange),
                    }
                }
                Err(error) => match retry::delay_for_error(&error, attempt) {
                    Some(delay) if attempt < self.config.retries => {
                        debug!(upstream = %self.config.name, %error, attempt, "upstream request failed");
                        delay
                    }
                    _ => return Err(error),
                },
            };
            debug!(upstream = %self.config.name, path = request.url.path(), attempt, ?delay, "retrying upstream request");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// One attempt: proactive credentials, and on the upstream's own 401 one
    /// answer to its challenge.
    async fn attempt(&self, request: &Request, attempt: u32) -> Result<Exchange, UpstreamError> {
        let Some(scope) = &request.scope else {
            return self.send(request, None, attempt).await;
        };
        let sent = self.auth.proactive(scope);
        let exchange = self.send(request, sent.as_ref(), attempt).await?;
        if exchange.response.status() != http::StatusCode::UNAUTHORIZED || !self.is_upstream(exchange.response.url()) {
            return Ok(exchange);
        }
        self.answer_challenge(request, scope, sent, exchange, attempt).await
    }

    /// Takes a concurrency slot and sends `request` once, waiting at most
    /// `timeout` for the response headers.
    pub async fn send(
        &self,
        request: &Request,
        authorization: Option<&HeaderValue>,
        attempt: u32,
    ) -> Result<Exchange, UpstreamError> {
        let permit = self.acquire().await;
        let mut builder = self.http.request(request.method.clone(), request.url.clone());
        if let Some(accept) = request.accept {
            builder = builder.header(ACCEPT, accept);
        }
        if let Some(authorization) = authorization {
            builder = builder.header(AUTHORIZATION, authorization.clone());
        }
        let response = self.headers_within_timeout(builder, || request.context(&self.config.name)).await?;
        debug!(
            upstream = %self.config.name,
            method = %request.method,
            path = request.url.path(),
            status = response.status().as_u16(),
            attempt,
            "upstream response"
        );
        Ok(Exchange { response, permit })
    }

    /// Sends `builder` and waits at most `timeout` for the response headers.
    pub async fn headers_within_timeout(
        &self,
        builder: reqwest::RequestBuilder,
        context: impl Fn() -> String,
    ) -> Result<Response, UpstreamError> {
        match tokio::time::timeout(self.config.timeout, builder.send()).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(UpstreamError::transport(&context(), error)),
            Err(_) => Err(UpstreamError::Timeout(format!(
                "{}: no response within {} ms",
                context(),
                self.config.timeout.as_millis()
            ))),
        }
    }

    /// A concurrency slot; held by the caller for as long as its response lives.
    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        self.permits.clone().acquire_owned().await.expect("the semaphore is never closed")
    }

    /// Whether `url` is on the upstream itself (same scheme, host and port),
    /// not on a host a redirect led to.
    fn is_upstream(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }
}
