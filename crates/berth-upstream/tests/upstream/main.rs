//! End-to-end tests of `UpstreamClient` against real local HTTP servers that
//! play registry, token service and CDN.

mod auth;
mod limits;
mod manifests;
mod redirects;
mod retries;
mod support;
