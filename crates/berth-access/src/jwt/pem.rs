//! Minimal PEM (RFC 7468) for the signing key file and the public key export.

use base64::{Engine as _, engine::general_purpose::STANDARD};

/// Wraps DER in a PEM block with 64-character lines.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// The DER of the first block whose label is one of `labels`, with that label.
/// Other blocks (such as OpenSSL's `EC PARAMETERS`) are skipped.
pub(crate) fn decode<'a>(text: &str, labels: &[&'a str]) -> Option<(&'a str, Vec<u8>)> {
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let body: String = lines.by_ref().take_while(|l| *l != end).collect();
        if let Some(wanted) = labels.iter().find(|wanted| **wanted == label) {
            return STANDARD.decode(body).ok().map(|der| (*wanted, der));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_wraps_lines() {
        let der: Vec<u8> = (0..=255).collect();
        let pem = encode("PRIVATE KEY", &der);
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
        assert_eq!(decode(&pem, &["PRIVATE KEY"]), Some(("PRIVATE KEY", der)));
    }

    #[test]
    fn skips_other_blocks_and_rejects_bad_base64() {
        let text = format!("{}{}", encode("EC PARAMETERS", b"params"), encode("EC PRIVATE KEY", b"key"));
        assert_eq!(decode(&text, &["PRIVATE KEY", "EC PRIVATE KEY"]), Some(("EC PRIVATE KEY", b"key".to_vec())));
        assert_eq!(decode(&text, &["PRIVATE KEY"]), None);
        assert_eq!(decode("-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n", &["PRIVATE KEY"]), None);
        assert_eq!(decode("not pem", &["PRIVATE KEY"]), None);
    }
}
