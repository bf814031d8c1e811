//! Media types berth understands.

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const OCTET_STREAM: &str = "application/octet-stream";

/// Layer media types whose blobs may legitimately live outside the registry.
const FOREIGN_LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// The kind of manifest a media type denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image (or artifact) manifest: config + layers.
    Image,
    /// An index / manifest list: child manifests.
    Index,
}

/// Classifies a manifest media type; `None` for types berth does not store.
pub fn manifest_kind(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Image),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(ManifestKind::Index),
        _ => None,
    }
}

/// True for layer types that need not be pushed to the registry.
pub fn is_foreign_layer(media_type: &str) -> bool {
    FOREIGN_LAYER_TYPES.contains(&media_type)
}

/// Drops parameters (`; charset=…`) and surrounding whitespace from a Content-Type.
pub fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}
