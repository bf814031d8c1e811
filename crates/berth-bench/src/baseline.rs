//! The ceiling for small GETs: a minimal hyper server answering every request with the
//! same 417-byte body (the size of a typical image manifest), on a multi-threaded runtime.

use std::convert::Infallible;

use anyhow::Context;
use bytes::Bytes;
use http::{Response, header};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::cli::BaselineArgs;

/// Length of the fixed body.
pub const BODY_LEN: usize = 417;

/// A JSON object of exactly [`BODY_LEN`] bytes.
pub fn body() -> Bytes {
    let mut text = String::from(r#"{"baseline":""#);
    text.extend(std::iter::repeat_n('x', BODY_LEN - text.len() - 2));
    text.push_str(r#""}"#);
    Bytes::from(text)
}

/// Serves until SIGINT/SIGTERM.
pub async fn serve(args: &BaselineArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    eprintln!("baseline server on http://{}", listener.local_addr()?);
    let body = body();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
        };
        stream.set_nodelay(true)?;
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req| {
                let response = Response::builder()
                    .header(header::CONTENT_TYPE, berth_core::media_type::OCI_MANIFEST)
                    .body(Full::new(body.clone()))
                    .expect("static response");
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn body_has_the_advertised_length() {
        let body = super::body();
        assert_eq!(body.len(), super::BODY_LEN);
        serde_json::from_slice::<serde_json::Value>(&body).expect("valid JSON");
    }
}
