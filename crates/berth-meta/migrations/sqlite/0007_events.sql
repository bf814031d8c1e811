-- The event stream: every state change, written in the transaction that makes
-- it (the outbox), then fanned out to webhook deliveries.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    type        TEXT    NOT NULL,
    at_ms       INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    ip          TEXT    NOT NULL,
    repository  TEXT,
    digest      TEXT,
    tag         TEXT,
    media_type  TEXT,
    size        INTEGER,
    detail      TEXT    NOT NULL,
    -- 1 until the dispatcher has created this event's deliveries.
    pending     INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX events_pending ON events(id) WHERE pending = 1;
CREATE INDEX events_at ON events(at_ms);

CREATE TABLE webhooks (
    id            INTEGER PRIMARY KEY,
    url           TEXT    NOT NULL,
    -- JSON list of event filters (`push`, `repository.*`, `*`).
    events        TEXT    NOT NULL,
    -- Repository glob; `*` crosses `/`.
    repository    TEXT    NOT NULL,
    -- Sealed with the secrets key (AES-256-GCM); NULL = unsigned deliveries.
    secret_sealed TEXT,
    -- `berth` or `cloudevents`.
    format        TEXT    NOT NULL,
    enabled       INTEGER NOT NULL,
    created_by    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY,
    webhook_id      INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id        INTEGER NOT NULL,
    -- Sent as X-Berth-Delivery; the same on every attempt.
    delivery_key    TEXT    NOT NULL,
    -- `pending`, `delivered` or `failed` (retry limit reached).
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    finished_at_ms  INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    last_latency_ms INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(webhook_id, next_attempt_ms) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries(webhook_id, id);

CREATE TABLE webhook_attempts (
    delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,
    status      INTEGER,
    latency_ms  INTEGER NOT NULL,
    error       TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
