-- The durable outbox: e-mails and webhooks written in the same database as the state change
-- that caused them, delivered (at least once) by a worker that retries with back-off.
CREATE TABLE outbox (
    id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    kind            TEXT    NOT NULL CHECK (kind IN ('email', 'webhook')),
    -- Optional de-duplication key: a second enqueue with the same key is a no-op.
    dedupe_key      TEXT    UNIQUE,
    payload         TEXT    NOT NULL CHECK (json_valid(payload)),
    status          TEXT    NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER
) STRICT;

CREATE INDEX outbox_due_idx ON outbox (status, next_attempt_at);

-- Outgoing WhatsApp messages, per session, sent in order by the node holding the session's
-- lease. The idempotency key (if given) is unique per session.
CREATE TABLE message_queue (
    id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    session_id      TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    idempotency_key TEXT,
    recipient       TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'queued'
                            CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    not_before      INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    message_id      TEXT,
    error           TEXT,
    UNIQUE (session_id, idempotency_key)
) STRICT;

CREATE INDEX message_queue_due_idx ON message_queue (session_id, status, not_before, id);
