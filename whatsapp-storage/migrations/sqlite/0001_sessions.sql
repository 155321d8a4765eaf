-- Session records (whatsapp_core::SessionRecord).
-- Timestamps are INTEGER microseconds since the Unix epoch (UTC): exact round trip of
-- truncate_micros, and lease expiry compares integers.
CREATE TABLE sessions (
    id                TEXT    NOT NULL PRIMARY KEY,
    tenant            TEXT    NOT NULL,
    owner_email       TEXT,
    status            TEXT    NOT NULL CHECK (status IN (
                          'created', 'starting', 'qr', 'authenticating', 'ready',
                          'reconnecting', 'disconnected', 'error', 'logged_out', 'stopped')),
    wid               TEXT,
    push_name         TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    last_seen_at      INTEGER,
    last_connected_at INTEGER,
    last_activity_at  INTEGER,
    last_backup_at    INTEGER,
    expires_at        INTEGER,
    last_error        TEXT,
    restarts          INTEGER NOT NULL DEFAULT 0 CHECK (restarts BETWEEN 0 AND 4294967295),
    reconnects        INTEGER NOT NULL DEFAULT 0 CHECK (reconnects BETWEEN 0 AND 4294967295),
    -- The ownership lease: both set or both NULL.
    lease_node        TEXT,
    lease_expires_at  INTEGER,
    CHECK ((lease_node IS NULL) = (lease_expires_at IS NULL))
) STRICT;

CREATE INDEX sessions_tenant_idx ON sessions (tenant, id);
CREATE INDEX sessions_status_idx ON sessions (status, id);
CREATE INDEX sessions_lease_idx ON sessions (lease_node, lease_expires_at);
