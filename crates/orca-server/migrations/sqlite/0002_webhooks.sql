-- Webhook deliveries (one per job and event type) and every attempt at sending them.
CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY NOT NULL,
    job_id          TEXT NOT NULL,
    event           TEXT NOT NULL,
    url             TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,      -- pending | delivered | failed
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER,            -- microseconds since the epoch; NULL when done
    created_at      INTEGER NOT NULL,
    last_error      TEXT,
    UNIQUE (job_id, event)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE TABLE webhook_attempts (
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id),
    n           INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    status_code INTEGER,
    latency_ms  INTEGER NOT NULL,
    error       TEXT,
    PRIMARY KEY (delivery_id, n)
);
