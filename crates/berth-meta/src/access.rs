//! Access-control records: users, projects, members, tokens, sessions, the
//! chained audit log and system settings.
//!
//! Every change that the audit log must account for takes an [`AuditDraft`] and
//! writes the entry in the same transaction as the change, so the log can never
//! miss a change that happened (or record one that did not).

use async_trait::async_trait;

use crate::MetaError;

/// A user as stored (the password hash included; never serialised to clients).
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub password_hash: String,
    pub role: String,
    pub is_active: bool,
    pub must_change_password: bool,
    pub totp_secret: Option<String>,
    pub totp_enabled: bool,
    /// JSON array of hashed single-use recovery codes.
    pub recovery_codes: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_login: Option<i64>,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub email: Option<String>,
    pub password_hash: String,
    pub role: String,
    pub must_change_password: bool,
}

/// Fields to change on a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub email: Option<Option<String>>,
    pub role: Option<String>,
    pub password_hash: Option<String>,
    pub must_change_password: Option<bool>,
    pub is_active: Option<bool>,
    /// Two-factor state: (secret, enabled, recovery codes JSON).
    pub totp: Option<(Option<String>, bool, Option<String>)>,
}

/// A project: the first segment of repository names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRecord {
    pub name: String,
    pub visibility: String,
    pub description: String,
    pub created_by: Option<i64>,
    pub created_at: i64,
}

/// A personal access token as stored (only the hash of the secret).
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub lookup: String,
    pub hash: String,
    /// `pull`, `push`, `delete`.
    pub permissions: Vec<String>,
    /// Repository globs; empty means every repository the owner can reach.
    pub repositories: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A token to create.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub user_id: i64,
    pub name: String,
    pub lookup: String,
    pub hash: String,
    pub permissions: Vec<String>,
    pub repositories: Vec<String>,
    pub expires_at: Option<i64>,
}

/// A login session (web UI cookie or management JWT `sid`).
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: i64,
    pub ip: String,
    pub csrf_hash: String,
    pub created_at: i64,
    pub last_seen: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// What happened, by whom, from where: one audit entry before it is chained.
#[derive(Debug, Clone)]
pub struct AuditDraft {
    /// `info`, `warning` or `error`.
    pub level: &'static str,
    /// snake_case event (`login_success`, `token_created`).
    pub event: String,
    /// dotted action (`auth.login`, `token.create`).
    pub action: String,
    pub user_id: Option<i64>,
    pub username: String,
    pub ip_address: String,
    pub resource: String,
    /// `success` or `failure`.
    pub status: &'static str,
    /// Extra facts (a JSON object; the user agent goes here).
    pub detail: serde_json::Value,
}

/// A chained audit entry as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    /// RFC 3339 UTC, exactly as hashed.
    pub timestamp: String,
    pub at: i64,
    pub level: String,
    pub event: String,
    pub action: String,
    pub user_id: Option<i64>,
    pub username: String,
    pub ip_address: String,
    pub resource: String,
    pub status: String,
    /// The detail object as stored JSON text.
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Filters of an audit listing; every field optional.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub event: Option<String>,
    pub action: Option<String>,
    pub username: Option<String>,
    /// Unix seconds, inclusive.
    pub from: Option<i64>,
    /// Unix seconds, inclusive.
    pub to: Option<i64>,
}

/// Users, projects, tokens, sessions and settings.
#[async_trait]
pub trait AccessStore: Send + Sync {
    async fn count_users(&self) -> Result<i64, MetaError>;
    /// Creates a user; [`MetaError::Conflict`] when the name is taken.
    async fn create_user(&self, user: &NewUser, audit: &AuditDraft) -> Result<UserRecord, MetaError>;
    async fn user_by_id(&self, id: i64) -> Result<Option<UserRecord>, MetaError>;
    async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>, MetaError>;
    /// A page of users by id, and the total count.
    async fn list_users(&self, offset: i64, limit: i64) -> Result<(Vec<UserRecord>, i64), MetaError>;
    /// Applies `update`; `None` when the user does not exist. Refuses
    /// ([`MetaError::Conflict`]) to leave no active admin.
    async fn update_user(
        &self,
        id: i64,
        update: &UserUpdate,
        audit: &AuditDraft,
    ) -> Result<Option<UserRecord>, MetaError>;
    /// Deletes a user (their tokens and sessions go too); false when absent.
    /// Refuses ([`MetaError::Conflict`]) to delete the last active admin.
    async fn delete_user(&self, id: i64, audit: &AuditDraft) -> Result<bool, MetaError>;
    /// Records a successful login.
    async fn record_login(&self, id: i64, at: i64) -> Result<(), MetaError>;

    async fn project(&self, name: &str) -> Result<Option<ProjectRecord>, MetaError>;
    /// The project's visibility and `user_id`'s role in it, in one round trip;
    /// `None` when the project does not exist.
    async fn project_access(
        &self,
        name: &str,
        user_id: Option<i64>,
    ) -> Result<Option<(String, Option<String>)>, MetaError>;
    /// Creates the project with `owner` as its owner unless it exists. True when created.
    async fn ensure_project(&self, name: &str, owner: Option<i64>, audit: &AuditDraft) -> Result<bool, MetaError>;
    /// Sets visibility and description; false when the project does not exist.
    async fn update_project(
        &self,
        name: &str,
        visibility: Option<&str>,
        description: Option<&str>,
        audit: &AuditDraft,
    ) -> Result<bool, MetaError>;
    /// Sets (`Some`) or removes (`None`) a member's role. False when the project is missing.
    async fn set_member(
        &self,
        project: &str,
        user_id: i64,
        role: Option<&str>,
        audit: &AuditDraft,
    ) -> Result<bool, MetaError>;
    /// `(user_id, username, role)` of every member.
    async fn list_members(&self, project: &str) -> Result<Vec<(i64, String, String)>, MetaError>;

    async fn create_token(&self, token: &NewToken, audit: &AuditDraft) -> Result<TokenRecord, MetaError>;
    async fn token_by_lookup(&self, lookup: &str) -> Result<Option<TokenRecord>, MetaError>;
    /// A page of a user's tokens (revoked ones excluded), and their total.
    async fn list_tokens(&self, user_id: i64, offset: i64, limit: i64) -> Result<(Vec<TokenRecord>, i64), MetaError>;
    /// Revokes a token of `user_id`; its lookup prefix, or `None` when there is no such live token.
    async fn revoke_token(&self, user_id: i64, id: i64, audit: &AuditDraft) -> Result<Option<String>, MetaError>;
    async fn touch_token(&self, id: i64, at: i64) -> Result<(), MetaError>;

    async fn create_session(&self, session: &SessionRecord) -> Result<(), MetaError>;
    async fn session(&self, id: &str) -> Result<Option<SessionRecord>, MetaError>;
    async fn touch_session(&self, id: &str, at: i64) -> Result<(), MetaError>;
    async fn revoke_session(&self, id: &str, at: i64) -> Result<bool, MetaError>;

    async fn setting(&self, name: &str) -> Result<Option<String>, MetaError>;
    /// Stores a setting, with an audit entry in the same transaction when given.
    async fn put_setting(&self, name: &str, value: &str, audit: Option<&AuditDraft>) -> Result<(), MetaError>;

    /// Stores a setting unless one of that name exists. True when stored.
    async fn put_setting_if_absent(&self, name: &str, value: &str) -> Result<bool, MetaError>;
    /// Deletes a setting and returns its value, atomically: of several concurrent
    /// callers (on any node) only one gets the value. For single-use secrets.
    async fn take_setting(&self, name: &str) -> Result<Option<String>, MetaError>;
    /// Deletes the settings whose name starts with `prefix` last written before `before`.
    async fn purge_settings(&self, prefix: &str, before: i64) -> Result<u64, MetaError>;
    /// Stores the integer `value` under `name` unless the stored value is already
    /// at least `value`. True when stored: a monotonic claim (TOTP replay guard).
    async fn advance_setting(&self, name: &str, value: i64) -> Result<bool, MetaError>;
    /// Replaces a user's recovery codes if they still are `expected` (compare and
    /// swap, so a code is consumed once across nodes), auditing in the same
    /// transaction. False when they changed meanwhile or the user is gone.
    async fn replace_recovery_codes(
        &self,
        id: i64,
        expected: &str,
        codes: &str,
        audit: &AuditDraft,
    ) -> Result<bool, MetaError>;

    async fn record_login_failure(&self, username: &str, ip: &str, at: i64) -> Result<(), MetaError>;
    /// Failures since `since` for this username and for this IP.
    async fn login_failures(&self, username: &str, ip: &str, since: i64) -> Result<(i64, i64), MetaError>;
    /// Forgets a username's failures (after a successful login).
    async fn clear_login_failures(&self, username: &str) -> Result<(), MetaError>;
}

/// The chained audit log.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends one entry in its own transaction; returns its id.
    async fn append_audit(&self, draft: &AuditDraft) -> Result<i64, MetaError>;
    /// Newest first, with the total matching the filter.
    async fn list_audit(
        &self,
        filter: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<AuditRecord>, i64), MetaError>;
    /// `(last id, last hash)` of the chain head, to detect a truncated log.
    async fn audit_head(&self) -> Result<(i64, String), MetaError>;
    /// Oldest first: entries with id > `after_id`, at most `limit`, within the filter.
    async fn audit_after(&self, after_id: i64, filter: &AuditFilter, limit: i64)
    -> Result<Vec<AuditRecord>, MetaError>;
}

/// The entry as hashed: the fields of an [`AuditRecord`] in the canonical form
/// of `berth_access::audit_chain`.
pub fn chain_entry(record: &AuditRecord) -> berth_access::audit_chain::ChainEntry {
    berth_access::audit_chain::ChainEntry {
        id: record.id,
        timestamp: record.timestamp.clone(),
        level: record.level.clone(),
        event: record.event.clone(),
        action: record.action.clone(),
        user_id: record.user_id,
        username: record.username.clone(),
        ip_address: record.ip_address.clone(),
        resource: record.resource.clone(),
        status: record.status.clone(),
        detail: serde_json::from_str(&record.detail).unwrap_or(serde_json::Value::Null),
    }
}
