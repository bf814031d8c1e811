//! The tamper-evident audit chain: each entry's hash covers the previous hash
//! and the entry's canonical JSON, so editing, deleting or reordering any
//! stored entry breaks every hash after it.
//!
//! # Canonical form (frozen: `berth audit verify` recomputes it forever)
//!
//! The entry is one JSON object with exactly the fields of [`ChainEntry`]:
//! `action, detail, event, id, ip_address, level, resource, status,
//! timestamp, user_id, username`. It is written with
//!
//! - object keys sorted by their UTF-8 bytes, at every depth (inside `detail` too);
//! - no whitespace anywhere;
//! - `user_id` always present, `null` when there is no user;
//! - strings escaped minimally: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other
//!   characters below U+0020 as `\u00xx` (lowercase hex), everything else
//!   (including non-ASCII) as raw UTF-8;
//! - numbers as `serde_json` 1.x displays them (integers in plain decimal;
//!   avoid floats in `detail`).
//!
//! The hash is `lowercase_hex(SHA-256(prev_hash ‖ canonical))`, where
//! `prev_hash` is the previous entry's hash as 64 ASCII hex characters, and
//! [`GENESIS_HASH`] (64 zeros) for the first entry.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry, with exactly the fields that are hashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainEntry {
    /// Database id, strictly increasing along the chain.
    pub id: i64,
    /// RFC 3339 UTC, exactly as stored.
    pub timestamp: String,
    /// `info`, `warning` or `error`.
    pub level: String,
    /// snake_case event (`login_success`).
    pub event: String,
    /// Dotted action (`auth.login`).
    pub action: String,
    /// The acting user, if any.
    pub user_id: Option<i64>,
    /// The acting user's name (empty if anonymous).
    pub username: String,
    /// The client address.
    pub ip_address: String,
    /// What was acted on (a path, a repository).
    pub resource: String,
    /// `success` or `failure`.
    pub status: String,
    /// Extra facts, usually an object.
    pub detail: Value,
}

impl ChainEntry {
    /// The canonical JSON hashed into the chain; see the module doc.
    pub fn canonical_json(&self) -> String {
        let fields: [(&str, Value); 11] = [
            ("action", Value::from(self.action.as_str())),
            ("detail", self.detail.clone()),
            ("event", Value::from(self.event.as_str())),
            ("id", Value::from(self.id)),
            ("ip_address", Value::from(self.ip_address.as_str())),
            ("level", Value::from(self.level.as_str())),
            ("resource", Value::from(self.resource.as_str())),
            ("status", Value::from(self.status.as_str())),
            ("timestamp", Value::from(self.timestamp.as_str())),
            ("user_id", self.user_id.map_or(Value::Null, Value::from)),
            ("username", Value::from(self.username.as_str())),
        ];
        let object: serde_json::Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let mut out = String::new();
        write_canonical(&Value::Object(object), &mut out);
        out
    }
}

/// Writes `value` in canonical form. Keys are sorted here rather than trusting
/// `serde_json::Map`, whose order changes if any crate enables `preserve_order`.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

/// Writes a JSON string with the minimal escaping of the module doc.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < '\u{20}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The hash of an entry: lowercase hex SHA-256 of `prev_hash` then `canonical`.
pub fn chain_hash(prev_hash: &str, canonical: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(canonical.as_bytes());
    hex::encode(hasher.finalize())
}

/// What is wrong at a broken link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFault {
    /// The stored hash is not the hash of this entry after the previous one:
    /// this entry was edited, or one before it was removed or edited.
    HashMismatch,
    /// The id is not greater than the previous entry's: entries were reordered or duplicated.
    OutOfOrder,
}

impl std::fmt::Display for LinkFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LinkFault::HashMismatch => "hash mismatch",
            LinkFault::OutOfOrder => "id out of order",
        })
    }
}

/// The first entry at which a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at entry {id}: {reason}")]
pub struct BrokenLink {
    /// The id of the entry that does not verify.
    pub id: i64,
    /// Why.
    pub reason: LinkFault,
}

/// Verifies a whole chain, oldest entry first, starting from [`GENESIS_HASH`].
pub fn verify_chain<'a>(entries: impl Iterator<Item = (&'a ChainEntry, &'a str)>) -> Result<(), BrokenLink> {
    verify_chain_from(GENESIS_HASH, entries).map(|_| ())
}

/// Verifies a run of entries (oldest first) that follows an entry whose hash
/// was `prev_hash`; returns the last hash, to continue from in the next batch.
pub fn verify_chain_from<'a>(
    prev_hash: &str,
    entries: impl Iterator<Item = (&'a ChainEntry, &'a str)>,
) -> Result<String, BrokenLink> {
    let mut prev = prev_hash.to_owned();
    let mut last_id = None;
    for (entry, stored) in entries {
        if last_id.is_some_and(|last| entry.id <= last) {
            return Err(BrokenLink { id: entry.id, reason: LinkFault::OutOfOrder });
        }
        if chain_hash(&prev, &entry.canonical_json()) != stored {
            return Err(BrokenLink { id: entry.id, reason: LinkFault::HashMismatch });
        }
        last_id = Some(entry.id);
        stored.clone_into(&mut prev);
    }
    Ok(prev)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(id: i64) -> ChainEntry {
        ChainEntry {
            id,
            timestamp: "2026-01-13T10:30:00Z".into(),
            level: "info".into(),
            event: "login_success".into(),
            action: "auth.login".into(),
            user_id: Some(1),
            username: "admin".into(),
            ip_address: "192.168.1.100".into(),
            resource: "/api/v1/auth/login".into(),
            status: "success".into(),
            detail: json!({"user_agent": "curl/8", "a": [1, {"z": null, "b": true}]}),
        }
    }

    /// Builds a correctly hashed chain of entries with these ids.
    fn chain_with_ids(ids: &[i64]) -> Vec<(ChainEntry, String)> {
        let mut prev = GENESIS_HASH.to_owned();
        ids.iter()
            .map(|id| {
                let entry = entry(*id);
                prev = chain_hash(&prev, &entry.canonical_json());
                (entry, prev.clone())
            })
            .collect()
    }

    fn chain(n: i64) -> Vec<(ChainEntry, String)> {
        chain_with_ids(&(1..=n).collect::<Vec<_>>())
    }

    fn verify(entries: &[(ChainEntry, String)]) -> Result<(), BrokenLink> {
        verify_chain(entries.iter().map(|(e, h)| (e, h.as_str())))
    }

    #[test]
    fn canonical_json_is_pinned() {
        // This exact string is what every stored hash was computed over: never change it.
        let expected = concat!(
            r#"{"action":"auth.login","detail":{"a":[1,{"b":true,"z":null}],"user_agent":"curl/8"},"#,
            r#""event":"login_success","id":7,"ip_address":"192.168.1.100","level":"info","#,
            r#""resource":"/api/v1/auth/login","status":"success","timestamp":"2026-01-13T10:30:00Z","#,
            r#""user_id":1,"username":"admin"}"#
        );
        assert_eq!(entry(7).canonical_json(), expected);
        assert_eq!(
            chain_hash(GENESIS_HASH, expected),
            hex::encode(Sha256::digest(format!("{GENESIS_HASH}{expected}").as_bytes()))
        );
    }

    #[test]
    fn canonical_json_keeps_null_user_and_matches_serde_escaping() {
        let mut anonymous = entry(1);
        anonymous.user_id = None;
        anonymous.username = "\"quoted\"\\ \u{1}\u{7f} é \n\t".into();
        let canonical = anonymous.canonical_json();
        assert!(canonical.contains(r#""user_id":null"#), "{canonical}");
        // Same escaping as serde_json, so other tools can reproduce it.
        let serde_form = serde_json::to_string(&anonymous.username).unwrap();
        assert!(canonical.contains(&format!(r#""username":{serde_form}"#)), "{canonical}");
        let parsed: Value = serde_json::from_str(&canonical).unwrap();
        assert_eq!(parsed["username"], Value::from(anonymous.username));
    }

    #[test]
    fn valid_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(()));
        assert_eq!(verify(&[]), Ok(()));
    }

    #[test]
    fn verification_continues_across_batches() {
        let entries = chain(6);
        let (first, second) = entries.split_at(3);
        let middle = verify_chain_from(GENESIS_HASH, first.iter().map(|(e, h)| (e, h.as_str()))).unwrap();
        assert_eq!(middle, first[2].1);
        assert!(verify_chain_from(&middle, second.iter().map(|(e, h)| (e, h.as_str()))).is_ok());
    }

    #[test]
    fn edited_entry_breaks_the_chain() {
        let mut entries = chain(4);
        entries[1].0.status = "failure".into();
        assert_eq!(verify(&entries), Err(BrokenLink { id: 2, reason: LinkFault::HashMismatch }));
    }

    #[test]
    fn edited_detail_breaks_the_chain() {
        let mut entries = chain(3);
        entries[2].0.detail["user_agent"] = json!("evil");
        assert_eq!(verify(&entries), Err(BrokenLink { id: 3, reason: LinkFault::HashMismatch }));
    }

    #[test]
    fn deleted_entry_breaks_the_next_link() {
        let mut entries = chain(4);
        entries.remove(1);
        assert_eq!(verify(&entries), Err(BrokenLink { id: 3, reason: LinkFault::HashMismatch }));
    }

    #[test]
    fn reordered_entries_break_the_chain() {
        let mut entries = chain(4);
        entries.swap(1, 2);
        assert_eq!(verify(&entries), Err(BrokenLink { id: 3, reason: LinkFault::HashMismatch }));
    }

    #[test]
    fn ids_must_increase_even_when_hashes_were_recomputed() {
        assert_eq!(verify(&chain_with_ids(&[1, 3, 2])), Err(BrokenLink { id: 2, reason: LinkFault::OutOfOrder }));
        assert_eq!(verify(&chain_with_ids(&[1, 2, 2])), Err(BrokenLink { id: 2, reason: LinkFault::OutOfOrder }));
        assert_eq!(verify(&chain_with_ids(&[1, 5, 9])), Ok(()), "gaps are allowed (rolled-back ids)");
    }

    #[test]
    fn rewritten_hash_is_caught_by_the_next_entry() {
        let mut entries = chain(3);
        entries[0].0.username = "mallory".into();
        entries[0].1 = chain_hash(GENESIS_HASH, &entries[0].0.canonical_json());
        assert_eq!(verify(&entries), Err(BrokenLink { id: 2, reason: LinkFault::HashMismatch }));
    }

    #[test]
    fn broken_link_message() {
        let err = BrokenLink { id: 9, reason: LinkFault::OutOfOrder };
        assert_eq!(err.to_string(), "audit chain broken at entry 9: id out of order");
    }
}
