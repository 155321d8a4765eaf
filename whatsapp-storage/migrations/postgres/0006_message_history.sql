-- The message history: every message a session's account received or sent, as the page
-- reported it, once per WhatsApp message key. `seq` orders rows as they were recorded;
-- listings order by (sent_at, seq).
CREATE TABLE message_history (
    seq         BIGSERIAL   PRIMARY KEY,
    session_id  TEXT        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    message_key TEXT        NOT NULL,
    chat        TEXT        NOT NULL,
    from_me     BOOLEAN     NOT NULL,
    sender      TEXT,
    kind        TEXT        NOT NULL,
    body        TEXT,
    ack         SMALLINT,
    revoked     BOOLEAN     NOT NULL DEFAULT FALSE,
    edited_at   TIMESTAMPTZ,
    payload     JSONB       NOT NULL,
    sent_at     TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    UNIQUE (session_id, message_key)
);

CREATE INDEX message_history_chat_idx ON message_history (session_id, chat, sent_at, seq);
CREATE INDEX message_history_sent_at_idx ON message_history (sent_at);

ALTER TABLE message_history ENABLE ROW LEVEL SECURITY;
