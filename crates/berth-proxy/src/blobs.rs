//! Blobs through the cache: served from the store when present anywhere,
//! otherwise fetched once per digest while every client reads along.

use std::sync::Arc;

use berth_core::{ByteRange, Digest};
use berth_registry::{ByteStream, RegistryError};
use bytes::BytesMut;
use futures_util::{StreamExt, stream};

use crate::flight::{Flight, FlightState, spool_write};
use crate::{CacheStatus, Proxy, ProxyError, Route};

/// A blob served through the cache.
pub struct ProxiedBlob {
    /// Size of the whole blob, when known (an upstream may not say).
    pub size: Option<u64>,
    /// The part being sent, when a range was asked for and served.
    pub range: Option<ByteRange>,
    pub stream: ByteStream,
    pub status: CacheStatus,
}

/// Bytes gathered before each spool write and store hand-off.
const COALESCE: usize = 1024 * 1024;
/// Read size when the store copies the spool file.
const STORE_CHUNK: usize = 1024 * 1024;

impl Proxy {
    /// Opens `digest` for `route`, fetching it if nothing local has it. A
    /// `Range` is honoured for cached blobs; a miss sends the whole blob (which
    /// HTTP allows), since it is being fetched anyway.
    pub async fn blob(
        self: &Arc<Self>,
        route: &Route,
        digest: &Digest,
        range_header: Option<&str>,
        want_body: bool,
    ) -> Result<ProxiedBlob, ProxyError> {
        for _ in 0..2 {
            match self.local_blob(route, digest, range_header, want_body).await {
                Ok(Some(found)) => {
                    self.stats.blob_hit(digest.as_str());
                    return Ok(found);
                }
                Ok(None) => {}
                Err(e) => return Err(e),
            }
            // Known elsewhere in the store: make it visible here, no fetch.
            match self.meta.find_blob(digest).await? {
                Some(size) => {
                    self.meta.link_blob(&route.cache_repo, digest, size, &[]).await?;
                    self.registry.invalidate(&route.cache_repo);
                }
                None => break,
            }
        }
        if self.config.offline {
            return Err(ProxyError::Offline);
        }
        let flight = self.join_or_start(route, digest);
        if flight.is_verified() {
            // Fetched already and being stored: wait for it and serve it as cached.
            flight.settled().await;
            if let Some(found) = self.local_blob(route, digest, range_header, want_body).await? {
                self.stats.blob_hit(digest.as_str());
                return Ok(found);
            }
        }
        self.stats.miss("blob");
        match flight.started().await {
            Ok(size) => Ok(ProxiedBlob {
                size,
                range: None,
                stream: if want_body { flight.reader() } else { Box::pin(stream::empty()) },
                status: CacheStatus::Miss,
            }),
            Err(FlightState::Failed { not_found: true, .. }) => Err(ProxyError::NotFound),
            Err(FlightState::Failed { message, .. }) => Err(ProxyError::Upstream(message)),
            Err(other) => Err(ProxyError::Internal(format!("unexpected fetch state {other:?}"))),
        }
    }

    async fn local_blob(
        &self,
        route: &Route,
        digest: &Digest,
        range_header: Option<&str>,
        want_body: bool,
    ) -> Result<Option<ProxiedBlob>, ProxyError> {
        let repo = &route.cache_repo;
        let size = match self.registry.stat_blob(repo, digest).await {
            Ok(size) => size,
            Err(RegistryError::BlobUnknown(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if !want_body {
            return Ok(Some(ProxiedBlob {
                size: Some(size),
                range: None,
                stream: Box::pin(stream::empty()),
                status: CacheStatus::Hit,
            }));
        }
        match self.registry.get_blob(repo, digest, range_header).await {
            Ok(b) => {
                Ok(Some(ProxiedBlob { size: Some(b.size), range: b.range, stream: b.stream, status: CacheStatus::Hit }))
            }
            // Evicted between the lookup and the read: fetch it again.
            Err(RegistryError::BlobUnknown(_)) => {
                self.registry.invalidate(repo);
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The fetch of `digest` in progress, or a new one.
    fn join_or_start(self: &Arc<Self>, route: &Route, digest: &Digest) -> Arc<Flight> {
        let mut flights = self.flights.lock().expect("flights lock");
        if let Some(flight) = flights.get(digest.as_str()) {
            return flight.clone();
        }
        let spool = self.config.spool_dir.join(format!("{}-{}", digest.encoded(), uuid_like()));
        let flight = Flight::new(spool);
        flights.insert(digest.to_string(), flight.clone());
        let (proxy, route, digest, fetch) = (self.clone(), route.clone(), digest.clone(), flight.clone());
        tokio::spawn(async move {
            let outcome = proxy.fetch(&fetch, &route, &digest).await;
            let state = match outcome {
                Ok(size) => FlightState::Done { size },
                Err((not_found, message)) => {
                    if !not_found {
                        tracing::warn!(repo = route.cache_repo.as_str(), %digest, error = message, "blob fetch failed");
                    }
                    FlightState::Failed { not_found, message }
                }
            };
            // Bytes already verified stay readable even if storing them failed.
            fetch.state.send_if_modified(|current| {
                let keep =
                    matches!(current, FlightState::Verified { .. }) && matches!(state, FlightState::Failed { .. });
                if !keep {
                    *current = state;
                }
                !keep
            });
            proxy.flights.lock().expect("flights lock").remove(digest.as_str());
            if let Err(e) = proxy.enforce_limits().await {
                tracing::warn!(error = %e, "cache eviction failed");
            }
        });
        flight
    }

    /// Fetches a blob from the first upstream that has it into the spool file
    /// and the store at once. Errors say whether every upstream lacked it.
    async fn fetch(&self, flight: &Flight, route: &Route, digest: &Digest) -> Result<u64, (bool, String)> {
        let mut failure = None;
        let mut found = None;
        for upstream in &route.candidates {
            match upstream.client.get_blob(&route.remote, digest.as_str()).await {
                Ok(Some(download)) => {
                    found = Some((upstream.clone(), download));
                    break;
                }
                Ok(None) => {}
                Err(e) => failure = Some(e.to_string()),
            }
        }
        let Some((upstream, download)) = found else {
            return Err(match failure {
                Some(message) => (false, message),
                None => (true, format!("no upstream has {digest}")),
            });
        };
        let upstream_name = upstream.record.name.clone();
        let spool =
            std::fs::File::create(&flight.spool).map_err(|e| (false, format!("cannot create spool file: {e}")))?;
        let spool = Arc::new(spool);
        flight.state.send_replace(FlightState::Streaming { size: download.size, written: 0 });

        // Clients wait only for the transfer and the hash; the store reads the
        // verified spool file afterwards (from the page cache).
        let pump = async {
            let mut body = download.stream;
            let mut pending = BytesMut::new();
            let mut written = 0u64;
            let mut hasher = digest.algorithm().hasher();
            loop {
                let next = body.next().await;
                let end = next.is_none();
                match next {
                    Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        return Err(format!("download from {upstream_name} broke off: {e}"));
                    }
                    None => {}
                }
                if pending.len() >= COALESCE || (end && !pending.is_empty()) {
                    let chunk = pending.split().freeze();
                    let len = chunk.len() as u64;
                    hasher.update(&chunk);
                    spool_write(&spool, written, chunk).await.map_err(|e| format!("spool write: {e}"))?;
                    written += len;
                    self.stats.upstream_bytes(&upstream_name, len);
                    flight.state.send_modify(|s| {
                        if let FlightState::Streaming { written: w, .. } = s {
                            *w = written;
                        }
                    });
                }
                if end {
                    let actual = hasher.finish();
                    if &actual != digest {
                        return Err(format!("{upstream_name} sent corrupt content: {actual}, not {digest}"));
                    }
                    if download.size.is_some_and(|size| size != written) {
                        return Err(format!("{upstream_name} announced {:?} bytes and sent {written}", download.size));
                    }
                    // Clients may finish now; the store makes it durable meanwhile.
                    flight.state.send_replace(FlightState::Verified { size: written });
                    return Ok(written);
                }
            }
        };
        let written = pump.await.map_err(|m| {
            if m.contains("corrupt") {
                self.stats.corrupt();
            }
            (false, m)
        })?;
        let from_spool = tokio::fs::File::open(&flight.spool).await.map_err(|e| (false, format!("spool: {e}")))?;
        let from_spool: ByteStream = Box::pin(tokio_util::io::ReaderStream::with_capacity(from_spool, STORE_CHUNK));
        let actor = berth_meta::EventActor::system("proxy");
        let stored = self.registry.put_blob(&route.cache_repo, digest, Some(written), from_spool, &actor).await;
        match stored {
            Ok(size) => {
                debug_assert_eq!(size, written);
                self.registry.invalidate(&route.cache_repo);
                if let Err(e) = self
                    .meta
                    .record_cache_entry(digest.as_str(), &upstream_name, size as i64, berth_meta::now_unix())
                    .await
                {
                    tracing::warn!(%digest, error = %e, "cannot record the cache entry");
                }
                tracing::debug!(repo = route.cache_repo.as_str(), %digest, size, upstream = upstream_name, "blob cached");
                Ok(size)
            }
            Err(RegistryError::DigestInvalid(m)) => {
                self.stats.corrupt();
                Err((false, format!("{upstream_name} sent corrupt content: {m}")))
            }
            Err(RegistryError::SizeInvalid(m)) => Err((false, format!("{upstream_name} sent the wrong size: {m}"))),
            Err(e) => Err((false, format!("cannot store the blob: {e}"))),
        }
    }
}

/// A short random suffix so two fetches of one digest never share a spool file.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}
