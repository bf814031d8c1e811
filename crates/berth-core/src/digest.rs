//! Content digests (`algorithm:encoded`) and the streaming hashers that produce them.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;
use sha2::digest::common::hazmat::{SerializableState, SerializedState};

/// A digest algorithm berth can compute and verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as it appears in a digest string.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the lowercase hex encoding of this algorithm's output.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// A fresh streaming hasher for this algorithm.
    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
}

impl FromStr for Algorithm {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            other if is_valid_algorithm_syntax(other) => Err(DigestError::UnsupportedAlgorithm(other.to_owned())),
            _ => Err(DigestError::Malformed),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a digest string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest is not of the form algorithm:encoded")]
    Malformed,
    #[error("digest algorithm {0:?} is not supported (use sha256 or sha512)")]
    UnsupportedAlgorithm(String),
    #[error("digest encoding must be {expected} lowercase hex characters")]
    BadEncoding { expected: usize },
}

/// A validated content digest such as `sha256:e3b0c442…`.
///
/// Only `sha256` and `sha512` are accepted, with lowercase hex of the exact
/// length, so a digest string is canonical and can be used as a storage key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    text: String,
    algorithm_len: usize,
}

impl Digest {
    /// Builds a digest from an algorithm and raw hash output.
    pub fn from_raw(algorithm: Algorithm, raw: &[u8]) -> Self {
        let text = format!("{}:{}", algorithm.as_str(), hex::encode(raw));
        Digest { algorithm_len: algorithm.as_str().len(), text }
    }

    /// Computes the digest of `bytes` with `algorithm`.
    pub fn compute(algorithm: Algorithm, bytes: &[u8]) -> Self {
        let mut hasher = algorithm.hasher();
        hasher.update(bytes);
        hasher.finish()
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Self {
        Self::compute(Algorithm::Sha256, bytes)
    }

    pub fn algorithm(&self) -> Algorithm {
        match &self.text[..self.algorithm_len] {
            "sha512" => Algorithm::Sha512,
            _ => Algorithm::Sha256,
        }
    }

    /// The hex part after the colon.
    pub fn encoded(&self) -> &str {
        &self.text[self.algorithm_len + 1..]
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Returns true when `s` looks like a digest (contains `:`), whether valid or not.
    pub fn looks_like_digest(s: &str) -> bool {
        s.contains(':')
    }
}

fn is_valid_algorithm_syntax(s: &str) -> bool {
    // algorithm-component ([+._-] algorithm-component)*, component = [a-z0-9]+
    !s.is_empty()
        && s.split(['+', '.', '_', '-'])
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, encoded) = s.split_once(':').ok_or(DigestError::Malformed)?;
        if encoded.is_empty() || !encoded.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
        {
            return Err(DigestError::Malformed);
        }
        let algorithm: Algorithm = alg.parse()?;
        let expected = algorithm.hex_len();
        if encoded.len() != expected || !encoded.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(DigestError::BadEncoding { expected });
        }
        Ok(Digest { text: s.to_owned(), algorithm_len: alg.len() })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A streaming hasher for one of the supported algorithms.
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The hasher's internal state as bytes, so an upload can continue on another
    /// node or after a restart without re-reading what it already received.
    pub fn state(&self) -> Vec<u8> {
        match self {
            Hasher::Sha256(h) => h.serialize().to_vec(),
            Hasher::Sha512(h) => h.serialize().to_vec(),
        }
    }

    /// Rebuilds a hasher from [`Hasher::state`]; `None` if the bytes do not fit.
    pub fn from_state(algorithm: Algorithm, state: &[u8]) -> Option<Hasher> {
        match algorithm {
            Algorithm::Sha256 => {
                let state = SerializedState::<sha2::Sha256>::try_from(state).ok()?;
                sha2::Sha256::deserialize(&state).ok().map(Hasher::Sha256)
            }
            Algorithm::Sha512 => {
                let state = SerializedState::<sha2::Sha512>::try_from(state).ok()?;
                sha2::Sha512::deserialize(&state).ok().map(Hasher::Sha512)
            }
        }
    }

    /// Consumes the hasher and returns the digest of everything fed to it.
    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest::from_raw(Algorithm::Sha256, &h.finalize()),
            Hasher::Sha512(h) => Digest::from_raw(Algorithm::Sha512, &h.finalize()),
        }
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hasher({})", self.algorithm())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn computes_known_digests() {
        assert_eq!(Digest::sha256(b"").as_str(), EMPTY_SHA256);
        let d = Digest::compute(Algorithm::Sha512, b"");
        assert!(d.as_str().starts_with("sha512:cf83e1357eefb8bd"));
        assert_eq!(d.encoded().len(), 128);
        assert_eq!(d.algorithm(), Algorithm::Sha512);
    }

    #[test]
    fn parses_valid_digests() {
        let d: Digest = EMPTY_SHA256.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.encoded().len(), 64);
        assert_eq!(d.to_string(), EMPTY_SHA256);
    }

    #[test]
    fn rejects_invalid_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:totallywrong",
            "sha256:baddigeststring",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:../../etc/passwd",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} should be rejected");
        }
        assert_eq!("blake3:abcd".parse::<Digest>(), Err(DigestError::UnsupportedAlgorithm("blake3".into())));
    }

    #[test]
    fn hasher_state_round_trips() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut h = alg.hasher();
            h.update(&[7u8; 1000]);
            let restored = Hasher::from_state(alg, &h.state()).unwrap();
            let (mut a, mut b) = (h, restored);
            a.update(b"tail");
            b.update(b"tail");
            assert_eq!(a.finish(), b.finish());
        }
        assert!(Hasher::from_state(Algorithm::Sha256, b"short").is_none());
    }

    #[test]
    fn hasher_streams() {
        let mut h = Algorithm::Sha256.hasher();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.finish(), Digest::sha256(b"hello world"));
    }
}
