use std::os::unix::fs::PermissionsExt as _;

use aws_lc_rs::{
    encoding::{AsDer as _, EcPrivateKeyRfc5915Der},
    rand::SystemRandom,
};

use super::*;
use crate::scope::AccessEntry;

const ISS: &str = "https://registry.example";
const AUD: &str = "berth";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn claims() -> Claims {
    Claims::new(TokenKind::Registry, ISS, "alice", AUD, now(), 300)
        .with_session("sess_1")
        .with_access(vec![AccessEntry { kind: "repository".into(), name: "a/b".into(), actions: vec!["pull".into()] }])
}

fn verify(signer: &TokenSigner, token: &str) -> Result<Claims, TokenError> {
    signer.verify(token, ISS, AUD, TokenKind::Registry)
}

fn b64(json: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(json).unwrap())
}

fn header_of(token: &str) -> serde_json::Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

#[test]
fn sign_and_verify_round_trip() {
    let signer = TokenSigner::generate().unwrap();
    let claims = claims();
    let token = signer.sign(&claims).unwrap();
    assert_eq!(verify(&signer, &token), Ok(claims));
    let header = header_of(&token);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], signer.key_id());
}

#[test]
fn alg_none_is_rejected() {
    let signer = TokenSigner::generate().unwrap();
    let payload = b64(&serde_json::to_value(claims()).unwrap());
    for header in [serde_json::json!({"alg": "none"}), serde_json::json!({"alg": "none", "typ": "JWT"})] {
        let unsigned = format!("{}.{payload}.", b64(&header));
        assert_eq!(verify(&signer, &unsigned), Err(TokenError::Invalid));
        let forged_sig = format!("{}.{payload}.AAAA", b64(&header));
        assert_eq!(verify(&signer, &forged_sig), Err(TokenError::Invalid));
    }
}

#[test]
fn hs256_keyed_with_the_public_key_is_rejected() {
    let signer = TokenSigner::generate().unwrap();
    let pem = signer.public_key_pem();
    for secret in [pem.as_bytes(), signer.public_key_der(), &signer.public_point[..]] {
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(), &EncodingKey::from_secret(secret)).unwrap();
        assert_eq!(verify(&signer, &token), Err(TokenError::Invalid));
    }
}

#[test]
fn expiry_honours_leeway() {
    let signer = TokenSigner::generate().unwrap();
    let mut claims = claims();
    claims.exp = now() - 10;
    assert!(verify(&signer, &signer.sign(&claims).unwrap()).is_ok(), "within the 30 s leeway");
    claims.exp = now() - 60;
    assert_eq!(verify(&signer, &signer.sign(&claims).unwrap()), Err(TokenError::Expired));
}

#[test]
fn not_yet_valid_is_rejected() {
    let signer = TokenSigner::generate().unwrap();
    let mut claims = claims();
    claims.nbf = now() + 10;
    assert!(verify(&signer, &signer.sign(&claims).unwrap()).is_ok(), "within the 30 s leeway");
    claims.nbf = now() + 120;
    assert_eq!(verify(&signer, &signer.sign(&claims).unwrap()), Err(TokenError::Invalid));
}

#[test]
fn wrong_issuer_audience_or_kind_is_rejected() {
    let signer = TokenSigner::generate().unwrap();
    let token = signer.sign(&claims()).unwrap();
    assert_eq!(signer.verify(&token, "https://other", AUD, TokenKind::Registry), Err(TokenError::Invalid));
    assert_eq!(signer.verify(&token, ISS, "other", TokenKind::Registry), Err(TokenError::Invalid));
    assert_eq!(signer.verify(&token, ISS, AUD, TokenKind::Login), Err(TokenError::Invalid));
    assert_eq!(signer.verify(&token, ISS, AUD, TokenKind::Refresh), Err(TokenError::Invalid));
}

#[test]
fn tampered_payload_is_rejected() {
    let signer = TokenSigner::generate().unwrap();
    let token = signer.sign(&claims()).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged = claims();
    forged.sub = "admin".into();
    let tampered = format!("{}.{}.{}", parts[0], b64(&serde_json::to_value(&forged).unwrap()), parts[2]);
    assert_eq!(verify(&signer, &tampered), Err(TokenError::Invalid));
}

#[test]
fn signature_from_another_key_is_rejected() {
    let signer = TokenSigner::generate().unwrap();
    let other = TokenSigner::generate().unwrap();
    assert_ne!(signer.key_id(), other.key_id());
    assert_eq!(verify(&signer, &other.sign(&claims()).unwrap()), Err(TokenError::Invalid));
    // Even when the forger copies our kid into the header.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(signer.key_id().to_owned());
    let token = jsonwebtoken::encode(&header, &claims(), &other.encoding).unwrap();
    assert_eq!(verify(&signer, &token), Err(TokenError::Invalid));
}

#[test]
fn foreign_kid_is_rejected() {
    let signer = TokenSigner::generate().unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ABCD:EFGH".into());
    let token = jsonwebtoken::encode(&header, &claims(), &signer.encoding).unwrap();
    assert_eq!(verify(&signer, &token), Err(TokenError::Invalid));
}

#[test]
fn garbage_is_rejected() {
    let signer = TokenSigner::generate().unwrap();
    for token in ["", "a", "a.b", "a.b.c", "a.b.c.d", "..", "berth_pat_x"] {
        assert_eq!(verify(&signer, token), Err(TokenError::Invalid), "{token:?}");
    }
}

#[test]
fn claims_wire_form() {
    let mut claims = Claims::new(TokenKind::Login, ISS, "bob", AUD, 1000, 60);
    assert_eq!((claims.iat, claims.nbf, claims.exp), (1000, 1000, 1060));
    assert_eq!(claims.jti.len(), 22);
    assert_ne!(Claims::new(TokenKind::Login, ISS, "bob", AUD, 1000, 60).jti, claims.jti);
    claims.jti = "j".into();
    let json = serde_json::to_value(&claims).unwrap();
    assert_eq!(json["kind"], "login");
    assert!(json.get("sid").is_none(), "absent session is omitted");
    assert_eq!(json["access"], serde_json::json!([]));
    let mut without_access = json.clone();
    without_access.as_object_mut().unwrap().remove("access");
    assert_eq!(serde_json::from_value::<Claims>(without_access).unwrap(), claims);
}

#[test]
fn key_id_is_libtrust_shaped_and_stable() {
    let signer = TokenSigner::generate().unwrap();
    let groups: Vec<&str> = signer.key_id().split(':').collect();
    assert_eq!(groups.len(), 12);
    assert!(groups.iter().all(|g| g.len() == 4 && g.bytes().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())));
    assert_eq!(libtrust_key_id(signer.public_key_der()), signer.key_id());
}

#[test]
fn public_key_exports() {
    let signer = TokenSigner::generate().unwrap();
    let pem = signer.public_key_pem();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    assert_eq!(pem::decode(&pem, &["PUBLIC KEY"]).unwrap().1, signer.public_key_der());
    let jwk = &signer.jwks()["keys"][0];
    assert_eq!(jwk["kid"], signer.key_id());
    assert_eq!(jwk["crv"], "P-256");
    assert_eq!(jwk["x"].as_str().unwrap().len(), 43);
    assert_eq!(jwk["y"].as_str().unwrap().len(), 43);
}

#[test]
fn key_file_is_created_once_with_private_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys/token.pem");
    let first = TokenSigner::load_or_generate(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(std::fs::read_to_string(&path).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
    let again = TokenSigner::load_or_generate(&path).unwrap();
    assert_eq!(again.key_id(), first.key_id());
    // Tokens from before a restart still verify.
    assert!(verify(&again, &first.sign(&claims()).unwrap()).is_ok());
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left behind");
}

#[test]
fn key_file_accepts_der_and_sec1_pem() {
    let dir = tempfile::tempdir().unwrap();
    let pkcs8 = key_file::generate_pkcs8().unwrap();
    let expected = TokenSigner::from_pkcs8_der(&pkcs8).unwrap();

    let der_path = dir.path().join("key.der");
    std::fs::write(&der_path, &pkcs8).unwrap();
    assert_eq!(TokenSigner::load_or_generate(&der_path).unwrap().key_id(), expected.key_id());

    let key_pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).unwrap();
    let sec1: EcPrivateKeyRfc5915Der<'static> = key_pair.private_key().as_der().unwrap();
    let openssl_style =
        format!("{}{}", pem::encode("EC PARAMETERS", b"\x06\x08"), pem::encode("EC PRIVATE KEY", sec1.as_ref()));
    let sec1_path = dir.path().join("key.pem");
    std::fs::write(&sec1_path, openssl_style).unwrap();
    assert_eq!(TokenSigner::load_or_generate(&sec1_path).unwrap().key_id(), expected.key_id());
}

#[test]
fn unusable_key_files_are_errors_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.pem");
    std::fs::write(&path, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").unwrap();
    assert!(matches!(TokenSigner::load_or_generate(&path), Err(AccessError::InvalidKey(_))));
    std::fs::write(&path, b"\x30\x03garbage").unwrap();
    assert!(matches!(TokenSigner::load_or_generate(&path), Err(AccessError::InvalidKey(_))));
    assert_eq!(std::fs::read(&path).unwrap(), b"\x30\x03garbage", "a bad key is never overwritten");

    let p384 =
        EcdsaKeyPair::generate_pkcs8(&aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    assert!(matches!(TokenSigner::from_pkcs8_der(p384.as_ref()), Err(AccessError::InvalidKey(_))));
}

#[test]
fn signer_debug_hides_key_material() {
    let signer = TokenSigner::generate().unwrap();
    let debug = format!("{signer:?}");
    assert!(debug.contains(signer.key_id()));
    assert!(!debug.contains("encoding"));
}
