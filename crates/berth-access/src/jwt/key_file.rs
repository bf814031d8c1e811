//! The signing key file: load it, or create it exactly once.
//!
//! A new key is written to a temporary file (mode 0600, fsynced) and then
//! hard-linked into place. Linking fails if the name already exists, so two
//! processes starting together on a shared data directory cannot both install
//! a key: the loser reads the winner's. A crash leaves at most a stray
//! temporary file, never a half-written key.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

use super::{TokenSigner, pem};
use crate::error::AccessError;

/// PEM labels accepted in a key file: PKCS#8, and SEC1 as OpenSSL writes it.
const PRIVATE_KEY_LABELS: [&str; 2] = ["PRIVATE KEY", "EC PRIVATE KEY"];

/// A new P-256 private key as PKCS#8 DER.
pub(super) fn generate_pkcs8() -> Result<Vec<u8>, AccessError> {
    // The private scalar comes from the process CSPRNG (ChaCha seeded by the OS)
    // rather than aws-lc's own generator: the first use of aws-lc's RNG seeds a
    // CPU-jitter entropy pool for ~50 ms, which would be paid at every start.
    // A uniformly random 256-bit value is a valid P-256 scalar unless it is 0 or
    // ≥ n (probability ~2⁻³²); aws-lc rejects those and we draw again.
    for _ in 0..8 {
        let mut scalar = [0u8; 32];
        rand::fill(&mut scalar);
        let sec1 = sec1_private_key(&scalar);
        if let Ok(key_pair) = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &sec1) {
            let pkcs8 = key_pair.to_pkcs8v1().map_err(|_| AccessError::KeyGeneration)?;
            return Ok(pkcs8.as_ref().to_vec());
        }
    }
    Err(AccessError::KeyGeneration)
}

/// RFC 5915 `ECPrivateKey` for P-256 without the optional public key:
/// `SEQUENCE { INTEGER 1, OCTET STRING scalar, [0] OID prime256v1 }`.
fn sec1_private_key(scalar: &[u8; 32]) -> Vec<u8> {
    const PRIME256V1: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let mut der = vec![0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20];
    der.extend_from_slice(scalar);
    der.extend_from_slice(&[0xa0, 0x0a]);
    der.extend_from_slice(&PRIME256V1);
    der
}

pub(super) fn load_or_generate(path: &Path) -> Result<TokenSigner, AccessError> {
    if let Some(signer) = load(path)? {
        return Ok(signer);
    }
    let pkcs8 = generate_pkcs8()?;
    match create_exclusive(path, pem::encode("PRIVATE KEY", &pkcs8).as_bytes()) {
        Ok(()) => TokenSigner::from_pkcs8_der(&pkcs8),
        // Another process installed its key first: use that one.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            load(path)?.ok_or_else(|| AccessError::key_io(path, io::ErrorKind::NotFound.into()))
        }
        Err(e) => Err(AccessError::key_io(path, e)),
    }
}

/// The signer in the key file at `path`, or `None` if there is no file.
fn load(path: &Path) -> Result<Option<TokenSigner>, AccessError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AccessError::key_io(path, e)),
    };
    let der = match std::str::from_utf8(&bytes) {
        Ok(text) if text.contains("-----BEGIN ") => pem::decode(text, &PRIVATE_KEY_LABELS)
            .map(|(_, der)| der)
            .ok_or_else(|| AccessError::InvalidKey(format!("{}: no readable private key block", path.display())))?,
        _ => bytes,
    };
    TokenSigner::from_pkcs8_der(&der).map(Some)
}

/// Creates `path` with `contents` (mode 0600) unless it exists, durably and atomically.
fn create_exclusive(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let name =
        path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "key path has no file name"))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    // A leftover from a crashed process that had our pid holds no key anyone uses.
    let _ = fs::remove_file(&tmp);
    let result = write_synced(&tmp, contents).and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    result?;
    // Persist the new directory entry, or a power cut could lose the key after tokens went out.
    File::open(dir)?.sync_all()
}

fn write_synced(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}
