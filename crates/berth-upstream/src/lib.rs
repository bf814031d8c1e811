//! HTTP client for remote OCI/Docker registries ("upstreams").
//!
//! berth's pull-through cache (and later replication) talks to other
//! registries through [`UpstreamClient`]. The crate knows the distribution
//! protocol and nothing of berth itself: it depends on no other berth crate.
//!
//! # API
//!
//! ```text
//! UpstreamClient::new(UpstreamConfig) -> Result<UpstreamClient, UpstreamError>
//! client.config() -> &UpstreamConfig
//! client.ping() -> Result<u16, UpstreamError>                                    // GET /v2/, no credentials
//! client.head_manifest(repo, reference) -> Result<Option<ManifestHead>, _>       // None on 404
//! client.get_manifest(repo, reference) -> Result<Option<FetchedManifest>, _>     // None on 404, body <= 4 MiB
//! client.get_blob(repo, digest) -> Result<Option<BlobDownload>, _>               // None on 404, streamed
//! client.referrers(repo, digest) -> Result<Option<Bytes>, _>                     // None on 404, body <= 4 MiB
//! ```
//!
//! # Policy
//!
//! - **Authentication.** Requests go out anonymously (or with what worked
//!   before). A `401` with a `Bearer` challenge starts the Docker token dance
//!   (Basic credentials to the realm when configured); tokens are cached per
//!   scope until shortly before they expire. A `Basic` challenge is answered
//!   with the configured credentials, which are then sent up front. The
//!   original request is retried once; a second refusal is
//!   [`UpstreamError::Unauthorized`].
//! - **Retries.** Connect errors, timeouts, `5xx` and `429` are retried
//!   `retries` extra times with exponential backoff (100 ms · 2ⁿ, at most 2 s).
//!   On 429/503 a `Retry-After` of up to 5 s is waited out instead; a longer
//!   one ends the retries at once. Other `4xx` are never retried.
//!   Only the exchange up to the response headers is retried, never a blob
//!   body that has started streaming.
//! - **Timeouts.** `connect_timeout` for the TCP/TLS connect, `timeout` for the
//!   response headers and for each whole small body (manifest, token,
//!   referrers), `read_timeout` for the longest silence inside a blob stream.
//! - **Concurrency.** At most `max_concurrent` requests per client are in
//!   flight; a [`BlobDownload`] holds its slot until its stream is finished or
//!   dropped.
//! - **Redirects** are followed (up to 10); reqwest drops `Authorization`
//!   when a redirect leaves the upstream's host, port or scheme, so CDN hosts
//!   never see credentials or tokens.
//! - **Secrets** never appear in errors, logs or `Debug` output.

// Everything public here is API other crates build on.
#![warn(missing_docs)]

mod auth;
mod body;
mod challenge;
mod client;
mod config;
mod error;
mod exchange;
mod headers;
mod paths;
mod retry;
mod token;
mod types;

pub use client::UpstreamClient;
pub use config::UpstreamConfig;
pub use error::UpstreamError;
pub use types::{BlobDownload, ByteStream, FetchedManifest, ManifestHead};

/// Largest manifest or referrers index body accepted, in bytes (4 MiB).
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;
