//! What a delivery sends: berth's JSON or a CloudEvents 1.0 envelope, and the
//! signature over the exact bytes.

use berth_meta::{EventDraft, EventRecord};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

/// A webhook's payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"event","repository","tag","digest","user","timestamp",…}` (API.md §7).
    Berth,
    /// CloudEvents 1.0, structured mode (`application/cloudevents+json`).
    CloudEvents,
}

impl Format {
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "berth" => Some(Format::Berth),
            "cloudevents" => Some(Format::CloudEvents),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Berth => "berth",
            Format::CloudEvents => "cloudevents",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Berth => "application/json",
            Format::CloudEvents => "application/cloudevents+json; charset=utf-8",
        }
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(at_ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// berth's own event object (also the `data` of a CloudEvent).
fn event_object(id: i64, e: &EventDraft) -> Value {
    json!({
        "event": e.kind.as_str(),
        "event_id": id,
        "repository": e.repository,
        "tag": e.tag,
        "digest": e.digest,
        "media_type": e.media_type,
        "size": e.size,
        "user": e.actor.name,
        "ip": e.actor.ip,
        "timestamp": rfc3339_ms(e.at_ms),
        "detail": e.detail,
    })
}

/// The body of a delivery. `source` is the CloudEvents source (berth's URL).
pub fn body(format: Format, event: &EventRecord, delivery_key: &str, source: &str) -> Vec<u8> {
    let e = &event.draft;
    let value = match format {
        Format::Berth => {
            let mut v = event_object(event.id, e);
            v["delivery"] = json!(delivery_key);
            v
        }
        Format::CloudEvents => {
            let subject = match (&e.repository, &e.tag, &e.digest) {
                (Some(r), Some(t), _) => Some(format!("{r}:{t}")),
                (Some(r), None, Some(d)) => Some(format!("{r}@{d}")),
                (Some(r), None, None) => Some(r.clone()),
                _ => None,
            };
            let mut ce = json!({
                "specversion": "1.0",
                "id": format!("berth-event-{}", event.id),
                "source": source,
                "type": format!("io.berth.{}", e.kind.as_str()),
                "time": rfc3339_ms(e.at_ms),
                "datacontenttype": "application/json",
                "data": event_object(event.id, e),
            });
            if let Some(subject) = subject {
                ce["subject"] = json!(subject);
            }
            ce
        }
    };
    serde_json::to_vec(&value).expect("JSON values always serialise")
}

/// `sha256=<hex HMAC-SHA256 of body keyed with secret>`, the `X-Berth-Signature` value.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_meta::{EventActor, EventKind};

    fn event() -> EventRecord {
        let mut draft = EventDraft::new(EventKind::Push, &EventActor::new("alice", "10.0.0.1"))
            .repository("team/app")
            .digest("sha256:abc")
            .tag(Some("v1"))
            .media_type("application/vnd.oci.image.manifest.v1+json")
            .size(527);
        draft.at_ms = 1_700_000_000_123;
        EventRecord { id: 42, draft }
    }

    #[test]
    fn berth_payload_has_the_seed_fields() {
        let v: Value = serde_json::from_slice(&body(Format::Berth, &event(), "d-1", "http://x")).unwrap();
        assert_eq!(v["event"], "push");
        assert_eq!(v["repository"], "team/app");
        assert_eq!(v["tag"], "v1");
        assert_eq!(v["digest"], "sha256:abc");
        assert_eq!(v["user"], "alice");
        assert_eq!(v["timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["delivery"], "d-1");
    }

    #[test]
    fn cloudevents_payload_is_structured_mode() {
        let v: Value =
            serde_json::from_slice(&body(Format::CloudEvents, &event(), "d-1", "https://r.example")).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "io.berth.push");
        assert_eq!(v["id"], "berth-event-42");
        assert_eq!(v["source"], "https://r.example");
        assert_eq!(v["subject"], "team/app:v1");
        assert_eq!(v["data"]["digest"], "sha256:abc");
    }

    #[test]
    fn signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
