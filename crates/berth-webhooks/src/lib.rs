//! Webhook delivery from the event outbox.
//!
//! Registry writes and audited management changes store their events in the
//! metadata database in the same transaction as the change. On every node a
//! dispatcher loop flushes batched pull events and keeps the "does anyone want
//! pulls" flag current; the node holding the `webhooks` lease also
//!
//! 1. fans pending events out into one delivery per matching webhook (marking
//!    the events done in the same transaction), and
//! 2. attempts due deliveries, each webhook with its own concurrency slots, so
//!    a slow or dead receiver only delays itself.
//!
//! Delivery is at least once: an attempt is recorded after it ends, so a crash
//! mid-attempt repeats it (same `X-Berth-Delivery` id, for deduplication).
//! Failures retry with exponential backoff up to a limit; every attempt is kept.

pub mod filter;
pub mod payload;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_access::sealed::SecretsKey;
use berth_meta::{AttemptOutcome, DeliveryRecord, EventRecord, Metadata, WebhookRecord, now_ms};
use berth_registry::Registry;
use tokio::sync::Semaphore;

pub use payload::Format;

/// The sealing context of webhook secrets.
const SECRET_CONTEXT: &str = "webhook-secret";
/// Events fanned out per database round.
const FAN_OUT_BATCH: i64 = 500;
/// Deliveries a worker claims at once. One: a claim outlives its attempts, and
/// after a crash the claimed deliveries wait for the claim to run out.
const CLAIM_BATCH: i64 = 1;
/// How long the dispatcher lease lasts without renewal.
const LEASE_SECS: i64 = 15;

/// Delivery settings (`[webhooks]` in the configuration).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Per attempt, connection to last byte.
    pub timeout: Duration,
    /// Attempts before a delivery is marked failed (first try included).
    pub max_attempts: u32,
    /// The wait before the first retry; doubled for each further one.
    pub retry_base: Duration,
    /// The longest wait between retries.
    pub retry_max: Duration,
    /// Deliveries in flight per webhook.
    pub concurrency: usize,
    /// How often the outbox is polled.
    pub poll_interval: Duration,
    /// How long delivered events (and their delivery history) are kept.
    pub retention: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            timeout: Duration::from_secs(10),
            max_attempts: 10,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(3600),
            concurrency: 4,
            poll_interval: Duration::from_secs(1),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The result of a test delivery (`POST /api/v1/webhooks/{id}/test`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub delivered: bool,
    pub status_code: Option<u16>,
    pub error: String,
    pub delivery_id: i64,
}

/// The webhook service: secrets, test deliveries and the dispatcher.
pub struct Webhooks {
    registry: Arc<Registry>,
    secrets: SecretsKey,
    client: reqwest::Client,
    config: WebhookConfig,
    /// CloudEvents `source`: berth's external URL.
    source: String,
    /// Delivery slots per webhook id.
    slots: Mutex<HashMap<i64, Arc<Semaphore>>>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").field("config", &self.config).field("source", &self.source).finish()
    }
}

impl Webhooks {
    pub fn new(registry: Arc<Registry>, secrets: SecretsKey, config: WebhookConfig, source: String) -> Arc<Self> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("berth-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("HTTP client");
        Arc::new(Webhooks { registry, secrets, client, config, source, slots: Mutex::new(HashMap::new()) })
    }

    fn meta(&self) -> &Arc<dyn Metadata> {
        self.registry.meta()
    }

    /// Seals a signing secret for storage.
    pub fn seal_secret(&self, secret: &str) -> String {
        self.secrets.seal(SECRET_CONTEXT, secret.as_bytes())
    }

    /// Sends a `ping` to one webhook now and records it in its history.
    pub async fn test(&self, webhook: &WebhookRecord, actor: &berth_meta::EventActor) -> Result<TestResult, String> {
        let event = berth_meta::EventDraft::new(berth_meta::EventKind::Ping, actor);
        let key = uuid::Uuid::new_v4().to_string();
        // Due far in the future: the dispatcher leaves it alone; the outcome below settles it.
        let far = now_ms() + 365 * 24 * 3600 * 1000;
        let delivery =
            self.meta().create_direct_delivery(webhook.id, &event, &key, far).await.map_err(|e| e.to_string())?;
        let record = EventRecord { id: delivery.event_id, draft: event };
        let mut outcome = self.attempt(webhook, &delivery, &record).await;
        outcome.retry_at_ms = None;
        self.meta().record_attempt(delivery.id, &outcome).await.map_err(|e| e.to_string())?;
        Ok(TestResult {
            delivered: outcome.delivered,
            status_code: outcome.status.map(|s| s as u16),
            error: outcome.error.unwrap_or_default(),
            delivery_id: delivery.id,
        })
    }

    /// Starts the dispatcher loop; `node` names this process for the lease.
    pub fn spawn(self: &Arc<Self>, node: String) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(this.config.poll_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_prune = Instant::now();
            loop {
                ticker.tick().await;
                if let Err(e) = this.tick(&node, &mut last_prune).await {
                    tracing::warn!(error = %e, "webhook dispatcher round failed");
                }
            }
        })
    }

    /// Writes what is queued (pull events) before shutdown.
    pub async fn flush(&self) {
        if let Err(e) = self.registry.flush_pull_events().await {
            tracing::warn!(error = %e, "could not write pull events");
        }
    }

    async fn tick(self: &Arc<Self>, node: &str, last_prune: &mut Instant) -> Result<(), berth_meta::MetaError> {
        if let Err(e) = self.registry.flush_pull_events().await {
            tracing::warn!(error = %e, "could not write pull events");
        }
        let webhooks = self.meta().enabled_webhooks().await?;
        self.registry.set_pull_events(webhooks.iter().any(|w| filter::event_matches(&w.events, "pull")));
        if !self.meta().try_lease("webhooks", node, LEASE_SECS).await? {
            return Ok(());
        }
        self.fan_out(&webhooks).await?;
        for webhook in webhooks {
            self.start_due(webhook);
        }
        if last_prune.elapsed() > Duration::from_secs(60) {
            *last_prune = Instant::now();
            let before = now_ms() - self.config.retention.as_millis() as i64;
            let pruned = self.meta().prune_events(before, 10_000).await?;
            if pruned > 0 {
                tracing::debug!(pruned, "old events pruned");
            }
        }
        Ok(())
    }

    /// Turns pending events into deliveries, a batch at a time.
    async fn fan_out(&self, webhooks: &[WebhookRecord]) -> Result<(), berth_meta::MetaError> {
        loop {
            let events = self.meta().pending_events(FAN_OUT_BATCH).await?;
            if events.is_empty() {
                return Ok(());
            }
            let mut deliveries = Vec::new();
            for event in &events {
                metrics::counter!("berth_events_total", "type" => event_metric_name(event)).increment(1);
                for w in webhooks {
                    let kind = event.draft.kind.as_str();
                    if kind != "ping"
                        && filter::event_matches(&w.events, kind)
                        && filter::repository_matches(&w.repository, event.draft.repository.as_deref())
                    {
                        deliveries.push((w.id, event.id, uuid::Uuid::new_v4().to_string()));
                    }
                }
            }
            let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
            self.meta().fan_out(&ids, &deliveries, now_ms()).await?;
            if (events.len() as i64) < FAN_OUT_BATCH {
                return Ok(());
            }
        }
    }

    /// Puts `webhook`'s free slots to work: each slot claims and delivers due
    /// deliveries one after another until none is left, so a backlog drains at
    /// the receiver's pace, not the poll interval's.
    fn start_due(self: &Arc<Self>, webhook: WebhookRecord) {
        let slots = self
            .slots
            .lock()
            .unwrap()
            .entry(webhook.id)
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.concurrency)))
            .clone();
        let webhook = Arc::new(webhook);
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            let this = self.clone();
            let webhook = webhook.clone();
            tokio::spawn(async move {
                loop {
                    let now = now_ms();
                    // A claim outlives the attempts it covers, so no other worker starts them again.
                    let per_attempt = this.config.timeout.as_millis() as i64 + 1_000;
                    let claim_until = now + per_attempt * CLAIM_BATCH + 4_000;
                    match this.meta().claim_due_deliveries(webhook.id, now, claim_until, CLAIM_BATCH).await {
                        Ok(due) if due.is_empty() => break,
                        Ok(due) => {
                            for delivery in due {
                                this.deliver(&webhook, &delivery).await;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, webhook = webhook.id, "cannot claim webhook deliveries");
                            break;
                        }
                    }
                }
                drop(permit);
            });
        }
    }

    /// One attempt of one delivery, recorded.
    async fn deliver(&self, webhook: &WebhookRecord, delivery: &DeliveryRecord) {
        let event = match self.meta().event(delivery.event_id).await {
            Ok(Some(event)) => event,
            Ok(None) => {
                let outcome = AttemptOutcome {
                    at_ms: now_ms(),
                    status: None,
                    latency_ms: 0,
                    error: Some("the event no longer exists".into()),
                    delivered: false,
                    retry_at_ms: None,
                };
                self.meta().record_attempt(delivery.id, &outcome).await.ok();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, delivery = delivery.id, "cannot load the event of a delivery");
                return;
            }
        };
        let mut outcome = self.attempt(webhook, delivery, &event).await;
        let attempts_after = delivery.attempts + 1;
        if !outcome.delivered && attempts_after < i64::from(self.config.max_attempts) {
            outcome.retry_at_ms = Some(outcome.at_ms + self.backoff(attempts_after).as_millis() as i64);
        }
        let label = match (outcome.delivered, outcome.retry_at_ms) {
            (true, _) => "delivered",
            (false, Some(_)) => "retry",
            (false, None) => "failed",
        };
        metrics::counter!("berth_webhook_deliveries_total", "outcome" => label).increment(1);
        if let Err(e) = self.meta().record_attempt(delivery.id, &outcome).await {
            tracing::warn!(error = %e, delivery = delivery.id, "cannot record a webhook attempt");
        }
    }

    /// The wait after `attempts` failed attempts: base · 2^(attempts-1), capped.
    fn backoff(&self, attempts: i64) -> Duration {
        let exp = (attempts - 1).clamp(0, 30) as u32;
        self.config.retry_base.saturating_mul(2u32.saturating_pow(exp)).min(self.config.retry_max)
    }

    /// Sends one delivery and reports what happened (no retry decision).
    async fn attempt(&self, webhook: &WebhookRecord, delivery: &DeliveryRecord, event: &EventRecord) -> AttemptOutcome {
        let format = Format::parse(&webhook.format).unwrap_or(Format::Berth);
        let body = payload::body(format, event, &delivery.delivery_key, &self.source);
        let mut request = self
            .client
            .post(&webhook.url)
            .header(reqwest::header::CONTENT_TYPE, format.content_type())
            .header("x-berth-event", event.draft.kind.as_str())
            .header("x-berth-delivery", &delivery.delivery_key);
        if let Some(sealed) = &webhook.secret_sealed {
            match self.secrets.open(SECRET_CONTEXT, sealed) {
                Ok(secret) => request = request.header("x-berth-signature", payload::signature(&secret, &body)),
                Err(e) => {
                    // Never send unsigned what the receiver expects signed.
                    return AttemptOutcome {
                        at_ms: now_ms(),
                        status: None,
                        latency_ms: 0,
                        error: Some(format!("cannot open the webhook secret: {e}")),
                        delivered: false,
                        retry_at_ms: None,
                    };
                }
            }
        }
        let at_ms = now_ms();
        let started = Instant::now();
        let result = request.body(body).send().await;
        let (status, error) = match result {
            Ok(response) => {
                let status = response.status();
                // Read (and bound) the answer so the connection can be reused.
                let _ = tokio::time::timeout(Duration::from_secs(1), response.bytes()).await;
                let error = (!status.is_success()).then(|| format!("receiver answered {status}"));
                (Some(i64::from(status.as_u16())), error)
            }
            Err(e) => (None, Some(describe(&e))),
        };
        let latency_ms = started.elapsed().as_millis() as i64;
        AttemptOutcome { at_ms, status, latency_ms, delivered: error.is_none(), error, retry_at_ms: None }
    }
}

/// A transport error without the URL (it may carry credentials).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_request() {
        "request failed"
    } else {
        "failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() { kind.to_owned() } else { format!("{kind}: {detail}") }
}

/// The metric label of an event: registry events by name, management ones by family.
fn event_metric_name(event: &EventRecord) -> &'static str {
    match event.draft.kind.as_str() {
        "push" => "push",
        "pull" => "pull",
        "delete" => "delete",
        "blob.push" => "blob.push",
        "blob.mount" => "blob.mount",
        "blob.delete" => "blob.delete",
        "repository.create" => "repository.create",
        "repository.update" => "repository.update",
        "repository.delete" => "repository.delete",
        "cache.evict" => "cache.evict",
        "ping" => "ping",
        _ => "management",
    }
}
