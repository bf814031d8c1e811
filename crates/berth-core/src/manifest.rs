//! Manifest parsing and validation.
//!
//! berth stores and serves the exact bytes a client pushed; this module only reads
//! them to find what a manifest references (config, layers, child manifests,
//! subject) and to reject bodies that are not a manifest berth supports.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::digest::Digest;
use crate::media_type::{self, ManifestKind};

/// The largest manifest berth accepts (the spec asks for at least 4 MB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Why a manifest body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("manifest media type {0:?} is not supported")]
    UnsupportedMediaType(String),
    #[error("manifest mediaType {body:?} does not match Content-Type {header:?}")]
    MediaTypeMismatch { body: String, header: String },
    #[error("manifest schemaVersion must be 2")]
    SchemaVersion,
    #[error("manifest is missing its {0} field")]
    MissingField(&'static str),
}

/// A content descriptor as it appears inside a manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub urls: Option<Vec<String>>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<u32>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// What berth needs to know about a manifest.
#[derive(Debug, Clone)]
pub struct ParsedManifest {
    /// The media type the manifest is served with.
    pub media_type: String,
    pub kind: ManifestKind,
    /// `artifactType`, or for an image manifest without one, its config media type.
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    pub annotations: Option<BTreeMap<String, String>>,
    /// Blobs that must exist in the repository (config and distributable layers).
    pub blobs: Vec<Descriptor>,
    /// Child manifests that must exist in the repository (index entries).
    pub children: Vec<Descriptor>,
}

impl ParsedManifest {
    /// Parses `body`, pushed with the `Content-Type` essence `content_type`.
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Self, ManifestError> {
        let raw: RawManifest = serde_json::from_slice(body).map_err(|e| ManifestError::InvalidJson(e.to_string()))?;
        let media_type = resolve_media_type(&raw, content_type)?;
        let kind = media_type::manifest_kind(&media_type)
            .ok_or_else(|| ManifestError::UnsupportedMediaType(media_type.clone()))?;
        if raw.schema_version != Some(2) {
            return Err(ManifestError::SchemaVersion);
        }
        let (blobs, children) = match kind {
            ManifestKind::Image => {
                let config = raw.config.clone().ok_or(ManifestError::MissingField("config"))?;
                let layers = raw.layers.clone().unwrap_or_default();
                let mut blobs = vec![config];
                blobs.extend(layers.into_iter().filter(|l| {
                    !media_type::is_foreign_layer(&l.media_type) && l.urls.as_ref().is_none_or(|u| u.is_empty())
                }));
                (blobs, Vec::new())
            }
            ManifestKind::Index => {
                let manifests = raw.manifests.clone().ok_or(ManifestError::MissingField("manifests"))?;
                (Vec::new(), manifests)
            }
        };
        let artifact_type = raw.artifact_type.clone().or_else(|| match kind {
            ManifestKind::Image => raw.config.as_ref().map(|c| c.media_type.clone()),
            ManifestKind::Index => None,
        });
        Ok(ParsedManifest {
            media_type,
            kind,
            artifact_type,
            subject: raw.subject.map(|s| s.digest),
            annotations: raw.annotations,
            blobs,
            children,
        })
    }
}

fn resolve_media_type(raw: &RawManifest, content_type: Option<&str>) -> Result<String, ManifestError> {
    let header = content_type.map(media_type::essence).filter(|h| !h.is_empty());
    match (raw.media_type.as_deref(), header) {
        (Some(body), Some(header)) if body != header && media_type::manifest_kind(header).is_some() => {
            Err(ManifestError::MediaTypeMismatch { body: body.into(), header: header.into() })
        }
        (Some(body), _) => Ok(body.to_owned()),
        (None, Some(header)) => Ok(header.to_owned()),
        // No declared type at all: infer the OCI type from the shape.
        (None, None) if raw.manifests.is_some() => Ok(media_type::OCI_INDEX.to_owned()),
        (None, None) => Ok(media_type::OCI_MANIFEST.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2,"newUnspecifiedField":null}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":3}},
                      {{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"{}","size":3,"urls":["https://x"]}}]{extra}}}"#,
            d('a'),
            d('b'),
            d('c')
        )
    }

    #[test]
    fn parses_image_manifest() {
        let m = ParsedManifest::parse(image("").as_bytes(), Some(media_type::OCI_MANIFEST)).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(m.blobs.len(), 2, "foreign layer is not required");
        assert_eq!(m.artifact_type.as_deref(), Some("application/vnd.oci.image.config.v1+json"));
        assert!(m.subject.is_none());
    }

    #[test]
    fn parses_subject_and_artifact_type() {
        let extra = format!(
            r#","artifactType":"application/x-sig","subject":{{"mediaType":"{}","digest":"{}","size":9}},"annotations":{{"k":"v"}}"#,
            media_type::OCI_MANIFEST,
            d('f')
        );
        let m = ParsedManifest::parse(image(&extra).as_bytes(), None).unwrap();
        assert_eq!(m.artifact_type.as_deref(), Some("application/x-sig"));
        assert_eq!(m.subject, Some(d('f').parse().unwrap()));
        assert_eq!(m.annotations.unwrap()["k"], "v");
    }

    #[test]
    fn parses_index_and_infers_type() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":5}}]}}"#,
            media_type::OCI_MANIFEST,
            d('1')
        );
        let m = ParsedManifest::parse(body.as_bytes(), None).unwrap();
        assert_eq!(m.media_type, media_type::OCI_INDEX);
        assert_eq!(m.children.len(), 1);
        let m = ParsedManifest::parse(body.as_bytes(), Some(media_type::DOCKER_MANIFEST_LIST)).unwrap();
        assert_eq!(m.media_type, media_type::DOCKER_MANIFEST_LIST);
    }

    #[test]
    fn rejects_bad_manifests() {
        let p = |b: &str, ct: Option<&str>| ParsedManifest::parse(b.as_bytes(), ct);
        assert!(matches!(p("{", None), Err(ManifestError::InvalidJson(_))));
        assert!(matches!(p("[]", None), Err(ManifestError::InvalidJson(_))));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(p(&deep, None), Err(ManifestError::InvalidJson(_))));
        assert!(matches!(
            p(r#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+json"}"#, None),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
        assert!(matches!(p(&image(""), Some(media_type::OCI_INDEX)), Err(ManifestError::MediaTypeMismatch { .. })));
        assert!(matches!(
            p(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#, None),
            Err(ManifestError::MissingField("config"))
        ));
        let bad_digest = image("").replace(&d('b'), "sha256:nothex");
        assert!(matches!(p(&bad_digest, None), Err(ManifestError::InvalidJson(_))));
        assert!(matches!(
            p(r#"{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#, None),
            Err(ManifestError::SchemaVersion)
        ));
    }
}
