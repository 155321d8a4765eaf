-- The durable outbox: e-mails and webhooks written in the same database as the state change
-- that caused them, delivered (at least once) by a worker that retries with back-off.
CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            TEXT        NOT NULL CHECK (kind IN ('email', 'webhook')),
    -- Optional de-duplication key: a second enqueue with the same key is a no-op.
    dedupe_key      TEXT        UNIQUE,
    payload         JSONB       NOT NULL,
    status          TEXT        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at TIMESTAMPTZ NOT NULL,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    delivered_at    TIMESTAMPTZ
);

CREATE INDEX outbox_due_idx ON outbox (status, next_attempt_at);

-- Outgoing WhatsApp messages, per session, sent in order by the node holding the session's
-- lease. The idempotency key (if given) is unique per session.
CREATE TABLE message_queue (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id      TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    idempotency_key TEXT,
    recipient       TEXT        NOT NULL,
    body            TEXT        NOT NULL,
    status          TEXT        NOT NULL DEFAULT 'queued'
                                CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    attempts        INTEGER     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    not_before      TIMESTAMPTZ NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    sent_at         TIMESTAMPTZ,
    message_id      TEXT,
    error           TEXT,
    UNIQUE (session_id, idempotency_key)
);

CREATE INDEX message_queue_due_idx ON message_queue (session_id, status, not_before, id);

ALTER TABLE outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE message_queue ENABLE ROW LEVEL SECURITY;
