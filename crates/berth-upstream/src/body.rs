//! Reading response bodies: small ones whole and bounded, blobs as streams
//! that keep their concurrency slot, and error bodies for a short reason.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http::StatusCode;
use reqwest::Response;
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;

use crate::error::{UpstreamError, chain};
use crate::exchange::Exchange;
use crate::headers::content_length;
use crate::retry::retry_after;
use crate::types::ByteStream;

/// How much of an error body is read to find the upstream's reason.
const MAX_ERROR_BODY: usize = 4096;

/// Longest wait for an error body; the status alone already says enough.
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads the whole body within `deadline`, failing with `TooLarge` as soon
/// as it is known to exceed `limit` bytes.
pub(crate) async fn read_limited(
    mut response: Response,
    limit: usize,
    deadline: Duration,
    context: &str,
) -> Result<Bytes, UpstreamError> {
    let declared = content_length(response.headers(), context)?;
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(UpstreamError::TooLarge { limit });
    }
    let read = async {
        // Capacity from the (already bounded) declared length; no huge allocation on a lie.
        let mut body = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(chunk) = response.chunk().await.map_err(|e| UpstreamError::transport(context, e))? {
            if body.len() + chunk.len() > limit {
                return Err(UpstreamError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(deadline, read).await.unwrap_or_else(|_| {
        Err(UpstreamError::Timeout(format!("{context}: body not complete within {} ms", deadline.as_millis())))
    })
}

/// The error for a response that is neither success nor 404.
pub(crate) async fn status_error(response: Response, context: &str, deadline: Duration) -> UpstreamError {
    let status = response.status();
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            UpstreamError::Unauthorized(format!("{context}: upstream answered {status}"))
        }
        StatusCode::TOO_MANY_REQUESTS => UpstreamError::RateLimited { retry_after: retry_after(response.headers()) },
        _ => {
            let reason = error_reason(response, context, deadline.min(ERROR_BODY_TIMEOUT)).await;
            UpstreamError::Status { status: status.as_u16(), message: format!("{context}: {reason}") }
        }
    }
}

/// `CODE: message` from a distribution-spec error body, else the reason phrase.
async fn error_reason(response: Response, context: &str, deadline: Duration) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }

    let fallback = response.status().canonical_reason().unwrap_or("no reason given").to_owned();
    let Ok(body) = read_limited(response, MAX_ERROR_BODY, deadline, context).await else { return fallback };
    let Ok(parsed) = serde_json::from_slice::<ErrorBody>(&body) else { return fallback };
    let Some(first) = parsed.errors.into_iter().next() else { return fallback };
    let text = match (first.code, first.message) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(text), None) | (None, Some(text)) => text,
        (None, None) => return fallback,
    };
    text.chars().take(200).collect()
}

/// The body of a successful blob response as a [`ByteStream`] that holds the
/// exchange's concurrency slot until it ends, fails or is dropped.
pub(crate) fn blob_stream(exchange: Exchange, context: String) -> ByteStream {
    Box::pin(PermitStream { inner: Box::pin(exchange.response.bytes_stream()), permit: Some(exchange.permit), context })
}

struct PermitStream {
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    /// `None` once the body has ended or failed: the slot is free and the stream fused.
    permit: Option<OwnedSemaphorePermit>,
    context: String,
}

impl Stream for PermitStream {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.permit.is_none() {
            return Poll::Ready(None);
        }
        let item = match ready!(self.inner.as_mut().poll_next(cx)) {
            Some(Ok(bytes)) => return Poll::Ready(Some(Ok(bytes))),
            Some(Err(error)) => Some(Err(body_error(&self.context, error))),
            None => None,
        };
        self.permit = None;
        Poll::Ready(item)
    }
}

/// An `io::Error` for a failed blob body; `TimedOut` when the body stalled.
fn body_error(context: &str, error: reqwest::Error) -> io::Error {
    let error = error.without_url();
    let kind = if error.is_timeout() { io::ErrorKind::TimedOut } else { io::ErrorKind::Other };
    io::Error::new(kind, format!("{context}: blob body failed: {}", chain(&error)))
}
