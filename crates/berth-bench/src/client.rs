//! A bare HTTP/1.1 client: one hyper connection per worker, no pool, no framework.
//!
//! Every measurement owns its connections, so "64 connections" means exactly 64 TCP
//! connections with one request in flight on each. Plain HTTP only: the benchmarks run
//! on loopback, where TLS would measure the cipher rather than the registry.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Request bodies: empty, a buffer, or a stream of pieces.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A body with no bytes.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A body holding one buffer.
pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// A body streamed from pieces (the caller sets `Content-Length`).
pub fn stream(pieces: impl Stream<Item = Bytes> + Send + Sync + 'static) -> Body {
    BodyExt::boxed(StreamBody::new(pieces.map(|b| Ok(Frame::data(b)))))
}

/// The server being measured: its address, `Host` header and optional credentials.
#[derive(Debug)]
pub struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    authorization: Option<HeaderValue>,
}

impl Target {
    /// Parses `http://host:port[/]` and resolves it once.
    pub fn new(url: &str, user: Option<&str>, password: Option<&str>) -> anyhow::Result<Arc<Target>> {
        let Some(rest) = url.strip_prefix("http://") else {
            bail!("only plain http:// URLs are supported, got {url:?}");
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') {
            bail!("the URL must not have a path: {url:?}");
        }
        let with_port = if authority.rsplit(':').next().is_some_and(|p| p.parse::<u16>().is_ok()) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .with_context(|| format!("resolving {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolved to no address"))?;
        let authorization = user.map(|u| basic_auth(u, password.unwrap_or_default())).transpose()?;
        Ok(Arc::new(Target { addr, host: HeaderValue::from_str(authority)?, authorization }))
    }

    /// A request builder with `Host`, `User-Agent` and credentials set.
    pub fn request(&self, method: Method, path: &str) -> http::request::Builder {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.host.clone())
            .header(header::USER_AGENT, "berth-bench");
        if let Some(auth) = &self.authorization {
            builder = builder.header(header::AUTHORIZATION, auth.clone());
        }
        builder
    }

    /// Opens a new connection.
    pub async fn connect(self: &Arc<Self>) -> anyhow::Result<Conn> {
        let mut conn = Conn { target: Arc::clone(self), sender: None };
        conn.ensure_open().await?;
        Ok(conn)
    }
}

fn basic_auth(user: &str, password: &str) -> anyhow::Result<HeaderValue> {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {token}"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// One HTTP/1.1 connection, reopened when the server closes it between requests.
pub struct Conn {
    target: Arc<Target>,
    sender: Option<SendRequest<Body>>,
}

impl Conn {
    /// The server this connection talks to.
    pub fn target(&self) -> &Arc<Target> {
        &self.target
    }

    async fn ensure_open(&mut self) -> anyhow::Result<()> {
        if let Some(sender) = &mut self.sender
            && sender.ready().await.is_ok()
        {
            return Ok(());
        }
        let stream = TcpStream::connect(self.target.addr)
            .await
            .with_context(|| format!("connecting to {}", self.target.addr))?;
        stream.set_nodelay(true)?;
        let (mut sender, connection) =
            http1::Builder::new().max_buf_size(1 << 20).handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // The connection ends when the server closes it or `sender` is dropped.
            let _ = connection.await;
        });
        sender.ready().await?;
        self.sender = Some(sender);
        Ok(())
    }

    /// Sends a request; the response body must be read before the next request.
    pub async fn send(&mut self, req: Request<Body>) -> anyhow::Result<Response<Incoming>> {
        self.ensure_open().await?;
        let sender = self.sender.as_mut().expect("ensure_open sets the sender");
        match sender.send_request(req).await {
            Ok(resp) => Ok(resp),
            Err(e) => {
                self.sender = None;
                Err(e.into())
            }
        }
    }

    /// Sends a request and reads the whole response body.
    pub async fn fetch(&mut self, req: Request<Body>) -> anyhow::Result<Fetched> {
        let resp = self.send(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Fetched { status: parts.status, headers: parts.headers, body })
    }
}

/// A response read to the end.
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Fetched {
    /// Fails with the status and the start of the body unless the status is `want`.
    pub fn expect(self, want: StatusCode, what: &str) -> anyhow::Result<Fetched> {
        if self.status == want {
            return Ok(self);
        }
        let snippet = String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into_owned();
        bail!("{what}: expected {want}, got {} {snippet}", self.status)
    }

    /// A response header as text.
    pub fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Reads a response body to the end, feeding each piece to `sink`; returns the byte count.
pub async fn drain(mut body: Incoming, mut sink: impl FnMut(&[u8])) -> anyhow::Result<u64> {
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            total += data.len() as u64;
            sink(&data);
        }
    }
    Ok(total)
}

/// Read size of [`raw_get`].
const RAW_READ: usize = 1 << 20;

/// GETs `path` on a fresh connection, reading the body with plain 1 MiB reads (as curl
/// does) and feeding it to `sink`; returns the status and the body length.
///
/// Blob pulls use this instead of hyper: at several GiB/s a framework's per-frame work
/// would make the client, not the server, the limit.
pub async fn raw_get(target: &Target, path: &str, mut sink: impl FnMut(&[u8])) -> anyhow::Result<(StatusCode, u64)> {
    let mut stream = TcpStream::connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: berth-bench\r\n", target.host.to_str()?);
    if let Some(auth) = &target.authorization {
        head += &format!("Authorization: {}\r\n", auth.to_str()?);
    }
    head += "Connection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await?;
    let mut buf = vec![0u8; RAW_READ];
    let mut filled = 0;
    let header_end = loop {
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            bail!("connection closed before the response headers ended");
        }
        filled += n;
        if let Some(i) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if filled == buf.len() {
            bail!("response headers larger than {RAW_READ} bytes");
        }
    };
    let (status, length) = parse_head(&buf[..header_end])?;
    let mut total = (filled - header_end) as u64;
    sink(&buf[header_end..filled]);
    while length.is_none_or(|len| total < len) {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
        sink(&buf[..n]);
    }
    if let Some(len) = length.filter(|&len| len != total) {
        bail!("body ended after {total} of {len} bytes");
    }
    Ok((status, total))
}

/// Status and `Content-Length` of a response head; chunked bodies are refused.
fn parse_head(head: &[u8]) -> anyhow::Result<(StatusCode, Option<u64>)> {
    let text = std::str::from_utf8(head).context("response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let code = status_line.split(' ').nth(1).context("malformed status line")?;
    let status = StatusCode::from_bytes(code.as_bytes())?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse()?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") && !value.eq_ignore_ascii_case("identity") {
            bail!("transfer-encoding {value} is not supported by raw_get");
        }
    }
    Ok((status, length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_response_head() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 42\r\nX: y\r\n\r\n";
        assert_eq!(parse_head(head).unwrap(), (StatusCode::OK, Some(42)));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(parse_head(chunked).is_err());
    }
}
