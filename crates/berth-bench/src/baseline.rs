//! The ceilings for small GETs and for pushes: a minimal hyper server, on a
//! multi-threaded runtime, answering every request with the same 417-byte body (the
//! size of a typical image manifest), except uploads, which go to an [`UploadSink`].

use std::convert::Infallible;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http::{Response, header};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::cli::BaselineArgs;
use crate::upload_sink::UploadSink;

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
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        served = accept(listener) => served,
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
    }
}

/// Serves every connection `listener` accepts, each on a task of its own.
async fn accept(listener: TcpListener) -> anyhow::Result<()> {
    let body = body();
    let uploads = Arc::new(UploadSink::default());
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let body = body.clone();
        let uploads = Arc::clone(&uploads);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let body = body.clone();
                let uploads = Arc::clone(&uploads);
                async move {
                    if let Some(response) = uploads.handle(req).await {
                        return Ok::<_, Infallible>(response);
                    }
                    let response = Response::builder()
                        .header(header::CONTENT_TYPE, berth_core::media_type::OCI_MANIFEST)
                        .body(Full::new(body))
                        .expect("static response");
                    Ok(response)
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{self, Target};
    use crate::data::Pool;
    use crate::oci;

    #[tokio::test]
    async fn uploads_are_hashed_and_their_digest_checked() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(accept(listener));
        let target = Target::new(&url, None, None).expect("target");
        let pool = Pool::generate(1 << 20, 5);
        let blob = pool.blob(1, 3 << 20);
        let mut conn = target.connect().await.expect("connect");
        oci::push_monolithic(&mut conn, "r", &blob).await.expect("monolithic push");
        oci::push_chunked(&mut conn, "r", &blob, 1 << 20).await.expect("chunked push");
        let other = pool.blob(2, 3 << 20);
        oci::push_chunked(&mut conn, "r", &other, (1 << 20) + 7).await.expect("chunked push, odd chunks");
        let location = oci::start_upload(&mut conn, "r").await.expect("POST");
        let req = conn
            .request(http::Method::PUT, &format!("{location}?digest={}", blob.digest().as_str()))
            .header(header::CONTENT_LENGTH, 3)
            .body(client::full(Bytes::from_static(b"abc")))
            .expect("request");
        let wrong = conn.fetch(req).await.expect("PUT");
        assert_eq!(wrong.status, http::StatusCode::BAD_REQUEST, "a wrong digest must be refused");
        server.abort();
    }

    #[test]
    fn body_has_the_advertised_length() {
        let body = body();
        assert_eq!(body.len(), BODY_LEN);
        serde_json::from_slice::<serde_json::Value>(&body).expect("valid JSON");
    }
}
