//! Authenticating to the upstream: Basic credentials and the Docker token dance.
//!
//! Requests first go out with what worked before (a cached token for the
//! scope, or Basic once the upstream asked for it). On a 401 from the
//! upstream itself, its challenge is answered once and the request re-sent;
//! a second refusal is returned as is and becomes `Unauthorized`.

use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::AUTHORIZATION;
use http::{HeaderValue, StatusCode};
use reqwest::Url;
use tracing::debug;

use crate::body::{read_limited, status_error};
use crate::challenge::{self, AuthRequest};
use crate::config::UpstreamConfig;
use crate::error::UpstreamError;
use crate::exchange::{Exchange, Request, Transport};
use crate::token::{Token, TokenCache, parse_token};

/// Largest token response read; real ones are a few KiB.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// What the client knows about authenticating to its upstream.
pub(crate) struct Auth {
    /// `Basic …` for the configured credentials, if any.
    basic: Option<HeaderValue>,
    /// Set once the upstream asked for Basic; from then on it is sent up front.
    basic_up_front: AtomicBool,
    tokens: TokenCache,
}

impl Auth {
    pub fn new(config: &UpstreamConfig) -> Self {
        let basic = config.username.as_ref().map(|user| {
            let password = config.password.as_deref().unwrap_or_default();
            let mut value = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))))
                .expect("base64 is a valid header value");
            value.set_sensitive(true);
            value
        });
        Self { basic, basic_up_front: AtomicBool::new(false), tokens: TokenCache::default() }
    }

    /// The `Authorization` to send before any challenge: a fresh token for
    /// `scope`, else Basic if the upstream wanted it before.
    pub fn proactive(&self, scope: &str) -> Option<HeaderValue> {
        self.tokens.get(scope).or_else(|| self.basic.clone().filter(|_| self.basic_up_front.load(Ordering::Relaxed)))
    }
}

impl Transport {
    /// Answers the challenge of a 401 `refused` once, returning the response
    /// to the re-sent request (or `refused` when there is nothing to answer with).
    pub(crate) async fn answer_challenge(
        &self,
        request: &Request,
        scope: &str,
        sent: Option<HeaderValue>,
        refused: Exchange,
        attempt: u32,
    ) -> Result<Exchange, UpstreamError> {
        let challenge = challenge::auth_request(refused.response.headers());
        let basic = self.auth.basic.as_ref();
        let answer_basic = match &challenge {
            None => return Ok(refused),
            // No credentials, or these very credentials were just refused.
            Some(AuthRequest::Basic) if basic.is_none() || sent.as_ref() == basic => return Ok(refused),
            Some(AuthRequest::Basic) => true,
            Some(AuthRequest::Bearer { .. }) => false,
        };
        // Free the slot first: the next request needs one of its own, and
        // holding two at once could deadlock a full semaphore.
        drop(refused);

        let authorization = match challenge {
            Some(AuthRequest::Bearer { realm, service, scope: asked }) => {
                // Whatever token was sent (revoked, or expired early) is no good.
                self.auth.tokens.remove(scope);
                let token = self.fetch_token(&realm, service.as_deref(), asked.as_deref().unwrap_or(scope)).await?;
                self.auth.tokens.insert(scope, &token);
                token.header
            }
            _ => basic.cloned().expect("checked above"),
        };
        let exchange = self.send(request, Some(&authorization), attempt).await?;
        let accepted = exchange.response.status() != StatusCode::UNAUTHORIZED;
        if answer_basic && accepted {
            self.auth.basic_up_front.store(true, Ordering::Relaxed);
        } else if !answer_basic && !accepted {
            self.auth.tokens.remove(scope);
        }
        Ok(exchange)
    }

    /// `GET realm?service=…&scope=…`, with Basic credentials when configured.
    async fn fetch_token(&self, realm: &str, service: Option<&str>, scope: &str) -> Result<Token, UpstreamError> {
        let name = &self.config.name;
        let url = self.token_url(realm, service, scope)?;
        let context = format!("upstream {name}: token endpoint {}{}", url.host_str().unwrap_or_default(), url.path());
        let _permit = self.acquire().await;
        let mut builder = self.http.get(url);
        if let Some(basic) = &self.auth.basic {
            builder = builder.header(AUTHORIZATION, basic.clone());
        }
        let response = self.headers_within_timeout(builder, || context.clone()).await?;
        let status = response.status();
        debug!(upstream = %name, scope, status = status.as_u16(), "token endpoint response");
        if !status.is_success() {
            return Err(status_error(response, &context, self.config.timeout).await);
        }
        let body = read_limited(response, MAX_TOKEN_RESPONSE, self.config.timeout, &context).await?;
        parse_token(&body)
    }

    /// The token request URL, refusing realms that would expose credentials.
    fn token_url(&self, realm: &str, service: Option<&str>, scope: &str) -> Result<Url, UpstreamError> {
        let protocol = |why: &str| UpstreamError::Protocol(format!("upstream {}: {why}", self.config.name));
        let mut url = Url::parse(realm).map_err(|_| protocol("challenge realm is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(protocol("challenge realm is not an http(s) URL"));
        }
        // An https upstream must not talk us into sending its password in clear text.
        if self.auth.basic.is_some() && self.base.scheme() == "https" && url.scheme() != "https" {
            return Err(protocol("challenge realm downgrades to plain http; credentials not sent"));
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", scope);
        }
        Ok(url)
    }
}
