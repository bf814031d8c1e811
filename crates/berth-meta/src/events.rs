//! The event stream and its webhook outbox.
//!
//! Every state change is recorded as one [`EventDraft`] written in the same
//! transaction as the change (registry writes take drafts as an argument;
//! audited management changes add theirs where the audit entry is chained). A
//! dispatcher later turns pending events into webhook deliveries, marking the
//! events done in the same transaction, so nothing acknowledged is lost and no
//! event is fanned out twice.

use async_trait::async_trait;

use crate::MetaError;

/// What happened. The wire names are what webhook filters match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A manifest was pushed (tagged when `tag` is set).
    Push,
    /// A manifest was pulled.
    Pull,
    /// A manifest (by digest, with its tags) or one tag was deleted.
    Delete,
    BlobPush,
    BlobMount,
    BlobDelete,
    RepositoryCreate,
    RepositoryUpdate,
    RepositoryDelete,
    /// The pull-through cache dropped a blob.
    CacheEvict,
    /// A webhook test.
    Ping,
    /// An audited management change; the name is its audit action
    /// (`user.create`, `token.revoke`, `upstream.update`, …).
    Management(String),
}

impl EventKind {
    pub fn as_str(&self) -> &str {
        match self {
            EventKind::Push => "push",
            EventKind::Pull => "pull",
            EventKind::Delete => "delete",
            EventKind::BlobPush => "blob.push",
            EventKind::BlobMount => "blob.mount",
            EventKind::BlobDelete => "blob.delete",
            EventKind::RepositoryCreate => "repository.create",
            EventKind::RepositoryUpdate => "repository.update",
            EventKind::RepositoryDelete => "repository.delete",
            EventKind::CacheEvict => "cache.evict",
            EventKind::Ping => "ping",
            EventKind::Management(action) => action,
        }
    }

    pub fn parse(name: &str) -> EventKind {
        match name {
            "push" => EventKind::Push,
            "pull" => EventKind::Pull,
            "delete" => EventKind::Delete,
            "blob.push" => EventKind::BlobPush,
            "blob.mount" => EventKind::BlobMount,
            "blob.delete" => EventKind::BlobDelete,
            "repository.create" => EventKind::RepositoryCreate,
            "repository.update" => EventKind::RepositoryUpdate,
            "repository.delete" => EventKind::RepositoryDelete,
            "cache.evict" => EventKind::CacheEvict,
            "ping" => EventKind::Ping,
            other => EventKind::Management(other.to_owned()),
        }
    }

    /// The audit actions that become events: management changes. Registry
    /// traffic (`repository.push`, …) has its own events, and logins are not
    /// state changes anyone subscribes to.
    pub fn from_audit_action(action: &str) -> Option<EventKind> {
        let family = action.split('.').next().unwrap_or("");
        matches!(family, "user" | "token" | "project" | "webhook" | "upstream" | "cache" | "system" | "member")
            .then(|| EventKind::Management(action.to_owned()))
    }
}

/// Who caused an event and from where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventActor {
    /// The user name; empty for anonymous callers and with authentication off.
    pub name: String,
    /// The client's address; empty when not known.
    pub ip: String,
}

impl EventActor {
    pub fn new(name: impl Into<String>, ip: impl Into<String>) -> Self {
        EventActor { name: name.into(), ip: ip.into() }
    }

    /// berth itself (the pull-through cache, GC, the scheduler).
    pub fn system(component: &str) -> Self {
        EventActor { name: format!("berth:{component}"), ip: String::new() }
    }
}

/// One event before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDraft {
    pub kind: EventKind,
    pub actor: EventActor,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub repository: Option<String>,
    pub digest: Option<String>,
    pub tag: Option<String>,
    pub media_type: Option<String>,
    pub size: Option<i64>,
    /// Extra facts (a JSON object).
    pub detail: serde_json::Value,
}

impl EventDraft {
    /// An event of `kind` by `actor`, now.
    pub fn new(kind: EventKind, actor: &EventActor) -> Self {
        EventDraft {
            kind,
            actor: actor.clone(),
            at_ms: now_ms(),
            repository: None,
            digest: None,
            tag: None,
            media_type: None,
            size: None,
            detail: serde_json::json!({}),
        }
    }

    pub fn repository(mut self, repo: impl Into<String>) -> Self {
        self.repository = Some(repo.into());
        self
    }

    pub fn digest(mut self, digest: impl Into<String>) -> Self {
        self.digest = Some(digest.into());
        self
    }

    pub fn tag(mut self, tag: Option<impl Into<String>>) -> Self {
        self.tag = tag.map(Into::into);
        self
    }

    pub fn media_type(mut self, media_type: impl Into<String>) -> Self {
        self.media_type = Some(media_type.into());
        self
    }

    pub fn size(mut self, size: u64) -> Self {
        self.size = Some(size as i64);
        self
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub id: i64,
    pub draft: EventDraft,
}

/// A webhook as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    pub id: i64,
    pub url: String,
    /// Event filters: a name (`push`), a family (`repository.*`) or `*`.
    pub events: Vec<String>,
    /// Repository glob (`*` crosses `/`).
    pub repository: String,
    /// The signing secret sealed with the secrets key; `None` = unsigned.
    pub secret_sealed: Option<String>,
    /// `berth` or `cloudevents`.
    pub format: String,
    pub enabled: bool,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A new webhook or the new state of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSpec {
    pub url: String,
    pub events: Vec<String>,
    pub repository: String,
    pub secret_sealed: Option<String>,
    pub format: String,
    pub enabled: bool,
}

/// One event to deliver to one webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    pub id: i64,
    pub webhook_id: i64,
    pub event_id: i64,
    /// Sent as `X-Berth-Delivery`, the same on every attempt.
    pub delivery_key: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub last_latency_ms: Option<i64>,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    pub at_ms: i64,
    pub status: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// True when the receiver answered 2xx.
    pub delivered: bool,
    /// When to try again; `None` = give up (the retry limit was reached).
    pub retry_at_ms: Option<i64>,
}

/// One recorded attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub attempt: i64,
    pub at_ms: i64,
    pub status: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// The event log, webhooks and their deliveries.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Writes events that belong to no other change (batched pulls, evictions, pings).
    /// Returns their ids, in order.
    async fn append_events(&self, events: &[EventDraft]) -> Result<Vec<i64>, MetaError>;

    /// An event by id.
    async fn event(&self, id: i64) -> Result<Option<EventRecord>, MetaError>;

    /// The oldest events not yet fanned out, at most `limit`.
    async fn pending_events(&self, limit: i64) -> Result<Vec<EventRecord>, MetaError>;

    /// Creates deliveries `(webhook_id, event_id, delivery_key)` due at `due_ms`
    /// and marks `events` fanned out, in one transaction.
    async fn fan_out(&self, events: &[i64], deliveries: &[(i64, i64, String)], due_ms: i64) -> Result<(), MetaError>;

    /// Deletes fanned-out events older than `before_ms` whose deliveries are all
    /// finished, at most `limit`. Returns how many went.
    async fn prune_events(&self, before_ms: i64, limit: i64) -> Result<u64, MetaError>;

    async fn create_webhook(&self, spec: &WebhookSpec, created_by: &str) -> Result<WebhookRecord, MetaError>;
    async fn update_webhook(&self, id: i64, spec: &WebhookSpec) -> Result<Option<WebhookRecord>, MetaError>;
    async fn webhook(&self, id: i64) -> Result<Option<WebhookRecord>, MetaError>;
    /// Webhooks by id, with the total count.
    async fn list_webhooks(&self, offset: i64, limit: i64) -> Result<(Vec<WebhookRecord>, i64), MetaError>;
    /// Every enabled webhook (the dispatcher's view).
    async fn enabled_webhooks(&self) -> Result<Vec<WebhookRecord>, MetaError>;
    /// Deletes a webhook with its deliveries. False when absent.
    async fn delete_webhook(&self, id: i64) -> Result<bool, MetaError>;

    /// Pending deliveries of one webhook due by `now_ms` (oldest first, at most
    /// `limit`), claimed until `claim_until_ms` so an attempt that is still
    /// running is not started again. Per webhook, so a slow one cannot take
    /// every slot.
    async fn claim_due_deliveries(
        &self,
        webhook_id: i64,
        now_ms: i64,
        claim_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, MetaError>;

    /// Records an attempt and moves the delivery on (delivered, retry, failed).
    async fn record_attempt(&self, delivery_id: i64, outcome: &AttemptOutcome) -> Result<(), MetaError>;

    /// A webhook's deliveries, newest first, with the total count.
    async fn list_deliveries(
        &self,
        webhook_id: i64,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<DeliveryRecord>, i64), MetaError>;

    async fn delivery(&self, id: i64) -> Result<Option<DeliveryRecord>, MetaError>;

    /// Records `event` as already fanned out and creates its one delivery to
    /// `webhook_id` (a test ping), due at `due_ms`. Returns the delivery.
    async fn create_direct_delivery(
        &self,
        webhook_id: i64,
        event: &EventDraft,
        delivery_key: &str,
        due_ms: i64,
    ) -> Result<DeliveryRecord, MetaError>;

    /// The attempts of a delivery, in order.
    async fn delivery_attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRecord>, MetaError>;

    /// Queues the event of a delivery again for the same webhook, due at
    /// `due_ms`, as a new delivery with the same delivery key (receivers that
    /// deduplicate see the same id). Returns the new delivery's id.
    async fn redeliver(&self, delivery_id: i64, due_ms: i64) -> Result<Option<i64>, MetaError>;
}

/// The current time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}
