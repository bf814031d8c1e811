-- The event stream: every state change, written in the transaction that makes
-- it (the outbox), then fanned out to webhook deliveries.
CREATE TABLE events (
    id          BIGSERIAL PRIMARY KEY,
    type        TEXT    NOT NULL,
    at_ms       BIGINT NOT NULL,
    actor       TEXT    NOT NULL,
    ip          TEXT    NOT NULL,
    repository  TEXT,
    digest      TEXT,
    tag         TEXT,
    media_type  TEXT,
    size        BIGINT,
    detail      TEXT    NOT NULL,
    -- 1 until the dispatcher has created this event's deliveries.
    pending     BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX events_pending ON events(id) WHERE pending = 1;
CREATE INDEX events_at ON events(at_ms);

CREATE TABLE webhooks (
    id            BIGSERIAL PRIMARY KEY,
    url           TEXT    NOT NULL,
    -- JSON list of event filters (`push`, `repository.*`, `*`).
    events        TEXT    NOT NULL,
    -- Repository glob; `*` crosses `/`.
    repository    TEXT    NOT NULL,
    -- Sealed with the secrets key (AES-256-GCM); NULL = unsigned deliveries.
    secret_sealed TEXT,
    -- `berth` or `cloudevents`.
    format        TEXT    NOT NULL,
    enabled       BIGINT NOT NULL,
    created_by    TEXT    NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              BIGSERIAL PRIMARY KEY,
    webhook_id      BIGINT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id        BIGINT NOT NULL,
    -- Sent as X-Berth-Delivery; the same on every attempt.
    delivery_key    TEXT    NOT NULL,
    -- `pending`, `delivered` or `failed` (retry limit reached).
    state           TEXT    NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    finished_at_ms  BIGINT,
    last_status     BIGINT,
    last_error      TEXT,
    last_latency_ms BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(webhook_id, next_attempt_ms) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries(webhook_id, id);

CREATE TABLE webhook_attempts (
    delivery_id BIGINT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt     BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    status      BIGINT,
    latency_ms  BIGINT NOT NULL,
    error       TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
