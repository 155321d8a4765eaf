-- The message history: every message a session's account received or sent, as the page
-- reported it, once per WhatsApp message key. Timestamps are INTEGER microseconds since the
-- Unix epoch (UTC), as in 0001. `seq` orders rows as they were recorded; listings order by
-- (sent_at, seq).
CREATE TABLE message_history (
    seq         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    session_id  TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    message_key TEXT    NOT NULL,
    chat        TEXT    NOT NULL,
    from_me     INTEGER NOT NULL CHECK (from_me IN (0, 1)),
    sender      TEXT,
    kind        TEXT    NOT NULL,
    body        TEXT,
    ack         INTEGER,
    revoked     INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
    edited_at   INTEGER,
    payload     TEXT    NOT NULL CHECK (json_valid(payload)),
    sent_at     INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    UNIQUE (session_id, message_key)
) STRICT;

CREATE INDEX message_history_chat_idx ON message_history (session_id, chat, sent_at, seq);
CREATE INDEX message_history_sent_at_idx ON message_history (sent_at);
