//! Test content: blobs, image manifests, indexes and artifacts.

use berth_core::Digest;
use berth_core::media_type::{OCI_INDEX, OCI_MANIFEST};
use serde_json::{Value, json};

/// A blob and its digest.
#[derive(Debug, Clone)]
pub struct Blob {
    pub data: Vec<u8>,
    pub digest: Digest,
}

impl Blob {
    pub fn new(data: impl Into<Vec<u8>>) -> Self {
        let data = data.into();
        Blob { digest: Digest::sha256(&data), data }
    }

    /// `len` pseudo-random bytes (xorshift, seeded), cheap even for 100 MiB.
    pub fn random(len: usize, seed: u64) -> Self {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut data = Vec::with_capacity(len + 8);
        while data.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        data.truncate(len);
        Blob::new(data)
    }

    pub fn descriptor(&self, media_type: &str) -> Value {
        json!({"mediaType": media_type, "digest": self.digest, "size": self.data.len()})
    }
}

/// An image: config, layers and the manifest bytes that reference them.
#[derive(Debug, Clone)]
pub struct ImageFixture {
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub manifest: Vec<u8>,
    pub digest: Digest,
}

impl ImageFixture {
    /// An OCI image with `layer_sizes` random layers.
    pub fn new(seed: u64, layer_sizes: &[usize]) -> Self {
        Self::build(seed, layer_sizes, None, None)
    }

    /// An artifact manifest referring to `subject` (for referrers tests).
    pub fn artifact(seed: u64, artifact_type: &str, subject: &Digest, subject_size: usize) -> Self {
        let subject = json!({"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size});
        Self::build(seed, &[16], Some(artifact_type), Some(subject))
    }

    fn build(seed: u64, layer_sizes: &[usize], artifact_type: Option<&str>, subject: Option<Value>) -> Self {
        let config = Blob::new(format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#));
        let layers: Vec<Blob> =
            layer_sizes.iter().enumerate().map(|(i, &size)| Blob::random(size, seed * 1000 + i as u64)).collect();
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor("application/vnd.oci.image.config.v1+json"),
            "layers": layers.iter().map(|l| l.descriptor("application/vnd.oci.image.layer.v1.tar")).collect::<Vec<_>>(),
            "annotations": {"org.example.seed": seed.to_string()},
        });
        if let Some(t) = artifact_type {
            manifest["artifactType"] = json!(t);
        }
        if let Some(s) = subject {
            manifest["subject"] = s;
        }
        let manifest = serde_json::to_vec_pretty(&manifest).expect("json");
        ImageFixture { digest: Digest::sha256(&manifest), config, layers, manifest }
    }

    /// Every blob the manifest references.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(&self.layers)
    }
}

/// An OCI index over `children` (digest, size) pairs, as exact bytes.
pub fn index(children: &[(&Digest, usize)]) -> Vec<u8> {
    let manifests: Vec<Value> = children
        .iter()
        .enumerate()
        .map(|(i, (d, size))| {
            json!({"mediaType": OCI_MANIFEST, "digest": d, "size": size,
                   "platform": {"architecture": if i == 0 { "amd64" } else { "arm64" }, "os": "linux"}})
        })
        .collect();
    serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})).expect("json")
}
