//! Who did something, from where: the start of every audit entry.

use berth_meta::AuditDraft;

/// The actor of a change, as the audit log records it.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user_id: Option<i64>,
    pub username: String,
    pub ip: String,
    pub user_agent: String,
}

impl Actor {
    /// A successful `info` entry.
    pub fn draft(&self, event: &str, action: &str, resource: &str) -> AuditDraft {
        AuditDraft {
            level: "info",
            event: event.to_owned(),
            action: action.to_owned(),
            user_id: self.user_id,
            username: self.username.clone(),
            ip_address: self.ip.clone(),
            resource: resource.to_owned(),
            status: "success",
            detail: serde_json::json!({ "user_agent": self.user_agent }),
        }
    }

    /// A failed `warning` entry.
    pub fn failure(&self, event: &str, action: &str, resource: &str, reason: &str) -> AuditDraft {
        let mut draft = self.draft(event, action, resource);
        draft.level = "warning";
        draft.status = "failure";
        draft.detail = serde_json::json!({ "user_agent": self.user_agent, "reason": reason });
        draft
    }

    /// The system itself (first start, automatic rules).
    pub fn system() -> Actor {
        Actor { user_id: None, username: "system".into(), ip: String::new(), user_agent: String::new() }
    }
}
