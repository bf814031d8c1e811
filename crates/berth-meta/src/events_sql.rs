//! One implementation of [`EventStore`](crate::EventStore) for both SQL
//! dialects, in portable SQL with `$N` placeholders (see `access_sql.rs`).
//!
//! The expansion also defines `insert_events`, which the registry writes of
//! each backend call inside their own transactions: that is what makes the
//! events table an outbox.

/// Expands the event-store implementation for one backend type.
///
/// `$id_list` turns the JSON array of integers bound as `$1` into a column of
/// ids, so a batch of events is marked fanned out by one statement.
macro_rules! events_impl {
    ($ty:ty, $db:ty, $id_list:literal) => {
        use async_trait::async_trait;
        use sqlx::Row;

        use $crate::access_sql::{dyn_sql, json_list, parse_json_list};
        use $crate::{
            AttemptOutcome, AttemptRecord, DeliveryRecord, EventActor, EventDraft, EventKind, EventRecord,
            EventStore, MetaError, WebhookRecord, WebhookSpec, now_unix,
        };

        type Tx<'a> = sqlx::Transaction<'a, $db>;
        type DbRow = <$db as sqlx::Database>::Row;

        const EVENT_COLUMNS: &str = "id, type, at_ms, actor, ip, repository, digest, tag, media_type, size, detail";
        const WEBHOOK_COLUMNS: &str =
            "id, url, events, repository, secret_sealed, format, enabled, created_by, created_at, updated_at";
        const DELIVERY_COLUMNS: &str = "id, webhook_id, event_id, delivery_key, state, attempts, next_attempt_ms, \
             created_at_ms, finished_at_ms, last_status, last_error, last_latency_ms";

        /// Writes `events` inside `tx`; returns their ids.
        pub(crate) async fn insert_events(tx: &mut Tx<'_>, events: &[EventDraft]) -> Result<Vec<i64>, MetaError> {
            let mut ids = Vec::with_capacity(events.len());
            for e in events {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO events (type, at_ms, actor, ip, repository, digest, tag, media_type, size, detail)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                )
                .bind(e.kind.as_str())
                .bind(e.at_ms)
                .bind(&e.actor.name)
                .bind(&e.actor.ip)
                .bind(&e.repository)
                .bind(&e.digest)
                .bind(&e.tag)
                .bind(&e.media_type)
                .bind(e.size)
                .bind(e.detail.to_string())
                .fetch_one(&mut **tx)
                .await?;
                ids.push(id);
            }
            Ok(ids)
        }

        fn event_row(row: &DbRow) -> Result<EventRecord, MetaError> {
            let detail: String = row.try_get("detail")?;
            Ok(EventRecord {
                id: row.try_get("id")?,
                draft: EventDraft {
                    kind: EventKind::parse(row.try_get("type")?),
                    actor: EventActor { name: row.try_get("actor")?, ip: row.try_get("ip")? },
                    at_ms: row.try_get("at_ms")?,
                    repository: row.try_get("repository")?,
                    digest: row.try_get("digest")?,
                    tag: row.try_get("tag")?,
                    media_type: row.try_get("media_type")?,
                    size: row.try_get("size")?,
                    detail: serde_json::from_str(&detail)
                        .map_err(|e| MetaError::Corrupt(format!("bad event detail {detail:?}: {e}")))?,
                },
            })
        }

        fn webhook_row(row: &DbRow) -> Result<WebhookRecord, MetaError> {
            Ok(WebhookRecord {
                id: row.try_get("id")?,
                url: row.try_get("url")?,
                events: parse_json_list(row.try_get("events")?)?,
                repository: row.try_get("repository")?,
                secret_sealed: row.try_get("secret_sealed")?,
                format: row.try_get("format")?,
                enabled: row.try_get::<i64, _>("enabled")? != 0,
                created_by: row.try_get("created_by")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        }

        fn delivery_row(row: &DbRow) -> Result<DeliveryRecord, MetaError> {
            Ok(DeliveryRecord {
                id: row.try_get("id")?,
                webhook_id: row.try_get("webhook_id")?,
                event_id: row.try_get("event_id")?,
                delivery_key: row.try_get("delivery_key")?,
                state: row.try_get("state")?,
                attempts: row.try_get("attempts")?,
                next_attempt_ms: row.try_get("next_attempt_ms")?,
                created_at_ms: row.try_get("created_at_ms")?,
                finished_at_ms: row.try_get("finished_at_ms")?,
                last_status: row.try_get("last_status")?,
                last_error: row.try_get("last_error")?,
                last_latency_ms: row.try_get("last_latency_ms")?,
            })
        }

        #[async_trait]
        impl EventStore for $ty {
            async fn append_events(&self, events: &[EventDraft]) -> Result<Vec<i64>, MetaError> {
                if events.is_empty() {
                    return Ok(Vec::new());
                }
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let ids = insert_events(&mut tx, events).await?;
                tx.commit().await?;
                Ok(ids)
            }

            async fn event(&self, id: i64) -> Result<Option<EventRecord>, MetaError> {
                let row = sqlx::query(dyn_sql!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&mut *self.read_conn().await?)
                    .await?;
                row.as_ref().map(event_row).transpose()
            }

            async fn pending_events(&self, limit: i64) -> Result<Vec<EventRecord>, MetaError> {
                let rows = sqlx::query(dyn_sql!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE pending = 1 ORDER BY id LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(&mut *self.write_conn().await?)
                .await?;
                rows.iter().map(event_row).collect()
            }

            async fn fan_out(
                &self,
                events: &[i64],
                deliveries: &[(i64, i64, String)],
                due_ms: i64,
            ) -> Result<(), MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                for (webhook_id, event_id, key) in deliveries {
                    // A webhook deleted meanwhile simply gets nothing.
                    sqlx::query(
                        "INSERT INTO webhook_deliveries
                           (webhook_id, event_id, delivery_key, state, attempts, next_attempt_ms, created_at_ms)
                         SELECT $1, $2, $3, 'pending', 0, $4, $4 WHERE EXISTS (SELECT 1 FROM webhooks WHERE id = $1)",
                    )
                    .bind(webhook_id)
                    .bind(event_id)
                    .bind(key)
                    .bind(due_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                // One statement for the whole batch: a round trip per event would
                // cost more than the fan-out itself at push rates.
                let ids = serde_json::to_string(events).expect("integers serialise");
                sqlx::query(concat!("UPDATE events SET pending = 0 WHERE id IN ", $id_list))
                    .bind(ids)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn prune_events(&self, before_ms: i64, limit: i64) -> Result<u64, MetaError> {
                let done = sqlx::query(
                    "DELETE FROM events WHERE id IN (
                       SELECT id FROM events e WHERE e.pending = 0 AND e.at_ms < $1
                         AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                                         WHERE d.event_id = e.id AND d.state = 'pending')
                       ORDER BY id LIMIT $2)",
                )
                .bind(before_ms)
                .bind(limit)
                .execute(&mut *self.write_conn().await?)
                .await?;
                // Their finished deliveries go with them (history is kept as long as events are).
                sqlx::query(
                    "DELETE FROM webhook_deliveries WHERE state <> 'pending'
                       AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id = webhook_deliveries.event_id)",
                )
                .execute(&mut *self.write_conn().await?)
                .await?;
                Ok(done.rows_affected())
            }

            async fn create_webhook(&self, spec: &WebhookSpec, created_by: &str) -> Result<WebhookRecord, MetaError> {
                let now = now_unix();
                let row = sqlx::query(dyn_sql!(
                    "INSERT INTO webhooks (url, events, repository, secret_sealed, format, enabled, created_by,
                         created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING {WEBHOOK_COLUMNS}"
                ))
                .bind(&spec.url)
                .bind(json_list(&spec.events))
                .bind(&spec.repository)
                .bind(&spec.secret_sealed)
                .bind(&spec.format)
                .bind(i64::from(spec.enabled))
                .bind(created_by)
                .bind(now)
                .fetch_one(&mut *self.write_conn().await?)
                .await?;
                webhook_row(&row)
            }

            async fn update_webhook(&self, id: i64, spec: &WebhookSpec) -> Result<Option<WebhookRecord>, MetaError> {
                let row = sqlx::query(dyn_sql!(
                    "UPDATE webhooks SET url = $2, events = $3, repository = $4, secret_sealed = $5, format = $6,
                         enabled = $7, updated_at = $8
                     WHERE id = $1 RETURNING {WEBHOOK_COLUMNS}"
                ))
                .bind(id)
                .bind(&spec.url)
                .bind(json_list(&spec.events))
                .bind(&spec.repository)
                .bind(&spec.secret_sealed)
                .bind(&spec.format)
                .bind(i64::from(spec.enabled))
                .bind(now_unix())
                .fetch_optional(&mut *self.write_conn().await?)
                .await?;
                row.as_ref().map(webhook_row).transpose()
            }

            async fn webhook(&self, id: i64) -> Result<Option<WebhookRecord>, MetaError> {
                let row = sqlx::query(dyn_sql!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&mut *self.read_conn().await?)
                    .await?;
                row.as_ref().map(webhook_row).transpose()
            }

            async fn list_webhooks(&self, offset: i64, limit: i64) -> Result<(Vec<WebhookRecord>, i64), MetaError> {
                let rows = sqlx::query(dyn_sql!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY id LIMIT $1 OFFSET $2"
                ))
                .bind(limit)
                .bind(offset)
                .fetch_all(&mut *self.read_conn().await?)
                .await?;
                let total: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM webhooks").fetch_one(&mut *self.read_conn().await?).await?;
                Ok((rows.iter().map(webhook_row).collect::<Result<_, _>>()?, total))
            }

            async fn enabled_webhooks(&self) -> Result<Vec<WebhookRecord>, MetaError> {
                let rows = sqlx::query(dyn_sql!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE enabled = 1 ORDER BY id"
                ))
                .fetch_all(&mut *self.read_conn().await?)
                .await?;
                rows.iter().map(webhook_row).collect()
            }

            async fn delete_webhook(&self, id: i64) -> Result<bool, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::query(
                    "DELETE FROM webhook_attempts WHERE delivery_id IN
                       (SELECT id FROM webhook_deliveries WHERE webhook_id = $1)",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1").bind(id).execute(&mut *tx).await?;
                let done = sqlx::query("DELETE FROM webhooks WHERE id = $1").bind(id).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            }

            async fn claim_due_deliveries(
                &self,
                webhook_id: i64,
                now_ms: i64,
                claim_until_ms: i64,
                limit: i64,
            ) -> Result<Vec<DeliveryRecord>, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let rows = sqlx::query(dyn_sql!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                     WHERE webhook_id = $1 AND state = 'pending' AND next_attempt_ms <= $2
                     ORDER BY next_attempt_ms, id LIMIT $3"
                ))
                .bind(webhook_id)
                .bind(now_ms)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
                let claimed: Vec<DeliveryRecord> = rows.iter().map(delivery_row).collect::<Result<_, _>>()?;
                for d in &claimed {
                    sqlx::query("UPDATE webhook_deliveries SET next_attempt_ms = $2 WHERE id = $1")
                        .bind(d.id)
                        .bind(claim_until_ms)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(claimed)
            }

            async fn record_attempt(&self, delivery_id: i64, o: &AttemptOutcome) -> Result<(), MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let attempt: Option<i64> = sqlx::query_scalar(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1 WHERE id = $1 RETURNING attempts",
                )
                .bind(delivery_id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(attempt) = attempt else {
                    // Deleted with its webhook while the attempt ran.
                    return Ok(());
                };
                sqlx::query(
                    "INSERT INTO webhook_attempts (delivery_id, attempt, at_ms, status, latency_ms, error)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(delivery_id)
                .bind(attempt)
                .bind(o.at_ms)
                .bind(o.status)
                .bind(o.latency_ms)
                .bind(&o.error)
                .execute(&mut *tx)
                .await?;
                let (state, next, finished) = match (o.delivered, o.retry_at_ms) {
                    (true, _) => ("delivered", o.at_ms, Some(o.at_ms + o.latency_ms)),
                    (false, Some(at)) => ("pending", at, None),
                    (false, None) => ("failed", o.at_ms, Some(o.at_ms + o.latency_ms)),
                };
                sqlx::query(
                    "UPDATE webhook_deliveries SET state = $2, next_attempt_ms = $3, finished_at_ms = $4,
                         last_status = $5, last_error = $6, last_latency_ms = $7
                     WHERE id = $1",
                )
                .bind(delivery_id)
                .bind(state)
                .bind(next)
                .bind(finished)
                .bind(o.status)
                .bind(&o.error)
                .bind(o.latency_ms)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn list_deliveries(
                &self,
                webhook_id: i64,
                offset: i64,
                limit: i64,
            ) -> Result<(Vec<DeliveryRecord>, i64), MetaError> {
                let rows = sqlx::query(dyn_sql!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1
                     ORDER BY id DESC LIMIT $2 OFFSET $3"
                ))
                .bind(webhook_id)
                .bind(limit)
                .bind(offset)
                .fetch_all(&mut *self.read_conn().await?)
                .await?;
                let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_id = $1")
                    .bind(webhook_id)
                    .fetch_one(&mut *self.read_conn().await?)
                    .await?;
                Ok((rows.iter().map(delivery_row).collect::<Result<_, _>>()?, total))
            }

            async fn delivery(&self, id: i64) -> Result<Option<DeliveryRecord>, MetaError> {
                let row = sqlx::query(dyn_sql!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&mut *self.read_conn().await?)
                    .await?;
                row.as_ref().map(delivery_row).transpose()
            }

            async fn create_direct_delivery(
                &self,
                webhook_id: i64,
                event: &EventDraft,
                delivery_key: &str,
                due_ms: i64,
            ) -> Result<DeliveryRecord, MetaError> {
                let mut conn = self.write_conn().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let ids = insert_events(&mut tx, std::slice::from_ref(event)).await?;
                sqlx::query("UPDATE events SET pending = 0 WHERE id = $1").bind(ids[0]).execute(&mut *tx).await?;
                let row = sqlx::query(dyn_sql!(
                    "INSERT INTO webhook_deliveries
                       (webhook_id, event_id, delivery_key, state, attempts, next_attempt_ms, created_at_ms)
                     VALUES ($1, $2, $3, 'pending', 0, $4, $5) RETURNING {DELIVERY_COLUMNS}"
                ))
                .bind(webhook_id)
                .bind(ids[0])
                .bind(delivery_key)
                .bind(due_ms)
                .bind(event.at_ms)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                delivery_row(&row)
            }

            async fn delivery_attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRecord>, MetaError> {
                let rows = sqlx::query(
                    "SELECT attempt, at_ms, status, latency_ms, error FROM webhook_attempts
                     WHERE delivery_id = $1 ORDER BY attempt",
                )
                .bind(delivery_id)
                .fetch_all(&mut *self.read_conn().await?)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(AttemptRecord {
                            attempt: row.try_get("attempt")?,
                            at_ms: row.try_get("at_ms")?,
                            status: row.try_get("status")?,
                            latency_ms: row.try_get("latency_ms")?,
                            error: row.try_get("error")?,
                        })
                    })
                    .collect()
            }

            async fn redeliver(&self, delivery_id: i64, due_ms: i64) -> Result<Option<i64>, MetaError> {
                let id: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO webhook_deliveries
                       (webhook_id, event_id, delivery_key, state, attempts, next_attempt_ms, created_at_ms)
                     SELECT webhook_id, event_id, delivery_key, 'pending', 0, $2, $2
                     FROM webhook_deliveries WHERE id = $1 RETURNING id",
                )
                .bind(delivery_id)
                .bind(due_ms)
                .fetch_optional(&mut *self.write_conn().await?)
                .await?;
                Ok(id)
            }
        }
    };
}
pub(crate) use events_impl;
