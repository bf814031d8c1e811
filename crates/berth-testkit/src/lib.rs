//! Test helpers for berth: a real `berth` process on an ephemeral port, and
//! fixtures (random blobs, image manifests, indexes, artifacts with subjects).

pub mod fixtures;
pub mod process;

pub use fixtures::{Blob, ImageFixture};
pub use process::BerthProcess;
