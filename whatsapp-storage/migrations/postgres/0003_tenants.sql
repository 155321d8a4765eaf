-- Tenants of the HTTP API, their API keys, and the cache of phone-number checks.

-- One row per tenant. The webhook secret signs the tenant's webhook calls; it is stored as
-- given (the server needs it to sign), so access to this table is access to the secret.
CREATE TABLE tenants (
    -- COLLATE "C": list_tenants() orders by id byte-wise, like SQLite.
    id             TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name           TEXT,
    webhook_url    TEXT,
    webhook_secret TEXT,
    created_at     TIMESTAMPTZ NOT NULL
);

-- API keys: only the hex SHA-256 of a key is stored, never the key. `id` is the public part
-- (a prefix of the key) shown in listings and used to revoke it.
CREATE TABLE api_keys (
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    tenant     TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_hash   TEXT        NOT NULL UNIQUE,
    label      TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);

CREATE INDEX api_keys_tenant_idx ON api_keys (tenant, created_at, id);

-- Whether a phone number has a WhatsApp account, as last checked through a session.
-- Deleted with the session; purged daily by age.
CREATE TABLE number_checks (
    session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    phone      TEXT COLLATE "C" NOT NULL,
    registered BOOLEAN     NOT NULL,
    wid        TEXT,
    checked_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (session_id, phone)
);

CREATE INDEX number_checks_checked_at_idx ON number_checks (checked_at);

-- As in 0001: RLS without a policy keeps Supabase's REST API (anon key) out; the service
-- connects as the owner, which RLS does not restrict.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE number_checks ENABLE ROW LEVEL SECURITY;
