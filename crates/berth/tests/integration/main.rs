//! Integration tests: each starts the real `berth` binary on an ephemeral port
//! and talks to it over HTTP, with raw requests and with the `oci-client` crate.
//! One test binary keeps linking fast.

mod auth;
mod bad_input;
mod cli;
mod common;
mod crash;
mod gc;
mod images;
mod immutability;
mod metrics;
mod migrate;
mod oci_client;
mod openapi;
mod protocol;
mod proxy;
mod quota;
mod resources;
mod retention;
mod v1_1_1;
mod webhooks;
