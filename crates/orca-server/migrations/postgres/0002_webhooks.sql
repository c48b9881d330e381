-- Webhook deliveries (one per job and event type) and every attempt at sending them.
CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY,
    job_id          uuid NOT NULL,
    event           text NOT NULL,
    url             text NOT NULL,
    payload         text NOT NULL,
    status          text NOT NULL,      -- pending | delivered | failed
    attempts        integer NOT NULL,
    next_attempt_at timestamptz,        -- NULL when done
    created_at      timestamptz NOT NULL,
    last_error      text,
    UNIQUE (job_id, event)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE TABLE webhook_attempts (
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id),
    n           integer NOT NULL,
    at          timestamptz NOT NULL,
    status_code integer,
    latency_ms  bigint NOT NULL,
    error       text,
    PRIMARY KEY (delivery_id, n)
);
