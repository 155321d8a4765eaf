-- Session records (whatsapp_core::SessionRecord). Plain Postgres: no extensions, nothing
-- that needs a superuser, so it runs on Supabase as is.
CREATE TABLE sessions (
    -- COLLATE "C": list() orders by id byte-wise, like every other backend.
    id                TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    tenant            TEXT        NOT NULL,
    owner_email       TEXT,
    status            TEXT        NOT NULL CHECK (status IN (
                          'created', 'starting', 'qr', 'authenticating', 'ready',
                          'reconnecting', 'disconnected', 'error', 'logged_out', 'stopped')),
    wid               TEXT,
    push_name         TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    last_seen_at      TIMESTAMPTZ,
    last_connected_at TIMESTAMPTZ,
    last_activity_at  TIMESTAMPTZ,
    last_backup_at    TIMESTAMPTZ,
    expires_at        TIMESTAMPTZ,
    last_error        TEXT,
    restarts          BIGINT      NOT NULL DEFAULT 0 CHECK (restarts BETWEEN 0 AND 4294967295),
    reconnects        BIGINT      NOT NULL DEFAULT 0 CHECK (reconnects BETWEEN 0 AND 4294967295),
    -- The ownership lease: both set or both NULL.
    lease_node        TEXT,
    lease_expires_at  TIMESTAMPTZ,
    CHECK ((lease_node IS NULL) = (lease_expires_at IS NULL))
);

CREATE INDEX sessions_tenant_idx ON sessions (tenant, id);
CREATE INDEX sessions_status_idx ON sessions (status, id);
CREATE INDEX sessions_lease_idx ON sessions (lease_node, lease_expires_at);

-- On Supabase every table in `public` is reachable through the REST API with the anon key;
-- row level security without any policy closes that door. The service connects as the
-- table owner, which RLS does not restrict.
ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
