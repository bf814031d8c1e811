//! Rows as the rest of berth sees them.

use berth_core::{Algorithm, Digest};

/// A manifest to store.
#[derive(Debug, Clone)]
pub struct NewManifest {
    pub digest: Digest,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    /// The manifest's annotations as a JSON object, for referrers listings.
    pub annotations_json: Option<String>,
    /// The exact bytes the client pushed.
    pub payload: Vec<u8>,
    /// Blobs that must be visible in the repository (config, layers).
    pub blob_refs: Vec<Digest>,
    /// Manifests that must exist in the repository (index children).
    pub manifest_refs: Vec<Digest>,
    /// Whether the references must already be there. Pushes need them; the
    /// pull-through cache stores a manifest before fetching what it references.
    pub require_references: bool,
    /// Events of this change, written in its transaction (`push`, …).
    pub events: Vec<crate::EventDraft>,
}

/// A stored manifest.
#[derive(Debug, Clone)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// Present when asked for (GET), absent for HEAD.
    pub payload: Option<Vec<u8>>,
}

/// One entry of a referrers listing.
#[derive(Debug, Clone)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations_json: Option<String>,
}

/// A new upload session.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub id: String,
    pub repo: berth_core::RepoName,
    pub algorithm: Algorithm,
    /// The blob store's initial cursor for the staged data.
    pub cursor: String,
    /// Who started it (credited with creating the repository, if it is new).
    pub actor: crate::EventActor,
}

/// A stored upload session.
#[derive(Debug, Clone)]
pub struct Upload {
    pub id: String,
    pub received: u64,
    pub algorithm: Algorithm,
    pub started_at: i64,
    pub updated_at: i64,
    /// Serialized hash state after `received` bytes (absent for old sessions).
    pub hash_state: Option<Vec<u8>>,
    /// The blob store's cursor for the staged data.
    pub cursor: String,
}

/// How far an upload session got, saved after every accepted chunk.
#[derive(Debug, Clone)]
pub struct UploadProgress {
    pub received: u64,
    pub hash_state: Vec<u8>,
    pub cursor: String,
}

/// A blob as the metadata knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRow {
    pub digest: Digest,
    pub size: u64,
    /// Some repository can see it.
    pub linked: bool,
}
