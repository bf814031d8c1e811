//! The ceiling for pushes over HTTP: the baseline server's upload routes take a blob
//! the way a registry must (POST, then PATCHes or one PUT, the digest checked at the
//! end), hash every byte on a thread of the upload's own while the request's task
//! receives, answer each request once its bytes are hashed, and store nothing.
//!
//! Pushed with berth-bench's own client, it shows what a verifying push costs on
//! this machine with no storage at all, and its chunked rate against its monolithic
//! rate what a request per chunk costs when each answer waits for the hash (as
//! berth's does on PostgreSQL; on the embedded database berth answers a `PATCH`
//! once its body has arrived).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_core::{Algorithm, Digest};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::{mpsc, oneshot};

/// Received pieces queued for a hashing thread, at most (hyper's reads are at most
/// a few hundred KiB, so this is about berth's own queue budget).
const QUEUED_PIECES: usize = 4;

/// What the request's task sends to an upload's hashing thread.
enum ToHasher {
    /// Bytes to hash, in order.
    Piece(Bytes),
    /// Answer with the bytes hashed so far once everything sent before is hashed.
    Settle(oneshot::Sender<u64>),
    /// Answer with the digest of everything sent, and stop.
    Finish(oneshot::Sender<Digest>),
}

/// The open upload sessions, by id. A session and its thread end with its `PUT` or a
/// failed request; the server lives for one benchmark round, whose pushes all finish.
#[derive(Default)]
pub struct UploadSink {
    sessions: Mutex<HashMap<u64, mpsc::Sender<ToHasher>>>,
    next_id: AtomicU64,
}

impl UploadSink {
    /// Answers `req` if it is an upload request (`/v2/<name>/blobs/uploads/...`).
    pub async fn handle(&self, req: Request<Incoming>) -> Option<Response<Full<Bytes>>> {
        let path = req.uri().path().to_owned();
        let (_, rest) = path.split_once("/blobs/uploads/")?;
        let resp = match (req.method().clone(), rest.parse::<u64>()) {
            (Method::POST, _) if rest.is_empty() => self.start(&path),
            (Method::PATCH, Ok(id)) => self.append(id, &path, req.into_body()).await,
            (Method::PUT, Ok(id)) => {
                let digest = req.uri().query().and_then(digest_param);
                self.complete(id, digest, req.into_body()).await
            }
            _ => status(StatusCode::NOT_FOUND),
        };
        Some(resp)
    }

    /// `POST`: a new session with its own hashing thread.
    fn start(&self, path: &str) -> Response<Full<Bytes>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(QUEUED_PIECES);
        std::thread::spawn(move || hash_pieces(rx));
        self.sessions.lock().expect("sessions lock").insert(id, tx);
        accepted(&format!("{path}{id}"), 0)
    }

    /// `PATCH`: hashes the body; answers with the bytes received so far.
    async fn append(&self, id: u64, path: &str, body: Incoming) -> Response<Full<Bytes>> {
        let Some(hasher) = self.session(id) else { return status(StatusCode::NOT_FOUND) };
        if feed(&hasher, body).await.is_err() {
            self.sessions.lock().expect("sessions lock").remove(&id);
            return status(StatusCode::BAD_REQUEST);
        }
        match ask(&hasher, ToHasher::Settle).await {
            Some(hashed) => accepted(path, hashed),
            None => status(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    /// `PUT ?digest=`: hashes the body (if any), then checks the digest and ends the session.
    async fn complete(&self, id: u64, digest: Option<Digest>, body: Incoming) -> Response<Full<Bytes>> {
        let Some(hasher) = self.sessions.lock().expect("sessions lock").remove(&id) else {
            return status(StatusCode::NOT_FOUND);
        };
        let Some(want) = digest else { return status(StatusCode::BAD_REQUEST) };
        if feed(&hasher, body).await.is_err() {
            return status(StatusCode::BAD_REQUEST);
        }
        let Some(got) = ask(&hasher, ToHasher::Finish).await else {
            return status(StatusCode::INTERNAL_SERVER_ERROR);
        };
        if got != want {
            return status(StatusCode::BAD_REQUEST);
        }
        Response::builder()
            .status(StatusCode::CREATED)
            .header("Docker-Content-Digest", got.as_str())
            .body(Full::new(Bytes::new()))
            .expect("static response")
    }

    fn session(&self, id: u64) -> Option<mpsc::Sender<ToHasher>> {
        self.sessions.lock().expect("sessions lock").get(&id).cloned()
    }
}

/// Sends every piece of `body` to the hashing thread; fails if the body or the thread does.
async fn feed(hasher: &mpsc::Sender<ToHasher>, mut body: Incoming) -> anyhow::Result<()> {
    while let Some(frame) = body.frame().await {
        if let Ok(piece) = frame?.into_data() {
            hasher.send(ToHasher::Piece(piece)).await.map_err(|_| anyhow::anyhow!("hashing thread stopped"))?;
        }
    }
    Ok(())
}

/// Sends the hashing thread a request made with `message` and waits for its answer;
/// `None` if the thread has stopped.
async fn ask<T>(hasher: &mpsc::Sender<ToHasher>, message: impl FnOnce(oneshot::Sender<T>) -> ToHasher) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    hasher.send(message(tx)).await.ok()?;
    rx.await.ok()
}

/// An upload's hashing thread: hashes pieces in order until told to finish.
fn hash_pieces(mut rx: mpsc::Receiver<ToHasher>) {
    let mut hasher = Algorithm::Sha256.hasher();
    let mut hashed = 0u64;
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            ToHasher::Piece(piece) => {
                hasher.update(&piece);
                hashed += piece.len() as u64;
            }
            ToHasher::Settle(answer) => {
                let _ = answer.send(hashed);
            }
            ToHasher::Finish(answer) => {
                let _ = answer.send(hasher.finish());
                return;
            }
        }
    }
}

/// The `digest` query parameter, parsed.
fn digest_param(query: &str) -> Option<Digest> {
    query.split('&').find_map(|pair| pair.strip_prefix("digest=")).and_then(|d| d.parse().ok())
}

/// `202 Accepted` pointing the client at the session, with the bytes received so far.
fn accepted(location: &str, received: u64) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::LOCATION, location)
        .header(header::RANGE, format!("0-{}", received.saturating_sub(1)))
        .body(Full::new(Bytes::new()))
        .expect("static response")
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    Response::builder().status(code).body(Full::new(Bytes::new())).expect("static response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_read_from_the_query() {
        let d = Digest::sha256(b"x");
        assert_eq!(digest_param(&format!("a=1&digest={}", d.as_str())), Some(d));
        assert_eq!(digest_param("digest=sha256:nothex"), None);
        assert_eq!(digest_param("a=1"), None);
    }
}
