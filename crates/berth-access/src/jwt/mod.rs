//! ES256 JSON Web Tokens: the signing key, signing and strict verification.
//!
//! Verification accepts ES256 and nothing else: the algorithm is fixed by the
//! verifier, never taken from the token header, so `alg: none` and the
//! "HS256 keyed with the public key" confusion attack are both refused.

mod claims;
mod key_file;
mod pem;

use std::{fmt, path::Path};

use aws_lc_rs::{
    encoding::{AsDer as _, PublicKeyX509Der},
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use sha2::{Digest as _, Sha256};

pub use claims::{Claims, TokenKind};

use crate::{base32, error::AccessError};

/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;

/// Why a token was refused. Deliberately coarse: callers answer 401 either way,
/// and details would only help an attacker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Well-formed and correctly signed, but past its `exp`.
    #[error("token expired")]
    Expired,
    /// Anything else: malformed, wrong algorithm, bad signature, wrong issuer,
    /// audience or kind, not yet valid.
    #[error("invalid token")]
    Invalid,
}

/// The registry's ES256 (ECDSA P-256, SHA-256) key, able to sign and verify tokens.
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// X.509 SubjectPublicKeyInfo DER of the public key.
    public_der: Vec<u8>,
    /// Uncompressed SEC1 point (`04 || x || y`).
    public_point: Vec<u8>,
    kid: String,
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("TokenSigner").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// Loads the key at `path` (PKCS#8 or SEC1, PEM or DER), or generates a new
    /// one there on first start (PEM, mode 0600, written atomically).
    pub fn load_or_generate(path: &Path) -> Result<Self, AccessError> {
        key_file::load_or_generate(path)
    }

    /// A freshly generated key that lives only in memory (tests, ephemeral setups).
    pub fn generate() -> Result<Self, AccessError> {
        Self::from_pkcs8_der(&Self::generate_pkcs8_der()?)
    }

    /// A new P-256 private key as PKCS#8 DER, for callers that store the key
    /// elsewhere (a database shared by several nodes); load it with [`Self::from_pkcs8_der`].
    pub fn generate_pkcs8_der() -> Result<Vec<u8>, AccessError> {
        key_file::generate_pkcs8()
    }

    /// Builds a signer from a P-256 private key in DER: PKCS#8 (what berth
    /// writes) or SEC1/RFC 5915 (what `openssl ecparam -genkey` writes).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, AccessError> {
        let key_pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|e| AccessError::InvalidKey(e.to_string()))?;
        // jsonwebtoken's aws-lc backend signs with `EcdsaKeyPair::from_pkcs8`, so
        // normalise SEC1 input to PKCS#8.
        let pkcs8 = key_pair.to_pkcs8v1().map_err(|_| AccessError::InvalidKey("cannot re-encode".into()))?;
        let public_der: PublicKeyX509Der<'static> =
            key_pair.public_key().as_der().map_err(|_| AccessError::InvalidKey("cannot encode public key".into()))?;
        let public_point = key_pair.public_key().as_ref().to_vec();
        Ok(TokenSigner {
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            // The raw point, not the SPKI: it is what every jsonwebtoken backend accepts.
            decoding: DecodingKey::from_ec_der(&public_point),
            kid: libtrust_key_id(public_der.as_ref()),
            public_der: public_der.as_ref().to_vec(),
            public_point,
        })
    }

    /// The key id put in every token header: the libtrust fingerprint Docker
    /// uses (base32 of the first 240 bits of SHA-256 of the SPKI DER, in
    /// colon-separated groups of four), stable for the life of the key.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// The public key as X.509 SubjectPublicKeyInfo DER.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_der
    }

    /// The public key as a `PUBLIC KEY` PEM block, for documentation and for
    /// registries that verify berth's tokens.
    pub fn public_key_pem(&self) -> String {
        pem::encode("PUBLIC KEY", &self.public_der)
    }

    /// The public key as a JWK Set (`{"keys":[...]}`) for a JWKS endpoint.
    pub fn jwks(&self) -> serde_json::Value {
        // The point is 0x04 followed by 32-byte x and y coordinates.
        let (x, y) = self.public_point[1..].split_at(32);
        serde_json::json!({"keys": [{
            "kty": "EC",
            "crv": "P-256",
            "alg": "ES256",
            "use": "sig",
            "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
        }]})
    }

    /// Signs `claims` as a compact JWT with header `{"alg":"ES256","typ":"JWT","kid":...}`.
    pub fn sign(&self, claims: &Claims) -> Result<String, AccessError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| AccessError::Signing(e.to_string()))
    }

    /// Verifies signature, algorithm, `exp`/`nbf` (with [`LEEWAY_SECS`]), issuer,
    /// audience and kind, and returns the claims.
    pub fn verify(
        &self,
        token: &str,
        expected_issuer: &str,
        expected_audience: &str,
        expected_kind: TokenKind,
    ) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[expected_issuer]);
        validation.set_audience(&[expected_audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid,
        })?;
        // A token naming another key was not signed by this one, whatever the maths says.
        if data.header.kid.as_deref().is_some_and(|kid| kid != self.kid) || data.claims.kind != expected_kind {
            return Err(TokenError::Invalid);
        }
        Ok(data.claims)
    }
}

/// Docker libtrust key id of an SPKI DER public key.
fn libtrust_key_id(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let encoded = base32::encode(&digest[..30]);
    let groups: Vec<&str> = encoded.as_bytes().chunks(4).map(|g| std::str::from_utf8(g).unwrap_or_default()).collect();
    groups.join(":")
}

#[cfg(test)]
mod tests;
